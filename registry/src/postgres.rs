//! The registry on PostgreSQL (`postgres` with an `r2d2` pool): several license servers, in
//! several processes on several machines, on one database. This is the PostgreSQL driver of
//! [`SqlRegistry`]; the queries and checks are shared with SQLite.
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
//!   [`RETRIES`] times; any other failure is a `Storage` error and the server rolls the
//!   transaction back: never a half change.
//! - A lost connection (a PostgreSQL restart, a failover): the pool checks each connection
//!   before it hands it out (one empty query), so a restart costs no request an error; a read
//!   that still meets a broken connection runs once more on a new one (a read is idempotent; a
//!   change is not retried, since its commit may have happened before the connection broke).
//! - Versioned migrations, each in one transaction under an advisory lock, so that processes
//!   starting together do not race; a database holding tables of something else, a newer schema,
//!   or a registry of another tree height is refused before anything is written.
//!
//! The schema, the sharding path and what was tested are in `docs/storage.md`.

use std::str::FromStr;
use std::time::Duration;

use postgres::error::SqlState;
use postgres::types::{ToSql, Type};
use postgres::{GenericClient, NoTls};
use r2d2_postgres::PostgresConnectionManager;
use treecast_keytree::TreeHeight;
use treecast_protocol::Error;

use super::sql::{
    Cell, Driver, Kind, Lock, NewId, Row, SqlRegistry, StorageError, Tx, Value, timed, un,
};

mod cache;
mod ids;
mod passfile;
mod schema;

/// The schema version this build writes and reads (older databases are migrated on opening).
pub const SCHEMA_VERSION: usize = schema::MIGRATIONS.len();

use cache::{Conn, Db, Manager};
use ids::{IdBlocks, Sequence};

/// How often a transaction that lost a deadlock or a serialization conflict is run again.
const RETRIES: usize = 8;

type Pool = r2d2::Pool<Manager>;

/// A registry in a PostgreSQL database, shared by any number of processes.
///
/// ```no_run
/// use treecast_keytree::TreeHeight;
/// use treecast_registry::{PostgresRegistry, Registry};
/// # fn main() -> Result<(), treecast_protocol::Error> {
/// let registry = PostgresRegistry::open("postgres://treecast@localhost/registry", TreeHeight::new(32)?)?;
/// let user = registry.add_user()?;
/// assert!(registry.has_user(user)?);
/// # Ok(()) }
/// ```
pub type PostgresRegistry = SqlRegistry<PostgresDriver>;

/// The PostgreSQL driver of a [`SqlRegistry`]: a pool of connections, and the IDs this process
/// has taken from the sequences.
pub struct PostgresDriver {
    pool: Pool,
    ids: IdBlocks,
}

impl core::fmt::Debug for PostgresDriver {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The connection string may hold a password: never printed.
        f.debug_struct("PostgresDriver").finish_non_exhaustive()
    }
}

