//! The in-memory registry: all tables behind one mutex, each change applied only after every
//! check and the builder have succeeded.
//!
//! Licenses and certificates are signed outside the lock, so that supplies on several threads
//! run in parallel: the IDs come from atomic counters, the checks run under the lock, the
//! builder (which signs) runs without it, and the commit runs the checks again under the lock
//! before it changes anything. A change that lost a race to another is refused by the second
//! check, and the IDs it took are never used.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use treecast_protocol::ServerId;

use treecast_keytree::{LeafAllocator, LeafIndex, TreeHeight};

mod clients;
mod licenses;
mod users;

use clients::{Clients, Prepared};
use licenses::Licenses;
use users::{UserRow, Users};

use super::{
    CertificateRecord, ClientBuilder, ClientRecord, ClientSummary, ClientsBuilder, ContentBuilder,
    ContentRecord, LicenseBuilder, LicenseChanger, LicenseRecord, LicenseState, LoanLimit,
    MoveBuilder, MoveIntent, MoveRows, Registry, RequestTag, Revoker, UsedRequest, UserRows,
    check_held, check_move, scan,
};
use crate::billing::{Charge, LedgerEntry};
use crate::binding::{RegistryId, StoreBinding};
use treecast_protocol::Error;
use treecast_protocol::binding::KeyFingerprint;
use treecast_protocol::ids::{CertificateId, ClientId, ContentId, LicenseId, UserId};
use treecast_protocol::time::UnixTime;

/// License and certificate IDs of a memory registry: the range of generation 1, as a SQLite
/// registry opened for the first time hands out (`IdRange`), so that both stores issue the same
/// IDs for the same operations.
const FIRST_ID: u64 = (1 << 40) + 1;
const LAST_ID: u64 = (2 << 40) - 1;

/// A registry in memory, safe to share between threads (`Arc<MemoryRegistry>` or `&`).
///
/// ```
/// use treecast_keytree::TreeHeight;
/// use treecast_registry::{MemoryRegistry, Registry, audit};
/// # fn main() -> Result<(), treecast_protocol::Error> {
/// let registry = MemoryRegistry::new(TreeHeight::new(16)?);
/// let user = registry.add_user()?;
/// assert!(registry.has_user(user)?);
/// assert!(audit(&registry, 10)?.is_empty());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct MemoryRegistry {
    tables: Mutex<Tables>,
    next_license: AtomicU64,
    next_certificate: AtomicU64,
    last_id: u64,
    id: RegistryId,
    keys: OnceLock<KeyFingerprint>,
}

#[derive(Debug)]
struct Tables {
    leaves: LeafAllocator,
    epoch: u64,
    next_content: u64,
    users: Users,
    clients: Clients,
    revoked: BTreeSet<u32>,
    contents: HashMap<ContentId, ContentRecord>,
    licenses: Licenses,
    /// Every request recorded and not yet forgotten, with the time after which it may be.
    used_requests: HashMap<(ClientId, u64), (UsedRequest, UnixTime)>,
    history: Vec<CertificateRecord>,
    ledger: Vec<LedgerEntry>,
    ekbs: std::collections::BTreeMap<u64, Vec<u8>>,
    /// Each server's newest key list and its number (issue 29).
    server_keys: std::collections::BTreeMap<ServerId, (u64, Vec<u8>)>,
    /// The credential epochs of the users whose credential was rotated (issue 29); beside the
    /// rows, so that the users who never rotate (nearly all) pay nothing for it.
    credential_epochs: std::collections::BTreeMap<UserId, u64>,
    faults: Faults,
}

/// Deliberate faults, for proving that a checker catches them. Never set in production.
#[derive(Clone, Copy, Debug, Default)]
struct Faults {
    skip_move_checks: bool,
}

impl MemoryRegistry {
    /// An empty registry for a key tree of height `height`, with a random [`RegistryId`] (from
    /// the system's randomness; see [`MemoryRegistry::with_registry_id`] for a seeded run).
    pub fn new(height: TreeHeight) -> Self {
        Self::with_registry_id(height, RegistryId::random_or_fallback())
    }

