//! License servers: each has its own Ed25519 key pair (claim 3).

use core::fmt;

use ed25519_dalek::{SigningKey, VerifyingKey};
use rand_core::CryptoRng;

use crate::ids::ServerId;

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

/// The public keys of a distributor's license servers: what a client verifies licenses and copy
/// certificates with. Its own server signs its licenses and the certificates that move content
/// to it; the source of a move verifies a certificate signed by the destination's server.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct ServerKeys(Vec<(ServerId, VerifyingKey)>);

impl ServerKeys {
    /// The keys of `servers`; a later entry for the same ID replaces an earlier one.
    pub fn new(servers: impl IntoIterator<Item = (ServerId, VerifyingKey)>) -> Self {
        let mut keys: Vec<(ServerId, VerifyingKey)> = Vec::new();
        for (id, key) in servers {
            match keys.binary_search_by_key(&id, |(i, _)| *i) {
                Ok(at) => {
                    if let Some(slot) = keys.get_mut(at) {
                        slot.1 = key;
                    }
                }
                Err(at) => keys.insert(at, (id, key)),
            }
        }
        Self(keys)
    }

    /// The key of server `id`.
    pub fn get(&self, id: ServerId) -> Option<&VerifyingKey> {
        self.0
            .binary_search_by_key(&id, |(i, _)| *i)
            .ok()
            .and_then(|at| self.0.get(at))
            .map(|(_, k)| k)
    }

    /// Every server's ID and key, by ID.
    pub fn iter(&self) -> impl Iterator<Item = (ServerId, &VerifyingKey)> {
        self.0.iter().map(|(id, k)| (*id, k))
    }
}
