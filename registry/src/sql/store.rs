//! The registry on a SQL store, once for SQLite and PostgreSQL: every query and every check of
//! every registry change. A driver ([`Driver`]) only runs transactions and statements and hands
//! out IDs; the dialects' differences are in the drivers, each a few lines (`docs/storage.md`).

use treecast_keytree::{LeafIndex, TreeHeight};
use treecast_protocol::Error;
use treecast_protocol::ServerId;
use treecast_protocol::binding::KeyFingerprint;
use treecast_protocol::ids::{CertificateId, ClientId, ContentId, LicenseId, UserId};

use super::driver::{Driver, Kind, Lock, NewId, Tx, Value};
use super::steps::{
    active_loans, bill, client_record, content_exists, content_of, ids, insert_license, int, ints,
    key, license_in, license_of, meta, record_request, supply_params, update_changed, user_exists,
};
use super::{
    CLIENT_COLUMNS, HISTORY_COLUMNS, KEEP_EKB, KEEP_SERVER_KEYS, LEDGER_COLUMNS, LICENSE_COLUMNS,
    SERVER_KEY_LISTS, STORED_EKB, USED_REQUEST, history_record, history_values, ledger_entry,
    nonce_bits, state_code, stored_leaf, un, used_request,
};
use crate::billing::{Charge, LedgerEntry};
use crate::binding::{RegistryId, StoreBinding};
use crate::scan::{self, Page, queries};
use crate::{
    CertificateRecord, ClientBuilder, ClientRecord, ClientSummary, ContentBuilder, ContentRecord,
    LicenseBuilder, LicenseChanger, LicenseRecord, LicenseState, LoanLimit, MoveBuilder,
    MoveIntent, MoveRows, Registry, RequestTag, Revoker, UsedRequest, UserRows, check_held,
    check_move, check_revoked,
};

mod leaves;

/// A registry in a SQL database: [`SqliteRegistry`](crate::SqliteRegistry) and
/// [`PostgresRegistry`](crate::PostgresRegistry) are its two drivers' registries.
pub struct SqlRegistry<D> {
    pub(crate) driver: D,
    pub(crate) height: TreeHeight,
}

impl<D: core::fmt::Debug> core::fmt::Debug for SqlRegistry<D> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SqlRegistry")
            .field("driver", &self.driver)
            .field("height", &self.height)
            .finish()
    }
}

impl<D> SqlRegistry<D> {
    /// The tree height this registry serves.
    pub const fn height(&self) -> TreeHeight {
        self.height
    }
}

/// The three reads of a license supply in one statement (`$1` client, `$2` content): the
/// client's columns (`NULL`s for no such client), the content's key ID and envelope (`NULL`s),
/// the current epoch.
const SUPPLY_READS: &str =
    "SELECT c.id, c.user_id, c.leaf, c.server, c.certificate, c.public_key, c.revoked, c.tag,
        (SELECT key_id FROM contents WHERE id = $2), (SELECT envelope FROM contents WHERE id = $2),
        (SELECT value FROM meta WHERE key = 'epoch')
    FROM (SELECT CAST($1 AS BIGINT) AS wanted) w LEFT JOIN clients c ON c.id = w.wanted";

impl<D: Driver> SqlRegistry<D> {
    fn read<T>(&self, mut f: impl FnMut(&mut dyn Tx) -> Result<T, Error>) -> Result<T, Error> {
        self.driver.run(Kind::Read, &mut f)
    }

    fn client_in(
        &self,
        tx: &mut dyn Tx,
        id: ClientId,
        lock: Lock,
    ) -> Result<Option<ClientRecord>, Error> {
        tx.row(
            &format!(
                "SELECT {CLIENT_COLUMNS} FROM clients WHERE id = $1{}",
                self.driver.lock(lock)
            ),
            &[key(id.0)],
        )?
        .map(|r| client_record(r, self.height))
        .transpose()
    }

