//! Tracing traitors against a pirate decoder, for Complete Subtree and Subset Difference:
//! the subset tracing of Naor, Naor and Lotspiech ("Revocation and Tracing Schemes for
//! Stateless Receivers", 2001, §5.2), made proof-carrying. (Named `traitors`, not `tracing`, so
//! that no reader takes it for the logging crate.)
//!
//! A pirate decoder is a black box built from the keys of some compromised devices (the
//! traitors). Tracing puts *queries* to it: the cover's header with a fresh key wrapped under
//! some subsets (the *real* ones) and random bytes under the others. The box must return the
//! key, and the tracer checks it; a box that answers without the key of a real subset is caught
//! by the check, except with probability `2^-128` per query. So one decrypted query proves that
//! its real subsets hold a traitor, whatever the box does.
//!
//! 1. The real header (every subset real) is put to the box until it decrypts one, or until
//!    `n` misses in a row: then the box decrypts it with a probability below the threshold,
//!    except with probability `(1 − threshold)^n`, and counts as disabled.
//! 2. Otherwise the real half of the subsets is halved: the two halves race, one query each in
//!    turn, until the box decrypts one. The winner holds a traitor (proved) and is halved again,
//!    down to one subset.
//! 3. One subset of one leaf: that leaf is a traitor, and the decrypted query, in which only its
//!    subset was real, is the evidence ([`Evidence`], signed by the authority). The leaf leaves
//!    the cover, and tracing starts again at 1.
//! 4. One subset of more leaves: it is split in two (the *bifurcation property* of both
//!    schemes) and the halves race as in 2.
//!
//! The only statistics is the test in 1, and it decides only when to stop: with the default
//! failure probability of `2^-40`, split over the tests by a union bound, the final cover
//! disables the box except with that probability. No innocent leaf is named or left out of the
//! cover, whatever the box does, for nothing but a decrypted query moves the search. The
//! strategy of [`PirateBox`] models a box for tests; the tracer does not know it.
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
//! let mut pirate = PirateBox::new(&authority, &traitors, Strategy::Random, 0.7, 9);
//! let mut rng = ChaCha20Rng::seed_from_u64(2);
//! let outcome = traitors::trace(
//!     &authority,
//!     &RevocationSet::new(height),
//!     &mut pirate,
//!     &TraceParams::default(),
//!     &mut rng,
//! )?;
//! assert!(outcome.disabled);
//! assert_eq!(outcome.traitors.len(), 2);
//! assert_eq!(outcome.innocent_excluded, 0);
//! for evidence in &outcome.evidence {
//!     evidence.verify(&authority.verifying_key())?;
//! }
//! # Ok(()) }
//! ```

use core::ops::Range;

use rand_core::CryptoRng;

use crate::authority::Authority;
use crate::cover::{Cover, Scheme, Subset};
use crate::crypto;
use crate::ekb::{self, EkbHeader, Profile, VerifiedEkbBuf};
use crate::error::Error;
use crate::revocation::RevocationSet;
use crate::secret::{NodeKey, PayloadKey};
use crate::treemath::{LeafIndex, NodeIndex, TreeHeight};

mod evidence;
pub mod evolution;
mod pirate;

pub use evidence::Evidence;
pub use pirate::{PirateBox, Strategy};

/// One tracing query: the subsets of the current cover, each with its wrapped key (random bytes
/// for the subsets that are not real), and the real payload's verification value.
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
    /// as a device checks an EKB's verification value, and what the tracer checks of the
    /// box's answer).
    pub fn accepts(&self, payload: &PayloadKey) -> bool {
        crypto::verifies(payload, self.epoch, &self.verification)
    }

    /// The query an evidence header carries.
    fn from_ekb(verified: &VerifiedEkbBuf) -> Result<Self, Error> {
        let ekb = verified.get();
        let body = ekb.body();
        let entries = (0..body.len())
            .map(|i| body.entry(i).map_err(Error::from))
            .collect::<Result<_, Error>>()?;
        Ok(Self {
            epoch: verified.header().epoch,
            entries,
            verification: *ekb.verification(),
        })
    }
}

/// A pirate decoder, as tracing sees it: a black box that is given a header and answers with
/// a key, or nothing. The tracer checks the key; a wrong one counts as nothing.
pub trait Decoder {
    /// The key the box recovers from `query`, if any.
    fn decrypt(&mut self, query: &Query) -> Option<PayloadKey>;
}

