//! treecast-registry: the distributor's registry, the customer-related tables of claim 5,
//! behind a storage-neutral trait ([`Registry`]): in memory ([`MemoryRegistry`]), in a SQLite
//! file (feature `sqlite`, default) or on PostgreSQL (feature `postgres`), with audits and
//! scans, the billing ledger ([`billing`]) and what a store is bound to ([`binding`]).
//!
//! The seven tables are: leaf ID ↔ client ID, client ID ↔ client public-key certificate,
//! client ID ↔ user ID, content ID ↔ license IDs, user ID ↔ downloaded content IDs, user ID ↔
//! downloaded license IDs, and the history of certificate issues. They are updated on every
//! content supply and every license supply (claim 6).
//!
//! Every method is one atomic change: it applies completely or not at all, and a failed call
//! leaves the tables as they were. Methods that create a row take a `build` closure, called
//! inside the change with the new row's IDs, so that signing a certificate and storing it are one
//! step. The claim-4 checks of a move run inside the change too, through [`check_move`], shared by
//! every implementation.
#![forbid(unsafe_code)]
#![deny(rustdoc::broken_intra_doc_links)]
#![doc(test(attr(deny(warnings))))]

use treecast_keytree::LeafIndex;

use crate::billing::Charge;
pub use crate::billing::LedgerEntry;
pub use crate::binding::StoreBinding;
use treecast_protocol::Error;
use treecast_protocol::binding::KeyFingerprint;
use treecast_protocol::ids::{CertificateId, ClientId, ContentId, LicenseId, ServerId, UserId};
use treecast_protocol::license::Rights;
pub use treecast_protocol::terms::{Offer, Terms};
use treecast_protocol::time::UnixTime;

mod audit;
pub mod billing;
pub mod binding;
mod boxed;
mod memory;
mod moves;
#[cfg(feature = "postgres")]
mod postgres;
mod scan;
mod spec;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) mod sql;
#[cfg(feature = "sqlite")]
mod sqlite;
mod timed;

pub use audit::{Audit, AuditCounts, audit, audit_report};
pub use billing::ChargeKind;
pub use binding::RegistryId;
pub use scan::UserRows;
pub use spec::StoreSpec;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use sql::SqlRegistry;
pub(crate) use timed::allowed_change;
pub use timed::{LoanLimit, check_held};

pub use memory::MemoryRegistry;
pub use moves::{MoveContext, MoveIntent, RequestTag, UsedRequest, check_move};
#[cfg(feature = "postgres")]
pub use postgres::{PostgresDriver, PostgresRegistry, SCHEMA_VERSION as POSTGRES_SCHEMA_VERSION};
#[cfg(feature = "sqlite")]
pub use sqlite::{
    Durability, SCHEMA_VERSION as SQLITE_SCHEMA_VERSION, SqliteDriver, SqliteRegistry,
};

/// A registered client.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct ClientRecord {
    /// The client.
    pub id: ClientId,
    /// Its owner (client ID ↔ user ID).
    pub user: UserId,
    /// Its leaf (leaf ID ↔ client ID).
    pub leaf: LeafIndex,
    /// The license server it registered with.
    pub server: ServerId,
    /// Its signed public-key certificate (client ID ↔ certificate).
    pub certificate: Vec<u8>,
    /// Its Ed25519 public key (also inside the certificate).
    pub public_key: [u8; 32],
    /// Whether it has been revoked (or deregistered).
    pub revoked: bool,
    /// The distributor's tag over the fields above (see `docs/design.md`, "What the server
    /// trusts in the registry"); zero until the distributor sets it, and always zero in a
    /// store that keeps no tags ([`Registry::has_outside_writers`]).
    pub tag: [u8; 32],
}

/// What audits need of a client: its ID, owner, leaf and state, without its certificate.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct ClientSummary {
    /// The client.
    pub id: ClientId,
    /// Its owner.
    pub user: UserId,
    /// Its leaf.
    pub leaf: LeafIndex,
    /// Whether it has been revoked.
    pub revoked: bool,
}

