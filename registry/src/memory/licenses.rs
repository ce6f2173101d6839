//! The memory store's licenses: one vector, a license at index `ID − first`, each row compact.
//!
//! License IDs come from one counter, in order; a few are taken and never used (a supply that
//! lost a race, a builder that failed), and those places stay empty. A row keeps the fields of a
//! [`LicenseRecord`] without its ID (its place) and its tag (the memory store keeps none,
//! [`Registry::has_outside_writers`](crate::Registry::has_outside_writers)), without its
//! user (its client's, read from the clients), with the origin folded into a word: 48 bytes in
//! the vector, against 112 in a hash table that is half to seven-eighths full.

use std::collections::BTreeMap;

use treecast_protocol::Error;
use treecast_protocol::ids::{CertificateId, ClientId, ContentId, LicenseId, UserId};
use treecast_protocol::license::Rights;
use treecast_protocol::terms::Terms;
use treecast_protocol::time::UnixTime;

use super::clients::Clients;
use crate::{LicenseRecord, LicenseState, LoanLimit};

/// How far past the end a new license may land: the IDs a few failed supplies took. Anything
/// further is a bug, refused rather than allocated for.
const MAX_GAP: usize = 1 << 20;

/// A place in the vector.
#[derive(Clone, Debug)]
struct Row {
    content: u64,
    client: u64,
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
    Returned,
}

impl Row {
    const EMPTY: Self = Self {
        content: 0,
        client: 0,
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
            epoch: record.epoch,
            issued_at: record.issued_at.0,
            origin: record.origin.map_or(0, |c| c.0),
            rights: record.rights.0,
            state: match record.state {
                LicenseState::Active => State::Active,
                LicenseState::Moved => State::Moved,
                LicenseState::Returned => State::Returned,
            },
            has_origin: record.origin.is_some(),
        }
    }

    /// The record of license `id`, whose client belongs to `user`.
    fn record(&self, id: LicenseId, user: UserId) -> Option<LicenseRecord> {
        let state = match self.state {
            State::Empty => return None,
            State::Active => LicenseState::Active,
            State::Moved => LicenseState::Moved,
            State::Returned => LicenseState::Returned,
        };
        Some(LicenseRecord {
            id,
            content: ContentId(self.content),
            client: ClientId(self.client),
            user,
            epoch: self.epoch,
            rights: Rights(self.rights),
            state,
            origin: self.has_origin.then_some(CertificateId(self.origin)),
            issued_at: UnixTime(self.issued_at),
            terms: None,
            tag: [0; 32],
        })
    }
}

/// The licenses, by ID; the terms of the licenses that have some apart (most licenses are
/// perpetual purchases, and a row stays 48 bytes).
#[derive(Debug)]
pub(super) struct Licenses {
    first: u64,
    rows: Vec<Row>,
    terms: BTreeMap<u64, Terms>,
}

impl Licenses {
    /// No licenses; the first ID the registry hands out is `first`.
    pub(super) const fn new(first: u64) -> Self {
        Self {
            first,
            rows: Vec::new(),
            terms: BTreeMap::new(),
        }
    }

    fn index(&self, id: LicenseId) -> Option<usize> {
        usize::try_from(id.0.checked_sub(self.first)?).ok()
    }

    /// License `id`, its user read from `clients`.
    pub(super) fn get(&self, id: LicenseId, clients: &Clients) -> Option<LicenseRecord> {
        let row = self.rows.get(self.index(id)?)?;
        let record = row.record(id, clients.user_of(ClientId(row.client))?)?;
        Some(record.with_terms(self.terms.get(&id.0).copied()))
    }

    /// Stores `record`, in place of the license with its ID if there is one.
    ///
    /// # Errors
    /// [`Error::Internal`] for an ID the registry did not hand out, or a license whose user is
    /// not its client's in `clients` (a row keeps no user: its client's is the license's).
    pub(super) fn put(&mut self, record: &LicenseRecord, clients: &Clients) -> Result<(), Error> {
        if clients.user_of(record.client) != Some(record.user) {
            return Err(Error::Internal("a license whose user is not its client's"));
        }
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
        match record.terms {
            Some(terms) => self.terms.insert(record.id.0, terms),
            None => self.terms.remove(&record.id.0),
        };
        Ok(())
    }

