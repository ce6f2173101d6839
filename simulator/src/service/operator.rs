//! The service a service-driven simulation talks to: the device calls of a [`Transport`] and the
//! operator's calls, over HTTP ([`Remote`]) or in the same process ([`InProcess`]), so that the
//! same workload measures both.

use std::sync::{Arc, Mutex};

use rand_chacha::ChaCha20Rng;
use treecast_device::{transport::HttpTransport, transport::Transport};
use treecast_distributor::Distributor;
use treecast_distributor::LocalTransport;
use treecast_protocol::credential::UserCredential;
use treecast_protocol::{ClientId, ContentId, Error, LicenseId, UserId};
use treecast_registry::Registry;
use zeroize::Zeroizing;

/// A distributor's service as a simulation drives it.
pub trait Operator: Sync {
    /// The device calls.
    fn transport(&self) -> &(dyn Transport + Sync);

    /// Creates a user: its ID and credential.
    ///
    /// # Errors
    /// The service's refusal or the transport's failure.
    fn create_user(&self) -> Result<(UserId, UserCredential), Error>;

    /// Publishes a content.
    ///
    /// # Errors
    /// As [`Operator::create_user`].
    fn publish(&self, plain: &[u8]) -> Result<ContentId, Error>;

    /// Revokes a client: the new epoch.
    ///
    /// # Errors
    /// As [`Operator::create_user`].
    fn revoke(&self, client: ClientId) -> Result<u64, Error>;

    /// The total billed to a user.
    ///
    /// # Errors
    /// As [`Operator::create_user`].
    fn user_total(&self, user: UserId) -> Result<u64, Error>;

    /// A license's state: `active`, `moved` or `revoked`.
    ///
    /// # Errors
    /// As [`Operator::create_user`].
    fn license_state(
        &self,
        user: UserId,
        credential: &UserCredential,
        license: LicenseId,
    ) -> Result<String, Error>;
}

/// How a [`Remote`] revokes when its license servers cannot (issue 29: they hold no master
/// secret): the authority's revocation, which also publishes the new epoch's EKB.
pub type Revoker = Box<dyn Fn(ClientId) -> Result<u64, Error> + Send + Sync>;

/// A `treecast serve` over HTTP, with its admin token.
pub struct Remote {
    http: HttpTransport,
    token: Zeroizing<String>,
    revoker: Option<Revoker>,
}

impl core::fmt::Debug for Remote {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Remote")
            .field("http", &self.http)
            .finish_non_exhaustive()
    }
}

impl Remote {
    /// The service reached through `http`, administered with `token`.
    pub fn new(http: HttpTransport, token: Zeroizing<String>) -> Self {
        Self {
            http,
            token,
            revoker: None,
        }
    }

    /// Revokes with `revoker` rather than the service's admin endpoint: for license servers
    /// run from their own key files, which leave revoking to the authority.
    #[must_use]
    pub fn with_revoker(mut self, revoker: Revoker) -> Self {
        self.revoker = Some(revoker);
        self
    }
}

impl Operator for Remote {
    fn transport(&self) -> &(dyn Transport + Sync) {
        &self.http
    }

    fn create_user(&self) -> Result<(UserId, UserCredential), Error> {
        self.http.create_user(&self.token)
    }

    fn publish(&self, plain: &[u8]) -> Result<ContentId, Error> {
        self.http.publish(&self.token, plain)
    }

    fn revoke(&self, client: ClientId) -> Result<u64, Error> {
        match &self.revoker {
            Some(revoke) => revoke(client),
            None => self.http.revoke(&self.token, client),
        }
    }

    fn user_total(&self, user: UserId) -> Result<u64, Error> {
        self.http.user_total(&self.token, user)
    }

    fn license_state(
        &self,
        user: UserId,
        credential: &UserCredential,
        license: LicenseId,
    ) -> Result<String, Error> {
        self.http.license_state(user, credential, license)
    }
}

/// A distributor in this process, behind a [`LocalTransport`].
pub struct InProcess<R> {
    distributor: Arc<Distributor<R>>,
    transport: LocalTransport<R>,
    rng: Mutex<ChaCha20Rng>,
}

impl<R> core::fmt::Debug for InProcess<R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("InProcess").finish_non_exhaustive()
    }
}

impl<R: Registry> InProcess<R> {
    /// The service of `distributor`; content keys come from `rng`.
    pub fn new(distributor: Arc<Distributor<R>>, rng: ChaCha20Rng) -> Self {
        Self {
            transport: LocalTransport::new(Arc::clone(&distributor)),
            distributor,
            rng: Mutex::new(rng),
        }
    }

    /// The distributor.
    pub fn distributor(&self) -> &Distributor<R> {
        &self.distributor
    }
}

impl<R: Registry> Operator for InProcess<R> {
    fn transport(&self) -> &(dyn Transport + Sync) {
        &self.transport
    }

    fn create_user(&self) -> Result<(UserId, UserCredential), Error> {
        let user = self.distributor.register_user()?;
        Ok((user, self.distributor.user_credential(user)?))
    }

    fn publish(&self, plain: &[u8]) -> Result<ContentId, Error> {
        let mut container = Vec::new();
        let mut rng = self
            .rng
            .lock()
            .map_err(|_| Error::Internal("random generator lock poisoned"))?;
        let id = self
            .distributor
            .publish(plain, &mut container, &mut *rng)?
            .id;
        self.transport.add_container(id, container)?;
        Ok(id)
    }

    fn revoke(&self, client: ClientId) -> Result<u64, Error> {
        self.distributor.revoke_client(client)
    }

    fn user_total(&self, user: UserId) -> Result<u64, Error> {
        self.distributor.registry().user_total(user)
    }

    fn license_state(
        &self,
        user: UserId,
        credential: &UserCredential,
        license: LicenseId,
    ) -> Result<String, Error> {
        self.distributor.check_user_credential(user, credential)?;
        Ok(self
            .distributor
            .license_state(user, license)?
            .1
            .name()
            .to_owned())
    }
}
