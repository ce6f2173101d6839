//! The registry's schema on PostgreSQL: its migrations, and the checks that a database is a
//! treecast registry of this version and tree height before anything in it is touched.
//!
//! The tables and columns are those of the SQLite file (`docs/storage.md`), in PostgreSQL's
//! types, plus `user_id` on `requests` so that every per-user table can be distributed by user.

use postgres::Client;
use treecast_keytree::TreeHeight;
use treecast_protocol::Error;

use crate::sql::StorageError;

/// Marks the database as a treecast registry ("TCRG"), in `meta`.
const APPLICATION_ID: i64 = 0x5443_5247;

/// Serializes migrations of processes that start together (`pg_advisory_xact_lock`).
const MIGRATION_LOCK: i64 = 0x5443_5247_0000_0001;

/// The schema migrations; entry `i` takes the schema from version `i` to `i + 1`.
pub(super) const MIGRATIONS: &[&str] = &[
    // Version 1: the registry of treecast 0.2 (the SQLite file's version 2).
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL);
     CREATE TABLE users (id BIGINT PRIMARY KEY, total BIGINT NOT NULL DEFAULT 0);
     CREATE TABLE clients (
         id BIGINT PRIMARY KEY,
         user_id BIGINT NOT NULL REFERENCES users(id),
         leaf BIGINT NOT NULL UNIQUE,
         server BIGINT NOT NULL,
         certificate BYTEA NOT NULL,
         public_key BYTEA NOT NULL,
         revoked BOOLEAN NOT NULL DEFAULT false,
         tag BYTEA NOT NULL);
     CREATE INDEX clients_by_user ON clients(user_id);
     CREATE TABLE contents (id BIGINT PRIMARY KEY, key_id BIGINT NOT NULL, envelope BYTEA NOT NULL);
     CREATE TABLE downloads (
         user_id BIGINT NOT NULL REFERENCES users(id),
         content_id BIGINT NOT NULL REFERENCES contents(id),
         PRIMARY KEY (user_id, content_id));
     CREATE TABLE licenses (
         id BIGINT PRIMARY KEY,
         content_id BIGINT NOT NULL REFERENCES contents(id),
         client_id BIGINT NOT NULL REFERENCES clients(id),
         user_id BIGINT NOT NULL REFERENCES users(id),
         epoch BIGINT NOT NULL,
         state BIGINT NOT NULL,
         origin BIGINT,
         issued_at BIGINT NOT NULL,
         rights BIGINT NOT NULL,
         tag BYTEA NOT NULL);
     CREATE INDEX licenses_by_content ON licenses(content_id);
     CREATE INDEX licenses_by_user ON licenses(user_id);
     CREATE TABLE requests (
         client_id BIGINT NOT NULL,
         nonce BIGINT NOT NULL,
         user_id BIGINT NOT NULL,
         PRIMARY KEY (client_id, nonce));
     CREATE TABLE history (
         id BIGINT PRIMARY KEY,
         user_id BIGINT NOT NULL,
         content_id BIGINT NOT NULL,
         source BIGINT NOT NULL,
         source_license BIGINT NOT NULL REFERENCES licenses(id),
         destination BIGINT NOT NULL,
         destination_license BIGINT NOT NULL REFERENCES licenses(id),
         server BIGINT NOT NULL,
         issued_at BIGINT NOT NULL,
         expires_at BIGINT NOT NULL);
     CREATE TABLE ledger (
         seq BIGSERIAL PRIMARY KEY,
         user_id BIGINT NOT NULL REFERENCES users(id),
         kind BIGINT NOT NULL,
         content_id BIGINT NOT NULL,
         reference BIGINT NOT NULL,
         amount BIGINT NOT NULL,
         at BIGINT NOT NULL);
     CREATE INDEX ledger_by_user ON ledger(user_id);
     CREATE SEQUENCE license_ids START 1099511627777;
     CREATE SEQUENCE certificate_ids START 1099511627777;
     INSERT INTO meta (key, value) VALUES
         ('epoch', 1), ('next_leaf', 0), ('next_user', 1), ('next_content', 1);",
    // Version 2: the indexes of a streamed audit, shared with SQLite.
    super::super::sql::SCAN_INDEXES,
    // Version 3: requests keep their digest and answer, so that the same request sent again is
    // answered again (issue 15).
    "ALTER TABLE requests ADD COLUMN digest BYTEA NOT NULL DEFAULT ''::bytea,
         ADD COLUMN answer BIGINT NOT NULL DEFAULT 0",
    // Version 4: every epoch's signed EKB, so that any process serves any epoch's.
    "CREATE TABLE ekbs (epoch BIGINT PRIMARY KEY, bytes BYTEA NOT NULL)",
    // Version 5: the store's random ID and the fingerprint of its keys (issue 24).
    "CREATE TABLE binding (name TEXT PRIMARY KEY, value BYTEA NOT NULL)",
    // Version 6: a license's terms (issue 27), NULL for a perpetual one.
    "ALTER TABLE licenses ADD COLUMN terms BYTEA",
    // Version 7: a user's credential epoch (issue 29), raised by each rotation.
    "ALTER TABLE users ADD COLUMN credential_epoch BIGINT NOT NULL DEFAULT 0",
    // Version 8: each license server's newest key list signed by the authority (issue 29).
    "CREATE TABLE server_keys (server BIGINT PRIMARY KEY, sequence BIGINT NOT NULL, \
     list BYTEA NOT NULL)",
];

