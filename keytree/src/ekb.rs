//! The enabling key block (EKB): a payload key wrapped once per subset of a cover, signed by the
//! authority.
//!
//! Bytes from outside decode only into [`EkbIn`], which borrows them and allocates nothing whose
//! size the sender controls. [`EkbIn::verify`] checks the authority's Ed25519 signature and is
//! the only way to a [`VerifiedEkb`], which is what a device opens. The byte layout is in
//! `docs/formats.md`.
//!
//! ```
//! use treecast_keytree::{Authority, EkbIn, LeafIndex, MasterSecret, PayloadKey, RevocationSet,
//!     Scheme, TreeConfig, TreeHeight, TreeId, Error};
//! # fn main() -> Result<(), Error> {
//! let config = TreeConfig::new(Scheme::COMPLETE_SUBTREE, TreeHeight::new(4)?, TreeId(7));
//! let authority = Authority::new(&MasterSecret::from_bytes([1; 32]), config)?;
//! let payload = PayloadKey::from_bytes([2; 16]);
//! let revoked = RevocationSet::from_leaves(config.height, [3, 9])?;
//! let ekb = authority.build_ekb(&payload, &revoked, 1)?;
//!
//! let device = authority.device_keys(LeafIndex::new(4, config.height)?);
//! let verified = EkbIn::from_bytes(ekb.as_bytes())?.verify(&authority.verifying_key())?;
//! assert!(device.open(&verified)? == payload);
//!
//! let revoked_device = authority.device_keys(LeafIndex::new(9, config.height)?);
//! assert_eq!(revoked_device.open(&verified), Err(Error::Revoked));
//! # Ok(()) }
//! ```

use core::fmt;

use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::codec::Reader;
use crate::cover::{Scheme, Subset};
use crate::error::{DecodeError, Error};
use crate::treemath::{NodeIndex, TreeHeight};

/// Identifies one key tree; part of every key derivation, so two trees of one authority share
/// no key.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct TreeId(pub u64);

impl fmt::Display for TreeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The public parameters of a key tree: its scheme, height and identifier.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
#[non_exhaustive]
pub struct TreeConfig {
    /// How covers are built and keys derived.
    pub scheme: Scheme,
    /// The height of the tree (2^height leaves).
    pub height: TreeHeight,
    /// The tree's identifier.
    pub tree_id: TreeId,
}

impl TreeConfig {
    /// The parameters of a tree.
    pub const fn new(scheme: Scheme, height: TreeHeight, tree_id: TreeId) -> Self {
        Self {
            scheme,
            height,
            tree_id,
        }
    }
}

/// The format of an EKB's body, as carried on the wire.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct Profile(pub u8);

impl Profile {
    /// treecast's own format (this module).
    pub const NATIVE: Self = Self(0);
}

/// The header of an EKB: everything but the entries, the verification value and the signature.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct EkbHeader {
    /// The tree the EKB is for.
    pub config: TreeConfig,
    /// The body format.
    pub profile: Profile,
    /// The key epoch: a new one starts with every revocation.
    pub epoch: u64,
    /// The number of subsets (entries).
    pub subset_count: u32,
}

impl EkbHeader {
    /// The total encoded size of an EKB with this header.
    pub fn encoded_len(&self) -> usize {
        encoded_len(self.config.scheme, self.subset_count as usize)
    }

    #[cfg(feature = "authority")]
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(self.config.scheme.0);
        out.push(self.profile.0);
        out.push(self.config.height.get());
        out.extend_from_slice(&self.config.tree_id.0.to_be_bytes());
        out.extend_from_slice(&self.epoch.to_be_bytes());
        out.extend_from_slice(&self.subset_count.to_be_bytes());
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        if r.array::<4>("magic")? != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        let version = r.u8("version")?;
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let scheme = Scheme(r.u8("scheme")?);
        if entry_len(scheme).is_none() {
            return Err(DecodeError::InvalidValue("scheme"));
        }
        let profile = Profile(r.u8("profile")?);
        if profile != Profile::NATIVE {
            return Err(DecodeError::InvalidValue("profile"));
        }
        let height =
            TreeHeight::new(r.u8("height")?).map_err(|_| DecodeError::InvalidValue("height"))?;
        let tree_id = TreeId(r.u64("tree id")?);
        let epoch = r.u64("epoch")?;
        let subset_count = r.u32("subset count")?;
        if subset_count > MAX_SUBSETS {
            return Err(DecodeError::TooLarge("subset count"));
        }
        Ok(Self {
            config: TreeConfig::new(scheme, height, tree_id),
            profile,
            epoch,
            subset_count,
        })
    }
}

