//! The durable registry on SQLite (`rusqlite`, SQLite bundled: nothing to install): the SQLite
//! driver of [`SqlRegistry`], whose queries and checks are shared with PostgreSQL.
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
//!   a time anyway, and this keeps every transaction simple and atomic. One process writes a
//!   registry at a time: it holds the lock file `PATH-lock`; another writer waits up to the busy
//!   timeout (5 s), then gets a clear `Storage` error. Readers in other processes
//!   ([`SqliteRegistry::open_read_only`], [`SqliteRegistry::backup`]) read while it writes
//!   (WAL, normal locking: issue 28).
//!
//! The schema is in `docs/storage.md`.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, TransactionBehavior};
use treecast_keytree::TreeHeight;
use treecast_protocol::Error;

use super::sql::{
    Cell, Driver, Kind, Lock, NewId, Row, SqlRegistry, StorageError, Tx, Value, timed,
};

mod open;
mod rows;
mod schema;

/// The schema version this build writes and reads (older files are migrated on opening).
pub const SCHEMA_VERSION: usize = schema::MIGRATIONS.len();

use rows::{meta, set_meta};

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
/// use treecast_keytree::TreeHeight;
/// use treecast_registry::{Registry, SqliteRegistry};
/// # fn main() -> Result<(), treecast_protocol::Error> {
/// let path = std::env::temp_dir().join(format!("treecast-doc-{}.sqlite", std::process::id()));
/// # let _ = std::fs::remove_file(&path);
/// let user = SqliteRegistry::open(&path, TreeHeight::new(16)?)?.add_user()?;
/// // Reopened, the file still knows the user.
/// assert!(SqliteRegistry::open_existing(&path)?.has_user(user)?);
/// # for end in ["", "-wal", "-shm"] {
/// #     std::fs::remove_file(format!("{}{end}", path.display())).ok();
/// # }
/// # Ok(()) }
/// ```
pub type SqliteRegistry = SqlRegistry<SqliteDriver>;

/// The SQLite driver of a [`SqlRegistry`]: one connection, and this opening's ID range.
#[derive(Debug)]
pub struct SqliteDriver {
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
    /// The writer's lock file, held while the registry is open (`None` read-only).
    _writer: Option<std::fs::File>,
    /// The database file.
    path: std::path::PathBuf,
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
        self.driver.run(Kind::Read, &mut |tx| {
            tx.query(
                "SELECT type || ' ' || name FROM sqlite_master WHERE type IN ('trigger', 'view') ORDER BY name",
                &[],
            )?
            .into_iter()
            .map(|mut r| String::from_utf8(r.bytes(0)?).map_err(|_| Error::Storage("a schema name that is not UTF-8".into())))
            .collect()
        })
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
        self.driver
            .lock()?
            .execute("VACUUM INTO ?1", [target])
            .map_err(|e| {
                Error::Storage(format!("backup to {}: {}", path.display(), describe(&e)))
            })?;
        Ok(())
    }
}

impl SqliteRegistry {
    /// Copies the registry file at `source` to a new file at `out` with SQLite's online backup
    /// API, while another process writes it (`treecast store backup`): the copy is one
    /// consistent snapshot (one read transaction; the WAL lets the writer go on meanwhile),
    /// holding every change committed before the backup began. It is written to `out.partial`,
    /// synced, checked (`PRAGMA integrity_check`) and only then renamed to `out`, so that an
    /// interrupted backup leaves no file that looks complete.
    ///
    /// # Errors
    /// [`Error::Storage`] when `source` is no registry, `out` exists, or a step fails.
    pub fn backup(source: &Path, out: &Path) -> Result<(), Error> {
        let at = |what: &Path, e: &dyn core::fmt::Display| backup_error(out, what, e);
        if out.exists() {
            return Err(at(out, &"exists already"));
        }
        let mut partial_name = out.as_os_str().to_owned();
        partial_name.push(".partial");
        let partial = std::path::PathBuf::from(partial_name);
        // Made here, never taken over: a `.partial` left by a backup that was killed, or being
        // written by one that runs, is the operator's to look at.
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&partial)
            .map_err(|e| {
                at(
                    &partial,
                    &format!("{e} (an interrupted or running backup?)"),
                )
            })?;
        let copied = Self::copy_into(source, &partial, out);
        if copied.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        copied
    }

    /// The steps of [`SqliteRegistry::backup`] after `partial` was made.
    fn copy_into(source: &Path, partial: &Path, out: &Path) -> Result<(), Error> {
        let at = |what: &Path, e: &dyn core::fmt::Display| backup_error(out, what, e);
        let partial = partial.to_owned();
        let src = Self::open_read_only(source)?;
        {
            let from = src.driver.lock()?;
            let mut to = Connection::open(&partial).map_err(|e| at(&partial, &describe(&e)))?;
            // Every page in one step: one read transaction, so one snapshot.
            let backup = rusqlite::backup::Backup::new(&from, &mut to)
                .map_err(|e| at(source, &describe(&e)))?;
            let deadline = std::time::Instant::now() + BACKUP_WAIT;
            loop {
                match backup.step(-1).map_err(|e| at(source, &describe(&e)))? {
                    rusqlite::backup::StepResult::Done => break,
                    rusqlite::backup::StepResult::More => {}
                    _ if std::time::Instant::now() > deadline => {
                        return Err(at(
                            source,
                            &format!("busy for more than {} s", BACKUP_WAIT.as_secs()),
                        ));
                    }
                    _ => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            drop(backup);
            // The copy is complete on its own: its WAL folded in.
            to.execute_batch("PRAGMA journal_mode = DELETE")
                .map_err(|e| at(&partial, &describe(&e)))?;
            let check: String = to
                .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                .map_err(|e| at(&partial, &describe(&e)))?;
            if check != "ok" {
                return Err(at(&partial, &format!("integrity check: {check}")));
            }
        }
        // A hard link, then the partial name removed: unlike a rename, the link never replaces
        // a file that appeared at `out` meanwhile.
        std::fs::File::open(&partial)
            .and_then(|f| f.sync_all())
            .and_then(|()| std::fs::hard_link(&partial, out))
            .and_then(|()| std::fs::remove_file(&partial))
            .map_err(|e| at(&partial, &e))?;
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
        }
        Ok(())
    }
}