impl<T> StorageError<T> for Result<T, postgres::Error> {
    fn storage(self) -> Result<T, Error> {
        self.map_err(|e| Error::Storage(describe(&e)))
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

impl PostgresRegistry {
    /// Connects to the database at `url` (`postgres://…` or `postgresql://…`, or `key=value`
    /// pairs) for a tree of height `height`, creating or migrating the schema.
    ///
    /// # Errors
    /// [`Error::Storage`] when the database cannot be reached, holds something else, has a newer
    /// schema or a registry of another tree height.
    pub fn open(url: &str, height: TreeHeight) -> Result<Self, Error> {
        Self::open_with_password(url, height, None)
    }

    /// As [`PostgresRegistry::open`], with the password given apart from the URL (so that it
    /// is in no URL and no process argument). Without one, and without a password in the URL,
    /// libpq's conventions apply: `PGPASSWORD`, then the passfile (`PGPASSFILE`, or
    /// `~/.pgpass`; ignored when others can read it, as libpq does).
    ///
    /// # Errors
    /// As [`PostgresRegistry::open`].
    pub fn open_with_password(
        url: &str,
        height: TreeHeight,
        password: Option<&str>,
    ) -> Result<Self, Error> {
        let pool = pool(url, password)?;
        schema::migrate(
            &mut pool.get().map_err(|e| unreachable_db(&e))?.client,
            height,
        )?;
        Ok(SqlRegistry {
            driver: PostgresDriver {
                pool,
                ids: IdBlocks::default(),
            },
            height,
        })
    }

    /// Connects to an existing registry, reading the tree height from it.
    ///
    /// # Errors
    /// As [`PostgresRegistry::open`]; also when the database holds no registry.
    pub fn open_existing(url: &str) -> Result<Self, Error> {
        let pool = pool(url, None)?;
        let height = {
            let mut conn = pool.get().map_err(|e| unreachable_db(&e))?;
            schema::stored_height(&mut conn.client)?
        };
        Self::open(url, height)
    }
}

/// Why a failed attempt may pass when run again.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Again {
    /// It may not.
    No,
    /// A deadlock or serialization failure: run it again on the same connection.
    Conflict,
    /// The connection was lost: a read may run again on a new one.
    Broken,
}

/// One attempt at a transaction of `kind`: its result, and whether a failure may pass when run
/// again.
fn attempt<T>(
    conn: &mut Conn,
    kind: Kind,
    f: &mut dyn FnMut(&mut dyn Tx) -> Result<T, Error>,
) -> (Result<T, Error>, Again) {
    let Conn { client, statements } = conn;
    // A statement is atomic and sees one snapshot on its own: no `BEGIN`/`COMMIT` round trips.
    if matches!(kind, Kind::Read | Kind::Alone) {
        let mut tx = PgTx::new(Db::new(client, statements));
        let out = f(&mut tx);
        return (out, tx.again);
    }
    let started = if kind == Kind::Snapshot {
        client
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
    } else {
        client.transaction()
    };
    let mut transaction = match started {
        Ok(t) => t,
        Err(e) => return (Err(Error::Storage(describe(&e))), again(&e)),
    };
    let mut tx = PgTx::new(Db::new(&mut transaction, statements));
    let out = f(&mut tx);
    let again = tx.again;
    match out {
        // Dropped, the transaction rolls back.
        Err(e) => (Err(e), again),
        Ok(v) => match transaction.commit() {
            Ok(()) => (Ok(v), Again::No),
            // A commit that failed on a lost connection may have happened: never run again.
            Err(e) if retryable(&e) => (Err(Error::Storage(describe(&e))), Again::Conflict),
            Err(e) => (Err(Error::Storage(describe(&e))), Again::No),
        },
    }
}

/// Whether a statement's failure may pass when run again, and how.
fn again(e: &postgres::Error) -> Again {
    if retryable(e) {
        Again::Conflict
    } else if e.is_closed()
        || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
    {
        Again::Broken
    } else {
        Again::No
    }
}

impl Driver for PostgresDriver {
    fn run<T>(
        &self,
        kind: Kind,
        f: &mut dyn FnMut(&mut dyn Tx) -> Result<T, Error>,
    ) -> Result<T, Error> {
        timed("postgres", kind, || {
            let mut conn = self.pool.get().map_err(|e| unreachable_db(&e))?;
            pool_use(&self.pool);
            let mut tries = 0;
            let mut reconnected = false;
            loop {
                tries += 1;
                match attempt(&mut conn, kind, f) {
                    (Err(_), Again::Conflict) if tries < RETRIES && kind != Kind::Read => {}
                    (Err(_), Again::Broken)
                        if !reconnected && matches!(kind, Kind::Read | Kind::Snapshot) =>
                    {
                        // The broken connection goes back to the pool, which drops it.
                        reconnected = true;
                        conn = self.pool.get().map_err(|e| unreachable_db(&e))?;
                    }
                    (out, _) => return out,
                }
            }
        })
    }