impl From<&ClientRecord> for ClientSummary {
    fn from(c: &ClientRecord) -> Self {
        Self {
            id: c.id,
            user: c.user,
            leaf: c.leaf,
            revoked: c.revoked,
        }
    }
}

impl ClientRecord {
    /// A new, not revoked client.
    pub const fn new(
        id: ClientId,
        user: UserId,
        leaf: LeafIndex,
        server: ServerId,
        certificate: Vec<u8>,
        public_key: [u8; 32],
    ) -> Self {
        Self {
            id,
            user,
            leaf,
            server,
            certificate,
            public_key,
            revoked: false,
            tag: [0; 32],
        }
    }
}

/// A content item: its key, enveloped under the distributor's storage key `key_id`.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct ContentRecord {
    /// The content.
    pub id: ContentId,
    /// The storage key the envelope is under (derived from the distributor's secret, never from
    /// a key any device holds).
    pub key_id: u32,
    /// The content key, AES-key-wrapped under a key derived from storage key `key_id`.
    pub envelope: [u8; 24],
}

impl ContentRecord {
    /// A record.
    pub const fn new(id: ContentId, key_id: u32, envelope: [u8; 24]) -> Self {
        Self {
            id,
            key_id,
            envelope,
        }
    }
}

/// Whether a license can still be used.
#[allow(
    clippy::exhaustive_enums,
    reason = "the distributor's vault, another crate, tags every state: a new one must be tagged"
)]
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub enum LicenseState {
    /// Usable by its client.
    Active,
    /// Moved to another client by a copy certificate; no longer usable.
    Moved,
    /// Returned early by its client (a loan or a rental, issue 27); no longer usable.
    Returned,
}

/// An issued license.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct LicenseRecord {
    /// The license.
    pub id: LicenseId,
    /// Its content.
    pub content: ContentId,
    /// The one client that may use it.
    pub client: ClientId,
    /// The owner.
    pub user: UserId,
    /// The epoch it is bound to.
    pub epoch: u64,
    /// What it allows (a license that arrived by a move has the rights of the one it came from).
    pub rights: Rights,
    /// Whether it is still usable.
    pub state: LicenseState,
    /// The certificate that created it, for a license that arrived by a move.
    pub origin: Option<CertificateId>,
    /// When it was issued.
    pub issued_at: UnixTime,
    /// Its time-bounded rights, `None` for a perpetual purchase (issue 27). A license that
    /// arrived by a move has the terms of the one it came from: a move never extends them.
    pub terms: Option<Terms>,
    /// The distributor's tag over the fields above; zero until the distributor sets it, and
    /// always zero in a store that keeps no tags ([`Registry::has_outside_writers`]).
    pub tag: [u8; 32],
}

impl LicenseRecord {
    /// A new, active license that allows playing and moving.
    pub const fn new(
        id: LicenseId,
        content: ContentId,
        client: ClientId,
        user: UserId,
        epoch: u64,
        origin: Option<CertificateId>,
        issued_at: UnixTime,
    ) -> Self {
        Self {
            id,
            content,
            client,
            user,
            epoch,
            rights: Rights::PLAY_AND_MOVE,
            state: LicenseState::Active,
            origin,
            issued_at,
            terms: None,
            tag: [0; 32],
        }
    }

    /// The same license with terms (`None`: perpetual).
    #[must_use]
    pub const fn with_terms(mut self, terms: Option<Terms>) -> Self {
        self.terms = terms;
        self
    }

    /// The same license with other rights.
    #[must_use]
    pub const fn with_rights(mut self, rights: Rights) -> Self {
        self.rights = rights;
        self
    }
}

/// One entry of the history of certificate issues. The distributor, another crate, builds it
/// field by field.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct CertificateRecord {
    /// The certificate.
    pub id: CertificateId,
    /// The user who owns both clients.
    pub user: UserId,
    /// The content moved.
    pub content: ContentId,
    /// The client it moved from.
    pub source: ClientId,
    /// The license moved away from.
    pub source_license: LicenseId,
    /// The client it moved to.
    pub destination: ClientId,
    /// The license issued to the destination.
    pub destination_license: LicenseId,
    /// The server that signed the certificate (the destination's).
    pub server: ServerId,
    /// When it was issued.
    pub issued_at: UnixTime,
    /// When it expires.
    pub expires_at: UnixTime,
}