    /// An empty registry for a key tree of height `height`, with the ID `id` (a deterministic
    /// run draws it from its seed; two registries must never share one).
    pub fn with_registry_id(height: TreeHeight, id: RegistryId) -> Self {
        Self {
            tables: Mutex::new(Tables {
                leaves: LeafAllocator::new(height),
                epoch: 1,
                next_content: 1,
                users: Users::default(),
                clients: Clients::default(),
                revoked: BTreeSet::new(),
                contents: HashMap::new(),
                licenses: Licenses::new(FIRST_ID),
                used_requests: HashMap::new(),
                history: Vec::new(),
                credential_epochs: std::collections::BTreeMap::new(),
                ledger: Vec::new(),
                ekbs: std::collections::BTreeMap::new(),
                server_keys: std::collections::BTreeMap::new(),
                faults: Faults::default(),
            }),
            next_license: AtomicU64::new(FIRST_ID),
            next_certificate: AtomicU64::new(FIRST_ID),
            last_id: LAST_ID,
            id,
            keys: OnceLock::new(),
        }
    }

    /// **Dangerous, for tests of checkers only**: lets moves through without the claim-4 checks,
    /// so that a second move of a moved license succeeds. A checker that does not notice is
    /// broken.
    ///
    /// # Errors
    /// [`Error::Storage`] if the lock is poisoned.
    pub fn danger_skip_move_checks(&self) -> Result<(), Error> {
        self.lock()?.faults.skip_move_checks = true;
        Ok(())
    }

    fn lock(&self) -> Result<MutexGuard<'_, Tables>, Error> {
        self.tables
            .lock()
            .map_err(|_| Error::Storage("registry lock poisoned by a panic".into()))
    }
}

impl Tables {
    /// Stores a license row ([`Licenses::put`]).
    fn put_license(&mut self, record: &LicenseRecord) -> Result<(), Error> {
        self.licenses.put(record, &self.clients)
    }

    fn user_mut(&mut self, user: UserId) -> Result<&mut UserRow, Error> {
        self.users.get_mut(user).ok_or(Error::UserNotFound(user))
    }

    /// How many of `row`'s clients are not revoked (the client limit counts these).
    fn active_clients(&self, row: &UserRow) -> usize {
        row.clients
            .iter()
            .filter(|c| self.clients.summary(**c).is_some_and(|r| !r.revoked))
            .count()
    }

    /// Records `request` of `client`, which produced `answer`. When the table is full, the tags
    /// that may be forgotten are dropped first (a replay of their requests is refused as stale
    /// before the registry is asked), so it holds about the requests of the last two windows
    /// rather than every request ever made.
    ///
    /// A scan that frees less than half the table grows it as well: under steady traffic a tag
    /// or two expire between two requests, and a scan that frees only those leaves the table
    /// full again a few inserts later, to be scanned again whole. With the growth at least half
    /// the table is free after a scan, and each scan is paid for by as many inserts (in the
    /// test below, 2 full tables in 7 168 steady requests instead of 22).
    fn record_request(&mut self, client: ClientId, request: RequestTag, answer: u64) {
        let requests = &mut self.used_requests;
        if requests.len() >= requests.capacity() {
            let now = request.recorded_at;
            requests.retain(|_, (_, forget_after)| *forget_after >= now);
            if requests.len() > requests.capacity() / 2 {
                requests.reserve(requests.len());
            }
        }
        self.used_requests.insert(
            (client, request.nonce),
            (
                UsedRequest::new(request.digest, answer),
                request.forget_after,
            ),
        );
    }

    /// The owner of client `id`, which must not be revoked.
    fn active_client(&self, id: ClientId) -> Result<UserId, Error> {
        let client = self.clients.summary(id).ok_or(Error::ClientNotFound(id))?;
        if client.revoked {
            return Err(Error::ClientRevoked(id));
        }
        Ok(client.user)
    }
}

/// Where each user's entries are in the history and the ledger, up to their lengths when taken.
#[derive(Default)]
struct Positions {
    history: Vec<(UserId, usize)>,
    ledger: Vec<(UserId, usize)>,
}

impl Positions {
    fn of(t: &Tables) -> Self {
        let mut history: Vec<_> = t
            .history
            .iter()
            .enumerate()
            .map(|(i, h)| (h.user, i))
            .collect();
        let mut ledger: Vec<_> = t
            .ledger
            .iter()
            .enumerate()
            .map(|(i, e)| (e.user, i))
            .collect();
        history.sort_unstable();
        ledger.sort_unstable();
        Self { history, ledger }
    }

