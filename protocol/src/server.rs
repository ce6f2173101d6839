//! The public keys of a distributor's license servers (claim 3): each server has its own
//! Ed25519 key pair; the distributor holds the signing halves (`treecast-distributor`'s
//! `LicenseServer`), every client the verifying ones.
//!
//! A server's key rotates (issue 29): each of its keys has a [`KeyId`], every object it signs
//! names the one that signed, and the authority signs a [`ServerKeyList`] of the keys that
//! verify a server's objects, numbered so that a newer list replaces an older one. A key left
//! out of the newest list is retired.

use std::collections::BTreeMap;
use std::sync::Arc;

use ed25519_dalek::VerifyingKey;
use treecast_keytree::DecodeError;
use treecast_keytree::codec::Reader;

use crate::Error;
use crate::ids::{KeyId, ServerId};
use crate::sign::{self, Signable, Signed, Unverified};

/// The public keys of a distributor's license servers: what a client verifies licenses and copy
/// certificates with. Its own server signs its licenses and the certificates that move content
/// to it; the source of a move verifies a certificate signed by the destination's server.
///
/// Keys come from a registration (each server's current key, numbered list 0) and from signed
/// [`ServerKeyList`]s ([`ServerKeys::apply`]), which it keeps to be saved with the device.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct ServerKeys {
    servers: BTreeMap<ServerId, Keys>,
}

/// One server's keys, and the list they came from.
#[derive(Clone, Debug, Eq, PartialEq)]
struct Keys {
    keys: Vec<(KeyId, VerifyingKey)>,
    /// The applied list (none for keys of a registration).
    list: Option<Arc<ServerKeyList>>,
}

impl ServerKeys {
    /// The keys of `servers`, each its key 0; a later entry for the same ID replaces an earlier
    /// one.
    pub fn new(servers: impl IntoIterator<Item = (ServerId, VerifyingKey)>) -> Self {
        Self::with_key_ids(servers.into_iter().map(|(id, k)| (id, KeyId(0), k)))
    }

    /// The keys of `servers` with their key IDs; a server may have several, and a later
    /// entry for the same server and key ID replaces an earlier one.
    pub fn with_key_ids(
        servers: impl IntoIterator<Item = (ServerId, KeyId, VerifyingKey)>,
    ) -> Self {
        let mut out = Self::default();
        for (id, key_id, key) in servers {
            let keys = &mut out
                .servers
                .entry(id)
                .or_insert_with(|| Keys {
                    keys: Vec::new(),
                    list: None,
                })
                .keys;
            match keys.binary_search_by_key(&key_id, |(k, _)| *k) {
                Ok(at) => {
                    if let Some(slot) = keys.get_mut(at) {
                        slot.1 = key;
                    }
                }
                Err(at) => keys.insert(at, (key_id, key)),
            }
        }
        out
    }

    /// Whether server `id` is known.
    pub fn has_server(&self, id: ServerId) -> bool {
        self.servers.contains_key(&id)
    }

    /// Key `key_id` of server `id`.
    pub fn get(&self, id: ServerId, key_id: KeyId) -> Option<&VerifyingKey> {
        let keys = &self.servers.get(&id)?.keys;
        keys.binary_search_by_key(&key_id, |(k, _)| *k)
            .ok()
            .and_then(|at| keys.get(at))
            .map(|(_, k)| k)
    }

    /// The key that verifies an object of server `id` signed with its key `key_id`.
    ///
    /// # Errors
    /// [`Error::UnknownServer`], or [`Error::UnknownServerKey`] for a key this does not hold
    /// (newer than its list, or retired).
    pub fn verifier(&self, id: ServerId, key_id: KeyId) -> Result<&VerifyingKey, Error> {
        if !self.has_server(id) {
            return Err(Error::UnknownServer(id));
        }
        self.get(id, key_id)
            .ok_or(Error::UnknownServerKey(id, key_id))
    }

    /// Every server's ID, key ID and key, by server and key ID.
    pub fn iter(&self) -> impl Iterator<Item = (ServerId, KeyId, &VerifyingKey)> {
        self.servers
            .iter()
            .flat_map(|(id, s)| s.keys.iter().map(move |(k, key)| (*id, *k, key)))
    }

