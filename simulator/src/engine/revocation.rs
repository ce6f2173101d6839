//! Revocations between rounds, and the checks that the revoked are locked out.

use super::*;

impl<R: Registry> Engine<'_, R> {
    /// Revokes `count` clients after round `round`, one epoch each; then checks that every
    /// revoked client is refused by the new EKB and the license server, and that no subset of
    /// the EKB holds a revoked leaf. Only the last epoch's EKB is built (the distributor builds
    /// an EKB when it is first asked for), so the report lists one EKB per batch.
    pub(super) fn revoke(
        &self,
        users: &mut [SimUser],
        round: u32,
        count: u64,
        ekbs: &mut Vec<EkbEpoch>,
        revoked_leaves: &mut Vec<u32>,
    ) -> Result<(), SimError> {
        if count == 0 {
            return Ok(());
        }
        self.bar("revocations", count);
        let mut rng = rng(self.cfg.seed, Purpose::Revocation, u64::from(round));
        let mut done = 0;
        let mut tries = 0;
        let mut last = 0;
        while done < count && tries < 100 * count {
            tries += 1;
            let u = below(&mut rng, users.len() as u64) as usize;
            let Some(user) = users.get_mut(u) else {
                continue;
            };
            let j = below(&mut rng, user.clients.len() as u64) as usize;
            let Some(c) = user.clients.get_mut(j) else {
                continue;
            };
            if c.revoked {
                continue;
            }
            let t = Instant::now();
            let epoch = self.distributor.revoke_client(c.id()?)?;
            c.revoked = true;
            revoked_leaves.push(c.leaf(self.cfg.height)?.get());
            done += 1;
            self.ops.add(Op::Revoke, 1, t.elapsed());
            last = epoch;
            self.progress.inc(1);
        }
        let mut entry = self.ekb_entry(last)?;
        entry.revoked = revoked_leaves.len() as u64;
        ekbs.push(entry);
        let ekb = verified_current(&self.distributor, &self.authority)?;
        *self
            .ekb
            .write()
            .map_err(|_| SimError::Internal("EKB lock poisoned"))? = ekb.clone();
        self.check_revoked(users, &ekb, revoked_leaves)
    }

    /// Invariant 2 and the revoked-client attacks.
    pub(super) fn check_revoked(
        &self,
        users: &mut [SimUser],
        ekb: &Arc<VerifiedEkbBuf>,
        revoked_leaves: &[u32],
    ) -> Result<(), SimError> {
        let verified = ekb.get();
        // The coalition: no subset of the EKB may hold any revoked leaf.
        let mut sorted = revoked_leaves.to_vec();
        sorted.sort_unstable();
        let height = self.cfg.height;
        let body = treecast_keytree::EkbIn::from_bytes(ekb.as_bytes())?;
        let mut holding_revoked = 0u64;
        let mut subsets = 0u64;
        for subset in body.subsets() {
            let subset = subset?;
            subsets += 1;
            let (u, v) = match subset {
                treecast_keytree::Subset::Complete(n) => (n, None),
                treecast_keytree::Subset::Difference { u, v } => (u, Some(v)),
                _ => return Err(SimError::Internal("unknown subset kind")),
            };
            let inside = |n: treecast_keytree::NodeIndex| {
                n.leaf_range(height).map_or(0, |r| {
                    let lo = sorted.partition_point(|&l| u64::from(l) < r.start);
                    let hi = sorted.partition_point(|&l| u64::from(l) < r.end);
                    hi - lo
                })
            };
            if inside(u) > v.map_or(0, inside) {
                holding_revoked += 1;
            }
        }
        self.tally
            .check(Invariant::RevokedLockedOut, holding_revoked == 0, 0, || {
                format!("{holding_revoked} of {subsets} subsets hold a revoked leaf")
            });
        // Each revoked client: the EKB refuses it, and the server refuses it a license.
        let content = self.content(0)?;
        for (u, user) in users.iter_mut().enumerate() {
            for (j, sim) in user.clients.iter_mut().enumerate() {
                if !sim.revoked {
                    continue;
                }
                let opened = self
                    .authority
                    .device_keys(sim.leaf(self.cfg.height)?)
                    .open(&verified);
                let refused = matches!(opened, Err(treecast_keytree::Error::Revoked));
                self.tally
                    .attack(Attack::RevokedOpensEkb, refused, u as u64);
                self.tally
                    .check(Invariant::RevokedLockedOut, refused, u as u64, || {
                        format!("revoked client {j} of user {u} opened the EKB: {opened:?}")
                    });
                let key = SigningKey::from_bytes(&crate::workload::key_seed(self.cfg, u as u64, j));
                let mut client = self.restore(sim, key)?;
                let request = client.license_request(content.id, self.clock_now());
                let answer = self.distributor.supply_license(request.as_bytes());
                let refused = matches!(answer, Err(Error::ClientRevoked(_)));
                self.tally
                    .attack(Attack::RevokedLicenseRequest, refused, u as u64);
                session::park(sim, client.into_state());
            }
        }
        Ok(())
    }

    pub(super) fn ekb_entry(&self, epoch: u64) -> Result<EkbEpoch, SimError> {
        let (current, ekb) = self.distributor.current_ekb()?;
        let epoch = if epoch == 0 { current } else { epoch };
        Ok(EkbEpoch {
            epoch,
            revoked: 0,
            subsets: ekb.header().subset_count,
            bytes: ekb.as_bytes().len(),
        })
    }
}
