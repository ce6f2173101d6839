//! The final checks: every holding plays, every purchase has one usable license, the audit.

use super::*;

impl<R: Registry> Engine<'_, R> {
    /// At the end: every purchase is held by exactly one client, which plays it unless revoked;
    /// the registry's audit; the history and the ledger against the counts.
    pub(super) fn final_checks(&self, users: &mut [SimUser]) -> Result<u64, SimError> {
        self.bar("final checks", users.len() as u64);
        users
            .par_iter_mut()
            .enumerate()
            .try_for_each(|(u, user)| -> Result<(), SimError> {
                self.final_user(u as u64, user)?;
                self.progress.inc(1);
                Ok(())
            })?;
        let registry = self.distributor.registry();
        // The audit streams the registry; its counts serve the checks below.
        let report = audit_report(registry, crate::invariants::KEPT_VIOLATIONS)?;
        let violations = &report.violations;
        self.tally.check(
            Invariant::RegistryAudit,
            violations.is_empty(),
            u64::MAX,
            || violations.join("; "),
        );
        // 4: every certificate moves between clients of one user.
        let counts = report.counts;
        let cross = counts.cross_user_certificates;
        self.tally
            .checked_ok(Invariant::SameUserMoves, counts.certificates - cross);
        if cross > 0 {
            self.tally
                .check(Invariant::SameUserMoves, false, u64::MAX, || {
                    format!("{cross} certificates move content between users")
                });
        }
        // 5: the ledger against licenses × price + certificates × price.
        let total = counts.billed;
        let purchases = self.ops.count(Op::Purchase);
        let moves = self.ops.count(Op::Move);
        let expected = purchases * LICENSE_PRICE + moves * CERTIFICATE_PRICE;
        self.tally.check(Invariant::Billing, total == expected, u64::MAX, || {
            format!(
                "the ledger holds {total}, but {purchases} licenses and {moves} certificates cost {expected}"
            )
        });
        Ok(total)
    }

    pub(super) fn final_user(&self, u: u64, user: &mut SimUser) -> Result<(), SimError> {
        // Every client is parked here: exactly one of the user's clients holds a license for
        // each bought content.
        let mut playable = Vec::new();
        for (h, holding) in user.holdings.iter().enumerate() {
            if holding.license.is_none() {
                continue;
            }
            let content = self.content(holding.content)?;
            let holders: Vec<usize> = user
                .clients
                .iter()
                .enumerate()
                .filter(|(_, c)| {
                    c.state
                        .as_ref()
                        .is_some_and(|s| s.licensed().any(|x| x == content.id))
                })
                .map(|(j, _)| j)
                .collect();
            let ok = holders == [usize::from(holding.holder)];
            self.tally.check(Invariant::OneUsableLicense, ok, u, || {
                format!(
                    "user {u}: {} is held by clients {holders:?}, expected [{}]",
                    content.id, holding.holder
                )
            });
            let revoked = user
                .clients
                .get(usize::from(holding.holder))
                .is_none_or(|c| c.revoked);
            if !revoked {
                playable.push(h);
            }
        }
        // And every holder not revoked plays it.
        let mut session = Session::new(self.cfg, u, user.clients.len());
        for h in playable {
            self.play(u, user, h, &mut session, false)?;
        }
        session.finish(user, None);
        Ok(())
    }
}
