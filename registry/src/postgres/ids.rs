//! License and certificate IDs, taken from the database's sequences a block at a time.
//!
//! A sequence never goes back, whatever rolls back or crashes, so an ID taken here is never
//! handed out by any other process, now or later. A process takes [`BLOCK`] values in one round
//! trip and hands them out in order; the values it has not used when it stops are skipped, never
//! reused (a crash skips at most [`BLOCK`] − 1 IDs of each kind).

use std::sync::{Mutex, MutexGuard};

use treecast_protocol::Error;

use crate::sql::{Tx, Value, un};

/// IDs taken from a sequence in one round trip.
const BLOCK: i64 = 64;

/// The sequences IDs come from.
#[derive(Clone, Copy, Debug)]
pub(super) enum Sequence {
    License,
    Certificate,
}

impl Sequence {
    /// The statement that takes a block of this sequence's values.
    const fn block_query(self) -> &'static str {
        match self {
            Self::License => {
                "SELECT nextval('license_ids') FROM generate_series(1, $1::bigint) ORDER BY 1 DESC"
            }
            Self::Certificate => {
                "SELECT nextval('certificate_ids') FROM generate_series(1, $1::bigint) ORDER BY 1 DESC"
            }
        }
    }
}

/// The values this process has taken and not yet handed out, last first.
#[derive(Debug, Default)]
pub(super) struct IdBlocks {
    license: Mutex<Vec<u64>>,
    certificate: Mutex<Vec<u64>>,
}

impl IdBlocks {
    /// The next ID of `sequence`, taking a new block from the database when this process has
    /// none left.
    /// `tx` is the caller's connection or transaction (a block taken in a transaction that
    /// then rolls back stays taken: sequences do not roll back).
    pub(super) fn take(&self, tx: &mut dyn Tx, sequence: Sequence) -> Result<u64, Error> {
        let mut held = self.held(sequence)?;
        if let Some(id) = held.pop() {
            return Ok(id);
        }
        // The lock stays held across the refill: another thread waits for the new block rather
        // than taking one of its own.
        *held = tx
            .query(sequence.block_query(), &[Value::Int(BLOCK)])?
            .iter()
            .map(|r| un(r.int(0)?))
            .collect::<Result<_, _>>()?;
        held.pop()
            .ok_or(Error::Storage("PostgreSQL returned no ID".into()))
    }

    /// The next ID of `sequence` this process holds, if any (no database access).
    pub(super) fn pop(&self, sequence: Sequence) -> Result<Option<u64>, Error> {
        Ok(self.held(sequence)?.pop())
    }

    fn held(&self, sequence: Sequence) -> Result<MutexGuard<'_, Vec<u64>>, Error> {
        match sequence {
            Sequence::License => &self.license,
            Sequence::Certificate => &self.certificate,
        }
        .lock()
        .map_err(|_| Error::Internal("ID block lock poisoned"))
    }
}