    /// Why a one-statement supply wrote nothing, in the order the transaction checks: read
    /// after the fact (a report, not a decision: nothing was written either way).
    fn refused_supply(&self, license: &LicenseRecord) -> Error {
        let reasons = || -> Result<Error, Error> {
            let record = self
                .client(license.client)?
                .ok_or(Error::ClientNotFound(license.client))?;
            if record.revoked {
                return Ok(Error::ClientRevoked(license.client));
            }
            if license.user != record.user {
                return Ok(Error::Internal("license builder changed the user"));
            }
            if self.content(license.content)?.is_none() {
                return Ok(Error::ContentNotFound(license.content));
            }
            Ok(Error::RequestReplayed)
        };
        reasons().unwrap_or_else(|e| e)
    }

    /// One page of a scan (`scan::by_pages`), in one snapshot.
    fn page(&self, after: i64, size: usize) -> Result<Page, Error> {
        let size_sql = i64::try_from(size).map_err(|_| Error::Internal("page size"))?;
        self.driver.run(Kind::Snapshot, &mut |tx| {
            let users = tx
                .query(queries::USERS, &[Value::Int(after), Value::Int(size_sql)])?
                .iter()
                .map(|r| Ok((UserId(un(r.int(0)?)?), un(r.int(1)?)?)))
                .collect::<Result<Vec<_>, Error>>()?;
            let bounds = [Value::Int(after), Value::Int(scan::upper(&users, size))];
            let mut rows = |table: &str| tx.query(&queries::rows_of(table), &bounds);
            let clients = rows("clients")?
                .into_iter()
                .map(|r| client_record(r, self.height))
                .collect::<Result<_, Error>>()?;
            let licenses = rows("licenses")?
                .into_iter()
                .map(license_of)
                .collect::<Result<_, Error>>()?;
            let history = rows("history")?
                .iter()
                .map(|r| history_record(ints(r)?))
                .collect::<Result<_, Error>>()?;
            let ledger = rows("ledger")?
                .iter()
                .map(|r| ledger_entry(ints(r)?))
                .collect::<Result<_, Error>>()?;
            Ok(Page {
                users,
                clients,
                licenses,
                history,
                ledger,
            })
        })
    }
}

impl<D: Driver> Registry for SqlRegistry<D> {
    fn bind(&self, keys: &KeyFingerprint) -> Result<StoreBinding, Error> {
        // Read first: a bound store is not written (a read-only connection binds nothing).
        if let Some(bound) = self.read(binding_in)? {
            return Ok(bound);
        }
        // Made here, kept only by the first process to bind the store.
        let candidate = RegistryId::random()?;
        self.driver.run(Kind::Durable, &mut |tx| {
            for (name, value) in [
                ("registry_id", &candidate.as_bytes()[..]),
                ("keys", &keys.as_bytes()[..]),
            ] {
                tx.execute(
                    "INSERT INTO binding (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                    &[Value::Text(name), Value::Bytes(value)],
                )?;
            }
            binding_in(tx)?.ok_or_else(|| Error::Storage("the binding was not written".into()))
        })
    }

    fn add_user(&self) -> Result<UserId, Error> {
        self.driver.run(Kind::Durable, &mut |tx| {
            let id = self.driver.new_id(tx, NewId::User)?;
            tx.execute("INSERT INTO users (id) VALUES ($1)", &[int(id)?])?;
            Ok(UserId(id))
        })
    }

    fn has_user(&self, user: UserId) -> Result<bool, Error> {
        self.read(|tx| user_exists(tx, user, ""))
    }

    fn replace_envelope(&self, old: &ContentRecord, new: &ContentRecord) -> Result<bool, Error> {
        if old.id != new.id {
            return Err(Error::Internal("an envelope replaced by another content's"));
        }
        let changed = self.driver.run(Kind::Durable, &mut |tx| {
            tx.execute(
                "UPDATE contents SET key_id = $1, envelope = $2 \
                 WHERE id = $3 AND key_id = $4 AND envelope = $5",
                &[
                    Value::Int(i64::from(new.key_id)),
                    Value::Bytes(&new.envelope),
                    key(old.id.0),
                    Value::Int(i64::from(old.key_id)),
                    Value::Bytes(&old.envelope),
                ],
            )
        })?;
        Ok(changed == 1)
    }

