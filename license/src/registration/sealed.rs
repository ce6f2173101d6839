//! A registration sealed to its device (issue 24): the answer to a registration carries the
//! device's key set, so it is encrypted to the device with HPKE (RFC 9180, base mode,
//! DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305, through the `hpke` crate). Neither
//! a passive observer of plain HTTP nor a TLS-terminating proxy learns the key set
//! (`docs/formats.md`, "Registration request" and "Sealed registration").
//!
//! The device's X25519 key pair is derived from its Ed25519 signing key, so the device keeps no
//! second secret: `ikm = HKDF-SHA-256(salt "treecast/v1/registration-hpke", ikm = signing key)`,
//! then the KEM's `DeriveKeyPair(ikm)`.

use ed25519_dalek::{SigningKey, VerifyingKey};
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use rand_core::CryptoRng;
use treecast_keytree::DecodeError;
use treecast_keytree::codec::Reader;
use zeroize::Zeroizing;

use crate::Error;
use crate::distributor::Registration;
use crate::ids::ServerId;

type Kem = hpke::kem::X25519HkdfSha256;
type Kdf = hpke::kdf::HkdfSha256;
type Aead = hpke::aead::ChaCha20Poly1305;

const MAGIC: [u8; 4] = *b"TCSR";
const VERSION: u8 = 1;
/// The HPKE `info`: binds the key schedule to this use.
const INFO: &[u8] = b"treecast/v1 registration";
/// The length of an X25519 public key (and of the encapsulated key).
pub const HPKE_PUBLIC_KEY_LEN: usize = 32;
/// The length of a sealed registration's header: magic, version and encapsulated key.
const HEADER_LEN: usize = 4 + 1 + HPKE_PUBLIC_KEY_LEN;
/// The ChaCha20-Poly1305 tag.
const TAG_LEN: usize = 16;
/// The largest sealed registration read.
pub const MAX_SEALED_LEN: usize = super::MAX_LEN + HEADER_LEN + TAG_LEN;

/// The key a device receives its registration with: an X25519 key pair derived from its
/// signing key. Not `Copy`, zeroized on drop (the `hpke` crate's key zeroizes), redacted in
/// `Debug`.
pub struct RegistrationKey {
    private: <Kem as hpke::Kem>::PrivateKey,
    public: <Kem as hpke::Kem>::PublicKey,
}

impl RegistrationKey {
    /// The registration key of the device whose signing key is `signing_key`.
    ///
    /// # Errors
    /// [`Error::Internal`] never in practice (HKDF gives 32 bytes).
    pub fn derive(signing_key: &SigningKey) -> Result<Self, Error> {
        let ikm = crate::kdf::expand::<32>(
            b"treecast/v1/registration-hpke",
            signing_key.as_bytes(),
            &[],
        )?;
        let (private, public) = Kem::derive_keypair(ikm.as_slice());
        Ok(Self { private, public })
    }

    /// The public key the device sends when it registers.
    pub fn public_bytes(&self) -> [u8; HPKE_PUBLIC_KEY_LEN] {
        let mut out = [0u8; HPKE_PUBLIC_KEY_LEN];
        out.copy_from_slice(&self.public.to_bytes());
        out
    }
}

impl core::fmt::Debug for RegistrationKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RegistrationKey").finish_non_exhaustive()
    }
}

/// What a device sends to register: the license server it registers with, its Ed25519 public
/// key (its identity) and its X25519 public key (the registration is sealed to it).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct RegistrationRequest {
    /// The license server.
    pub server: ServerId,
    /// The device's signing public key.
    pub public_key: VerifyingKey,
    /// The device's registration (HPKE) public key.
    pub seal_to: [u8; HPKE_PUBLIC_KEY_LEN],
}

impl RegistrationRequest {
    /// The length of an encoded request: server ID (4), Ed25519 key (32), X25519 key (32).
    pub const LEN: usize = 4 + 32 + HPKE_PUBLIC_KEY_LEN;

    /// The request of the device holding `signing_key`, to license server `server`.
    ///
    /// # Errors
    /// As [`RegistrationKey::derive`].
    pub fn new(server: ServerId, signing_key: &SigningKey) -> Result<Self, Error> {
        Ok(Self {
            server,
            public_key: signing_key.verifying_key(),
            seal_to: RegistrationKey::derive(signing_key)?.public_bytes(),
        })
    }

