//! Rows to records and back: how each column is read, checked and written.

use rusqlite::{OptionalExtension, Transaction, params};
use treecast_keytree::{LeafIndex, TreeHeight};

use super::super::{ClientRecord, LicenseRecord, LicenseState};
use crate::Error;
use crate::billing::{ChargeKind, LedgerEntry};
use crate::ids::{CertificateId, ClientId, ContentId, LicenseId, ServerId, UserId};
use crate::license::Rights;
use crate::time::UnixTime;

/// An ID from outside, as a lookup key: an ID beyond SQLite's integers names no row, like any
/// other unknown ID (`-1` is never a stored ID).
pub(super) fn lookup(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(-1)
}

/// A `u64` as SQLite's signed integer.
pub(super) fn sql(v: u64) -> Result<i64, Error> {
    i64::try_from(v).map_err(|_| Error::Storage(format!("{v} is too large for the registry")))
}

/// A request nonce as stored: any `u64`, its bits kept as SQLite's signed integer.
pub(super) fn nonce_bits(v: u64) -> i64 {
    i64::from_be_bytes(v.to_be_bytes())
}

/// A stored storage-key ID.
pub(super) fn key_id_of(v: i64) -> Result<u32, Error> {
    u32::try_from(v).map_err(|_| Error::Storage(format!("bad storage key ID {v} in the registry")))
}

/// A SQLite integer as a `u64`.
pub(super) fn un(v: i64) -> Result<u64, Error> {
    u64::try_from(v).map_err(|_| Error::Storage(format!("negative value {v} in the registry")))
}

pub(super) fn meta(tx: &Transaction<'_>, key: &str) -> Result<u64, Error> {
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

pub(super) const CLIENT_COLUMNS: &str =
    "id, user_id, leaf, server, certificate, public_key, revoked, tag";

pub(super) struct ClientRow(i64, i64, i64, i64, Vec<u8>, Vec<u8>, bool, Vec<u8>);

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

/// A 32-byte tag column; a wrong length reads as a zero tag, which never verifies.
pub(super) fn stored_tag(raw: Vec<u8>) -> [u8; 32] {
    raw.try_into().unwrap_or([0; 32])
}

/// A leaf column, checked against the tree.
pub(super) fn stored_leaf(raw: i64, height: TreeHeight) -> Result<LeafIndex, Error> {
    u32::try_from(raw)
        .ok()
        .and_then(|l| LeafIndex::new(l, height).ok())
        .ok_or_else(|| Error::Storage(format!("bad leaf {raw} in the registry")))
}

impl ClientRow {
    pub(super) fn into_record(self, height: TreeHeight) -> Result<ClientRecord, Error> {
        let leaf = stored_leaf(self.2, height)?;
        let server = u32::try_from(self.3).map_err(|_| Error::Storage("bad server id".into()))?;
        let public_key: [u8; 32] = self
            .5
            .try_into()
            .map_err(|_| Error::Storage("bad public key length".into()))?;
        Ok(ClientRecord {
            id: ClientId(un(self.0)?),
            user: UserId(un(self.1)?),
            leaf,
            server: ServerId(server),
            certificate: self.4,
            public_key,
            revoked: self.6,
            tag: stored_tag(self.7),
        })
    }
}

/// The first `N` columns of a row, as integers.
pub(super) fn ints<const N: usize>(r: &rusqlite::Row<'_>) -> rusqlite::Result<[i64; N]> {
    let mut v = [0i64; N];
    for (i, slot) in v.iter_mut().enumerate() {
        *slot = r.get(i)?;
    }
    Ok(v)
}

pub(super) const LICENSE_COLUMNS: &str =
    "id, content_id, client_id, user_id, epoch, state, origin, issued_at, rights, tag";

pub(super) fn license_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<([Option<i64>; 9], Vec<u8>)> {
    let mut v = [None; 9];
    for (i, slot) in v.iter_mut().enumerate() {
        *slot = r.get(i)?;
    }
    Ok((v, r.get(9)?))
}

pub(super) fn license_record(
    (v, tag): ([Option<i64>; 9], Vec<u8>),
) -> Result<LicenseRecord, Error> {
    let need = |x: Option<i64>| {
        x.ok_or_else(|| Error::Storage("missing license field".into()))
            .and_then(un)
    };
    let [
        id,
        content,
        client,
        user,
        epoch,
        state,
        origin,
        issued,
        rights,
    ] = v;
    Ok(LicenseRecord {
        rights: Rights(
            u8::try_from(need(rights)?).map_err(|_| Error::Storage("bad license rights".into()))?,
        ),
        tag: stored_tag(tag),
        id: LicenseId(need(id)?),
        content: ContentId(need(content)?),
        client: ClientId(need(client)?),
        user: UserId(need(user)?),
        epoch: need(epoch)?,
        state: match need(state)? {
            0 => LicenseState::Active,
            1 => LicenseState::Moved,
            s => return Err(Error::Storage(format!("bad license state {s}"))),
        },
        origin: origin.map(un).transpose()?.map(CertificateId),
        issued_at: UnixTime(need(issued)?),
    })
}

pub(super) fn state_code(s: LicenseState) -> i64 {
    match s {
        LicenseState::Active => 0,
        LicenseState::Moved => 1,
    }
}

pub(super) fn kind_code(k: ChargeKind) -> i64 {
    match k {
        ChargeKind::License => 0,
        ChargeKind::Certificate => 1,
    }
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
    tx.prepare_cached(&format!(
        "INSERT INTO licenses ({LICENSE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
    ))?
    .execute(params![
        sql(l.id.0)?,
        sql(l.content.0)?,
        sql(l.client.0)?,
        sql(l.user.0)?,
        sql(l.epoch)?,
        state_code(l.state),
        l.origin.map(|c| sql(c.0)).transpose()?,
        sql(l.issued_at.0)?,
        i64::from(l.rights.0),
        l.tag.as_slice(),
    ])?;
    Ok(())
}

pub(super) fn bill(tx: &Transaction<'_>, e: &LedgerEntry) -> Result<(), Error> {
    tx.prepare_cached("INSERT INTO ledger (user_id, kind, content_id, reference, amount, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?
        .execute(params![
            sql(e.user.0)?,
            kind_code(e.kind),
            sql(e.content.0)?,
            sql(e.reference)?,
            sql(e.amount)?,
            sql(e.at.0)?
        ])?;
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
