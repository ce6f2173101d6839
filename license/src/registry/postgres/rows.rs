//! Rows to records: how each PostgreSQL row is read, and the pages of a scan.

use postgres::{GenericClient, Row};
use treecast_keytree::{LeafIndex, TreeHeight};

use super::super::scan::{self, Page, queries};
use super::super::sql::{ClientRow, history_record, ledger_entry, license_record, stored_leaf, un};
use super::cache::Db;
use super::{Failure, Step};
use crate::Error;
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
