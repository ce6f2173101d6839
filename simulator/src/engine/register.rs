//! Registration: users and their clients, in user order, a chunk at a time: a chunk's
//! certificates are signed in one batch on every thread while the next chunk's keys are made.

use treecast_distributor::NewClient;
use treecast_protocol::Registration;

use super::*;

impl<R: Registry> Engine<'_, R> {
    /// Registers every user and client, in user order so that IDs and leaves do not depend on
    /// threads. Client keys for the next chunk of users are made on the other threads while a
    /// chunk is registered.
    pub(super) fn register(&mut self) -> Result<Vec<SimUser>, SimError> {
        const CHUNK: u64 = 1024;
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
        let mut start = 0;
        while start < cfg.users {
            let registered = self.register_chunk(start, plan_chunk(start))?;
            for user in registered {
                let first = user.clients.first().map(SimClient::id).transpose()?;
                first_client.push(first.map_or(0, |id| id.0));
                users.push(user);
            }
            let following = start + CHUNK;
            self.progress.inc(following.min(cfg.users) - start);
            start = following;
        }
        self.first_client = first_client;
        Ok(users)
    }

    /// Registers one chunk of users, in user order: the users one by one, then all their
    /// clients in one batch (`Distributor::register_clients`, whose certificates are signed on
    /// every thread), then each client's state, user by user on every thread.
    fn register_chunk(
        &self,
        start: u64,
        chunk: Vec<(UserPlan, Vec<SigningKey>)>,
    ) -> Result<Vec<SimUser>, SimError> {
        let t = Instant::now();
        let ids = chunk
            .iter()
            .map(|_| self.distributor.register_user())
            .collect::<Result<Vec<UserId>, Error>>()?;
        let batch: Vec<NewClient> = chunk
            .iter()
            .zip(&ids)
            .enumerate()
            .flat_map(|(i, ((_, keys), &user))| {
                let u = start + i as u64;
                keys.iter().enumerate().map(move |(j, key)| NewClient {
                    user,
                    server: ServerId(1 + ((u + j as u64) % u64::from(self.cfg.servers)) as u32),
                    public_key: key.verifying_key(),
                })
            })
            .collect();
        let clients = batch.len() as u64;
        let mut registrations = self.distributor.register_clients(&batch).into_iter();
        // Each user's registrations, in order, beside its plan and keys.
        let mut per_user = Vec::with_capacity(chunk.len());
        for ((plan, keys), id) in chunk.into_iter().zip(ids) {
            let mine: Vec<Registration> = registrations
                .by_ref()
                .take(keys.len())
                .collect::<Result<_, Error>>()?;
            per_user.push((plan, keys, id, mine));
        }
        let users = per_user
            .into_par_iter()
            .enumerate()
            .map(|(i, (plan, keys, id, mine))| {
                self.sampler
                    .sample_if_due(Phase::Registration, start + i as u64);
                self.sim_user(plan, keys, id, mine)
            })
            .collect::<Result<Vec<SimUser>, SimError>>()?;
        self.ops.add(Op::Register, clients, t.elapsed());
        Ok(users)
    }

    /// A registered user as the simulator keeps it: its clients' states, the signing keys of
    /// those that will buy, and its planned purchases.
    fn sim_user(
        &self,
        plan: UserPlan,
        keys: Vec<SigningKey>,
        id: UserId,
        registrations: Vec<Registration>,
    ) -> Result<SimUser, SimError> {
        if registrations.len() != keys.len() {
            return Err(SimError::Internal("a registration per client"));
        }
        let buyers: Vec<bool> = (0..keys.len())
            .map(|j| plan.purchases.iter().any(|p| usize::from(p.client) == j))
            .collect();
        let mut clients = Vec::with_capacity(keys.len());
        for (j, (signing_key, registration)) in keys.into_iter().zip(registrations).enumerate() {
            let key = buyers
                .get(j)
                .copied()
                .unwrap_or(false)
                .then(|| Box::new(signing_key.clone()));
            let state = Client::new(signing_key, registration)?.into_state();
            clients.push(SimClient {
                key,
                state: Some(state),
                revoked: false,
            });
        }
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
