//! The audit of a registry's invariants, shared by every store, `store check` and the simulator.

use super::{CertificateRecord, ClientSummary, LicenseRecord, LicenseState, Registry};
use crate::Error;
use crate::ids::{CertificateId, LicenseId, UserId};

/// Checks the invariants a registry must keep, over all of its tables:
///
/// 1. every license belongs to a registered client, and its user is that client's user;
/// 2. every purchase (a license bought, followed through the moves that came from it) has
///    exactly one usable license;
/// 3. every moved license has exactly one certificate in the history, and every active one none;
/// 4. the ledger holds one license charge per purchase and one certificate charge per history
///    entry, and each user's total equals the sum of their charges;
/// 5. no two clients share a leaf.
///
/// Returns the violations found, in that order, at most `limit` of them.
///
/// # Errors
/// [`Error::Storage`] when the store fails.
pub fn audit(registry: &dyn Registry, limit: usize) -> Result<Vec<String>, Error> {
    use std::collections::{HashMap, HashSet};

    use crate::billing::ChargeKind;

    let mut violations = Vec::new();
    let mut report = |v: String| {
        if violations.len() < limit {
            violations.push(v);
        }
    };
    // Sorted vectors searched by ID, not hash maps: an audit of millions of clients must not
    // double the registry's memory.
    let mut client_list = registry.client_summaries()?;
    client_list.sort_by_key(|c| c.id);
    let mut license_list = registry.all_licenses()?;
    license_list.sort_by_key(|l| l.id);
    let clients = SortedById(&client_list, |c: &ClientSummary| c.id);
    let licenses = SortedById(&license_list, |l: &LicenseRecord| l.id);
    let history = registry.certificate_history()?;
    let by_certificate: HashMap<CertificateId, &CertificateRecord> =
        history.iter().map(|h| (h.id, h)).collect();
    let ordered: Vec<&LicenseRecord> = license_list.iter().collect();

    // 1. Owners.
    for l in &ordered {
        match clients.get(&l.client) {
            None => report(format!("{} belongs to unregistered {}", l.id, l.client)),
            Some(c) if c.user != l.user => report(format!(
                "{} is {}'s but its client is {}'s",
                l.id, l.user, c.user
            )),
            Some(_) => {}
        }
    }
    // 2. One usable license per purchase: follow each license back to the purchase.
    let mut usable_per_purchase: HashMap<LicenseId, usize> = HashMap::new();
    for l in &ordered {
        let mut root = l.id;
        let mut current = *l;
        let mut steps = 0;
        while let Some(cert) = current.origin {
            let Some(parent) = by_certificate
                .get(&cert)
                .and_then(|h| licenses.get(&h.source_license))
            else {
                report(format!(
                    "{} came from {} which is not in the history",
                    l.id, cert
                ));
                break;
            };
            root = parent.id;
            current = parent;
            steps += 1;
            if steps > licenses.len() {
                report(format!("{} is on a cycle of moves", l.id));
                break;
            }
        }
        let count = usable_per_purchase.entry(root).or_default();
        if l.state == LicenseState::Active {
            *count += 1;
        }
    }
    let mut purchases: Vec<_> = usable_per_purchase.into_iter().collect();
    purchases.sort();
    for (root, usable) in &purchases {
        if *usable != 1 {
            report(format!(
                "the purchase of {root} has {usable} usable licenses"
            ));
        }
    }
    // 3. Moved licenses and the history.
    let mut certificates_per_license: HashMap<LicenseId, usize> = HashMap::new();
    for h in &history {
        *certificates_per_license
            .entry(h.source_license)
            .or_default() += 1;
        match licenses.get(&h.destination_license) {
            Some(d) if d.origin == Some(h.id) && d.client == h.destination => {}
            _ => report(format!(
                "{} has no matching destination license {}",
                h.id, h.destination_license
            )),
        }
    }
    for l in &ordered {
        let n = certificates_per_license.get(&l.id).copied().unwrap_or(0);
        let expected = usize::from(l.state == LicenseState::Moved);
        if n != expected {
            report(format!(
                "{} ({:?}) has {n} certificates in the history",
                l.id, l.state
            ));
        }
    }
    // 4. The ledger.
    let ledger = registry.ledger()?;
    let count = |kind| ledger.iter().filter(|e| e.kind == kind).count();
    if count(ChargeKind::License) != purchases.len() {
        report(format!(
            "{} license charges for {} purchases",
            count(ChargeKind::License),
            purchases.len()
        ));
    }
    if count(ChargeKind::Certificate) != history.len() {
        report(format!(
            "{} certificate charges for {} certificates",
            count(ChargeKind::Certificate),
            history.len()
        ));
    }
    let mut billed: HashMap<UserId, u64> = HashMap::new();
    for e in &ledger {
        *billed.entry(e.user).or_default() += e.amount;
    }
    for (user, total) in registry.users()? {
        let sum = billed.get(&user).copied().unwrap_or(0);
        if sum != total {
            report(format!(
                "{user} has a total of {total} but was billed {sum}"
            ));
        }
    }
    // 5. Leaves.
    let mut leaves = HashSet::new();
    let sorted_clients = &client_list;
    for c in sorted_clients {
        if !leaves.insert(c.leaf) {
            report(format!(
                "{} shares leaf {} with another client",
                c.id, c.leaf
            ));
        }
    }
    Ok(violations)
}

/// A slice sorted by an ID, searched by binary search.
struct SortedById<'a, T, K, F: Fn(&T) -> K>(&'a [T], F);

impl<T, K: Ord, F: Fn(&T) -> K> SortedById<'_, T, K, F> {
    fn get(&self, id: &K) -> Option<&T> {
        self.0
            .binary_search_by(|x| (self.1)(x).cmp(id))
            .ok()
            .and_then(|i| self.0.get(i))
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}
