//! The durable registry on SQLite (`rusqlite`, SQLite bundled: nothing to install).
//!
//! - WAL journal; `synchronous = NORMAL` by default ([`Durability::Process`]: a committed change
//!   survives a crash of the process; a power loss may lose the last commits but never corrupts
//!   the file) or `FULL` ([`Durability::Power`]: every commit is on disk before it returns).
//! - A versioned schema (`PRAGMA user_version`), migrated on open, and an application ID that
//!   marks the file as a treecast registry, so a foreign database is refused rather than altered.
//! - Every method is one transaction; writes take the write lock up front (`BEGIN IMMEDIATE`), so
//!   a transaction never fails half-way on a lock upgrade. Another process holding the lock is
//!   waited for (busy timeout), not reported as a failure.
//! - One connection behind a mutex serves all threads of the process: SQLite admits one writer at
//!   a time anyway, and this keeps every transaction simple and atomic. The file is opened in
//!   exclusive locking mode: one process has a registry open at a time; another one waits up to
//!   the busy timeout (5 s), then gets a clear `Storage` error.
//!
//! The schema is in `docs/storage.md`.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use treecast_keytree::{LeafAllocator, LeafIndex, TreeHeight};

use super::{
    CertificateRecord, ClientBuilder, ClientRecord, ClientSummary, ContentBuilder, ContentRecord,
    LicenseBuilder, LicenseRecord, LicenseState, MoveBuilder, MoveIntent, MoveRows, Registry,
    RequestTag, Revoker, UsedRequest, UserRows, check_move, scan,
};
use crate::Error;
use crate::billing::{Charge, LedgerEntry};
use crate::ids::{CertificateId, ClientId, ContentId, LicenseId, UserId};

mod open;
mod rows;
mod schema;

use super::sql::{
    CLIENT_COLUMNS, HISTORY_COLUMNS, KEEP_EKB, LEDGER_COLUMNS, LICENSE_COLUMNS, STORED_EKB,
    USED_REQUEST, history_record, history_values, key_id_of, ledger_entry, license_record, lookup,
    nonce_bits, sql, state_code, stored_leaf, un, used_request,
};
use rows::{
    bill, client_row, content_exists, ids, insert_license, ints, license_in, license_row, meta,
    next_id, record_request, set_meta,
};

/// How hard a commit is pushed to disk.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum Durability {
    /// `synchronous = FULL`: a commit survives a power loss.
    Power,
    /// `synchronous = NORMAL` (WAL): a commit survives a crash of the process; the default.
    Process,
}

/// A registry in a SQLite file.
///
/// ```
/// use treecast_license::keytree::TreeHeight;
/// use treecast_license::registry::{Registry, SqliteRegistry};
/// # fn main() -> Result<(), treecast_license::Error> {
/// let path = std::env::temp_dir().join(format!("treecast-doc-{}.sqlite", std::process::id()));
/// # let _ = std::fs::remove_file(&path);
/// let user = SqliteRegistry::open(&path, TreeHeight::new(16)?)?.add_user()?;
/// // Reopened, the file still knows the user.
/// assert!(SqliteRegistry::open_existing(&path)?.has_user(user)?);
/// # std::fs::remove_file(&path).ok();
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct SqliteRegistry {
    conn: Mutex<Connection>,
    height: TreeHeight,
    /// The next license ID. Licenses are signed before the write transaction (so that threads
    /// sign in parallel) and need their ID first; an ID taken by a refused operation is skipped,
    /// never reused. One writing process per file.
    next_license: AtomicU64,
    /// The next certificate ID, taken inside the write transaction.
    next_certificate: AtomicU64,
    /// The last ID of this opening's range (see [`IdRange`]).
    last_id: u64,
}

/// License and certificate IDs are `generation · 2^40 + n`, `n` counting from 1 in memory. The
/// generation is a counter in the file, raised by one at every opening in a transaction that is
/// on disk before the opening returns (`synchronous = FULL`), whatever the durability. A power
/// loss can undo commits whose IDs were already handed out; the next opening then starts a new
/// generation, so those IDs are never issued again.
struct IdRange;

impl IdRange {
    const SHIFT: u32 = 40;