impl SqliteDriver {
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

    fn lock(&self) -> Result<MutexGuard<'_, Connection>, Error> {
        self.conn
            .lock()
            .map_err(|_| Error::Storage("registry lock poisoned by a panic".into()))
    }

    /// Makes sure the next leaf lies below the durable reserve: when it does not, raises the
    /// reserve by a block in a transaction of its own, on disk before the registration's
    /// (`synchronous = FULL`). A registration itself then commits at the registry's durability,
    /// and a power loss can never hand its leaf out again: the next opening starts at the
    /// reserve. Each opening leaves the rest of a block unused (at most [`leaf_block`] leaves).
    fn reserve_leaf(&self, conn: &mut Connection) -> Result<(), Error> {
        // The connection's lock is held and this process is the file's one writer (its lock
        // file): nothing changes between this look and the raise.
        let next = meta(conn, "next_leaf")?;
        if next < meta(conn, "leaf_reserve")? {
            // Most registrations: the reserve is ahead, nothing to write or sync.
            return Ok(());
        }
        durably(conn, |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .storage()?;
            set_meta(
                &tx,
                "leaf_reserve",
                next.saturating_add(leaf_block(self.height)),
            )?;
            tx.commit().storage()?;
            Ok(())
        })
    }
}

/// Runs `f` in one transaction of `behavior` on `conn`, committing only if it succeeds.
fn transaction<T>(
    conn: &mut Connection,
    behavior: TransactionBehavior,
    f: &mut dyn FnMut(&mut dyn Tx) -> Result<T, Error>,
) -> Result<T, Error> {
    let tx = conn.transaction_with_behavior(behavior).storage()?;
    let out = f(&mut SqliteTx(&tx))?;
    tx.commit().storage()?;
    Ok(out)
}

impl Driver for SqliteDriver {
    fn run<T>(
        &self,
        kind: Kind,
        f: &mut dyn FnMut(&mut dyn Tx) -> Result<T, Error>,
    ) -> Result<T, Error> {
        timed("sqlite", kind, || {
            let mut conn = self.lock()?;
            match kind {
                // Every change takes the write lock up front (`BEGIN IMMEDIATE`), so that a
                // transaction never fails half-way on a lock upgrade.
                Kind::Read | Kind::Snapshot => {
                    transaction(&mut conn, TransactionBehavior::Deferred, f)
                }
                Kind::Write | Kind::Alone => {
                    transaction(&mut conn, TransactionBehavior::Immediate, f)
                }
                Kind::Durable => durably(&mut conn, |conn| {
                    transaction(conn, TransactionBehavior::Immediate, f)
                }),
                Kind::Register => {
                    self.reserve_leaf(&mut conn)?;
                    transaction(&mut conn, TransactionBehavior::Immediate, f)
                }
            }
        })
    }

