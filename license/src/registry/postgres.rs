//! The registry on PostgreSQL (`postgres` with an `r2d2` pool): several license servers, in
//! several processes on several machines, on one database.
//!
//! - Every registry change is one transaction at `READ COMMITTED`, with explicit row locks where
//!   a check must hold until the commit: a move locks the license row (`FOR UPDATE`) and both
//!   clients (`FOR SHARE`, so that a revocation waits), a supply locks its client (`FOR SHARE`),
//!   a registration locks its user (`FOR UPDATE`, so that two registrations cannot both pass the
//!   client limit). Two processes moving one license: the second waits for the first's commit,
//!   then sees the license moved.
//! - IDs never collide and are never reused: license and certificate IDs come from sequences
//!   (which never go back, even when a transaction rolls back or the server crashes); users,
//!   contents and leaves from counters in `meta`, taken under the counter row's lock inside the
//!   creating transaction, so they stay dense (a leaf is a finite resource); a client's ID is its
//!   leaf plus one, as in the other stores.
//! - A deadlock or serialization failure (`40P01`, `40001`) is retried, at most
//!   [`RETRIES`] times; any other failure, a lost connection included, is a `Storage` error and
//!   the server rolls the transaction back: never a half change.
//! - Versioned migrations, each in one transaction under an advisory lock, so that processes
//!   starting together do not race; a database holding tables of something else, a newer schema,
//!   or a registry of another tree height is refused before anything is written.
//!
//! The schema, the sharding path and what was tested are in `docs/storage.md`.

use std::str::FromStr;
use std::time::Duration;

use postgres::error::SqlState;
use postgres::{Client, GenericClient, NoTls, Transaction};
use r2d2_postgres::PostgresConnectionManager;
use treecast_keytree::{LeafAllocator, LeafIndex, TreeHeight};

use super::sql::{
    CLIENT_COLUMNS, HISTORY_COLUMNS, KEEP_EKB, LEDGER_COLUMNS, LICENSE_COLUMNS, RECORD_REQUEST,
    STORED_EKB, USED_REQUEST, history_values, key_id_of, ledger_values, license_record,
    license_values, lookup, nonce_bits, sql, state_code, un, used_request,
};
use super::{
    CertificateRecord, ClientBuilder, ClientRecord, ClientSummary, ContentBuilder, ContentRecord,
    LicenseBuilder, LicenseRecord, LicenseState, MoveBuilder, MoveIntent, MoveRows, Registry,
    RequestTag, Revoker, UsedRequest, UserRows, check_move, scan,
};
use crate::Error;
use crate::billing::{Charge, LedgerEntry};
use crate::ids::{CertificateId, ClientId, ContentId, LicenseId, UserId};

mod cache;
mod ids;
mod rows;
mod schema;

use cache::{Conn, Db, Manager};
use ids::{IdBlocks, Sequence};
use rows::{client_row, license_row};

/// How often a transaction that lost a deadlock or a serialization conflict is run again.
const RETRIES: usize = 8;

type Pool = r2d2::Pool<Manager>;

/// A registry in a PostgreSQL database, shared by any number of processes.
///
/// ```no_run
/// use treecast_license::keytree::TreeHeight;
/// use treecast_license::registry::{PostgresRegistry, Registry};
/// # fn main() -> Result<(), treecast_license::Error> {
/// let registry = PostgresRegistry::open("postgres://treecast@localhost/registry", TreeHeight::new(32)?)?;
/// let user = registry.add_user()?;
/// assert!(registry.has_user(user)?);
/// # Ok(()) }
/// ```
pub struct PostgresRegistry {
    pool: Pool,
    height: TreeHeight,
    ids: IdBlocks,
}

impl core::fmt::Debug for PostgresRegistry {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The connection string may hold a password: never printed.
        f.debug_struct("PostgresRegistry")
            .field("height", &self.height)
            .finish_non_exhaustive()
    }
}

impl From<postgres::Error> for Error {
    fn from(e: postgres::Error) -> Self {
        Self::Storage(describe(&e))
    }
}

/// A message for a PostgreSQL error that says what failed, without the connection string.
fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("PostgreSQL: {} ({})", db.message(), db.code().code()),
        None if e.is_closed() => "PostgreSQL: the connection was lost".into(),
        None => format!("PostgreSQL: {e}"),
    }
}

/// Whether running the transaction again may succeed.
fn retryable(e: &postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
    )
}

