//! The audit of a registry's invariants, shared by every store, `store check` and the simulator.
//!
//! It streams the registry ([`Registry::scan_users`], [`Registry::scan_leaves`]): its memory is
//! that of one page of users, whatever the registry's size.

use std::collections::HashMap;

use treecast_protocol::Error;
use treecast_protocol::ids::{ClientId, LicenseId};

use super::{LicenseRecord, LicenseState, Registry, UserRows};
use crate::billing::ChargeKind;

/// What an audit counted, beside the violations it found.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
#[non_exhaustive]
pub struct AuditCounts {
    /// Users.
    pub users: u64,
    /// Clients.
    pub clients: u64,
    /// Licenses, moved ones included.
    pub licenses: u64,
    /// Entries of the certificate history.
    pub certificates: u64,
    /// Certificates that do not move content between two clients of their user (claim 4).
    pub cross_user_certificates: u64,
    /// Ledger entries.
    pub ledger_entries: u64,
    /// The sum of every ledger entry.
    pub billed: u64,
}

/// The outcome of [`audit_report`].
#[derive(Clone, Debug, Default, Eq, PartialEq)]
#[non_exhaustive]
pub struct Audit {
    /// The violations found, in the order of the invariants, at most the limit asked for.
    pub violations: Vec<String>,
    /// What was counted.
    pub counts: AuditCounts,
}

/// Checks the invariants a registry must keep (see [`audit_report`]) and returns the violations
/// found, at most `limit` of them.
///
/// # Errors
/// [`Error::Storage`] when the store fails.
pub fn audit(registry: &dyn Registry, limit: usize) -> Result<Vec<String>, Error> {
    Ok(audit_report(registry, limit)?.violations)
}

/// Checks the invariants a registry must keep, streaming it user by user:
///
/// 1. every license belongs to a registered client, and its user is that client's user;
/// 2. every purchase (a license bought, followed through the moves that came from it) has
///    exactly one usable license;
/// 3. every moved license has exactly one certificate in the history, and every active one none;
///    every certificate moves between two clients of its user (claim 4);
/// 4. each user's ledger holds one license charge per purchase and one certificate charge per
///    history entry, and the user's total equals the sum of their charges;
/// 5. no two clients share a leaf.
///
/// Returns at most `limit` violations, and the counts of what was read. Every check reads one
/// user's rows, or the leaves in order, so memory stays that of a page of users.
///
/// ```
/// use treecast_keytree::TreeHeight;
/// use treecast_registry::{MemoryRegistry, Registry, audit_report};
/// # fn main() -> Result<(), treecast_protocol::Error> {
/// let registry = MemoryRegistry::new(TreeHeight::new(16)?);
/// registry.add_user()?;
/// let report = audit_report(&registry, 10)?;
/// assert!(report.violations.is_empty());
/// assert_eq!(report.counts.users, 1);
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`Error::Storage`] when the store fails.
pub fn audit_report(registry: &dyn Registry, limit: usize) -> Result<Audit, Error> {
    let mut auditor = Auditor {
        limit,
        audit: Audit::default(),
        strangers: Vec::new(),
    };
    registry.scan_users(&mut |rows| {
        auditor.user(&rows);
        Ok(())
    })?;
    // 1, for the licenses whose client is not their user's: whose client it is.
    for (license, user, client) in std::mem::take(&mut auditor.strangers) {
        match registry.client(client)? {
            None => auditor.report(format!("{license} belongs to unregistered {client}")),
            Some(c) => auditor.report(format!(
                "{license} is {user}'s but its client is {}'s",
                c.user
            )),
        }
    }
    // 5. Leaves, in leaf order: a shared leaf is two equal neighbours.
    let mut previous = None;
    registry.scan_leaves(&mut |leaf, id| {
        if previous == Some(leaf) {
            auditor.report(format!("{id} shares leaf {leaf} with another client"));
        }
        previous = Some(leaf);
        Ok(())
    })?;
    Ok(auditor.audit)
}

struct Auditor {
    limit: usize,
    audit: Audit,
    /// Licenses whose client is not among their user's clients: (license, user, client), at
    /// most `limit` of them, looked up after the scan.
    strangers: Vec<(LicenseId, treecast_protocol::ids::UserId, ClientId)>,
}

impl Auditor {
    fn report(&mut self, violation: String) {
        if self.audit.violations.len() < self.limit {
            self.audit.violations.push(violation);
        }
    }