/// Creates or migrates the schema, and fixes or checks the tree height.
pub(super) fn migrate(conn: &mut Client, height: TreeHeight) -> Result<(), Error> {
    let mut tx = conn.transaction().storage()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .storage()?;
    let version = check_application(&mut tx)?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        tx.batch_execute(sql).storage()?;
        let v = i64::try_from(i + 1).map_err(|_| Error::Internal("schema version"))?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('application', $1), ('schema_version', $2)
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            &[&APPLICATION_ID, &v],
        )
        .storage()?;
    }
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('height', $1) ON CONFLICT DO NOTHING",
        &[&i64::from(height.get())],
    )
    .storage()?;
    let stored: i64 = tx
        .query_one("SELECT value FROM meta WHERE key = 'height'", &[])
        .storage()?
        .get(0);
    if stored != i64::from(height.get()) {
        return Err(Error::Storage(format!(
            "the registry is for a height-{stored} tree, not height {height}"
        )));
    }
    tx.commit().storage()?;
    Ok(())
}

/// The schema version of a treecast registry (0 for an empty database); refuses a database that
/// holds something else or a newer schema.
fn check_application(tx: &mut impl postgres::GenericClient) -> Result<usize, Error> {
    let has_meta: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'meta')",
            &[],
        ).storage()?
        .get(0);
    if !has_meta {
        let tables: i64 = tx
            .query_one(
                "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()",
                &[],
            )
            .storage()?
            .get(0);
        if tables > 0 {
            return Err(Error::Storage(
                "a PostgreSQL database of something else, not a treecast registry".into(),
            ));
        }
        return Ok(0);
    }
    let mut get = |key: &str| -> Result<Option<i64>, postgres::Error> {
        Ok(tx
            .query_opt("SELECT value FROM meta WHERE key = $1", &[&key])?
            .map(|r| r.get(0)))
    };
    let app = get("application").storage()?;
    let version = get("schema_version").storage()?;
    if app != Some(APPLICATION_ID) {
        return Err(Error::Storage(
            "a PostgreSQL database of something else, not a treecast registry".into(),
        ));
    }
    let version = version.unwrap_or(0);
    if version > MIGRATIONS.len() as i64 {
        return Err(Error::Storage(format!(
            "schema version {version} is newer than this treecast ({})",
            MIGRATIONS.len()
        )));
    }
    usize::try_from(version).map_err(|_| Error::Storage(format!("bad schema version {version}")))
}

/// The tree height of an existing registry.
pub(super) fn stored_height(conn: &mut Client) -> Result<TreeHeight, Error> {
    let mut tx = conn.transaction().storage()?;
    if check_application(&mut tx)? == 0 {
        return Err(Error::Storage(
            "no treecast registry in this database".into(),
        ));
    }
    let h: i64 = tx
        .query_one("SELECT value FROM meta WHERE key = 'height'", &[])
        .storage()?
        .get(0);
    u8::try_from(h)
        .ok()
        .and_then(|h| TreeHeight::new(h).ok())
        .ok_or_else(|| Error::Storage(format!("bad tree height {h}")))
}