    /// The sequence number of the list server `id`'s keys came from (0 for a registration's).
    pub fn sequence(&self, id: ServerId) -> u64 {
        self.servers
            .get(&id)
            .and_then(|s| s.list.as_ref())
            .map_or(0, |l| l.tbs().sequence)
    }

    /// The lists applied, by server: what a device saves to apply again when it loads.
    pub fn lists(&self) -> impl Iterator<Item = &ServerKeyList> {
        self.servers.values().filter_map(|s| s.list.as_deref())
    }

    /// Replaces the keys of the list's server with the list's, when the list is newer than
    /// the one held. The list must have been verified under the authority's key.
    ///
    /// # Errors
    /// [`Error::StaleServerKeys`] for a list no newer than the one held (nothing changes).
    pub fn apply(&mut self, list: ServerKeyList) -> Result<(), Error> {
        let t = list.tbs();
        let held = self.sequence(t.server_id);
        if t.sequence <= held {
            return Err(Error::StaleServerKeys {
                server: t.server_id,
                got: t.sequence,
                held,
            });
        }
        let keys = t.keys.clone();
        self.servers.insert(
            t.server_id,
            Keys {
                keys,
                list: Some(Arc::new(list)),
            },
        );
        Ok(())
    }
}

/// The keys that verify one license server's objects, in a list signed by the authority
/// (issue 29). Its sequence number orders the lists of one server; a key absent from the newest
/// is retired.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ServerKeyListTbs {
    /// The license server.
    pub server_id: ServerId,
    /// The list's number: a device takes only a list numbered above the one it holds. The
    /// first list is 1 (0 stands for the keys of a registration).
    pub sequence: u64,
    /// The keys, by key ID, at least one and at most [`MAX_SERVER_KEYS`].
    pub keys: Vec<(KeyId, VerifyingKey)>,
}

impl ServerKeyListTbs {
    /// A list, its keys sorted by ID.
    ///
    /// # Errors
    /// [`Error::Decode`] for no key, more than [`MAX_SERVER_KEYS`], a key ID twice, or
    /// sequence number 0.
    pub fn new(
        server_id: ServerId,
        sequence: u64,
        mut keys: Vec<(KeyId, VerifyingKey)>,
    ) -> Result<Self, Error> {
        keys.sort_by_key(|(k, _)| *k);
        let list = Self {
            server_id,
            sequence,
            keys,
        };
        list.check()?;
        Ok(list)
    }

    fn check(&self) -> Result<(), DecodeError> {
        if self.keys.is_empty() || self.keys.len() > MAX_SERVER_KEYS {
            return Err(DecodeError::InvalidValue("server key count (1 to 8)"));
        }
        if self
            .keys
            .windows(2)
            .any(|w| matches!(w, [a, b] if a.0 >= b.0))
        {
            return Err(DecodeError::InvalidValue("server key ids (increasing)"));
        }
        if self.sequence == 0 {
            return Err(DecodeError::InvalidValue("server key list number (from 1)"));
        }
        Ok(())
    }
}

impl sign::sealed::Sealed for ServerKeyListTbs {}

impl Signable for ServerKeyListTbs {
    const LABEL: &'static [u8] = treecast_keytree::SERVER_KEYS_LABEL;
    const MAX_LEN: usize = 4 + 1 + 4 + 8 + 1 + MAX_SERVER_KEYS * 36 + sign::SIGNATURE_LEN;

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&self.server_id.0.to_be_bytes());
        out.extend_from_slice(&self.sequence.to_be_bytes());
        // At most MAX_SERVER_KEYS (8).
        out.push(self.keys.len() as u8);
        for (id, key) in &self.keys {
            out.extend_from_slice(&id.0.to_be_bytes());
            out.extend_from_slice(key.as_bytes());
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        sign::read_start(r, MAGIC, VERSION)?;
        let server_id = ServerId(r.u32("server id")?);
        let sequence = r.u64("sequence")?;
        let count = usize::from(r.u8("key count")?);
        if count > MAX_SERVER_KEYS {
            return Err(DecodeError::TooLarge("server key count"));
        }
        let mut keys = Vec::with_capacity(count);
        for _ in 0..count {
            let id = KeyId(r.u32("key id")?);
            let key = VerifyingKey::from_bytes(&r.array::<32>("server key")?)
                .map_err(|_| DecodeError::InvalidValue("public key"))?;
            keys.push((id, key));
        }
        let list = Self {
            server_id,
            sequence,
            keys,
        };
        list.check()?;
        Ok(list)
    }
}

