//! The model pirate box: a decoder built from the traitors' real device keys.

use rand_core::Rng;

use super::{Decoder, Query};
use crate::authority::Authority;
use crate::cover::Subset;
use crate::crypto;
use crate::device::DeviceKeys;
use crate::ekb;
use crate::secret::PayloadKey;
use crate::treemath::LeafIndex;

/// How a [`PirateBox`] picks the subset it uses among those its traitors belong to. This is a
/// *model* of a box, for tests, benchmarks and the simulator: a tracer never knows it, and
/// [`trace`](super::trace) does not ask for it.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum Strategy {
    /// Every one, until one gives the key: the strongest box of the model (it notices a random
    /// key through the verification value and tries the next subset).
    Every,
    /// The first such subset in the header.
    First,
    /// One of them at random, at every query.
    Random,
}

/// A pirate decoder built from the key sets of a coalition of devices (the traitors). It opens
/// a query's subsets with their real keys; when `success < 1` it fails at random even when it
/// could decrypt (a noisy box).
pub struct PirateBox {
    keys: Vec<DeviceKeys>,
    strategy: Strategy,
    success: f64,
    rng: rand_chacha::ChaCha20Rng,
}

impl core::fmt::Debug for PirateBox {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PirateBox")
            .field("traitors", &self.keys.len())
            .field("strategy", &self.strategy)
            .finish_non_exhaustive()
    }
}

impl PirateBox {
    /// A box holding the key sets of the devices at `traitors` (the authority provisions them,
    /// as it provisioned the devices), using `strategy`, decrypting with probability `success`
    /// when it can; its own random choices come from `seed`.
    pub fn new(
        authority: &Authority,
        traitors: &[LeafIndex],
        strategy: Strategy,
        success: f64,
        seed: u64,
    ) -> Self {
        use rand_core::SeedableRng;
        Self {
            keys: traitors.iter().map(|&l| authority.device_keys(l)).collect(),
            strategy,
            success,
            rng: rand_chacha::ChaCha20Rng::seed_from_u64(seed),
        }
    }

    /// What one traitor unwraps from entry `(subset, wrapped)`, if it is the query's key.
    fn open(&self, query: &Query, subset: &Subset, wrapped: &[u8; 16]) -> Option<PayloadKey> {
        let height = self.keys.first().map(|k| k.config().height)?;
        self.keys.iter().find_map(|k| {
            if !subset.contains(k.leaf().node(height)) {
                return None;
            }
            let key = k.subset_key(subset).ok()?;
            let payload = crypto::unwrap(&key, ekb::subset_tweak(subset), wrapped);
            query.accepts(&payload).then_some(payload)
        })
    }
}

impl Decoder for PirateBox {
    fn decrypt(&mut self, query: &Query) -> Option<PayloadKey> {
        if self.success < 1.0 && unit(&mut self.rng) >= self.success {
            return None;
        }
        let height = self.keys.first().map(|k| k.config().height)?;
        let usable: Vec<&(Subset, [u8; 16])> = query
            .entries()
            .iter()
            .filter(|(s, _)| self.keys.iter().any(|k| s.contains(k.leaf().node(height))))
            .collect();
        let chosen = match self.strategy {
            Strategy::First => usable.first().copied(),
            Strategy::Random => {
                let n = usable.len() as u64;
                if n == 0 {
                    None
                } else {
                    usable.get((self.rng.next_u64() % n) as usize).copied()
                }
            }
            Strategy::Every => {
                return usable.iter().find_map(|(s, w)| self.open(query, s, w));
            }
        };
        chosen.and_then(|(s, w)| self.open(query, s, w))
    }
}

/// A uniform number in `[0, 1)`.
fn unit(rng: &mut impl Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}
