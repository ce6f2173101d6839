//! Tracing traitors: subset tracing (Naor, Naor and Lotspiech, "Revocation and Tracing Schemes
//! for Stateless Receivers", 2001, §5.2) against a pirate decoder, for Complete Subtree and
//! Subset Difference. (Named `traitors`, not `tracing`, so that no reader takes it for the
//! logging crate.)
//!
//! A pirate decoder is a black box built from the keys of some compromised devices (the
//! traitors). Tracing asks it to decrypt *queries*: the cover's header in which the first `j`
//! subsets carry a random key instead of the real one. Let `p_j` be the probability that the box
//! decrypts query `j`. `p_0` is the box's success rate on a real header, and `p_m` is zero (no
//! subset carries the key). So some step `j` loses at least `p_0 / m`, and the subset `S_j` then
//! holds a traitor: without its key the box does worse. A binary search finds such a `j` in
//! `⌈log2 m⌉` estimates. If `S_j` is one leaf, that leaf is a traitor and leaves the cover;
//! otherwise `S_j` is split in two (both schemes have this *bifurcation property*) and the
//! search starts again. The loop ends when the box decrypts the cover's real header with
//! probability below the threshold: the distributor then broadcasts with that cover.
//!
//! Each query is real: a fresh payload key wrapped under each subset's key (the authority's
//! derivation), random bytes for the disabled subsets, and the payload's verification value.
//! [`PirateBox`] is a box that really holds the traitors' device keys and opens what they open.
//!
//! ```
//! use rand_chacha::ChaCha20Rng;
//! use rand_core::SeedableRng;
//! use treecast_keytree::traitors::{self, PirateBox, Strategy, TraceParams};
//! use treecast_keytree::{Authority, LeafIndex, MasterSecret, RevocationSet, Scheme, TreeConfig, TreeHeight, TreeId};
//! # fn main() -> Result<(), treecast_keytree::Error> {
//! let height = TreeHeight::new(16)?;
//! let authority = Authority::new(
//!     &MasterSecret::from_bytes([1; 32]),
//!     TreeConfig::new(Scheme::COMPLETE_SUBTREE, height, TreeId(1)),
//! )?;
//! let traitors = [LeafIndex::new(5, height)?, LeafIndex::new(40_000, height)?];
//! let mut pirate = PirateBox::new(&authority, &traitors, Strategy::First, 1.0, 9);
//! let mut rng = ChaCha20Rng::seed_from_u64(2);
//! let outcome = traitors::trace(
//!     &authority,
//!     &RevocationSet::new(height),
//!     &mut pirate,
//!     &TraceParams::default(),
//!     &mut rng,
//! )?;
//! assert!(outcome.disabled);
//! assert_eq!(outcome.traitors, traitors);
//! assert_eq!(outcome.innocent_excluded, 0);
//! # Ok(()) }
//! ```

use rand_core::{CryptoRng, Rng};

use crate::authority::Authority;
use crate::cover::{Cover, Scheme, Subset};
use crate::crypto;
use crate::device::DeviceKeys;
use crate::ekb;
use crate::error::Error;
use crate::revocation::RevocationSet;
use crate::secret::{NodeKey, PayloadKey};
use crate::treemath::{LeafIndex, NodeIndex, TreeHeight};

/// One tracing query: the subsets of the current cover, each with its wrapped key (a random one
/// for the disabled subsets), and the real payload's verification value.
#[derive(Debug)]
pub struct Query {
    epoch: u64,
    entries: Vec<(Subset, [u8; 16])>,
    verification: [u8; 16],
}

impl Query {
    /// The subsets and their wrapped keys, in the cover's order.
    pub fn entries(&self) -> &[(Subset, [u8; 16])] {
        &self.entries
    }

    /// Whether `payload` is the query's key (what a decoder that unwrapped something checks,
    /// as a device checks an EKB's verification value).
    pub fn accepts(&self, payload: &PayloadKey) -> bool {
        crypto::verifies(payload, self.epoch, &self.verification)
    }
}

