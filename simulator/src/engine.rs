//! The run: registration, rounds of purchases, plays and moves on all cores, revocations
//! between rounds, and the final checks. Everything goes through the real library.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use indicatif::{ProgressBar, ProgressStyle};
use rand_core::Rng;
use rayon::prelude::*;
use treecast_license::keytree::{
    Authority, LeafIndex, MasterSecret, TreeConfig, TreeId, VerifiedEkbBuf,
};
use treecast_license::registry::{Registry, audit};
use treecast_license::{
    Client, ClientId, ClientState, ContentId, Distributor, DistributorConfig, Error, LicenseId,
    LicenseServer, ManualClock, MovePackage, ReleaseKey, ServerId, ServerKeys, Tariff, UnixTime,
    UserId,
};

use crate::SimError;
use crate::config::SimConfig;
use crate::invariants::{Attack, Invariant, Tally};
use crate::workload::{MoveSpread, Popularity, Purpose, UserPlan, below, rng, unit};

/// Prices, in cents: a license and a copy certificate cost differently (claims 7, 8).
pub(crate) const LICENSE_PRICE: u64 = 300;
pub(crate) const CERTIFICATE_PRICE: u64 = 50;

/// The simulated start time.
const START: UnixTime = UnixTime(1_800_000_000);

/// A client as the simulator keeps it between actions: its identity, the 32-byte seed of its
/// signing key, the key itself while the client holds a license or will buy one, and its saved
/// state. When it acts, its device key set is re-provisioned by the authority, and a signing key
/// it does not keep is derived from the seed (once per user and round, see [`Keys`]).
pub(crate) struct SimClient {
    id: ClientId,
    leaf: LeafIndex,
    seed: [u8; 32],
    key: Option<Box<SigningKey>>,
    state: Option<ClientState>,
    revoked: bool,
}

/// The signing keys of one user's clients, derived from their seeds when first needed in a
/// round. An Ed25519 signing key takes 224 bytes with its expanded public key; the seed takes 32,
/// which is what lets millions of clients fit.
pub(crate) struct Keys(Vec<Option<SigningKey>>);

impl Keys {
    fn new(clients: usize) -> Self {
        Self(vec![None; clients])
    }

    /// Client `j`'s signing key: the one it keeps, or one derived from its seed.
    fn get(&mut self, j: usize, c: &SimClient) -> Result<SigningKey, SimError> {
        if let Some(key) = &c.key {
            return Ok((**key).clone());
        }
        let slot = self
            .0
            .get_mut(j)
            .ok_or(SimError::Internal("client index"))?;
        Ok(slot
            .get_or_insert_with(|| SigningKey::from_bytes(&c.seed))
            .clone())
    }

    /// After a user's round: clients that hold a license or will buy one keep their signing
    /// key; the others keep only the seed.
    fn settle(self, user: &mut SimUser, round: u32) {
        for (j, (c, derived)) in user.clients.iter_mut().zip(self.0).enumerate() {
            let holds = c.state.as_ref().is_some_and(ClientState::holds_licenses);
            let will_buy = user
                .holdings
                .iter()
                .any(|h| usize::from(h.holder) == j && h.license.is_none() && h.round > round);
            if holds || will_buy {
                if c.key.is_none() {
                    c.key = derived.map(Box::new);
                }
            } else {
                c.key = None;
            }
        }
    }
}

/// A purchase as it stands: which client holds it under which license.
#[derive(Clone, Debug)]
pub(crate) struct Holding {
    content: u32,
    round: u32,
    plays: u32,
    moves: u32,
    /// The client holding it, as an index into the user's clients.
    holder: u8,
    /// The license, once bought.
    license: Option<LicenseId>,
}

/// A user as the simulator keeps it.
pub(crate) struct SimUser {
    id: UserId,
    clients: Vec<SimClient>,
    holdings: Vec<Holding>,
}

/// A published content: its ID, its container and the bytes a play must give back.
pub(crate) struct Published {
    id: ContentId,
    container: Arc<[u8]>,
    plain: Arc<[u8]>,
}

/// Operation counts and the time spent in each, summed over threads.
#[derive(Debug, Default)]
pub(crate) struct OpStats {
    count: [AtomicU64; OPS],
    nanos: [AtomicU64; OPS],
}

/// The timed operations.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Op {
    Register = 0,
    Purchase = 1,
    Play = 2,
    Move = 3,
    Revoke = 4,
}