/// Refuses a revoked row that is not the stored row revoked: another client, owner, leaf or key.
pub(crate) fn check_revoked(stored: &ClientRecord, revoked: &ClientRecord) -> Result<(), Error> {
    if revoked.id != stored.id
        || revoked.user != stored.user
        || revoked.leaf != stored.leaf
        || revoked.server != stored.server
        || revoked.public_key != stored.public_key
        || !revoked.revoked
    {
        return Err(Error::Internal("revocation changed the client"));
    }
    Ok(())
}

/// Builds a client's record given its new ID and leaf.
pub type ClientBuilder<'a> = &'a mut dyn FnMut(ClientId, LeafIndex) -> Result<ClientRecord, Error>;
/// Builds the records of [`Registry::add_clients`] given a request's index, its new ID and its
/// leaf; a store may call it on several threads at once.
pub type ClientsBuilder<'a> =
    &'a (dyn Fn(usize, ClientId, LeafIndex) -> Result<ClientRecord, Error> + Sync);
/// Builds a content record given its new ID.
pub type ContentBuilder<'a> = &'a mut dyn FnMut(ContentId) -> Result<ContentRecord, Error>;
/// Builds a license record given its new ID.
pub type LicenseBuilder<'a> = &'a mut dyn FnMut(LicenseId) -> Result<LicenseRecord, Error>;
/// Given a license row as stored (checked by [`check_held`]), returns it changed, or refuses:
/// renewed (new terms, issue time and tag) or returned (state [`LicenseState::Returned`] and
/// tag).
pub type LicenseChanger<'a> = &'a mut dyn FnMut(&LicenseRecord) -> Result<LicenseRecord, Error>;
/// Builds the rows of a checked move, given the new certificate and license IDs.
pub type MoveBuilder<'a> =
    &'a mut dyn FnMut(&MoveContext, CertificateId, LicenseId) -> Result<MoveRows, Error>;
/// Given a client row as stored, returns it revoked (with its new tag), or refuses.
pub type Revoker<'a> = &'a mut dyn FnMut(&ClientRecord) -> Result<ClientRecord, Error>;

/// The rows a move writes.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct MoveRows {
    /// The source's license as it is to be stored: marked moved, with its new tag.
    pub moved: LicenseRecord,
    /// The destination's new license.
    pub license: LicenseRecord,
    /// The history entry.
    pub history: CertificateRecord,
}

impl MoveRows {
    /// The rows of one move.
    pub const fn new(
        moved: LicenseRecord,
        license: LicenseRecord,
        history: CertificateRecord,
    ) -> Self {
        Self {
            moved,
            license,
            history,
        }
    }

    /// Refuses rows that do not fit the move they were built for.
    pub(crate) fn check(
        &self,
        ctx: &MoveContext,
        certificate: CertificateId,
        license: LicenseId,
    ) -> Result<(), Error> {
        let moved = &self.moved;
        if self.license.id != license
            || self.history.id != certificate
            || self.license.client != ctx.destination.id
            || self.license.user != ctx.source.user
            || moved.id != ctx.license.id
            || moved.client != ctx.license.client
            || moved.state != LicenseState::Moved
        {
            return Err(Error::Internal("move builder changed the IDs"));
        }
        // A move never changes a license's time (issue 27).
        if moved.terms != ctx.license.terms || self.license.terms != ctx.license.terms {
            return Err(Error::Internal("move builder changed the terms"));
        }
        Ok(())
    }
}

/// How deep [`Registry::probe`] looks.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum Probe {
    /// A readiness check: cheap, run every second or so.
    Ready,
    /// Before serving: may read the whole store.
    Startup,
}

