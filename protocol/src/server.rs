//! The public keys of a distributor's license servers (claim 3): each server has its own
//! Ed25519 key pair; the distributor holds the signing halves (`treecast-distributor`'s
//! `LicenseServer`), every client the verifying ones.

use ed25519_dalek::VerifyingKey;

use crate::ids::ServerId;

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