    fn new_id(&self, tx: &mut dyn Tx, id: NewId) -> Result<u64, Error> {
        // Users and contents: counters in `meta`, under the counter row's lock until the
        // commit, so that they stay dense.
        let counter = match id {
            NewId::License => return self.ids.take(tx, Sequence::License),
            NewId::Certificate => return self.ids.take(tx, Sequence::Certificate),
            NewId::User => "next_user",
            NewId::Content => "next_content",
        };
        un(tx
            .one(
                "UPDATE meta SET value = value + 1 WHERE key = $1 RETURNING value - 1",
                &[Value::Text(counter)],
            )?
            .int(0)?)
    }

    fn license_id(&self) -> Result<u64, Error> {
        // A connection only when this process's block is used up.
        match self.ids.pop(Sequence::License)? {
            Some(id) => Ok(id),
            None => self.run(Kind::Read, &mut |tx| self.ids.take(tx, Sequence::License)),
        }
    }

    fn lock(&self, lock: Lock) -> &'static str {
        match lock {
            Lock::None => "",
            Lock::Share => " FOR SHARE",
            Lock::Update => " FOR UPDATE",
        }
    }

    fn supply_statement(&self) -> Option<&'static str> {
        Some(SUPPLY)
    }
}

/// Statements on a PostgreSQL connection or transaction, with its statement cache; remembers
/// whether a failure may pass when run again.
struct PgTx<'a, C> {
    db: Db<'a, C>,
    again: Again,
}

impl<'a, C: GenericClient> PgTx<'a, C> {
    const fn new(db: Db<'a, C>) -> Self {
        Self {
            db,
            again: Again::No,
        }
    }

    fn failed(&mut self, e: &postgres::Error) -> Error {
        if self.again == Again::No {
            self.again = again(e);
        }
        Error::Storage(describe(e))
    }
}

/// The `NULL` a [`Value::Null`] binds (an integer column's).
static NULL: Option<i64> = None;
/// The `NULL` a [`Value::NullBytes`] binds (a bytes column's).
static NULL_BYTES: Option<&'static [u8]> = None;