pub(crate) const OPS: usize = 5;

impl Op {
    pub(crate) const ALL: [Self; OPS] = [
        Self::Register,
        Self::Purchase,
        Self::Play,
        Self::Move,
        Self::Revoke,
    ];

    pub(crate) const fn name(self) -> &'static str {
        match self {
            Self::Register => "register_client",
            Self::Purchase => "purchase",
            Self::Play => "play",
            Self::Move => "move",
            Self::Revoke => "revoke",
        }
    }
}

impl OpStats {
    fn add(&self, op: Op, n: u64, took: Duration) {
        if let Some(c) = self.count.get(op as usize) {
            c.fetch_add(n, Ordering::Relaxed);
        }
        if let Some(t) = self.nanos.get(op as usize) {
            t.fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
        }
    }

    pub(crate) fn count(&self, op: Op) -> u64 {
        self.count
            .get(op as usize)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    pub(crate) fn seconds(&self, op: Op) -> f64 {
        self.nanos
            .get(op as usize)
            .map_or(0.0, |c| c.load(Ordering::Relaxed) as f64 / 1e9)
    }
}

/// One epoch's EKB, for the report.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct EkbEpoch {
    /// The epoch.
    pub epoch: u64,
    /// Revoked clients so far.
    pub revoked: u64,
    /// Subsets in its cover.
    pub subsets: u32,
    /// Its size in bytes.
    pub bytes: usize,
}

/// What a run leaves behind, before it becomes a report.
pub(crate) struct Outcome {
    pub(crate) tally: Tally,
    pub(crate) ops: OpStats,
    pub(crate) users: u64,
    pub(crate) clients: u64,
    pub(crate) ekbs: Vec<EkbEpoch>,
    pub(crate) revoked_leaves: Vec<u32>,
    pub(crate) phases: Vec<(&'static str, f64)>,
    /// The resident set size after each phase.
    pub(crate) rss: Vec<(&'static str, u64)>,
    pub(crate) ledger_total: u64,
}

/// The simulation's world: the distributor and everything the simulator knows about its users.
pub(crate) struct Engine<'c, R> {
    cfg: &'c SimConfig,
    distributor: Distributor<R>,
    authority: Authority,
    clock: Arc<ManualClock>,
    server_keys: Arc<ServerKeys>,
    contents: Vec<Published>,
    popularity: Popularity,
    /// The verified EKB of the current epoch, shared by every client (verified once).
    ekb: RwLock<Arc<VerifiedEkbBuf>>,
    tally: Tally,
    ops: OpStats,
    /// The first client ID of each user (client IDs are given out in user order).
    first_client: Vec<u64>,
    progress: ProgressBar,
}

impl<'c, R: Registry> Engine<'c, R> {
    /// Sets up the distributor (authority, license servers, tariff, clock) over `registry` and
    /// publishes the contents.
    pub(crate) fn new(cfg: &'c SimConfig, registry: R) -> Result<Self, SimError> {
        let mut setup = rng(cfg.seed, Purpose::Setup, 0);
        let mut master = [0u8; 32];
        setup.fill_bytes(&mut master);
        let config = TreeConfig::new(cfg.scheme, cfg.height, TreeId(cfg.seed));
        let authority = Authority::new(&MasterSecret::from_bytes(master), config)?;
        let servers: Vec<LicenseServer> = (1..=cfg.servers)
            .map(|i| LicenseServer::generate(ServerId(i), &mut setup))
            .collect();
        let server_keys = Arc::new(ServerKeys::new(
            servers.iter().map(|s| (s.id(), s.verifying_key())),
        ));
        let clock = Arc::new(ManualClock::new(START));
        let max_clients = usize::from(cfg.max_clients);
        let distributor = Distributor::new(
            authority.clone(),
            servers,
            registry,
            Tariff::new(LICENSE_PRICE, CERTIFICATE_PRICE),
            clock.clone(),
            DistributorConfig::default().with_max_clients_per_user(max_clients),
        );
        let mut contents = Vec::with_capacity(cfg.contents as usize);
        for _ in 0..cfg.contents {
            let mut plain = vec![0u8; cfg.content_size];
            setup.fill_bytes(&mut plain);
            let mut container = Vec::with_capacity(cfg.content_size + 256);
            let record = distributor.publish(&plain[..], &mut container, &mut setup)?;
            contents.push(Published {
                id: record.id,
                container: container.into(),
                plain: plain.into(),
            });
        }
        let ekb = verified_current(&distributor, &authority)?;
        let progress = if cfg.progress {
            ProgressBar::new(0)
        } else {
            ProgressBar::hidden()
        };
        progress.set_style(
            ProgressStyle::with_template("{msg:>14} [{bar:40}] {pos}/{len} ({per_sec}, {eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        Ok(Self {
            cfg,
            distributor,
            authority,
            clock,
            server_keys,
            contents,
            popularity: Popularity::new(cfg.contents, cfg.zipf_exponent),
            ekb: RwLock::new(ekb),
            tally: Tally::default(),
            ops: OpStats::default(),
            first_client: Vec::new(),
            progress,
        })
    }

