//! Registering clients (claim 1, registration) and revoking them: a leaf (from the server's
//! own range where the leaves are split, issue 29), a certificate signed by the client's
//! server, the device key set.

use std::sync::Arc;

use ed25519_dalek::VerifyingKey;
use rand_core::CryptoRng;
use treecast_keytree::LeafIndex;
use treecast_protocol::Error;
use treecast_protocol::certificate::{ClientCertificate, ClientCertificateTbs};
use treecast_protocol::ids::{ClientId, ServerId, UserId};
use treecast_protocol::registration::{Registration, RegistrationRequest};
use treecast_protocol::server::ServerKeys;
use treecast_protocol::time::UnixTime;
use treecast_registry::{ClientRecord, Registry};

use crate::{Distributor, NewClient};

impl<R: Registry> Distributor<R> {
    /// Answers a device's registration over a network (issue 24): reads and verifies its
    /// signed [`RegistrationRequest`] for `user`, registers the client
    /// ([`Distributor::register_client`]) and seals the registration to the request's key with
    /// fresh randomness from `rng` ([`Registration::seal`]). What the service and
    /// [`LocalTransport`](crate::LocalTransport) answer.
    ///
    /// # Errors
    /// [`Error::Decode`] for a malformed request; [`Error::BadSignature`] when it is not the
    /// device's for this user; then as [`Distributor::register_client`].
    pub fn register_sealed(
        &self,
        user: UserId,
        request: &[u8],
        rng: &mut impl CryptoRng,
    ) -> Result<Vec<u8>, Error> {
        let request = RegistrationRequest::verify_bytes(request, user)?;
        self.register_client(user, request.server, &request.public_key)?
            .seal(&request, rng)
    }

    /// Registers a client of `user` with license server `server` (claim 1, registration): a
    /// leaf, a public-key certificate signed by that server, the device key set, and the keys
    /// to verify the server and the authority with.
    ///
    /// # Errors
    /// [`Error::UnknownServer`], [`Error::UserNotFound`], [`Error::ClientLimit`], or the tree is
    /// full.
    pub fn register_client(
        &self,
        user: UserId,
        server: ServerId,
        public_key: &VerifyingKey,
    ) -> Result<Registration, Error> {
        self.server(server)?;
        let request = NewClient {
            user,
            server,
            public_key: *public_key,
        };
        let now = self.clock.now();
        let mut certificate = None;
        let limit = self.config.max_clients_per_user;
        let mut build = |id, leaf| {
            let (record, signed) = self.client_row(&request, id, leaf, now)?;
            certificate = Some(signed);
            Ok(record)
        };
        let record = match self.keys.leaves_of(server)? {
            None => self.registry.add_client(user, limit, &mut build)?,
            Some(leaves) => self
                .registry
                .add_client_in(user, limit, leaves, &mut build)?,
        };
        self.registration(&record, certificate, self.current_server_keys()?)
    }

    /// A new client's row, tagged, and its certificate, signed by its server.
    fn client_row(
        &self,
        c: &NewClient,
        id: ClientId,
        leaf: LeafIndex,
        now: UnixTime,
    ) -> Result<(ClientRecord, ClientCertificate), Error> {
        let tree_id = self.keys.config().tree_id;
        let signed = self.server(c.server)?.sign(ClientCertificateTbs::new(
            c.server,
            id,
            c.user,
            leaf,
            tree_id,
            &c.public_key,
            now,
        ))?;
        let record = self.vault.tag_client(ClientRecord::new(
            id,
            c.user,
            leaf,
            c.server,
            signed.as_bytes().to_vec(),
            c.public_key.to_bytes(),
        ));
        Ok((record, signed))
    }

    /// What a client registered as `record` receives, with its certificate.
    fn registration(
        &self,
        record: &ClientRecord,
        certificate: Option<ClientCertificate>,
        servers: Arc<ServerKeys>,
    ) -> Result<Registration, Error> {
        Ok(Registration {
            client_id: record.id,
            user_id: record.user,
            server_id: record.server,
            device_keys: self.keys.device_keys(record.leaf)?,
            certificate: certificate.ok_or(Error::Internal("certificate not built"))?,
            servers,
            authority_key: self.keys.verifying_key(),
        })
    }

