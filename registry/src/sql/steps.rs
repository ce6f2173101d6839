//! The steps the registry's queries are made of, on any driver: reading a row as a record,
//! binding a record's values, and the statements several changes share.

use treecast_keytree::TreeHeight;
use treecast_protocol::Error;
use treecast_protocol::ids::{ClientId, ContentId, LicenseId, UserId};

use super::driver::{Row, Tx, Value};
use super::{
    ClientRow, LEDGER_COLUMNS, LICENSE_COLUMNS, RECORD_REQUEST, key_id_of, ledger_values,
    license_record, license_values, lookup, nonce_bits, sql, state_code, terms_bytes, un,
};
use crate::billing::LedgerEntry;
use crate::{ClientRecord, ContentRecord, LicenseRecord, LoanLimit, RequestTag};

pub(super) fn int(v: u64) -> Result<Value<'static>, Error> {
    Ok(Value::Int(sql(v)?))
}

pub(super) fn key(v: u64) -> Value<'static> {
    Value::Int(lookup(v))
}

pub(super) fn client_record(mut r: Row, height: TreeHeight) -> Result<ClientRecord, Error> {
    ClientRow(
        r.int(0)?,
        r.int(1)?,
        r.int(2)?,
        r.int(3)?,
        r.bytes(4)?,
        r.bytes(5)?,
        r.flag(6)?,
        r.bytes(7)?,
    )
    .into_record(height)
}

pub(super) fn license_of(mut r: Row) -> Result<LicenseRecord, Error> {
    let mut v = [None; 9];
    for (i, slot) in v.iter_mut().enumerate() {
        *slot = r.opt_int(i)?;
    }
    license_record((v, r.bytes(9)?, r.opt_bytes(10)?))
}

pub(super) fn ints<const N: usize>(r: &Row) -> Result<[i64; N], Error> {
    let mut v = [0i64; N];
    for (i, slot) in v.iter_mut().enumerate() {
        *slot = r.int(i)?;
    }
    Ok(v)
}

pub(super) fn content_of(
    id: ContentId,
    key_id: i64,
    envelope: Vec<u8>,
) -> Result<ContentRecord, Error> {
    Ok(ContentRecord::new(
        id,
        key_id_of(key_id)?,
        envelope
            .try_into()
            .map_err(|_| Error::Storage("bad envelope length".into()))?,
    ))
}

pub(super) fn ids<T>(
    tx: &mut dyn Tx,
    query: &str,
    of: u64,
    wrap: impl Fn(u64) -> T,
) -> Result<Vec<T>, Error> {
    tx.query(query, &[key(of)])?
        .iter()
        .map(|r| Ok(wrap(un(r.int(0)?)?)))
        .collect()
}

pub(super) fn meta(tx: &mut dyn Tx, name: &str) -> Result<u64, Error> {
    un(tx
        .one(
            "SELECT value FROM meta WHERE key = $1",
            &[Value::Text(name)],
        )?
        .int(0)?)
}

pub(super) fn user_exists(tx: &mut dyn Tx, user: UserId, lock: &str) -> Result<bool, Error> {
    Ok(tx
        .row(
            &format!("SELECT 1 FROM users WHERE id = $1{lock}"),
            &[key(user.0)],
        )?
        .is_some())
}

pub(super) fn content_exists(tx: &mut dyn Tx, id: ContentId) -> Result<bool, Error> {
    Ok(tx
        .row("SELECT 1 FROM contents WHERE id = $1", &[key(id.0)])?
        .is_some())
}

pub(super) fn license_in(
    tx: &mut dyn Tx,
    id: LicenseId,
    lock: &str,
) -> Result<Option<LicenseRecord>, Error> {
    tx.row(
        &format!("SELECT {LICENSE_COLUMNS} FROM licenses WHERE id = $1{lock}"),
        &[key(id.0)],
    )?
    .map(license_of)
    .transpose()
}

