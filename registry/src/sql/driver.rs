//! What a SQL store's driver does, and nothing more: run a transaction of a given kind, run a
//! statement on it with integer, byte and flag values, and take a new ID. Everything else, every
//! query and every rule, is in [`super::store`], once for both stores.
//!
//! Queries are written once, with `$n` parameters numbered in the order they first appear:
//! PostgreSQL reads them as they are, the SQLite driver rewrites `$n` as `?n`.

use treecast_protocol::Error;

/// A value bound to a statement.
#[derive(Clone, Copy, Debug)]
pub enum Value<'a> {
    Int(i64),
    /// An integer column's `NULL`.
    Null,
    /// A bytes column's `NULL` (PostgreSQL types its parameters).
    NullBytes,
    Bytes(&'a [u8]),
    Text(&'a str),
}

impl From<i64> for Value<'_> {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}

impl<'a> From<&'a [u8]> for Value<'a> {
    fn from(v: &'a [u8]) -> Self {
        Self::Bytes(v)
    }
}

impl From<Option<i64>> for Value<'_> {
    fn from(v: Option<i64>) -> Self {
        v.map_or(Self::Null, Self::Int)
    }
}

/// A column of a row read: a flag reads as the integer 0 or 1 on both stores.
#[derive(Debug)]
pub(crate) enum Cell {
    Null,
    Int(i64),
    Bytes(Vec<u8>),
}

/// A row read, its columns in the query's order.
#[derive(Debug)]
pub struct Row(pub(crate) Vec<Cell>);

impl Row {
    fn cell(&self, i: usize) -> Result<&Cell, Error> {
        self.0
            .get(i)
            .ok_or_else(|| Error::Storage(format!("a row without column {i}")))
    }

    /// An integer column.
    pub(crate) fn int(&self, i: usize) -> Result<i64, Error> {
        self.opt_int(i)?
            .ok_or_else(|| Error::Storage(format!("column {i} is NULL")))
    }

    /// An integer column that may be `NULL`.
    pub(crate) fn opt_int(&self, i: usize) -> Result<Option<i64>, Error> {
        match self.cell(i)? {
            Cell::Null => Ok(None),
            Cell::Int(v) => Ok(Some(*v)),
            Cell::Bytes(_) => Err(Error::Storage(format!("column {i} is not an integer"))),
        }
    }

    /// A flag column (0 or 1).
    pub(crate) fn flag(&self, i: usize) -> Result<bool, Error> {
        match self.int(i)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(Error::Storage(format!("column {i} holds {v}, not a flag"))),
        }
    }

    /// A byte column, taken out of the row.
    pub(crate) fn bytes(&mut self, i: usize) -> Result<Vec<u8>, Error> {
        self.opt_bytes(i)?
            .ok_or_else(|| Error::Storage(format!("column {i} is NULL")))
    }

    /// A byte column that may be `NULL`, taken out of the row.
    pub(crate) fn opt_bytes(&mut self, i: usize) -> Result<Option<Vec<u8>>, Error> {
        let cell = self
            .0
            .get_mut(i)
            .ok_or_else(|| Error::Storage(format!("a row without column {i}")))?;
        match std::mem::replace(cell, Cell::Null) {
            Cell::Null => Ok(None),
            Cell::Bytes(v) => Ok(Some(v)),
            Cell::Int(_) => Err(Error::Storage(format!("column {i} is not bytes"))),
        }
    }
}

/// A transaction (or, for [`Kind::Read`] and [`Kind::Alone`] on PostgreSQL, one connection)
/// that statements run in.
pub trait Tx {
    /// Runs `sql` and returns its rows.
    fn query(&mut self, sql: &str, params: &[Value<'_>]) -> Result<Vec<Row>, Error>;

    /// Runs `sql` and returns how many rows it changed.
    fn execute(&mut self, sql: &str, params: &[Value<'_>]) -> Result<u64, Error>;
}

impl dyn Tx + '_ {
    /// The first row of `sql`, if any.
    pub(crate) fn row(&mut self, sql: &str, params: &[Value<'_>]) -> Result<Option<Row>, Error> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// The one row of `sql`.
    pub(crate) fn one(&mut self, sql: &str, params: &[Value<'_>]) -> Result<Row, Error> {
        self.row(sql, params)?
            .ok_or_else(|| Error::Storage("a query returned no row".into()))
    }
}

/// Runs `run`, a transaction of `kind` on `store`, and records its time in the
/// `treecast_registry_transaction_duration_seconds` histogram (a no-op without a metrics
/// recorder: the library on its own, the simulator).
pub(crate) fn timed<T>(store: &'static str, kind: Kind, run: impl FnOnce() -> T) -> T {
    let started = std::time::Instant::now();
    let out = run();
    let kind = match kind {
        Kind::Read => "read",
        Kind::Snapshot => "snapshot",
        Kind::Write => "write",
        Kind::Durable => "durable",
        Kind::Register => "register",
        Kind::Alone => "alone",
    };
    metrics::histogram!(
        "treecast_registry_transaction_duration_seconds",
        "store" => store,
        "kind" => kind,
    )
    .record(started.elapsed().as_secs_f64());
    out
}

/// What a transaction is for; each driver runs each kind its own way.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Kind {
    /// One read statement (PostgreSQL: no `BEGIN`, a statement sees one snapshot).
    Read,
    /// Several reads, one snapshot.
    Snapshot,
    /// A change (PostgreSQL: retried on a deadlock or serialization failure).
    Write,
    /// A change whose loss a power failure must never cause (SQLite: `synchronous = FULL` for
    /// this commit whatever the durability).
    Durable,
    /// A client registration (SQLite: first makes sure the next leaf is below the durable
    /// reserve).
    Register,
    /// One changing statement as its own transaction (PostgreSQL: no `BEGIN`/`COMMIT` round
    /// trips; retried as [`Kind::Write`]).
    Alone,
}

/// The IDs a store hands out.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum NewId {
    User,
    Content,
    License,
    Certificate,
}

/// A row lock held until the commit, where the store has row locks (PostgreSQL); SQLite's one
/// writer needs none.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Lock {
    None,
    Share,
    Update,
}

/// A SQL store's driver. Sealed: its module is private.
pub trait Driver: Send + Sync {
    /// Runs `f` in a transaction of `kind`, committing only if it succeeds.
    #[doc(hidden)]
    fn run<T>(
        &self,
        kind: Kind,
        f: &mut dyn FnMut(&mut dyn Tx) -> Result<T, Error>,
    ) -> Result<T, Error>;

    /// A new ID, in the caller's transaction.
    #[doc(hidden)]
    fn new_id(&self, tx: &mut dyn Tx, id: NewId) -> Result<u64, Error>;

    /// A new license ID for a supply, taken before its transaction: without one where the
    /// driver has IDs at hand.
    #[doc(hidden)]
    fn license_id(&self) -> Result<u64, Error>;

    /// The clause that takes `lock` on the rows a `SELECT` reads (`""` where there are none).
    #[doc(hidden)]
    fn lock(&self, lock: Lock) -> &'static str;

    /// A license supply in one statement, where round trips cost (PostgreSQL): its parameters
    /// are [`super::store`]'s, and it changes one row when every check passes, none otherwise.
    /// `None`: the supply runs as a transaction of several statements.
    #[doc(hidden)]
    fn supply_statement(&self) -> Option<&'static str>;

    /// The driver's own part of [`crate::Registry::probe`] (nothing by default).
    #[doc(hidden)]
    fn probe(&self, depth: crate::Probe) -> Result<(), Error> {
        let _ = depth;
        Ok(())
    }
}