/// An EKB as the authority produced it: signed, encoded, ready to ship.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct SignedEkb {
    header: EkbHeader,
    bytes: Vec<u8>,
}

impl SignedEkb {
    /// The header.
    pub fn header(&self) -> &EkbHeader {
        &self.header
    }

    /// The encoding.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The encoding, by value.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// A verified EKB is a signed one (for instance one read back from storage).
impl From<VerifiedEkbBuf> for SignedEkb {
    fn from(v: VerifiedEkbBuf) -> Self {
        Self {
            header: v.header,
            bytes: v.bytes,
        }
    }
}

/// A decoded but unverified EKB, borrowing the bytes it came from.
#[derive(Clone, Debug)]
pub struct EkbIn<'a> {
    header: EkbHeader,
    entries: &'a [u8],
    verification: [u8; 16],
    signed: &'a [u8],
    signature: Signature,
}

impl<'a> EkbIn<'a> {
    /// Decodes `bytes`: checks the magic, the version, the header fields and that the length is
    /// exactly what the header announces. Entries are checked when they are read.
    ///
    /// # Errors
    /// A [`DecodeError`] naming the first field that is wrong.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let header = EkbHeader::read(&mut r)?;
        let entry_len =
            entry_len(header.config.scheme).ok_or(DecodeError::InvalidValue("scheme"))?;
        let entries_len = (header.subset_count as usize)
            .checked_mul(entry_len)
            .ok_or(DecodeError::TooLarge("subset count"))?;
        let entries = r.take(entries_len, "entries")?;
        let verification = r.array::<16>("verification value")?;
        let signed_len = bytes.len() - r.remaining();
        let signature = Signature::from_bytes(&r.array::<64>("signature")?);
        r.finish()?;
        let signed = bytes
            .get(..signed_len)
            .ok_or(DecodeError::MissingData("signature"))?;
        Ok(Self {
            header,
            entries,
            verification,
            signed,
            signature,
        })
    }

    /// The header (not yet authenticated).
    pub fn header(&self) -> &EkbHeader {
        &self.header
    }

    /// The encoded size.
    pub fn encoded_len(&self) -> usize {
        self.signed.len() + SIGNATURE_LEN
    }

    /// Verifies the authority's signature (Ed25519, `verify_strict`) over the domain label and
    /// the SHA-256 digest of everything before the signature.
    ///
    /// # Errors
    /// [`Error::BadSignature`] when it does not verify.
    pub fn verify(self, authority: &VerifyingKey) -> Result<VerifiedEkb<'a>, Error> {
        let message = signing_message(SIGNING_LABEL, self.signed);
        authority
            .verify_strict(&message, &self.signature)
            .map_err(|_| Error::BadSignature)?;
        Ok(VerifiedEkb {
            header: self.header,
            entries: self.entries,
            verification: self.verification,
        })
    }

    /// The subsets, decoded one by one (for inspection; a device does not scan them).
    pub fn subsets(&self) -> impl Iterator<Item = Result<Subset, DecodeError>> + '_ {
        let body = Body {
            height: self.header.config.height,
            scheme: self.header.config.scheme,
            entries: self.entries,
        };
        (0..self.header.subset_count as usize).map(move |i| body.entry(i).map(|(s, _)| s))
    }
}

/// An EKB whose signature has been verified; the only kind a device opens.
#[derive(Clone, Debug)]
pub struct VerifiedEkb<'a> {
    header: EkbHeader,
    entries: &'a [u8],
    verification: [u8; 16],
}

impl VerifiedEkb<'_> {
    /// The header.
    pub fn header(&self) -> &EkbHeader {
        &self.header
    }

    pub(crate) fn verification(&self) -> &[u8; 16] {
        &self.verification
    }

    pub(crate) fn body(&self) -> Body<'_> {
        Body {
            height: self.header.config.height,
            scheme: self.header.config.scheme,
            entries: self.entries,
        }
    }
}