    fn credential_epoch(&self, user: UserId) -> Result<Option<u64>, Error> {
        self.read(|tx| {
            tx.row(
                "SELECT credential_epoch FROM users WHERE id = $1",
                &[key(user.0)],
            )?
            .map(|row| un(row.int(0)?))
            .transpose()
        })
    }

    fn rotate_credential(&self, user: UserId) -> Result<u64, Error> {
        self.driver.run(Kind::Durable, &mut |tx| {
            let rows = tx.query(
                "UPDATE users SET credential_epoch = credential_epoch + 1 \
                 WHERE id = $1 AND credential_epoch < 9223372036854775807 \
                 RETURNING credential_epoch",
                &[key(user.0)],
            )?;
            let row = rows.first().ok_or(Error::UserNotFound(user))?;
            un(row.int(0)?)
        })
    }

    fn add_client(
        &self,
        user: UserId,
        limit: usize,
        build: ClientBuilder<'_>,
    ) -> Result<ClientRecord, Error> {
        self.add_client_from(user, limit, None, build)
    }

    fn supports_leaf_ranges(&self) -> bool {
        true
    }

    fn add_client_in(
        &self,
        user: UserId,
        limit: usize,
        leaves: core::ops::Range<u64>,
        build: ClientBuilder<'_>,
    ) -> Result<ClientRecord, Error> {
        if leaves.start >= leaves.end || leaves.end > self.height.leaf_count() {
            return Err(Error::Internal("a leaf range outside the tree"));
        }
        self.add_client_from(user, limit, Some(leaves), build)
    }

    fn client(&self, id: ClientId) -> Result<Option<ClientRecord>, Error> {
        self.read(|tx| self.client_in(tx, id, Lock::None))
    }

    fn supply_reads(
        &self,
        client: ClientId,
        content: ContentId,
    ) -> Result<(Option<ClientRecord>, Option<ContentRecord>, u64), Error> {
        self.read(|tx| {
            let mut row = tx.one(SUPPLY_READS, &[key(client.0), key(content.0)])?;
            let content = match (row.opt_int(8)?, row.opt_bytes(9)?) {
                (Some(key_id), Some(envelope)) => Some(content_of(content, key_id, envelope)?),
                _ => None,
            };
            let epoch = un(row.int(10)?)?;
            let client = match row.opt_int(0)? {
                Some(_) => Some(client_record(row, self.height)?),
                None => None,
            };
            Ok((client, content, epoch))
        })
    }

    fn client_by_leaf(&self, leaf: LeafIndex) -> Result<Option<ClientId>, Error> {
        self.read(|tx| {
            tx.row(
                "SELECT id FROM clients WHERE leaf = $1",
                &[Value::Int(i64::from(leaf.get()))],
            )?
            .map(|r| Ok(ClientId(un(r.int(0)?)?)))
            .transpose()
        })
    }

    fn clients_of(&self, user: UserId) -> Result<Vec<ClientId>, Error> {
        self.read(|tx| {
            ids(
                tx,
                "SELECT id FROM clients WHERE user_id = $1 ORDER BY id",
                user.0,
                ClientId,
            )
        })
    }

    fn revoke_client(
        &self,
        id: ClientId,
        revoke: Revoker<'_>,
    ) -> Result<(ClientRecord, u64), Error> {
        self.driver.run(Kind::Durable, &mut |tx| {
            let client = self
                .client_in(tx, id, Lock::Update)?
                .ok_or(Error::ClientNotFound(id))?;
            if client.revoked {
                return Err(Error::ClientRevoked(id));
            }
            let epoch = un(tx
                .one(
                    "UPDATE meta SET value = value + 1 WHERE key = 'epoch' RETURNING value",
                    &[],
                )?
                .int(0)?)?;
            let revoked = revoke(&client)?;
            check_revoked(&client, &revoked)?;
            tx.execute(
                "UPDATE clients SET revoked = true, tag = $2 WHERE id = $1",
                &[int(id.0)?, Value::Bytes(&revoked.tag)],
            )?;
            Ok((revoked, epoch))
        })
    }

