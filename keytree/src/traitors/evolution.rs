//! Pirate evolution, and a tracer that answers it.
//!
//! Kiayias and Pehlivanoglu ("Pirate Evolution: How to Make the Most of Your Traitor Keys",
//! CRYPTO 2007) observed that subset tracing stops as soon as a box is disabled, and that a box
//! is disabled as soon as the subset it uses is split, long before its traitor is named. A
//! coalition holding the traitors' keys (the *master box*) therefore releases one box after
//! another, each from key material that the cover left by the previous trace still accepts: the
//! key of one subset of that cover which holds a traitor. Each box costs the distributor a trace
//! and a split; the coalition is powerless only when every traitor has been named. Under
//! Complete Subtree that is one box per node of the traitors' Steiner trees ([`generations_without_defence`]),
//! about `t · log2(N / t)`; under Subset Difference about `t · log2 N`.
//!
//! - [`Coalition`] is the evolving pirate: [`Coalition::next_box`] builds the next box, a
//!   [`SubsetBox`] holding one subset key derived from a traitor's own key set.
//! - [`Campaign`] is the distributor tracing box after box, each on the cover the last trace
//!   left ([`trace_cover`]), with a [`Defence`].
//! - [`evolve`] runs a coalition against a campaign until the coalition is powerless.
//!
//! The defence, [`Defence::Deepening`], is a tracer that revokes more aggressively when it sees
//! evolution: a box traced into a piece of a subset that an earlier box was traced into is a
//! coalition evolving, and that piece's halves are split further, one level more each time the
//! lineage evolves again, up to a limit. It trades header size for generations; the trade is
//! measured in `docs/tracing.md`.
//!
//! ```
//! use rand_chacha::ChaCha20Rng;
//! use rand_core::SeedableRng;
//! use treecast_keytree::traitors::TraceParams;
//! use treecast_keytree::traitors::evolution::{self, Defence};
//! use treecast_keytree::{Authority, LeafIndex, MasterSecret, RevocationSet, Scheme, TreeConfig, TreeHeight, TreeId};
//! # fn main() -> Result<(), treecast_keytree::Error> {
//! let height = TreeHeight::new(12)?;
//! let authority = Authority::new(
//!     &MasterSecret::from_bytes([1; 32]),
//!     TreeConfig::new(Scheme::COMPLETE_SUBTREE, height, TreeId(1)),
//! )?;
//! let traitors = [LeafIndex::new(5, height)?, LeafIndex::new(3_000, height)?];
//! let revoked = RevocationSet::new(height);
//! let mut rng = ChaCha20Rng::seed_from_u64(2);
//! let params = TraceParams::default();
//! let plain = evolution::evolve(&authority, &revoked, &traitors, Defence::None, &params, 1_000, &mut rng)?;
//! // One box per node of the traitors' Steiner tree.
//! assert_eq!(plain.generations, evolution::generations_without_defence(&authority, &revoked, &traitors)?);
//! assert!(plain.powerless && plain.every_box_disabled);
//! let deepened = evolution::evolve(
//!     &authority, &revoked, &traitors, Defence::Deepening { max_depth: 4 }, &params, 1_000, &mut rng,
//! )?;
//! assert!(deepened.generations < plain.generations);
//! # Ok(()) }
//! ```

use std::collections::{HashMap, HashSet};

use rand_core::CryptoRng;

use super::{Decoder, Query, TraceOutcome, TraceParams, preorder_key, split, trace_cover};
use crate::authority::Authority;
use crate::cover::{Cover, Scheme, Subset};
use crate::crypto;
use crate::device::DeviceKeys;
use crate::ekb;
use crate::ekb::TreeConfig;
use crate::error::Error;
use crate::revocation::RevocationSet;
use crate::secret::{NodeKey, PayloadKey};
use crate::treemath::{LeafIndex, TreeHeight};

/// A pirate box built from one subset key: it decrypts a header only through that subset's
/// entry (what an evolving coalition releases, one key at a time).
pub struct SubsetBox {
    subset: Subset,
    key: NodeKey,
}