    /// The whole run.
    pub(crate) fn run(mut self) -> Result<Outcome, SimError> {
        let mut phases = Vec::new();
        let mut rss = vec![("setup", crate::report::rss_bytes())];
        let t = Instant::now();
        let mut users = self.register()?;
        phases.push(("registration", t.elapsed().as_secs_f64()));
        rss.push(("registration", crate::report::rss_bytes()));
        let clients: u64 = users.iter().map(|u| u.clients.len() as u64).sum();
        let mut ekbs = vec![self.ekb_entry(0)?];
        let mut revoked_leaves = Vec::new();
        let mut round_secs = 0.0;
        let mut revoke_secs = 0.0;
        for round in 0..self.cfg.rounds {
            let t = Instant::now();
            self.round(&mut users, round)?;
            round_secs += t.elapsed().as_secs_f64();
            let t = Instant::now();
            let batch = crate::config::share(
                self.cfg.revocations,
                u64::from(self.cfg.rounds),
                u64::from(round),
            );
            self.revoke(&mut users, round, batch, &mut ekbs, &mut revoked_leaves)?;
            revoke_secs += t.elapsed().as_secs_f64();
        }
        phases.push(("rounds", round_secs));
        phases.push(("revocations", revoke_secs));
        rss.push(("rounds", crate::report::rss_bytes()));
        let t = Instant::now();
        let ledger_total = self.final_checks(&mut users)?;
        phases.push(("final_checks", t.elapsed().as_secs_f64()));
        rss.push(("final_checks", crate::report::rss_bytes()));
        self.progress.finish_and_clear();
        let Self { tally, ops, .. } = self;
        Ok(Outcome {
            tally,
            ops,
            users: users.len() as u64,
            clients,
            ekbs,
            revoked_leaves,
            phases,
            rss,
            ledger_total,
        })
    }

    fn bar(&self, message: &'static str, len: u64) {
        self.progress.set_message(message);
        self.progress.set_length(len);
        self.progress.set_position(0);
    }

