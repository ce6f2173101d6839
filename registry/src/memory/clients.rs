//! The memory store's clients: one vector, a client at index `ID − 1`, each in a compact form.
//!
//! Client IDs and leaves are both handed out in order from one counter each, once, and a client
//! is never removed (a revoked one stays), so the IDs are dense: a vector holds them with no
//! hash table around each record and no second table from leaf to client (a client's leaf is its
//! ID minus one, as in every store). A client's certificate repeats its ID, user, leaf, server
//! and public key; what it adds (the tree ID, the issue time and the signature) is kept, and the
//! certificate is encoded again, byte for byte, when the row is read. A certificate that does not
//! decode to this client's fields is kept as it came, so every row reads back as written.

use treecast_keytree::{LeafIndex, TreeId};
use treecast_protocol::Error;
use treecast_protocol::certificate::{ClientCertificateIn, ClientCertificateTbs};
use treecast_protocol::ids::{ClientId, ServerId, UserId};
use treecast_protocol::sign::{SIGNATURE_LEN, Signable};
use treecast_protocol::time::UnixTime;

use crate::{ClientRecord, ClientSummary};

/// A certificate as stored.
#[derive(Debug)]
enum Certificate {
    /// What the certificate adds to the row's own fields.
    Compact {
        tree_id: TreeId,
        issued_at: UnixTime,
        signature: [u8; SIGNATURE_LEN],
    },
    /// Bytes that are not this client's certificate, kept as they came.
    Raw(Box<[u8]>),
}

/// A client row as stored; its ID is its place in the vector.
#[derive(Debug)]
struct Stored {
    user: UserId,
    leaf: LeafIndex,
    server: ServerId,
    public_key: [u8; 32],
    revoked: bool,
    certificate: Certificate,
}

impl Stored {
    fn of(record: ClientRecord) -> Self {
        let certificate = match compact(&record) {
            Some(compact) => compact,
            None => Certificate::Raw(record.certificate.into_boxed_slice()),
        };
        Self {
            user: record.user,
            leaf: record.leaf,
            server: record.server,
            public_key: record.public_key,
            revoked: record.revoked,
            certificate,
        }
    }

    fn summary(&self, id: ClientId) -> ClientSummary {
        ClientSummary {
            id,
            user: self.user,
            leaf: self.leaf,
            revoked: self.revoked,
        }
    }

    fn record(&self, index: usize) -> ClientRecord {
        let leaf = self.leaf;
        let id = ClientId(index as u64 + 1);
        let certificate = match &self.certificate {
            Certificate::Raw(bytes) => bytes.to_vec(),
            Certificate::Compact {
                tree_id,
                issued_at,
                signature,
            } => {
                let tbs = ClientCertificateTbs {
                    server_id: self.server,
                    client_id: id,
                    user_id: self.user,
                    leaf: leaf.get(),
                    tree_id: *tree_id,
                    public_key: self.public_key,
                    issued_at: *issued_at,
                };
                let mut bytes = Vec::with_capacity(ClientCertificateTbs::MAX_LEN);
                tbs.encode(&mut bytes);
                bytes.extend_from_slice(signature);
                bytes
            }
        };
        ClientRecord {
            id,
            user: self.user,
            leaf,
            server: self.server,
            certificate,
            public_key: self.public_key,
            revoked: self.revoked,
            tag: [0; 32],
        }
    }
}

/// The compact form of `record`'s certificate, when it is exactly this client's certificate
/// encoded: it decodes, names this client's fields, and encodes again to the same bytes.
fn compact(record: &ClientRecord) -> Option<Certificate> {
    let decoded = ClientCertificateIn::from_bytes(&record.certificate).ok()?;
    let tbs = decoded.unverified();
    let mine = tbs.server_id == record.server
        && tbs.client_id == record.id
        && tbs.user_id == record.user
        && tbs.leaf == record.leaf.get()
        && tbs.public_key == record.public_key;
    let at = record.certificate.len().checked_sub(SIGNATURE_LEN)?;
    let signature: [u8; SIGNATURE_LEN] = record.certificate.get(at..)?.try_into().ok()?;
    let mut again = Vec::with_capacity(record.certificate.len());
    tbs.encode(&mut again);
    again.extend_from_slice(&signature);
    (mine && again == record.certificate).then_some(Certificate::Compact {
        tree_id: tbs.tree_id,
        issued_at: tbs.issued_at,
        signature,
    })
}

#[derive(Debug, Default)]
pub(super) struct Clients(Vec<Stored>);

/// A client row in its stored form, made ready to be added ([`Clients::push_prepared`]).
#[derive(Debug)]
pub(super) struct Prepared(Stored);

impl Prepared {
    /// The stored form of `record` (its certificate compacted when it can be).
    pub(super) fn of(record: ClientRecord) -> Self {
        Self(Stored::of(record))
    }
}

impl Clients {
    fn index(id: ClientId) -> Option<usize> {
        id.0.checked_sub(1).and_then(|i| usize::try_from(i).ok())
    }

    fn stored(&self, id: ClientId) -> Option<&Stored> {
        self.0.get(Self::index(id)?)
    }

    /// The client `id`, as written.
    pub(super) fn get(&self, id: ClientId) -> Option<ClientRecord> {
        Some(self.stored(id)?.record(Self::index(id)?))
    }