impl core::fmt::Debug for SubsetBox {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SubsetBox")
            .field("subset", &self.subset)
            .finish_non_exhaustive()
    }
}

impl SubsetBox {
    /// The subset whose key the box holds.
    pub fn subset(&self) -> Subset {
        self.subset
    }
}

impl Decoder for SubsetBox {
    fn decrypt(&mut self, query: &Query) -> Option<PayloadKey> {
        let (_, wrapped) = query.entries().iter().find(|(s, _)| *s == self.subset)?;
        let payload = crypto::unwrap(&self.key, ekb::subset_tweak(&self.subset), wrapped);
        query.accepts(&payload).then_some(payload)
    }
}

/// An evolving pirate: the key sets of a coalition of devices, released one subset key at a
/// time (Kiayias and Pehlivanoglu's master box).
pub struct Coalition {
    keys: Vec<DeviceKeys>,
    config: TreeConfig,
}

impl core::fmt::Debug for Coalition {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Coalition")
            .field("traitors", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl Coalition {
    /// The coalition of the devices at `traitors` (the authority provisions their key sets, as
    /// it provisioned the devices).
    ///
    /// # Errors
    /// [`Error::InvalidLeaf`] for a leaf beyond the authority's tree.
    pub fn new(authority: &Authority, traitors: &[LeafIndex]) -> Result<Self, Error> {
        let config = *authority.config();
        let keys = traitors
            .iter()
            .map(|l| Ok(authority.device_keys(LeafIndex::new(l.get(), config.height)?)))
            .collect::<Result<_, Error>>()?;
        Ok(Self { keys, config })
    }

    /// The next box against `cover`: the key of the largest subset of `cover` that holds a
    /// traitor (the first in the cover on a tie), derived from that traitor's own key set. `None`
    /// when no subset holds a traitor: the coalition is powerless.
    ///
    /// # Errors
    /// [`Error::WrongTree`] when `cover` is for another scheme or height; a key-derivation
    /// error.
    pub fn next_box(&self, cover: &Cover) -> Result<Option<SubsetBox>, Error> {
        let height = self.config.height;
        if cover.height() != height || cover.scheme() != self.config.scheme {
            return Err(Error::WrongTree);
        }
        let mut best: Option<(&Subset, &DeviceKeys)> = None;
        for subset in cover.subsets() {
            let holder = self
                .keys
                .iter()
                .find(|k| subset.contains(k.leaf().node(height)));
            if let Some(keys) = holder {
                let larger =
                    best.is_none_or(|(b, _)| subset.leaf_count(height) > b.leaf_count(height));
                if larger {
                    best = Some((subset, keys));
                }
            }
        }
        best.map(|(subset, keys)| {
            Ok(SubsetBox {
                subset: *subset,
                key: keys.subset_key(subset)?,
            })
        })
        .transpose()
    }
}

/// How a [`Campaign`] answers a box that was disabled by a split rather than by naming its
/// traitor.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum Defence {
    /// Naor, Naor and Lotspiech's tracer: a subset proved to hold a traitor is split in two,
    /// and no more.
    None,
    /// A tracer that revokes more aggressively when it sees evolution. Each subset a box was
    /// traced into is split in two, as always; when that subset is itself a piece of a subset
    /// that an earlier box was traced into (the `g`-th box of one lineage), each half is split
    /// again until the pieces lie `min(g, max_depth)` levels below the subset, for up to
    /// `2^min(g, max_depth) − 2` more subsets in the header. A traitor whose subset lies `L`
    /// levels above its leaf then costs about `k + 1` boxes instead of `L + 1`, where `k` is
    /// the least with `k (k + 1) / 2 ≥ L` while `k ≤ max_depth`, and
    /// `max_depth + ⌈(L − max_depth (max_depth + 1) / 2) / max_depth⌉ + 1` beyond (7 instead of
    /// 17 for `L = 16`, `max_depth = 4`).
    Deepening {
        /// The most levels one generation descends (at least 1; 1 is no defence).
        max_depth: u32,
    },
}

impl Defence {
    /// The levels the `g`-th generation of a lineage descends.
    fn depth(self, generation: u32) -> u32 {
        match self {
            Self::None => 1,
            Self::Deepening { max_depth } => generation.min(max_depth.clamp(1, MAX_DEPTH)),
        }
    }
}

/// The most levels [`Defence::Deepening`] descends in one generation. A lineage reaches its
/// `g`-th box only `g (g − 1) / 2` levels down, so on a tree of height 32 no lineage gets
/// beyond 8 (at most `2^8` pieces per split); a larger `max_depth` changes nothing.
pub const MAX_DEPTH: u32 = 8;

/// A distributor tracing box after box, each on the cover the last trace left.
#[derive(Debug)]
pub struct Campaign {
    cover: Cover,
    /// For pieces of split subsets in the cover: how many boxes their lineage has seen.
    lineage: HashMap<Subset, u32>,
    defence: Defence,
    /// The authority the campaign traces for: its tree and its public key.
    config: TreeConfig,
    authority: [u8; 32],
}

impl Campaign {
    /// A campaign on the tree of `authority` whose revoked leaves are `revoked`, starting from
    /// their minimal cover.
    ///
    /// # Errors
    /// [`Error::WrongTree`] when `revoked` is for another height; a cover error.
    pub fn new(
        authority: &Authority,
        revoked: &RevocationSet,
        defence: Defence,
    ) -> Result<Self, Error> {
        let config = authority.config();
        if revoked.height() != config.height {
            return Err(Error::WrongTree);
        }
        Ok(Self {
            cover: Cover::compute(config.scheme, revoked)?,
            lineage: HashMap::new(),
            defence,
            config: *config,
            authority: authority.verifying_key().to_bytes(),
        })
    }

