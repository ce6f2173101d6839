//! Signed objects and their type states, with domain-separated Ed25519.
//!
//! Every signature covers a label naming what is signed, then the payload, so a signature of one
//! kind never verifies as another. An object is signed into a [`Signed`], the only form that
//! encodes. Bytes from outside decode only into an [`Unverified`], and [`Unverified::verify`]
//! (Ed25519 `verify_strict`) is the only way from there to a [`Signed`].
//!
//! A signer with several keys over time (a license server whose key rotates, issue 29) names
//! the one that signed: a key ID other than 0 sets the top bit of the version byte (the fifth,
//! after every format's magic) and follows the payload, covered by the signature. Key 0 is
//! written without it, so every object signed before rotation existed reads as key 0.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use treecast_keytree::DecodeError;
use treecast_keytree::codec::Reader;

use crate::Error;
use crate::ids::KeyId;

/// An object that a party signs: its label and its encoding.
pub trait Signable: Sized + sealed::Sealed {
    /// The domain label the signature covers first. Distinct per type; none is a prefix of
    /// another.
    const LABEL: &'static [u8];

    /// The largest encoding (payload and signature) a decoder accepts.
    const MAX_LEN: usize;

    /// Whether its signer names a key ID (a license server, whose key rotates: issue 29). An
    /// object of another kind with a key ID is refused (one encoding each).
    const KEYED: bool = false;

    /// Appends the payload.
    fn encode(&self, out: &mut Vec<u8>);

    /// Reads the payload (the signature follows it).
    ///
    /// # Errors
    /// A [`DecodeError`] naming the first bad field.
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError>;

    /// Signs the object with the first key of its signer (key ID 0): the encoding has no key
    /// ID, as every object signed before key rotation (issue 29).
    fn sign(self, key: &SigningKey) -> Signed<Self> {
        let (bytes, key_id) = encode_keyed(&self, KeyId(0));
        let mut signed = Signed {
            tbs: self,
            key_id,
            bytes,
        };
        let signature = key.sign(&message(Self::LABEL, &signed.bytes));
        signed.bytes.extend_from_slice(&signature.to_bytes());
        signed
    }

    /// Signs the object with the signer's key `key_id` (issue 29): an ID other than 0 goes in
    /// the encoding, before the signature, and the signature covers it.
    fn sign_as(self, key_id: KeyId, key: &SigningKey) -> Signed<Self> {
        let (mut bytes, key_id) = encode_keyed(&self, key_id);
        let signature = key.sign(&message(Self::LABEL, &bytes));
        bytes.extend_from_slice(&signature.to_bytes());
        Signed {
            tbs: self,
            key_id,
            bytes,
        }
    }

    /// Signs the object with a signer that may fail (a key in a token, issue 29) as its key
    /// `key_id`: `signer` is given the message to sign (the label, then the encoding up to the
    /// signature) and answers the Ed25519 signature.
    ///
    /// # Errors
    /// The signer's error.
    fn sign_with(
        self,
        key_id: KeyId,
        signer: impl FnOnce(&[u8]) -> Result<[u8; SIGNATURE_LEN], Error>,
    ) -> Result<Signed<Self>, Error> {
        let (mut bytes, key_id) = encode_keyed(&self, key_id);
        let signature = signer(&message(Self::LABEL, &bytes))?;
        bytes.extend_from_slice(&signature);
        Ok(Signed {
            tbs: self,
            key_id,
            bytes,
        })
    }
}

/// The length of the key ID in a signed object's encoding `bytes`: [`KEY_ID_LEN`] when its
/// version byte says it has one, else 0.
pub(crate) fn key_id_len(bytes: &[u8]) -> usize {
    if bytes.get(VERSION_AT).is_some_and(|v| v & KEY_ID_FLAG != 0) {
        KEY_ID_LEN
    } else {
        0
    }
}

