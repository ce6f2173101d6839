//! How a device reaches its distributor: through any [`Transport`] (`treecast-protocol`'s
//! trait), such as a distributor in the same process (`treecast-distributor`'s
//! `LocalTransport`) or a `treecast serve` over HTTP ([`HttpTransport`], feature `http`).
//! [`TransportExt`] adds what a device does with a transport's answers.
//!
//! A transport carries bytes: requests are signed by the device, answers by the servers, and
//! the device verifies every answer itself ([`Client`]), so a transport need not be trusted for
//! integrity. The one secret answer, a registration (it carries the device's key set), is sealed
//! to the device, so a transport need not be confidential either; TLS still hides who buys what.
//!
//! ```
//! use std::sync::Arc;
//! use rand_chacha::ChaCha20Rng;
//! use rand_core::SeedableRng;
//! use treecast_device::Client;
//! use treecast_device::transport::Transport;
//! use treecast_distributor::{Distributor, DistributorConfig, LicenseServer, LocalTransport, Tariff};
//! use treecast_keytree::{Authority, MasterSecret, Scheme, TreeConfig, TreeHeight, TreeId};
//! use treecast_protocol::{Clock, ManualClock, ServerId, SigningKey, UnixTime};
//! use treecast_registry::MemoryRegistry;
//! # fn main() -> Result<(), treecast_protocol::Error> {
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

use treecast_protocol::Error;
use treecast_protocol::ids::{ContentId, ServerId};
pub use treecast_protocol::transport::Transport;

use crate::client::{Client, Device};

#[cfg(feature = "http")]
mod http;
#[cfg(feature = "http")]
pub use http::{HttpTransport, Retries};

/// What a device does with a transport's answers; every [`Transport`] has it.
pub trait TransportExt: Transport {
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

    /// Fetches the authority's newest list of `server`'s keys and takes it when it is newer
    /// than the device's (issue 29): a device that does this before it stores what a server
    /// sends learns of a retired key without waiting to meet a new one. Returns whether the
    /// device's keys changed; no list yet is no change.
    ///
    /// # Errors
    /// The transport's failure; [`Error::BadSignature`] or [`Error::Decode`] for a list that
    /// does not verify under the device's authority key.
    fn refresh_server_keys<D>(&self, device: &mut D, server: ServerId) -> Result<bool, Error>
    where
        D: core::ops::DerefMut<Target = Device>,
    {
        let Some(list) = self.server_keys(server)? else {
            return Ok(false);
        };
        match device.update_server_keys(&list) {
            Ok(()) => Ok(true),
            Err(Error::StaleServerKeys { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Runs `f` (storing a license, moving out or in) and, when it fails on a server key the
    /// device does not hold ([`Error::UnknownServerKey`]: the server's key rotated, issue 29),
    /// fetches the authority's list of that server's keys, takes it and runs `f` once more.
    /// A list that does not verify, or does not help, leaves the first error.
    ///
    /// # Errors
    /// `f`'s.
    fn with_server_keys<D, T>(
        &self,
        device: &mut D,
        mut f: impl FnMut(&mut D) -> Result<T, Error>,
    ) -> Result<T, Error>
    where
        D: core::ops::DerefMut<Target = Device>,
    {
        match f(device) {
            Err(Error::UnknownServerKey(server, key)) => {
                let taken = self.server_keys(server).and_then(|list| {
                    list.ok_or(Error::UnknownServerKey(server, key))
                        .and_then(|list| device.update_server_keys(&list))
                });
                match taken {
                    Ok(()) => f(device),
                    Err(_) => Err(Error::UnknownServerKey(server, key)),
                }
            }
            other => other,
        }
    }
}

impl<T: Transport + ?Sized> TransportExt for T {}