    /// Registers several clients, in order, each as [`Distributor::register_client`] would: the
    /// `i`-th gets the `i`-th ID and leaf handed out and its own result. The certificates are
    /// signed on rayon's threads where the store builds rows in parallel (the memory store), so
    /// a batch is not held up behind one signature at a time; the device key sets are derived in
    /// parallel too.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use rand_chacha::ChaCha20Rng;
    /// # use rand_core::SeedableRng;
    /// # use treecast_keytree::{Authority, MasterSecret, Scheme, TreeConfig, TreeHeight, TreeId};
    /// # use treecast_distributor::{Distributor, DistributorConfig, LicenseServer, NewClient, Tariff};
    /// # use treecast_protocol::{ManualClock, ServerId, SigningKey, UnixTime};
    /// # use treecast_registry::MemoryRegistry;
    /// # fn main() -> Result<(), treecast_protocol::Error> {
    /// # let height = TreeHeight::new(16)?;
    /// # let config = TreeConfig::new(Scheme::COMPLETE_SUBTREE, height, TreeId(1));
    /// # let shop = Distributor::new(
    /// #     Authority::new(&MasterSecret::from_bytes([3; 32]), config)?,
    /// #     [LicenseServer::generate(ServerId(1), &mut ChaCha20Rng::seed_from_u64(1))],
    /// #     MemoryRegistry::new(height),
    /// #     Tariff::default(),
    /// #     Arc::new(ManualClock::new(UnixTime(1_800_000_000))),
    /// #     DistributorConfig::default(),
    /// # )?;
    /// let user = shop.register_user()?;
    /// let keys: Vec<SigningKey> = (0..3u8).map(|i| SigningKey::from_bytes(&[10 + i; 32])).collect();
    /// let mut batch: Vec<NewClient> = keys
    ///     .iter()
    ///     .map(|k| NewClient { user, server: ServerId(1), public_key: k.verifying_key() })
    ///     .collect();
    /// batch[1].server = ServerId(9); // no such server: refused, and takes no leaf
    /// let registered = shop.register_clients(&batch);
    /// assert_eq!(registered[0].as_ref().unwrap().client_id.0, 1);
    /// assert!(registered[1].is_err());
    /// assert_eq!(registered[2].as_ref().unwrap().client_id.0, 2);
    /// # Ok(()) }
    /// ```
    pub fn register_clients(&self, clients: &[NewClient]) -> Vec<Result<Registration, Error>>
    where
        R: Sync,
    {
        use rayon::prelude::*;
        if self.keys.splits_leaves() {
            // Leaves from ranges of their own: one by one (a store with ranges is a SQL one,
            // which adds a batch one by one anyway).
            return clients
                .iter()
                .map(|c| self.register_client(c.user, c.server, &c.public_key))
                .collect();
        }
        let now = self.clock.now();
        let certificates: Vec<std::sync::Mutex<Option<ClientCertificate>>> = clients
            .iter()
            .map(|_| std::sync::Mutex::new(None))
            .collect();
        // An unknown server is refused before the registry, as `register_client` refuses it.
        let mut results: Vec<Option<Result<Registration, Error>>> = clients
            .iter()
            .map(|c| self.server(c.server).err().map(Err))
            .collect();
        let known: Vec<usize> = (0..clients.len())
            .filter(|&i| results.get(i).is_some_and(Option::is_none))
            .collect();
        let users: Vec<UserId> = known
            .iter()
            .filter_map(|&i| clients.get(i).map(|c| c.user))
            .collect();
        let build = |k: usize, id: ClientId, leaf| -> Result<ClientRecord, Error> {
            let i = *known.get(k).ok_or(Error::Internal("batch index"))?;
            let c = clients.get(i).ok_or(Error::Internal("batch index"))?;
            let (record, signed) = self.client_row(c, id, leaf, now)?;
            *certificates
                .get(i)
                .ok_or(Error::Internal("batch index"))?
                .lock()
                .map_err(|_| Error::Internal("certificate slot poisoned"))? = Some(signed);
            Ok(record)
        };
        let added = self
            .registry
            .add_clients(&users, self.config.max_clients_per_user, &build);
        // Read once for the batch.
        let servers = self.current_server_keys();
        let registered: Vec<(usize, Result<Registration, Error>)> = known
            .par_iter()
            .zip(added)
            .map(|(&i, record)| {
                let registration = record.and_then(|record| {
                    let certificate = certificates
                        .get(i)
                        .and_then(|slot| slot.lock().ok()?.take());
                    let servers = servers.as_ref().map_err(Clone::clone)?;
                    self.registration(&record, certificate, Arc::clone(servers))
                });
                (i, registration)
            })
            .collect();
        for (i, registration) in registered {
            if let Some(slot) = results.get_mut(i) {
                *slot = Some(registration);
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or(Err(Error::Internal("a client of the batch has no result"))))
            .collect()
    }

    /// Revokes a client (or deregisters it: the same thing for the key tree). A new epoch starts
    /// and its EKB excludes the client. Content keys are stored under the distributor's storage
    /// key, which no device holds, so nothing is re-enveloped. Returns the new epoch.
    ///
    /// The new epoch's EKB is built when it is first asked for (a download, a license), not
    /// here: a batch of revocations builds and stores one EKB, not one per revoked client, and
    /// an epoch nobody was served is never built (`docs/design.md`, "EKBs built when asked").
    ///
    /// # Errors
    /// [`Error::ClientNotFound`], [`Error::ClientRevoked`], [`Error::Tampered`] for a client
    /// row this distributor did not write, or a storage error.
    pub fn revoke_client(&self, client: ClientId) -> Result<u64, Error> {
        if self.keys.full().is_none() {
            return Err(Error::AuthorityOnly("revoking a client"));
        }
        let (_, epoch) = self.registry.revoke_client(client, &mut |stored| {
            let mut row = self.vault.check_client(stored.clone())?;
            row.revoked = true;
            Ok(self.vault.tag_client(row))
        })?;
        Ok(epoch)
    }

    /// Deregisters a client. For the key tree this is a revocation: the leaf's keys are known to
    /// the device, so the leaf is revoked (and never reused) and a new epoch starts.
    ///
    /// # Errors
    /// As [`Distributor::revoke_client`].
    pub fn deregister_client(&self, client: ClientId) -> Result<u64, Error> {
        self.revoke_client(client)
    }
}
