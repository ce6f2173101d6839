//! treecast-distributor: what runs on the distributor's servers. [`Distributor`] does
//! registration, content supply, license supply and copy-certificate supply (claim 1), on one
//! key tree, several license servers ([`LicenseServer`], claim 3), a registry
//! (`treecast-registry`, claims 5, 6) and a [`Tariff`] (claims 7, 8). The supplies of licenses
//! and certificates are in `supply`; the key file in [`keyfile`]; a device in the same process
//! reaches it through [`LocalTransport`].
#![forbid(unsafe_code)]
#![deny(rustdoc::broken_intra_doc_links)]
#![doc(test(attr(deny(warnings))))]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::Arc;

use ed25519_dalek::VerifyingKey;
use rand_core::CryptoRng;
use treecast_keytree::{Authority, Derivation, PayloadKey, TreeConfig};
use treecast_protocol::Error;
use treecast_protocol::content::{self, ContentKey};
use treecast_protocol::credential::UserCredential;
use treecast_protocol::ids::{ClientId, ContentId, KeyId, ServerId, UserId};
use treecast_protocol::server::ServerKeys;
use treecast_protocol::time::{Clock, UnixTime};
use treecast_registry::{ClientRecord, ContentRecord, Registry, RequestTag};

use crate::keyring::Keyring;
use crate::vault::Vault;

pub mod billing;
mod ekbs;
mod giveback;
pub mod hsm;
pub mod keyfile;
mod keyring;
mod local;
mod register;
mod rekey;
mod renew;
mod rotation;
pub mod server;
pub mod serverkeys;
mod status;
mod supply;
mod vault;

pub use billing::{OfferTerms, Tariff};
pub use ekbs::EkbStats;
pub use keyring::{DelegatedKeys, server_subtree};
pub use local::LocalTransport;
pub use rekey::Rekeyed;
pub use server::LicenseServer;
pub use status::{StatusDocument, StatusEvent};

/// Operating limits.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct DistributorConfig {
    /// The most non-revoked clients a user may have.
    pub max_clients_per_user: usize,
    /// How long a copy certificate stays valid, in seconds.
    pub certificate_validity: u64,
    /// The chunk size of packaged content.
    pub chunk_size: u32,
    /// The oldest signed request the server accepts, in seconds before now.
    pub request_max_age: u64,
    /// How far in the future a request may be dated (the clocks of client and server differ),
    /// in seconds.
    pub clock_skew: u64,
    /// The storage key that new content keys are enveloped under; rows name theirs, so raising
    /// it leaves earlier contents readable (`docs/design.md`).
    pub storage_key_id: u32,
    /// The most epochs whose EKB a process keeps in memory (at least one: the current
    /// epoch's always stays); older ones are read back from the registry when asked for.
    pub ekb_cache_epochs: usize,
    /// The most bytes of EKBs a process keeps in memory, beyond the current epoch's.
    pub ekb_cache_bytes: usize,
}

impl DistributorConfig {
    /// The defaults with another client limit.
    #[must_use]
    pub const fn with_max_clients_per_user(mut self, max: usize) -> Self {
        self.max_clients_per_user = max;
        self
    }

    /// The defaults with another certificate validity, in seconds.
    #[must_use]
    pub const fn with_certificate_validity(mut self, seconds: u64) -> Self {
        self.certificate_validity = seconds;
        self
    }

    /// The defaults with another content chunk size (a power of two, 1 KiB to 16 MiB).
    #[must_use]
    pub const fn with_chunk_size(mut self, chunk_size: u32) -> Self {
        self.chunk_size = chunk_size;
        self
    }

    /// The defaults with another freshness window for signed requests: the oldest age accepted
    /// and how far in the future a request may be dated, in seconds.
    #[must_use]
    pub const fn with_request_window(mut self, max_age: u64, clock_skew: u64) -> Self {
        self.request_max_age = max_age;
        self.clock_skew = clock_skew;
        self
    }

    /// The defaults with another storage key for new contents.
    #[must_use]
    pub const fn with_storage_key_id(mut self, key_id: u32) -> Self {
        self.storage_key_id = key_id;
        self
    }

    /// The defaults with another bound on the EKB cache: at most `epochs` epochs (at least the
    /// current one) and `bytes` bytes (the current epoch's EKB stays whatever its size).
    #[must_use]
    pub const fn with_ekb_cache(mut self, epochs: usize, bytes: usize) -> Self {
        self.ekb_cache_epochs = epochs;
        self.ekb_cache_bytes = bytes;
        self
    }
}