    /// The client `id`'s owner and state, without its certificate.
    pub(super) fn summary(&self, id: ClientId) -> Option<ClientSummary> {
        Some(self.stored(id)?.summary(id))
    }

    /// The user who owns client `id`.
    pub(super) fn user_of(&self, id: ClientId) -> Option<UserId> {
        Some(self.stored(id)?.user)
    }

    /// The client at `leaf`.
    pub(super) fn at_leaf(&self, leaf: u32) -> Option<ClientId> {
        let id = ClientId(u64::from(leaf) + 1);
        self.stored(id).map(|_| id)
    }

    /// The ID the next client gets.
    pub(super) fn next_id(&self) -> ClientId {
        ClientId(self.0.len() as u64 + 1)
    }

    /// Adds the next client.
    ///
    /// # Errors
    /// [`Error::Internal`] when `record` is not the next ID's, or its leaf is not ID − 1.
    pub(super) fn push(&mut self, record: ClientRecord) -> Result<(), Error> {
        let id = record.id;
        self.push_prepared(id, Prepared::of(record))
    }

    /// Adds the next client, `id`, from its row made ready beforehand (off the registry's lock).
    ///
    /// # Errors
    /// [`Error::Internal`] when `id` is not the next ID, or the row's leaf is not ID − 1.
    pub(super) fn push_prepared(&mut self, id: ClientId, row: Prepared) -> Result<(), Error> {
        if id != self.next_id() || u64::from(row.0.leaf.get()) + 1 != id.0 {
            return Err(Error::Internal("clients out of order"));
        }
        self.0.push(row.0);
        Ok(())
    }

    /// Replaces client `record.id`'s row.
    ///
    /// # Errors
    /// [`Error::ClientNotFound`] for an ID that was never handed out; [`Error::Internal`] for a
    /// row whose leaf is not its ID − 1.
    pub(super) fn replace(&mut self, record: ClientRecord) -> Result<(), Error> {
        if u64::from(record.leaf.get()) + 1 != record.id.0 {
            return Err(Error::Internal("a client row with another leaf"));
        }
        let slot = Self::index(record.id)
            .and_then(|i| self.0.get_mut(i))
            .ok_or(Error::ClientNotFound(record.id))?;
        *slot = Stored::of(record);
        Ok(())
    }

    /// Every client, by ID.
    pub(super) fn records(&self) -> impl Iterator<Item = ClientRecord> + '_ {
        self.0.iter().enumerate().map(|(i, c)| c.record(i))
    }

    /// Every client's owner and state, by ID.
    pub(super) fn summaries(&self) -> impl Iterator<Item = ClientSummary> + '_ {
        self.0
            .iter()
            .enumerate()
            .map(|(i, c)| c.summary(ClientId(i as u64 + 1)))
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;

    use super::*;

    fn record(id: u64, certificate: impl FnOnce(&ClientRecord) -> Vec<u8>) -> ClientRecord {
        let key = SigningKey::from_bytes(&[id as u8; 32]);
        let mut r = ClientRecord {
            id: ClientId(id),
            user: UserId(7),
            leaf: LeafIndex::new(
                u32::try_from(id - 1).unwrap(),
                treecast_keytree::TreeHeight::new(16).unwrap(),
            )
            .unwrap(),
            server: ServerId(2),
            certificate: Vec::new(),
            public_key: key.verifying_key().to_bytes(),
            revoked: false,
            tag: [0; 32],
        };
        r.certificate = certificate(&r);
        r
    }

    fn signed(r: &ClientRecord, client: ClientId) -> Vec<u8> {
        let key = SigningKey::from_bytes(&[1; 32]);
        ClientCertificateTbs {
            server_id: r.server,
            client_id: client,
            user_id: r.user,
            leaf: r.leaf.get(),
            tree_id: TreeId(5),
            public_key: r.public_key,
            issued_at: UnixTime(1_800_000_000),
        }
        .sign(&key)
        .as_bytes()
        .to_vec()
    }

    #[test]
    fn every_row_reads_back_as_written_and_a_real_certificate_is_kept_compact() {
        let mut clients = Clients::default();
        let rows = [
            record(1, |r| signed(r, r.id)),
            // Someone else's certificate, bytes that are no certificate, none at all.
            record(2, |r| signed(r, ClientId(99))),
            record(3, |_| b"not a certificate".to_vec()),
            record(4, |_| Vec::new()),
        ];
        for r in &rows {
            clients.push(r.clone()).unwrap();
        }
        for r in &rows {
            assert_eq!(clients.get(r.id).as_ref(), Some(r));
        }
        assert!(matches!(
            clients.0[0].certificate,
            Certificate::Compact { .. }
        ));
        assert!(
            rows[1..]
                .iter()
                .zip(&clients.0[1..])
                .all(|(_, s)| matches!(s.certificate, Certificate::Raw(_)))
        );
        assert_eq!(clients.records().collect::<Vec<_>>(), rows);
        let mut revoked = rows[0].clone();
        revoked.revoked = true;
        clients.replace(revoked.clone()).unwrap();
        assert_eq!(clients.get(ClientId(1)), Some(revoked));
        assert_eq!(clients.at_leaf(3), Some(ClientId(4)));
        assert_eq!(clients.at_leaf(4), None);
        assert_eq!(clients.get(ClientId(0)), None);
        // Out of order: refused, nothing stored.
        assert!(clients.push(record(9, |_| Vec::new())).is_err());
        assert_eq!(clients.next_id(), ClientId(5));
    }
}