pub(super) fn insert_license(tx: &mut dyn Tx, l: &LicenseRecord) -> Result<(), Error> {
    let (v, tag) = license_values(l)?;
    let terms = terms_bytes(l.terms.as_ref());
    let mut params: Vec<Value<'_>> = v.iter().map(|x| Value::from(*x)).collect();
    params.push(Value::Bytes(tag));
    params.push(terms.as_deref().map_or(Value::NullBytes, Value::Bytes));
    tx.execute(
        &format!(
            "INSERT INTO licenses ({LICENSE_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        ),
        &params,
    )?;
    Ok(())
}

/// How many active licenses of `content` count against `limit`: the active licenses with
/// terms, read and decoded (terms are stored as their encoding).
pub(super) fn active_loans(
    tx: &mut dyn Tx,
    content: ContentId,
    limit: &LoanLimit,
) -> Result<usize, Error> {
    let rows = tx.query(
        "SELECT terms FROM licenses WHERE content_id = $1 AND state = 0 AND terms IS NOT NULL",
        &[key(content.0)],
    )?;
    let mut count = 0;
    for mut row in rows {
        if let Some(bytes) = row.opt_bytes(0)?
            && limit.counts(&super::stored_terms(&bytes)?)
        {
            count += 1;
        }
    }
    Ok(count)
}

/// Writes a renewed or returned license's terms, issue time, state and tag (the only fields
/// those change).
pub(super) fn update_changed(tx: &mut dyn Tx, l: &LicenseRecord) -> Result<(), Error> {
    let terms = terms_bytes(l.terms.as_ref());
    let updated = tx.execute(
        "UPDATE licenses SET terms = $2, issued_at = $3, state = $4, tag = $5 WHERE id = $1",
        &[
            key(l.id.0),
            terms.as_deref().map_or(Value::NullBytes, Value::Bytes),
            Value::Int(sql(l.issued_at.0)?),
            Value::Int(state_code(l.state)),
            Value::Bytes(&l.tag),
        ],
    )?;
    if updated != 1 {
        return Err(Error::Internal("a changed license vanished"));
    }
    Ok(())
}

pub(super) fn bill(tx: &mut dyn Tx, e: &LedgerEntry) -> Result<(), Error> {
    let v = ledger_values(e)?;
    let params = v.map(Value::Int);
    tx.execute(
        &format!("INSERT INTO ledger ({LEDGER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"),
        &params,
    )?;
    tx.execute(
        "UPDATE users SET total = total + $2 WHERE id = $1",
        &[params[0], params[4]],
    )?;
    Ok(())
}

/// Records a request in the caller's transaction, with what it produced.
///
/// # Errors
/// [`Error::RequestReplayed`] when the client already used the nonce.
pub(super) fn record_request(
    tx: &mut dyn Tx,
    client: ClientId,
    user: UserId,
    request: RequestTag,
    answer: u64,
) -> Result<(), Error> {
    let inserted = tx.execute(
        RECORD_REQUEST,
        &[
            int(client.0)?,
            Value::Int(nonce_bits(request.nonce)),
            int(user.0)?,
            Value::Bytes(&request.digest),
            int(answer)?,
        ],
    )?;
    if inserted == 0 {
        return Err(Error::RequestReplayed);
    }
    Ok(())
}

/// The parameters of a driver's one-statement supply ([`Driver::supply_statement`]): the
/// license's ten first columns in [`LICENSE_COLUMNS`] order, then the request's nonce and
/// digest, the charge's kind, amount and time, then the license's terms (`terms`, from
/// [`terms_bytes`]).
pub(super) fn supply_params<'a>(
    license: &'a LicenseRecord,
    request: &'a RequestTag,
    entry: &LedgerEntry,
    terms: Option<&'a [u8]>,
) -> Result<Vec<Value<'a>>, Error> {
    let (v, tag) = license_values(license)?;
    let [_, kind, _, _, amount, at] = ledger_values(entry)?;
    let mut params: Vec<Value<'a>> = v.iter().map(|x| Value::from(*x)).collect();
    params.extend([
        Value::Bytes(tag),
        Value::Int(nonce_bits(request.nonce)),
        Value::Bytes(&request.digest),
        Value::Int(kind),
        Value::Int(amount),
        Value::Int(at),
        terms.map_or(Value::NullBytes, Value::Bytes),
    ]);
    Ok(params)
}
