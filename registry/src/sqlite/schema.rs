//! The registry file's schema: its migrations, and the checks that a file is a treecast registry
//! of this version and tree height before anything in it is touched.

use rusqlite::{Connection, OptionalExtension};
use treecast_keytree::TreeHeight;
use treecast_protocol::Error;

use super::describe;
use crate::sql::StorageError;

/// Marks the file as a treecast registry ("TCRG").
pub(super) const APPLICATION_ID: i64 = 0x5443_5247;

/// The schema migrations; entry `i` takes the schema from version `i` to `i + 1`.
pub(super) const MIGRATIONS: &[&str] = &[
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
    // Version 3: the indexes of a streamed audit, shared with PostgreSQL.
    super::super::sql::SCAN_INDEXES,
    // Version 4: requests keep their user, digest and answer, so that the same request sent
    // again is answered again (issue 15).
    "ALTER TABLE requests ADD COLUMN user_id INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE requests ADD COLUMN digest BLOB NOT NULL DEFAULT x'';
     ALTER TABLE requests ADD COLUMN answer INTEGER NOT NULL DEFAULT 0",
    // Version 5: every epoch's signed EKB, so that any process serves any epoch's.
    "CREATE TABLE ekbs (epoch INTEGER PRIMARY KEY, bytes BLOB NOT NULL)",
    // Version 6: the store's random ID and the fingerprint of its keys (issue 24).
    "CREATE TABLE binding (name TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID",
    // Version 7: a license's terms (issue 27), NULL for a perpetual one.
    "ALTER TABLE licenses ADD COLUMN terms BLOB",
    // Version 8: a user's credential epoch (issue 29), raised by each rotation.
    "ALTER TABLE users ADD COLUMN credential_epoch INTEGER NOT NULL DEFAULT 0",
    // Version 9: each license server's newest key list signed by the authority (issue 29).
    "CREATE TABLE server_keys (server INTEGER PRIMARY KEY, sequence INTEGER NOT NULL, \
     list BLOB NOT NULL)",
];

pub(super) fn check_application(conn: &Connection) -> Result<(), Error> {
    let app: i64 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .storage()?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .storage()?;
    if version == 0 && app == 0 {
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .storage()?;
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

pub(super) fn migrate(conn: &Connection, height: TreeHeight) -> Result<(), Error> {
    check_application(conn)?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .storage()?;
    if version == 1 {
        let rows: i64 = conn
            .query_row(
                "SELECT (SELECT count(*) FROM clients) + (SELECT count(*) FROM contents)",
                [],
                |r| r.get(0),
            )
            .storage()?;
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
        }).storage()?;
    }
    // Fix the tree height on first use; refuse another one later.
    conn.execute(
        "INSERT OR IGNORE INTO meta (key, value) VALUES ('height', ?1), ('epoch', 1), ('next_leaf', 0)",
        [i64::from(height.get())],
    ).storage()?;
    let stored: i64 = conn
        .query_row("SELECT value FROM meta WHERE key = 'height'", [], |r| {
            r.get(0)
        })
        .storage()?;
    if stored != i64::from(height.get()) {
        return Err(Error::Storage(format!(
            "the registry is for a height-{stored} tree, not height {height}"
        )));
    }
    Ok(())
}

/// The tree height stored in a registry file, after checking that it is one.
pub(super) fn stored_height(conn: &Connection) -> Result<TreeHeight, Error> {
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
