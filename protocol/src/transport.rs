//! How a device reaches its distributor: the same client code runs against a distributor in
//! the same process ([`LocalTransport`]) or a `treecast serve` over HTTP
//! (`HttpTransport`, feature `http`).
//!
//! A transport carries bytes: requests are signed by the device, answers by the servers, and
//! the device verifies every answer itself ([`Client`]), so a transport need not
//! be trusted for integrity. The one secret answer, a registration (it carries the device's key
//! set), is sealed to the device, so a transport need not be confidential either; TLS still
//! hides who buys what.
//!
//! ```
//! use std::sync::Arc;
//! use rand_chacha::ChaCha20Rng;
//! use rand_core::SeedableRng;
//! use treecast_license::keytree::{Authority, MasterSecret, Scheme, TreeConfig, TreeHeight, TreeId};
//! use treecast_license::transport::{LocalTransport, Transport};
//! use treecast_license::{
//!     Client, Clock, Distributor, DistributorConfig, LicenseServer, ManualClock, ServerId,
//!     SigningKey, Tariff, UnixTime, registry::MemoryRegistry,
//! };
//! # fn main() -> Result<(), treecast_license::Error> {
//! let mut rng = ChaCha20Rng::seed_from_u64(1);
//! let height = TreeHeight::new(16)?;
//! let clock = Arc::new(ManualClock::new(UnixTime(1_800_000_000)));
//! let shop = Arc::new(Distributor::new(
//!     Authority::new(&MasterSecret::from_bytes([3; 32]), TreeConfig::new(Scheme::COMPLETE_SUBTREE, height, TreeId(1)))?,
//!     [LicenseServer::generate(ServerId(1), &mut rng)],
//!     MemoryRegistry::new(height),
//!     Tariff::default(),
//!     clock.clone(),
//!     DistributorConfig::default(),
//! )?);
//! let user = shop.register_user()?;
//! let credential = shop.user_credential(user)?;
//! let mut container = Vec::new();
//! let content = shop.publish(&b"hello"[..], &mut container, &mut rng)?.id;
//! let transport = LocalTransport::new(shop);
//! transport.add_container(content, container)?;
//!
//! // The device's side: the same through any transport.
//! let key = SigningKey::generate(&mut rng);
//! let registration = transport.register(user, &credential, ServerId(1), &key)?;
//! let mut client = Client::new(key, registration)?;
//! client.store_ekb(&transport.current_ekb()?.1)?;
//! client.store_content(transport.download(user, &credential, content)?)?;
//! let request = client.license_request(content, clock.now());
//! client.acquire_license(&transport.license(request.as_bytes())?)?;
//! let mut out = Vec::new();
//! client.play(content, &mut out)?;
//! assert_eq!(out, b"hello");
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use ed25519_dalek::SigningKey;

use crate::Error;
use crate::client::Client;
use crate::credential::UserCredential;
use crate::distributor::Distributor;
use crate::ids::{ContentId, ServerId, UserId};
use crate::registration::{Registration, RegistrationKey, RegistrationRequest};
use crate::registry::Registry;

#[cfg(feature = "http")]
mod http;
#[cfg(feature = "http")]
pub use http::HttpTransport;

/// What a device asks of its distributor. Every method is one request and one answer; a
/// request that failed can be sent again (the same bytes).
pub trait Transport {
    /// The current epoch and its signed EKB.
    ///
    /// # Errors
    /// The distributor's refusal, or the transport's failure.
    fn current_ekb(&self) -> Result<(u64, Vec<u8>), Error>;

    /// The signed EKB of an earlier epoch (every epoch a license was issued in is kept).
    ///
    /// # Errors
    /// [`Error::StaleEpoch`] (or the service's `not_found`) for an epoch without one.
    fn ekb(&self, epoch: u64) -> Result<Vec<u8>, Error>;

    /// Fetches and stores the EKB of the epoch of `client`'s license for `content` when the
    /// client lacks it (after a license or a move that came in a newer epoch than its EKB).
    ///
    /// # Errors
    /// As [`Transport::ekb`] and [`Device::store_ekb`](crate::Device::store_ekb).
    fn complete(&self, client: &mut Client, content: ContentId) -> Result<(), Error> {
        if let Some(epoch) = client.missing_ekb(content) {
            client.store_ekb(&self.ekb(epoch)?)?;
        }
        Ok(())
    }

    /// Registers the device holding `signing_key`, of `user` (who shows `credential`), with
    /// license server `server`. The device sends its public keys ([`RegistrationRequest`]) and
    /// receives its registration sealed to it ([`Registration::seal`]), which it opens with the
    /// key derived from `signing_key`: the key set never crosses the transport in the clear.
    ///
    /// # Errors
    /// [`Error::BadCredential`], [`Error::ClientLimit`], [`Error::UnknownServer`],
    /// [`Error::UnwrapFailed`] for an answer not sealed to this device, …
    fn register(
        &self,
        user: UserId,
        credential: &UserCredential,
        server: ServerId,
        signing_key: &SigningKey,
    ) -> Result<Registration, Error>;

    /// A content's container (recording that `user` downloaded it, claim 6).
    ///
    /// # Errors
    /// [`Error::BadCredential`], [`Error::ContentNotFound`], …
    fn download(
        &self,
        user: UserId,
        credential: &UserCredential,
        content: ContentId,
    ) -> Result<Vec<u8>, Error>;

    /// A signed license request in, the signed license out.
    ///
    /// # Errors
    /// As [`Distributor::supply_license`].
    fn license(&self, request: &[u8]) -> Result<Vec<u8>, Error>;

    /// A signed move request in, the copy certificate out.
    ///
    /// # Errors
    /// As [`Distributor::supply_certificate`].
    fn certificate(&self, request: &[u8]) -> Result<Vec<u8>, Error>;
}

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
        let request = RegistrationRequest::verify_bytes(&request.to_bytes(), user)?;
        let sealed = self
            .distributor
            .register_client(user, request.server, &request.public_key)?
            .seal(&request, &mut rand_core::UnwrapErr(getrandom::SysRng))?;
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
}
