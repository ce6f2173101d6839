//! A client's registration with the next leaf of a counter: the one counter, or a license
//! server's range (issue 29).

use treecast_keytree::LeafAllocator;
use treecast_protocol::Error;
use treecast_protocol::ids::{ClientId, UserId};

use super::super::driver::{Driver, Kind, Lock, Value};
use super::super::steps::{int, key, user_exists};
use super::super::{CLIENT_COLUMNS, un};
use super::SqlRegistry;
use crate::{ClientBuilder, ClientRecord};

impl<D: Driver> SqlRegistry<D> {
    /// Registers a client with the next leaf of the one counter (`next_leaf`), or of the
    /// counter of `range` (`next_leaf@START`, issue 29: a license server's own leaves). A
    /// range's registration is [`Kind::Durable`]: SQLite's leaf reserve covers the one counter
    /// only, and a leaf handed out twice after a power loss would give two devices one key set.
    pub(super) fn add_client_from(
        &self,
        user: UserId,
        limit: usize,
        range: Option<core::ops::Range<u64>>,
        build: ClientBuilder<'_>,
    ) -> Result<ClientRecord, Error> {
        let (kind, counter) = match &range {
            None => (Kind::Register, "next_leaf".to_owned()),
            Some(r) => (Kind::Durable, format!("next_leaf@{}", r.start)),
        };
        self.driver.run(kind, &mut |tx| {
            // The user's row lock serializes its registrations, so the limit holds.
            if !user_exists(tx, user, self.driver.lock(Lock::Update))? {
                return Err(Error::UserNotFound(user));
            }
            let active = tx
                .one(
                    "SELECT count(*) FROM clients WHERE user_id = $1 AND NOT revoked",
                    &[key(user.0)],
                )?
                .int(0)?;
            if un(active)? >= limit as u64 {
                return Err(Error::ClientLimit(user));
            }
            // One counter or ranges of one length, never both: a process that registers from
            // the one counter (a flat key file, a forgotten split) or with another split (an
            // edited key file) would hand out leaves another process hands out too.
            let ranges = tx
                .query("SELECT value FROM meta WHERE key = 'leaf_range_len'", &[])?
                .first()
                .map(|row| row.int(0))
                .transpose()?;
            match &range {
                None if ranges.is_some() => {
                    return Err(Error::Storage(
                        "this registry hands out leaves by license server (a key file with a \
                         `split` line): register with that key file"
                            .into(),
                    ));
                }
                None => {}
                Some(r) => {
                    let len = i64::try_from(r.end - r.start)
                        .map_err(|_| Error::Internal("leaf range length"))?;
                    let mut stored = ranges;
                    if stored.is_none() {
                        // The first range's registration, maybe in several processes at once:
                        // the one counter's row lock orders them, and each looks again once it
                        // holds it. No client may have come from the one counter before.
                        tx.one(
                            &format!(
                                "SELECT value FROM meta WHERE key = 'next_leaf'{}",
                                self.driver.lock(Lock::Update)
                            ),
                            &[],
                        )?;
                        stored = tx
                            .query("SELECT value FROM meta WHERE key = 'leaf_range_len'", &[])?
                            .first()
                            .map(|row| row.int(0))
                            .transpose()?;
                        if stored.is_none()
                            && tx.one("SELECT count(*) FROM clients", &[])?.int(0)? > 0
                        {
                            return Err(Error::Storage(
                                "this registry handed out leaves from one counter (a key file \
                                 without `split`): it cannot split them between license \
                                 servers"
                                    .into(),
                            ));
                        }
                    }
                    if stored.is_some_and(|stored| stored != len) {
                        return Err(Error::Storage(
                            "this registry's leaves are split between license servers \
                             differently (the key file's `split` line differs from the one \
                             that registered before)"
                                .into(),
                        ));
                    }
                    tx.execute(
                        "INSERT INTO meta (key, value) VALUES ('leaf_range_len', $1) \
                         ON CONFLICT DO NOTHING",
                        &[Value::Int(len)],
                    )?;
                    // The counter's row lock (below) serializes registrations across
                    // processes until the commit.
                    tx.execute(
                        "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                        &[Value::Text(&counter), int(r.start)?],
                    )?;
                }
            }
            let next = tx
                .one(
                    &format!(
                        "SELECT value FROM meta WHERE key = $1{}",
                        self.driver.lock(Lock::Update)
                    ),
                    &[Value::Text(&counter)],
                )?
                .int(0)?;
            let next = un(next)?;
            if range.as_ref().is_some_and(|r| next >= r.end) {
                return Err(Error::KeyTree(treecast_keytree::Error::TreeFull));
            }
            let mut leaves = LeafAllocator::resume(self.height, next)?;
            let leaf = leaves.allocate()?;
            // A client's ID is its leaf plus one, as in the memory store: leaves are never
            // handed out twice, so neither are client IDs.
            let id = ClientId(u64::from(leaf.get()) + 1);
            let record = build(id, leaf)?;
            if record.id != id || record.leaf != leaf || record.user != user {
                return Err(Error::Internal("client builder changed the IDs"));
            }
            tx.execute(
                &format!(
                    "INSERT INTO clients ({CLIENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, false, $7)"
                ),
                &[
                    int(id.0)?,
                    int(user.0)?,
                    Value::Int(i64::from(leaf.get())),
                    Value::Int(i64::from(record.server.0)),
                    Value::Bytes(&record.certificate),
                    Value::Bytes(&record.public_key),
                    Value::Bytes(&record.tag),
                ],
            )?;
            tx.execute(
                "UPDATE meta SET value = $1 WHERE key = $2",
                &[int(leaves.next_leaf())?, Value::Text(&counter)],
            )?;
            Ok(record)
        })
    }
}