/// A failure inside a transaction: the registry's own refusal, or the database's.
enum Failure {
    Refused(Error),
    Database(postgres::Error),
}

impl From<postgres::Error> for Failure {
    fn from(e: postgres::Error) -> Self {
        Self::Database(e)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Self::Refused(e)
    }
}

impl From<treecast_keytree::Error> for Failure {
    fn from(e: treecast_keytree::Error) -> Self {
        Self::Refused(e.into())
    }
}

type Step<T> = Result<T, Failure>;

impl PostgresRegistry {
    /// Connects to the database at `url` (`postgres://…` or `postgresql://…`, or `key=value`
    /// pairs) for a tree of height `height`, creating or migrating the schema.
    ///
    /// # Errors
    /// [`Error::Storage`] when the database cannot be reached, holds something else, has a newer
    /// schema or a registry of another tree height.
    pub fn open(url: &str, height: TreeHeight) -> Result<Self, Error> {
        let pool = pool(url)?;
        let mut conn = pool.get().map_err(|e| unreachable_db(&e))?;
        schema::migrate(&mut conn.client, height)?;
        Ok(Self {
            pool,
            height,
            ids: IdBlocks::default(),
        })
    }

    /// Connects to an existing registry, reading the tree height from it.
    ///
    /// # Errors
    /// As [`PostgresRegistry::open`]; also when the database holds no registry.
    pub fn open_existing(url: &str) -> Result<Self, Error> {
        let pool = pool(url)?;
        let height = {
            let mut conn = pool.get().map_err(|e| unreachable_db(&e))?;
            schema::stored_height(&mut conn.client)?
        };
        Self::open(url, height)
    }

    /// The tree height this registry serves.
    pub const fn height(&self) -> TreeHeight {
        self.height
    }

    /// Runs `f` in one transaction, committing only if it succeeds; a deadlock or
    /// serialization failure runs it again (at most [`RETRIES`] times).
    fn write<T>(
        &self,
        mut f: impl FnMut(&mut Db<'_, Transaction<'_>>) -> Step<T>,
    ) -> Result<T, Error> {
        let mut conn = self.pool.get().map_err(|e| unreachable_db(&e))?;
        let Conn { client, statements } = &mut *conn;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = (|| -> Step<T> {
                let mut tx = client.transaction()?;
                let out = f(&mut Db::new(&mut tx, statements))?;
                tx.commit()?;
                Ok(out)
            })();
            match result {
                Ok(out) => return Ok(out),
                Err(Failure::Refused(e)) => return Err(e),
                Err(Failure::Database(e)) if retryable(&e) && attempt < RETRIES => continue,
                Err(Failure::Database(e)) => return Err(e.into()),
            }
        }
    }

    /// Runs `f`, one changing statement, as its own transaction (no `BEGIN`/`COMMIT` round
    /// trips); a deadlock or serialization failure runs it again, as [`PostgresRegistry::write`].
    fn alone<T>(&self, mut f: impl FnMut(&mut Db<'_, Client>) -> Step<T>) -> Result<T, Error> {
        let mut conn = self.pool.get().map_err(|e| unreachable_db(&e))?;
        let Conn { client, statements } = &mut *conn;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match f(&mut Db::new(client, statements)) {
                Ok(out) => return Ok(out),
                Err(Failure::Refused(e)) => return Err(e),
                Err(Failure::Database(e)) if retryable(&e) && attempt < RETRIES => continue,
                Err(Failure::Database(e)) => return Err(e.into()),
            }
        }
    }

    /// Runs `f`, a single statement, outside an explicit transaction: a statement is atomic and
    /// sees one snapshot on its own, and a `BEGIN`/`COMMIT` pair would cost two round trips.
    fn read<T>(&self, f: impl FnOnce(&mut Db<'_, Client>) -> Step<T>) -> Result<T, Error> {
        let mut conn = self.pool.get().map_err(|e| unreachable_db(&e))?;
        let Conn { client, statements } = &mut *conn;
        let result = f(&mut Db::new(client, statements));
        match result {
            Ok(out) => Ok(out),
            Err(Failure::Refused(e)) => Err(e),
            Err(Failure::Database(e)) => Err(e.into()),
        }
    }

    /// Runs `f` in one read-only `REPEATABLE READ` transaction: several statements, one
    /// snapshot.
    fn snapshot<T>(
        &self,
        f: impl FnOnce(&mut Db<'_, Transaction<'_>>) -> Step<T>,
    ) -> Result<T, Error> {
        let mut conn = self.pool.get().map_err(|e| unreachable_db(&e))?;
        let Conn { client, statements } = &mut *conn;
        let result = (|| -> Step<T> {
            let mut tx = client
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            let out = f(&mut Db::new(&mut tx, statements))?;
            tx.commit()?;
            Ok(out)
        })();
        match result {
            Ok(out) => Ok(out),
            Err(Failure::Refused(e)) => Err(e),
            Err(Failure::Database(e)) => Err(e.into()),
        }
    }

    fn client_in(
        &self,
        tx: &mut Db<'_, impl GenericClient>,
        id: ClientId,
        lock: &str,
    ) -> Step<Option<ClientRecord>> {
        let row = tx.query_opt(
            &format!("SELECT {CLIENT_COLUMNS} FROM clients WHERE id = $1 {lock}"),
            &[&lookup(id.0)],
        )?;
        Ok(row
            .map(|r| client_row(&r).into_record(self.height))
            .transpose()?)
    }
}

