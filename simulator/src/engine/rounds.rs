//! Rounds: each user buys and plays what its plan says, in parallel over users.

use super::*;

impl<R: Registry> Engine<'_, R> {
    /// One round: every user makes the purchases planned for it, plays and moves them, with
    /// attacks mixed in; users run in parallel.
    pub(super) fn round(&self, users: &mut [SimUser], round: u32) -> Result<(), SimError> {
        self.bar("round", users.len() as u64);
        self.clock.advance(3_600);
        users.par_iter_mut().enumerate().try_for_each(|(u, user)| {
            self.sampler.sample_if_due(Phase::Rounds, u as u64);
            let r = self.user_round(u as u64, user, round);
            self.progress.inc(1);
            r
        })
    }

    pub(super) fn user_round(
        &self,
        u: u64,
        user: &mut SimUser,
        round: u32,
    ) -> Result<(), SimError> {
        let mut rng = rng(
            self.cfg.seed,
            Purpose::Round,
            u * u64::from(self.cfg.rounds) + u64::from(round),
        );
        let mut session = Session::new(self.cfg, u, user.clients.len());
        for h in 0..user.holdings.len() {
            if user.holdings.get(h).is_none_or(|x| x.round != round) {
                continue;
            }
            if !self.purchase(u, user, h, &mut session, &mut rng)? {
                continue;
            }
            let (plays, moves) = user.holdings.get(h).map_or((0, 0), |x| (x.plays, x.moves));
            let before = plays.div_ceil(2);
            for _ in 0..before {
                self.play(u, user, h, &mut session, true)?;
            }
            for _ in 0..moves {
                self.move_once(u, user, h, &mut session, &mut rng)?;
            }
            for _ in before..plays {
                self.play(u, user, h, &mut session, true)?;
            }
        }
        session.finish(user, Some(round));
        Ok(())
    }

    /// The purchase of holding `h`: download, license request, license supply, acquisition.
    /// Returns whether it was bought (a revoked buyer is skipped).
    pub(super) fn purchase(
        &self,
        u: u64,
        user: &mut SimUser,
        h: usize,
        session: &mut Session<'_>,
        rng: &mut rand_chacha::ChaCha8Rng,
    ) -> Result<bool, SimError> {
        let Some(holding) = user.holdings.get(h).cloned() else {
            return Ok(false);
        };
        let Some(sim) = user.clients.get(usize::from(holding.holder)) else {
            return Err(SimError::Internal("holder index"));
        };
        if sim.revoked {
            return Ok(false);
        }
        let t = Instant::now();
        let content = self.content(holding.content)?;
        let user_id = user.id;
        let client = session.client(self, user, holding.holder)?;
        let ekb = self.current_ekb()?;
        client.store_verified_ekb(ekb)?;
        client.store_content(content.container.clone())?;
        self.distributor.supply_content(user_id, content.id)?;
        let request = client.license_request(content.id, self.clock_now());
        let license = self.distributor.supply_license(request.as_bytes())?;
        client.acquire_license(license.as_bytes())?;
        let license_id = client.license_id(content.id);
        self.ops.add(Op::Purchase, 1, t.elapsed());
        if let Some(x) = user.holdings.get_mut(h) {
            x.license = license_id;
        }
        if self.attack_now(rng) {
            self.copy_attack(u, user, h, license.as_bytes(), session, rng)?;
        }
        Ok(true)
    }

    /// A play of holding `h` by its holder: real decryption, compared with the original.
    /// `workload` plays are counted as operations; the final checks' plays are not.
    pub(super) fn play(
        &self,
        u: u64,
        user: &mut SimUser,
        h: usize,
        session: &mut Session<'_>,
        workload: bool,
    ) -> Result<(), SimError> {
        let Some(holding) = user.holdings.get(h).cloned() else {
            return Ok(());
        };
        let t = Instant::now();
        let content = self.content(holding.content)?;
        let client = session.device(self, user, holding.holder)?;
        let mut out = Vec::with_capacity(content.plain.len());
        let result = client.play(content.id, &mut out);
        if workload {
            self.ops.add(Op::Play, 1, t.elapsed());
        }
        let ok = result.is_ok() && out[..] == content.plain[..];
        self.tally.check(Invariant::PlaySucceeds, ok, u, || {
            format!(
                "user {u}: {} cannot play {}: {result:?}",
                sim_name(user, holding.holder),
                content.id
            )
        });
        Ok(())
    }
}