    /// Registers every user and client, in user order so that IDs and leaves do not depend on
    /// threads. Client keys for the next chunk of users are made on the other threads while a
    /// chunk is registered.
    fn register(&mut self) -> Result<Vec<SimUser>, SimError> {
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

    fn register_user(
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
        for (j, (signing_key, seed)) in keys.into_iter().zip(plan.key_seeds).enumerate() {
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
                seed,
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

    /// One round: every user makes the purchases planned for it, plays and moves them, with
    /// attacks mixed in; users run in parallel.
    fn round(&self, users: &mut [SimUser], round: u32) -> Result<(), SimError> {
        self.bar("round", users.len() as u64);
        self.clock.advance(3_600);
        users.par_iter_mut().enumerate().try_for_each(|(u, user)| {
            let r = self.user_round(u as u64, user, round);
            self.progress.inc(1);
            r
        })
    }

    fn user_round(&self, u: u64, user: &mut SimUser, round: u32) -> Result<(), SimError> {
        let mut rng = rng(
            self.cfg.seed,
            Purpose::Round,
            u * u64::from(self.cfg.rounds) + u64::from(round),
        );
        let mut keys = Keys::new(user.clients.len());
        for h in 0..user.holdings.len() {
            if user.holdings.get(h).is_none_or(|x| x.round != round) {
                continue;
            }
            if !self.purchase(u, user, h, &mut keys, &mut rng)? {
                continue;
            }
            let (plays, moves) = user.holdings.get(h).map_or((0, 0), |x| (x.plays, x.moves));
            let before = plays.div_ceil(2);
            for _ in 0..before {
                self.play(u, user, h, &mut keys, true)?;
            }
            for _ in 0..moves {
                self.move_once(u, user, h, &mut keys, &mut rng)?;
            }
            for _ in before..plays {
                self.play(u, user, h, &mut keys, true)?;
            }
        }
        keys.settle(user, round);
        Ok(())
    }

    /// Takes a client out of storage: its saved state, its keys re-provisioned by the authority.
    fn restore(&self, c: &mut SimClient, signing_key: SigningKey) -> Result<Client, SimError> {
        let state = c
            .state
            .take()
            .ok_or(SimError::Internal("a client is acting twice"))?;
        Ok(Client::restore(
            signing_key,
            self.authority.device_keys(c.leaf),
            Arc::clone(&self.server_keys),
            self.authority.verifying_key(),
            state,
        )?)
    }

    /// Puts a client back in storage.
    fn park(c: &mut SimClient, client: Client) {
        let mut state = client.into_state();
        state.compact();
        c.state = Some(state);
    }

    fn current_ekb(&self) -> Result<Arc<VerifiedEkbBuf>, SimError> {
        self.ekb
            .read()
            .map(|e| e.clone())
            .map_err(|_| SimError::Internal("EKB lock poisoned"))
    }

    fn content(&self, index: u32) -> Result<&Published, SimError> {
        self.contents
            .get(index as usize)
            .ok_or(SimError::Internal("content index"))
    }

    /// The purchase of holding `h`: download, license request, license supply, acquisition.
    /// Returns whether it was bought (a revoked buyer is skipped).
    fn purchase(
        &self,
        u: u64,
        user: &mut SimUser,
        h: usize,
        keys: &mut Keys,
        rng: &mut rand_chacha::ChaCha8Rng,
    ) -> Result<bool, SimError> {
        let Some(holding) = user.holdings.get(h).cloned() else {
            return Ok(false);
        };
        let Some(sim) = user.clients.get_mut(usize::from(holding.holder)) else {
            return Err(SimError::Internal("holder index"));
        };
        if sim.revoked {
            return Ok(false);
        }
        let t = Instant::now();
        let content = self.content(holding.content)?;
        let key = keys.get(usize::from(holding.holder), sim)?;
        let mut client = self.restore(sim, key)?;
        let ekb = self.current_ekb()?;
        client.store_verified_ekb(ekb)?;
        client.store_content(content.container.clone())?;
        self.distributor.supply_content(user.id, content.id)?;
        let request = client.license_request(content.id, self.clock_now());
        let license = self.distributor.supply_license(request.as_bytes())?;
        client.acquire_license(license.as_bytes())?;
        let license_id = client.license_id(content.id);
        Self::park(sim, client);
        self.ops.add(Op::Purchase, 1, t.elapsed());
        if let Some(x) = user.holdings.get_mut(h) {
            x.license = license_id;
        }
        if self.attack_now(rng) {
            self.copy_attack(u, user, h, license.as_bytes(), keys, rng)?;
        }
        Ok(true)
    }

    /// A play of holding `h` by its holder: real decryption, compared with the original.
    /// `workload` plays are counted as operations; the final checks' plays are not.
    fn play(
        &self,
        u: u64,
        user: &mut SimUser,
        h: usize,
        keys: &mut Keys,
        workload: bool,
    ) -> Result<(), SimError> {
        let Some(holding) = user.holdings.get(h).cloned() else {
            return Ok(());
        };
        let Some(sim) = user.clients.get_mut(usize::from(holding.holder)) else {
            return Err(SimError::Internal("holder index"));
        };
        let t = Instant::now();
        let content = self.content(holding.content)?;
        let key = keys.get(usize::from(holding.holder), sim)?;
        let client = self.restore(sim, key)?;
        let mut out = Vec::with_capacity(content.plain.len());
        let result = client.play(content.id, &mut out);
        Self::park(sim, client);
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

    /// A move of holding `h` to another client of the same user, with the attacks that fit.
    fn move_once(
        &self,
        u: u64,
        user: &mut SimUser,
        h: usize,
        keys: &mut Keys,
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
        let (src_sim, dst_sim) = pair_mut(&mut user.clients, holding.holder, dest)?;
        let src_key = keys.get(usize::from(holding.holder), src_sim)?;
        let dst_key = keys.get(usize::from(dest), dst_sim)?;
        let mut src = self.restore(src_sim, src_key)?;
        let mut dst = self.restore(dst_sim, dst_key)?;
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
                    let refused = self
                        .distributor
                        .supply_certificate(request.as_bytes())
                        .is_err();
                    self.tally.attack(Attack::ReplayedMoveRequest, refused, u);
                }
            }
        }
        if self.attack_now(rng) {
            // A move of the new license to another user's client.
            let other =
                (u + 1 + below(rng, self.cfg.users.saturating_sub(1).max(1))) % self.cfg.users;
            if other != u {
                let target = self.client_of(other, 0)?;
                let cross = dst.move_request(new_license.unwrap_or(license_id), target, now);
                let refused = self
                    .distributor
                    .supply_certificate(cross.as_bytes())
                    .is_err();
                self.tally.attack(Attack::CrossUserMove, refused, u);
            }
        }
        Self::park(src_sim, src);
        Self::park(dst_sim, dst);
        if let Some(x) = user.holdings.get_mut(h) {
            x.holder = dest;
            x.license = new_license;
        }
        Ok(())
    }

    /// After a purchase: another client of the user tries the copied license, and tries to play
    /// the content without one.
    fn copy_attack(
        &self,
        u: u64,
        user: &mut SimUser,
        h: usize,
        license: &[u8],
        keys: &mut Keys,
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
        let Some(sim) = user.clients.get_mut(usize::from(other)) else {
            return Ok(());
        };
        if holds_it {
            return Ok(());
        }
        let content = self.content(holding.content)?;
        let key = keys.get(usize::from(other), sim)?;
        let mut client = self.restore(sim, key)?;
        let copied = client.acquire_license(license).is_err();
        self.tally.attack(Attack::CopiedLicense, copied, u);
        let played = client.play(content.id, std::io::sink()).is_err();
        self.tally.attack(Attack::PlayWithoutLicense, played, u);
        Self::park(sim, client);
        Ok(())
    }

    fn attack_now(&self, rng: &mut rand_chacha::ChaCha8Rng) -> bool {
        self.cfg.attack_share > 0.0 && unit(rng) < self.cfg.attack_share
    }

    fn client_of(&self, user: u64, index: u64) -> Result<ClientId, SimError> {
        self.first_client
            .get(user as usize)
            .map(|first| ClientId(first + index))
            .ok_or(SimError::Internal("user index"))
    }

    fn clock_now(&self) -> UnixTime {
        use treecast_license::Clock;
        self.clock.now()
    }

    /// Revokes `count` clients after round `round`, one epoch each; then checks that every
    /// revoked client is refused by the new EKB and the license server, and that no subset of
    /// the EKB holds a revoked leaf.
    fn revoke(
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
            let epoch = self.distributor.revoke_client(c.id)?;
            c.revoked = true;
            revoked_leaves.push(c.leaf.get());
            done += 1;
            self.ops.add(Op::Revoke, 1, t.elapsed());
            let mut entry = self.ekb_entry(epoch)?;
            entry.revoked = revoked_leaves.len() as u64;
            ekbs.push(entry);
            self.progress.inc(1);
        }
        let ekb = verified_current(&self.distributor, &self.authority)?;
        *self
            .ekb
            .write()
            .map_err(|_| SimError::Internal("EKB lock poisoned"))? = ekb.clone();
        self.check_revoked(users, &ekb, revoked_leaves)
    }