    /// `user`'s positions in an index sorted by user, then the positions from `len` on (the
    /// entries appended since the index was taken).
    fn find(
        index: &[(UserId, usize)],
        user: UserId,
        len: usize,
        entries: usize,
    ) -> impl Iterator<Item = usize> {
        let start = index.partition_point(|&(u, _)| u < user);
        let end = index.partition_point(|&(u, _)| u <= user);
        let indexed = index
            .get(start..end)
            .unwrap_or_default()
            .iter()
            .map(|&(_, i)| i);
        indexed.chain(len..entries)
    }
}

impl Tables {
    /// `user`'s rows, or `None` when nothing names the user.
    fn rows_of(&self, user: UserId, index: &Positions) -> Option<UserRows> {
        let row = self.users.get(user)?;
        let mut rows = UserRows::new(user, Some(row.total));
        rows.clients = row
            .clients
            .iter()
            .filter_map(|c| self.clients.get(*c))
            .collect();
        rows.clients.sort_by_key(|c| c.id);
        rows.licenses = row
            .licenses
            .iter()
            .filter_map(|l| self.licenses.get(*l, &self.clients))
            .collect();
        rows.licenses.sort_by_key(|l| l.id);
        rows.history = Positions::find(
            &index.history,
            user,
            index.history.len(),
            self.history.len(),
        )
        .filter_map(|i| self.history.get(i))
        .filter(|h| h.user == user)
        .cloned()
        .collect();
        rows.history.sort_by_key(|h| h.id);
        rows.ledger = Positions::find(&index.ledger, user, index.ledger.len(), self.ledger.len())
            .filter_map(|i| self.ledger.get(i))
            .filter(|e| e.user == user)
            .copied()
            .collect();
        Some(rows)
    }
}

impl Registry for MemoryRegistry {
    /// No one: the rows are in this process's memory, so they carry no tags.
    fn has_outside_writers(&self) -> bool {
        false
    }

    fn bind(&self, keys: &KeyFingerprint) -> Result<StoreBinding, Error> {
        Ok(StoreBinding {
            registry: self.id,
            keys: *self.keys.get_or_init(|| *keys),
        })
    }

    fn add_user(&self) -> Result<UserId, Error> {
        Ok(self.lock()?.users.push())
    }

    fn has_user(&self, user: UserId) -> Result<bool, Error> {
        Ok(self.lock()?.users.get(user).is_some())
    }

