//! Pirate boxes (issue 16): a coalition of compromised clients becomes a pirate decoder mid-run;
//! the distributor traces it (`keytree::traitors`), revokes what tracing finds, and from then on
//! every EKB leaves the traitors out (the revocation checks after every later batch prove it).

use super::*;

/// What the pirate boxes of a run came to.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Piracy {
    pub(crate) boxes: u64,
    pub(crate) queries: u64,
    pub(crate) cover_growth: u64,
}

impl<R: Registry> Engine<'_, R> {
    /// Builds `self.cfg.pirate_boxes` boxes from coalitions of 1 to 4 non-revoked clients,
    /// traces each, and revokes the traitors it finds.
    pub(super) fn pirate_boxes(
        &self,
        users: &mut [SimUser],
        ekbs: &mut Vec<EkbEpoch>,
        revoked_leaves: &mut Vec<u32>,
    ) -> Result<Piracy, SimError> {
        use treecast_keytree::traitors::{self, PirateBox, Strategy, TraceParams};

        let mut piracy = Piracy::default();
        let height = self.cfg.height;
        for b in 0..self.cfg.pirate_boxes {
            let mut rng = rng(self.cfg.seed, Purpose::Piracy, u64::from(b));
            let size = 1 + below(&mut rng, 4) as usize;
            // The coalition: distinct non-revoked clients, (user, client) each.
            let mut coalition: Vec<(usize, usize)> = Vec::new();
            let mut tries = 0;
            while coalition.len() < size && tries < 1_000 {
                tries += 1;
                let u = below(&mut rng, users.len() as u64) as usize;
                let Some(user) = users.get(u) else { continue };
                let j = below(&mut rng, user.clients.len() as u64) as usize;
                if user.clients.get(j).is_some_and(|c| !c.revoked) && !coalition.contains(&(u, j)) {
                    coalition.push((u, j));
                }
            }
            let leaves: Vec<LeafIndex> = coalition
                .iter()
                .filter_map(|&(u, j)| users.get(u)?.clients.get(j))
                .map(|c| c.leaf(height))
                .collect::<Result<_, _>>()?;
            if leaves.is_empty() {
                continue;
            }
            // The box's model, which the tracer does not know (issue 26): the strongest box,
            // a randomised one or one that uses the first subset it can open; half of them
            // noisy, decrypting with probability 0.6 to 1.0.
            let strategy = match below(&mut rng, 3) {
                0 => Strategy::Every,
                1 => Strategy::Random,
                _ => Strategy::First,
            };
            let success = if below(&mut rng, 2) == 0 {
                1.0
            } else {
                0.6 + 0.4 * below(&mut rng, 1001) as f64 / 1000.0
            };
            let mut pirate =
                PirateBox::new(&self.authority, &leaves, strategy, success, rng.next_u64());
            let revoked =
                treecast_keytree::RevocationSet::from_leaves(height, revoked_leaves.clone())?;
            let out = traitors::trace(
                &self.authority,
                &revoked,
                &mut pirate,
                &TraceParams::default(),
                &mut rng,
            )?;
            piracy.boxes += 1;
            piracy.queries += out.queries;
            piracy.cover_growth +=
                (out.cover.len() as u64).saturating_sub(out.initial_subsets as u64);
            let mut found: Vec<u32> = out.traitors.iter().map(|l| l.get()).collect();
            let mut expected: Vec<u32> = leaves.iter().map(|l| l.get()).collect();
            found.sort_unstable();
            expected.sort_unstable();
            // Disabled, with no innocent named or excluded; a box that never used a traitor's
            // keys is disabled without naming that traitor, which is all tracing needs.
            let traced = out.disabled
                && !found.is_empty()
                && found.iter().all(|l| expected.binary_search(l).is_ok())
                && out.innocent_excluded == 0;
            self.tally.attack(Attack::PirateBox, traced, u64::from(b));
            // Revoke what tracing found: the clients at those leaves, in one batch (one EKB).
            let mut last = None;
            for &(u, j) in &coalition {
                let Some(c) = users.get_mut(u).and_then(|user| user.clients.get_mut(j)) else {
                    continue;
                };
                let leaf = c.leaf(height)?.get();
                if c.revoked || !found.contains(&leaf) {
                    continue;
                }
                last = Some(self.distributor.revoke_client(c.id()?)?);
                c.revoked = true;
                revoked_leaves.push(leaf);
            }
            if let Some(epoch) = last {
                let mut entry = self.ekb_entry(epoch)?;
                entry.revoked = revoked_leaves.len() as u64;
                ekbs.push(entry);
            }
        }
        let ekb = verified_current(&self.distributor, &self.authority)?;
        *self
            .ekb
            .write()
            .map_err(|_| SimError::Internal("EKB lock poisoned"))? = ekb.clone();
        self.check_revoked(users, &ekb, revoked_leaves)?;
        Ok(piracy)
    }
}
