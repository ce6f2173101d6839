//! Registration: users and their clients, in user order, with key generation for the next
//! chunk on the other core.

use super::*;

impl<R: Registry> Engine<'_, R> {
    /// Registers every user and client, in user order so that IDs and leaves do not depend on
    /// threads. Client keys for the next chunk of users are made on the other threads while a
    /// chunk is registered.
    pub(super) fn register(&mut self) -> Result<Vec<SimUser>, SimError> {
        const CHUNK: u64 = 4096;
        let cfg = self.cfg;
        self.bar("registration", cfg.users);
        let spread = MoveSpread::new(cfg);
        let plan_chunk = |start: u64| -> Vec<(UserPlan, Vec<SigningKey>)> {
            let end = (start + CHUNK).min(cfg.users);
            (start..end)
                .into_par_iter()
                .map(|u| {
                    let plan = UserPlan::new(cfg, &self.popularity, &spread, u);
                    let keys = plan.key_seeds.iter().map(SigningKey::from_bytes).collect();
                    (plan, keys)
                })
                .collect()
        };
        let mut users = Vec::with_capacity(cfg.users as usize);
        let mut first_client = Vec::with_capacity(cfg.users as usize);
        let mut next = plan_chunk(0);
        let mut start = 0;
        while start < cfg.users {
            let chunk = std::mem::take(&mut next);
            let following = start + CHUNK;
            let (registered, planned) = rayon::join(
                || -> Result<Vec<SimUser>, SimError> {
                    chunk
                        .into_iter()
                        .enumerate()
                        .map(|(i, (plan, keys))| self.register_user(start + i as u64, plan, keys))
                        .collect()
                },
                || {
                    if following < cfg.users {
                        plan_chunk(following)
                    } else {
                        Vec::new()
                    }
                },
            );
            for user in registered? {
                first_client.push(user.clients.first().map_or(0, |c| c.id.0));
                users.push(user);
            }
            next = planned;
            self.progress.inc(following.min(cfg.users) - start);
            start = following;
        }
        self.first_client = first_client;
        Ok(users)
    }

    pub(super) fn register_user(
        &self,
        u: u64,
        plan: UserPlan,
        keys: Vec<SigningKey>,
    ) -> Result<SimUser, SimError> {
        let t = Instant::now();
        let id = self.distributor.register_user()?;
        let mut clients = Vec::with_capacity(keys.len());
        let buyers: Vec<bool> = (0..keys.len())
            .map(|j| plan.purchases.iter().any(|p| usize::from(p.client) == j))
            .collect();
        for (j, signing_key) in keys.into_iter().enumerate() {
            let server = ServerId(1 + ((u + j as u64) % u64::from(self.cfg.servers)) as u32);
            let registration =
                self.distributor
                    .register_client(id, server, &signing_key.verifying_key())?;
            let client_id = registration.client_id;
            let leaf = registration.device_keys.leaf();
            let key = buyers
                .get(j)
                .copied()
                .unwrap_or(false)
                .then(|| Box::new(signing_key.clone()));
            let state = Client::new(signing_key, registration)?.into_state();
            clients.push(SimClient {
                id: client_id,
                leaf,
                key,
                state: Some(state),
                revoked: false,
            });
        }
        self.ops
            .add(Op::Register, clients.len() as u64, t.elapsed());
        let holdings = plan
            .purchases
            .into_iter()
            .map(|p| Holding {
                content: p.content,
                round: p.round,
                plays: p.plays,
                moves: p.moves,
                holder: p.client,
                license: None,
            })
            .collect();
        Ok(SimUser {
            id,
            clients,
            holdings,
        })
    }
}
