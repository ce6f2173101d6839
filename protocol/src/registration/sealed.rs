//! A registration sealed to its device (issue 24): the answer to a registration carries the
//! device's key set, so it is encrypted to the device with HPKE (RFC 9180, base mode,
//! DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305, through the `hpke` crate). Neither
//! a passive observer of plain HTTP nor a TLS-terminating proxy learns the key set
//! (`docs/formats.md`, "Registration request" and "Sealed registration").
//!
//! The device's X25519 key pair is derived from its Ed25519 signing key, so the device keeps no
//! second secret: `ikm = HKDF-SHA-256(salt "treecast/v1/registration-hpke", ikm = signing key)`,
//! then the KEM's `DeriveKeyPair(ikm)`.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use rand_core::CryptoRng;
use treecast_keytree::DecodeError;
use treecast_keytree::codec::Reader;
use zeroize::Zeroizing;

use super::Registration;
use crate::Error;
use crate::ids::{ServerId, UserId};

type Kem = hpke::kem::X25519HkdfSha256;
type Kdf = hpke::kdf::HkdfSha256;
type Aead = hpke::aead::ChaCha20Poly1305;

const MAGIC: [u8; 4] = *b"TCSR";
const VERSION: u8 = 1;
/// The start of the HPKE `info`: binds the key schedule to this use (the request follows).
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
/// key (its identity) and its X25519 public key (the registration is sealed to it), signed with
/// its Ed25519 key over the user it registers for. The signature binds the X25519 key to the
/// device: a proxy or an on-path attacker that swaps in its own key cannot sign for the device,
/// so the service never seals a device's key set to anyone else.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct RegistrationRequest {
    /// The user the device registers for (from the request's path, not its body).
    pub user: UserId,
    /// The license server.
    pub server: ServerId,
    /// The device's signing public key.
    pub public_key: VerifyingKey,
    /// The device's registration (HPKE) public key.
    pub seal_to: [u8; HPKE_PUBLIC_KEY_LEN],
    signature: Signature,
}

/// The label of a registration request's signature (distinct from every signed object's).
const REQUEST_LABEL: &[u8] = b"treecast/v1/registration-request\0";

impl RegistrationRequest {
    /// The length of an encoded request: server ID (4), Ed25519 key (32), X25519 key (32),
    /// signature (64).
    pub const LEN: usize = 4 + 32 + HPKE_PUBLIC_KEY_LEN + 64;

    /// The request of the device holding `signing_key`, for `user`, to license server `server`.
    ///
    /// # Errors
    /// As [`RegistrationKey::derive`].
    pub fn new(user: UserId, server: ServerId, signing_key: &SigningKey) -> Result<Self, Error> {
        let public_key = signing_key.verifying_key();
        let seal_to = RegistrationKey::derive(signing_key)?.public_bytes();
        let signature = signing_key.sign(&signed_payload(user, server, &public_key, &seal_to));
        Ok(Self {
            user,
            server,
            public_key,
            seal_to,
            signature,
        })
    }

    /// The request's encoding (`docs/formats.md`, "Registration request"); the user is not in
    /// it (the service takes it from the path) but is signed.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        let (server, rest) = out.split_at_mut(4);
        let (key, rest) = rest.split_at_mut(32);
        let (seal_to, signature) = rest.split_at_mut(HPKE_PUBLIC_KEY_LEN);
        server.copy_from_slice(&self.server.0.to_be_bytes());
        key.copy_from_slice(self.public_key.as_bytes());
        seal_to.copy_from_slice(&self.seal_to);
        signature.copy_from_slice(&self.signature.to_bytes());
        out
    }

    /// Reads the request of a registration for `user` and verifies its signature
    /// (`verify_strict`).
    ///
    /// # Errors
    /// [`Error::Decode`] for anything but [`RegistrationRequest::LEN`] bytes holding an Ed25519
    /// public key, an X25519 public key and a signature; [`Error::BadSignature`] when the
    /// signature is not the device's over this user, server and keys.
    pub fn verify_bytes(bytes: &[u8], user: UserId) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        let server = ServerId(r.u32("server id")?);
        let public_key = VerifyingKey::from_bytes(&r.array::<32>("public key")?)
            .map_err(|_| DecodeError::InvalidValue("public key"))?;
        let seal_to = r.array::<HPKE_PUBLIC_KEY_LEN>("registration key")?;
        let signature = Signature::from_bytes(&r.array::<64>("signature")?);
        r.finish()?;
        <Kem as hpke::Kem>::PublicKey::from_bytes(&seal_to)
            .map_err(|_| DecodeError::InvalidValue("registration key"))?;
        public_key
            .verify_strict(
                &signed_payload(user, server, &public_key, &seal_to),
                &signature,
            )
            .map_err(|_| Error::BadSignature)?;
        Ok(Self {
            user,
            server,
            public_key,
            seal_to,
            signature,
        })
    }
}

/// What a registration request's signature covers: its label, the user, and the body's keys.
fn signed_payload(
    user: UserId,
    server: ServerId,
    public_key: &VerifyingKey,
    seal_to: &[u8; HPKE_PUBLIC_KEY_LEN],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(REQUEST_LABEL.len() + 8 + 4 + 32 + HPKE_PUBLIC_KEY_LEN);
    out.extend_from_slice(REQUEST_LABEL);
    out.extend_from_slice(&user.0.to_be_bytes());
    out.extend_from_slice(&server.0.to_be_bytes());
    out.extend_from_slice(public_key.as_bytes());
    out.extend_from_slice(seal_to);
    out
}

/// The HPKE `info` of a registration answering `request`: the answer is bound to the very
/// request it answers.
fn info(request: &RegistrationRequest) -> Vec<u8> {
    let mut out = Vec::with_capacity(INFO.len() + 8 + RegistrationRequest::LEN);
    out.extend_from_slice(INFO);
    out.extend_from_slice(&request.user.0.to_be_bytes());
    out.extend_from_slice(&request.to_bytes());
    out
}

impl Registration {
    /// The registration sealed to the registration key of the (verified) `request` it
    /// answers, with fresh randomness from `rng`: what a license server sends over the
    /// network. The HPKE `info` holds the request, so the answer opens only for it.
    ///
    /// # Errors
    /// [`Error::NotForThisClient`] when the registration is not for the request's user and
    /// key; [`Error::Internal`] if the encryption fails (it cannot for this size).
    pub fn seal(
        &self,
        request: &RegistrationRequest,
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<u8>, Error> {
        if self.user_id != request.user
            || self.certificate.tbs().public_key != request.public_key.to_bytes()
        {
            return Err(Error::NotForThisClient);
        }
        let recipient = <Kem as hpke::Kem>::PublicKey::from_bytes(&request.seal_to)
            .map_err(|_| DecodeError::InvalidValue("registration key"))?;
        let plain = self.to_bytes();
        let (encapped, ciphertext) = hpke::single_shot_seal_with_rng::<Aead, Kdf, Kem>(
            &OpModeS::Base,
            &recipient,
            &info(request),
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

    /// Opens a registration sealed to `key` in answer to `request` ([`Registration::seal`])
    /// and reads it as [`Registration::from_bytes`] does.
    ///
    /// # Errors
    /// [`Error::Decode`] for a malformed or oversized envelope; [`Error::UnwrapFailed`] when it
    /// was not sealed to this key for this request, or was altered (deliberately opaque); then
    /// as [`Registration::from_bytes`].
    pub fn open_sealed(
        sealed: &[u8],
        key: &RegistrationKey,
        request: &RegistrationRequest,
    ) -> Result<Self, Error> {
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
                &info(request),
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
