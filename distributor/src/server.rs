//! License servers: each has its own Ed25519 key pair (claim 3).

use core::fmt;

use ed25519_dalek::{SigningKey, VerifyingKey};
use rand_core::CryptoRng;
use treecast_protocol::ids::ServerId;

/// A license server: it signs client certificates and licenses for the clients registered with
/// it, and copy certificates whose destination is registered with it.
#[derive(Clone)]
pub struct LicenseServer {
    id: ServerId,
    key: SigningKey,
}

impl LicenseServer {
    /// A server with a fresh key pair.
    pub fn generate(id: ServerId, rng: &mut impl CryptoRng) -> Self {
        Self {
            id,
            key: SigningKey::generate(rng),
        }
    }

    /// A server with the given signing key (for example loaded from a key file).
    pub const fn from_signing_key(id: ServerId, key: SigningKey) -> Self {
        Self { id, key }
    }

    /// The server's ID.
    pub const fn id(&self) -> ServerId {
        self.id
    }

    /// The key clients verify this server's signatures with.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    pub(crate) const fn signing_key(&self) -> &SigningKey {
        &self.key
    }
}

impl fmt::Debug for LicenseServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LicenseServer")
            .field("id", &self.id)
            .field("verifying_key", &self.verifying_key())
            .finish_non_exhaustive()
    }
}