/// A pool of connections to `url`.
fn pool(url: &str) -> Result<Pool, Error> {
    let config = postgres::Config::from_str(url)
        .map_err(|_| Error::Storage("not a PostgreSQL connection string".into()))?;
    r2d2::Pool::builder()
        .max_size(POOL_SIZE)
        .min_idle(Some(1))
        // No validity query at every checkout (a round trip per operation): a connection found
        // broken fails its operation with a `Storage` error and is dropped on return.
        .test_on_check_out(false)
        .connection_timeout(CONNECT_TIMEOUT)
        .build(Manager(PostgresConnectionManager::new(config, NoTls)))
        .map_err(|e| unreachable_db(&e))
}

fn unreachable_db(e: &r2d2::Error) -> Error {
    Error::Storage(format!("PostgreSQL: cannot connect: {e}"))
}

/// A license supply, in one statement and so one round trip: the client must exist, be the
/// license's user's and not be revoked (its row locked `FOR SHARE` until the end, so that a
/// revocation waits), the content must exist, and the request must be new; then the request,
/// the license, the ledger entry and the user's total are written. Any check failing writes
/// nothing and changes no row (the `UPDATE` reports 0). Parameters: the license's ten columns
/// in `LICENSE_COLUMNS` order, then the request's nonce and digest, the charge's kind, amount
/// and time.
const SUPPLY: &str = "WITH holder AS (
        SELECT c.id, c.user_id FROM clients c
        WHERE c.id = $3 AND c.user_id = $4 AND NOT c.revoked
          AND EXISTS (SELECT 1 FROM contents WHERE id = $2)
        FOR SHARE OF c),
    request AS (
        INSERT INTO requests (client_id, nonce, user_id, digest, answer)
        SELECT id, $11::bigint, user_id, $12::bytea, $1::bigint FROM holder
        ON CONFLICT DO NOTHING RETURNING user_id),
    license AS (
        INSERT INTO licenses (id, content_id, client_id, user_id, epoch, state, origin, issued_at, rights, tag)
        SELECT $1::bigint, $2::bigint, $3::bigint, user_id, $5::bigint, $6::bigint, $7::bigint,
               $8::bigint, $9::bigint, $10::bytea
        FROM request RETURNING user_id),
    entry AS (
        INSERT INTO ledger (user_id, kind, content_id, reference, amount, at)
        SELECT user_id, $13::bigint, $2::bigint, $1::bigint, $14::bigint, $15::bigint
        FROM license RETURNING user_id, amount)
    UPDATE users SET total = users.total + entry.amount FROM entry WHERE users.id = entry.user_id";

/// The three reads of a license supply in one statement: the client's columns (`NULL`s for no
/// such client), the content's key ID and envelope (`NULL`s), the current epoch (`$1` client,
/// `$2` content).
const SUPPLY_READS: &str =
    "SELECT c.id, c.user_id, c.leaf, c.server, c.certificate, c.public_key, c.revoked, c.tag,
        (SELECT key_id FROM contents WHERE id = $2), (SELECT envelope FROM contents WHERE id = $2),
        (SELECT value FROM meta WHERE key = 'epoch')
    FROM (SELECT $1::bigint AS wanted) w LEFT JOIN clients c ON c.id = w.wanted";

/// Connections per process: a few more than the threads that use one at a time.
const POOL_SIZE: u32 = 16;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