/// The parameters of a trace.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct TraceParams {
    /// The box counts as disabled once it decrypts the cover's real header with a probability
    /// below this (the `p` of the paper).
    pub threshold: f64,
    /// The probability, for the whole trace, that the box is declared disabled while it still
    /// decrypts with probability `threshold` or more. Split over the tests by a union bound:
    /// the `i`-th test gets `failure / (i (i + 1))`. No other outcome depends on chance.
    pub failure: f64,
    /// Expert override: misses in a row that make the box count as disabled, instead of the
    /// count `failure` gives. The outcome's `failure` then reports what the count achieves.
    pub samples: Option<u32>,
    /// The most queries a trace may make before it gives up (the outcome then says it did not
    /// disable the box).
    pub max_queries: u64,
}

impl Default for TraceParams {
    /// A threshold of 0.5, a failure probability of `2^-40`, at most 10 million queries.
    fn default() -> Self {
        Self {
            threshold: 0.5,
            failure: DEFAULT_FAILURE,
            samples: None,
            max_queries: 10_000_000,
        }
    }
}

impl TraceParams {
    /// The misses in a row after which the `test`-th disabled test (from 1) declares the box
    /// disabled: the least `n` with `(1 − threshold)^n ≤ failure / (test (test + 1))`, or the
    /// override.
    pub fn misses_for(&self, test: u64) -> u64 {
        if let Some(n) = self.samples {
            return u64::from(n.max(1));
        }
        let t = test.max(1) as f64;
        let share = self.failure / (t * (t + 1.0));
        let n = share.ln() / (1.0 - self.threshold).ln();
        if n.is_finite() && n >= 1.0 {
            n.ceil().min(1e12) as u64
        } else {
            1
        }
    }
}

/// What a trace found and left.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TraceOutcome {
    /// Whether the last test found the box below the threshold on the final cover (wrong with
    /// probability at most `failure`).
    pub disabled: bool,
    /// The traitor leaves named, in the order found; each has its [`Evidence`].
    pub traitors: Vec<LeafIndex>,
    /// The evidence for each named leaf, in the same order.
    pub evidence: Vec<Evidence>,
    /// The final cover: the initial one with the traitors' subsets split and the traitors left
    /// out. Broadcast with it ([`Authority::build_ekb_for_cover`]).
    pub cover: Cover,
    /// The number of subsets of the initial cover.
    pub initial_subsets: usize,
    /// Queries made to the box.
    pub queries: u64,
    /// Subsets split.
    pub splits: u64,
    /// The subsets of more than one leaf that the box decrypted alone (each is proved to hold
    /// a traitor) and that the trace therefore split, in order. A box disabled by a split
    /// rather than by naming its traitor (a query on the halves found nothing) leaves such a
    /// subset's traitor in the cover: the mark of pirate evolution
    /// ([`evolution`]).
    pub proved: Vec<Subset>,
    /// Leaves of the initial cover, not named, that the final cover leaves out (0 unless the
    /// trace gave up).
    pub innocent_excluded: u64,
    /// A bound on the probability that `disabled` is wrong: the sum of `(1 − threshold)^n` over
    /// the tests that declared it (at most `params.failure` without an override).
    pub failure: f64,
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
    let initial = Cover::compute(config.scheme, revoked)?;
    trace_cover(authority, &initial, decoder, params, rng)
}