/// The registry's tables and the atomic changes to them.
pub trait Registry: Send + Sync {
    /// Whether anyone but this process can write the store's rows (a database, a file). Only
    /// then do client and license rows carry the distributor's tag, checked whenever a row is
    /// read to act on (`docs/threat-model.md`, "SQL write access"). A store in the process's
    /// own memory has no such writer, and keeps no tags: whoever can write its rows can read
    /// the tag key beside them. `true` unless a store says otherwise.
    fn has_outside_writers(&self) -> bool {
        true
    }

    /// Binds the store to the distributor keys of fingerprint `keys` if it is bound to none yet
    /// (a new store), and returns what it is bound to: its random ID, made with it, and the
    /// fingerprint of its keys. `Distributor::new` (`treecast-distributor`) refuses a store
    /// bound to other keys before it writes anything (`binding.rs`).
    ///
    /// # Errors
    /// [`Error::Storage`] when the store fails.
    fn bind(&self, keys: &KeyFingerprint) -> Result<StoreBinding, Error>;

    /// Adds a user.
    ///
    /// # Errors
    /// [`Error::Storage`] when the store fails.
    fn add_user(&self) -> Result<UserId, Error>;

    /// Whether `user` exists.
    ///
    /// # Errors
    /// [`Error::Storage`] when the store fails.
    fn has_user(&self, user: UserId) -> Result<bool, Error>;

    /// The epoch of `user`'s credential: 0 until it is first rotated; `None` for no such user
    /// (issue 29: a user's credential is derived from the distributor secret and this epoch).
    ///
    /// # Errors
    /// [`Error::Storage`] when the store fails.
    fn credential_epoch(&self, user: UserId) -> Result<Option<u64>, Error>;

    /// Raises `user`'s credential epoch by one, durably, and answers the new one: the
    /// credential of the epoch before no longer checks.
    ///
    /// # Errors
    /// [`Error::UserNotFound`]; [`Error::Storage`] when the store fails.
    fn rotate_credential(&self, user: UserId) -> Result<u64, Error>;

    /// Registers a client of `user`, giving it the next leaf, if the user has fewer than
    /// `limit` non-revoked clients.
    ///
    /// # Errors
    /// [`Error::UserNotFound`], [`Error::ClientLimit`], `TreeFull`, or the builder's error.
    fn add_client(
        &self,
        user: UserId,
        limit: usize,
        build: ClientBuilder<'_>,
    ) -> Result<ClientRecord, Error>;

    /// Whether this store hands out leaves from ranges of their own
    /// ([`Registry::add_client_in`]): the SQL stores do; the memory store, which no other
    /// process shares, has one counter.
    fn supports_leaf_ranges(&self) -> bool {
        false
    }

    /// Registers a client of `user` as [`Registry::add_client`] does, but with the next leaf of
    /// `leaves`, which has its own counter: a license server's own subtree (issue 29), so that
    /// processes holding the keys of different subtrees never hand out each other's leaves.
    ///
    /// # Errors
    /// As [`Registry::add_client`]; `TreeFull` when the range is used up; [`Error::Storage`]
    /// from a store that has one counter ([`Registry::supports_leaf_ranges`]).
    fn add_client_in(
        &self,
        user: UserId,
        limit: usize,
        leaves: core::ops::Range<u64>,
        build: ClientBuilder<'_>,
    ) -> Result<ClientRecord, Error> {
        let _ = (user, limit, leaves, build);
        Err(Error::Storage(
            "this store hands out leaves from one counter: a license server with a subtree of \
             its own needs SQLite or PostgreSQL"
                .into(),
        ))
    }

    /// Adds a client for each of `users`, in order, with the results [`Registry::add_client`]
    /// would give called for each in turn: the `i`-th user's client gets the `i`-th ID and leaf
    /// handed out, and each request has its own result. A store may build the records in
    /// parallel (the memory store does, on rayon's threads); by default they are added one by
    /// one.
    fn add_clients(
        &self,
        users: &[UserId],
        limit: usize,
        build: ClientsBuilder<'_>,
    ) -> Vec<Result<ClientRecord, Error>> {
        add_clients_one_by_one(self, users, limit, build)
    }