    /// The first and last ID of `generation`.
    fn of(generation: u64) -> Result<(u64, u64), Error> {
        let first = generation
            .checked_shl(Self::SHIFT)
            .filter(|v| v >> Self::SHIFT == generation && *v <= i64::MAX as u64 >> 1)
            .ok_or(Error::Storage(
                "the registry has been opened too many times".into(),
            ))?;
        Ok((first + 1, first + (1 << Self::SHIFT) - 1))
    }
}

impl SqliteRegistry {
    /// Triggers and views in the file: a treecast registry has none, so any is someone else's
    /// addition (`store check` reports them).
    ///
    /// # Errors
    /// [`Error::Storage`] when the store fails.
    pub fn foreign_schema_objects(&self) -> Result<Vec<String>, Error> {
        self.read(|tx| {
            let mut stmt = tx.prepare(
                "SELECT type || ' ' || name FROM sqlite_master WHERE type IN ('trigger', 'view') ORDER BY name",
            )?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            rows.map(|r| Ok(r?)).collect()
        })
    }

    /// A license or certificate ID of this opening's range.
    fn take_id(&self, counter: &AtomicU64) -> Result<u64, Error> {
        let id = counter.fetch_add(1, Ordering::Relaxed);
        if id > self.last_id {
            return Err(Error::Storage(
                "this opening's ID range is used up: reopen the registry".into(),
            ));
        }
        Ok(id)
    }

    /// Writes a consistent copy of the registry to a new file at `path` (`VACUUM INTO`), while
    /// it stays in use.
    ///
    /// # Errors
    /// [`Error::Storage`] when `path` exists or cannot be written.
    pub fn backup_to(&self, path: &Path) -> Result<(), Error> {
        let target = path
            .to_str()
            .ok_or_else(|| Error::Storage(format!("{}: not a UTF-8 path", path.display())))?;
        self.lock()?
            .execute("VACUUM INTO ?1", [target])
            .map_err(|e| {
                Error::Storage(format!("backup to {}: {}", path.display(), describe(&e)))
            })?;
        Ok(())
    }

    /// The tree height this registry serves.
    pub const fn height(&self) -> TreeHeight {
        self.height
    }

    fn lock(&self) -> Result<MutexGuard<'_, Connection>, Error> {
        self.conn
            .lock()
            .map_err(|_| Error::Storage("registry lock poisoned by a panic".into()))
    }

    /// Runs `f` in one write transaction (`BEGIN IMMEDIATE`), committing only if it succeeds.
    fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T, Error>) -> Result<T, Error> {
        let mut conn = self.lock()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// As [`SqliteRegistry::write`], with the commit on disk before it returns whatever the
    /// durability: for the changes whose loss a power failure must never cause (a leaf handed
    /// to a device, a revocation announced in an EKB, a user or content created).
    fn write_durable<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut conn = self.lock()?;
        durably(&mut conn, |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        })
    }

    /// Makes sure the next leaf lies below the durable reserve: when it does not, raises the
    /// reserve by a block in a transaction of its own, on disk before the registration's
    /// (`synchronous = FULL`). A registration itself then commits at the registry's durability,
    /// and a power loss can never hand its leaf out again: the next opening starts at the
    /// reserve. Each opening leaves the rest of a block unused (at most [`leaf_block`] leaves).
    fn reserve_leaf(&self, conn: &mut Connection) -> Result<(), Error> {
        // The connection's lock is held and the file is this process's alone (exclusive
        // locking): nothing changes between this look and the raise.
        let next = meta(conn, "next_leaf")?;
        if next < meta(conn, "leaf_reserve")? {
            // Most registrations: the reserve is ahead, nothing to write or sync.
            return Ok(());
        }
        durably(conn, |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            set_meta(
                &tx,
                "leaf_reserve",
                next.saturating_add(leaf_block(self.height)),
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    /// Runs `f` in one read transaction (a consistent snapshot).
    fn read<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T, Error>) -> Result<T, Error> {
        let mut conn = self.lock()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
        let out = f(&tx)?;
        tx.finish()?;
        Ok(out)
    }

    fn client_in(&self, tx: &Transaction<'_>, id: ClientId) -> Result<Option<ClientRecord>, Error> {
        let row = tx
            .prepare_cached(&format!(
                "SELECT {CLIENT_COLUMNS} FROM clients WHERE id = ?1"
            ))?
            .query_row([lookup(id.0)], client_row)
            .optional()?;
        row.map(|r| r.into_record(self.height)).transpose()
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Self::Storage(describe(&e))
    }
}

/// A message for a SQLite error that says what it means for the registry.
fn describe(e: &rusqlite::Error) -> String {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => {
            "not a SQLite database (or encrypted, or damaged)".into()
        }
        Some(rusqlite::ErrorCode::DatabaseCorrupt) => "the database file is corrupt".into(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            format!(
                "the database stayed locked for more than {} s",
                BUSY_TIMEOUT.as_secs()
            )
        }
        _ => e.to_string(),
    }
}

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const STATEMENT_CACHE: usize = 64;
/// Leaves reserved at a time: 1/4096 of the tree, between 1 and 1 024.
fn leaf_block(height: TreeHeight) -> u64 {
    (height.leaf_count() >> 12).clamp(1, 1024)
}