/// Traces `decoder` starting from `initial`, the cover the distributor broadcasts with now (the
/// final cover of an earlier trace, for instance: a box released after that trace is traced on
/// the cover that disabled its predecessor). [`trace`] starts from the minimal cover of the
/// revoked leaves.
///
/// # Errors
/// [`Error::WrongTree`] when `initial` is for another scheme or height; a key-derivation error.
pub fn trace_cover(
    authority: &Authority,
    initial: &Cover,
    decoder: &mut dyn Decoder,
    params: &TraceParams,
    rng: &mut impl CryptoRng,
) -> Result<TraceOutcome, Error> {
    let config = authority.config();
    if initial.height() != config.height || initial.scheme() != config.scheme {
        return Err(Error::WrongTree);
    }
    let height = config.height;
    let mut tracer = Tracer {
        decoder,
        max_queries: params.max_queries,
        queries: 0,
        epoch: EVIDENCE_EPOCH,
    };
    // Each subset with its key, derived once: a query wraps a fresh payload under every real
    // key, and only a split changes them.
    let mut cover: Vec<(Subset, NodeKey)> = initial
        .subsets()
        .iter()
        .map(|s| Ok((*s, authority.subset_key(s)?)))
        .collect::<Result<_, Error>>()?;
    // In the order the splits keep, so that a split's halves take its place.
    sort_preorder(&mut cover, height);
    let mut traitors = Vec::new();
    let mut evidence = Vec::new();
    let mut proved = Vec::new();
    let (mut splits, mut tests, mut failure) = (0, 0, 0.0);
    let disabled = 'trace: loop {
        if cover.is_empty() {
            break true;
        }
        // 1) Is the box still above the threshold?
        tests += 1;
        let misses = params.misses_for(tests);
        let Some(mut hit) = tracer.test(&cover, misses, rng)? else {
            if tracer.out_of_budget() {
                break false;
            }
            failure += (1.0 - params.threshold).powf(misses as f64);
            break true;
        };
        // 2) Halve the real range until one subset is left; 3) and 4).
        let mut real = 0..cover.len();
        loop {
            let arms = if real.len() > 1 {
                let mid = real.start + real.len() / 2;
                [real.start..mid, mid..real.end]
            } else {
                let at = real.start;
                let Some(&(found, _)) = cover.get(at) else {
                    return Err(Error::Internal("tracing lost its subset"));
                };
                if found.leaf_count(height) == 1 {
                    let leaf = only_leaf(&found, height)?;
                    evidence.push(Evidence::new(
                        leaf,
                        hit.sign(authority)?,
                        authority.signer(),
                        hit.recovered,
                        hit.trials,
                    )?);
                    traitors.push(leaf);
                    cover.remove(at);
                    continue 'trace;
                }
                let (a, b) = split(&found, config.scheme, height)?;
                proved.push(found);
                let keyed = [
                    (a, authority.subset_key(&a)?),
                    (b, authority.subset_key(&b)?),
                ];
                cover.splice(at..=at, keyed);
                sort_preorder(&mut cover, height);
                splits += 1;
                let (Some(i), Some(j)) = (position(&cover, &a), position(&cover, &b)) else {
                    return Err(Error::Internal("tracing lost a half"));
                };
                [i..i + 1, j..j + 1]
            };
            match tracer.race(&cover, arms, rng)? {
                Race::Won(winner, won) => (real, hit) = (winner, won),
                // Neither arm won in `STALL` rounds (a box that needs more than one real
                // subset, or bad luck): start again from the test; nothing proved is lost.
                Race::Stalled => continue 'trace,
                Race::OutOfBudget => break 'trace false,
            }
        }
    };
    let leaves = |subsets: &mut dyn Iterator<Item = &Subset>| -> u64 {
        subsets.map(|s| s.leaf_count(height)).sum()
    };
    let innocent_excluded = leaves(&mut initial.subsets().iter())
        .saturating_sub(traitors.len() as u64)
        .saturating_sub(leaves(&mut cover.iter().map(|(s, _)| s)));
    Ok(TraceOutcome {
        disabled,
        traitors,
        evidence,
        cover: Cover::from_subsets(
            config.scheme,
            height,
            cover.into_iter().map(|(s, _)| s).collect(),
        ),
        initial_subsets: initial.len(),
        queries: tracer.queries,
        splits,
        proved,
        innocent_excluded,
        failure,
    })
}

/// A query the box decrypted, with the key it gave and the queries its arm took.
struct Hit {
    query: Query,
    recovered: PayloadKey,
    trials: u64,
}

impl Hit {
    /// The query as an EKB signed by the authority: the evidence header.
    fn sign(&self, authority: &Authority) -> Result<ekb::SignedEkb, Error> {
        let config = *authority.config();
        let subset_count = u32::try_from(self.query.entries.len())
            .ok()
            .filter(|&n| n <= ekb::MAX_SUBSETS)
            .ok_or(Error::TooLarge("subset count"))?;
        let header = EkbHeader {
            config,
            profile: Profile::NATIVE,
            epoch: self.query.epoch,
            subset_count,
        };
        ekb::assemble(header, self.query.verification, authority.signer(), |out| {
            for (subset, wrapped) in &self.query.entries {
                ekb::encode_entry(out, config.scheme, subset, wrapped);
            }
            Ok(())
        })
    }
}

/// How a race ended.
enum Race {
    /// The box decrypted a query with only this arm real.
    Won(Range<usize>, Hit),
    /// Neither arm in [`STALL`] rounds.
    Stalled,
    /// The trace's query budget ran out.
    OutOfBudget,
}

struct Tracer<'a> {
    decoder: &'a mut dyn Decoder,
    max_queries: u64,
    queries: u64,
    epoch: u64,
}

