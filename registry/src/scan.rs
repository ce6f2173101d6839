//! Streaming a registry for audits: one user's rows at a time, and the leaves in leaf order, so
//! that a registry of ten million clients is checked in the memory of a page, not of a table.
//!
//! Every per-user invariant (ownership, moves, billing) is decided by one user's rows, because
//! a supply and a move touch one user's rows only (claim 4; `docs/storage.md`, "Ready to shard").
//! The one global invariant, that no two clients share a leaf, is decided by the leaves in order.

#[cfg(any(feature = "sqlite", feature = "postgres"))]
use treecast_keytree::LeafIndex;

use crate::billing::LedgerEntry;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
use treecast_protocol::ids::ClientId;
use treecast_protocol::ids::UserId;

use super::{CertificateRecord, ClientRecord, LicenseRecord};

/// One user's rows, as an audit reads them: read together (one snapshot).
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct UserRows {
    /// The user.
    pub user: UserId,
    /// Their billed total; `None` when rows name a user the users table does not hold.
    pub total: Option<u64>,
    /// Their clients, by ID.
    pub clients: Vec<ClientRecord>,
    /// Their licenses, by ID.
    pub licenses: Vec<LicenseRecord>,
    /// Their history entries, by ID.
    pub history: Vec<CertificateRecord>,
    /// Their ledger entries, in order.
    pub ledger: Vec<LedgerEntry>,
}

impl UserRows {
    /// An empty set of rows for `user`.
    pub const fn new(user: UserId, total: Option<u64>) -> Self {
        Self {
            user,
            total,
            clients: Vec::new(),
            licenses: Vec::new(),
            history: Vec::new(),
            ledger: Vec::new(),
        }
    }
}

/// Users per page of a scan: each page is one read transaction.
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
pub(crate) const PAGE_USERS: usize = 512;

/// Leaves per page of a leaf scan.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) const PAGE_LEAVES: usize = 16_384;

/// The queries of a scan, the same text on SQLite and PostgreSQL (`$n` parameters, numbered in
/// the order they first appear, mean the same on both).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) mod queries {
    use super::super::sql::{CLIENT_COLUMNS, HISTORY_COLUMNS, LEDGER_COLUMNS, LICENSE_COLUMNS};

    /// `$1`: the last user of the previous page; `$2`: the page's size.
    pub(crate) const USERS: &str = "SELECT id, total FROM users WHERE id > $1 ORDER BY id LIMIT $2";

    /// `$1`: the last leaf of the previous page; `$2`: the page's size.
    pub(crate) const LEAVES: &str =
        "SELECT leaf, id FROM clients WHERE leaf > $1 ORDER BY leaf, id LIMIT $2";

    /// The rows of `table` (`clients`, `licenses`, `history` or `ledger`) whose user is in
    /// `($1, $2]`, by user and then in the table's order.
    pub(crate) fn rows_of(table: &str) -> String {
        let (columns, order) = match table {
            "clients" => (CLIENT_COLUMNS, "id"),
            "licenses" => (LICENSE_COLUMNS, "id"),
            "history" => (HISTORY_COLUMNS, "id"),
            _ => (LEDGER_COLUMNS, "seq"),
        };
        format!(
            "SELECT {columns} FROM {table} WHERE user_id > $1 AND user_id <= $2 \
             ORDER BY user_id, {order}"
        )
    }
}

/// The rows of one page of a SQL scan, as the driver read them in one snapshot.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) struct Page {
    /// The page's users and totals, by ID.
    pub(crate) users: Vec<(UserId, u64)>,
    /// Their clients, by user.
    pub(crate) clients: Vec<ClientRecord>,
    /// Their licenses, by user.
    pub(crate) licenses: Vec<LicenseRecord>,
    /// Their history entries, by user.
    pub(crate) history: Vec<CertificateRecord>,
    /// Their ledger entries, by user.
    pub(crate) ledger: Vec<LedgerEntry>,
}

/// The upper bound of a page's rows: its last user, or everything beyond when the page is the
/// last one (so that rows of users beyond the last registered one are read too).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn upper(users: &[(UserId, u64)], page: usize) -> i64 {
    match users.last() {
        Some((last, _)) if users.len() >= page => super::sql::lookup(last.0),
        _ => i64::MAX,
    }
}

/// Streams a SQL registry by pages: `fetch(after, page)` reads the users after `after` and
/// their rows in one snapshot.
///
/// # Errors
/// The first error of `fetch` or `visit`.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn by_pages(
    mut fetch: impl FnMut(i64, usize) -> Result<Page, treecast_protocol::Error>,
    visit: &mut dyn FnMut(UserRows) -> Result<(), treecast_protocol::Error>,
) -> Result<(), treecast_protocol::Error> {
    let mut after = i64::MIN;
    loop {
        let page = fetch(after, PAGE_USERS)?;
        let last = page.users.len() < PAGE_USERS;
        after = upper(&page.users, PAGE_USERS);
        for rows in group(page) {
            visit(rows)?;
        }
        if last {
            return Ok(());
        }
    }
}

/// Splits a page's rows by user, in user order; rows of a user the page's users do not hold
/// come as their own [`UserRows`] with no total.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn group(page: Page) -> Vec<UserRows> {
    use std::collections::BTreeMap;

    let mut by_user: BTreeMap<UserId, UserRows> = page
        .users
        .into_iter()
        .map(|(u, total)| (u, UserRows::new(u, Some(total))))
        .collect();
    fn rows(by_user: &mut BTreeMap<UserId, UserRows>, u: UserId) -> &mut UserRows {
        by_user.entry(u).or_insert_with(|| UserRows::new(u, None))
    }
    for c in page.clients {
        rows(&mut by_user, c.user).clients.push(c);
    }
    for l in page.licenses {
        rows(&mut by_user, l.user).licenses.push(l);
    }
    for h in page.history {
        rows(&mut by_user, h.user).history.push(h);
    }
    for e in page.ledger {
        rows(&mut by_user, e.user).ledger.push(e);
    }
    by_user.into_values().collect()
}

/// One user's rows from a page read with `after = user - 1` and a size of one.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn one_user(page: Page, user: UserId) -> Option<UserRows> {
    group(page).into_iter().find(|r| r.user == user)
}

/// The `after` of a page that starts at `user`.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn before(user: UserId) -> i64 {
    super::sql::lookup(user.0).saturating_sub(1)
}

/// Streams a SQL registry's leaves by pages: `fetch(after)` reads the leaves after `after`.
///
/// # Errors
/// The first error of `fetch` or `visit`.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn leaves_by_pages(
    mut fetch: impl FnMut(i64) -> Result<Vec<(LeafIndex, ClientId)>, treecast_protocol::Error>,
    visit: &mut dyn FnMut(LeafIndex, ClientId) -> Result<(), treecast_protocol::Error>,
) -> Result<(), treecast_protocol::Error> {
    let mut after = -1;
    loop {
        let page = fetch(after)?;
        for &(leaf, id) in &page {
            visit(leaf, id)?;
        }
        match page.last() {
            Some((leaf, _)) if page.len() >= PAGE_LEAVES => after = i64::from(leaf.get()),
            _ => return Ok(()),
        }
    }
}