impl Default for DistributorConfig {
    /// Five clients a user, certificates valid for an hour, 64 KiB chunks, requests accepted for
    /// five minutes after they are made and up to a minute before, storage key 1, the EKBs of
    /// up to 8 epochs and 256 MiB cached.
    fn default() -> Self {
        Self {
            max_clients_per_user: 5,
            certificate_validity: 3600,
            chunk_size: content::DEFAULT_CHUNK,
            request_max_age: 300,
            clock_skew: 60,
            storage_key_id: 1,
            ekb_cache_epochs: 8,
            ekb_cache_bytes: 256 << 20,
        }
    }
}

/// A license's state as the service reports it.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum LicenseStatus {
    /// Usable by its client.
    Active,
    /// Moved to another of the user's clients.
    Moved,
    /// Its client is revoked (it still plays what it held, in the epochs it held).
    Revoked,
    /// Returned early by its client (issue 27).
    Returned,
    /// Its time has ended (a license with terms past its end, issue 27).
    Expired,
}

impl LicenseStatus {
    /// `active`, `moved`, `revoked`, `returned` or `expired`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Moved => "moved",
            Self::Revoked => "revoked",
            Self::Returned => "returned",
            Self::Expired => "expired",
        }
    }
}

/// A client to register with [`Distributor::register_clients`].
#[derive(Clone, Debug)]
pub struct NewClient {
    /// Its owner.
    pub user: UserId,
    /// The license server it registers with.
    pub server: ServerId,
    /// Its public key.
    pub public_key: VerifyingKey,
}

/// The contents distribution system of one distributor.
///
/// A user buys a content on one client and moves it to another; the README has the whole flow
/// with plays and a revocation, and `examples/distributor.rs` narrates it. Here is the
/// distributor's side of a purchase, the device's signed request made from its protocol type
/// (a device makes it with `treecast-device`'s `Client::license_request`):
///
/// ```
/// use std::sync::Arc;
/// use rand_chacha::ChaCha20Rng;
/// use rand_core::SeedableRng;
/// use treecast_distributor::{Distributor, DistributorConfig, LicenseServer, Tariff};
/// use treecast_keytree::{Authority, MasterSecret, Scheme, TreeConfig, TreeHeight, TreeId};
/// use treecast_protocol::certificate::LicenseRequestTbs;
/// use treecast_protocol::sign::Signable;
/// use treecast_protocol::{Clock, ManualClock, ServerId, SigningKey, UnixTime};
/// use treecast_registry::{MemoryRegistry, Registry};
/// # fn main() -> Result<(), treecast_protocol::Error> {
/// let mut rng = ChaCha20Rng::seed_from_u64(1);
/// let height = TreeHeight::new(16)?;
/// let config = TreeConfig::new(Scheme::COMPLETE_SUBTREE, height, TreeId(1));
/// let clock = Arc::new(ManualClock::new(UnixTime(1_800_000_000)));
/// let shop = Distributor::new(
///     Authority::new(&MasterSecret::from_bytes([3; 32]), config)?,
///     [LicenseServer::generate(ServerId(1), &mut rng)],
///     MemoryRegistry::new(height),
///     Tariff::default(),
///     clock.clone(),
///     DistributorConfig::default(),
/// )?;
/// let user = shop.register_user()?;
/// let key = SigningKey::generate(&mut rng);
/// let client = shop.register_client(user, ServerId(1), &key.verifying_key())?.client_id;
/// let mut container = Vec::new();
/// let content = shop.publish(&b"hello"[..], &mut container, &mut rng)?.id;
/// let request = LicenseRequestTbs::new(client, content, 1, clock.now()).sign(&key);
/// let license = shop.supply_license(request.as_bytes())?;
/// assert_eq!((license.tbs().client_id, license.tbs().content_id), (client, content));
/// assert_eq!(shop.registry().user_total(user)?, 499); // one license at the default tariff
/// # Ok(()) }
/// ```
pub struct Distributor<R> {
    keys: Keyring,
    vault: Vault,
    servers: BTreeMap<ServerId, LicenseServer>,
    server_keys: Arc<ServerKeys>,
    registry: R,
    tariff: Tariff,
    clock: Arc<dyn Clock>,
    config: DistributorConfig,
    ekbs: ekbs::EkbCache,
}