/// Runs `f` with `synchronous = FULL`, then puts the connection's setting back.
fn durably<T>(
    conn: &mut Connection,
    f: impl FnOnce(&mut Connection) -> Result<T, Error>,
) -> Result<T, Error> {
    let before: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
    conn.execute_batch("PRAGMA synchronous = FULL")?;
    let out = f(conn);
    conn.execute_batch(&format!("PRAGMA synchronous = {before}"))?;
    out
}

impl Registry for SqliteRegistry {
    fn add_user(&self) -> Result<UserId, Error> {
        self.write_durable(|tx| {
            let id = next_id(tx, "users")?;
            tx.prepare_cached("INSERT INTO users (id) VALUES (?1)")?
                .execute([sql(id)?])?;
            Ok(UserId(id))
        })
    }

    fn has_user(&self, user: UserId) -> Result<bool, Error> {
        self.read(|tx| {
            Ok(tx
                .prepare_cached("SELECT 1 FROM users WHERE id = ?1")?
                .query_row([lookup(user.0)], |_| Ok(()))
                .optional()?
                .is_some())
        })
    }

    fn add_client(
        &self,
        user: UserId,
        limit: usize,
        build: ClientBuilder<'_>,
    ) -> Result<ClientRecord, Error> {
        let mut conn = self.lock()?;
        self.reserve_leaf(&mut conn)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let record = (|| {
            let tx = &tx;
            if tx
                .prepare_cached("SELECT 1 FROM users WHERE id = ?1")?
                .query_row([lookup(user.0)], |_| Ok(()))
                .optional()?
                .is_none()
            {
                return Err(Error::UserNotFound(user));
            }
            let active: i64 = tx
                .prepare_cached("SELECT count(*) FROM clients WHERE user_id = ?1 AND revoked = 0")?
                .query_row([lookup(user.0)], |r| r.get(0))?;
            if un(active)? >= limit as u64 {
                return Err(Error::ClientLimit(user));
            }
            let mut leaves = LeafAllocator::resume(self.height, meta(tx, "next_leaf")?)?;
            let leaf = leaves.allocate()?;
            // A client's ID is its leaf plus one, as in the other stores: leaves are never
            // handed out twice, so neither are client IDs.
            let id = ClientId(u64::from(leaf.get()) + 1);
            let record = build(id, leaf)?;
            if record.id != id || record.leaf != leaf || record.user != user {
                return Err(Error::Internal("client builder changed the IDs"));
            }
            tx.prepare_cached(&format!(
                "INSERT INTO clients ({CLIENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7)"
            ))?
            .execute(params![
                sql(id.0)?,
                sql(user.0)?,
                i64::from(leaf.get()),
                i64::from(record.server.0),
                record.certificate,
                record.public_key.as_slice(),
                record.tag.as_slice(),
            ])?;
            set_meta(tx, "next_leaf", leaves.next_leaf())?;
            Ok(record)
        })()?;
        tx.commit()?;
        Ok(record)
    }

    fn client(&self, id: ClientId) -> Result<Option<ClientRecord>, Error> {
        self.read(|tx| self.client_in(tx, id))
    }

    fn client_by_leaf(&self, leaf: LeafIndex) -> Result<Option<ClientId>, Error> {
        self.read(|tx| {
            let id: Option<i64> = tx
                .prepare_cached("SELECT id FROM clients WHERE leaf = ?1")?
                .query_row([i64::from(leaf.get())], |r| r.get(0))
                .optional()?;
            id.map(|v| un(v).map(ClientId)).transpose()
        })
    }

