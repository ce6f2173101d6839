//! The error types of the key tree.

use core::fmt;

use crate::cover::Scheme;

/// What went wrong in a key-tree operation.
#[non_exhaustive]
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Error {
    /// The EKB's signature does not verify under the authority's key.
    BadSignature,
    /// The bytes are not a well-formed encoding.
    Decode(DecodeError),
    /// A state the library should never reach; please report it.
    Internal(&'static str),
    /// A tree height outside `1..=32`.
    InvalidHeight(u8),
    /// A leaf number at or beyond `2^height`.
    InvalidLeaf {
        /// The leaf number given.
        leaf: u64,
        /// The height of the tree.
        height: u8,
    },
    /// A node number that is not a node of the tree.
    InvalidNode(u64),
    /// The tree's keys are of the flat derivation: no subtree of it can be delegated.
    NotDelegable,
    /// No subset of the EKB covers this device: it is revoked for this epoch.
    Revoked,
    /// A signing key held outside this process (a token) did not sign.
    Signer(String),
    /// A count exceeds what the format can carry.
    TooLarge(&'static str),
    /// Every leaf of the tree has been handed out.
    TreeFull,
    /// The scheme is known to the format but not supported by this operation.
    UnsupportedScheme(Scheme),
    /// A wrapped key did not unwrap to a key that passes the verification value.
    UnwrapFailed,
    /// The EKB belongs to another tree (tree id, height or scheme differ from the device's).
    WrongTree,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadSignature => f.write_str("the EKB signature does not verify"),
            Self::Decode(e) => write!(f, "malformed input: {e}"),
            Self::Internal(what) => write!(f, "internal error (a bug in treecast): {what}"),
            Self::InvalidHeight(h) => write!(f, "tree height {h} is outside 1..=32"),
            Self::InvalidLeaf { leaf, height } => {
                write!(f, "leaf {leaf} is not a leaf of a height-{height} tree")
            }
            Self::InvalidNode(n) => write!(f, "node {n} is not a node of the tree"),
            Self::NotDelegable => f.write_str(
                "the tree's keys are of the flat derivation: only a seed-tree tree can be delegated",
            ),
            Self::Revoked => f.write_str("the device is revoked: no subset of the EKB covers it"),
            Self::Signer(why) => write!(f, "the authority's signing key did not sign: {why}"),
            Self::TooLarge(what) => write!(f, "{what} exceeds what the format can carry"),
            Self::TreeFull => f.write_str("every leaf of the tree has been allocated"),
            Self::UnsupportedScheme(s) => write!(f, "scheme {s} is not supported here"),
            Self::UnwrapFailed => f.write_str("the key did not unwrap"),
            Self::WrongTree => f.write_str("the EKB belongs to another tree"),
        }
    }
}

impl core::error::Error for Error {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Decode(e) => Some(e),
            _ => None,
        }
    }
}

impl From<DecodeError> for Error {
    fn from(e: DecodeError) -> Self {
        Self::Decode(e)
    }
}

/// Why bytes failed to decode. The `&'static str` names the field being read.
#[non_exhaustive]
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum DecodeError {
    /// The magic label at the start is not the expected one.
    BadMagic,
    /// A field holds a value the format does not allow.
    InvalidValue(&'static str),
    /// The input ended inside this field.
    MissingData(&'static str),
    /// A count or length exceeds the format's maximum.
    TooLarge(&'static str),
    /// Bytes follow the end of the encoding.
    TrailingData(usize),
    /// The format version is not one this library reads.
    UnsupportedVersion(u8),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMagic => f.write_str("bad magic label"),
            Self::InvalidValue(what) => write!(f, "invalid value in {what}"),
            Self::MissingData(what) => write!(f, "input ends inside {what}"),
            Self::TooLarge(what) => write!(f, "{what} exceeds its maximum"),
            Self::TrailingData(n) => write!(f, "{n} bytes of trailing data"),
            Self::UnsupportedVersion(v) => write!(f, "unsupported format version {v}"),
        }
    }
}

impl core::error::Error for DecodeError {}