    /// The cover to broadcast with now.
    pub fn cover(&self) -> &Cover {
        &self.cover
    }

    /// Traces `decoder` on the current cover, then applies the defence to the subsets the box
    /// was traced into. The outcome is the trace's; its `cover` is before the defence, and
    /// [`cover`](Self::cover) after.
    ///
    /// # Errors
    /// [`Error::WrongTree`] when `authority` is not the campaign's (another tree or another
    /// key); as [`trace_cover`].
    pub fn trace(
        &mut self,
        authority: &Authority,
        decoder: &mut dyn Decoder,
        params: &TraceParams,
        rng: &mut impl CryptoRng,
    ) -> Result<TraceOutcome, Error> {
        if *authority.config() != self.config
            || authority.verifying_key().to_bytes() != self.authority
        {
            return Err(Error::WrongTree);
        }
        let outcome = trace_cover(authority, &self.cover, decoder, params, rng)?;
        let (scheme, height) = (self.cover.scheme(), self.cover.height());
        let mut subsets = outcome.cover.subsets().to_vec();
        // A half that the same trace proved too (a box with keys on both levels) is a later
        // entry of `proved`; it inherits its parent's generation here, so that a box holding a
        // chain of keys does not restart its lineage.
        let mut inherited: HashMap<Subset, u32> = HashMap::new();
        for proved in &outcome.proved {
            let generation = self
                .lineage
                .remove(proved)
                .or_else(|| inherited.get(proved).copied())
                .unwrap_or(0)
                .saturating_add(1);
            let deeper = self.defence.depth(generation) - 1;
            let (a, b) = split(proved, scheme, height)?;
            for half in [a, b] {
                let Some(at) = subsets.iter().position(|s| *s == half) else {
                    inherited.insert(half, generation);
                    continue;
                };
                let pieces = split_deep(half, deeper, scheme, height)?;
                for piece in &pieces {
                    self.lineage.insert(*piece, generation);
                }
                subsets.splice(at..=at, pieces);
            }
        }
        subsets.sort_by_key(|s| preorder_key(s, height));
        // Named leaves' pieces are gone from the cover; so are their lineages.
        let kept: HashSet<&Subset> = subsets.iter().collect();
        self.lineage.retain(|s, _| kept.contains(s));
        self.cover = Cover::from_subsets(scheme, height, subsets);
        Ok(outcome)
    }
}

/// `subset` split `levels` times over (pieces of one leaf stay whole).
fn split_deep(
    subset: Subset,
    levels: u32,
    scheme: Scheme,
    height: TreeHeight,
) -> Result<Vec<Subset>, Error> {
    let mut pieces = vec![subset];
    for _ in 0..levels {
        let mut next = Vec::with_capacity(pieces.len() * 2);
        for piece in pieces {
            if piece.leaf_count(height) > 1 {
                let (a, b) = split(&piece, scheme, height)?;
                next.extend([a, b]);
            } else {
                next.push(piece);
            }
        }
        pieces = next;
    }
    Ok(pieces)
}

/// What an evolving coalition came to against a campaign.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Evolution {
    /// Boxes the coalition released (and the distributor traced).
    pub generations: u64,
    /// The leaves the traces named, in order.
    pub named: Vec<LeafIndex>,
    /// Whether every box was disabled by its trace.
    pub every_box_disabled: bool,
    /// Whether the coalition ended powerless (no subset of the cover holds a traitor) within
    /// the generation limit.
    pub powerless: bool,
    /// Queries all the traces made.
    pub queries: u64,
    /// Subsets of the first cover.
    pub initial_subsets: usize,
    /// The most subsets a cover had during the campaign.
    pub peak_subsets: usize,
    /// Subsets of the last cover.
    pub final_subsets: usize,
}

