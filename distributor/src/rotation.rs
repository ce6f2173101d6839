//! License server key rotation (issue 29): the authority signs a list of each server's keys
//! into the registry; registration hands devices the lists with the servers' keys, and
//! `GET /v1/servers/{id}/keys` serves one when a device meets a key it does not hold.

use std::sync::Arc;

use ed25519_dalek::VerifyingKey;
use treecast_protocol::Error;
use treecast_protocol::ids::{KeyId, ServerId};
use treecast_protocol::server::{ServerKeyList, ServerKeyListIn, ServerKeyListTbs, ServerKeys};
use treecast_protocol::sign::Signable;
use treecast_registry::Registry;

use crate::Distributor;

impl<R: Registry> Distributor<R> {
    /// The servers' keys as a device registering now receives them: those of this
    /// distributor's key file, with the authority's newest list of each server's keys from the
    /// registry applied over them. A list that does not verify under the authority's key
    /// (written by something else with access to the registry) is left out.
    ///
    /// # Errors
    /// [`Error::Storage`].
    pub fn current_server_keys(&self) -> Result<Arc<ServerKeys>, Error> {
        let lists = self.registry.server_key_lists()?;
        if lists.is_empty() {
            return Ok(self.server_keys());
        }
        let mut keys = ServerKeys::clone(&self.server_keys());
        let authority = self.ekb_key();
        for (_, _, bytes) in lists {
            if let Ok(list) = ServerKeyListIn::from_bytes(&bytes)
                .map_err(Error::from)
                .and_then(|l| l.verify(&authority))
            {
                // A list no newer than the key file's keys (number 0) cannot be: lists start at 1.
                let _ = keys.apply(list);
            }
        }
        Ok(Arc::new(keys))
    }

    /// The authority's newest list of server `id`'s keys, as stored (`None` before the first
    /// rotation: the registration's keys are the server's).
    ///
    /// # Errors
    /// [`Error::Storage`].
    pub fn server_key_list(&self, id: ServerId) -> Result<Option<Vec<u8>>, Error> {
        Ok(self
            .registry
            .server_key_lists()?
            .into_iter()
            .find_map(|(s, _, list)| (s == id).then_some(list)))
    }

    /// The keys that verify server `id`'s objects now, and the number of the list they come
    /// from (0 for the key files' keys, before any list).
    ///
    /// # Errors
    /// [`Error::UnknownServer`] for a server neither a list nor the key file knows;
    /// [`Error::Storage`].
    pub fn server_keys_of(&self, id: ServerId) -> Result<(u64, Vec<(KeyId, VerifyingKey)>), Error> {
        let keys = self.current_server_keys()?;
        let of: Vec<_> = keys
            .iter()
            .filter(|(s, _, _)| *s == id)
            .map(|(_, k, key)| (k, *key))
            .collect();
        if of.is_empty() {
            return Err(Error::UnknownServer(id));
        }
        Ok((keys.sequence(id), of))
    }

    /// The number the next list of server `id`'s keys takes: above the stored row's (whether
    /// or not it verifies) and at least the clock's Unix time, so that a registry restored
    /// from a backup, or a row lost, never makes the authority number a list below one that
    /// devices hold. A rotation also names its new key by this number
    /// (`treecast authority rotate-server-key`), so that no key ID is ever given twice.
    ///
    /// # Errors
    /// [`Error::Storage`], also when the stored number leaves no room.
    pub fn next_server_key_list(&self, id: ServerId) -> Result<u64, Error> {
        let stored = self
            .registry
            .server_key_lists()?
            .into_iter()
            .find_map(|(s, sequence, _)| (s == id).then_some(sequence))
            .unwrap_or(0);
        let after = stored
            .checked_add(1)
            .ok_or_else(|| Error::Storage(format!("the list number of {id} is at its end")))?;
        Ok(after.max(self.clock.now().0))
    }

    /// Signs, as the authority, the list of server `id`'s keys `keys` numbered `sequence`
    /// (from [`Distributor::next_server_key_list`]) and stores it: the keys that verify the
    /// server's objects from now on, on every device that takes it (a key left out is
    /// retired).
    ///
    /// # Errors
    /// [`Error::AuthorityOnly`] for a license server of a delegated subtree;
    /// [`Error::Decode`] for a list of no key, more than 8 or a key ID twice;
    /// [`Error::Storage`], also when a list numbered as high was stored meanwhile (run
    /// again).
    pub fn publish_server_keys(
        &self,
        id: ServerId,
        sequence: u64,
        keys: Vec<(KeyId, VerifyingKey)>,
    ) -> Result<ServerKeyList, Error> {
        let authority = self
            .authority()
            .ok_or(Error::AuthorityOnly("signing a list of a server's keys"))?;
        let tbs = ServerKeyListTbs::new(id, sequence, keys)?;
        let list = tbs.sign_with(KeyId(0), |message| {
            authority.sign_server_keys(message).map_err(Error::from)
        })?;
        if !self
            .registry
            .keep_server_key_list(id, sequence, list.as_bytes())?
        {
            return Err(Error::Storage(format!(
                "a list of {id}'s keys numbered {sequence} or more is stored already: run again"
            )));
        }
        Ok(list)
    }
}
