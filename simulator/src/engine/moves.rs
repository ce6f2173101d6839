//! Moves, and the attacks that fit them and purchases: replayed, tampered, diverted and
//! second certificates, container-less sources, cross-user moves, copied licenses.

use super::*;

impl<R: Registry> Engine<'_, R> {
    /// A move of holding `h` to another client of the same user, with the attacks that fit.
    pub(super) fn move_once(
        &self,
        u: u64,
        user: &mut SimUser,
        h: usize,
        session: &mut Session<'_>,
        rng: &mut rand_chacha::ChaCha8Rng,
    ) -> Result<(), SimError> {
        let Some(holding) = user.holdings.get(h).cloned() else {
            return Ok(());
        };
        let Some(license_id) = holding.license else {
            return Ok(());
        };
        let content = self.content(holding.content)?;
        // A destination: another non-revoked client of the user that does not hold the content.
        let candidates: Vec<u8> = (0..user.clients.len() as u8)
            .filter(|&j| {
                j != holding.holder
                    && user.clients.get(usize::from(j)).is_some_and(|c| !c.revoked)
                    && !user.holdings.iter().any(|x| {
                        x.holder == j && x.content == holding.content && x.license.is_some()
                    })
            })
            .collect();
        let Some(&dest) = candidates.get(below(rng, candidates.len() as u64) as usize) else {
            return Ok(());
        };
        if user
            .clients
            .get(usize::from(holding.holder))
            .is_none_or(|c| c.revoked)
        {
            return Ok(());
        }
        let t = Instant::now();
        let (src, dst) = session.pair(self, user, holding.holder, dest)?;
        let now = self.clock_now();
        let request = src.move_request(license_id, dst.id(), now);
        let certificate = self.distributor.supply_certificate(request.as_bytes())?;
        dst.store_verified_ekb(self.current_ekb()?)?;
        if self.attack_now(rng) {
            // The user diverts the server's reply to the destination; the source never moves
            // out. Without the source's release the destination neither moves in nor plays.
            let forged = MovePackage::new(
                certificate.as_bytes().to_vec(),
                Some(content.container.clone()),
                ReleaseKey::generate(rng),
            );
            let refused_in = dst.move_in(&forged, now).is_err();
            let carried = certificate.tbs().license()?;
            let played = dst.acquire_license(carried.as_bytes()).is_ok()
                && dst.play(content.id, std::io::sink()).is_ok();
            self.tally
                .attack(Attack::DivertedCertificate, refused_in && !played, u);
        }
        let containerless = self.attack_now(rng);
        if containerless {
            // The source deleted its container before the move.
            src.remove_content(content.id);
        }
        let package = src.move_out(certificate.as_bytes())?;
        if containerless {
            // Downloading the container again gives the source nothing to play.
            src.store_content(content.container.clone())?;
            let refused = src.play(content.id, std::io::sink()).is_err();
            self.tally.attack(Attack::ContainerlessSource, refused, u);
            dst.store_content(content.container.clone())?;
        }
        dst.move_in(&package, now)?;
        let new_license = dst.license_id(content.id);
        self.ops.add(Op::Move, 1, t.elapsed());

        if self.attack_now(rng) {
            match below(rng, 4) {
                0 => {
                    // The same certificate again: single use.
                    let refused = dst.move_in(&package, now).is_err();
                    self.tally.attack(Attack::ReplayedCertificate, refused, u);
                }
                1 => {
                    let mut forged = package.clone();
                    let at = below(rng, forged.certificate.len() as u64) as usize;
                    if let Some(b) = forged.certificate.get_mut(at) {
                        *b ^= 1 << below(rng, 8);
                    }
                    let refused = dst.move_in(&forged, now).is_err();
                    self.tally.attack(Attack::TamperedCertificate, refused, u);
                }
                2 => {
                    // The moved-from license, moved again (to the new holder).
                    let again = src.move_request(license_id, dst.id(), now);
                    let refused = self
                        .distributor
                        .supply_certificate(again.as_bytes())
                        .is_err();
                    self.tally.attack(Attack::SecondMove, refused, u);
                }
                _ => {
                    // The same request again: refused, or answered with the very certificate
                    // already used (a retry is safe), which moves nothing a second time: the
                    // source gives the same package again at most (a lost package's retry),
                    // still holds nothing to play, and the destination takes neither package.
                    let harmless = match self.distributor.supply_certificate(request.as_bytes()) {
                        Err(_) => true,
                        Ok(again) => {
                            let given = src.move_out(again.as_bytes());
                            again.as_bytes() == certificate.as_bytes()
                                && given.as_ref().is_ok_and(|p| {
                                    p.content.is_none() && dst.move_in(p, now).is_err()
                                })
                                && src.license_id(content.id).is_none()
                                && src.play(content.id, std::io::sink()).is_err()
                                && dst.move_in(&package, now).is_err()
                        }
                    };
                    self.tally.attack(Attack::ReplayedMoveRequest, harmless, u);
                }
            }
        }
        if self.attack_now(rng) {
            // A move of the new license to another user's client.
            let other =
                (u + 1 + below(rng, self.cfg.users.saturating_sub(1).max(1))) % self.cfg.users;
            if other != u {
                let target = self.client_of(other, 0)?;
                let dst = session.client(self, user, dest)?;
                let cross = dst.move_request(new_license.unwrap_or(license_id), target, now);
                let refused = self
                    .distributor
                    .supply_certificate(cross.as_bytes())
                    .is_err();
                self.tally.attack(Attack::CrossUserMove, refused, u);
            }
        }
        if let Some(x) = user.holdings.get_mut(h) {
            x.holder = dest;
            x.license = new_license;
        }
        Ok(())
    }

    /// After a purchase: another client of the user tries the copied license, and tries to play
    /// the content without one.
    pub(super) fn copy_attack(
        &self,
        u: u64,
        user: &mut SimUser,
        h: usize,
        license: &[u8],
        session: &mut Session<'_>,
        rng: &mut rand_chacha::ChaCha8Rng,
    ) -> Result<(), SimError> {
        let Some(holding) = user.holdings.get(h).cloned() else {
            return Ok(());
        };
        let n = user.clients.len() as u64;
        if n < 2 {
            return Ok(());
        }
        let other = ((u64::from(holding.holder) + 1 + below(rng, n - 1)) % n) as u8;
        let holds_it = user
            .holdings
            .iter()
            .any(|x| x.holder == other && x.content == holding.content && x.license.is_some());
        if holds_it || user.clients.get(usize::from(other)).is_none() {
            return Ok(());
        }
        let content = self.content(holding.content)?;
        let client = session.device(self, user, other)?;
        let copied = client.acquire_license(license).is_err();
        self.tally.attack(Attack::CopiedLicense, copied, u);
        let played = client.play(content.id, std::io::sink()).is_err();
        self.tally.attack(Attack::PlayWithoutLicense, played, u);
        Ok(())
    }
}