/// Runs the coalition of `traitors` against a campaign with `defence` on the tree of
/// `authority` whose revoked leaves are `revoked`, box after box, until the coalition is
/// powerless or `max_generations` boxes have been traced.
///
/// # Errors
/// As [`Coalition::new`], [`Campaign::new`] and [`Campaign::trace`].
pub fn evolve(
    authority: &Authority,
    revoked: &RevocationSet,
    traitors: &[LeafIndex],
    defence: Defence,
    params: &TraceParams,
    max_generations: u64,
    rng: &mut impl CryptoRng,
) -> Result<Evolution, Error> {
    let coalition = Coalition::new(authority, traitors)?;
    let mut campaign = Campaign::new(authority, revoked, defence)?;
    let initial_subsets = campaign.cover().len();
    let mut out = Evolution {
        generations: 0,
        named: Vec::new(),
        every_box_disabled: true,
        powerless: false,
        queries: 0,
        initial_subsets,
        peak_subsets: initial_subsets,
        final_subsets: initial_subsets,
    };
    while out.generations < max_generations {
        let Some(mut pirate) = coalition.next_box(campaign.cover())? else {
            out.powerless = true;
            break;
        };
        let traced = campaign.trace(authority, &mut pirate, params, rng)?;
        out.generations += 1;
        out.queries += traced.queries;
        out.every_box_disabled &= traced.disabled;
        out.peak_subsets = out.peak_subsets.max(campaign.cover().len());
        if traced.traitors.is_empty() && traced.proved.is_empty() {
            // A box the tracer could not move: the next would be the same. (A box of this
            // model always decrypts its own subset, so this is a box the trace gave up on.)
            break;
        }
        out.named.extend(traced.traitors);
    }
    if !out.powerless {
        out.powerless = coalition.next_box(campaign.cover())?.is_none();
    }
    out.final_subsets = campaign.cover().len();
    Ok(out)
}

