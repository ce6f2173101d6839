//! How a device reaches its distributor: one request, one answer ([`Transport`]). The same
//! device code runs against a distributor in the same process (`treecast-distributor`'s
//! `LocalTransport`) or a `treecast serve` over HTTP (`treecast-device`'s `HttpTransport`,
//! feature `http`); the device crate's `transport` module shows a whole walk through one.
//!
//! A transport carries bytes: requests are signed by the device, answers by the servers, and
//! the device verifies every answer itself, so a transport need not be trusted for integrity.
//! The one secret answer, a registration (it carries the device's key set), is sealed to the
//! device, so a transport need not be confidential either; TLS still hides who buys what.

use ed25519_dalek::SigningKey;

use crate::Error;
use crate::credential::UserCredential;
use crate::ids::{ContentId, ServerId, UserId};
use crate::registration::Registration;

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

    /// The authority's newest signed list of server `server`'s keys (issue 29), which the
    /// device checks itself (`Device::update_server_keys`); `None` before any list of that
    /// server's keys (the keys of the device's registration stand).
    ///
    /// # Errors
    /// The transport's failure.
    fn server_keys(&self, server: ServerId) -> Result<Option<Vec<u8>>, Error>;

    /// Registers the device holding `signing_key`, of `user` (who shows `credential`), with
    /// license server `server`. The device sends its public keys ([`RegistrationRequest`](crate::registration::RegistrationRequest)) and
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
    /// As the distributor's `supply_license`.
    fn license(&self, request: &[u8]) -> Result<Vec<u8>, Error>;

    /// A signed move request in, the copy certificate out.
    ///
    /// # Errors
    /// As the distributor's `supply_certificate`.
    fn certificate(&self, request: &[u8]) -> Result<Vec<u8>, Error>;

    /// A signed renewal request in, the renewed license out (issue 27).
    ///
    /// # Errors
    /// As the distributor's `renew_license`.
    fn renew(&self, request: &[u8]) -> Result<Vec<u8>, Error>;

    /// A signed return request in (issue 27); nothing out once the license is returned.
    ///
    /// # Errors
    /// As the distributor's `return_license`.
    fn give_back(&self, request: &[u8]) -> Result<(), Error>;
}