/// The encoding up to the signature: the payload, and for a key ID other than 0 the version
/// byte's flag and the key ID after the payload.
fn encode_keyed<T: Signable>(tbs: &T, key_id: KeyId) -> (Vec<u8>, KeyId) {
    let mut bytes = Vec::new();
    tbs.encode(&mut bytes);
    // A signer of one key (a device, the authority) names none.
    let key_id = if T::KEYED { key_id } else { KeyId(0) };
    if key_id.0 != 0
        && let Some(version) = bytes.get_mut(VERSION_AT)
    {
        *version |= KEY_ID_FLAG;
        bytes.extend_from_slice(&key_id.0.to_be_bytes());
    }
    (bytes, key_id)
}

pub(crate) mod sealed {
    pub trait Sealed {}
}

/// A signed object: made by signing it, or by verifying bytes from outside.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Signed<T> {
    tbs: T,
    key_id: KeyId,
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

    /// Which of its signer's keys signed it (0 for an encoding without a key ID).
    pub const fn key_id(&self) -> KeyId {
        self.key_id
    }
}

/// A decoded object whose signature has not been checked.
#[derive(Clone, Debug)]
pub struct Unverified<T> {
    tbs: T,
    key_id: KeyId,
    bytes: Vec<u8>,
}

impl<T: Signable> Unverified<T> {
    /// Decodes `bytes`: the payload, the key ID when the version byte's flag says one
    /// follows it (issue 29), exactly one signature, nothing after it.
    ///
    /// # Errors
    /// A [`DecodeError`] naming the first bad field, or `TooLarge` beyond `T::MAX_LEN` (and
    /// the key ID).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > T::MAX_LEN + KEY_ID_LEN {
            return Err(DecodeError::TooLarge("signed object"));
        }
        let keyed = bytes.get(VERSION_AT).is_some_and(|v| v & KEY_ID_FLAG != 0);
        if keyed && !T::KEYED {
            return Err(DecodeError::InvalidValue(
                "a key id on an object of an unkeyed signer",
            ));
        }
        if !keyed {
            if bytes.len() > T::MAX_LEN {
                return Err(DecodeError::TooLarge("signed object"));
            }
            let mut r = Reader::new(bytes);
            let tbs = T::read(&mut r)?;
            r.array::<SIGNATURE_LEN>("signature")?;
            r.finish()?;
            return Ok(Self {
                tbs,
                key_id: KeyId(0),
                bytes: bytes.to_vec(),
            });
        }
        // The format's own decoder reads the version without the flag.
        let mut plain = bytes.to_vec();
        if let Some(version) = plain.get_mut(VERSION_AT) {
            *version &= !KEY_ID_FLAG;
        }
        let mut r = Reader::new(&plain);
        let tbs = T::read(&mut r)?;
        let key_id = KeyId(r.u32("key id")?);
        if key_id.0 == 0 {
            // Key 0 is written without the flag: one encoding per object.
            return Err(DecodeError::InvalidValue("key id 0 with the key-id flag"));
        }
        r.array::<SIGNATURE_LEN>("signature")?;
        r.finish()?;
        Ok(Self {
            tbs,
            key_id,
            bytes: bytes.to_vec(),
        })
    }

    /// Which of its signer's keys it names (0 for an encoding without a key ID): use it only
    /// to find the key to verify with.
    pub const fn key_id(&self) -> KeyId {
        self.key_id
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
            key_id: self.key_id,
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

/// The length of a key ID (issue 29).
pub const KEY_ID_LEN: usize = 4;

/// Where every signed object's version byte is: after its 4-byte magic.
const VERSION_AT: usize = 4;

/// The flag of the version byte that says a key ID follows the payload (no format has a
/// version this high).
const KEY_ID_FLAG: u8 = 0x80;

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;

    use super::*;
    use crate::server::{ServerKeyListIn, ServerKeyListTbs};

    /// A signed object of a keyed signer, for the tests.
    #[derive(Clone, Debug, Eq, PartialEq)]
    struct Probe(u32);

    impl sealed::Sealed for Probe {}

    impl Signable for Probe {
        const LABEL: &'static [u8] = b"treecast/test/probe\0";
        const MAX_LEN: usize = 9 + SIGNATURE_LEN;
        const KEYED: bool = true;

        fn encode(&self, out: &mut Vec<u8>) {
            out.extend_from_slice(b"TEST\x01");
            out.extend_from_slice(&self.0.to_be_bytes());
        }

        fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
            read_start(r, *b"TEST", 1)?;
            Ok(Self(r.u32("value")?))
        }
    }

    type ProbeIn = Unverified<Probe>;

    #[test]
    fn a_key_id_is_named_signed_and_key_0_is_the_old_encoding() {
        let key = SigningKey::from_bytes(&[2; 32]);
        let old = Probe(5).sign(&key);
        assert_eq!(old.as_bytes(), Probe(5).sign_as(KeyId(0), &key).as_bytes());
        let keyed = Probe(5).sign_as(KeyId(7), &key);
        assert_eq!(keyed.as_bytes().len(), old.as_bytes().len() + KEY_ID_LEN);
        assert_eq!(keyed.as_bytes().get(VERSION_AT), Some(&(1 | KEY_ID_FLAG)));
        let read = ProbeIn::from_bytes(keyed.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read.key_id(), KeyId(7));
        let verified = read
            .verify(&key.verifying_key())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(verified.key_id(), KeyId(7));
        assert_eq!(verified.tbs(), &Probe(5));
        let read = ProbeIn::from_bytes(old.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read.key_id(), KeyId(0));

        // The key ID is signed: another one does not verify.
        let mut other = keyed.as_bytes().to_vec();
        let at = other.len() - SIGNATURE_LEN - 1;
        if let Some(b) = other.get_mut(at) {
            *b ^= 1;
        }
        let other = ProbeIn::from_bytes(&other).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(other.key_id(), KeyId(6));
        assert!(matches!(
            other.verify(&key.verifying_key()),
            Err(Error::BadSignature)
        ));
        // Nor does the old encoding with the flag set, or the flag dropped from a keyed one.
        let mut flagged = old.as_bytes().to_vec();
        if let Some(v) = flagged.get_mut(VERSION_AT) {
            *v |= KEY_ID_FLAG;
        }
        assert!(ProbeIn::from_bytes(&flagged).is_err());
        let mut unflagged = keyed.as_bytes().to_vec();
        if let Some(v) = unflagged.get_mut(VERSION_AT) {
            *v &= !KEY_ID_FLAG;
        }
        assert!(ProbeIn::from_bytes(&unflagged).is_err());
        // Key ID 0 written with the flag: not the one encoding of key 0.
        let mut zero = old.as_bytes().to_vec();
        let payload = zero.len() - SIGNATURE_LEN;
        zero.splice(payload..payload, [0u8; KEY_ID_LEN]);
        if let Some(v) = zero.get_mut(VERSION_AT) {
            *v |= KEY_ID_FLAG;
        }
        assert!(matches!(
            ProbeIn::from_bytes(&zero),
            Err(DecodeError::InvalidValue(_))
        ));
    }

    #[test]
    fn a_signer_of_one_key_names_none() {
        let key = SigningKey::from_bytes(&[2; 32]);
        let tbs = ServerKeyListTbs::new(
            crate::ids::ServerId(4),
            1,
            vec![(KeyId(0), key.verifying_key())],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        // Asked to name a key, it does not: the encoding is key 0's.
        let list = tbs.clone().sign_as(KeyId(3), &key);
        assert_eq!(list.as_bytes(), tbs.clone().sign(&key).as_bytes());
        // And a key ID put on one by hand is refused.
        let mut bytes = list.as_bytes().to_vec();
        let payload = bytes.len() - SIGNATURE_LEN;
        bytes.splice(payload..payload, 3u32.to_be_bytes());
        if let Some(v) = bytes.get_mut(VERSION_AT) {
            *v |= KEY_ID_FLAG;
        }
        assert!(matches!(
            ServerKeyListIn::from_bytes(&bytes),
            Err(DecodeError::InvalidValue(_))
        ));
    }
}