/// The boxes a coalition releases against the tracer without a defence, counted without
/// tracing: one for each subset of the bifurcation that holds a traitor, starting from the
/// minimal cover of `revoked`. Under Complete Subtree this is Kiayias and Pehlivanoglu's count,
/// the nodes of the traitors' Steiner trees inside the cover's subtrees. Traitors already
/// revoked count for nothing.
///
/// # Errors
/// [`Error::WrongTree`] when `revoked` is for another height; [`Error::InvalidLeaf`] for a
/// traitor beyond the tree; a cover error.
pub fn generations_without_defence(
    authority: &Authority,
    revoked: &RevocationSet,
    traitors: &[LeafIndex],
) -> Result<u64, Error> {
    let config = authority.config();
    if revoked.height() != config.height {
        return Err(Error::WrongTree);
    }
    let height = config.height;
    let nodes = traitors
        .iter()
        .map(|l| Ok(LeafIndex::new(l.get(), height)?.node(height)))
        .collect::<Result<Vec<_>, Error>>()?;
    let mut pending = Cover::compute(config.scheme, revoked)?.subsets().to_vec();
    let mut count = 0u64;
    while let Some(subset) = pending.pop() {
        if !nodes.iter().any(|&n| subset.contains(n)) {
            continue;
        }
        count += 1;
        if subset.leaf_count(height) > 1 {
            let (a, b) = split(&subset, config.scheme, height)?;
            pending.extend([a, b]);
        }
    }
    Ok(count)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::{Rng, SeedableRng};

    use super::*;
    use crate::{MasterSecret, TreeConfig, TreeId};

    fn authority(scheme: Scheme, height: u8) -> Authority {
        let config = TreeConfig::new(scheme, TreeHeight::new(height).unwrap(), TreeId(3));
        Authority::new(&MasterSecret::from_bytes([9; 32]), config).unwrap()
    }

    /// `t` distinct traitors and `r` revoked leaves, disjoint, from `seed`.
    fn draw(height: TreeHeight, t: usize, r: usize, seed: u64) -> (Vec<LeafIndex>, RevocationSet) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut leaves = Vec::new();
        while leaves.len() < t + r {
            let leaf = (rng.next_u64() % height.leaf_count()) as u32;
            if !leaves.contains(&leaf) {
                leaves.push(leaf);
            }
        }
        let traitors = leaves[..t]
            .iter()
            .map(|&l| LeafIndex::new(l, height).unwrap())
            .collect();
        let revoked = RevocationSet::from_leaves(height, leaves[t..].iter().copied()).unwrap();
        (traitors, revoked)
    }

    fn covered(cover: &Cover) -> u64 {
        cover
            .subsets()
            .iter()
            .map(|s| s.leaf_count(cover.height()))
            .sum()
    }

    /// Without a defence the coalition gets exactly one box per subset of the bifurcation that
    /// holds a traitor (under Complete Subtree, Kiayias and Pehlivanoglu's Steiner-tree count),
    /// every box is disabled, and every traitor, and no one else, is named in the end.
    #[test]
    fn the_coalition_gets_one_box_per_traitor_subset_and_ends_named() {
        for scheme in [Scheme::COMPLETE_SUBTREE, Scheme::SUBSET_DIFFERENCE] {
            let authority = authority(scheme, 10);
            let height = authority.config().height;
            for seed in 0..6u64 {
                let t = 1 + (seed as usize % 4);
                let (traitors, revoked) = draw(height, t, 3 * (seed as usize % 3), seed);
                let mut rng = ChaCha20Rng::seed_from_u64(seed);
                let params = TraceParams::default();
                let out = evolve(
                    &authority,
                    &revoked,
                    &traitors,
                    Defence::None,
                    &params,
                    10_000,
                    &mut rng,
                )
                .unwrap();
                let expected =
                    generations_without_defence(&authority, &revoked, &traitors).unwrap();
                assert_eq!(out.generations, expected, "{} seed {seed}", scheme.name());
                assert!(out.powerless && out.every_box_disabled);
                let mut named = out.named.clone();
                named.sort();
                let mut all = traitors.clone();
                all.sort();
                assert_eq!(named, all, "{} seed {seed}", scheme.name());
                assert!(out.generations >= t as u64 * u64::from(height.get()) / 2);
            }
        }
    }

    /// Kiayias and Pehlivanoglu's count for one traitor under Complete Subtree with nothing
    /// revoked: the root-to-leaf path, `h + 1` boxes; two sibling traitors: `h + 2`.
    #[test]
    fn the_steiner_count_is_the_path() {
        let authority = authority(Scheme::COMPLETE_SUBTREE, 10);
        let height = authority.config().height;
        let none = RevocationSet::new(height);
        let one = [LeafIndex::new(77, height).unwrap()];
        assert_eq!(
            generations_without_defence(&authority, &none, &one).unwrap(),
            11
        );
        let siblings = [
            LeafIndex::new(76, height).unwrap(),
            LeafIndex::new(77, height).unwrap(),
        ];
        assert_eq!(
            generations_without_defence(&authority, &none, &siblings).unwrap(),
            12
        );
        // A revoked traitor's keys open no subset of the cover.
        let revoked = RevocationSet::from_leaves(height, [77]).unwrap();
        assert_eq!(
            generations_without_defence(&authority, &revoked, &one).unwrap(),
            0
        );
    }

    /// The deepening tracer needs fewer boxes, names only traitors, names them all, and leaves
    /// every other non-revoked leaf in the cover; its header is larger.
    #[test]
    fn deepening_cuts_generations_and_excludes_no_innocent() {
        for scheme in [Scheme::COMPLETE_SUBTREE, Scheme::SUBSET_DIFFERENCE] {
            let authority = authority(scheme, 12);
            let height = authority.config().height;
            for seed in 0..3u64 {
                let (traitors, revoked) = draw(height, 3, 5, 100 + seed);
                let params = TraceParams::default();
                let mut rng = ChaCha20Rng::seed_from_u64(seed);
                let plain = evolve(
                    &authority,
                    &revoked,
                    &traitors,
                    Defence::None,
                    &params,
                    10_000,
                    &mut rng,
                )
                .unwrap();
                let defence = Defence::Deepening { max_depth: 4 };
                let mut campaign = Campaign::new(&authority, &revoked, defence).unwrap();
                let coalition = Coalition::new(&authority, &traitors).unwrap();
                let mut named = Vec::new();
                let mut generations = 0u64;
                while let Some(mut pirate) = coalition.next_box(campaign.cover()).unwrap() {
                    let out = campaign
                        .trace(&authority, &mut pirate, &params, &mut rng)
                        .unwrap();
                    assert!(out.disabled);
                    named.extend(out.traitors);
                    generations += 1;
                    // Every leaf neither revoked nor named is still covered.
                    let expected = height.leaf_count() - revoked.len() as u64 - named.len() as u64;
                    assert_eq!(
                        covered(campaign.cover()),
                        expected,
                        "{} seed {seed}",
                        scheme.name()
                    );
                }
                named.sort();
                let mut all = traitors.clone();
                all.sort();
                assert_eq!(named, all);
                assert!(
                    generations * 3 <= plain.generations * 2,
                    "{}: {generations} against {}",
                    scheme.name(),
                    plain.generations
                );
                assert!(campaign.cover().len() > plain.final_subsets);
            }
        }
    }

    /// A box built from one subset key opens that subset's entry and nothing else.
    #[test]
    fn a_subset_box_opens_only_its_subset() {
        let authority = authority(Scheme::SUBSET_DIFFERENCE, 8);
        let height = authority.config().height;
        let traitor = LeafIndex::new(200, height).unwrap();
        let revoked = RevocationSet::from_leaves(height, [3, 90]).unwrap();
        let cover = Cover::compute(Scheme::SUBSET_DIFFERENCE, &revoked).unwrap();
        let mut pirate = Coalition::new(&authority, &[traitor])
            .unwrap()
            .next_box(&cover)
            .unwrap()
            .unwrap();
        assert!(pirate.subset().contains(traitor.node(height)));
        let params = TraceParams::default();
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let out = trace_cover(&authority, &cover, &mut pirate, &params, &mut rng).unwrap();
        assert!(out.disabled && out.traitors.is_empty());
        assert_eq!(out.proved.first(), Some(&pirate.subset()));
        // Another height is refused.
        let other = Cover::compute(
            Scheme::SUBSET_DIFFERENCE,
            &RevocationSet::new(TreeHeight::new(9).unwrap()),
        )
        .unwrap();
        assert!(matches!(
            Coalition::new(&authority, &[traitor])
                .unwrap()
                .next_box(&other),
            Err(Error::WrongTree)
        ));
    }

    /// A box holding several subset keys decrypts through any of them.
    struct ChainBox(Vec<SubsetBox>);

    impl Decoder for ChainBox {
        fn decrypt(&mut self, query: &Query) -> Option<PayloadKey> {
            self.0.iter_mut().find_map(|b| b.decrypt(query))
        }
    }

    /// A box with two keys on one path (a subset and the half of it that holds the traitor)
    /// makes one trace prove both; the half's generation follows its parent's, so the deepening
    /// does not start over.
    #[test]
    fn a_chain_of_keys_does_not_restart_the_lineage() {
        let authority = authority(Scheme::COMPLETE_SUBTREE, 12);
        let height = authority.config().height;
        let traitor = LeafIndex::new(1_234, height).unwrap();
        let keys = authority.device_keys(traitor);
        let defence = Defence::Deepening { max_depth: 4 };
        let mut campaign = Campaign::new(&authority, &RevocationSet::new(height), defence).unwrap();
        let params = TraceParams::default();
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let coalition = Coalition::new(&authority, &[traitor]).unwrap();
        let first = coalition.next_box(campaign.cover()).unwrap().unwrap();
        let top = first.subset();
        let (a, b) = split(&top, Scheme::COMPLETE_SUBTREE, height).unwrap();
        let half = if a.contains(traitor.node(height)) {
            a
        } else {
            b
        };
        let second = SubsetBox {
            subset: half,
            key: keys.subset_key(&half).unwrap(),
        };
        let out = campaign
            .trace(
                &authority,
                &mut ChainBox(vec![first, second]),
                &params,
                &mut rng,
            )
            .unwrap();
        assert_eq!(out.proved, vec![top, half]);
        // The half is the lineage's second box: its halves go one level further.
        for piece in split_deep(half, 2, Scheme::COMPLETE_SUBTREE, height).unwrap() {
            assert!(campaign.cover().subsets().contains(&piece), "{piece:?}");
        }
    }

    /// A campaign traces only for its own authority, and a coalition only holds leaves of its
    /// tree.
    #[test]
    fn a_campaign_and_a_coalition_refuse_what_is_not_theirs() {
        let authority = authority(Scheme::COMPLETE_SUBTREE, 10);
        let height = authority.config().height;
        let other =
            Authority::new(&MasterSecret::from_bytes([10; 32]), *authority.config()).unwrap();
        let traitor = LeafIndex::new(5, height).unwrap();
        let mut campaign =
            Campaign::new(&authority, &RevocationSet::new(height), Defence::None).unwrap();
        let mut pirate = Coalition::new(&authority, &[traitor])
            .unwrap()
            .next_box(campaign.cover())
            .unwrap()
            .unwrap();
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let params = TraceParams::default();
        assert!(matches!(
            campaign.trace(&other, &mut pirate, &params, &mut rng),
            Err(Error::WrongTree)
        ));
        let beyond = LeafIndex::new(5_000, TreeHeight::new(16).unwrap()).unwrap();
        assert!(matches!(
            Coalition::new(&authority, &[beyond]),
            Err(Error::InvalidLeaf { .. })
        ));
        let none = RevocationSet::new(height);
        assert!(generations_without_defence(&authority, &none, &[beyond]).is_err());
        // An empty coalition is powerless from the start.
        let out = evolve(&authority, &none, &[], Defence::None, &params, 10, &mut rng).unwrap();
        assert!(out.powerless && out.generations == 0);
    }
}