fn license_in(
    tx: &mut Db<'_, impl GenericClient>,
    id: LicenseId,
    lock: &str,
) -> Step<Option<LicenseRecord>> {
    let row = tx.query_opt(
        &format!("SELECT {LICENSE_COLUMNS} FROM licenses WHERE id = $1 {lock}"),
        &[&lookup(id.0)],
    )?;
    Ok(row.map(|r| license_record(license_row(&r))).transpose()?)
}

fn insert_license(tx: &mut Db<'_, impl GenericClient>, l: &LicenseRecord) -> Step<()> {
    let ([a, b, c, d, e, f, g, h, i], tag) = license_values(l)?;
    tx.execute(
        &format!(
            "INSERT INTO licenses ({LICENSE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ),
        &[&a, &b, &c, &d, &e, &f, &g, &h, &i, &tag],
    )?;
    Ok(())
}

fn bill(tx: &mut Db<'_, impl GenericClient>, e: &LedgerEntry) -> Step<()> {
    let [a, b, c, d, f, g] = ledger_values(e)?;
    tx.execute(
        &format!("INSERT INTO ledger ({LEDGER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"),
        &[&a, &b, &c, &d, &f, &g],
    )?;
    tx.execute(
        "UPDATE users SET total = total + $2 WHERE id = $1",
        &[&a, &f],
    )?;
    Ok(())
}

fn content_exists(tx: &mut Db<'_, impl GenericClient>, id: ContentId) -> Step<bool> {
    Ok(tx
        .query_opt("SELECT 1 FROM contents WHERE id = $1", &[&lookup(id.0)])?
        .is_some())
}

fn user_exists(tx: &mut Db<'_, impl GenericClient>, id: UserId, lock: &str) -> Step<bool> {
    Ok(tx
        .query_opt(
            &format!("SELECT 1 FROM users WHERE id = $1 {lock}"),
            &[&lookup(id.0)],
        )?
        .is_some())
}

/// Records a request in the caller's transaction, with what it produced.
fn record_request(
    tx: &mut Db<'_, impl GenericClient>,
    client: ClientId,
    user: UserId,
    request: RequestTag,
    answer: u64,
) -> Step<()> {
    let inserted = tx.execute(
        RECORD_REQUEST,
        &[
            &sql(client.0)?,
            &nonce_bits(request.nonce),
            &sql(user.0)?,
            &request.digest.as_slice(),
            &sql(answer)?,
        ],
    )?;
    if inserted == 0 {
        return Err(Error::RequestReplayed.into());
    }
    Ok(())
}

/// Takes the next value of a counter in `meta` (under its row lock, until the commit).
fn take_counter(tx: &mut Db<'_, impl GenericClient>, key: &str) -> Step<u64> {
    let row = tx.query_one(
        "UPDATE meta SET value = value + 1 WHERE key = $1 RETURNING value - 1",
        &[&key],
    )?;
    Ok(un(row.get(0))?)
}

fn meta(tx: &mut Db<'_, impl GenericClient>, key: &str) -> Step<u64> {
    let row = tx.query_one("SELECT value FROM meta WHERE key = $1", &[&key])?;
    Ok(un(row.get(0))?)
}

fn ids<T>(
    tx: &mut Db<'_, impl GenericClient>,
    query: &str,
    key: u64,
    wrap: impl Fn(u64) -> T,
) -> Step<Vec<T>> {
    tx.query(query, &[&lookup(key)])?
        .iter()
        .map(|r| Ok(wrap(un(r.get(0))?)))
        .collect()
}

impl Registry for PostgresRegistry {
    fn add_user(&self) -> Result<UserId, Error> {
        self.write(|tx| {
            let id = take_counter(tx, "next_user")?;
            tx.execute("INSERT INTO users (id) VALUES ($1)", &[&sql(id)?])?;
            Ok(UserId(id))
        })
    }

    fn has_user(&self, user: UserId) -> Result<bool, Error> {
        self.read(|tx| user_exists(tx, user, ""))
    }

    fn add_client(
        &self,
        user: UserId,
        limit: usize,
        build: ClientBuilder<'_>,
    ) -> Result<ClientRecord, Error> {
        self.write(|tx| {
            // The user's row lock serializes its registrations, so the limit holds.
            if !user_exists(tx, user, "FOR UPDATE")? {
                return Err(Error::UserNotFound(user).into());
            }
            let active: i64 = tx
                .query_one(
                    "SELECT count(*) FROM clients WHERE user_id = $1 AND NOT revoked",
                    &[&lookup(user.0)],
                )?
                .get(0);
            if un(active)? >= limit as u64 {
                return Err(Error::ClientLimit(user).into());
            }
            // The counter's row lock serializes registrations across processes until the commit.
            let next: i64 = tx
                .query_one(
                    "SELECT value FROM meta WHERE key = 'next_leaf' FOR UPDATE",
                    &[],
                )?
                .get(0);
            let mut leaves = LeafAllocator::resume(self.height, un(next)?)?;
            let leaf = leaves.allocate()?;
            let id = ClientId(u64::from(leaf.get()) + 1);
            let record = build(id, leaf)?;
            if record.id != id || record.leaf != leaf || record.user != user {
                return Err(Error::Internal("client builder changed the IDs").into());
            }
            tx.execute(
                &format!(
                    "INSERT INTO clients ({CLIENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, false, $7)"
                ),
                &[
                    &sql(id.0)?,
                    &sql(user.0)?,
                    &i64::from(leaf.get()),
                    &i64::from(record.server.0),
                    &record.certificate,
                    &record.public_key.as_slice(),
                    &record.tag.as_slice(),
                ],
            )?;
            tx.execute(
                "UPDATE meta SET value = $1 WHERE key = 'next_leaf'",
                &[&sql(leaves.next_leaf())?],
            )?;
            Ok(record)
        })
    }

    fn client(&self, id: ClientId) -> Result<Option<ClientRecord>, Error> {
        self.read(|tx| self.client_in(tx, id, ""))
    }

    fn client_by_leaf(&self, leaf: LeafIndex) -> Result<Option<ClientId>, Error> {
        self.read(|tx| {
            let row = tx.query_opt(
                "SELECT id FROM clients WHERE leaf = $1",
                &[&i64::from(leaf.get())],
            )?;
            Ok(row.map(|r| un(r.get(0)).map(ClientId)).transpose()?)
        })
    }

    fn clients_of(&self, user: UserId) -> Result<Vec<ClientId>, Error> {
        self.read(|tx| {
            ids(
                tx,
                "SELECT id FROM clients WHERE user_id = $1 ORDER BY id",
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
        self.write(|tx| {
            let client = self
                .client_in(tx, id, "FOR UPDATE")?
                .ok_or(Error::ClientNotFound(id))?;
            if client.revoked {
                return Err(Error::ClientRevoked(id).into());
            }
            let epoch = take_counter(tx, "epoch")?
                .checked_add(1)
                .ok_or(Error::Internal("epoch overflow"))?;
            let revoked = revoke(&client)?;
            super::check_revoked(&client, &revoked)?;
            tx.execute(
                "UPDATE clients SET revoked = true, tag = $2 WHERE id = $1",
                &[&sql(id.0)?, &revoked.tag.as_slice()],
            )?;
            Ok((revoked, epoch))
        })
    }

    fn revoked_leaves(&self) -> Result<Vec<u32>, Error> {
        self.read(|tx| {
            tx.query("SELECT leaf FROM clients WHERE revoked ORDER BY leaf", &[])?
                .iter()
                .map(|r| {
                    u32::try_from(r.get::<_, i64>(0))
                        .map_err(|_| Failure::Refused(Error::Storage("bad leaf".into())))
                })
                .collect()
        })
    }

    fn stored_ekb(&self, epoch: u64) -> Result<Option<Vec<u8>>, Error> {
        self.read(|tx| {
            Ok(tx
                .query_opt(STORED_EKB, &[&lookup(epoch)])?
                .map(|r| r.get(0)))
        })
    }

    fn keep_ekb(&self, epoch: u64, ekb: &[u8]) -> Result<Vec<u8>, Error> {
        self.write(|tx| {
            tx.execute(KEEP_EKB, &[&sql(epoch)?, &ekb])?;
            Ok(tx.query_one(STORED_EKB, &[&sql(epoch)?])?.get(0))
        })
    }

    fn epoch(&self) -> Result<u64, Error> {
        self.read(|tx| meta(tx, "epoch"))
    }

    fn add_content(&self, build: ContentBuilder<'_>) -> Result<ContentRecord, Error> {
        self.write(|tx| {
            let id = ContentId(take_counter(tx, "next_content")?);
            let record = build(id)?;
            if record.id != id {
                return Err(Error::Internal("content builder changed the ID").into());
            }
            tx.execute(
                "INSERT INTO contents (id, key_id, envelope) VALUES ($1, $2, $3)",
                &[
                    &sql(id.0)?,
                    &i64::from(record.key_id),
                    &record.envelope.as_slice(),
                ],
            )?;
            Ok(record)
        })
    }

    fn supply_reads(
        &self,
        client: ClientId,
        content: ContentId,
    ) -> Result<(Option<ClientRecord>, Option<ContentRecord>, u64), Error> {
        self.read(|tx| {
            let row = tx.query_one(SUPPLY_READS, &[&lookup(client.0), &lookup(content.0)])?;
            let client = row
                .get::<_, Option<i64>>(0)
                .map(|_| client_row(&row).into_record(self.height))
                .transpose()?;
            let content = match (row.get(8), row.get(9)) {
                (Some(key_id), Some(envelope)) => Some(content_record(content, key_id, envelope)?),
                _ => None,
            };
            Ok((client, content, un(row.get(10))?))
        })
    }

    fn content(&self, id: ContentId) -> Result<Option<ContentRecord>, Error> {
        self.read(|tx| {
            let row = tx.query_opt(
                "SELECT key_id, envelope FROM contents WHERE id = $1",
                &[&lookup(id.0)],
            )?;
            Ok(row
                .map(|r| content_record(id, r.get(0), r.get(1)))
                .transpose()?)
        })
    }

    fn contents(&self) -> Result<Vec<ContentRecord>, Error> {
        self.read(|tx| {
            tx.query("SELECT id, key_id, envelope FROM contents ORDER BY id", &[])?
                .iter()
                .map(|r| {
                    Ok(content_record(
                        ContentId(un(r.get(0))?),
                        r.get(1),
                        r.get(2),
                    )?)
                })
                .collect()
        })
    }

    fn record_download(&self, user: UserId, content: ContentId) -> Result<(), Error> {
        self.write(|tx| {
            if !content_exists(tx, content)? {
                return Err(Error::ContentNotFound(content).into());
            }
            if !user_exists(tx, user, "")? {
                return Err(Error::UserNotFound(user).into());
            }
            tx.execute(
                "INSERT INTO downloads (user_id, content_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&sql(user.0)?, &sql(content.0)?],
            )?;
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
        // Built (and signed) before the statement; the checks run inside it.
        let id = LicenseId(self.alone(|db| Ok(self.ids.take(db, Sequence::License)?))?);
        let license = build(id)?;
        if license.id != id || license.client != client || license.content != content {
            return Err(Error::Internal("license builder changed the IDs"));
        }
        let entry = LedgerEntry::new(license.user, content, id.0, charge);
        // One statement, one round trip, its own transaction: every check and every row of
        // the supply, or nothing (see `SUPPLY`).
        let supplied = self.alone(|tx| {
            let ([a, b, c, d, e, f, g, h, i], tag) = license_values(&license)?;
            let [_, kind, _, _, amount, at] = ledger_values(&entry)?;
            let nonce = nonce_bits(request.nonce);
            let digest = request.digest.as_slice();
            Ok(tx.execute(
                SUPPLY,
                &[
                    &a, &b, &c, &d, &e, &f, &g, &h, &i, &tag, &nonce, &digest, &kind, &amount, &at,
                ],
            )? == 1)
        })?;
        if supplied {
            return Ok((license, entry));
        }
        // Nothing written: find out why, in the order the other stores check.
        let record = self.client(client)?.ok_or(Error::ClientNotFound(client))?;
        if record.revoked {
            return Err(Error::ClientRevoked(client));
        }
        if license.user != record.user {
            return Err(Error::Internal("license builder changed the user"));
        }
        if self.content(content)?.is_none() {
            return Err(Error::ContentNotFound(content));
        }
        Err(Error::RequestReplayed)
    }

    fn license(&self, id: LicenseId) -> Result<Option<LicenseRecord>, Error> {
        self.read(|tx| license_in(tx, id, ""))
    }

    fn used_request(&self, client: ClientId, nonce: u64) -> Result<Option<UsedRequest>, Error> {
        self.read(|tx| {
            tx.query_opt(USED_REQUEST, &[&lookup(client.0), &nonce_bits(nonce)])?
                .map(|r| used_request(r.get(0), r.get(1)))
                .transpose()
                .map_err(Failure::Refused)
        })
    }

    fn commit_move(
        &self,
        intent: &MoveIntent,
        charge: Charge,
        build: MoveBuilder<'_>,
    ) -> Result<(LicenseRecord, CertificateRecord, LedgerEntry), Error> {
        self.write(|tx| {
            // The license first, then both clients: one lock order for every move.
            let license = license_in(tx, intent.license, "FOR UPDATE")?;
            let source = self.client_in(tx, intent.source, "FOR SHARE")?;
            let destination = self.client_in(tx, intent.destination, "FOR SHARE")?;
            let ctx = check_move(intent, source, license, destination)?;
            let certificate_id = CertificateId(self.ids.take(tx, Sequence::Certificate)?);
            let license_id = LicenseId(self.ids.take(tx, Sequence::License)?);
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
                history,
            } = rows;
            tx.execute(
                "UPDATE licenses SET state = $2, tag = $3 WHERE id = $1",
                &[
                    &sql(intent.license.0)?,
                    &state_code(LicenseState::Moved),
                    &moved.tag.as_slice(),
                ],
            )?;
            insert_license(tx, &new_license)?;
            let [a, b, c, d, e, f, g, h, i, j] = history_values(&history)?;
            tx.execute(
                &format!(
                    "INSERT INTO history ({HISTORY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                ),
                &[&a, &b, &c, &d, &e, &f, &g, &h, &i, &j],
            )?;
            let entry = LedgerEntry::new(
                ctx.source.user,
                ctx.license.content,
                certificate_id.0,
                charge,
            );
            bill(tx, &entry)?;
            Ok((new_license, history, entry))
        })
    }

    fn certificate_history(&self) -> Result<Vec<CertificateRecord>, Error> {
        self.read(rows::certificate_history)
    }

    fn ledger(&self) -> Result<Vec<LedgerEntry>, Error> {
        self.read(rows::ledger)
    }

    fn user_total(&self, user: UserId) -> Result<u64, Error> {
        self.read(|tx| {
            let row = tx.query_opt("SELECT total FROM users WHERE id = $1", &[&lookup(user.0)])?;
            let total: i64 = row.ok_or(Error::UserNotFound(user))?.get(0);
            Ok(un(total)?)
        })
    }

    fn licenses_of_content(&self, content: ContentId) -> Result<Vec<LicenseId>, Error> {
        self.read(|tx| {
            ids(
                tx,
                "SELECT id FROM licenses WHERE content_id = $1 ORDER BY id",
                content.0,
                LicenseId,
            )
        })
    }

    fn contents_of_user(&self, user: UserId) -> Result<Vec<ContentId>, Error> {
        self.read(|tx| {
            ids(
                tx,
                "SELECT content_id FROM downloads WHERE user_id = $1 ORDER BY content_id",
                user.0,
                ContentId,
            )
        })
    }

    fn licenses_of_user(&self, user: UserId) -> Result<Vec<LicenseId>, Error> {
        self.read(|tx| {
            ids(
                tx,
                "SELECT id FROM licenses WHERE user_id = $1 ORDER BY id",
                user.0,
                LicenseId,
            )
        })
    }

    fn users(&self) -> Result<Vec<(UserId, u64)>, Error> {
        self.read(rows::users)
    }

    fn all_clients(&self) -> Result<Vec<ClientRecord>, Error> {
        self.read(|tx| rows::all_clients(tx, self.height))
    }

    fn client_summaries(&self) -> Result<Vec<ClientSummary>, Error> {
        self.read(|tx| rows::client_summaries(tx, self.height))
    }

    fn scan_users(
        &self,
        visit: &mut dyn FnMut(UserRows) -> Result<(), Error>,
    ) -> Result<(), Error> {
        scan::by_pages(
            |after, size| self.snapshot(|tx| rows::page(tx, after, size, self.height)),
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
        let page = self.snapshot(|tx| rows::page(tx, scan::before(user), 1, self.height))?;
        Ok(scan::one_user(page, user))
    }

    fn all_licenses(&self) -> Result<Vec<LicenseRecord>, Error> {
        self.read(rows::all_licenses)
    }
}

fn content_record(id: ContentId, key_id: i64, envelope: Vec<u8>) -> Result<ContentRecord, Error> {
    Ok(ContentRecord::new(
        id,
        key_id_of(key_id)?,
        envelope
            .try_into()
            .map_err(|_| Error::Storage("bad envelope length".into()))?,
    ))
}
