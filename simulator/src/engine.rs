//! The run: registration, rounds of purchases, plays and moves on all cores, revocations
//! between rounds, and the final checks. Everything goes through the real library.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use rand_core::Rng;
use rayon::prelude::*;
use treecast_device::{Client, ClientState, Device, MovePackage};
use treecast_distributor::{Distributor, DistributorConfig, LicenseServer, Tariff};
use treecast_keytree::{
    Authority, LeafIndex, MasterSecret, TreeConfig, TreeHeight, TreeId, VerifiedEkbBuf,
};
use treecast_protocol::{
    ClientId, ContentId, Error, LicenseId, ManualClock, ReleaseKey, ServerId, ServerKeys, UnixTime,
    UserId,
};
use treecast_registry::{Registry, audit_report};

use crate::SimError;
use crate::bound::{Phase, PhaseSamples, Sampler};
use crate::config::SimConfig;
use crate::invariants::{Attack, Invariant, Tally};
use crate::report::EkbEpoch;
use crate::workload::{MoveSpread, Popularity, Purpose, UserPlan, below, rng, unit};

mod checks;
mod moves;
mod piracy;
mod register;
mod revocation;
mod rounds;
mod session;

pub(crate) use session::Session;

/// Prices, in cents: a license and a copy certificate cost differently (claims 7, 8).
pub(crate) const LICENSE_PRICE: u64 = 300;
pub(crate) const CERTIFICATE_PRICE: u64 = 50;

/// The simulated start time.
const START: UnixTime = UnixTime(1_800_000_000);

/// A client as the simulator keeps it between actions: its identity, its signing key while the
/// client will buy, and its saved state. When it acts, its device key set
/// is re-provisioned by the authority, and a signing key it does not keep is derived from its
/// seed, which the workload draws again (once per user and round, see [`Session`]).
///
/// Its ID and leaf are its saved state's (a client in use is asked for neither).
pub(crate) struct SimClient {
    key: Option<Box<SigningKey>>,
    state: Option<ClientState>,
    revoked: bool,
}

impl SimClient {
    fn saved(&self) -> Result<&ClientState, SimError> {
        self.state
            .as_ref()
            .ok_or(SimError::Internal("a client in use has no saved state"))
    }

    /// The client's ID.
    pub(crate) fn id(&self) -> Result<ClientId, SimError> {
        Ok(self.saved()?.id())
    }

    /// The client's leaf in a tree of height `height`.
    pub(crate) fn leaf(&self, height: TreeHeight) -> Result<LeafIndex, SimError> {
        Ok(LeafIndex::new(self.saved()?.leaf(), height)?)
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
    /// The pirate boxes traced.
    pub(crate) piracy: piracy::Piracy,
    /// The unit costs sampled during registration and the rounds.
    pub(crate) samples: [PhaseSamples; 2],
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
    progress: crate::progress::Meter,
    /// Samples the crypto's unit costs as the run goes (`bound.rs`).
    sampler: Sampler,
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
        )?;
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
        let progress = crate::progress::Meter::new(cfg.progress);
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
            sampler: Sampler::new(cfg.content_size),
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
        let mut piracy = piracy::Piracy::default();
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
            if round == self.cfg.rounds / 2 {
                // Mid-run, the pirate boxes appear and are traced.
                piracy = self.pirate_boxes(&mut users, &mut ekbs, &mut revoked_leaves)?;
            }
            revoke_secs += t.elapsed().as_secs_f64();
        }
        phases.push(("rounds", round_secs));
        phases.push(("revocations", revoke_secs));
        rss.push(("rounds", crate::report::rss_bytes()));
        let t = Instant::now();
        let ledger_total = self.final_checks(&mut users)?;
        phases.push(("final_checks", t.elapsed().as_secs_f64()));
        rss.push(("final_checks", crate::report::rss_bytes()));
        self.progress.finish();
        let Self {
            tally,
            ops,
            sampler,
            ..
        } = self;
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
            piracy,
            samples: sampler.finish(),
        })
    }

    pub(super) fn bar(&self, message: &'static str, len: u64) {
        self.progress.phase(message, len);
    }

    /// Takes a client out of storage: its saved state, its keys re-provisioned by the authority,
    /// and `signing_key`.
    pub(super) fn restore(
        &self,
        c: &mut SimClient,
        signing_key: SigningKey,
    ) -> Result<Client, SimError> {
        let device = self.restore_device(c)?;
        Client::from_device(device, signing_key).map_err(|(e, _)| SimError::from(e))
    }

    /// Client `c`'s device, restored without its signing key.
    pub(super) fn restore_device(&self, c: &mut SimClient) -> Result<Device, SimError> {
        let leaf = c.leaf(self.cfg.height)?;
        let state = c
            .state
            .take()
            .ok_or(SimError::Internal("a client is acting twice"))?;
        Ok(Device::restore(
            self.authority.device_keys(leaf),
            Arc::clone(&self.server_keys),
            self.authority.verifying_key(),
            state,
        )?)
    }

    pub(super) fn current_ekb(&self) -> Result<Arc<VerifiedEkbBuf>, SimError> {
        self.ekb
            .read()
            .map(|e| e.clone())
            .map_err(|_| SimError::Internal("EKB lock poisoned"))
    }

    pub(super) fn content(&self, index: u32) -> Result<&Published, SimError> {
        self.contents
            .get(index as usize)
            .ok_or(SimError::Internal("content index"))
    }

    pub(super) fn attack_now(&self, rng: &mut rand_chacha::ChaCha8Rng) -> bool {
        self.cfg.attack_share > 0.0 && unit(rng) < self.cfg.attack_share
    }

    pub(super) fn client_of(&self, user: u64, index: u64) -> Result<ClientId, SimError> {
        self.first_client
            .get(user as usize)
            .map(|first| ClientId(first + index))
            .ok_or(SimError::Internal("user index"))
    }

    pub(super) fn clock_now(&self) -> UnixTime {
        use treecast_protocol::Clock;
        self.clock.now()
    }
}

/// The current epoch's EKB, verified once for all clients.
pub(super) fn verified_current<R: Registry>(
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
pub(super) fn sim_name(user: &SimUser, j: u8) -> String {
    user.clients
        .get(usize::from(j))
        .and_then(|c| c.id().ok())
        .map_or_else(|| format!("client #{j}"), |id| id.to_string())
}