    fn replace_envelope(&self, old: &ContentRecord, new: &ContentRecord) -> Result<bool, Error> {
        if old.id != new.id {
            return Err(Error::Internal("an envelope replaced by another content's"));
        }
        let mut t = self.lock()?;
        match t.contents.get_mut(&old.id) {
            Some(row) if row == old => {
                *row = new.clone();
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn credential_epoch(&self, user: UserId) -> Result<Option<u64>, Error> {
        let t = self.lock()?;
        Ok(t.users
            .get(user)
            .map(|_| t.credential_epochs.get(&user).copied().unwrap_or(0)))
    }

    fn rotate_credential(&self, user: UserId) -> Result<u64, Error> {
        let mut t = self.lock()?;
        t.users.get(user).ok_or(Error::UserNotFound(user))?;
        let epoch = t.credential_epochs.entry(user).or_insert(0);
        *epoch = epoch
            .checked_add(1)
            .ok_or(Error::Internal("credential epoch overflow"))?;
        Ok(*epoch)
    }

    fn add_client(
        &self,
        user: UserId,
        limit: usize,
        build: ClientBuilder<'_>,
    ) -> Result<ClientRecord, Error> {
        let mut t = self.lock()?;
        let row = t.users.get(user).ok_or(Error::UserNotFound(user))?;
        if t.active_clients(row) >= limit {
            return Err(Error::ClientLimit(user));
        }
        let mut leaves = t.leaves.clone();
        let (id, leaf) = next_client(&mut leaves, t.clients.next_id())?;
        let record = checked_client(build(id, leaf)?, id, leaf, user)?;
        t.clients.push(record.clone())?;
        t.leaves = leaves;
        users::push(&mut t.user_mut(user)?.clients, id);
        Ok(record)
    }

    /// Under the lock: the checks and the IDs and leaves of the whole batch, then every record
    /// built at once on rayon's threads (signing a certificate is most of a registration), then
    /// the rows. Should a builder fail, nothing of the batch is kept and the requests are added
    /// one by one, so each gets exactly the result [`Registry::add_client`] gives it.
    fn add_clients(
        &self,
        users: &[UserId],
        limit: usize,
        build: ClientsBuilder<'_>,
    ) -> Vec<Result<ClientRecord, Error>> {
        use rayon::prelude::*;
        let mut t = match self.lock() {
            Ok(t) => t,
            Err(e) => return users.iter().map(|_| Err(e.clone())).collect(),
        };
        // The checks and allocations, in order, as `add_client` makes them; each planned client
        // with the leaf allocator as it stands once the client is added.
        let mut leaves = t.leaves.clone();
        let mut added: HashMap<UserId, usize> = HashMap::new();
        let mut results: Vec<Option<Result<ClientRecord, Error>>> = Vec::with_capacity(users.len());
        let mut planned = Vec::with_capacity(users.len());
        for (i, &user) in users.iter().enumerate() {
            let Some(row) = t.users.get(user) else {
                results.push(Some(Err(Error::UserNotFound(user))));
                continue;
            };
            let earlier = added.get(&user).copied().unwrap_or(0);
            if t.active_clients(row) + earlier >= limit {
                results.push(Some(Err(Error::ClientLimit(user))));
                continue;
            }
            let expected = ClientId(t.clients.next_id().0 + planned.len() as u64);
            // Tried on a copy: a failed allocation takes no leaf, as in `add_client`.
            let mut attempt = leaves.clone();
            match next_client(&mut attempt, expected) {
                Ok((id, leaf)) => planned.push((i, user, id, leaf, attempt.clone())),
                Err(e) => {
                    results.push(Some(Err(e)));
                    continue;
                }
            }
            leaves = attempt;
            *added.entry(user).or_default() += 1;
            results.push(None);
        }
        let built: Result<Vec<(ClientRecord, Prepared)>, Error> = planned
            .par_iter()
            .map(|&(i, user, id, leaf, _)| {
                let record = checked_client(build(i, id, leaf)?, id, leaf, user)?;
                let row = Prepared::of(record.clone());
                Ok((record, row))
            })
            .collect();
        let Ok(built) = built else {
            drop(t);
            return super::add_clients_one_by_one(self, users, limit, build);
        };
        // Every record is built: the rows, in order (the same pushes `add_client` makes).
        for ((i, user, id, _, after), (record, row)) in planned.into_iter().zip(built) {
            let result = t.clients.push_prepared(id, row).map(|()| record);
            if result.is_ok() {
                t.leaves = after;
                if let Some(row) = t.users.get_mut(user) {
                    users::push(&mut row.clients, id);
                }
            }
            let failed = result.is_err();
            if let Some(slot) = results.get_mut(i) {
                *slot = Some(result);
            }
            if failed {
                // Cannot happen (the IDs follow on from the table's); the batch stops here.
                break;
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or(Err(Error::Internal("a client of the batch was not added"))))
            .collect()
    }

    fn client(&self, id: ClientId) -> Result<Option<ClientRecord>, Error> {
        Ok(self.lock()?.clients.get(id))
    }

    fn client_by_leaf(&self, leaf: LeafIndex) -> Result<Option<ClientId>, Error> {
        Ok(self.lock()?.clients.at_leaf(leaf.get()))
    }

    fn clients_of(&self, user: UserId) -> Result<Vec<ClientId>, Error> {
        Ok(self
            .lock()?
            .users
            .get(user)
            .map(|r| r.clients.to_vec())
            .unwrap_or_default())
    }

    fn revoke_client(
        &self,
        id: ClientId,
        revoke: Revoker<'_>,
    ) -> Result<(ClientRecord, u64), Error> {
        let mut t = self.lock()?;
        t.active_client(id)?;
        let client = t.clients.get(id).ok_or(Error::ClientNotFound(id))?;
        let epoch = t
            .epoch
            .checked_add(1)
            .ok_or(Error::Internal("epoch overflow"))?;
        let record = revoke(&client)?;
        super::check_revoked(&client, &record)?;
        t.clients.replace(record.clone())?;
        t.revoked.insert(client.leaf.get());
        t.epoch = epoch;
        Ok((record, epoch))
    }

    fn revoked_leaves(&self) -> Result<Vec<u32>, Error> {
        Ok(self.lock()?.revoked.iter().copied().collect())
    }

    fn stored_ekb(&self, epoch: u64) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.lock()?.ekbs.get(&epoch).cloned())
    }

    fn keep_ekb(&self, epoch: u64, ekb: &[u8]) -> Result<Vec<u8>, Error> {
        Ok(self
            .lock()?
            .ekbs
            .entry(epoch)
            .or_insert_with(|| ekb.to_vec())
            .clone())
    }

    fn server_key_lists(&self) -> Result<Vec<(ServerId, u64, Vec<u8>)>, Error> {
        Ok(self
            .lock()?
            .server_keys
            .iter()
            .map(|(id, (sequence, list))| (*id, *sequence, list.clone()))
            .collect())
    }

    fn keep_server_key_list(
        &self,
        server: ServerId,
        sequence: u64,
        list: &[u8],
    ) -> Result<bool, Error> {
        let mut inner = self.lock()?;
        if inner
            .server_keys
            .get(&server)
            .is_some_and(|(held, _)| *held >= sequence)
        {
            return Ok(false);
        }
        inner.server_keys.insert(server, (sequence, list.to_vec()));
        Ok(true)
    }

    fn epoch(&self) -> Result<u64, Error> {
        Ok(self.lock()?.epoch)
    }

    fn add_content(&self, build: ContentBuilder<'_>) -> Result<ContentRecord, Error> {
        let mut t = self.lock()?;
        let id = ContentId(t.next_content);
        let record = build(id)?;
        if record.id != id {
            return Err(Error::Internal("content builder changed the ID"));
        }
        t.next_content += 1;
        t.contents.insert(id, record.clone());
        Ok(record)
    }

    fn content(&self, id: ContentId) -> Result<Option<ContentRecord>, Error> {
        Ok(self.lock()?.contents.get(&id).cloned())
    }

    fn contents(&self) -> Result<Vec<ContentRecord>, Error> {
        let mut all: Vec<_> = self.lock()?.contents.values().cloned().collect();
        all.sort_by_key(|c| c.id);
        Ok(all)
    }

    fn record_download(&self, user: UserId, content: ContentId) -> Result<(), Error> {
        let mut t = self.lock()?;
        if !t.contents.contains_key(&content) {
            return Err(Error::ContentNotFound(content));
        }
        let contents = &mut t.user_mut(user)?.contents;
        if let Err(at) = contents.binary_search(&content) {
            users::insert(contents, at, content);
        }
        Ok(())
    }

    fn add_license(
        &self,
        client: ClientId,
        content: ContentId,
        request: RequestTag,
        charge: Charge,
        loans: Option<LoanLimit>,
        build: LicenseBuilder<'_>,
    ) -> Result<(LicenseRecord, LedgerEntry), Error> {
        let check = |t: &Tables| -> Result<UserId, Error> {
            let user = t.active_client(client)?;
            if !t.contents.contains_key(&content) {
                return Err(Error::ContentNotFound(content));
            }
            if let Some(limit) = loans
                && t.licenses.active_loans(content, &limit) >= limit.copies as usize
            {
                return Err(Error::NoCopyAvailable(content));
            }
            if t.used_requests.contains_key(&(client, request.nonce)) {
                return Err(Error::RequestReplayed);
            }
            Ok(user)
        };
        let user = check(&*self.lock()?)?;
        // Signed without the lock; the checks run again before the commit.
        let id = LicenseId(self.next_license.fetch_add(1, Ordering::Relaxed));
        if id.0 > self.last_id {
            return Err(Error::Storage("the registry's ID range is used up".into()));
        }
        let record = build(id)?;
        if record.id != id
            || record.client != client
            || record.content != content
            || record.user != user
        {
            return Err(Error::Internal("license builder changed the IDs"));
        }
        let mut t = self.lock()?;
        if check(&t)? != user {
            return Err(Error::Internal("the client changed owner"));
        }
        let entry = LedgerEntry::new(user, content, id.0, charge);
        // The one step that can fail comes first, so a failure changes nothing.
        t.put_license(&record)?;
        t.record_request(client, request, id.0);
        let row = t.user_mut(user)?;
        users::push(&mut row.licenses, id);
        row.total = row.total.saturating_add(charge.amount);
        t.ledger.push(entry);
        Ok((record, entry))
    }

    fn change_license(
        &self,
        license: LicenseId,
        client: ClientId,
        request: RequestTag,
        charge: Option<Charge>,
        build: LicenseChanger<'_>,
    ) -> Result<(LicenseRecord, Option<LedgerEntry>), Error> {
        let mut t = self.lock()?;
        let user = t.active_client(client)?;
        if t.used_requests.contains_key(&(client, request.nonce)) {
            return Err(Error::RequestReplayed);
        }
        let current = t.licenses.get(license, &t.clients);
        check_held(license, current.as_ref(), client, user)?;
        let current = current.ok_or(Error::LicenseNotFound(license))?;
        let record = build(&current)?;
        if !crate::allowed_change(&current, &record) {
            return Err(Error::Internal(
                "a license change beyond a renewal or a return",
            ));
        }
        let entry = charge.map(|c| LedgerEntry::new(user, current.content, license.0, c));
        // The one step that can fail comes first, so a failure changes nothing.
        t.put_license(&record)?;
        t.record_request(client, request, license.0);
        if let Some(entry) = entry {
            let row = t.user_mut(user)?;
            row.total = row.total.saturating_add(entry.amount);
            t.ledger.push(entry);
        }
        Ok((record, entry))
    }

    fn license(&self, id: LicenseId) -> Result<Option<LicenseRecord>, Error> {
        let t = self.lock()?;
        Ok(t.licenses.get(id, &t.clients))
    }

    fn used_request(&self, client: ClientId, nonce: u64) -> Result<Option<UsedRequest>, Error> {
        Ok(self
            .lock()?
            .used_requests
            .get(&(client, nonce))
            .map(|(used, _)| *used))
    }

    fn commit_move(
        &self,
        intent: &MoveIntent,
        charge: Charge,
        build: MoveBuilder<'_>,
    ) -> Result<(LicenseRecord, CertificateRecord, LedgerEntry), Error> {
        let check = |t: &Tables| {
            let stored = t.licenses.get(intent.license, &t.clients);
            let mut shown = stored.clone();
            if t.faults.skip_move_checks {
                // The planted fault: the check sees the license as still active (the row itself,
                // and its tag, stay as they are).
                if let Some(l) = shown.as_mut() {
                    l.state = LicenseState::Active;
                }
            }
            let mut ctx = check_move(
                intent,
                t.clients.get(intent.source),
                shown,
                t.clients.get(intent.destination),
            )?;
            if let Some(l) = stored {
                ctx.license = l;
            }
            if t.used_requests
                .contains_key(&(intent.source, intent.request.nonce))
            {
                return Err(Error::RequestReplayed);
            }
            Ok(ctx)
        };
        let ctx = check(&*self.lock()?)?;
        // Signed without the lock; the checks run again before the commit.
        let certificate_id = CertificateId(self.next_certificate.fetch_add(1, Ordering::Relaxed));
        let license_id = LicenseId(self.next_license.fetch_add(1, Ordering::Relaxed));
        if certificate_id.0 > self.last_id || license_id.0 > self.last_id {
            return Err(Error::Storage("the registry's ID range is used up".into()));
        }
        let rows = build(&ctx, certificate_id, license_id)?;
        rows.check(&ctx, certificate_id, license_id)?;
        let MoveRows {
            moved,
            license: new_license,
            history,
        } = rows;
        let mut t = self.lock()?;
        if check(&t)? != ctx {
            return Err(Error::Internal(
                "the move's parties changed during the move",
            ));
        }
        let key = (intent.source, intent.request.nonce);
        if t.used_requests.contains_key(&key) {
            return Err(Error::RequestReplayed);
        }
        // The steps that can fail come first, so a failure changes nothing: the new license's
        // ID is checked by storing it, the moved one's place exists (it was read above).
        t.put_license(&new_license)?;
        t.put_license(&moved)?;
        t.record_request(intent.source, intent.request, certificate_id.0);
        let user = ctx.source.user;
        let entry = LedgerEntry::new(user, ctx.license.content, certificate_id.0, charge);
        // Every check passed and every row is built: apply.
        let row = t.user_mut(user)?;
        users::push(&mut row.licenses, license_id);
        row.total = row.total.saturating_add(charge.amount);
        t.history.push(history.clone());
        t.ledger.push(entry);
        Ok((new_license, history, entry))
    }

    fn certificate_history(&self) -> Result<Vec<CertificateRecord>, Error> {
        Ok(self.lock()?.history.clone())
    }

    fn ledger(&self) -> Result<Vec<LedgerEntry>, Error> {
        Ok(self.lock()?.ledger.clone())
    }

    fn user_total(&self, user: UserId) -> Result<u64, Error> {
        self.lock()?
            .users
            .get(user)
            .map(|r| r.total)
            .ok_or(Error::UserNotFound(user))
    }

    /// A scan of every license: the registry keeps no list per content, because nothing it
    /// serves asks for one (reports and tests do), and a list cost 10 to 15 bytes a license.
    fn licenses_of_content(&self, content: ContentId) -> Result<Vec<LicenseId>, Error> {
        Ok(self.lock()?.licenses.of_content(content).collect())
    }

    fn contents_of_user(&self, user: UserId) -> Result<Vec<ContentId>, Error> {
        Ok(self
            .lock()?
            .users
            .get(user)
            .map(|r| r.contents.to_vec())
            .unwrap_or_default())
    }

    fn users(&self) -> Result<Vec<(UserId, u64)>, Error> {
        let mut all: Vec<_> = self
            .lock()?
            .users
            .iter()
            .map(|(id, r)| (id, r.total))
            .collect();
        all.sort();
        Ok(all)
    }

    fn all_clients(&self) -> Result<Vec<ClientRecord>, Error> {
        Ok(self.lock()?.clients.records().collect())
    }

    fn client_summaries(&self) -> Result<Vec<ClientSummary>, Error> {
        Ok(self.lock()?.clients.summaries().collect())
    }

    fn scan_users(
        &self,
        visit: &mut dyn FnMut(UserRows) -> Result<(), Error>,
    ) -> Result<(), Error> {
        // The users, and where each user's entries are in the history and the ledger (both
        // append-only), taken once; entries appended later are found in the tails at each page.
        let (users, index) = {
            let t = self.lock()?;
            let users: Vec<UserId> = t.users.iter().map(|(id, _)| id).collect();
            (users, Positions::of(&t))
        };
        for chunk in users.chunks(scan::PAGE_USERS) {
            let page: Vec<UserRows> = {
                let t = self.lock()?;
                chunk.iter().filter_map(|u| t.rows_of(*u, &index)).collect()
            };
            for rows in page {
                visit(rows)?;
            }
        }
        Ok(())
    }

    fn scan_leaves(
        &self,
        visit: &mut dyn FnMut(LeafIndex, ClientId) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let mut leaves: Vec<(LeafIndex, ClientId)> = self
            .lock()?
            .clients
            .summaries()
            .map(|c| (c.leaf, c.id))
            .collect();
        leaves.sort_unstable_by_key(|&(leaf, id)| (leaf.get(), id));
        for (leaf, id) in leaves {
            visit(leaf, id)?;
        }
        Ok(())
    }

    fn user_rows(&self, user: UserId) -> Result<Option<UserRows>, Error> {
        let t = self.lock()?;
        Ok(t.rows_of(user, &Positions::default()))
    }

    fn all_licenses(&self) -> Result<Vec<LicenseRecord>, Error> {
        let t = self.lock()?;
        Ok(t.licenses.records(&t.clients).collect())
    }

    fn licenses_of_user(&self, user: UserId) -> Result<Vec<LicenseId>, Error> {
        Ok(self
            .lock()?
            .users
            .get(user)
            .map(|r| r.licenses.to_vec())
            .unwrap_or_default())
    }
}

/// The next client's ID and leaf from `leaves`: the leaf the allocator hands out, and its ID,
/// the leaf plus one as in the SQL stores, which must be `expected` (the table's next).
fn next_client(
    leaves: &mut LeafAllocator,
    expected: ClientId,
) -> Result<(ClientId, LeafIndex), Error> {
    let leaf = leaves.allocate()?;
    let id = ClientId(u64::from(leaf.get()) + 1);
    if id != expected {
        return Err(Error::Internal("leaves and client IDs out of step"));
    }
    Ok((id, leaf))
}

/// `record`, if a builder given `id` and `leaf` for `user` kept them.
fn checked_client(
    record: ClientRecord,
    id: ClientId,
    leaf: LeafIndex,
    user: UserId,
) -> Result<ClientRecord, Error> {
    if record.id != id || record.leaf != leaf || record.user != user {
        return Err(Error::Internal("client builder changed the IDs"));
    }
    Ok(record)
}

#[cfg(test)]
mod tests;
