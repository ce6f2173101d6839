//! License servers: each has its own Ed25519 key pair (claim 3).

use core::fmt;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use rand_core::CryptoRng;
use treecast_protocol::Error;
use treecast_protocol::ids::{KeyId, ServerId};
use treecast_protocol::sign::{Signable, Signed};

use crate::hsm::TokenKey;

/// A license server: it signs client certificates and licenses for the clients registered with
/// it, and copy certificates whose destination is registered with it.
#[derive(Clone)]
pub struct LicenseServer {
    id: ServerId,
    /// Which of the server's keys over time this is (issue 29): 0 for the first.
    key_id: KeyId,
    key: ServerKey,
}

/// Where a license server's signing key is.
#[derive(Clone)]
#[allow(clippy::large_enum_variant, reason = "one a server")]
enum ServerKey {
    /// In this process's memory (zeroized on drop).
    Memory(SigningKey),
    /// In a PKCS#11 token, which signs (`hsm.rs`).
    Token(TokenKey),
}

impl LicenseServer {
    /// A server with a fresh key pair.
    pub fn generate(id: ServerId, rng: &mut impl CryptoRng) -> Self {
        Self {
            id,
            key_id: KeyId(0),
            key: ServerKey::Memory(SigningKey::generate(rng)),
        }
    }

    /// A server with the given signing key (for example loaded from a key file).
    pub const fn from_signing_key(id: ServerId, key: SigningKey) -> Self {
        Self {
            id,
            key_id: KeyId(0),
            key: ServerKey::Memory(key),
        }
    }

    /// A server whose signing key is in a PKCS#11 token.
    pub const fn from_token(id: ServerId, key: TokenKey) -> Self {
        Self {
            id,
            key_id: KeyId(0),
            key: ServerKey::Token(key),
        }
    }

    /// This server as its key `key_id` (issue 29: the key of a rotation, which it names in
    /// everything it signs).
    #[must_use]
    pub const fn with_key_id(mut self, key_id: KeyId) -> Self {
        self.key_id = key_id;
        self
    }

    /// Which of the server's keys this is.
    pub const fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The server's ID.
    pub const fn id(&self) -> ServerId {
        self.id
    }

    /// The key clients verify this server's signatures with.
    pub fn verifying_key(&self) -> VerifyingKey {
        match &self.key {
            ServerKey::Memory(key) => key.verifying_key(),
            ServerKey::Token(key) => *key.verifying_key(),
        }
    }

    /// The signing key when it is in memory (for writing a key file); `None` in a token.
    pub(crate) const fn memory_key(&self) -> Option<&SigningKey> {
        match &self.key {
            ServerKey::Memory(key) => Some(key),
            ServerKey::Token(_) => None,
        }
    }

    /// The token key, when the key is in a token.
    pub const fn token_key(&self) -> Option<&TokenKey> {
        match &self.key {
            ServerKey::Memory(_) => None,
            ServerKey::Token(key) => Some(key),
        }
    }

    /// Signs `tbs` as this server, in memory or in its token.
    ///
    /// # Errors
    /// The token's error ([`Error::Io`]).
    pub fn sign<T: Signable>(&self, tbs: T) -> Result<Signed<T>, Error> {
        match &self.key {
            ServerKey::Memory(key) => Ok(tbs.sign_as(self.key_id, key)),
            ServerKey::Token(key) => tbs.sign_with(self.key_id, |message| key.sign(message)),
        }
    }

    /// Signs raw bytes (for benchmarks of the two kinds of key).
    ///
    /// # Errors
    /// The token's error ([`Error::Io`]).
    pub fn sign_bytes(&self, message: &[u8]) -> Result<[u8; 64], Error> {
        match &self.key {
            ServerKey::Memory(key) => Ok(key.sign(message).to_bytes()),
            ServerKey::Token(key) => key.sign(message),
        }
    }
}

impl fmt::Debug for LicenseServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LicenseServer")
            .field("id", &self.id)
            .field("key_id", &self.key_id)
            .field("verifying_key", &self.verifying_key())
            .finish_non_exhaustive()
    }
}
