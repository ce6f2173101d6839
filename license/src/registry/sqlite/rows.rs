//! Rows to records and back: how each column is read, checked and written.

use super::super::LicenseRecord;
use super::super::scan::{self, Page, queries};
use super::super::sql::{
    ClientRow, LEDGER_COLUMNS, LICENSE_COLUMNS, history_record, ledger_entry, ledger_values,
    license_record, license_values, lookup, sql, stored_leaf, un,
};
use crate::Error;
use crate::billing::LedgerEntry;
use crate::ids::{ClientId, ContentId, LicenseId, UserId};
use rusqlite::{OptionalExtension, Transaction, params};
use treecast_keytree::LeafIndex;

pub(super) fn meta(tx: &rusqlite::Connection, key: &str) -> Result<u64, Error> {
    let v: i64 = tx
        .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([key], |r| r.get(0))?;
    un(v)
}

pub(super) fn set_meta(tx: &Transaction<'_>, key: &str, value: u64) -> Result<(), Error> {
    tx.prepare_cached("UPDATE meta SET value = ?2 WHERE key = ?1")?
        .execute(params![key, sql(value)?])?;
    Ok(())
}

pub(super) fn next_id(tx: &Transaction<'_>, table: &str) -> Result<u64, Error> {
    let v: i64 = tx
        .prepare_cached(&format!("SELECT COALESCE(MAX(id), 0) + 1 FROM {table}"))?
        .query_row([], |r| r.get(0))?;
    un(v)
}

pub(super) fn ids<T>(
    tx: &Transaction<'_>,
    query: &str,
    key: u64,
    wrap: impl Fn(u64) -> T,
) -> Result<Vec<T>, Error> {
    let mut stmt = tx.prepare_cached(query)?;
    let rows = stmt.query_map([lookup(key)], |r| r.get::<_, i64>(0))?;
    rows.map(|r| Ok(wrap(un(r?)?))).collect()
}

pub(super) fn client_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ClientRow> {
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

/// The first `N` columns of a row, as integers.
pub(super) fn ints<const N: usize>(r: &rusqlite::Row<'_>) -> rusqlite::Result<[i64; N]> {
    let mut v = [0i64; N];
    for (i, slot) in v.iter_mut().enumerate() {
        *slot = r.get(i)?;
    }
    Ok(v)
}

pub(super) fn license_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<([Option<i64>; 9], Vec<u8>)> {
    let mut v = [None; 9];
    for (i, slot) in v.iter_mut().enumerate() {
        *slot = r.get(i)?;
    }
    Ok((v, r.get(9)?))
}

pub(super) fn license_in(
    tx: &Transaction<'_>,
    id: LicenseId,
) -> Result<Option<LicenseRecord>, Error> {
    tx.prepare_cached(&format!(
        "SELECT {LICENSE_COLUMNS} FROM licenses WHERE id = ?1"
    ))?
    .query_row([lookup(id.0)], license_row)
    .optional()?
    .map(license_record)
    .transpose()
}

pub(super) fn insert_license(tx: &Transaction<'_>, l: &LicenseRecord) -> Result<(), Error> {
    let ([a, b, c, d, e, f, g, h, i], tag) = license_values(l)?;
    tx.prepare_cached(&format!(
        "INSERT INTO licenses ({LICENSE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
    ))?
    .execute(params![a, b, c, d, e, f, g, h, i, tag])?;
    Ok(())
}

pub(super) fn bill(tx: &Transaction<'_>, e: &LedgerEntry) -> Result<(), Error> {
    tx.prepare_cached(&format!(
        "INSERT INTO ledger ({LEDGER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
    ))?
    .execute(ledger_values(e)?)?;
    tx.prepare_cached("UPDATE users SET total = total + ?2 WHERE id = ?1")?
        .execute(params![sql(e.user.0)?, sql(e.amount)?])?;
    Ok(())
}

pub(super) fn content_exists(tx: &Transaction<'_>, id: ContentId) -> Result<bool, Error> {
    Ok(tx
        .prepare_cached("SELECT 1 FROM contents WHERE id = ?1")?
        .query_row([lookup(id.0)], |_| Ok(()))
        .optional()?
        .is_some())
}

/// One page of a scan (`scan::by_pages`), read in the caller's transaction.
pub(super) fn page(
    tx: &Transaction<'_>,
    after: i64,
    size: usize,
    height: treecast_keytree::TreeHeight,
) -> Result<Page, Error> {
    let size_sql = i64::try_from(size).map_err(|_| Error::Internal("page size"))?;
    let users = tx
        .prepare_cached(queries::USERS)?
        .query_map(params![after, size_sql], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
        })?
        .map(|r| {
            let (id, total) = r?;
            Ok((UserId(un(id)?), un(total)?))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let bounds = params![after, scan::upper(&users, size)];
    let clients = tx
        .prepare_cached(&queries::rows_of("clients"))?
        .query_map(bounds, client_row)?
        .map(|r| r?.into_record(height))
        .collect::<Result<_, Error>>()?;
    let licenses = tx
        .prepare_cached(&queries::rows_of("licenses"))?
        .query_map(bounds, license_row)?
        .map(|r| license_record(r?))
        .collect::<Result<_, Error>>()?;
    let history = tx
        .prepare_cached(&queries::rows_of("history"))?
        .query_map(bounds, ints::<10>)?
        .map(|r| history_record(r?))
        .collect::<Result<_, Error>>()?;
    let ledger = tx
        .prepare_cached(&queries::rows_of("ledger"))?
        .query_map(bounds, ints::<6>)?
        .map(|r| ledger_entry(r?))
        .collect::<Result<_, Error>>()?;
    Ok(Page {
        users,
        clients,
        licenses,
        history,
        ledger,
    })
}

/// One page of a leaf scan: the leaves after `after`, with their clients, in leaf order.
pub(super) fn leaf_page(
    tx: &Transaction<'_>,
    after: i64,
    height: treecast_keytree::TreeHeight,
) -> Result<Vec<(LeafIndex, ClientId)>, Error> {
    let size = i64::try_from(scan::PAGE_LEAVES).map_err(|_| Error::Internal("page size"))?;
    tx.prepare_cached(queries::LEAVES)?
        .query_map(params![after, size], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
        })?
        .map(|r| {
            let (leaf, id) = r?;
            Ok((stored_leaf(leaf, height)?, ClientId(un(id)?)))
        })
        .collect()
}

/// Records a request in the caller's transaction, with what it produced.
///
/// # Errors
/// [`Error::RequestReplayed`] when the client already used the nonce.
pub(super) fn record_request(
    tx: &Transaction<'_>,
    client: ClientId,
    user: UserId,
    request: super::super::RequestTag,
    answer: u64,
) -> Result<(), Error> {
    let inserted = tx
        .prepare_cached(super::super::sql::RECORD_REQUEST)?
        .execute(params![
            sql(client.0)?,
            super::super::sql::nonce_bits(request.nonce),
            sql(user.0)?,
            request.digest.as_slice(),
            sql(answer)?,
        ])?;
    if inserted == 0 {
        return Err(Error::RequestReplayed);
    }
    Ok(())
}