impl<R: Registry> Distributor<R> {
    /// A distributor over `registry`, with its key authority, license servers, tariff and clock.
    ///
    /// The registry is bound to the authority's keys and tree first ([`Registry::bind`]): a new
    /// store records their fingerprint, and a store bound to other keys (another key file,
    /// scheme, height or tree ID) is refused before anything is written to it. User credentials
    /// are derived with the store's random ID ([`UserCredential`]).
    ///
    /// # Errors
    /// [`Error::KeysMismatch`], naming both fingerprints; [`Error::Storage`].
    pub fn new(
        authority: Authority,
        servers: impl IntoIterator<Item = LicenseServer>,
        registry: R,
        tariff: Tariff,
        clock: Arc<dyn Clock>,
        config: DistributorConfig,
    ) -> Result<Self, Error> {
        Self::with_keyring(
            Keyring::authority(authority),
            servers,
            registry,
            tariff,
            clock,
            config,
        )
    }

    /// A license server of a delegated subtree (issue 29): it registers the subtree's devices,
    /// supplies and moves, without the master secret, and reads each epoch's EKB from the
    /// registry, where the authority publishes it (`keyring.rs`). Give it `with_peer_servers`
    /// for the other servers.
    ///
    /// # Errors
    /// As [`Distributor::new`]; [`Error::Storage`] for a store that hands out leaves from one
    /// counter (the memory store, which no authority process could publish into either).
    pub fn delegated(
        keys: DelegatedKeys,
        servers: impl IntoIterator<Item = LicenseServer>,
        registry: R,
        tariff: Tariff,
        clock: Arc<dyn Clock>,
        config: DistributorConfig,
    ) -> Result<Self, Error> {
        if !registry.supports_leaf_ranges() {
            return Err(Error::Storage(
                "a license server with a subtree of its own needs SQLite or PostgreSQL".into(),
            ));
        }
        let distributor = Self::with_keyring(
            Keyring::delegated(keys)?,
            servers,
            registry,
            tariff,
            clock,
            config,
        )?;
        // A key file damaged in its subtree's keys would hand out wrong key sets silently:
        // its own leaf must open the current epoch's EKB, once the authority published it.
        let epoch = distributor.registry.epoch()?;
        match distributor.epoch_key(epoch) {
            Ok(_) | Err(Error::EkbNotPublished(_)) => Ok(distributor),
            Err(Error::KeyTree(treecast_keytree::Error::UnwrapFailed)) => Err(Error::Io(format!(
                "the license server's key file does not open the authority's EKB of epoch \
                 {epoch}: it is damaged, or exported from other keys"
            ))),
            Err(e) => Err(e),
        }
    }

    fn with_keyring(
        keys: Keyring,
        servers: impl IntoIterator<Item = LicenseServer>,
        registry: R,
        tariff: Tariff,
        clock: Arc<dyn Clock>,
        config: DistributorConfig,
    ) -> Result<Self, Error> {
        let fingerprint = keys.fingerprint();
        let registry_id = registry.bind(&fingerprint)?.check(&fingerprint)?;
        let servers: BTreeMap<ServerId, LicenseServer> =
            servers.into_iter().map(|s| (s.id(), s)).collect();
        let server_keys = Arc::new(ServerKeys::with_key_ids(
            servers
                .values()
                .map(|s| (s.id(), s.key_id(), s.verifying_key())),
        ));
        Ok(Self {
            vault: Vault::new(
                keys.distributor_secret(),
                registry.has_outside_writers(),
                &registry_id,
            ),
            keys,
            servers,
            server_keys,
            registry,
            tariff,
            clock,
            config,
            ekbs: ekbs::EkbCache::default(),
        })
    }

    /// Splits the leaves between the license servers by subtree at depth `depth`: server `n`
    /// registers its clients in the `n`-th subtree there, as a license server given that
    /// subtree's keys (`keys export`) does, so that the two can share a registry. For a tree of
    /// the seed-tree derivation; a store with one leaf counter (the memory store, which no
    /// other process shares) keeps it.
    ///
    /// # Errors
    /// [`Error::KeyTree`] for a tree of the flat derivation or a depth not above the leaves;
    /// [`Error::UnknownServer`] for a server of this distributor beyond the split.
    pub fn with_leaf_split(mut self, depth: u8) -> Result<Self, Error> {
        if self.registry.supports_leaf_ranges() {
            self.keys.set_split(depth)?;
            for &id in self.servers.keys() {
                self.keys.leaves_of(id)?;
            }
        }
        Ok(self)
    }

