//! Opening a registry file: creating or migrating it, refusing someone else's, starting an ID
//! generation; and opening one read-only for checks.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use rusqlite::{Connection, TransactionBehavior};
use treecast_keytree::TreeHeight;
use treecast_protocol::Error;

use super::rows::{meta, set_meta};
use super::schema::{migrate, stored_height};
use super::{
    BUSY_TIMEOUT, Durability, IdRange, STATEMENT_CACHE, SqlRegistry, SqliteDriver, SqliteRegistry,
    describe, durably,
};
use crate::sql::StorageError;

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
        // One writing process a file: its lock file, held until the registry is dropped.
        let writer = writer_lock(path)?;
        let conn = Connection::open(path).map_err(what)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(what)?;
        // Every statement stays prepared (rusqlite keeps 16 by default; this registry has ~40).
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        // Small pages: each commit writes a few tail pages to the WAL, 1 KiB each rather than
        // 4 KiB (takes effect only for a new file, before it turns WAL). Normal locking, not
        // exclusive: a reader in another process (`treecast store backup`, `store check`) reads
        // while this one writes (issue 28); the lock file keeps other writers out.
        conn.execute_batch("PRAGMA page_size = 1024")
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
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .storage()?;
            let generation = meta(&tx, "generation")?
                .checked_add(1)
                .ok_or(Error::Internal("generation overflow"))?;
            set_meta(&tx, "generation", generation)?;
            // Leaves below the reserve may have been handed out by commits a power loss undid:
            // never hand them out again.
            tx.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('leaf_reserve', 0)",
                [],
            )
            .storage()?;
            let reserve = meta(&tx, "leaf_reserve")?;
            if meta(&tx, "next_leaf")? < reserve {
                set_meta(&tx, "next_leaf", reserve)?;
            }
            tx.commit().storage()?;
            Ok(generation)
        })
        .map_err(|e| match e {
            Error::Storage(m) => Error::Storage(format!("{}: {m}", path.display())),
            other => other,
        })?;
        let (first, last) = IdRange::of(generation)?;
        Ok(SqlRegistry {
            driver: SqliteDriver {
                conn: Mutex::new(conn),
                height,
                next_license: AtomicU64::new(first),
                next_certificate: AtomicU64::new(first),
                last_id: last,
                _writer: Some(writer),
                path: path.to_owned(),
            },
            height,
        })
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
        Ok(SqlRegistry {
            driver: SqliteDriver {
                conn: Mutex::new(conn),
                height,
                next_license: AtomicU64::new(u64::MAX),
                next_certificate: AtomicU64::new(u64::MAX),
                last_id: 0,
                _writer: None,
                path: path.to_owned(),
            },
            height,
        })
    }
}

/// The lock file of the registry at `path` (`PATH-lock`), locked for this opening: one process
/// writes a registry at a time (its ID ranges and leaf reserve rely on it), while readers in
/// other processes read the database itself. A lock held elsewhere is waited for up to the busy
/// timeout. The operating system releases it when the process ends, however it ends.
fn writer_lock(path: &Path) -> Result<std::fs::File, Error> {
    // The file's real path: a link to it, or another spelling of it, must find the same lock
    // (review of issue 28). A new file's directory is resolved, its name kept.
    let real = std::fs::canonicalize(path).or_else(|_| {
        let directory = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let name = path
            .file_name()
            .ok_or_else(|| std::io::Error::other("no file name"))?;
        std::fs::canonicalize(directory).map(|d| d.join(name))
    });
    let real = real.map_err(|e| Error::Storage(format!("{}: {e}", path.display())))?;
    let mut name = real.into_os_string();
    name.push("-lock");
    let lock_path = std::path::PathBuf::from(name);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::Storage(format!("{}: {e}", lock_path.display())))?;
    let started = std::time::Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if started.elapsed() < BUSY_TIMEOUT => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Storage(format!(
                    "{}: locked by another process for more than {} s (one process writes a \
                     registry at a time)",
                    path.display(),
                    BUSY_TIMEOUT.as_secs()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::Storage(format!("{}: {e}", lock_path.display())));
            }
        }
    }
}
