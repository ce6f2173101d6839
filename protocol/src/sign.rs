//! Signed objects and their type states, with domain-separated Ed25519.
//!
//! Every signature covers a label naming what is signed, then the payload, so a signature of one
//! kind never verifies as another. An object is signed into a [`Signed`], the only form that
//! encodes. Bytes from outside decode only into an [`Unverified`], and [`Unverified::verify`]
//! (Ed25519 `verify_strict`) is the only way from there to a [`Signed`].

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use treecast_keytree::DecodeError;
use treecast_keytree::codec::Reader;

use crate::Error;

/// An object that a party signs: its label and its encoding.
pub trait Signable: Sized + sealed::Sealed {
    /// The domain label the signature covers first. Distinct per type; none is a prefix of
    /// another.
    const LABEL: &'static [u8];

    /// The largest encoding (payload and signature) a decoder accepts.
    const MAX_LEN: usize;

    /// Appends the payload.
    fn encode(&self, out: &mut Vec<u8>);

    /// Reads the payload (the signature follows it).
    ///
    /// # Errors
    /// A [`DecodeError`] naming the first bad field.
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError>;

    /// Signs the object.
    fn sign(self, key: &SigningKey) -> Signed<Self> {
        let mut bytes = Vec::new();
        self.encode(&mut bytes);
        let signature = key.sign(&message(Self::LABEL, &bytes));
        bytes.extend_from_slice(&signature.to_bytes());
        Signed { tbs: self, bytes }
    }

    /// Signs the object with a signer that may fail (a key in a token, issue 29): `signer` is
    /// given the message to sign (the label, then the payload) and answers the Ed25519
    /// signature.
    ///
    /// # Errors
    /// The signer's error.
    fn sign_with(
        self,
        signer: impl FnOnce(&[u8]) -> Result<[u8; SIGNATURE_LEN], Error>,
    ) -> Result<Signed<Self>, Error> {
        let mut bytes = Vec::new();
        self.encode(&mut bytes);
        let signature = signer(&message(Self::LABEL, &bytes))?;
        bytes.extend_from_slice(&signature);
        Ok(Signed { tbs: self, bytes })
    }
}

pub(crate) mod sealed {
    pub trait Sealed {}
}

/// A signed object: made by signing it, or by verifying bytes from outside.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Signed<T> {
    tbs: T,
    bytes: Vec<u8>,
}

impl<T> Signed<T> {
    /// The signed fields.
    pub fn tbs(&self) -> &T {
        &self.tbs
    }

    /// The encoding: payload, then the 64-byte signature.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// A decoded object whose signature has not been checked.
#[derive(Clone, Debug)]
pub struct Unverified<T> {
    tbs: T,
    bytes: Vec<u8>,
}

impl<T: Signable> Unverified<T> {
    /// Decodes `bytes`: the payload, exactly one signature, nothing after it.
    ///
    /// # Errors
    /// A [`DecodeError`] naming the first bad field, or `TooLarge` beyond `T::MAX_LEN`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > T::MAX_LEN {
            return Err(DecodeError::TooLarge("signed object"));
        }
        let mut r = Reader::new(bytes);
        let tbs = T::read(&mut r)?;
        r.array::<SIGNATURE_LEN>("signature")?;
        r.finish()?;
        Ok(Self {
            tbs,
            bytes: bytes.to_vec(),
        })
    }

    /// The encoding as received: payload, then the signature.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The fields, unverified: use them only to find the key to verify with.
    pub fn unverified(&self) -> &T {
        &self.tbs
    }

    /// Verifies the signature under `key`.
    ///
    /// # Errors
    /// [`Error::BadSignature`] when it does not verify.
    pub fn verify(self, key: &VerifyingKey) -> Result<Signed<T>, Error> {
        let (payload, signature) = split_signature(&self.bytes)?;
        key.verify_strict(
            &message(T::LABEL, payload),
            &Signature::from_bytes(signature),
        )
        .map_err(|_| Error::BadSignature)?;
        Ok(Signed {
            tbs: self.tbs,
            bytes: self.bytes,
        })
    }
}

/// An encoding's payload and the signature that ends it.
fn split_signature(bytes: &[u8]) -> Result<(&[u8], &[u8; SIGNATURE_LEN]), Error> {
    let at = bytes.len().saturating_sub(SIGNATURE_LEN);
    let (payload, signature) = bytes.split_at(at);
    let signature = signature
        .try_into()
        .map_err(|_| Error::Internal("signature length"))?;
    Ok((payload, signature))
}

fn message(label: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(label.len() + payload.len());
    m.extend_from_slice(label);
    m.extend_from_slice(payload);
    m
}

/// Reads a magic label and version, the start of every signed object.
pub(crate) fn read_start(
    r: &mut Reader<'_>,
    magic: [u8; 4],
    version: u8,
) -> Result<(), DecodeError> {
    if r.array::<4>("magic")? != magic {
        return Err(DecodeError::BadMagic);
    }
    let v = r.u8("version")?;
    if v != version {
        return Err(DecodeError::UnsupportedVersion(v));
    }
    Ok(())
}

/// The length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