    fn clients_of(&self, user: UserId) -> Result<Vec<ClientId>, Error> {
        self.read(|tx| {
            ids(
                tx,
                "SELECT id FROM clients WHERE user_id = ?1 ORDER BY id",
                user.0,
                ClientId,
            )
        })
    }

    fn revoke_client(
        &self,
        id: ClientId,
        revoke: Revoker<'_>,
    ) -> Result<(ClientRecord, u64), Error> {
        self.write_durable(|tx| {
            let client = self.client_in(tx, id)?.ok_or(Error::ClientNotFound(id))?;
            if client.revoked {
                return Err(Error::ClientRevoked(id));
            }
            let epoch = meta(tx, "epoch")?
                .checked_add(1)
                .ok_or(Error::Internal("epoch overflow"))?;
            let revoked = revoke(&client)?;
            super::check_revoked(&client, &revoked)?;
            tx.prepare_cached("UPDATE clients SET revoked = 1, tag = ?2 WHERE id = ?1")?
                .execute(params![sql(id.0)?, revoked.tag.as_slice()])?;
            set_meta(tx, "epoch", epoch)?;
            Ok((revoked, epoch))
        })
    }

    fn revoked_leaves(&self) -> Result<Vec<u32>, Error> {
        self.read(|tx| {
            let mut stmt =
                tx.prepare_cached("SELECT leaf FROM clients WHERE revoked = 1 ORDER BY leaf")?;
            let rows = stmt.query_map([], |r| r.get::<_, i64>(0))?;
            rows.map(|r| u32::try_from(r?).map_err(|_| Error::Storage("bad leaf".into())))
                .collect()
        })
    }

    fn stored_ekb(&self, epoch: u64) -> Result<Option<Vec<u8>>, Error> {
        self.read(|tx| {
            Ok(tx
                .prepare_cached(STORED_EKB)?
                .query_row([lookup(epoch)], |r| r.get(0))
                .optional()?)
        })
    }

    fn keep_ekb(&self, epoch: u64, ekb: &[u8]) -> Result<Vec<u8>, Error> {
        self.write(|tx| {
            tx.prepare_cached(KEEP_EKB)?
                .execute(params![sql(epoch)?, ekb])?;
            Ok(tx
                .prepare_cached(STORED_EKB)?
                .query_row([sql(epoch)?], |r| r.get(0))?)
        })
    }

    fn epoch(&self) -> Result<u64, Error> {
        self.read(|tx| meta(tx, "epoch"))
    }

    fn add_content(&self, build: ContentBuilder<'_>) -> Result<ContentRecord, Error> {
        self.write_durable(|tx| {
            let id = ContentId(next_id(tx, "contents")?);
            let record = build(id)?;
            if record.id != id {
                return Err(Error::Internal("content builder changed the ID"));
            }
            tx.prepare_cached("INSERT INTO contents (id, key_id, envelope) VALUES (?1, ?2, ?3)")?
                .execute(params![
                    sql(id.0)?,
                    i64::from(record.key_id),
                    record.envelope.as_slice()
                ])?;
            Ok(record)
        })
    }