    /// The checks of one user's rows.
    fn user(&mut self, rows: &UserRows) {
        let user = rows.user;
        let counts = &mut self.audit.counts;
        counts.users += u64::from(rows.total.is_some());
        counts.clients += rows.clients.len() as u64;
        counts.licenses += rows.licenses.len() as u64;
        counts.certificates += rows.history.len() as u64;
        counts.ledger_entries += rows.ledger.len() as u64;
        if rows.total.is_none() {
            self.report(format!("rows name {user}, who is not registered"));
        }
        let is_client = |id: ClientId| rows.clients.binary_search_by_key(&id, |c| c.id).is_ok();
        let license = |id: LicenseId| {
            rows.licenses
                .binary_search_by_key(&id, |l| l.id)
                .ok()
                .and_then(|i| rows.licenses.get(i))
        };
        // 1. Owners.
        for l in &rows.licenses {
            if !is_client(l.client) && self.strangers.len() < self.limit {
                self.strangers.push((l.id, user, l.client));
            }
        }
        // 2. One usable (or returned) license per purchase: follow each license back to the
        // purchase.
        let by_certificate: HashMap<_, _> = rows.history.iter().map(|h| (h.id, h)).collect();
        let mut usable_per_purchase: HashMap<LicenseId, usize> = HashMap::new();
        for l in &rows.licenses {
            let mut root = l.id;
            let mut current: &LicenseRecord = l;
            let mut steps = 0;
            while let Some(cert) = current.origin {
                let Some(parent) = by_certificate
                    .get(&cert)
                    .and_then(|h| license(h.source_license))
                else {
                    self.report(format!(
                        "{} came from {} which is not in {user}'s history",
                        l.id, cert
                    ));
                    break;
                };
                root = parent.id;
                current = parent;
                steps += 1;
                if steps > rows.licenses.len() {
                    self.report(format!("{} is on a cycle of moves", l.id));
                    break;
                }
            }
            // Active, or returned (issue 27): the one license of the purchase not moved away.
            *usable_per_purchase.entry(root).or_default() +=
                usize::from(l.state != LicenseState::Moved);
        }
        let mut purchases: Vec<_> = usable_per_purchase.iter().collect();
        purchases.sort();
        for (root, usable) in purchases {
            if *usable != 1 {
                self.report(format!(
                    "the purchase of {root} has {usable} usable licenses"
                ));
            }
        }
        // 3. Moved licenses and the history.
        let mut certificates_per_license: HashMap<LicenseId, usize> = HashMap::new();
        for h in &rows.history {
            *certificates_per_license
                .entry(h.source_license)
                .or_default() += 1;
            // A move never changes a license's time, and a license with a playback window
            // never moves (issue 27).
            if let (Some(s), Some(d)) = (license(h.source_license), license(h.destination_license))
                && (s.terms != d.terms || s.terms.is_some_and(|t| t.play_window() > 0))
            {
                self.report(format!(
                    "{} moved {} with its terms changed or its window started",
                    h.id, h.source_license
                ));
            }
            match license(h.destination_license) {
                Some(d) if d.origin == Some(h.id) && d.client == h.destination => {}
                _ => self.report(format!(
                    "{} has no matching destination license {}",
                    h.id, h.destination_license
                )),
            }
            if !is_client(h.source) || !is_client(h.destination) {
                self.audit.counts.cross_user_certificates += 1;
                self.report(format!(
                    "{} moves content from {} to {}, not both {user}'s",
                    h.id, h.source, h.destination
                ));
            }
        }
        for l in &rows.licenses {
            let n = certificates_per_license.get(&l.id).copied().unwrap_or(0);
            if n != usize::from(l.state == LicenseState::Moved) {
                self.report(format!(
                    "{} ({:?}) has {n} certificates in the history",
                    l.id, l.state
                ));
            }
        }
        // 4. The ledger.
        let charges = |kind| rows.ledger.iter().filter(|e| e.kind == kind).count();
        let (license_charges, certificate_charges) = (
            charges(ChargeKind::License),
            charges(ChargeKind::Certificate),
        );
        if license_charges != usable_per_purchase.len() {
            self.report(format!(
                "{user} has {license_charges} license charges for {} purchases",
                usable_per_purchase.len()
            ));
        }
        if certificate_charges != rows.history.len() {
            self.report(format!(
                "{user} has {certificate_charges} certificate charges for {} certificates",
                rows.history.len()
            ));
        }
        // A renewal bills a license of this user that has terms, and a return is the event of
        // a license returned, once (issue 27).
        for e in rows.ledger.iter().filter(|e| e.kind == ChargeKind::Renewal) {
            let renewed = rows
                .licenses
                .iter()
                .any(|l| l.id.0 == e.reference && l.terms.is_some());
            if !renewed {
                self.report(format!(
                    "{user} was billed a renewal of license-{} that has no terms",
                    e.reference
                ));
            }
        }
        for l in &rows.licenses {
            let returns = rows
                .ledger
                .iter()
                .filter(|e| e.kind == ChargeKind::Return && e.reference == l.id.0)
                .count();
            if returns != usize::from(l.state == LicenseState::Returned) {
                self.report(format!(
                    "{} ({:?}) has {returns} return events in the ledger",
                    l.id, l.state
                ));
            }
        }
        let billed = rows
            .ledger
            .iter()
            .fold(0u64, |sum, e| sum.saturating_add(e.amount));
        self.audit.counts.billed = self.audit.counts.billed.saturating_add(billed);
        if let Some(total) = rows.total
            && total != billed
        {
            self.report(format!(
                "{user} has a total of {total} but was billed {billed}"
            ));
        }
    }
}
