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
    Revoker, check_move,
};
use crate::Error;
use crate::billing::{Charge, ChargeKind, LedgerEntry};
use crate::ids::{CertificateId, ClientId, ContentId, LicenseId, ServerId, UserId};
use crate::license::Rights;
use crate::time::UnixTime;

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
    /// Opens (or creates) the registry at `path` for a tree of height `height`, applying any
    /// pending schema migration, with [`Durability::Process`].
    ///
    /// # Errors
    /// [`Error::Storage`] for a file that is not a treecast registry (corrupt, foreign, newer
    /// schema, another tree height) or cannot be opened.
    pub fn open(path: &Path, height: TreeHeight) -> Result<Self, Error> {
        Self::open_with(path, height, Durability::Process)
    }

    /// As [`SqliteRegistry::open`], with the given durability.
    ///
    /// # Errors
    /// As [`SqliteRegistry::open`].
    pub fn open_with(
        path: &Path,
        height: TreeHeight,
        durability: Durability,
    ) -> Result<Self, Error> {
        let what =
            |e: rusqlite::Error| Error::Storage(format!("{}: {}", path.display(), describe(&e)));
        let conn = Connection::open(path).map_err(what)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(what)?;
        // Every statement stays prepared (rusqlite keeps 16 by default; this registry has ~40).
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        // Small pages: each commit writes a few tail pages to the WAL, 1 KiB each rather than
        // 4 KiB (takes effect only for a new file, before it turns WAL). Exclusive locking: one
        // process has the registry open at a time, and WAL then needs no shared memory, which
        // saves the lock system calls of every transaction (license supply: 203 -> 183 µs).
        conn.execute_batch("PRAGMA page_size = 1024; PRAGMA locking_mode = EXCLUSIVE")
            .map_err(what)?;
        // The first read of the file: a non-database fails here.
        let journal: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(what)?;
        if !journal.eq_ignore_ascii_case("wal") {
            return Err(Error::Storage(format!(
                "{}: cannot use WAL ({journal})",
                path.display()
            )));
        }
        let sync = match durability {
            Durability::Power => "FULL",
            Durability::Process => "NORMAL",
        };
        conn.execute_batch(&format!(
            "PRAGMA synchronous = {sync}; PRAGMA foreign_keys = ON;"
        ))
        .map_err(what)?;
        migrate(&conn, height).map_err(|e| match e {
            Error::Storage(m) => Error::Storage(format!("{}: {m}", path.display())),
            other => other,
        })?;
        let mut conn = conn;
        let generation = durably(&mut conn, |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let generation = meta(&tx, "generation")?
                .checked_add(1)
                .ok_or(Error::Internal("generation overflow"))?;
            set_meta(&tx, "generation", generation)?;
            tx.commit()?;
            Ok(generation)
        })
        .map_err(|e| match e {
            Error::Storage(m) => Error::Storage(format!("{}: {m}", path.display())),
            other => other,
        })?;
        let (first, last) = IdRange::of(generation)?;
        Ok(Self {
            conn: Mutex::new(conn),
            height,
            next_license: AtomicU64::new(first),
            next_certificate: AtomicU64::new(first),
            last_id: last,
        })
    }

    /// Opens an existing registry for reading only, for checks: the file, its journal and its
    /// schema are not changed, no file is created, and `trusted_schema` is off so that no SQL
    /// function of the file's own schema runs. Reading a file left by a killed writer (a WAL
    /// still to be replayed) needs its directory writable for SQLite's read-only recovery.
    ///
    /// # Errors
    /// As [`SqliteRegistry::open_existing`].
    pub fn open_read_only(path: &Path) -> Result<Self, Error> {
        let what =
            |e: rusqlite::Error| Error::Storage(format!("{}: {}", path.display(), describe(&e)));
        if !path.exists() {
            return Err(Error::Storage(format!(
                "{}: no such registry",
                path.display()
            )));
        }
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(what)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(what)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        conn.execute_batch("PRAGMA trusted_schema = OFF; PRAGMA query_only = ON;")
            .map_err(what)?;
        let height = stored_height(&conn).map_err(|e| match e {
            Error::Storage(m) => Error::Storage(format!("{}: {m}", path.display())),
            other => other,
        })?;
        Ok(Self {
            conn: Mutex::new(conn),
            height,
            next_license: AtomicU64::new(u64::MAX),
            next_certificate: AtomicU64::new(u64::MAX),
            last_id: 0,
        })
    }

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

    /// Opens an existing registry, reading the tree height from it.
    ///
    /// # Errors
    /// As [`SqliteRegistry::open`]; also when the file has no registry yet.
    pub fn open_existing(path: &Path) -> Result<Self, Error> {
        if !path.exists() {
            return Err(Error::Storage(format!(
                "{}: no such registry",
                path.display()
            )));
        }
        let what =
            |e: rusqlite::Error| Error::Storage(format!("{}: {}", path.display(), describe(&e)));
        let height = {
            let conn =
                Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                    .map_err(what)?;
            conn.busy_timeout(BUSY_TIMEOUT).map_err(what)?;
            conn.execute_batch("PRAGMA trusted_schema = OFF")
                .map_err(what)?;
            stored_height(&conn).map_err(|e| match e {
                Error::Storage(m) => Error::Storage(format!("{}: {m}", path.display())),
                other => other,
            })?
        };
        Self::open(path, height)
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
/// Marks the file as a treecast registry ("TCRG").
const APPLICATION_ID: i64 = 0x5443_5247;

/// The schema migrations; entry `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // Version 1.
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
     CREATE TABLE users (id INTEGER PRIMARY KEY, total INTEGER NOT NULL DEFAULT 0);
     CREATE TABLE clients (
         id INTEGER PRIMARY KEY,
         user_id INTEGER NOT NULL REFERENCES users(id),
         leaf INTEGER NOT NULL UNIQUE,
         server INTEGER NOT NULL,
         certificate BLOB NOT NULL,
         public_key BLOB NOT NULL,
         revoked INTEGER NOT NULL DEFAULT 0);
     CREATE INDEX clients_by_user ON clients(user_id);
     CREATE TABLE contents (id INTEGER PRIMARY KEY, epoch INTEGER NOT NULL, envelope BLOB NOT NULL);
     CREATE TABLE downloads (
         user_id INTEGER NOT NULL REFERENCES users(id),
         content_id INTEGER NOT NULL REFERENCES contents(id),
         PRIMARY KEY (user_id, content_id)) WITHOUT ROWID;
     CREATE TABLE licenses (
         id INTEGER PRIMARY KEY,
         content_id INTEGER NOT NULL REFERENCES contents(id),
         client_id INTEGER NOT NULL REFERENCES clients(id),
         user_id INTEGER NOT NULL REFERENCES users(id),
         epoch INTEGER NOT NULL,
         state INTEGER NOT NULL,
         origin INTEGER,
         issued_at INTEGER NOT NULL);
     CREATE INDEX licenses_by_content ON licenses(content_id);
     CREATE INDEX licenses_by_user ON licenses(user_id);
     CREATE TABLE requests (
         client_id INTEGER NOT NULL,
         nonce INTEGER NOT NULL,
         PRIMARY KEY (client_id, nonce)) WITHOUT ROWID;
     CREATE TABLE history (
         id INTEGER PRIMARY KEY,
         user_id INTEGER NOT NULL,
         content_id INTEGER NOT NULL,
         source INTEGER NOT NULL,
         source_license INTEGER NOT NULL REFERENCES licenses(id),
         destination INTEGER NOT NULL,
         destination_license INTEGER NOT NULL REFERENCES licenses(id),
         server INTEGER NOT NULL,
         issued_at INTEGER NOT NULL,
         expires_at INTEGER NOT NULL);
     CREATE TABLE ledger (
         seq INTEGER PRIMARY KEY AUTOINCREMENT,
         user_id INTEGER NOT NULL REFERENCES users(id),
         kind INTEGER NOT NULL,
         content_id INTEGER NOT NULL,
         reference INTEGER NOT NULL,
         amount INTEGER NOT NULL,
         at INTEGER NOT NULL);",
    // Version 2 (issue 12): content keys under the distributor's storage key, tagged client and
    // license rows, license rights, and the ID generation. Applied only to a registry without
    // clients or contents (`migrate`): a version-1 envelope is under a broadcast key, and a
    // version-1 row has no tag, so neither can be carried over safely.
    "ALTER TABLE contents RENAME COLUMN epoch TO key_id;
     ALTER TABLE clients ADD COLUMN tag BLOB NOT NULL DEFAULT x'';
     ALTER TABLE licenses ADD COLUMN rights INTEGER NOT NULL DEFAULT 3;
     ALTER TABLE licenses ADD COLUMN tag BLOB NOT NULL DEFAULT x'';
     INSERT OR IGNORE INTO meta (key, value) VALUES ('generation', 0);",
];

