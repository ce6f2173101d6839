//! What a simulation runs: the population, the workload, the tree, the store and the seed.

use treecast_keytree::{Scheme, TreeHeight};

use crate::SimError;

pub use treecast_registry::StoreSpec;

/// A simulation's parameters. [`SimConfig::default`] is the README's main job: about a million
/// users and 2.5 million clients.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct SimConfig {
    /// Users.
    pub users: u64,
    /// Each user has 1 to `max_clients` clients, uniformly (2.5 on average for 4).
    pub max_clients: u8,
    /// Contents on sale.
    pub contents: u32,
    /// The Zipf exponent of content popularity (0 is uniform).
    pub zipf_exponent: f64,
    /// The size of each content, in bytes.
    pub content_size: usize,
    /// Purchases (licenses bought), spread evenly over users.
    pub purchases: u64,
    /// Plays, spread evenly over purchases.
    pub plays: u64,
    /// Moves, spread evenly over purchases (a purchase of a user with one client is not moved).
    pub moves: u64,
    /// Clients revoked, in equal batches after each round.
    pub revocations: u64,
    /// Rounds: every purchase happens in one of them, and revocations come between them.
    pub rounds: u32,
    /// The key-tree scheme.
    pub scheme: Scheme,
    /// The key-tree height.
    pub height: TreeHeight,
    /// The registry.
    pub store: StoreSpec,
    /// The seed of everything random.
    pub seed: u64,
    /// Worker threads; 0 is one per core.
    pub threads: usize,
    /// The share of operations followed by an attack, 0 to 1.
    pub attack_share: f64,
    /// License servers.
    pub servers: u32,
    /// Pirate boxes built from coalitions of 1 to 4 clients after the middle round, each
    /// traced and its traitors revoked (issue 16).
    pub pirate_boxes: u32,
    /// How to show progress on stderr.
    pub progress: crate::Progress,
    /// The pirate-evolution experiment to run after the workload (issue 26), if any.
    pub evolution: Option<crate::EvolutionConfig>,
    /// Licenses with time on a population of their own (issue 27), if any.
    pub lifecycle: Option<crate::LifecycleConfig>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            users: 1_000_000,
            max_clients: 4,
            contents: 1_000,
            zipf_exponent: 1.0,
            content_size: 1_024,
            purchases: 1_000_000,
            plays: 1_000_000,
            moves: 250_000,
            revocations: 1_000,
            rounds: 4,
            scheme: Scheme::COMPLETE_SUBTREE,
            height: TreeHeight::new(32).unwrap_or(TreeHeight::AACS),
            store: StoreSpec::Memory,
            seed: 1,
            threads: 0,
            attack_share: 0.01,
            pirate_boxes: 1,
            servers: 2,
            progress: crate::Progress::Off,
            evolution: None,
            lifecycle: None,
        }
    }
}

impl SimConfig {
    /// A small run: `users` users and workload in the default proportions.
    pub fn small(users: u64) -> Self {
        Self {
            users,
            purchases: users,
            plays: users,
            moves: users / 4,
            revocations: (users / 1_000).max(4),
            contents: 100,
            ..Self::default()
        }
    }

    /// Checks the parameters.
    ///
    /// # Errors
    /// [`SimError::Config`] naming the first one out of range.
    pub fn validate(&self) -> Result<(), SimError> {
        let bad = |what: &str| Err(SimError::Config(what.into()));
        if self.users == 0 || self.users > 100_000_000 {
            return bad("users must be 1 to 100 000 000");
        }
        if !(1..=16).contains(&self.max_clients) {
            return bad("max clients must be 1 to 16");
        }
        let clients = self.users.saturating_mul(u64::from(self.max_clients));
        if clients > self.height.leaf_count() {
            return bad("the tree has fewer leaves than users × max clients");
        }
        if self.contents == 0 || self.contents > 1_000_000 {
            return bad("contents must be 1 to 1 000 000");
        }
        if !(0.0..=4.0).contains(&self.zipf_exponent) {
            return bad("the Zipf exponent must be 0 to 4");
        }
        if self.content_size == 0 || self.content_size > 16 << 20 {
            return bad("the content size must be 1 byte to 16 MiB");
        }
        if self.purchases > self.users.saturating_mul(u64::from(self.contents.min(64))) {
            return bad("too many purchases for the users and contents");
        }
        if self.revocations > self.users {
            return bad("at most one revocation per user");
        }
        if self.rounds == 0 || self.rounds > 1_000 {
            return bad("rounds must be 1 to 1 000");
        }
        if !(0.0..=1.0).contains(&self.attack_share) {
            return bad("the attack share must be 0 to 1");
        }
        if self.servers == 0 || self.servers > 64 {
            return bad("servers must be 1 to 64");
        }
        if !matches!(
            self.scheme,
            Scheme::COMPLETE_SUBTREE | Scheme::SUBSET_DIFFERENCE
        ) {
            return bad("the scheme must be cs or sd");
        }
        if let Some(evolution) = &self.evolution {
            evolution.validate()?;
        }
        if let Some(lifecycle) = &self.lifecycle {
            lifecycle.validate()?;
        }
        Ok(())
    }

    /// The number of worker threads this run uses.
    pub fn worker_threads(&self) -> usize {
        if self.threads == 0 {
            std::thread::available_parallelism().map_or(1, usize::from)
        } else {
            self.threads
        }
    }
}

/// `total` split into `parts` as evenly as possible: the share of part `i`.
pub(crate) fn share(total: u64, parts: u64, i: u64) -> u64 {
    if parts == 0 {
        return 0;
    }
    total / parts + u64::from(i < total % parts)
}

/// The first index of part `i` when `total` is split with [`share`].
pub(crate) fn share_start(total: u64, parts: u64, i: u64) -> u64 {
    if parts == 0 {
        return 0;
    }
    i * (total / parts) + i.min(total % parts)
}
