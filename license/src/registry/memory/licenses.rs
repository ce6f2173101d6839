//! The memory store's licenses: one vector, a license at index `ID − first`, each row compact.
//!
//! License IDs come from one counter, in order; a few are taken and never used (a supply that
//! lost a race, a builder that failed), and those places stay empty. A row keeps the fields of a
//! [`LicenseRecord`] without its ID (its place) and its tag (the memory store keeps none,
//! [`Registry::has_outside_writers`](crate::registry::Registry::has_outside_writers)), with the
//! origin folded into a word: 56 bytes in the vector, against 112 in a hash table that is half
//! to seven-eighths full.

use crate::Error;
use crate::ids::{CertificateId, ClientId, ContentId, LicenseId, UserId};
use crate::license::Rights;
use crate::registry::{LicenseRecord, LicenseState};
use crate::time::UnixTime;

/// How far past the end a new license may land: the IDs a few failed supplies took. Anything
/// further is a bug, refused rather than allocated for.
const MAX_GAP: usize = 1 << 20;

/// A place in the vector.
#[derive(Clone, Debug)]
struct Row {
    content: u64,
    client: u64,
    user: u64,
    epoch: u64,
    issued_at: u64,
    /// The origin certificate's ID when `has_origin`.
    origin: u64,
    rights: u8,
    state: State,
    has_origin: bool,
}

#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum State {
    /// An ID taken and never used.
    Empty,
    Active,
    Moved,
}

impl Row {
    const EMPTY: Self = Self {
        content: 0,
        client: 0,
        user: 0,
        epoch: 0,
        issued_at: 0,
        origin: 0,
        rights: 0,
        state: State::Empty,
        has_origin: false,
    };

    fn of(record: &LicenseRecord) -> Self {
        Self {
            content: record.content.0,
            client: record.client.0,
            user: record.user.0,
            epoch: record.epoch,
            issued_at: record.issued_at.0,
            origin: record.origin.map_or(0, |c| c.0),
            rights: record.rights.0,
            state: match record.state {
                LicenseState::Active => State::Active,
                LicenseState::Moved => State::Moved,
            },
            has_origin: record.origin.is_some(),
        }
    }

    fn record(&self, id: LicenseId) -> Option<LicenseRecord> {
        let state = match self.state {
            State::Empty => return None,
            State::Active => LicenseState::Active,
            State::Moved => LicenseState::Moved,
        };
        Some(LicenseRecord {
            id,
            content: ContentId(self.content),
            client: ClientId(self.client),
            user: UserId(self.user),
            epoch: self.epoch,
            rights: Rights(self.rights),
            state,
            origin: self.has_origin.then_some(CertificateId(self.origin)),
            issued_at: UnixTime(self.issued_at),
            tag: [0; 32],
        })
    }
}

/// The licenses, by ID.
#[derive(Debug)]
pub(super) struct Licenses {
    first: u64,
    rows: Vec<Row>,
}

impl Licenses {
    /// No licenses; the first ID the registry hands out is `first`.
    pub(super) const fn new(first: u64) -> Self {
        Self {
            first,
            rows: Vec::new(),
        }
    }

    fn index(&self, id: LicenseId) -> Option<usize> {
        usize::try_from(id.0.checked_sub(self.first)?).ok()
    }

    /// License `id`.
    pub(super) fn get(&self, id: LicenseId) -> Option<LicenseRecord> {
        self.rows.get(self.index(id)?)?.record(id)
    }

    /// Stores `record`, in place of the license with its ID if there is one.
    ///
    /// # Errors
    /// [`Error::Internal`] for an ID the registry did not hand out.
    pub(super) fn put(&mut self, record: &LicenseRecord) -> Result<(), Error> {
        let at = self
            .index(record.id)
            .filter(|&at| at <= self.rows.len().saturating_add(MAX_GAP))
            .ok_or(Error::Internal(
                "a license ID the registry did not hand out",
            ))?;
        if at >= self.rows.len() {
            self.rows.resize(at + 1, Row::EMPTY);
        }
        if let Some(row) = self.rows.get_mut(at) {
            *row = Row::of(record);
        }
        Ok(())
    }

    /// Every license, in ID order.
    pub(super) fn records(&self) -> impl Iterator<Item = LicenseRecord> + '_ {
        self.rows
            .iter()
            .zip(self.first..)
            .filter_map(|(row, id)| row.record(LicenseId(id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u64, origin: Option<u64>, state: LicenseState) -> LicenseRecord {
        let mut r = LicenseRecord::new(
            LicenseId(id),
            ContentId(7),
            ClientId(3),
            UserId(2),
            5,
            origin.map(CertificateId),
            UnixTime(1_800_000_000),
        )
        .with_rights(Rights(1));
        r.state = state;
        r
    }

    #[test]
    fn every_license_reads_back_as_written_and_skipped_ids_stay_empty() {
        let mut licenses = Licenses::new(100);
        let a = record(100, None, LicenseState::Active);
        let b = record(103, Some(0), LicenseState::Moved);
        let c = record(104, Some(u64::MAX), LicenseState::Active);
        for r in [&a, &b, &c] {
            licenses.put(r).unwrap();
        }
        assert_eq!(licenses.get(LicenseId(100)), Some(a.clone()));
        assert_eq!(licenses.get(LicenseId(101)), None);
        assert_eq!(licenses.get(LicenseId(99)), None);
        assert_eq!(licenses.get(LicenseId(105)), None);
        assert_eq!(licenses.get(LicenseId(103)), Some(b.clone()));
        assert_eq!(licenses.records().collect::<Vec<_>>(), [a, b, c.clone()]);

        // A license moved away is written again in place.
        let mut moved = c;
        moved.state = LicenseState::Moved;
        licenses.put(&moved).unwrap();
        assert_eq!(licenses.get(LicenseId(104)), Some(moved));

        // IDs the registry never handed out are refused, not allocated for.
        assert!(
            licenses
                .put(&record(99, None, LicenseState::Active))
                .is_err()
        );
        assert!(
            licenses
                .put(&record(u64::MAX, None, LicenseState::Active))
                .is_err()
        );
        assert_eq!(licenses.records().count(), 3);
    }
}