fn bound<'v>(params: &'v [Value<'_>]) -> Vec<&'v (dyn ToSql + Sync)> {
    params
        .iter()
        .map(|v| -> &(dyn ToSql + Sync) {
            match v {
                Value::Int(i) => i,
                Value::Null => &NULL,
                Value::NullBytes => &NULL_BYTES,
                Value::Bytes(b) => b,
                Value::Text(t) => t,
            }
        })
        .collect()
}

/// A PostgreSQL row as cells: integers, flags (as 0 or 1), bytes and text.
fn cells(r: &postgres::Row) -> Result<Row, postgres::Error> {
    r.columns()
        .iter()
        .enumerate()
        .map(|(i, column)| {
            let ty = column.type_();
            Ok(if *ty == Type::INT8 {
                r.try_get::<_, Option<i64>>(i)?
                    .map_or(Cell::Null, Cell::Int)
            } else if *ty == Type::INT4 {
                r.try_get::<_, Option<i32>>(i)?
                    .map_or(Cell::Null, |v| Cell::Int(v.into()))
            } else if *ty == Type::BOOL {
                r.try_get::<_, Option<bool>>(i)?
                    .map_or(Cell::Null, |v| Cell::Int(v.into()))
            } else if *ty == Type::TEXT {
                r.try_get::<_, Option<String>>(i)?
                    .map_or(Cell::Null, |v| Cell::Bytes(v.into_bytes()))
            } else {
                r.try_get::<_, Option<Vec<u8>>>(i)?
                    .map_or(Cell::Null, Cell::Bytes)
            })
        })
        .collect::<Result<_, _>>()
        .map(Row)
}

impl<C: GenericClient> Tx for PgTx<'_, C> {
    fn query(&mut self, sql: &str, params: &[Value<'_>]) -> Result<Vec<Row>, Error> {
        let rows = self.db.query(sql, &bound(params));
        match rows.and_then(|rows| rows.iter().map(cells).collect()) {
            Ok(rows) => Ok(rows),
            Err(e) => Err(self.failed(&e)),
        }
    }

    fn execute(&mut self, sql: &str, params: &[Value<'_>]) -> Result<u64, Error> {
        match self.db.execute(sql, &bound(params)) {
            Ok(n) => Ok(n),
            Err(e) => Err(self.failed(&e)),
        }
    }
}

/// A pool of connections to `url`.
fn pool(url: &str, password: Option<&str>) -> Result<Pool, Error> {
    let mut config = postgres::Config::from_str(url)
        .map_err(|_| Error::Storage("not a PostgreSQL connection string".into()))?;
    if let Some(password) = password {
        config.password(password);
    } else if config.get_password().is_none()
        && let Some(password) = passfile::password(&config)
    {
        config.password(password.as_bytes());
    }
    // One connection first, for its error: the pool's would say only that it timed out (after
    // its 10 s), not that the password is missing or wrong.
    if let Err(e) = config.connect(NoTls) {
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            message.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        return Err(Error::Storage(format!(
            "PostgreSQL: cannot connect: {message}"
        )));
    }
    r2d2::Pool::builder()
        .max_size(POOL_SIZE)
        .min_idle(Some(1))
        // A validity query (an empty one: one round trip) at every checkout, so that the
        // connections a PostgreSQL restart broke are dropped and replaced before any request
        // meets them (issue 28: a burst of 12 to 16 answers 503 after each restart without it).
        .test_on_check_out(true)
        .connection_timeout(CONNECT_TIMEOUT)
        .build(Manager(PostgresConnectionManager::new(config, NoTls)))
        .map_err(|e| unreachable_db(&e))
}

/// The pool's connections by state, in the `treecast_registry_pool_connections` gauge.
fn pool_use(pool: &Pool) {
    let state = pool.state();
    let idle = f64::from(state.idle_connections);
    let in_use = f64::from(state.connections.saturating_sub(state.idle_connections));
    metrics::gauge!("treecast_registry_pool_connections", "state" => "idle").set(idle);
    metrics::gauge!("treecast_registry_pool_connections", "state" => "in_use").set(in_use);
}

fn unreachable_db(e: &r2d2::Error) -> Error {
    Error::Storage(format!("PostgreSQL: cannot connect: {e}"))
}

/// A license supply, in one statement and so one round trip: the client must exist, be the
/// license's user's and not be revoked (its row locked `FOR SHARE` until the end, so that a
/// revocation waits), the content must exist, and the request must be new; then the request,
/// the license, the ledger entry and the user's total are written. Any check failing writes
/// nothing and changes no row (the `UPDATE` reports 0). Parameters: the license's ten first
/// columns in `LICENSE_COLUMNS` order, then the request's nonce and digest, the charge's kind,
/// amount and time, then the license's terms.
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
        INSERT INTO licenses (id, content_id, client_id, user_id, epoch, state, origin, issued_at, rights, tag, terms)
        SELECT $1::bigint, $2::bigint, $3::bigint, user_id, $5::bigint, $6::bigint, $7::bigint,
               $8::bigint, $9::bigint, $10::bytea, $16::bytea
        FROM request RETURNING user_id),
    entry AS (
        INSERT INTO ledger (user_id, kind, content_id, reference, amount, at)
        SELECT user_id, $13::bigint, $2::bigint, $1::bigint, $14::bigint, $15::bigint
        FROM license RETURNING user_id, amount)
    UPDATE users SET total = users.total + entry.amount FROM entry WHERE users.id = entry.user_id";

/// Connections per process: a few more than the threads that use one at a time.
const POOL_SIZE: u32 = 16;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