    /// Adds the public keys of license servers this distributor does not hold the keys of (the
    /// other servers of a deployment whose processes each hold one): registration hands them
    /// to clients, which verify with them certificates that move content away.
    #[must_use]
    pub fn with_peer_servers(
        mut self,
        peers: impl IntoIterator<Item = (ServerId, KeyId, VerifyingKey)>,
    ) -> Self {
        let own = self
            .servers
            .values()
            .map(|s| (s.id(), s.key_id(), s.verifying_key()));
        let peers: Vec<_> = peers
            .into_iter()
            .filter(|(id, _, _)| !self.servers.contains_key(id))
            .collect();
        self.server_keys = Arc::new(ServerKeys::with_key_ids(peers.into_iter().chain(own)));
        self
    }

    /// Whether this distributor holds the signing key of server `id`.
    pub fn holds_server(&self, id: ServerId) -> bool {
        self.servers.contains_key(&id)
    }

    /// The registry.
    pub fn registry(&self) -> &R {
        &self.registry
    }

    /// The registry, giving up the distributor.
    pub fn into_registry(self) -> R {
        self.registry
    }

    /// The tariff.
    pub fn tariff(&self) -> &Tariff {
        &self.tariff
    }

    /// The key authority, unless this is a license server of a delegated subtree.
    pub fn authority(&self) -> Option<&Authority> {
        self.keys.full()
    }

    /// The key EKBs are signed with.
    pub fn ekb_key(&self) -> VerifyingKey {
        self.keys.verifying_key()
    }

    /// The tree.
    pub fn tree(&self) -> &TreeConfig {
        self.keys.config()
    }

    /// How the tree's keys are derived.
    pub fn derivation(&self) -> Derivation {
        self.keys.derivation()
    }

    /// The payload key of `epoch`: derived by the authority, or opened from the epoch's EKB by
    /// a license server of a delegated subtree (`keyring.rs`).
    pub(crate) fn epoch_key(&self, epoch: u64) -> Result<PayloadKey, Error> {
        self.keys.epoch_key(epoch, || self.ekb(epoch))
    }

    /// The public keys of every license server in the key files, with their key IDs;
    /// registration hands them to clients with the authority's lists from the registry
    /// ([`Distributor::current_server_keys`]).
    pub fn server_keys(&self) -> Arc<ServerKeys> {
        Arc::clone(&self.server_keys)
    }

    /// The public key of a license server.
    ///
    /// # Errors
    /// [`Error::UnknownServer`].
    pub fn server_key(&self, id: ServerId) -> Result<VerifyingKey, Error> {
        Ok(self.server(id)?.verifying_key())
    }

    /// The current key epoch.
    ///
    /// # Errors
    /// [`Error::Storage`].
    pub fn epoch(&self) -> Result<u64, Error> {
        self.registry.epoch()
    }

    /// Registers a user.
    ///
    /// # Errors
    /// [`Error::Storage`].
    pub fn register_user(&self) -> Result<UserId, Error> {
        self.registry.add_user()
    }

    /// The credential of `user`, which they show to register devices and read their rows over
    /// the network service (derived from the distributor secret; see [`UserCredential`]).
    ///
    /// # Errors
    /// [`Error::UserNotFound`], [`Error::Storage`].
    pub fn user_credential(&self, user: UserId) -> Result<UserCredential, Error> {
        let epoch = self
            .registry
            .credential_epoch(user)?
            .ok_or(Error::UserNotFound(user))?;
        Ok(self.vault.user_credential(user, epoch))
    }

    /// Rotates `user`'s credential (issue 29): the credential epoch rises by one, durably, and
    /// the new credential is answered; the old one no longer checks. Nothing else of the user
    /// changes: devices, licenses and bills stay.
    ///
    /// # Errors
    /// [`Error::UserNotFound`], [`Error::Storage`].
    pub fn rotate_user_credential(&self, user: UserId) -> Result<UserCredential, Error> {
        let epoch = self.registry.rotate_credential(user)?;
        Ok(self.vault.user_credential(user, epoch))
    }

    /// Checks that `credential` is `user`'s at the user's credential epoch (in constant time).
    ///
    /// # Errors
    /// [`Error::BadCredential`] when it is not (or there is no such user); [`Error::Storage`].
    pub fn check_user_credential(
        &self,
        user: UserId,
        credential: &UserCredential,
    ) -> Result<(), Error> {
        // A missing user is refused as a wrong credential is: the answer names no user.
        let Some(epoch) = self.registry.credential_epoch(user)? else {
            return Err(Error::BadCredential);
        };
        if self.vault.user_credential(user, epoch) == *credential {
            Ok(())
        } else {
            Err(Error::BadCredential)
        }
    }