    fn probe(&self, depth: crate::Probe) -> Result<(), Error> {
        use std::io::Read;
        let shown = self.path.display();
        // The header from the disk: the connection's cache would serve pages of a file
        // overwritten since (issue 28: a corrupted file was served until a write failed). A
        // passive checkpoint first, so that the file holds its first page (a new registry's
        // pages may all be in the WAL still); it waits for no one.
        self.lock()?
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            .map_err(|e| Error::Storage(format!("{shown}: {}", describe(&e))))?;
        let mut header = [0u8; 100];
        std::fs::File::open(&self.path)
            .and_then(|mut f| f.read_exact(&mut header))
            .map_err(|e| Error::Storage(format!("{shown}: {e}")))?;
        let application = header
            .get(68..72)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(|b| i64::from(u32::from_be_bytes(b)));
        if !header.starts_with(b"SQLite format 3\0") || application != Some(schema::APPLICATION_ID)
        {
            return Err(Error::Storage(format!(
                "{shown}: the file's header is no longer a treecast registry's (damaged?)"
            )));
        }
        if depth == crate::Probe::Startup {
            let check: String = self
                .lock()?
                .query_row("PRAGMA quick_check", [], |r| r.get(0))
                .map_err(|e| Error::Storage(format!("{shown}: {}", describe(&e))))?;
            if check != "ok" {
                return Err(Error::Storage(format!("{shown}: damaged: {check}")));
            }
        }
        Ok(())
    }

    fn new_id(&self, tx: &mut dyn Tx, id: NewId) -> Result<u64, Error> {
        let table = match id {
            NewId::License => return self.take_id(&self.next_license),
            NewId::Certificate => return self.take_id(&self.next_certificate),
            NewId::User => "SELECT COALESCE(MAX(id), 0) + 1 FROM users",
            NewId::Content => "SELECT COALESCE(MAX(id), 0) + 1 FROM contents",
        };
        super::sql::un(tx.one(table, &[])?.int(0)?)
    }

    fn license_id(&self) -> Result<u64, Error> {
        self.take_id(&self.next_license)
    }

    fn lock(&self, _: Lock) -> &'static str {
        // One writer holds the whole file: no row locks to take.
        ""
    }

    fn supply_statement(&self) -> Option<&'static str> {
        None
    }
}

/// Statements on a SQLite transaction.
struct SqliteTx<'a>(&'a Connection);

impl SqliteTx<'_> {
    fn statement(&self, sql: &str) -> Result<rusqlite::CachedStatement<'_>, Error> {
        // The shared queries number their parameters `$n`; SQLite's positional form is `?n`.
        self.0.prepare_cached(&sql.replace('$', "?")).storage()
    }
}

impl Tx for SqliteTx<'_> {
    fn query(&mut self, sql: &str, params: &[Value<'_>]) -> Result<Vec<Row>, Error> {
        let mut stmt = self.statement(sql)?;
        let columns = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(params)).storage()?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().storage()? {
            let cells = (0..columns)
                .map(|i| {
                    Ok(match r.get_ref(i).storage()? {
                        ValueRef::Null => Cell::Null,
                        ValueRef::Integer(v) => Cell::Int(v),
                        ValueRef::Blob(b) | ValueRef::Text(b) => Cell::Bytes(b.to_vec()),
                        ValueRef::Real(_) => {
                            return Err(Error::Storage("a real number in the registry".into()));
                        }
                    })
                })
                .collect::<Result<_, Error>>()?;
            out.push(Row(cells));
        }
        Ok(out)
    }

    fn execute(&mut self, sql: &str, params: &[Value<'_>]) -> Result<u64, Error> {
        let changed = self
            .statement(sql)?
            .execute(rusqlite::params_from_iter(params))
            .storage()?;
        Ok(changed as u64)
    }
}

impl rusqlite::ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match *self {
            Self::Int(v) => ValueRef::Integer(v),
            Self::Null | Self::NullBytes => ValueRef::Null,
            Self::Bytes(b) => ValueRef::Blob(b),
            Self::Text(t) => ValueRef::Text(t.as_bytes()),
        }))
    }
}

impl<T> StorageError<T> for Result<T, rusqlite::Error> {
    fn storage(self) -> Result<T, Error> {
        self.map_err(|e| Error::Storage(describe(&e)))
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

/// A backup's failure: the copy, the file it failed on, why.
fn backup_error(out: &Path, what: &Path, e: &dyn core::fmt::Display) -> Error {
    Error::Storage(format!(
        "backup to {}: {}: {e}",
        out.display(),
        what.display()
    ))
}

/// How long a backup waits for a source that stays busy or locked.
const BACKUP_WAIT: Duration = Duration::from_secs(60);
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
    let before: i64 = conn
        .query_row("PRAGMA synchronous", [], |r| r.get(0))
        .storage()?;
    conn.execute_batch("PRAGMA synchronous = FULL").storage()?;
    let out = f(conn);
    conn.execute_batch(&format!("PRAGMA synchronous = {before}"))
        .storage()?;
    out
}
