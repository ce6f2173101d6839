//! Storage key rotation (issue 29, item 3): content keys re-wrapped under a new storage key ID,
//! online, one row at a time (`docs/storage.md`, "Storage key rotation").

use treecast_protocol::Error;
use treecast_registry::{ContentRecord, Registry};

use super::Distributor;

/// What a rotation did.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
#[non_exhaustive]
pub struct Rekeyed {
    /// Envelopes re-wrapped under the new key ID.
    pub rewrapped: u64,
    /// Envelopes already under it.
    pub already: u64,
    /// Rows that changed while they were re-wrapped (left as they were; run it again).
    pub changed: u64,
}

impl<R: Registry> Distributor<R> {
    /// Re-wraps every content key not yet under storage key `to` (issue 29, storage key
    /// rotation), online: each envelope is opened under its own key ID and sealed under `to`,
    /// and replaces its row only if the row did not change meanwhile (a concurrent re-wrap, a
    /// rollback). Run it again to finish after an interruption: rows already under `to` are
    /// counted, not touched. Publish under `to` first (`DistributorConfig::storage_key_id`), so
    /// that no new content comes under the old key.
    ///
    /// # Errors
    /// [`Error::UnwrapFailed`] for an envelope this distributor did not make (a forged row: the
    /// rotation stops there, every row before it re-wrapped); [`Error::Storage`].
    pub fn rekey_contents(&self, to: u32) -> Result<Rekeyed, Error> {
        let mut done = Rekeyed::default();
        for record in self.registry.contents()? {
            if record.key_id == to {
                done.already += 1;
                continue;
            }
            let key = self.vault.open(&record)?;
            let new = ContentRecord::new(record.id, to, self.vault.seal(to, record.id, &key)?);
            if self.registry.replace_envelope(&record, &new)? {
                done.rewrapped += 1;
            } else {
                done.changed += 1;
            }
        }
        Ok(done)
    }
}