    /// Invariant 2 and the revoked-client attacks.
    fn check_revoked(
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
        let body = treecast_license::keytree::EkbIn::from_bytes(ekb.as_bytes())?;
        let mut holding_revoked = 0u64;
        let mut subsets = 0u64;
        for subset in body.subsets() {
            let subset = subset?;
            subsets += 1;
            let (u, v) = match subset {
                treecast_license::keytree::Subset::Complete(n) => (n, None),
                treecast_license::keytree::Subset::Difference { u, v } => (u, Some(v)),
                _ => return Err(SimError::Internal("unknown subset kind")),
            };
            let inside = |n: treecast_license::keytree::NodeIndex| {
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
                let opened = self.authority.device_keys(sim.leaf).open(&verified);
                let refused = matches!(opened, Err(treecast_license::keytree::Error::Revoked));
                self.tally
                    .attack(Attack::RevokedOpensEkb, refused, u as u64);
                self.tally
                    .check(Invariant::RevokedLockedOut, refused, u as u64, || {
                        format!("revoked client {j} of user {u} opened the EKB: {opened:?}")
                    });
                let key = SigningKey::from_bytes(&sim.seed);
                let mut client = self.restore(sim, key)?;
                let request = client.license_request(content.id, self.clock_now());
                let answer = self.distributor.supply_license(request.as_bytes());
                let refused = matches!(answer, Err(Error::ClientRevoked(_)));
                self.tally
                    .attack(Attack::RevokedLicenseRequest, refused, u as u64);
                Self::park(sim, client);
            }
        }
        Ok(())
    }