    fn revoked_leaves(&self) -> Result<Vec<u32>, Error> {
        self.read(|tx| {
            tx.query("SELECT leaf FROM clients WHERE revoked ORDER BY leaf", &[])?
                .iter()
                .map(|r| u32::try_from(r.int(0)?).map_err(|_| Error::Storage("bad leaf".into())))
                .collect()
        })
    }

    fn stored_ekb(&self, epoch: u64) -> Result<Option<Vec<u8>>, Error> {
        self.read(|tx| {
            tx.row(STORED_EKB, &[key(epoch)])?
                .map(|mut r| r.bytes(0))
                .transpose()
        })
    }

    fn keep_ekb(&self, epoch: u64, ekb: &[u8]) -> Result<Vec<u8>, Error> {
        self.driver.run(Kind::Write, &mut |tx| {
            tx.execute(KEEP_EKB, &[int(epoch)?, Value::Bytes(ekb)])?;
            tx.one(STORED_EKB, &[int(epoch)?])?.bytes(0)
        })
    }

    fn server_key_lists(&self) -> Result<Vec<(ServerId, u64, Vec<u8>)>, Error> {
        self.read(|tx| {
            tx.query(SERVER_KEY_LISTS, &[])?
                .iter_mut()
                .map(|r| {
                    let id = u32::try_from(r.int(0)?)
                        .map_err(|_| Error::Storage("bad server id".into()))?;
                    let sequence = un(r.int(1)?)?;
                    Ok((ServerId(id), sequence, r.bytes(2)?))
                })
                .collect()
        })
    }

    fn keep_server_key_list(
        &self,
        server: ServerId,
        sequence: u64,
        list: &[u8],
    ) -> Result<bool, Error> {
        self.driver.run(Kind::Durable, &mut |tx| {
            let stored = tx.execute(
                KEEP_SERVER_KEYS,
                &[
                    Value::Int(i64::from(server.0)),
                    int(sequence)?,
                    Value::Bytes(list),
                ],
            )?;
            Ok(stored == 1)
        })
    }

    fn probe(&self, depth: crate::Probe) -> Result<(), Error> {
        self.driver.probe(depth)?;
        self.epoch().map(|_| ())
    }

    fn epoch(&self) -> Result<u64, Error> {
        self.read(|tx| meta(tx, "epoch"))
    }

    fn add_content(&self, build: ContentBuilder<'_>) -> Result<ContentRecord, Error> {
        self.driver.run(Kind::Durable, &mut |tx| {
            let id = ContentId(self.driver.new_id(tx, NewId::Content)?);
            let record = build(id)?;
            if record.id != id {
                return Err(Error::Internal("content builder changed the ID"));
            }
            tx.execute(
                "INSERT INTO contents (id, key_id, envelope) VALUES ($1, $2, $3)",
                &[
                    int(id.0)?,
                    Value::Int(i64::from(record.key_id)),
                    Value::Bytes(&record.envelope),
                ],
            )?;
            Ok(record)
        })
    }

    fn content(&self, id: ContentId) -> Result<Option<ContentRecord>, Error> {
        self.read(|tx| {
            tx.row(
                "SELECT key_id, envelope FROM contents WHERE id = $1",
                &[key(id.0)],
            )?
            .map(|mut r| content_of(id, r.int(0)?, r.bytes(1)?))
            .transpose()
        })
    }

    fn contents(&self) -> Result<Vec<ContentRecord>, Error> {
        self.read(|tx| {
            tx.query("SELECT id, key_id, envelope FROM contents ORDER BY id", &[])?
                .into_iter()
                .map(|mut r| content_of(ContentId(un(r.int(0)?)?), r.int(1)?, r.bytes(2)?))
                .collect()
        })
    }

