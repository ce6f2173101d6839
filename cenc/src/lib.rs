//! treecast-cenc: Common Encryption (ISO/IEC 23001-7) of fragmented MP4 with the `cenc` scheme
//! (AES-128-CTR), so that a browser plays treecast's content through Media Source Extensions
//! and Encrypted Media Extensions with the W3C ClearKey key system (issue 30).
//!
//! [`encrypt`] turns a clear fragmented MP4 (H.264 video and AAC audio, as `docs/cenc.md`'s
//! ffmpeg command makes it) into a protected one: each sample entry becomes `encv`/`enca` with a
//! `sinf` (`frma`, `schm` `cenc`, `tenc` naming the key ID), every fragment gets `senc`, `saiz`
//! and `saio`, video samples are encrypted by subsample with their NAL unit headers clear, audio
//! samples whole, and `moov` gets a ClearKey `pssh`. [`decrypt`] reverses it, byte for byte.
//!
//! Boxes are read and written with the `mp4-atom` crate where it covers them (`tfhd`, `trun`,
//! `trex`, `saiz`, `saio`, `senc`, `mfra`); the box tree that keeps every other box as it is,
//! and the protection boxes it lacks (`sinf`, `tenc`, `pssh`), are here.
//!
//! ```
//! use rand_core::SeedableRng;
//! use treecast_cenc::{CencKey, KeyId};
//! # fn main() -> Result<(), treecast_cenc::Error> {
//! let clear = include_bytes!("../tests/data/clear-fragmented.mp4");
//! let key = CencKey::from_bytes([7; 16]);
//! let kid = KeyId([1; 16]);
//! let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
//! let protected = treecast_cenc::encrypt(clear, &key, kid, &mut rng)?;
//! assert_eq!(treecast_cenc::key_id(&protected)?, kid);
//! assert_eq!(treecast_cenc::decrypt(&protected, &key)?, clear);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(rustdoc::broken_intra_doc_links)]

use core::fmt;

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

mod boxes;
mod fragment;
mod package;
mod sample;
mod track;

pub use package::{MAX_FILE, decrypt, encrypt, key_id};

/// A content key for the `cenc` scheme: 16 bytes, AES-128. Zeroized on drop, never printed,
/// compared in constant time.
#[derive(Clone)]
pub struct CencKey(Zeroizing<[u8; 16]>);

impl CencKey {
    /// The key of 16 bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The key held in `bytes`, which it keeps (no copy is left behind).
    pub fn from_zeroizing(bytes: Zeroizing<[u8; 16]>) -> Self {
        Self(bytes)
    }

    /// The key from 32 hex digits (what a key file holds, surrounding white space aside).
    ///
    /// # Errors
    /// [`Error::BadKey`] for anything else.
    pub fn from_hex(text: &str) -> Result<Self, Error> {
        let text = text.trim();
        let mut out = Zeroizing::new([0u8; 16]);
        let digits = text.as_bytes();
        if digits.len() != 32 {
            return Err(Error::BadKey);
        }
        for (i, pair) in digits.chunks(2).enumerate() {
            let hi = hex_digit(pair.first().copied());
            let lo = hex_digit(pair.get(1).copied());
            match (hi, lo, out.get_mut(i)) {
                (Some(hi), Some(lo), Some(slot)) => *slot = hi << 4 | lo,
                _ => return Err(Error::BadKey),
            }
        }
        Ok(Self(out))
    }

    /// The key's bytes (to hand to a CDM, or to store enveloped).
    pub fn secret_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Debug for CencKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CencKey(<redacted>)")
    }
}

impl PartialEq for CencKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&*other.0).into()
    }
}

impl Eq for CencKey {}

fn hex_digit(c: Option<u8>) -> Option<u8> {
    let c = c?;
    (c as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// A key ID (`tenc`'s `default_KID`): public, 16 bytes.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub struct KeyId(pub [u8; 16]);

impl KeyId {
    /// From 32 hex digits.
    ///
    /// # Errors
    /// [`Error::BadKeyId`] for anything else.
    pub fn from_hex(text: &str) -> Result<Self, Error> {
        CencKey::from_hex(text)
            .map(|k| Self(*k.secret_bytes()))
            .map_err(|_| Error::BadKeyId)
    }

    /// As 32 hex digits.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// What went wrong.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// The bytes are not a well-formed MP4 of the kind expected; names what is wrong.
    Malformed(&'static str),
    /// Well-formed, but something this packager does not handle (named).
    Unsupported(&'static str),
    /// A file to encrypt that is protected already, or one to decrypt that is not.
    WrongState(&'static str),
    /// A key that is not 32 hex digits.
    BadKey,
    /// A key ID that is not 32 hex digits.
    BadKeyId,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(what) => write!(f, "not a well-formed fragmented MP4: {what}"),
            Self::Unsupported(what) => write!(f, "not supported: {what}"),
            Self::WrongState(what) => f.write_str(what),
            Self::BadKey => f.write_str("a key is 32 hex digits (16 bytes)"),
            Self::BadKeyId => f.write_str("a key ID is 32 hex digits (16 bytes)"),
        }
    }
}

impl core::error::Error for Error {}

impl From<mp4_atom::Error> for Error {
    fn from(_: mp4_atom::Error) -> Self {
        Self::Malformed("a box mp4-atom could not read")
    }
}

/// The W3C ClearKey key system's ID, which its `pssh` box names
/// (`1077efec-c0b2-4d02-ace3-3c1e52e2fb4b`).
pub const CLEARKEY_SYSTEM_ID: [u8; 16] = [
    0x10, 0x77, 0xef, 0xec, 0xc0, 0xb2, 0x4d, 0x02, 0xac, 0xe3, 0x3c, 0x1e, 0x52, 0xe2, 0xfb, 0x4b,
];
