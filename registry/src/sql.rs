//! What the two SQL stores share: the columns each record is stored in, how a row becomes a
//! checked record and a record the values bound for an insert. The drivers (`sqlite`,
//! `postgres`) only run the statements; every rule about what a stored value may be is here, once.

use treecast_keytree::{LeafIndex, TreeHeight};

mod driver;
mod steps;
mod store;

pub(crate) use driver::{Cell, Driver, Kind, Lock, NewId, Row, Tx, Value, timed};
pub use store::SqlRegistry;

use super::{CertificateRecord, ClientRecord, LicenseRecord, LicenseState};
use crate::billing::{Charge, ChargeKind, LedgerEntry};
use treecast_protocol::Error;
use treecast_protocol::ids::{CertificateId, ClientId, ContentId, LicenseId, ServerId, UserId};
use treecast_protocol::license::Rights;
use treecast_protocol::terms::Terms;
use treecast_protocol::time::UnixTime;

/// A driver's result, its error as [`Error::Storage`] in the registry's words (what failed,
/// never the connection string).
pub(crate) trait StorageError<T> {
    /// The result, a driver's error described.
    fn storage(self) -> Result<T, Error>;
}

/// An ID from outside, as a lookup key: an ID beyond the store's integers names no row, like any
/// other unknown ID (`-1` is never a stored ID).
pub(crate) fn lookup(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(-1)
}

/// A `u64` as the store's signed integer.
pub(crate) fn sql(v: u64) -> Result<i64, Error> {
    i64::try_from(v).map_err(|_| Error::Storage(format!("{v} is too large for the registry")))
}

/// A request nonce as stored: any `u64`, its bits kept as the store's signed integer.
pub(crate) fn nonce_bits(v: u64) -> i64 {
    i64::from_be_bytes(v.to_be_bytes())
}

/// A stored storage-key ID.
pub(crate) fn key_id_of(v: i64) -> Result<u32, Error> {
    u32::try_from(v).map_err(|_| Error::Storage(format!("bad storage key ID {v} in the registry")))
}

/// A stored integer as a `u64`.
pub(crate) fn un(v: i64) -> Result<u64, Error> {
    u64::try_from(v).map_err(|_| Error::Storage(format!("negative value {v} in the registry")))
}

/// A migration of both SQL stores (SQLite schema 3, PostgreSQL schema 2): the indexes that let
/// an audit read the registry a page of users at a time (`registry::scan`).
pub(crate) const SCAN_INDEXES: &str =
    "CREATE INDEX IF NOT EXISTS history_by_user ON history(user_id, id);
     CREATE INDEX IF NOT EXISTS ledger_by_user ON ledger(user_id, seq)";

/// Records a request (`$1` client, `$2` nonce bits, `$3` user, `$4` digest, `$5` answer);
/// changes nothing when the client already used the nonce. The same text on both stores.
pub(crate) const RECORD_REQUEST: &str = "INSERT INTO requests (client_id, nonce, user_id, digest, answer) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING";

/// A recorded request's digest and answer (`$1` client, `$2` nonce bits).
pub(crate) const USED_REQUEST: &str =
    "SELECT digest, answer FROM requests WHERE client_id = $1 AND nonce = $2";

/// A recorded request from its digest and answer columns; a row from before digests were kept
/// has none, and matches no request.
pub(crate) fn used_request(digest: Vec<u8>, answer: i64) -> Result<super::UsedRequest, Error> {
    Ok(super::UsedRequest::new(
        digest.try_into().unwrap_or([0xff; 16]),
        un(answer)?,
    ))
}

/// Stores an epoch's EKB unless one is (`$1` epoch, `$2` bytes).
pub(crate) const KEEP_EKB: &str =
    "INSERT INTO ekbs (epoch, bytes) VALUES ($1, $2) ON CONFLICT DO NOTHING";

/// Stores a server's key list when its number is above the stored one's (`$1` server, `$2`
/// number, `$3` bytes); one row a server.
pub(crate) const KEEP_SERVER_KEYS: &str = "INSERT INTO server_keys (server, sequence, list) \
     VALUES ($1, $2, $3) ON CONFLICT (server) DO UPDATE SET sequence = excluded.sequence, \
     list = excluded.list WHERE server_keys.sequence < excluded.sequence";

/// Every server's newest key list.
pub(crate) const SERVER_KEY_LISTS: &str =
    "SELECT server, sequence, list FROM server_keys ORDER BY server";

/// An epoch's stored EKB (`$1` epoch).
pub(crate) const STORED_EKB: &str = "SELECT bytes FROM ekbs WHERE epoch = $1";

pub(crate) const CLIENT_COLUMNS: &str =
    "id, user_id, leaf, server, certificate, public_key, revoked, tag";

/// A client row as read: id, user, leaf, server, certificate, public key, revoked, tag.
pub(crate) struct ClientRow(
    pub(crate) i64,
    pub(crate) i64,
    pub(crate) i64,
    pub(crate) i64,
    pub(crate) Vec<u8>,
    pub(crate) Vec<u8>,
    pub(crate) bool,
    pub(crate) Vec<u8>,
);

/// A 32-byte tag column; a wrong length reads as a zero tag, which never verifies.
pub(crate) fn stored_tag(raw: Vec<u8>) -> [u8; 32] {
    raw.try_into().unwrap_or([0; 32])
}

/// A leaf column, checked against the tree.
pub(crate) fn stored_leaf(raw: i64, height: TreeHeight) -> Result<LeafIndex, Error> {
    u32::try_from(raw)
        .ok()
        .and_then(|l| LeafIndex::new(l, height).ok())
        .ok_or_else(|| Error::Storage(format!("bad leaf {raw} in the registry")))
}