fn check_application(conn: &Connection) -> Result<(), Error> {
    let app: i64 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version == 0 && app == 0 {
        let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
        if tables > 0 {
            return Err(Error::Storage(
                "a SQLite database of something else, not a treecast registry".into(),
            ));
        }
        return Ok(());
    }
    if app != APPLICATION_ID {
        return Err(Error::Storage(
            "a SQLite database of something else, not a treecast registry".into(),
        ));
    }
    if version > MIGRATIONS.len() as i64 {
        return Err(Error::Storage(format!(
            "schema version {version} is newer than this treecast ({})",
            MIGRATIONS.len()
        )));
    }
    Ok(())
}

fn migrate(conn: &Connection, height: TreeHeight) -> Result<(), Error> {
    check_application(conn)?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version == 1 {
        let rows: i64 = conn.query_row(
            "SELECT (SELECT count(*) FROM clients) + (SELECT count(*) FROM contents)",
            [],
            |r| r.get(0),
        )?;
        if rows > 0 {
            return Err(Error::Storage(
                "schema version 1 keeps content keys under broadcast keys and untagged rows; \
                 this treecast cannot upgrade it safely (see docs/storage.md): start a new registry"
                    .into(),
            ));
        }
    }
    for (i, sql_text) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(version).unwrap_or(0))
    {
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {sql_text}; PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {}; COMMIT;",
            i + 1
        ))
        .inspect_err(|_| {
            let _ = conn.execute_batch("ROLLBACK");
        })?;
    }
    // Fix the tree height on first use; refuse another one later.
    conn.execute(
        "INSERT OR IGNORE INTO meta (key, value) VALUES ('height', ?1), ('epoch', 1), ('next_leaf', 0)",
        [i64::from(height.get())],
    )?;
    let stored: i64 = conn.query_row("SELECT value FROM meta WHERE key = 'height'", [], |r| {
        r.get(0)
    })?;
    if stored != i64::from(height.get()) {
        return Err(Error::Storage(format!(
            "the registry is for a height-{stored} tree, not height {height}"
        )));
    }
    Ok(())
}