    /// The state of `user`'s license `license`: active, moved away, or revoked (its client
    /// is). Another user's license is [`Error::LicenseNotFound`], as a missing one is.
    ///
    /// # Errors
    /// [`Error::LicenseNotFound`], [`Error::Tampered`] for a row this distributor did not
    /// write, [`Error::Storage`].
    pub fn license_state(
        &self,
        user: UserId,
        license: treecast_protocol::ids::LicenseId,
    ) -> Result<(treecast_registry::LicenseRecord, LicenseStatus), Error> {
        let record = self
            .registry
            .license(license)?
            .filter(|l| l.user == user)
            .ok_or(Error::LicenseNotFound(license))?;
        let record = self.vault.check_license(record)?;
        let revoked = self
            .registry
            .client(record.client)?
            .is_none_or(|c| c.revoked);
        let status = match record.state {
            treecast_registry::LicenseState::Moved => LicenseStatus::Moved,
            treecast_registry::LicenseState::Returned => LicenseStatus::Returned,
            _ if revoked => LicenseStatus::Revoked,
            _ if record
                .terms
                .is_some_and(|t| self.clock.now() >= t.not_after()) =>
            {
                LicenseStatus::Expired
            }
            _ => LicenseStatus::Active,
        };
        Ok((record, status))
    }

    /// Packages `input` as a new content under a fresh content key and writes the container to
    /// `output` (claim 1, content supply). The key is kept only enveloped under the
    /// distributor's storage key (`DistributorConfig::storage_key_id`).
    ///
    /// # Errors
    /// [`Error::Io`] when reading or writing fails.
    pub fn publish(
        &self,
        input: impl Read,
        mut output: impl Write,
        rng: &mut impl CryptoRng,
    ) -> Result<ContentRecord, Error> {
        let epoch = self.registry.epoch()?;
        let key = ContentKey::generate(rng);
        let nonce = content::Nonce::generate(rng);
        let key_id = self.config.storage_key_id;
        let mut input = Some(input);
        let mut nonce = Some(nonce);
        self.registry.add_content(&mut |id| {
            let (Some(input), Some(nonce)) = (input.take(), nonce.take()) else {
                return Err(Error::Internal("content builder called twice"));
            };
            content::package(
                id,
                epoch,
                self.config.chunk_size,
                &key,
                nonce,
                input,
                &mut output,
            )?;
            let envelope = self.vault.seal(key_id, id, &key)?;
            Ok(ContentRecord::new(id, key_id, envelope))
        })
    }

    /// Packages the clear fragmented MP4 `clear` with Common Encryption as a new content
    /// (issue 30, `docs/cenc.md`) and writes the protected MP4 to `output`: its samples are
    /// encrypted under the key derived from a fresh content key (`treecast_protocol::cenc`),
    /// named by the key ID of its content ID, and the content key is kept enveloped as for any
    /// content, so that a license carries it.
    ///
    /// # Errors
    /// [`Error::Decode`] for a file `treecast-cenc` refuses (named), [`Error::Io`].
    pub fn publish_cenc(
        &self,
        clear: &[u8],
        mut output: impl Write,
        rng: &mut impl CryptoRng,
    ) -> Result<ContentRecord, Error> {
        let key = ContentKey::generate(rng);
        let key_id = self.config.storage_key_id;
        let mut rng = Some(rng);
        self.registry.add_content(&mut |id| {
            let rng = rng
                .take()
                .ok_or(Error::Internal("content builder called twice"))?;
            let sample_key = treecast_protocol::cenc::key(&key, id)?;
            let cenc = treecast_cenc::CencKey::from_bytes(*sample_key.secret_bytes());
            let kid = treecast_cenc::KeyId(treecast_protocol::cenc::key_id(id));
            let protected = treecast_cenc::encrypt(clear, &cenc, kid, rng).map_err(|e| {
                Error::Decode(treecast_keytree::DecodeError::InvalidValue(match e {
                    treecast_cenc::Error::Malformed(w)
                    | treecast_cenc::Error::Unsupported(w)
                    | treecast_cenc::Error::WrongState(w) => w,
                    _ => "a clear fragmented MP4",
                }))
            })?;
            output.write_all(&protected)?;
            let envelope = self.vault.seal(key_id, id, &key)?;
            Ok(ContentRecord::new(id, key_id, envelope))
        })
    }

