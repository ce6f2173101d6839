//! Rows to records: how each PostgreSQL row is read, and the pages of a scan.

use postgres::{GenericClient, Row};
use treecast_keytree::{LeafIndex, TreeHeight};

use super::super::scan::{self, Page, queries};
use super::super::sql::{
    CLIENT_COLUMNS, ClientRow, HISTORY_COLUMNS, LEDGER_COLUMNS, LICENSE_COLUMNS, history_record,
    ledger_entry, license_record, stored_leaf, un,
};
use super::super::{CertificateRecord, ClientRecord, ClientSummary, LicenseRecord};
use super::cache::Db;
use super::{Failure, Step};
use crate::Error;
use crate::billing::LedgerEntry;
use crate::ids::{ClientId, UserId};

pub(super) fn client_row(r: &Row) -> ClientRow {
    ClientRow(
        r.get(0),
        r.get(1),
        r.get(2),
        r.get(3),
        r.get(4),
        r.get(5),
        r.get(6),
        r.get(7),
    )
}

pub(super) fn license_row(r: &Row) -> ([Option<i64>; 9], Vec<u8>) {
    let mut v = [None; 9];
    for (i, slot) in v.iter_mut().enumerate() {
        *slot = r.get(i);
    }
    (v, r.get(9))
}

pub(super) fn ints<const N: usize>(r: &Row) -> [i64; N] {
    let mut v = [0i64; N];
    for (i, slot) in v.iter_mut().enumerate() {
        *slot = r.get(i);
    }
    v
}

/// One page of a scan (`scan::by_pages`), read in the caller's snapshot.
pub(super) fn page(
    tx: &mut Db<'_, impl GenericClient>,
    after: i64,
    size: usize,
    height: TreeHeight,
) -> Step<Page> {
    let size_sql = i64::try_from(size).map_err(|_| Error::Internal("page size"))?;
    let users = tx
        .query(queries::USERS, &[&after, &size_sql])?
        .iter()
        .map(|r| Ok((UserId(un(r.get(0))?), un(r.get(1))?)))
        .collect::<Result<Vec<_>, Error>>()?;
    let upper = scan::upper(&users, size);
    let mut rows = |table: &str| tx.query(&queries::rows_of(table), &[&after, &upper]);
    let clients = rows("clients")?
        .iter()
        .map(|r| client_row(r).into_record(height))
        .collect::<Result<_, Error>>()?;
    let licenses = rows("licenses")?
        .iter()
        .map(|r| license_record(license_row(r)))
        .collect::<Result<_, Error>>()?;
    let history = rows("history")?
        .iter()
        .map(|r| history_record(ints(r)))
        .collect::<Result<_, Error>>()?;
    let ledger = rows("ledger")?
        .iter()
        .map(|r| ledger_entry(ints(r)))
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
    tx: &mut Db<'_, impl GenericClient>,
    after: i64,
    height: TreeHeight,
) -> Step<Vec<(LeafIndex, ClientId)>> {
    let size = i64::try_from(scan::PAGE_LEAVES).map_err(|_| Error::Internal("page size"))?;
    tx.query(queries::LEAVES, &[&after, &size])?
        .iter()
        .map(|r| Ok((stored_leaf(r.get(0), height)?, ClientId(un(r.get(1))?))))
        .collect::<Result<_, Error>>()
        .map_err(Failure::Refused)
}

// Whole tables, for small registries and tests (audits stream: `scan`).

pub(super) fn certificate_history(
    tx: &mut Db<'_, impl GenericClient>,
) -> Step<Vec<CertificateRecord>> {
    tx.query(
        &format!("SELECT {HISTORY_COLUMNS} FROM history ORDER BY id"),
        &[],
    )?
    .iter()
    .map(|r| Ok(history_record(ints::<10>(r))?))
    .collect()
}

pub(super) fn ledger(tx: &mut Db<'_, impl GenericClient>) -> Step<Vec<LedgerEntry>> {
    tx.query(
        &format!("SELECT {LEDGER_COLUMNS} FROM ledger ORDER BY seq"),
        &[],
    )?
    .iter()
    .map(|r| Ok(ledger_entry(ints::<6>(r))?))
    .collect()
}

pub(super) fn users(tx: &mut Db<'_, impl GenericClient>) -> Step<Vec<(UserId, u64)>> {
    tx.query("SELECT id, total FROM users ORDER BY id", &[])?
        .iter()
        .map(|r| Ok((UserId(un(r.get(0))?), un(r.get(1))?)))
        .collect()
}

pub(super) fn all_clients(
    tx: &mut Db<'_, impl GenericClient>,
    height: TreeHeight,
) -> Step<Vec<ClientRecord>> {
    tx.query(
        &format!("SELECT {CLIENT_COLUMNS} FROM clients ORDER BY id"),
        &[],
    )?
    .iter()
    .map(|r| Ok(client_row(r).into_record(height)?))
    .collect()
}

pub(super) fn client_summaries(
    tx: &mut Db<'_, impl GenericClient>,
    height: TreeHeight,
) -> Step<Vec<ClientSummary>> {
    tx.query(
        "SELECT id, user_id, leaf, revoked FROM clients ORDER BY id",
        &[],
    )?
    .iter()
    .map(|r| {
        Ok(ClientSummary {
            id: ClientId(un(r.get(0))?),
            user: UserId(un(r.get(1))?),
            leaf: stored_leaf(r.get(2), height)?,
            revoked: r.get(3),
        })
    })
    .collect()
}

pub(super) fn all_licenses(tx: &mut Db<'_, impl GenericClient>) -> Step<Vec<LicenseRecord>> {
    tx.query(
        &format!("SELECT {LICENSE_COLUMNS} FROM licenses ORDER BY id"),
        &[],
    )?
    .iter()
    .map(|r| Ok(license_record(license_row(r))?))
    .collect()
}