    /// The request's encoding (`docs/formats.md`, "Registration request").
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        let (server, rest) = out.split_at_mut(4);
        let (key, seal_to) = rest.split_at_mut(32);
        server.copy_from_slice(&self.server.0.to_be_bytes());
        key.copy_from_slice(self.public_key.as_bytes());
        seal_to.copy_from_slice(&self.seal_to);
        out
    }

    /// Reads a request.
    ///
    /// # Errors
    /// [`Error::Decode`] for anything but [`RegistrationRequest::LEN`] bytes holding an Ed25519
    /// public key and an X25519 public key.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        let server = ServerId(r.u32("server id")?);
        let public_key = VerifyingKey::from_bytes(&r.array::<32>("public key")?)
            .map_err(|_| DecodeError::InvalidValue("public key"))?;
        let seal_to = r.array::<HPKE_PUBLIC_KEY_LEN>("registration key")?;
        r.finish()?;
        <Kem as hpke::Kem>::PublicKey::from_bytes(&seal_to)
            .map_err(|_| DecodeError::InvalidValue("registration key"))?;
        Ok(Self {
            server,
            public_key,
            seal_to,
        })
    }
}

impl Registration {
    /// The registration sealed to the device's registration key `seal_to` (its
    /// [`RegistrationRequest::seal_to`]), with fresh randomness from `rng`: what a license
    /// server sends over the network.
    ///
    /// # Errors
    /// [`Error::Decode`] for a `seal_to` that is not an X25519 public key;
    /// [`Error::Internal`] if the encryption fails (it cannot for this size).
    pub fn seal(
        &self,
        seal_to: &[u8; HPKE_PUBLIC_KEY_LEN],
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<u8>, Error> {
        let recipient = <Kem as hpke::Kem>::PublicKey::from_bytes(seal_to)
            .map_err(|_| DecodeError::InvalidValue("registration key"))?;
        let plain = self.to_bytes();
        let (encapped, ciphertext) = hpke::single_shot_seal_with_rng::<Aead, Kdf, Kem>(
            &OpModeS::Base,
            &recipient,
            INFO,
            &plain,
            &header_aad(),
            rng,
        )
        .map_err(|_| Error::Internal("HPKE sealing failed"))?;
        let mut out = Vec::with_capacity(HEADER_LEN + ciphertext.len());
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&encapped.to_bytes());
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    /// Opens a registration sealed to `key` ([`Registration::seal`]) and reads it as
    /// [`Registration::from_bytes`] does.
    ///
    /// # Errors
    /// [`Error::Decode`] for a malformed or oversized envelope; [`Error::UnwrapFailed`] when it
    /// was not sealed to this key or was altered (deliberately opaque); then as
    /// [`Registration::from_bytes`].
    pub fn open_sealed(sealed: &[u8], key: &RegistrationKey) -> Result<Self, Error> {
        if sealed.len() > MAX_SEALED_LEN {
            return Err(DecodeError::TooLarge("sealed registration").into());
        }
        let mut r = Reader::new(sealed);
        if r.array::<4>("magic")? != MAGIC {
            return Err(DecodeError::BadMagic.into());
        }
        let version = r.u8("version")?;
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion(version).into());
        }
        let encapped = <Kem as hpke::Kem>::EncappedKey::from_bytes(
            r.take(HPKE_PUBLIC_KEY_LEN, "encapsulated key")?,
        )
        .map_err(|_| DecodeError::InvalidValue("encapsulated key"))?;
        let ciphertext = r.take(r.remaining(), "ciphertext")?;
        let plain = Zeroizing::new(
            hpke::single_shot_open::<Aead, Kdf, Kem>(
                &OpModeR::Base,
                &key.private,
                &encapped,
                INFO,
                ciphertext,
                &header_aad(),
            )
            .map_err(|_| Error::UnwrapFailed)?,
        );
        Self::from_bytes(&plain)
    }
}

/// The associated data: the envelope's magic and version.
fn header_aad() -> [u8; 5] {
    let mut aad = [0u8; 5];
    aad[..4].copy_from_slice(&MAGIC);
    aad[4] = VERSION;
    aad
}