    /// How many active licenses of `content` count against `limit` (a scan of the licenses
    /// with terms only).
    pub(super) fn active_loans(&self, content: ContentId, limit: &LoanLimit) -> usize {
        self.terms
            .iter()
            .filter(|(_, terms)| limit.counts(terms))
            .filter_map(|(&id, _)| self.rows.get(self.index(LicenseId(id))?))
            .filter(|row| row.content == content.0 && row.state == State::Active)
            .count()
    }

    /// The IDs of `content`'s licenses, in ID order: a scan of every row.
    pub(super) fn of_content(&self, content: ContentId) -> impl Iterator<Item = LicenseId> + '_ {
        self.rows
            .iter()
            .zip(self.first..)
            .filter(move |(row, _)| row.state != State::Empty && row.content == content.0)
            .map(|(_, id)| LicenseId(id))
    }

    /// Every license, in ID order.
    pub(super) fn records<'a>(
        &'a self,
        clients: &'a Clients,
    ) -> impl Iterator<Item = LicenseRecord> + 'a {
        self.rows.iter().zip(self.first..).filter_map(|(row, id)| {
            let record = row.record(LicenseId(id), clients.user_of(ClientId(row.client))?)?;
            Some(record.with_terms(self.terms.get(&id).copied()))
        })
    }
}

#[cfg(test)]
mod tests {
    use treecast_keytree::{LeafIndex, TreeHeight};

    use super::*;
    use crate::ClientRecord;
    use treecast_protocol::ids::ServerId;

    /// Clients 1 to 3, of users 1, 1 and 2.
    fn clients() -> Clients {
        let mut clients = Clients::default();
        for (id, user) in [(1, 1), (2, 1), (3, 2)] {
            let leaf = LeafIndex::new(id - 1, TreeHeight::new(8).unwrap()).unwrap();
            let record = ClientRecord::new(
                ClientId(u64::from(id)),
                UserId(user),
                leaf,
                ServerId(1),
                Vec::new(),
                [0; 32],
            );
            clients.push(record).unwrap();
        }
        clients
    }

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

    /// A row is 48 bytes: no ID, tag or user (`docs/performance.md`).
    #[test]
    fn a_row_stays_compact() {
        assert!(size_of::<Row>() <= 48, "{}", size_of::<Row>());
    }

    #[test]
    fn every_license_reads_back_as_written_and_skipped_ids_stay_empty() {
        let clients = clients();
        let mut licenses = Licenses::new(100);
        let a = record(100, None, LicenseState::Active);
        let b = record(103, Some(0), LicenseState::Moved);
        let c = record(104, Some(u64::MAX), LicenseState::Active);
        for r in [&a, &b, &c] {
            licenses.put(r, &clients).unwrap();
        }
        let get = |licenses: &Licenses, id| licenses.get(LicenseId(id), &clients);
        assert_eq!(get(&licenses, 100), Some(a.clone()));
        assert_eq!(get(&licenses, 101), None);
        assert_eq!(get(&licenses, 99), None);
        assert_eq!(get(&licenses, 105), None);
        assert_eq!(get(&licenses, 103), Some(b.clone()));
        let all = [a.clone(), b, c.clone()];
        assert_eq!(licenses.records(&clients).collect::<Vec<_>>(), all);
        let of_content: Vec<_> = licenses.of_content(ContentId(7)).collect();
        assert_eq!(of_content, all.iter().map(|l| l.id).collect::<Vec<_>>());
        assert_eq!(licenses.of_content(ContentId(8)).count(), 0);

        // A license moved away is written again in place.
        let mut moved = c;
        moved.state = LicenseState::Moved;
        licenses.put(&moved, &clients).unwrap();
        assert_eq!(get(&licenses, 104), Some(moved));

        // IDs the registry never handed out are refused, not allocated for; so is a license
        // whose user is not its client's (the row keeps no user), or whose client is unknown.
        for bad in [
            record(99, None, LicenseState::Active),
            record(u64::MAX, None, LicenseState::Active),
            LicenseRecord {
                user: UserId(1),
                ..a.clone()
            },
            LicenseRecord {
                client: ClientId(4),
                ..a
            },
        ] {
            assert!(licenses.put(&bad, &clients).is_err(), "{bad:?}");
        }
        assert_eq!(licenses.records(&clients).count(), 3);
        assert_eq!(get(&licenses, 100).map(|l| l.user), Some(UserId(2)));
    }
}