    fn record_download(&self, user: UserId, content: ContentId) -> Result<(), Error> {
        self.driver.run(Kind::Write, &mut |tx| {
            if !content_exists(tx, content)? {
                return Err(Error::ContentNotFound(content));
            }
            if !user_exists(tx, user, "")? {
                return Err(Error::UserNotFound(user));
            }
            tx.execute(
                "INSERT INTO downloads (user_id, content_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[int(user.0)?, int(content.0)?],
            )?;
            Ok(())
        })
    }

    fn add_license(
        &self,
        client: ClientId,
        content: ContentId,
        request: RequestTag,
        charge: Charge,
        loans: Option<LoanLimit>,
        build: LicenseBuilder<'_>,
    ) -> Result<(LicenseRecord, LedgerEntry), Error> {
        // Built (and signed) before the change, so that threads sign in parallel; the checks
        // run inside it.
        let id = LicenseId(self.driver.license_id()?);
        let license = build(id)?;
        if license.id != id || license.client != client || license.content != content {
            return Err(Error::Internal("license builder changed the IDs"));
        }
        let entry = LedgerEntry::new(license.user, content, id.0, charge);
        if let Some(statement) = self.driver.supply_statement()
            && loans.is_none()
        {
            // Every check and every row in one statement, or nothing. (A loan under a limit
            // takes the path below, which locks the content's row to count.)
            let terms = super::terms_bytes(license.terms.as_ref());
            let params = supply_params(&license, &request, &entry, terms.as_deref())?;
            let supplied = self
                .driver
                .run(Kind::Alone, &mut |tx| tx.execute(statement, &params))?;
            return if supplied == 1 {
                Ok((license, entry))
            } else {
                Err(self.refused_supply(&license))
            };
        }
        self.driver.run(Kind::Write, &mut |tx| {
            let record = self
                .client_in(tx, client, Lock::Share)?
                .ok_or(Error::ClientNotFound(client))?;
            if record.revoked {
                return Err(Error::ClientRevoked(client));
            }
            if license.user != record.user {
                return Err(Error::Internal("license builder changed the user"));
            }
            if !content_exists(tx, content)? {
                return Err(Error::ContentNotFound(content));
            }
            if let Some(limit) = &loans {
                // The content's row locked until the commit: loans of one content, from any
                // process, are counted one at a time.
                tx.row(
                    &format!(
                        "SELECT id FROM contents WHERE id = $1{}",
                        self.driver.lock(Lock::Update)
                    ),
                    &[key(content.0)],
                )?;
                if active_loans(tx, content, limit)? >= limit.copies as usize {
                    return Err(Error::NoCopyAvailable(content));
                }
            }
            record_request(tx, client, record.user, request, id.0)?;
            insert_license(tx, &license)?;
            bill(tx, &entry)?;
            Ok((license.clone(), entry))
        })
    }

    fn license(&self, id: LicenseId) -> Result<Option<LicenseRecord>, Error> {
        self.read(|tx| license_in(tx, id, ""))
    }

    fn change_license(
        &self,
        license: LicenseId,
        client: ClientId,
        request: RequestTag,
        charge: Option<Charge>,
        build: LicenseChanger<'_>,
    ) -> Result<(LicenseRecord, Option<LedgerEntry>), Error> {
        self.driver.run(Kind::Write, &mut |tx| {
            // The license first, then the client: the lock order of a move.
            let current = license_in(tx, license, self.driver.lock(Lock::Update))?;
            let holder = self
                .client_in(tx, client, Lock::Share)?
                .ok_or(Error::ClientNotFound(client))?;
            if holder.revoked {
                return Err(Error::ClientRevoked(client));
            }
            check_held(license, current.as_ref(), client, holder.user)?;
            let current = current.ok_or(Error::LicenseNotFound(license))?;
            let record = build(&current)?;
            if !crate::allowed_change(&current, &record) {
                return Err(Error::Internal(
                    "a license change beyond a renewal or a return",
                ));
            }
            let entry =
                charge.map(|c| LedgerEntry::new(holder.user, current.content, license.0, c));
            record_request(tx, client, holder.user, request, license.0)?;
            update_changed(tx, &record)?;
            if let Some(entry) = &entry {
                bill(tx, entry)?;
            }
            Ok((record, entry))
        })
    }