/// A list of a server's keys, signed by the authority (or verified).
pub type ServerKeyList = Signed<ServerKeyListTbs>;

/// A decoded list whose signature has not been checked.
pub type ServerKeyListIn = Unverified<ServerKeyListTbs>;

/// The most keys a list names.
pub const MAX_SERVER_KEYS: usize = 8;

const MAGIC: [u8; 4] = *b"TCKL";
const VERSION: u8 = 1;

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;

    use super::*;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    fn list(seq: u64, keys: &[(u32, u8)], authority: &SigningKey) -> ServerKeyList {
        ServerKeyListTbs::new(
            ServerId(1),
            seq,
            keys.iter()
                .map(|&(id, k)| (KeyId(id), key(k).verifying_key()))
                .collect(),
        )
        .map(|l| l.sign(authority))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_newer_list_replaces_the_keys_and_retires_what_it_leaves_out() {
        let authority = key(9);
        let mut keys = ServerKeys::new([(ServerId(1), key(1).verifying_key())]);
        assert!(keys.verifier(ServerId(1), KeyId(0)).is_ok());
        assert!(matches!(
            keys.verifier(ServerId(1), KeyId(1)),
            Err(Error::UnknownServerKey(ServerId(1), KeyId(1)))
        ));
        let both = list(1, &[(0, 1), (1, 2)], &authority);
        let bytes = both.as_bytes().to_vec();
        let both = ServerKeyListIn::from_bytes(&bytes)
            .map(|l| l.verify(&authority.verifying_key()))
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("{e}"));
        keys.apply(both.clone()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            keys.get(ServerId(1), KeyId(1)),
            Some(&key(2).verifying_key())
        );
        assert!(keys.get(ServerId(1), KeyId(0)).is_some());
        // The same list again, or an older one, changes nothing.
        assert!(matches!(
            keys.apply(both),
            Err(Error::StaleServerKeys {
                got: 1,
                held: 1,
                ..
            })
        ));
        keys.apply(list(2, &[(1, 2)], &authority))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(keys.get(ServerId(1), KeyId(0)).is_none());
        assert!(matches!(
            keys.apply(list(1, &[(0, 1), (1, 2)], &authority)),
            Err(Error::StaleServerKeys {
                got: 1,
                held: 2,
                ..
            })
        ));
        assert_eq!(keys.lists().count(), 1);
    }

    #[test]
    fn a_list_under_another_key_or_malformed_is_refused() {
        let authority = key(9);
        let l = list(1, &[(0, 1)], &authority);
        let refused =
            ServerKeyListIn::from_bytes(l.as_bytes()).map(|l| l.verify(&key(8).verifying_key()));
        assert!(matches!(refused, Ok(Err(Error::BadSignature))));
        assert!(ServerKeyListTbs::new(ServerId(1), 1, Vec::new()).is_err());
        assert!(
            ServerKeyListTbs::new(ServerId(1), 0, vec![(KeyId(0), key(1).verifying_key())])
                .is_err()
        );
        let twice = vec![
            (KeyId(3), key(1).verifying_key()),
            (KeyId(3), key(2).verifying_key()),
        ];
        assert!(ServerKeyListTbs::new(ServerId(1), 1, twice).is_err());
        // Every truncation is a typed error.
        for n in 0..l.as_bytes().len() {
            assert!(
                ServerKeyListIn::from_bytes(l.as_bytes().get(..n).unwrap_or_default()).is_err()
            );
        }
    }
}