/// A pirate decoder, as tracing sees it: a black box that decrypts a query or does not.
pub trait Decoder {
    /// Whether the box decrypts `query`.
    fn decrypts(&mut self, query: &Query) -> bool;
}

/// How a [`PirateBox`] picks the subset it uses among those its traitors belong to.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum Strategy {
    /// The first such subset in the header.
    First,
    /// One of them at random, at every query.
    Random,
    /// Every one, until one gives the key: the strongest box of the model (it notices a random
    /// key through the verification value and tries the next subset).
    Every,
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

    /// Whether one traitor opens entry `(subset, wrapped)` to the query's key.
    fn opens(&self, query: &Query, subset: &Subset, wrapped: &[u8; 16]) -> bool {
        let height = self.keys.first().map(|k| k.config().height);
        self.keys.iter().any(|k| {
            height.is_some_and(|h| subset.contains(k.leaf().node(h)))
                && k.subset_key(subset).is_ok_and(|key| {
                    query.accepts(&crypto::unwrap(&key, ekb::subset_tweak(subset), wrapped))
                })
        })
    }
}

impl Decoder for PirateBox {
    fn decrypts(&mut self, query: &Query) -> bool {
        if self.success < 1.0 && unit(&mut self.rng) >= self.success {
            return false;
        }
        let Some(height) = self.keys.first().map(|k| k.config().height) else {
            return false;
        };
        let usable: Vec<&(Subset, [u8; 16])> = query
            .entries
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
                return usable.iter().any(|(s, w)| self.opens(query, s, w));
            }
        };
        chosen.is_some_and(|(s, w)| self.opens(query, s, w))
    }
}

/// A uniform number in `[0, 1)`.
fn unit(rng: &mut impl Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// The parameters of a trace.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct TraceParams {
    /// The box counts as disabled once it decrypts the cover's real header with a probability
    /// below this (the `p` of the paper).
    pub threshold: f64,
    /// Queries per probability estimate. One suffices for a deterministic box; for a noisy or
    /// randomised one, [`TraceParams::samples_for`] gives the Hoeffding count for a confidence.
    pub samples: u32,
    /// The most queries a trace may make before it gives up (the outcome then says it did not
    /// disable the box).
    pub max_queries: u64,
}

impl Default for TraceParams {
    /// A threshold of 0.5, one query per estimate, at most 10 million queries.
    fn default() -> Self {
        Self {
            threshold: 0.5,
            samples: 1,
            max_queries: 10_000_000,
        }
    }
}

impl TraceParams {
    /// The queries per estimate for which, by Hoeffding's inequality, each estimate is within
    /// `accuracy` of the true probability with probability at least `1 - failure`:
    /// `⌈ln(2 / failure) / (2 · accuracy²)⌉`. Tracing needs an accuracy near
    /// `threshold / (4 m)` for a cover of `m` subsets.
    pub fn samples_for(accuracy: f64, failure: f64) -> u32 {
        let n = (2.0 / failure).ln() / (2.0 * accuracy * accuracy);
        if n.is_finite() && n >= 1.0 {
            n.ceil().min(f64::from(u32::MAX)) as u32
        } else {
            1
        }
    }
}

/// What a trace found and left.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct TraceOutcome {
    /// Whether the box decrypts the final cover's header with probability below the threshold.
    pub disabled: bool,
    /// The traitor leaves identified (each was a one-leaf subset the box needed), in the order
    /// found.
    pub traitors: Vec<LeafIndex>,
    /// The final cover: the initial one with the traitors' subsets split and the traitors left
    /// out. Broadcast with it ([`Authority::build_ekb_for_cover`]).
    pub cover: Cover,
    /// The number of subsets of the initial cover.
    pub initial_subsets: usize,
    /// Queries made to the box.
    pub queries: u64,
    /// Subsets split.
    pub splits: u64,
    /// Leaves neither revoked before nor found to be traitors that the final cover leaves out.
    pub innocent_excluded: u64,
}

