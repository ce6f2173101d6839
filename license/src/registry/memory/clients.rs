//! The memory store's clients: one vector, a client at index `ID − 1`.
//!
//! Client IDs and leaves are both handed out in order from one counter each, once, and a client
//! is never removed (a revoked one stays), so the IDs are dense: a vector holds them with no
//! hash table around each record and no second table from leaf to client (a client's leaf is its
//! ID minus one, as in every store). Measured at 1 M users: about 100 bytes less per client than
//! the two hash tables it replaces (`docs/performance.md`).

use crate::Error;
use crate::ids::ClientId;
use crate::registry::ClientRecord;

#[derive(Debug, Default)]
pub(super) struct Clients(Vec<ClientRecord>);

impl Clients {
    fn index(id: ClientId) -> Option<usize> {
        id.0.checked_sub(1).and_then(|i| usize::try_from(i).ok())
    }

    /// The client `id`.
    pub(super) fn get(&self, id: ClientId) -> Option<&ClientRecord> {
        self.0.get(Self::index(id)?)
    }

    /// The client at `leaf`.
    pub(super) fn at_leaf(&self, leaf: u32) -> Option<&ClientRecord> {
        self.0
            .get(usize::try_from(leaf).ok()?)
            .filter(|c| c.leaf.get() == leaf)
    }

    /// The ID the next client gets.
    pub(super) fn next_id(&self) -> ClientId {
        ClientId(self.0.len() as u64 + 1)
    }

    /// Adds the next client.
    ///
    /// # Errors
    /// [`Error::Internal`] when `record` is not the next ID's, or its leaf is not ID − 1.
    pub(super) fn push(&mut self, mut record: ClientRecord) -> Result<(), Error> {
        if record.id != self.next_id() || u64::from(record.leaf.get()) + 1 != record.id.0 {
            return Err(Error::Internal("clients out of order"));
        }
        record.certificate.shrink_to_fit();
        self.0.push(record);
        Ok(())
    }

    /// Replaces client `record.id`'s row.
    ///
    /// # Errors
    /// [`Error::ClientNotFound`] for an ID that was never handed out.
    pub(super) fn replace(&mut self, record: ClientRecord) -> Result<(), Error> {
        let slot = Self::index(record.id)
            .and_then(|i| self.0.get_mut(i))
            .ok_or(Error::ClientNotFound(record.id))?;
        *slot = record;
        Ok(())
    }

    /// Every client, by ID.
    pub(super) fn iter(&self) -> impl Iterator<Item = &ClientRecord> {
        self.0.iter()
    }
}