/// An owned EKB whose signature has been verified, for a device that stores EKBs and opens them
/// many times without checking the signature again. It remembers the key it was verified with, so
/// that a holder can check it is its authority's. Cheap to share behind an `Arc`.
///
/// ```
/// use treecast_keytree::{Authority, MasterSecret, PayloadKey, RevocationSet, Scheme, TreeConfig, TreeHeight, TreeId, VerifiedEkbBuf};
/// # fn main() -> Result<(), treecast_keytree::Error> {
/// let config = TreeConfig::new(Scheme::COMPLETE_SUBTREE, TreeHeight::new(8)?, TreeId(1));
/// let authority = Authority::new(&MasterSecret::from_bytes([1; 32]), config)?;
/// let payload = PayloadKey::from_bytes([2; 16]);
/// let ekb = authority.build_ekb(&payload, &RevocationSet::new(config.height), 1)?;
/// let stored = VerifiedEkbBuf::verify(ekb.into_bytes(), &authority.verifying_key())?;
/// let device = authority.device_keys(treecast_keytree::LeafIndex::new(3, config.height)?);
/// assert_eq!(device.open(&stored.get())?, payload);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct VerifiedEkbBuf {
    header: EkbHeader,
    bytes: Vec<u8>,
    entries: core::ops::Range<usize>,
    verification: [u8; 16],
    key: VerifyingKey,
}

impl VerifiedEkbBuf {
    /// Decodes `bytes` and verifies the signature with `authority`.
    ///
    /// # Errors
    /// As [`EkbIn::from_bytes`] and [`EkbIn::verify`].
    pub fn verify(bytes: Vec<u8>, authority: &VerifyingKey) -> Result<Self, Error> {
        let ekb = EkbIn::from_bytes(&bytes)?;
        let header = ekb.header;
        let verified = ekb.verify(authority)?;
        let start = HEADER_LEN;
        let entries = start..start + verified.entries.len();
        let verification = verified.verification;
        Ok(Self {
            header,
            bytes,
            entries,
            verification,
            key: *authority,
        })
    }

    /// The verified EKB, to open.
    pub fn get(&self) -> VerifiedEkb<'_> {
        VerifiedEkb {
            header: self.header,
            entries: self.bytes.get(self.entries.clone()).unwrap_or_default(),
            verification: self.verification,
        }
    }

    /// The header.
    pub fn header(&self) -> &EkbHeader {
        &self.header
    }

    /// The key the signature was verified with.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// The encoding.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Random access to the entries of an EKB.
#[derive(Clone, Copy)]
pub(crate) struct Body<'a> {
    height: TreeHeight,
    scheme: Scheme,
    entries: &'a [u8],
}

impl Body<'_> {
    pub(crate) fn len(&self) -> usize {
        entry_len(self.scheme).map_or(0, |l| self.entries.len() / l)
    }

    /// Decodes entry `i`: its subset (checked against the tree) and its wrapped key.
    pub(crate) fn entry(&self, i: usize) -> Result<(Subset, [u8; 16]), DecodeError> {
        let len = entry_len(self.scheme).ok_or(DecodeError::InvalidValue("scheme"))?;
        let start = i
            .checked_mul(len)
            .ok_or(DecodeError::MissingData("entry"))?;
        let bytes = self
            .entries
            .get(start..)
            .and_then(|rest| rest.get(..len))
            .ok_or(DecodeError::MissingData("entry"))?;
        let mut r = Reader::new(bytes);
        let node = |r: &mut Reader<'_>, what| {
            r.u64(what).and_then(|v| {
                NodeIndex::new(v, self.height).map_err(|_| DecodeError::InvalidValue(what))
            })
        };
        let subset = match self.scheme {
            Scheme::COMPLETE_SUBTREE => Subset::Complete(node(&mut r, "subset node")?),
            Scheme::SUBSET_DIFFERENCE => {
                let u = node(&mut r, "subset u")?;
                let v = r.u64("subset v")?;
                if v == 0 && u == NodeIndex::ROOT {
                    Subset::Complete(u)
                } else {
                    let v = NodeIndex::new(v, self.height)
                        .map_err(|_| DecodeError::InvalidValue("subset v"))?;
                    if v == u || !u.contains(v) {
                        return Err(DecodeError::InvalidValue("subset v"));
                    }
                    Subset::Difference { u, v }
                }
            }
            _ => return Err(DecodeError::InvalidValue("scheme")),
        };
        let wrapped = r.array::<16>("wrapped key")?;
        r.finish()?;
        Ok((subset, wrapped))
    }
}