    fn used_request(&self, client: ClientId, nonce: u64) -> Result<Option<UsedRequest>, Error> {
        self.read(|tx| {
            tx.row(
                USED_REQUEST,
                &[key(client.0), Value::Int(nonce_bits(nonce))],
            )?
            .map(|mut r| used_request(r.bytes(0)?, r.int(1)?))
            .transpose()
        })
    }

    fn commit_move(
        &self,
        intent: &MoveIntent,
        charge: Charge,
        build: MoveBuilder<'_>,
    ) -> Result<(LicenseRecord, CertificateRecord, LedgerEntry), Error> {
        self.driver.run(Kind::Write, &mut |tx| {
            // The license first, then both clients: one lock order for every move.
            let license = license_in(tx, intent.license, self.driver.lock(Lock::Update))?;
            let source = self.client_in(tx, intent.source, Lock::Share)?;
            let destination = self.client_in(tx, intent.destination, Lock::Share)?;
            let ctx = check_move(intent, source, license, destination)?;
            let certificate_id = CertificateId(self.driver.new_id(tx, NewId::Certificate)?);
            let license_id = LicenseId(self.driver.new_id(tx, NewId::License)?);
            record_request(
                tx,
                intent.source,
                ctx.source.user,
                intent.request,
                certificate_id.0,
            )?;
            let rows = build(&ctx, certificate_id, license_id)?;
            rows.check(&ctx, certificate_id, license_id)?;
            let MoveRows {
                moved,
                license: new_license,
                history,
            } = rows;
            tx.execute(
                "UPDATE licenses SET state = $2, tag = $3 WHERE id = $1",
                &[
                    int(intent.license.0)?,
                    Value::Int(state_code(LicenseState::Moved)),
                    Value::Bytes(&moved.tag),
                ],
            )?;
            insert_license(tx, &new_license)?;
            tx.execute(
                &format!(
                    "INSERT INTO history ({HISTORY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                ),
                &history_values(&history)?.map(Value::Int),
            )?;
            let entry = LedgerEntry::new(
                ctx.source.user,
                ctx.license.content,
                certificate_id.0,
                charge,
            );
            bill(tx, &entry)?;
            Ok((new_license, history, entry))
        })
    }

    fn certificate_history(&self) -> Result<Vec<CertificateRecord>, Error> {
        self.read(|tx| {
            tx.query(
                &format!("SELECT {HISTORY_COLUMNS} FROM history ORDER BY id"),
                &[],
            )?
            .iter()
            .map(|r| history_record(ints(r)?))
            .collect()
        })
    }

    fn ledger(&self) -> Result<Vec<LedgerEntry>, Error> {
        self.read(|tx| {
            tx.query(
                &format!("SELECT {LEDGER_COLUMNS} FROM ledger ORDER BY seq"),
                &[],
            )?
            .iter()
            .map(|r| ledger_entry(ints(r)?))
            .collect()
        })
    }

    fn user_total(&self, user: UserId) -> Result<u64, Error> {
        self.read(|tx| {
            let row = tx.row("SELECT total FROM users WHERE id = $1", &[key(user.0)])?;
            un(row.ok_or(Error::UserNotFound(user))?.int(0)?)
        })
    }

    fn licenses_of_content(&self, content: ContentId) -> Result<Vec<LicenseId>, Error> {
        self.read(|tx| {
            ids(
                tx,
                "SELECT id FROM licenses WHERE content_id = $1 ORDER BY id",
                content.0,
                LicenseId,
            )
        })
    }

    fn contents_of_user(&self, user: UserId) -> Result<Vec<ContentId>, Error> {
        self.read(|tx| {
            ids(
                tx,
                "SELECT content_id FROM downloads WHERE user_id = $1 ORDER BY content_id",
                user.0,
                ContentId,
            )
        })
    }

    fn licenses_of_user(&self, user: UserId) -> Result<Vec<LicenseId>, Error> {
        self.read(|tx| {
            ids(
                tx,
                "SELECT id FROM licenses WHERE user_id = $1 ORDER BY id",
                user.0,
                LicenseId,
            )
        })
    }

    fn users(&self) -> Result<Vec<(UserId, u64)>, Error> {
        self.read(|tx| {
            tx.query("SELECT id, total FROM users ORDER BY id", &[])?
                .iter()
                .map(|r| Ok((UserId(un(r.int(0)?)?), un(r.int(1)?)?)))
                .collect()
        })
    }

    fn all_clients(&self) -> Result<Vec<ClientRecord>, Error> {
        self.read(|tx| {
            tx.query(
                &format!("SELECT {CLIENT_COLUMNS} FROM clients ORDER BY id"),
                &[],
            )?
            .into_iter()
            .map(|r| client_record(r, self.height))
            .collect()
        })
    }

    fn client_summaries(&self) -> Result<Vec<ClientSummary>, Error> {
        self.read(|tx| {
            tx.query(
                "SELECT id, user_id, leaf, revoked FROM clients ORDER BY id",
                &[],
            )?
            .iter()
            .map(|r| {
                Ok(ClientSummary {
                    id: ClientId(un(r.int(0)?)?),
                    user: UserId(un(r.int(1)?)?),
                    leaf: stored_leaf(r.int(2)?, self.height)?,
                    revoked: r.flag(3)?,
                })
            })
            .collect()
        })
    }

    fn all_licenses(&self) -> Result<Vec<LicenseRecord>, Error> {
        self.read(|tx| {
            tx.query(
                &format!("SELECT {LICENSE_COLUMNS} FROM licenses ORDER BY id"),
                &[],
            )?
            .into_iter()
            .map(license_of)
            .collect()
        })
    }

    fn scan_users(
        &self,
        visit: &mut dyn FnMut(UserRows) -> Result<(), Error>,
    ) -> Result<(), Error> {
        scan::by_pages(|after, size| self.page(after, size), visit)
    }

    fn scan_leaves(
        &self,
        visit: &mut dyn FnMut(LeafIndex, ClientId) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let size = i64::try_from(scan::PAGE_LEAVES).map_err(|_| Error::Internal("page size"))?;
        scan::leaves_by_pages(
            |after| {
                self.read(|tx| {
                    tx.query(queries::LEAVES, &[Value::Int(after), Value::Int(size)])?
                        .iter()
                        .map(|r| {
                            Ok((
                                stored_leaf(r.int(0)?, self.height)?,
                                ClientId(un(r.int(1)?)?),
                            ))
                        })
                        .collect()
                })
            },
            visit,
        )
    }

    fn user_rows(&self, user: UserId) -> Result<Option<UserRows>, Error> {
        let page = self.page(scan::before(user), 1)?;
        Ok(scan::one_user(page, user))
    }
}

/// The store's binding, if it has both of its rows.
fn binding_in(tx: &mut dyn Tx) -> Result<Option<StoreBinding>, Error> {
    let mut stored = |name: &str| -> Result<Option<Vec<u8>>, Error> {
        tx.row(
            "SELECT value FROM binding WHERE name = $1",
            &[Value::Text(name)],
        )?
        .map(|mut r| r.bytes(0))
        .transpose()
    };
    let (Some(registry), Some(keys)) = (stored("registry_id")?, stored("keys")?) else {
        return Ok(None);
    };
    let registry = registry
        .try_into()
        .map_err(|_| Error::Storage("a registry ID is 16 bytes".into()))?;
    let keys = keys
        .try_into()
        .map_err(|_| Error::Storage("a key fingerprint is 32 bytes".into()))?;
    Ok(Some(StoreBinding {
        registry: RegistryId::from_bytes(registry),
        keys: KeyFingerprint::from_bytes(keys),
    }))
}