impl ClientRow {
    pub(crate) fn into_record(self, height: TreeHeight) -> Result<ClientRecord, Error> {
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

pub(crate) const LICENSE_COLUMNS: &str =
    "id, content_id, client_id, user_id, epoch, state, origin, issued_at, rights, tag, terms";

pub(crate) fn license_record(
    (v, tag, terms): ([Option<i64>; 9], Vec<u8>, Option<Vec<u8>>),
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
            2 => LicenseState::Returned,
            s => return Err(Error::Storage(format!("bad license state {s}"))),
        },
        origin: origin.map(un).transpose()?.map(CertificateId),
        issued_at: UnixTime(need(issued)?),
        terms: terms.as_deref().map(stored_terms).transpose()?,
    })
}

/// A license's terms as stored: their encoding (`docs/formats.md`), exactly.
pub(crate) fn stored_terms(bytes: &[u8]) -> Result<Terms, Error> {
    let mut r = treecast_keytree::codec::Reader::new(bytes);
    let terms = Terms::read(&mut r).and_then(|t| r.finish().map(|()| t));
    terms.map_err(|e| Error::Storage(format!("bad license terms: {e}")))
}

/// The encoding of a license's terms, as stored.
pub(crate) fn terms_bytes(terms: Option<&Terms>) -> Option<Vec<u8>> {
    terms.map(|t| {
        let mut out = Vec::with_capacity(Terms::ENCODED_LEN);
        t.encode(&mut out);
        out
    })
}

pub(crate) fn state_code(s: LicenseState) -> i64 {
    match s {
        LicenseState::Active => 0,
        LicenseState::Moved => 1,
        LicenseState::Returned => 2,
    }
}

pub(crate) fn kind_code(k: ChargeKind) -> i64 {
    match k {
        ChargeKind::License => 0,
        ChargeKind::Certificate => 1,
        ChargeKind::Renewal => 2,
        ChargeKind::Return => 3,
    }
}

/// The columns of a history entry, in the order [`history_record`] reads them.
pub(crate) const HISTORY_COLUMNS: &str = "id, user_id, content_id, source, source_license, \
     destination, destination_license, server, issued_at, expires_at";

/// A history entry from its ten integer columns.
pub(crate) fn history_record(v: [i64; 10]) -> Result<CertificateRecord, Error> {
    let [
        id,
        user,
        content,
        source,
        sl,
        dest,
        dl,
        server,
        issued,
        expires,
    ] = v;
    Ok(CertificateRecord {
        id: CertificateId(un(id)?),
        user: UserId(un(user)?),
        content: ContentId(un(content)?),
        source: ClientId(un(source)?),
        source_license: LicenseId(un(sl)?),
        destination: ClientId(un(dest)?),
        destination_license: LicenseId(un(dl)?),
        server: ServerId(u32::try_from(server).map_err(|_| Error::Storage("bad server".into()))?),
        issued_at: UnixTime(un(issued)?),
        expires_at: UnixTime(un(expires)?),
    })
}

/// The columns of a ledger entry, in the order [`ledger_entry`] reads them.
pub(crate) const LEDGER_COLUMNS: &str = "user_id, kind, content_id, reference, amount, at";

/// A ledger entry from its six integer columns.
pub(crate) fn ledger_entry(v: [i64; 6]) -> Result<LedgerEntry, Error> {
    let [user, kind, content, reference, amount, at] = v;
    let kind = match kind {
        0 => ChargeKind::License,
        1 => ChargeKind::Certificate,
        2 => ChargeKind::Renewal,
        3 => ChargeKind::Return,
        k => return Err(Error::Storage(format!("bad charge kind {k}"))),
    };
    let charge = Charge::new(kind, un(amount)?, UnixTime(un(at)?));
    Ok(LedgerEntry::new(
        UserId(un(user)?),
        ContentId(un(content)?),
        un(reference)?,
        charge,
    ))
}

/// A license's integer columns as bound for an insert, in [`LICENSE_COLUMNS`] order (the tag
/// and the terms, which follow them, apart: [`terms_bytes`]).
pub(crate) fn license_values(l: &LicenseRecord) -> Result<([Option<i64>; 9], &[u8]), Error> {
    Ok((
        [
            Some(sql(l.id.0)?),
            Some(sql(l.content.0)?),
            Some(sql(l.client.0)?),
            Some(sql(l.user.0)?),
            Some(sql(l.epoch)?),
            Some(state_code(l.state)),
            l.origin.map(|c| sql(c.0)).transpose()?,
            Some(sql(l.issued_at.0)?),
            Some(i64::from(l.rights.0)),
        ],
        l.tag.as_slice(),
    ))
}

/// A ledger entry's columns as bound for an insert, in [`LEDGER_COLUMNS`] order.
pub(crate) fn ledger_values(e: &LedgerEntry) -> Result<[i64; 6], Error> {
    Ok([
        sql(e.user.0)?,
        kind_code(e.kind),
        sql(e.content.0)?,
        sql(e.reference)?,
        sql(e.amount)?,
        sql(e.at.0)?,
    ])
}

/// A history entry's columns as bound for an insert, in [`HISTORY_COLUMNS`] order.
pub(crate) fn history_values(h: &CertificateRecord) -> Result<[i64; 10], Error> {
    Ok([
        sql(h.id.0)?,
        sql(h.user.0)?,
        sql(h.content.0)?,
        sql(h.source.0)?,
        sql(h.source_license.0)?,
        sql(h.destination.0)?,
        sql(h.destination_license.0)?,
        i64::from(h.server.0),
        sql(h.issued_at.0)?,
        sql(h.expires_at.0)?,
    ])
}