    fn ekb_entry(&self, epoch: u64) -> Result<EkbEpoch, SimError> {
        let (current, ekb) = self.distributor.current_ekb()?;
        let epoch = if epoch == 0 { current } else { epoch };
        Ok(EkbEpoch {
            epoch,
            revoked: 0,
            subsets: ekb.header().subset_count,
            bytes: ekb.as_bytes().len(),
        })
    }

    /// At the end: every purchase is held by exactly one client, which plays it unless revoked;
    /// the registry's audit; the history and the ledger against the counts.
    fn final_checks(&self, users: &mut [SimUser]) -> Result<u64, SimError> {
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
        let violations = audit(registry, crate::invariants::KEPT_VIOLATIONS)?;
        self.tally.check(
            Invariant::RegistryAudit,
            violations.is_empty(),
            u64::MAX,
            || violations.join("; "),
        );
        // 4: every certificate moves between clients of one user.
        let history = registry.certificate_history()?;
        let mut owners = registry.client_summaries()?;
        owners.sort_by_key(|c| c.id);
        let owner = |id| {
            owners
                .binary_search_by_key(&id, |c| c.id)
                .ok()
                .and_then(|i| owners.get(i))
                .map(|c| c.user)
        };
        let mut cross = 0u64;
        for h in &history {
            let same = owner(h.source) == Some(h.user) && owner(h.destination) == Some(h.user);
            if !same {
                cross += 1;
            }
        }
        self.tally
            .checked_ok(Invariant::SameUserMoves, history.len() as u64 - cross);
        if cross > 0 {
            self.tally
                .check(Invariant::SameUserMoves, false, u64::MAX, || {
                    format!("{cross} certificates move content between users")
                });
        }
        // 5: the ledger against licenses × price + certificates × price.
        let ledger = registry.ledger()?;
        let total: u64 = ledger.iter().map(|e| e.amount).sum();
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

    fn final_user(&self, u: u64, user: &mut SimUser) -> Result<(), SimError> {
        let mut keys = Keys::new(user.clients.len());
        for h in 0..user.holdings.len() {
            let Some(holding) = user.holdings.get(h).cloned() else {
                continue;
            };
            if holding.license.is_none() {
                continue;
            }
            let content = self.content(holding.content)?;
            // Exactly one of the user's clients holds a license for the content.
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
                self.play(u, user, h, &mut keys, false)?;
            }
        }
        Ok(())
    }
}

/// The current epoch's EKB, verified once for all clients.
fn verified_current<R: Registry>(
    distributor: &Distributor<R>,
    authority: &Authority,
) -> Result<Arc<VerifiedEkbBuf>, SimError> {
    let (_, ekb) = distributor.current_ekb()?;
    Ok(Arc::new(VerifiedEkbBuf::verify(
        ekb.as_bytes().to_vec(),
        &authority.verifying_key(),
    )?))
}

/// Two distinct clients of one user, mutably.
fn pair_mut(
    clients: &mut [SimClient],
    a: u8,
    b: u8,
) -> Result<(&mut SimClient, &mut SimClient), SimError> {
    let (a, b) = (usize::from(a), usize::from(b));
    if a == b {
        return Err(SimError::Internal("a move to the same client"));
    }
    let (lo, hi) = (a.min(b), a.max(b));
    let (left, right) = clients.split_at_mut(hi);
    let (x, y) = match (left.get_mut(lo), right.first_mut()) {
        (Some(x), Some(y)) => (x, y),
        _ => return Err(SimError::Internal("client index")),
    };
    Ok(if a < b { (x, y) } else { (y, x) })
}

fn sim_name(user: &SimUser, j: u8) -> String {
    user.clients
        .get(usize::from(j))
        .map_or_else(|| format!("client #{j}"), |c| c.id.to_string())
}