/// Encodes and signs an EKB whose entries `write_entries` appends.
#[cfg(feature = "authority")]
pub(crate) fn assemble(
    header: EkbHeader,
    verification: [u8; 16],
    signer: &crate::signer::Signer,
    write_entries: impl FnOnce(&mut Vec<u8>) -> Result<(), Error>,
) -> Result<SignedEkb, Error> {
    let mut bytes = Vec::with_capacity(header.encoded_len());
    header.encode(&mut bytes);
    write_entries(&mut bytes)?;
    bytes.extend_from_slice(&verification);
    if bytes.len() + SIGNATURE_LEN != header.encoded_len() {
        return Err(Error::Internal("EKB entries do not match the subset count"));
    }
    let signature = signer.sign(&signing_message(SIGNING_LABEL, &bytes))?;
    bytes.extend_from_slice(&signature.to_bytes());
    Ok(SignedEkb { header, bytes })
}

/// Appends the encoding of one entry. In an SD EKB the all-leaves subset is written `u = 1,
/// v = 0`.
#[cfg(feature = "authority")]
pub(crate) fn encode_entry(out: &mut Vec<u8>, scheme: Scheme, subset: &Subset, wrapped: &[u8; 16]) {
    let (u, v) = match *subset {
        Subset::Complete(n) => (n.get(), None),
        Subset::Difference { u, v } => (u.get(), Some(v.get())),
    };
    out.extend_from_slice(&u.to_be_bytes());
    if scheme == Scheme::SUBSET_DIFFERENCE {
        out.extend_from_slice(&v.unwrap_or(0).to_be_bytes());
    }
    out.extend_from_slice(wrapped);
}

/// The tweak that binds a wrapped key to its subset.
pub(crate) fn subset_tweak(subset: &Subset) -> u128 {
    match *subset {
        Subset::Complete(n) => u128::from(n.get()),
        Subset::Difference { u, v } => (u128::from(u.get()) << 64) | u128::from(v.get()),
    }
}

/// What is signed: a domain label, then SHA-256 of the signed bytes.
pub(crate) fn signing_message(label: &[u8], signed: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(label.len() + 32);
    message.extend_from_slice(label);
    message.extend_from_slice(&Sha256::digest(signed));
    message
}

/// The size of one entry for `scheme`, or `None` for a scheme the format does not know.
pub(crate) const fn entry_len(scheme: Scheme) -> Option<usize> {
    match scheme {
        Scheme::COMPLETE_SUBTREE => Some(8 + 16),
        Scheme::SUBSET_DIFFERENCE => Some(8 + 8 + 16),
        _ => None,
    }
}

/// The encoded size of an EKB of `scheme` with `subsets` entries (0 for a scheme the format does
/// not know).
pub fn encoded_len(scheme: Scheme, subsets: usize) -> usize {
    HEADER_LEN + subsets * entry_len(scheme).unwrap_or(0) + 16 + SIGNATURE_LEN
}

/// The magic label that starts every EKB.
pub const MAGIC: [u8; 4] = *b"TCEK";
/// The format version this library writes and reads.
pub const VERSION: u8 = 1;
/// The largest subset count a decoder accepts (2^28).
pub const MAX_SUBSETS: u32 = 1 << 28;
/// The size of the fixed header.
pub const HEADER_LEN: usize = 4 + 1 + 1 + 1 + 1 + 8 + 8 + 4;
const SIGNATURE_LEN: usize = 64;
/// The domain label the EKB signature covers, so that it never verifies as another kind of
/// signature of the same key.
const SIGNING_LABEL: &[u8; 16] = b"treecast/v1/ekb\0";
