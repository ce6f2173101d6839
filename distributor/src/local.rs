//! A distributor answering a device in the same process ([`LocalTransport`]): the tests, the
//! simulator and the examples run the device's code against it as against a `treecast serve`.
//! `treecast-device`'s `transport` module walks a device through one.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use ed25519_dalek::SigningKey;
use treecast_protocol::Error;
use treecast_protocol::credential::UserCredential;
use treecast_protocol::ids::{ContentId, ServerId, UserId};
use treecast_protocol::registration::{Registration, RegistrationKey, RegistrationRequest};
use treecast_protocol::transport::Transport;
use treecast_registry::Registry;

use crate::Distributor;

/// A transport to a distributor in the same process, with the containers it publishes.
pub struct LocalTransport<R> {
    distributor: Arc<Distributor<R>>,
    containers: RwLock<HashMap<ContentId, Vec<u8>>>,
}

impl<R> core::fmt::Debug for LocalTransport<R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LocalTransport").finish_non_exhaustive()
    }
}

impl<R: Registry> LocalTransport<R> {
    /// A transport to `distributor`, holding no container yet.
    pub fn new(distributor: Arc<Distributor<R>>) -> Self {
        Self {
            distributor,
            containers: RwLock::new(HashMap::new()),
        }
    }

    /// Makes a published container downloadable.
    ///
    /// # Errors
    /// [`Error::Internal`] if the lock is poisoned.
    pub fn add_container(&self, content: ContentId, container: Vec<u8>) -> Result<(), Error> {
        self.containers
            .write()
            .map_err(|_| Error::Internal("container lock poisoned"))?
            .insert(content, container);
        Ok(())
    }
}

impl<R: Registry> Transport for LocalTransport<R> {
    fn current_ekb(&self) -> Result<(u64, Vec<u8>), Error> {
        let (epoch, ekb) = self.distributor.current_ekb()?;
        Ok((epoch, ekb.as_bytes().to_vec()))
    }

    fn ekb(&self, epoch: u64) -> Result<Vec<u8>, Error> {
        Ok(self.distributor.ekb(epoch)?.as_bytes().to_vec())
    }

    fn server_keys(&self, server: ServerId) -> Result<Option<Vec<u8>>, Error> {
        self.distributor.server_key_list(server)
    }

    /// Seals the registration as a service would (with the system's randomness) and opens it
    /// as the device does, so that the same bytes cross a local transport as a network one.
    fn register(
        &self,
        user: UserId,
        credential: &UserCredential,
        server: ServerId,
        signing_key: &SigningKey,
    ) -> Result<Registration, Error> {
        let request = RegistrationRequest::new(user, server, signing_key)?;
        self.distributor.check_user_credential(user, credential)?;
        let sealed = self.distributor.register_sealed(
            user,
            &request.to_bytes(),
            &mut rand_core::UnwrapErr(getrandom::SysRng),
        )?;
        Registration::open_sealed(&sealed, &RegistrationKey::derive(signing_key)?, &request)
    }

    fn download(
        &self,
        user: UserId,
        credential: &UserCredential,
        content: ContentId,
    ) -> Result<Vec<u8>, Error> {
        self.distributor.check_user_credential(user, credential)?;
        self.distributor.supply_content(user, content)?;
        self.containers
            .read()
            .map_err(|_| Error::Internal("container lock poisoned"))?
            .get(&content)
            .cloned()
            .ok_or(Error::ContentNotFound(content))
    }

    fn license(&self, request: &[u8]) -> Result<Vec<u8>, Error> {
        Ok(self
            .distributor
            .supply_license(request)?
            .as_bytes()
            .to_vec())
    }

    fn certificate(&self, request: &[u8]) -> Result<Vec<u8>, Error> {
        Ok(self
            .distributor
            .supply_certificate(request)?
            .as_bytes()
            .to_vec())
    }

    fn renew(&self, request: &[u8]) -> Result<Vec<u8>, Error> {
        Ok(self.distributor.renew_license(request)?.as_bytes().to_vec())
    }

    fn give_back(&self, request: &[u8]) -> Result<(), Error> {
        self.distributor.return_license(request)
    }
}
