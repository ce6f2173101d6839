//! The `meta` counters, read and written outside the shared queries: at opening and to keep
//! the leaf reserve.

use rusqlite::{Transaction, params};
use treecast_protocol::Error;

use super::super::sql::{sql, un};
use crate::sql::StorageError;

pub(super) fn meta(tx: &rusqlite::Connection, key: &str) -> Result<u64, Error> {
    let v: i64 = tx
        .prepare_cached("SELECT value FROM meta WHERE key = ?1")
        .storage()?
        .query_row([key], |r| r.get(0))
        .storage()?;
    un(v)
}

pub(super) fn set_meta(tx: &Transaction<'_>, key: &str, value: u64) -> Result<(), Error> {
    tx.prepare_cached("UPDATE meta SET value = ?2 WHERE key = ?1")
        .storage()?
        .execute(params![key, sql(value)?])
        .storage()?;
    Ok(())
}
