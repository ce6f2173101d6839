//! The workload: who has how many clients, who buys what, when, and what happens to it. Every
//! choice comes from a random stream named by the seed, a purpose and an index, so a user's plan
//! is the same whatever thread computes it.

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use crate::config::{SimConfig, share, share_start};

/// A random stream for one purpose and index.
pub(crate) fn rng(seed: u64, purpose: Purpose, index: u64) -> ChaCha8Rng {
    let mut s = [0u8; 32];
    s[..8].copy_from_slice(&seed.to_le_bytes());
    s[8..16].copy_from_slice(&(purpose as u64).to_le_bytes());
    s[16..24].copy_from_slice(&index.to_le_bytes());
    s[24..].copy_from_slice(b"treecast");
    ChaCha8Rng::from_seed(s)
}

/// The purposes of random streams.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Purpose {
    /// A user's plan and client keys.
    User = 1,
    /// A user's choices in one round (attacks, move destinations); index = user × rounds + round.
    Round = 2,
    /// The revocations after a round; index = round.
    Revocation = 3,
    /// The keys and contents of the distributor.
    Setup = 4,
    /// The pirate boxes; index = box.
    Piracy = 5,
}

/// A uniform draw from `0..n` (`n > 0`), by rejection so it is unbiased.
pub(crate) fn below(rng: &mut ChaCha8Rng, n: u64) -> u64 {
    if n <= 1 {
        return 0;
    }
    let zone = u64::MAX - (u64::MAX % n) - 1;
    loop {
        let x = rng.next_u64();
        if x <= zone {
            return x % n;
        }
    }
}

/// A uniform draw from `[0, 1)`.
pub(crate) fn unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// Content popularity: Zipf with the configured exponent, drawn by binary search in the
/// cumulative weights.
#[derive(Clone, Debug)]
pub(crate) struct Popularity {
    cumulative: Vec<f64>,
}

impl Popularity {
    pub(crate) fn new(contents: u32, exponent: f64) -> Self {
        let mut total = 0.0;
        let cumulative = (1..=contents)
            .map(|rank| {
                total += 1.0 / f64::from(rank).powf(exponent);
                total
            })
            .collect();
        Self { cumulative }
    }

    /// A content index, `0..contents`.
    pub(crate) fn draw(&self, rng: &mut ChaCha8Rng) -> u32 {
        let total = self.cumulative.last().copied().unwrap_or(1.0);
        let x = unit(rng) * total;
        let i = self.cumulative.partition_point(|&c| c <= x);
        i.min(self.cumulative.len().saturating_sub(1)) as u32
    }
}

/// One purchase a user will make, and what follows it in its round.
#[derive(Clone, Debug)]
pub(crate) struct PlannedPurchase {
    /// The content, as an index into the published contents.
    pub(crate) content: u32,
    /// The round it happens in.
    pub(crate) round: u32,
    /// The client that buys it, as an index into the user's clients.
    pub(crate) client: u8,
    /// How many times it is played in its round.
    pub(crate) plays: u32,
    /// How many times it is moved in its round.
    pub(crate) moves: u32,
}

/// A user's plan: clients, the seeds of their signing keys, and purchases.
#[derive(Debug)]
pub(crate) struct UserPlan {
    pub(crate) key_seeds: Vec<[u8; 32]>,
    pub(crate) purchases: Vec<PlannedPurchase>,
}

/// The seed of the signing key of user `u`'s client `j`, drawn again from the user's stream (as
/// [`UserPlan::new`] drew it), so that a client need not keep it: 32 bytes less per client.
pub(crate) fn key_seed(cfg: &SimConfig, u: u64, j: usize) -> [u8; 32] {
    let (mut rng, _) = user_stream(cfg, u);
    let mut s = next_seed(&mut rng);
    for _ in 0..j {
        s = next_seed(&mut rng);
    }
    s
}

/// User `u`'s stream after its first draw, and that draw: how many clients the user has.
fn user_stream(cfg: &SimConfig, u: u64) -> (ChaCha8Rng, u8) {
    let mut rng = rng(cfg.seed, Purpose::User, u);
    let clients = 1 + below(&mut rng, u64::from(cfg.max_clients)) as u8;
    (rng, clients)
}

/// The next key seed of a user's stream.
fn next_seed(rng: &mut ChaCha8Rng) -> [u8; 32] {
    let mut s = [0u8; 32];
    rng.fill_bytes(&mut s);
    s
}

/// How many clients user `u` has: the first draw of its stream.
pub(crate) fn client_count(cfg: &SimConfig, u: u64) -> u8 {
    user_stream(cfg, u).1
}

/// Where moves go: only purchases of users with two clients or more can be moved, so the moves
/// are spread over those purchases. `first[u]` is the index of user `u`'s first such purchase.
#[derive(Debug, Default)]
pub(crate) struct MoveSpread {
    pub(crate) first: Vec<u64>,
    pub(crate) movable: u64,
}

impl MoveSpread {
    pub(crate) fn new(cfg: &SimConfig) -> Self {
        use rayon::prelude::*;
        let counts: Vec<u8> = (0..cfg.users)
            .into_par_iter()
            .map(|u| client_count(cfg, u))
            .collect();
        let mut first = Vec::with_capacity(counts.len());
        let mut movable = 0;
        for (u, &k) in counts.iter().enumerate() {
            first.push(movable);
            if k >= 2 {
                movable += share(cfg.purchases, cfg.users, u as u64);
            }
        }
        Self { first, movable }
    }
}

impl UserPlan {
    /// The plan of user `u` (0-based).
    pub(crate) fn new(
        cfg: &SimConfig,
        popularity: &Popularity,
        spread: &MoveSpread,
        u: u64,
    ) -> Self {
        let (mut rng, clients) = user_stream(cfg, u);
        // The seeds come next in the stream: `key_seed` draws them again.
        let move_first = spread.first.get(u as usize).copied().unwrap_or(0);
        let key_seeds = (0..clients).map(|_| next_seed(&mut rng)).collect();
        let count = share(cfg.purchases, cfg.users, u);
        let first = share_start(cfg.purchases, cfg.users, u);
        let mut chosen: Vec<u32> = Vec::with_capacity(count as usize);
        let purchases = (0..count)
            .map(|k| {
                let content = distinct(popularity, &mut rng, &chosen, cfg.contents);
                chosen.push(content);
                let global = first + k;
                PlannedPurchase {
                    content,
                    round: below(&mut rng, u64::from(cfg.rounds)) as u32,
                    client: below(&mut rng, u64::from(clients)) as u8,
                    plays: share(cfg.plays, cfg.purchases, global) as u32,
                    moves: if clients >= 2 {
                        share(cfg.moves, spread.movable, move_first + k) as u32
                    } else {
                        0
                    },
                }
            })
            .collect();
        Self {
            key_seeds,
            purchases,
        }
    }
}

/// A content the user has not chosen yet: by popularity, or the next free one after a few tries.
fn distinct(popularity: &Popularity, rng: &mut ChaCha8Rng, chosen: &[u32], contents: u32) -> u32 {
    for _ in 0..16 {
        let c = popularity.draw(rng);
        if !chosen.contains(&c) {
            return c;
        }
    }
    let mut c = popularity.draw(rng);
    while chosen.contains(&c) {
        c = (c + 1) % contents;
    }
    c
}