impl Tracer<'_> {
    fn out_of_budget(&self) -> bool {
        self.queries >= self.max_queries
    }

    /// The real header, until the box decrypts it or misses `misses` times in a row (or the
    /// budget ends).
    fn test(
        &mut self,
        cover: &[(Subset, NodeKey)],
        misses: u64,
        rng: &mut impl CryptoRng,
    ) -> Result<Option<Hit>, Error> {
        for trial in 1..=misses {
            if self.out_of_budget() {
                return Ok(None);
            }
            if let Some((query, recovered)) = self.ask(cover, 0..cover.len(), rng)? {
                return Ok(Some(Hit {
                    query,
                    recovered,
                    trials: trial,
                }));
            }
        }
        Ok(None)
    }

    /// Queries with `arms[0]` real, then `arms[1]`, in turn, until the box decrypts one: that
    /// arm and its query.
    fn race(
        &mut self,
        cover: &[(Subset, NodeKey)],
        arms: [Range<usize>; 2],
        rng: &mut impl CryptoRng,
    ) -> Result<Race, Error> {
        for trials in 1..=STALL {
            if self.out_of_budget() {
                return Ok(Race::OutOfBudget);
            }
            for arm in &arms {
                if let Some((query, recovered)) = self.ask(cover, arm.clone(), rng)? {
                    let hit = Hit {
                        query,
                        recovered,
                        trials,
                    };
                    return Ok(Race::Won(arm.clone(), hit));
                }
            }
        }
        Ok(Race::Stalled)
    }

    /// One query with the subsets at `real` real and the others random; the query and the key
    /// when the box returns the right one.
    fn ask(
        &mut self,
        cover: &[(Subset, NodeKey)],
        real: Range<usize>,
        rng: &mut impl CryptoRng,
    ) -> Result<Option<(Query, PayloadKey)>, Error> {
        let query = self.query(cover, &real, rng)?;
        self.queries += 1;
        let answer = self.decoder.decrypt(&query);
        Ok(answer.filter(|k| query.accepts(k)).map(|k| (query, k)))
    }

    /// A query with a fresh payload key.
    fn query(
        &mut self,
        cover: &[(Subset, NodeKey)],
        real: &Range<usize>,
        rng: &mut impl CryptoRng,
    ) -> Result<Query, Error> {
        let mut bytes = [0u8; 16];
        rng.fill_bytes(&mut bytes);
        let payload = PayloadKey::from_bytes(bytes);
        self.epoch = self
            .epoch
            .checked_add(1)
            .ok_or(Error::Internal("tracing ran out of epochs"))?;
        let mut entries = Vec::with_capacity(cover.len());
        for (i, (subset, key)) in cover.iter().enumerate() {
            let wrapped = if real.contains(&i) {
                crypto::wrap(key, ekb::subset_tweak(subset), &payload)
            } else {
                let mut random = [0u8; 16];
                rng.fill_bytes(&mut random);
                random
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

/// Where `subset` sits in the cover.
fn position(cover: &[(Subset, NodeKey)], subset: &Subset) -> Option<usize> {
    cover.iter().position(|(s, _)| s == subset)
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

/// Sorts subsets as an EKB lists them ([`preorder_key`]).
fn sort_preorder(cover: &mut [(Subset, NodeKey)], height: TreeHeight) {
    cover.sort_by_key(|(s, _)| preorder_key(s, height));
}

/// Where an EKB lists a subset: by its top node in preorder, and two subsets with the same top
/// (the halves of a split subtree) by their `v` in preorder.
fn preorder_key(subset: &Subset, height: TreeHeight) -> (u64, u64) {
    let v = match *subset {
        Subset::Difference { v, .. } => v.preorder_key(height),
        Subset::Complete(_) => 0,
    };
    (subset.top().preorder_key(height), v)
}

/// `2^-40`: the default failure probability of a trace.
const DEFAULT_FAILURE: f64 = 1.0 / 1_099_511_627_776.0;

/// Rounds of a race (a query per arm each) before the tracer starts again from the test. A box
/// of the model decrypts a query whose real half holds its subset with probability at least
/// `success / t`, so at `success = 0.6` and `t = 16` a race stalls with probability below
/// `(1 − 0.0375)^256 < 10^-4`; a stall costs queries, never a wrong name.
const STALL: u64 = 256;

/// The first query epoch: the top bit set, so no query or evidence header has the epoch of a
/// broadcast EKB.
const EVIDENCE_EPOCH: u64 = 1 << 63;

#[cfg(test)]
mod tests;