/// The tree height stored in a registry file, after checking that it is one.
fn stored_height(conn: &Connection) -> Result<TreeHeight, Error> {
    check_application(conn)?;
    let h: Option<i64> = conn
        .query_row("SELECT value FROM meta WHERE key = 'height'", [], |r| {
            r.get(0)
        })
        .optional()
        .map_err(|e| Error::Storage(describe(&e)))?;
    let h = h.ok_or_else(|| Error::Storage("not a treecast registry".into()))?;
    u8::try_from(h)
        .ok()
        .and_then(|h| TreeHeight::new(h).ok())
        .ok_or_else(|| Error::Storage(format!("bad tree height {h}")))
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

/// An ID from outside, as a lookup key: an ID beyond SQLite's integers names no row, like any
/// other unknown ID (`-1` is never a stored ID).
fn lookup(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(-1)
}

/// A `u64` as SQLite's signed integer.
fn sql(v: u64) -> Result<i64, Error> {
    i64::try_from(v).map_err(|_| Error::Storage(format!("{v} is too large for the registry")))
}

/// A request nonce as stored: any `u64`, its bits kept as SQLite's signed integer.
fn nonce_bits(v: u64) -> i64 {
    i64::from_be_bytes(v.to_be_bytes())
}

/// A stored storage-key ID.
fn key_id_of(v: i64) -> Result<u32, Error> {
    u32::try_from(v).map_err(|_| Error::Storage(format!("bad storage key ID {v} in the registry")))
}

/// A SQLite integer as a `u64`.
fn un(v: i64) -> Result<u64, Error> {
    u64::try_from(v).map_err(|_| Error::Storage(format!("negative value {v} in the registry")))
}

fn meta(tx: &Transaction<'_>, key: &str) -> Result<u64, Error> {
    let v: i64 = tx
        .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([key], |r| r.get(0))?;
    un(v)
}

fn set_meta(tx: &Transaction<'_>, key: &str, value: u64) -> Result<(), Error> {
    tx.prepare_cached("UPDATE meta SET value = ?2 WHERE key = ?1")?
        .execute(params![key, sql(value)?])?;
    Ok(())
}

fn next_id(tx: &Transaction<'_>, table: &str) -> Result<u64, Error> {
    let v: i64 = tx
        .prepare_cached(&format!("SELECT COALESCE(MAX(id), 0) + 1 FROM {table}"))?
        .query_row([], |r| r.get(0))?;
    un(v)
}

fn ids<T>(
    tx: &Transaction<'_>,
    query: &str,
    key: u64,
    wrap: impl Fn(u64) -> T,
) -> Result<Vec<T>, Error> {
    let mut stmt = tx.prepare_cached(query)?;
    let rows = stmt.query_map([lookup(key)], |r| r.get::<_, i64>(0))?;
    rows.map(|r| Ok(wrap(un(r?)?))).collect()
}

const CLIENT_COLUMNS: &str = "id, user_id, leaf, server, certificate, public_key, revoked, tag";

struct ClientRow(i64, i64, i64, i64, Vec<u8>, Vec<u8>, bool, Vec<u8>);

fn client_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ClientRow> {
    Ok(ClientRow(
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
    ))
}

/// A 32-byte tag column; a wrong length reads as a zero tag, which never verifies.
fn stored_tag(raw: Vec<u8>) -> [u8; 32] {
    raw.try_into().unwrap_or([0; 32])
}

/// A leaf column, checked against the tree.
fn stored_leaf(raw: i64, height: TreeHeight) -> Result<LeafIndex, Error> {
    u32::try_from(raw)
        .ok()
        .and_then(|l| LeafIndex::new(l, height).ok())
        .ok_or_else(|| Error::Storage(format!("bad leaf {raw} in the registry")))
}

impl ClientRow {
    fn into_record(self, height: TreeHeight) -> Result<ClientRecord, Error> {
        let leaf = stored_leaf(self.2, height)?;
        let server = u32::try_from(self.3).map_err(|_| Error::Storage("bad server id".into()))?;
        let public_key: [u8; 32] = self
            .5
            .try_into()
            .map_err(|_| Error::Storage("bad public key length".into()))?;
        Ok(ClientRecord {
            id: ClientId(un(self.0)?),
            user: UserId(un(self.1)?),
            leaf,
            server: ServerId(server),
            certificate: self.4,
            public_key,
            revoked: self.6,
            tag: stored_tag(self.7),
        })
    }
}

/// The first `N` columns of a row, as integers.
fn ints<const N: usize>(r: &rusqlite::Row<'_>) -> rusqlite::Result<[i64; N]> {
    let mut v = [0i64; N];
    for (i, slot) in v.iter_mut().enumerate() {
        *slot = r.get(i)?;
    }
    Ok(v)
}

const LICENSE_COLUMNS: &str =
    "id, content_id, client_id, user_id, epoch, state, origin, issued_at, rights, tag";

fn license_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<([Option<i64>; 9], Vec<u8>)> {
    let mut v = [None; 9];
    for (i, slot) in v.iter_mut().enumerate() {
        *slot = r.get(i)?;
    }
    Ok((v, r.get(9)?))
}

fn license_record((v, tag): ([Option<i64>; 9], Vec<u8>)) -> Result<LicenseRecord, Error> {
    let need = |x: Option<i64>| {
        x.ok_or_else(|| Error::Storage("missing license field".into()))
            .and_then(un)
    };
    let [
        id,
        content,
        client,
        user,
        epoch,
        state,
        origin,
        issued,
        rights,
    ] = v;
    Ok(LicenseRecord {
        rights: Rights(
            u8::try_from(need(rights)?).map_err(|_| Error::Storage("bad license rights".into()))?,
        ),
        tag: stored_tag(tag),
        id: LicenseId(need(id)?),
        content: ContentId(need(content)?),
        client: ClientId(need(client)?),
        user: UserId(need(user)?),
        epoch: need(epoch)?,
        state: match need(state)? {
            0 => LicenseState::Active,
            1 => LicenseState::Moved,
            s => return Err(Error::Storage(format!("bad license state {s}"))),
        },
        origin: origin.map(un).transpose()?.map(CertificateId),
        issued_at: UnixTime(need(issued)?),
    })
}

fn state_code(s: LicenseState) -> i64 {
    match s {
        LicenseState::Active => 0,
        LicenseState::Moved => 1,
    }
}

fn kind_code(k: ChargeKind) -> i64 {
    match k {
        ChargeKind::License => 0,
        ChargeKind::Certificate => 1,
    }
}

fn license_in(tx: &Transaction<'_>, id: LicenseId) -> Result<Option<LicenseRecord>, Error> {
    tx.prepare_cached(&format!(
        "SELECT {LICENSE_COLUMNS} FROM licenses WHERE id = ?1"
    ))?
    .query_row([lookup(id.0)], license_row)
    .optional()?
    .map(license_record)
    .transpose()
}

fn insert_license(tx: &Transaction<'_>, l: &LicenseRecord) -> Result<(), Error> {
    tx.prepare_cached(&format!(
        "INSERT INTO licenses ({LICENSE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
    ))?
    .execute(params![
        sql(l.id.0)?,
        sql(l.content.0)?,
        sql(l.client.0)?,
        sql(l.user.0)?,
        sql(l.epoch)?,
        state_code(l.state),
        l.origin.map(|c| sql(c.0)).transpose()?,
        sql(l.issued_at.0)?,
        i64::from(l.rights.0),
        l.tag.as_slice(),
    ])?;
    Ok(())
}

fn bill(tx: &Transaction<'_>, e: &LedgerEntry) -> Result<(), Error> {
    tx.prepare_cached("INSERT INTO ledger (user_id, kind, content_id, reference, amount, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?
        .execute(params![
            sql(e.user.0)?,
            kind_code(e.kind),
            sql(e.content.0)?,
            sql(e.reference)?,
            sql(e.amount)?,
            sql(e.at.0)?
        ])?;
    tx.prepare_cached("UPDATE users SET total = total + ?2 WHERE id = ?1")?
        .execute(params![sql(e.user.0)?, sql(e.amount)?])?;
    Ok(())
}

fn content_exists(tx: &Transaction<'_>, id: ContentId) -> Result<bool, Error> {
    Ok(tx
        .prepare_cached("SELECT 1 FROM contents WHERE id = ?1")?
        .query_row([lookup(id.0)], |_| Ok(()))
        .optional()?
        .is_some())
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
        self.write_durable(|tx| {
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
            let id = ClientId(next_id(tx, "clients")?);
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
        })
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
        request_nonce: u64,
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
            let inserted = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO requests (client_id, nonce) VALUES (?1, ?2)",
                )?
                .execute(params![sql(client.0)?, nonce_bits(request_nonce)])?;
            if inserted == 0 {
                return Err(Error::RequestReplayed);
            }
            insert_license(tx, &license)?;
            let entry = LedgerEntry::new(record.user, content, id.0, charge);
            bill(tx, &entry)?;
            Ok((license.clone(), entry))
        })
    }

    fn license(&self, id: LicenseId) -> Result<Option<LicenseRecord>, Error> {
        self.read(|tx| license_in(tx, id))
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
            let used = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO requests (client_id, nonce) VALUES (?1, ?2)",
                )?
                .execute(params![sql(intent.source.0)?, nonce_bits(intent.nonce)])?;
            if used == 0 {
                return Err(Error::RequestReplayed);
            }
            let certificate_id = CertificateId(self.take_id(&self.next_certificate)?);
            let license_id = LicenseId(self.take_id(&self.next_license)?);
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
            tx.prepare_cached(
                "INSERT INTO history (id, user_id, content_id, source, source_license, destination,
                 destination_license, server, issued_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                sql(h.id.0)?,
                sql(h.user.0)?,
                sql(h.content.0)?,
                sql(h.source.0)?,
                sql(h.source_license.0)?,
                sql(h.destination.0)?,
                sql(h.destination_license.0)?,
                i64::from(h.server.0),
                sql(h.issued_at.0)?,
                sql(h.expires_at.0)?,
            ])?;
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
            let mut stmt = tx.prepare_cached(
                "SELECT id, user_id, content_id, source, source_license, destination, destination_license,
                 server, issued_at, expires_at FROM history ORDER BY id",
            )?;
            let rows = stmt.query_map([], ints::<10>)?;
            rows.map(|row| {
                let [id, user, content, source, sl, dest, dl, server, issued, expires] = row?;
                Ok(CertificateRecord {
                    id: CertificateId(un(id)?),
                    user: UserId(un(user)?),
                    content: ContentId(un(content)?),
                    source: ClientId(un(source)?),
                    source_license: LicenseId(un(sl)?),
                    destination: ClientId(un(dest)?),
                    destination_license: LicenseId(un(dl)?),
                    server: ServerId(u32::try_from(server).map_err(|_| Error::Storage("bad server".into()))?),
                    issued_at: UnixTime(un(issued)?),
                    expires_at: UnixTime(un(expires)?),
                })
            })
            .collect()
        })
    }

    fn ledger(&self) -> Result<Vec<LedgerEntry>, Error> {
        self.read(|tx| {
            let mut stmt = tx.prepare_cached(
                "SELECT user_id, kind, content_id, reference, amount, at FROM ledger ORDER BY seq",
            )?;
            let rows = stmt.query_map([], ints::<6>)?;
            rows.map(|row| {
                let [user, kind, content, reference, amount, at] = row?;
                let kind = match kind {
                    0 => ChargeKind::License,
                    1 => ChargeKind::Certificate,
                    k => return Err(Error::Storage(format!("bad charge kind {k}"))),
                };
                let charge = Charge::new(kind, un(amount)?, UnixTime(un(at)?));
                Ok(LedgerEntry::new(
                    UserId(un(user)?),
                    ContentId(un(content)?),
                    un(reference)?,
                    charge,
                ))
            })
            .collect()
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