    /// A client.
    ///
    /// # Errors
    /// [`Error::Storage`] when the store fails.
    fn client(&self, id: ClientId) -> Result<Option<ClientRecord>, Error>;

    /// The client at a leaf.
    ///
    /// # Errors
    /// [`Error::Storage`] when the store fails.
    fn client_by_leaf(&self, leaf: LeafIndex) -> Result<Option<ClientId>, Error>;

    /// The clients of a user, in registration order.
    ///
    /// # Errors
    /// [`Error::Storage`] when the store fails.
    fn clients_of(&self, user: UserId) -> Result<Vec<ClientId>, Error>;

    /// Marks a client revoked and starts a new key epoch; returns the record and the new epoch.
    /// `revoke` is given the stored row and returns the row to store (revoked, re-tagged).
    ///
    /// # Errors
    /// [`Error::ClientNotFound`]; [`Error::ClientRevoked`] if it already is; `revoke`'s error.
    fn revoke_client(
        &self,
        id: ClientId,
        revoke: Revoker<'_>,
    ) -> Result<(ClientRecord, u64), Error>;

    /// The leaves of all revoked clients, increasing.
    ///
    /// # Errors
    /// [`Error::Storage`] when the store fails.
    fn revoked_leaves(&self) -> Result<Vec<u32>, Error>;

    /// The signed EKB stored for `epoch`, if one is.
    ///
    /// # Errors
    /// [`Error::Storage`] when the store fails.
    fn stored_ekb(&self, epoch: u64) -> Result<Option<Vec<u8>>, Error>;

    /// Stores the signed EKB of `epoch` unless one is stored already, and returns the one
    /// stored: this one, or the one another process stored first. Every process then serves
    /// the same EKB for an epoch, and any process serves the EKB of any epoch a license was
    /// issued in.
    ///
    /// # Errors
    /// [`Error::Storage`] when the store fails.
    fn keep_ekb(&self, epoch: u64, ekb: &[u8]) -> Result<Vec<u8>, Error>;

    /// The authority's newest signed list of each license server's keys (issue 29), by server,
    /// with the number it was stored under: what registration hands devices and `GET
    /// /v1/servers/{id}/keys` serves.
    ///
    /// # Errors
    /// [`Error::Storage`] when the store fails.
    fn server_key_lists(&self) -> Result<Vec<(ServerId, u64, Vec<u8>)>, Error>;

    /// Stores `list`, numbered `sequence`, as server `server`'s newest list when its number is
    /// above the stored one's, in one step (two authorities at once store one of their lists,
    /// never an older over a newer). Returns whether it was stored.
    ///
    /// # Errors
    /// [`Error::Storage`] when the store fails.
    fn keep_server_key_list(
        &self,
        server: ServerId,
        sequence: u64,
        list: &[u8],
    ) -> Result<bool, Error>;

    /// The current key epoch (1 before any revocation).
    ///
    /// # Errors
    /// [`Error::Storage`] when the store fails.
    fn epoch(&self) -> Result<u64, Error>;

    /// Checks that the store can serve (issue 28): [`Probe::Ready`] is cheap (a real query;
    /// for a SQLite file also its header read from disk, which a served connection's cache
    /// would not notice); [`Probe::Startup`] also reads every page of a SQLite file (`PRAGMA
    /// quick_check`), so that a corrupted file is refused before it is served.
    ///
    /// # Errors
    /// [`Error::Storage`] saying what failed.
    fn probe(&self, depth: Probe) -> Result<(), Error> {
        let _ = depth;
        self.epoch().map(|_| ())
    }