    fn content(&self, id: ContentId) -> Result<Option<ContentRecord>, Error> {
        self.read(|tx| {
            let row: Option<(i64, Vec<u8>)> = tx
                .prepare_cached("SELECT key_id, envelope FROM contents WHERE id = ?1")?
                .query_row([lookup(id.0)], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            row.map(|(key_id, envelope)| {
                Ok(ContentRecord::new(
                    id,
                    key_id_of(key_id)?,
                    envelope
                        .try_into()
                        .map_err(|_| Error::Storage("bad envelope length".into()))?,
                ))
            })
            .transpose()
        })
    }

    fn contents(&self) -> Result<Vec<ContentRecord>, Error> {
        self.read(|tx| {
            let mut stmt =
                tx.prepare_cached("SELECT id, key_id, envelope FROM contents ORDER BY id")?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ))
            })?;
            rows.map(|row| {
                let (id, key_id, envelope) = row?;
                Ok(ContentRecord::new(
                    ContentId(un(id)?),
                    key_id_of(key_id)?,
                    envelope
                        .try_into()
                        .map_err(|_| Error::Storage("bad envelope length".into()))?,
                ))
            })
            .collect()
        })
    }

    fn record_download(&self, user: UserId, content: ContentId) -> Result<(), Error> {
        self.write(|tx| {
            if !content_exists(tx, content)? {
                return Err(Error::ContentNotFound(content));
            }
            if tx
                .prepare_cached("SELECT 1 FROM users WHERE id = ?1")?
                .query_row([lookup(user.0)], |_| Ok(()))
                .optional()?
                .is_none()
            {
                return Err(Error::UserNotFound(user));
            }
            tx.prepare_cached(
                "INSERT OR IGNORE INTO downloads (user_id, content_id) VALUES (?1, ?2)",
            )?
            .execute(params![sql(user.0)?, sql(content.0)?])?;
            Ok(())
        })
    }

    fn add_license(
        &self,
        client: ClientId,
        content: ContentId,
        request: RequestTag,
        charge: Charge,
        build: LicenseBuilder<'_>,
    ) -> Result<(LicenseRecord, LedgerEntry), Error> {
        // Build (and sign) outside the lock; the checks run inside the transaction.
        let id = LicenseId(self.take_id(&self.next_license)?);
        let license = build(id)?;
        if license.id != id || license.client != client || license.content != content {
            return Err(Error::Internal("license builder changed the IDs"));
        }
        self.write(|tx| {
            let record = self
                .client_in(tx, client)?
                .ok_or(Error::ClientNotFound(client))?;
            if record.revoked {
                return Err(Error::ClientRevoked(client));
            }
            if license.user != record.user {
                return Err(Error::Internal("license builder changed the user"));
            }
            if !content_exists(tx, content)? {
                return Err(Error::ContentNotFound(content));
            }
            record_request(tx, client, record.user, request, id.0)?;
            insert_license(tx, &license)?;
            let entry = LedgerEntry::new(record.user, content, id.0, charge);
            bill(tx, &entry)?;
            Ok((license.clone(), entry))
        })
    }

    fn license(&self, id: LicenseId) -> Result<Option<LicenseRecord>, Error> {
        self.read(|tx| license_in(tx, id))
    }

    fn used_request(&self, client: ClientId, nonce: u64) -> Result<Option<UsedRequest>, Error> {
        self.read(|tx| {
            tx.prepare_cached(USED_REQUEST)?
                .query_row(params![lookup(client.0), nonce_bits(nonce)], |r| {
                    Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?))
                })
                .optional()?
                .map(|(digest, answer)| used_request(digest, answer))
                .transpose()
        })
    }

    fn commit_move(
        &self,
        intent: &MoveIntent,
        charge: Charge,
        build: MoveBuilder<'_>,
    ) -> Result<(LicenseRecord, CertificateRecord, LedgerEntry), Error> {
        self.write(|tx| {
            let ctx = check_move(
                intent,
                self.client_in(tx, intent.source)?,
                license_in(tx, intent.license)?,
                self.client_in(tx, intent.destination)?,
            )?;
            let certificate_id = CertificateId(self.take_id(&self.next_certificate)?);
            let license_id = LicenseId(self.take_id(&self.next_license)?);
            record_request(
                tx,
                intent.source,
                ctx.source.user,
                intent.request,
                certificate_id.0,
            )?;
            let rows = build(&ctx, certificate_id, license_id)?;
            rows.check(&ctx, certificate_id, license_id)?;
            let MoveRows {
                moved,
                license: new_license,
                history: h,
            } = rows;
            tx.prepare_cached("UPDATE licenses SET state = ?2, tag = ?3 WHERE id = ?1")?
                .execute(params![
                    sql(intent.license.0)?,
                    state_code(LicenseState::Moved),
                    moved.tag.as_slice(),
                ])?;
            insert_license(tx, &new_license)?;
            tx.prepare_cached(&format!(
                "INSERT INTO history ({HISTORY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
            ))?
            .execute(history_values(&h)?)?;
            let entry = LedgerEntry::new(
                ctx.source.user,
                ctx.license.content,
                certificate_id.0,
                charge,
            );
            bill(tx, &entry)?;
            Ok((new_license, h, entry))
        })
    }

    fn certificate_history(&self) -> Result<Vec<CertificateRecord>, Error> {
        self.read(|tx| {
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT {HISTORY_COLUMNS} FROM history ORDER BY id"
            ))?;
            let rows = stmt.query_map([], ints::<10>)?;
            rows.map(|row| history_record(row?)).collect()
        })
    }

    fn ledger(&self) -> Result<Vec<LedgerEntry>, Error> {
        self.read(|tx| {
            let mut stmt =
                tx.prepare_cached(&format!("SELECT {LEDGER_COLUMNS} FROM ledger ORDER BY seq"))?;
            let rows = stmt.query_map([], ints::<6>)?;
            rows.map(|row| ledger_entry(row?)).collect()
        })
    }

    fn user_total(&self, user: UserId) -> Result<u64, Error> {
        self.read(|tx| {
            let total: Option<i64> = tx
                .prepare_cached("SELECT total FROM users WHERE id = ?1")?
                .query_row([lookup(user.0)], |r| r.get(0))
                .optional()?;
            un(total.ok_or(Error::UserNotFound(user))?)
        })
    }

    fn licenses_of_content(&self, content: ContentId) -> Result<Vec<LicenseId>, Error> {
        self.read(|tx| {
            ids(
                tx,
                "SELECT id FROM licenses WHERE content_id = ?1 ORDER BY id",
                content.0,
                LicenseId,
            )
        })
    }

    fn contents_of_user(&self, user: UserId) -> Result<Vec<ContentId>, Error> {
        self.read(|tx| {
            ids(
                tx,
                "SELECT content_id FROM downloads WHERE user_id = ?1 ORDER BY content_id",
                user.0,
                ContentId,
            )
        })
    }

    fn licenses_of_user(&self, user: UserId) -> Result<Vec<LicenseId>, Error> {
        self.read(|tx| {
            ids(
                tx,
                "SELECT id FROM licenses WHERE user_id = ?1 ORDER BY id",
                user.0,
                LicenseId,
            )
        })
    }

    fn users(&self) -> Result<Vec<(UserId, u64)>, Error> {
        self.read(|tx| {
            let mut stmt = tx.prepare_cached("SELECT id, total FROM users ORDER BY id")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?;
            rows.map(|row| {
                let (id, total) = row?;
                Ok((UserId(un(id)?), un(total)?))
            })
            .collect()
        })
    }

    fn all_clients(&self) -> Result<Vec<ClientRecord>, Error> {
        self.read(|tx| {
            let mut stmt =
                tx.prepare_cached(&format!("SELECT {CLIENT_COLUMNS} FROM clients ORDER BY id"))?;
            let rows = stmt.query_map([], client_row)?;
            rows.map(|row| row?.into_record(self.height)).collect()
        })
    }

    fn client_summaries(&self) -> Result<Vec<ClientSummary>, Error> {
        self.read(|tx| {
            let mut stmt =
                tx.prepare_cached("SELECT id, user_id, leaf, revoked FROM clients ORDER BY id")?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, bool>(3)?,
                ))
            })?;
            rows.map(|row| {
                let (id, user, leaf, revoked) = row?;
                let leaf = stored_leaf(leaf, self.height)?;
                Ok(ClientSummary {
                    id: ClientId(un(id)?),
                    user: UserId(un(user)?),
                    leaf,
                    revoked,
                })
            })
            .collect()
        })
    }

    fn scan_users(
        &self,
        visit: &mut dyn FnMut(UserRows) -> Result<(), Error>,
    ) -> Result<(), Error> {
        scan::by_pages(
            |after, size| self.read(|tx| rows::page(tx, after, size, self.height)),
            visit,
        )
    }

    fn scan_leaves(
        &self,
        visit: &mut dyn FnMut(LeafIndex, ClientId) -> Result<(), Error>,
    ) -> Result<(), Error> {
        scan::leaves_by_pages(
            |after| self.read(|tx| rows::leaf_page(tx, after, self.height)),
            visit,
        )
    }

    fn user_rows(&self, user: UserId) -> Result<Option<UserRows>, Error> {
        let page = self.read(|tx| rows::page(tx, scan::before(user), 1, self.height))?;
        Ok(scan::one_user(page, user))
    }

    fn all_licenses(&self) -> Result<Vec<LicenseRecord>, Error> {
        self.read(|tx| {
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT {LICENSE_COLUMNS} FROM licenses ORDER BY id"
            ))?;
            let rows = stmt.query_map([], license_row)?;
            rows.map(|row| license_record(row?)).collect()
        })
    }
}