/// Traces `decoder` on the tree of `authority` whose revoked leaves are `revoked`: see the
/// module's documentation. Deterministic for a deterministic box and a seeded `rng`.
///
/// # Errors
/// [`Error::WrongTree`] when `revoked` is for another height; a cover or key-derivation error.
pub fn trace(
    authority: &Authority,
    revoked: &RevocationSet,
    decoder: &mut dyn Decoder,
    params: &TraceParams,
    rng: &mut impl CryptoRng,
) -> Result<TraceOutcome, Error> {
    let config = authority.config();
    if revoked.height() != config.height {
        return Err(Error::WrongTree);
    }
    let height = config.height;
    let initial = Cover::compute(config.scheme, revoked)?;
    let mut tracer = Tracer {
        decoder,
        params,
        queries: 0,
        epoch: 0,
    };
    // Each subset with its key, derived once: a query wraps a fresh payload under every key,
    // and only a split changes them.
    let mut cover: Vec<(Subset, NodeKey)> = initial
        .subsets()
        .iter()
        .map(|s| Ok((*s, authority.subset_key(s)?)))
        .collect::<Result<_, Error>>()?;
    let mut traitors = Vec::new();
    let mut splits = 0;
    let disabled = loop {
        if cover.is_empty() {
            break true;
        }
        let top = tracer.estimate(&cover, 0, rng)?;
        if top < params.threshold {
            break true;
        }
        if tracer.queries >= params.max_queries {
            break false;
        }
        // p_lo − p_hi ≥ (hi − lo) · step holds at every step of the search.
        let m = cover.len();
        let step = top / m as f64;
        let (mut lo, mut hi, mut p_lo) = (0usize, m, top);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            let p_mid = tracer.estimate(&cover, mid, rng)?;
            if p_lo - p_mid >= (mid - lo) as f64 * step {
                hi = mid;
            } else {
                lo = mid;
                p_lo = p_mid;
            }
        }
        // S_hi (1-based) holds a traitor.
        let at = hi - 1;
        let Some(&(found, _)) = cover.get(at) else {
            return Err(Error::Internal("tracing lost its subset"));
        };
        if found.leaf_count(height) == 1 {
            traitors.push(only_leaf(&found, height)?);
            cover.remove(at);
        } else {
            let (a, b) = split(&found, config.scheme, height)?;
            let keyed = [
                (a, authority.subset_key(&a)?),
                (b, authority.subset_key(&b)?),
            ];
            cover.splice(at..=at, keyed);
            sort_preorder(&mut cover, height);
            splits += 1;
        }
    };
    let covered: u64 = cover.iter().map(|(s, _)| s.leaf_count(height)).sum();
    let innocent_excluded = height
        .leaf_count()
        .saturating_sub(revoked.len() as u64)
        .saturating_sub(traitors.len() as u64)
        .saturating_sub(covered);
    Ok(TraceOutcome {
        disabled,
        traitors,
        cover: Cover::from_subsets(
            config.scheme,
            height,
            cover.into_iter().map(|(s, _)| s).collect(),
        ),
        initial_subsets: initial.len(),
        queries: tracer.queries,
        splits,
        innocent_excluded,
    })
}

struct Tracer<'a> {
    decoder: &'a mut dyn Decoder,
    params: &'a TraceParams,
    queries: u64,
    epoch: u64,
}