    /// Records that `user` downloaded `content` (claim 6). The container itself is public.
    ///
    /// # Errors
    /// [`Error::UserNotFound`], [`Error::ContentNotFound`].
    pub fn supply_content(&self, user: UserId, content: ContentId) -> Result<(), Error> {
        self.registry.record_download(user, content)
    }

    /// Checks what only this distributor can check in its registry: every client and license row
    /// carries its tag, and every content key opens. Returns the rows that fail, at most `limit`
    /// of them; [`registry::audit`](treecast_registry::audit) checks the invariants between rows.
    ///
    /// # Errors
    /// [`Error::Storage`] when the store fails.
    pub fn check_stored_rows(&self, limit: usize) -> Result<Vec<String>, Error> {
        let mut found = Vec::new();
        let mut report = |v: String| {
            if found.len() < limit {
                found.push(v);
            }
        };
        let forged = |id: &dyn core::fmt::Display| {
            format!("{id}: its row is not authenticated (forged or altered)")
        };
        // Streamed user by user: a registry of millions of clients is checked a page at a time.
        self.registry.scan_users(&mut |rows| {
            for c in rows.clients {
                let id = c.id;
                if self.vault.check_client(c).is_err() {
                    report(forged(&id));
                }
            }
            for l in rows.licenses {
                let id = l.id;
                if self.vault.check_license(l).is_err() {
                    report(forged(&id));
                }
            }
            Ok(())
        })?;
        for c in self.registry.contents()? {
            if self.vault.open(&c).is_err() {
                report(format!("{}: its content key does not open", c.id));
            }
        }
        Ok(found)
    }

    /// A client row, after checking this distributor's tag on it.
    pub(crate) fn trusted_client(&self, id: ClientId) -> Result<ClientRecord, Error> {
        self.trusted(id, self.registry.client(id)?)
    }

    /// Client `id`'s row as read, checked against this distributor's tag.
    pub(crate) fn trusted(
        &self,
        id: ClientId,
        row: Option<ClientRecord>,
    ) -> Result<ClientRecord, Error> {
        self.vault
            .check_client(row.ok_or(Error::ClientNotFound(id))?)
    }

    /// Refuses a request made longer ago than the window, or dated beyond the clock skew; tags
    /// a fresh one for the registry. A replay is stale once `created_at + request_max_age` has
    /// passed; the tag is kept one window more, so that a server clock stepping back by up to a
    /// window lets no replay through.
    fn fresh_tag(
        &self,
        nonce: u64,
        created_at: UnixTime,
        bytes: &[u8],
    ) -> Result<RequestTag, Error> {
        let now = self.clock.now();
        let oldest = now.0.saturating_sub(self.config.request_max_age);
        let newest = now.plus(self.config.clock_skew);
        if created_at.0 < oldest || created_at > newest {
            return Err(Error::RequestStale);
        }
        let forget_after = created_at
            .plus(self.config.request_max_age)
            .plus(self.config.request_max_age);
        Ok(RequestTag::of(nonce, bytes).with_window(now, forget_after))
    }

    /// The tag of an authenticated request of `client`: fresh ([`Distributor::fresh_tag`]),
    /// or stale yet recorded with these very bytes, `(tag, true)`: a device retrying after a
    /// lost answer, later than the window. Such a request changes nothing; the caller answers
    /// it again from the rows it produced (the same object, billed once). A request whose
    /// record the store has forgotten is stale.
    pub(crate) fn tag_or_recorded(
        &self,
        client: ClientId,
        nonce: u64,
        created_at: UnixTime,
        bytes: &[u8],
    ) -> Result<(RequestTag, bool), Error> {
        match self.fresh_tag(nonce, created_at, bytes) {
            Ok(tag) => Ok((tag, false)),
            Err(Error::RequestStale) => {
                let tag = RequestTag::of(nonce, bytes);
                let recorded = self
                    .registry
                    .used_request(client, nonce)?
                    .is_some_and(|u| u.digest == tag.digest);
                if recorded {
                    Ok((tag, true))
                } else {
                    Err(Error::RequestStale)
                }
            }
            Err(e) => Err(e),
        }
    }

    fn server(&self, id: ServerId) -> Result<&LicenseServer, Error> {
        self.servers.get(&id).ok_or(Error::UnknownServer(id))
    }
}

fn client_key(bytes: &[u8; 32]) -> Result<VerifyingKey, Error> {
    VerifyingKey::from_bytes(bytes).map_err(|_| Error::BadSignature)
}