    /// Adds a content item.
    ///
    /// # Errors
    /// The builder's error.
    fn add_content(&self, build: ContentBuilder<'_>) -> Result<ContentRecord, Error>;

    /// A content item.
    ///
    /// # Errors
    /// [`Error::Storage`] when the store fails.
    fn content(&self, id: ContentId) -> Result<Option<ContentRecord>, Error>;

    /// Every content item, by ID.
    ///
    /// # Errors
    /// [`Error::Storage`] when the store fails.
    fn contents(&self) -> Result<Vec<ContentRecord>, Error>;

    /// Replaces a content's envelope (`docs/storage.md`, "Storage key rotation"): `new` takes
    /// `old`'s place only if the row is still exactly `old` (so a re-wrap never overwrites one
    /// made meanwhile); answers whether it did.
    ///
    /// # Errors
    /// [`Error::Storage`] when the store fails.
    fn replace_envelope(&self, old: &ContentRecord, new: &ContentRecord) -> Result<bool, Error>;

    /// Records that `user` downloaded `content` (claim 6, content supply).
    ///
    /// # Errors
    /// [`Error::UserNotFound`], [`Error::ContentNotFound`].
    fn record_download(&self, user: UserId, content: ContentId) -> Result<(), Error>;

    /// Issues a license to `client` and bills it (claim 6, license supply): the license, its
    /// content and user tables, and the ledger, in one change. `request` (client, nonce) must
    /// not have been used before. A loan under a `loans` limit is issued only while fewer
    /// loans of the content count ([`LoanLimit`]), checked inside the change so that
    /// concurrent loans, in any process, never pass it.
    ///
    /// # Errors
    /// [`Error::ClientNotFound`], [`Error::ClientRevoked`], [`Error::ContentNotFound`],
    /// [`Error::RequestReplayed`], [`Error::NoCopyAvailable`], or the builder's error.
    fn add_license(
        &self,
        client: ClientId,
        content: ContentId,
        request: RequestTag,
        charge: Charge,
        loans: Option<LoanLimit>,
        build: LicenseBuilder<'_>,
    ) -> Result<(LicenseRecord, LedgerEntry), Error>;

    /// Renews or returns `license` for `client` (issue 27): in one change, records `request`
    /// (a second use is [`Error::RequestReplayed`]), reads the license, checks it with
    /// [`check_held`], writes what `build` makes of it (only a renewal's or a return's changes
    /// are accepted) and bills `charge` if any (the ledger entry's reference is the license).
    /// A failure changes nothing.
    ///
    /// # Errors
    /// [`Error::ClientNotFound`], [`Error::ClientRevoked`], [`Error::RequestReplayed`], every
    /// refusal of [`check_held`], or the builder's error.
    fn change_license(
        &self,
        license: LicenseId,
        client: ClientId,
        request: RequestTag,
        charge: Option<Charge>,
        build: LicenseChanger<'_>,
    ) -> Result<(LicenseRecord, Option<LedgerEntry>), Error>;

    /// The request `client` signed with `nonce`, if one was recorded.
    ///
    /// # Errors
    /// [`Error::Storage`] when the store fails.
    fn used_request(&self, client: ClientId, nonce: u64) -> Result<Option<UsedRequest>, Error>;

    /// A license.
    ///
    /// # Errors
    /// [`Error::Storage`] when the store fails.
    fn license(&self, id: LicenseId) -> Result<Option<LicenseRecord>, Error>;

    /// The whole move, in one change: [`check_move`], record the request's nonce (a second use
    /// is [`Error::RequestReplayed`]), mark the source license moved, add the destination's
    /// license, record the certificate issue, bill it.
    ///
    /// # Errors
    /// Any error of [`check_move`], [`Error::RequestReplayed`], or the builder's error.
    fn commit_move(
        &self,
        intent: &MoveIntent,
        charge: Charge,
        build: MoveBuilder<'_>,
    ) -> Result<(LicenseRecord, CertificateRecord, LedgerEntry), Error>;

    /// The history of certificate issues, in order.
    ///
    /// # Errors
    /// [`Error::Storage`] when the store fails.
    fn certificate_history(&self) -> Result<Vec<CertificateRecord>, Error>;

    /// The ledger, in order.
    ///
    /// # Errors
    /// [`Error::Storage`] when the store fails.
    fn ledger(&self) -> Result<Vec<LedgerEntry>, Error>;

    /// The total billed to `user`.
    ///
    /// # Errors
    /// [`Error::UserNotFound`].
    fn user_total(&self, user: UserId) -> Result<u64, Error>;

    /// The licenses issued for a content (content ID ↔ license IDs), in ID order.
    ///
    /// # Errors
    /// [`Error::Storage`] when the store fails.
    fn licenses_of_content(&self, content: ContentId) -> Result<Vec<LicenseId>, Error>;

    /// The contents a user downloaded (user ID ↔ content IDs).
    ///
    /// # Errors
    /// [`Error::Storage`] when the store fails.
    fn contents_of_user(&self, user: UserId) -> Result<Vec<ContentId>, Error>;

    /// The licenses a user obtained (user ID ↔ license IDs).
    ///
    /// # Errors
    /// [`Error::Storage`] when the store fails.
    fn licenses_of_user(&self, user: UserId) -> Result<Vec<LicenseId>, Error>;

    /// Every user with the total billed to them, by ID (for audits).
    ///
    /// # Errors
    /// [`Error::Storage`] when the store fails.
    fn users(&self) -> Result<Vec<(UserId, u64)>, Error>;

    /// Every client, by ID (for audits).
    ///
    /// # Errors
    /// [`Error::Storage`] when the store fails.
    fn all_clients(&self) -> Result<Vec<ClientRecord>, Error>;

    /// Every client's ID, owner, leaf and state, sorted by ID: what an audit needs, without
    /// copying millions of certificates.
    ///
    /// # Errors
    /// [`Error::Storage`] when the store fails.
    fn client_summaries(&self) -> Result<Vec<ClientSummary>, Error> {
        Ok(self
            .all_clients()?
            .iter()
            .map(ClientSummary::from)
            .collect())
    }

    /// What a license supply reads before it signs: the client, the content and the current
    /// epoch. A store may read them in one round trip; they need not be one snapshot (the
    /// supply's own change checks again, in its transaction, everything that must still hold).
    ///
    /// # Errors
    /// [`Error::Storage`] when the store fails.
    fn supply_reads(
        &self,
        client: ClientId,
        content: ContentId,
    ) -> Result<(Option<ClientRecord>, Option<ContentRecord>, u64), Error> {
        Ok((self.client(client)?, self.content(content)?, self.epoch()?))
    }

    /// Every license, by ID (for audits).
    ///
    /// # Errors
    /// [`Error::Storage`] when the store fails.
    fn all_licenses(&self) -> Result<Vec<LicenseRecord>, Error>;

    /// Streams the registry user by user, in user ID order: each user's clients, licenses,
    /// history entries and ledger entries, read in one snapshot. Rows that name a user the
    /// users table does not hold come as a [`UserRows`] with no total. The stores read a page
    /// of users at a time, so memory does not grow with the registry.
    ///
    /// # Errors
    /// [`Error::Storage`] when the store fails, or the first error of `visit`.
    fn scan_users(&self, visit: &mut dyn FnMut(UserRows) -> Result<(), Error>)
    -> Result<(), Error>;

    /// Streams every client's leaf and ID, in leaf order (a page at a time).
    ///
    /// # Errors
    /// [`Error::Storage`] when the store fails, or the first error of `visit`.
    fn scan_leaves(
        &self,
        visit: &mut dyn FnMut(LeafIndex, ClientId) -> Result<(), Error>,
    ) -> Result<(), Error>;

    /// One user's rows, read in one snapshot; `None` when no row names the user.
    ///
    /// # Errors
    /// [`Error::Storage`] when the store fails.
    fn user_rows(&self, user: UserId) -> Result<Option<UserRows>, Error>;
}

/// [`Registry::add_clients`] as [`Registry::add_client`] for each request in turn: the default,
/// and the memory store's way when a builder of its parallel batch fails.
pub(crate) fn add_clients_one_by_one<R: Registry + ?Sized>(
    registry: &R,
    users: &[UserId],
    limit: usize,
    build: ClientsBuilder<'_>,
) -> Vec<Result<ClientRecord, Error>> {
    users
        .iter()
        .enumerate()
        .map(|(i, &user)| registry.add_client(user, limit, &mut |id, leaf| build(i, id, leaf)))
        .collect()
}