impl Tracer<'_> {
    /// The box's success rate on queries whose first `disabled` subsets carry random keys.
    fn estimate(
        &mut self,
        cover: &[(Subset, NodeKey)],
        disabled: usize,
        rng: &mut impl CryptoRng,
    ) -> Result<f64, Error> {
        let samples = self.params.samples.max(1);
        let mut hits = 0u32;
        for _ in 0..samples {
            let query = self.query(cover, disabled, rng)?;
            self.queries += 1;
            hits += u32::from(self.decoder.decrypts(&query));
        }
        Ok(f64::from(hits) / f64::from(samples))
    }

    /// A query with a fresh payload key.
    fn query(
        &mut self,
        cover: &[(Subset, NodeKey)],
        disabled: usize,
        rng: &mut impl CryptoRng,
    ) -> Result<Query, Error> {
        let mut bytes = [0u8; 16];
        rng.fill_bytes(&mut bytes);
        let payload = PayloadKey::from_bytes(bytes);
        self.epoch += 1;
        let mut entries = Vec::with_capacity(cover.len());
        for (i, (subset, key)) in cover.iter().enumerate() {
            let wrapped = if i < disabled {
                let mut random = [0u8; 16];
                rng.fill_bytes(&mut random);
                random
            } else {
                crypto::wrap(key, ekb::subset_tweak(subset), &payload)
            };
            entries.push((*subset, wrapped));
        }
        Ok(Query {
            epoch: self.epoch,
            verification: crypto::verification_value(&payload, self.epoch),
            entries,
        })
    }
}

/// The leaf of a one-leaf subset.
fn only_leaf(subset: &Subset, height: TreeHeight) -> Result<LeafIndex, Error> {
    let node = match *subset {
        Subset::Complete(n) => n,
        // S(u, v) with one leaf: u is the leaf's parent and v its sibling.
        Subset::Difference { v, .. } => v.sibling().ok_or(Error::Internal("a root subset"))?,
    };
    let first = node
        .first_leaf(height)
        .ok_or(Error::Internal("a node below the tree"))?;
    LeafIndex::new(
        u32::try_from(first).map_err(|_| Error::Internal("leaf"))?,
        height,
    )
}

/// The bifurcation: a subset of two leaves or more as two disjoint subsets of about half its
/// size each.
///
/// - Complete Subtree: the two child subtrees.
/// - Subset Difference `S(u, v)`, `k` the child of `u` toward `v`: `S(u, k)` (the subtree of
///   `k`'s sibling) and `S(k, v)` when `v` is below `k`; when `v` is `u`'s child, `S(u, v)` is
///   the subtree of `s`, `v`'s sibling, which is `S(s, s_R)` (its left half) and `S(s, s_L)`
///   (its right half). The all-leaves subset is `S(root, L)` and `S(root, R)` likewise.
fn split(subset: &Subset, scheme: Scheme, height: TreeHeight) -> Result<(Subset, Subset), Error> {
    let children = |n: NodeIndex| n.children(height).ok_or(Error::Internal("split a leaf"));
    // A whole subtree under Subset Difference: its halves are S(s, s_R) and S(s, s_L).
    let halves = |s: NodeIndex| -> Result<(Subset, Subset), Error> {
        let (left, right) = children(s)?;
        Ok((
            Subset::Difference { u: s, v: right },
            Subset::Difference { u: s, v: left },
        ))
    };
    match *subset {
        // Subset Difference's all-leaves subset.
        Subset::Complete(n) if scheme == Scheme::SUBSET_DIFFERENCE => halves(n),
        Subset::Complete(n) => {
            let (l, r) = children(n)?;
            Ok((Subset::Complete(l), Subset::Complete(r)))
        }
        Subset::Difference { u, v } => {
            let k = v
                .ancestor(u.depth() + 1)
                .ok_or(Error::Internal("v below u"))?;
            if k == v {
                halves(v.sibling().ok_or(Error::Internal("v is the root"))?)
            } else {
                Ok((
                    Subset::Difference { u, v: k },
                    Subset::Difference { u: k, v },
                ))
            }
        }
    }
}

/// Sorts subsets as an EKB lists them: by their top node in preorder, and two subsets with the
/// same top (the halves of a split subtree) by their `v` in preorder.
fn sort_preorder(cover: &mut [(Subset, NodeKey)], height: TreeHeight) {
    cover.sort_by_key(|(s, _)| {
        let v = match *s {
            Subset::Difference { v, .. } => v.preorder_key(height),
            Subset::Complete(_) => 0,
        };
        (s.top().preorder_key(height), v)
    });
}

#[cfg(test)]
mod tests;
