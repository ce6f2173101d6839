//! Pirate evolution (issue 26): a coalition of `t` traitors releases box after box, each from
//! key material the cover left by the previous trace still accepts (Kiayias and Pehlivanoglu,
//! CRYPTO 2007), against the distributor's tracer with and without the deepening defence, for
//! both schemes and `t` from 1 to the configured maximum. Every box is traced for real
//! (`keytree::traitors::evolution`); the run counts the generations until the coalition is
//! powerless and compares them with the published figures.

use core::fmt;

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::Serialize;
use treecast_keytree::traitors::TraceParams;
use treecast_keytree::traitors::evolution::{self, Defence};
use treecast_keytree::{
    Authority, Cover, LeafIndex, MasterSecret, RevocationSet, Scheme, TreeConfig, TreeHeight,
    TreeId, ekb,
};

use crate::SimError;

/// What the pirate-evolution experiment runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EvolutionConfig {
    /// The height of the experiment's trees (its own, smaller than a run's: every generation is
    /// a full trace).
    pub height: TreeHeight,
    /// Coalitions of 1 to this many traitors.
    pub max_traitors: u32,
    /// Leaves revoked before the first box.
    pub revoked: u32,
    /// The deepening defence's `max_depth`.
    pub max_depth: u32,
}

impl Default for EvolutionConfig {
    /// Height 16, 1 to 16 traitors, 16 revoked leaves, deepening to 4 levels.
    fn default() -> Self {
        Self {
            height: TreeHeight::new(16).unwrap_or(TreeHeight::AACS),
            max_traitors: 16,
            revoked: 16,
            max_depth: 4,
        }
    }
}

impl EvolutionConfig {
    /// Checks the parameters.
    ///
    /// # Errors
    /// [`SimError::Config`] naming the first one out of range.
    pub fn validate(&self) -> Result<(), SimError> {
        let bad = |what: &str| Err(SimError::Config(what.into()));
        if !(4..=24).contains(&self.height.get()) {
            return bad("the evolution height must be 4 to 24");
        }
        if !(1..=64).contains(&self.max_traitors) {
            return bad("evolution traitors must be 1 to 64");
        }
        if self.revoked > 4_096 {
            return bad("evolution revoked leaves must be at most 4 096");
        }
        let drawn = u64::from(self.max_traitors) + u64::from(self.revoked);
        if drawn * 2 > self.height.leaf_count() {
            return bad("the evolution tree is too small for its traitors and revoked leaves");
        }
        if !(2..=evolution::MAX_DEPTH).contains(&self.max_depth) {
            return bad("the deepening depth must be 2 to 8");
        }
        Ok(())
    }
}

/// One coalition against one tracer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EvolutionRow {
    /// `cs` or `sd`.
    pub scheme: &'static str,
    /// The coalition's size.
    pub traitors: u32,
    /// `none` or `deepening`.
    pub defence: &'static str,
    /// Boxes released and traced until the coalition was powerless.
    pub generations: u64,
    /// The boxes the bifurcation allows without a defence, counted without tracing (under
    /// Complete Subtree, Kiayias and Pehlivanoglu's Steiner-tree count).
    pub predicted: u64,
    /// The published order of growth, without its constants: `t · log2(N / t)` (Complete
    /// Subtree) or `t · log2 N` (Subset Difference), to two decimals (so that the platform's
    /// `log2` cannot change the fingerprint).
    pub published_order: f64,
    /// Traitors named.
    pub named: usize,
    /// Leaves named that were not traitors (an invariant: 0).
    pub innocents_named: usize,
    /// Whether every box was disabled and the coalition ended powerless.
    pub defeated: bool,
    /// Queries all the traces made.
    pub queries: u64,
    /// Subsets of the first and of the final cover, and the most during the campaign.
    pub initial_subsets: usize,
    /// See `initial_subsets`.
    pub final_subsets: usize,
    /// See `initial_subsets`.
    pub peak_subsets: usize,
    /// The final cover's EKB size in bytes.
    pub final_bytes: usize,
    /// The EKB size once the named traitors are revoked and the cover rebuilt (what the
    /// distributor broadcasts with after the campaign).
    pub rebuilt_bytes: usize,
}

/// The experiment's outcome.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EvolutionReport {
    /// The tree height.
    pub height: u8,
    /// Leaves revoked before the first box.
    pub revoked: u32,
    /// The deepening defence's `max_depth`.
    pub max_depth: u32,
    /// One row per scheme, coalition size and defence.
    pub rows: Vec<EvolutionRow>,
}

impl EvolutionReport {
    /// Whether every coalition was defeated, without naming an innocent, and every undefended
    /// run took exactly the predicted generations.
    pub fn passed(&self) -> bool {
        self.rows.iter().all(|r| {
            r.defeated
                && r.innocents_named == 0
                && (r.defence != "none" || r.generations == r.predicted)
        })
    }
}

/// Runs the experiment on all worker threads; the same seed gives the same report on any number
/// of threads.
///
/// # Errors
/// [`SimError::Config`] for bad parameters; [`SimError::KeyTree`] when a trace fails.
pub fn run(config: &EvolutionConfig, seed: u64) -> Result<EvolutionReport, SimError> {
    config.validate()?;
    let mut cases = Vec::new();
    for scheme in [Scheme::COMPLETE_SUBTREE, Scheme::SUBSET_DIFFERENCE] {
        for t in 1..=config.max_traitors {
            for defence in [
                Defence::None,
                Defence::Deepening {
                    max_depth: config.max_depth,
                },
            ] {
                cases.push((scheme, t, defence));
            }
        }
    }
    let rows = cases
        .into_par_iter()
        .map(|(scheme, t, defence)| case(config, seed, scheme, t, defence))
        .collect::<Result<Vec<_>, SimError>>()?;
    Ok(EvolutionReport {
        height: config.height.get(),
        revoked: config.revoked,
        max_depth: config.max_depth,
        rows,
    })
}

/// The random stream of one coalition size for one purpose, from the run's seed.
fn stream(seed: u64, traitors: u32, purpose: &[u8]) -> ChaCha20Rng {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(b"treecast-sim/evolution/")
        .chain_update(purpose)
        .chain_update(seed.to_be_bytes())
        .chain_update(traitors.to_be_bytes())
        .finalize();
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(&digest);
    ChaCha20Rng::from_seed(bytes)
}

fn case(
    config: &EvolutionConfig,
    seed: u64,
    scheme: Scheme,
    t: u32,
    defence: Defence,
) -> Result<EvolutionRow, SimError> {
    let height = config.height;
    let mut secret = [0u8; 32];
    secret[..8].copy_from_slice(&seed.to_be_bytes());
    secret[8..16].copy_from_slice(b"evolve\0\0");
    let authority = Authority::new(
        &MasterSecret::from_bytes(secret),
        TreeConfig::new(scheme, height, TreeId(26)),
    )?;
    // The same traitors and revoked leaves for both defences and both schemes: the rows of a
    // coalition differ only by what is compared.
    let mut draw = stream(seed, t, b"draw");
    let mut leaves: Vec<u32> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    while leaves.len() < (t + config.revoked) as usize {
        let leaf = (draw.next_u64() % height.leaf_count()) as u32;
        if seen.insert(leaf) {
            leaves.push(leaf);
        }
    }
    let (traitor_leaves, revoked_leaves) = leaves.split_at(t as usize);
    let traitors = traitor_leaves
        .iter()
        .map(|&l| LeafIndex::new(l, height))
        .collect::<Result<Vec<_>, _>>()?;
    let revoked = RevocationSet::from_leaves(height, revoked_leaves.iter().copied())?;
    let predicted = evolution::generations_without_defence(&authority, &revoked, &traitors)?;
    let mut rng = stream(seed, t, b"trace");
    let limit = predicted.saturating_mul(4).max(64);
    let out = evolution::evolve(
        &authority,
        &revoked,
        &traitors,
        defence,
        &TraceParams::default(),
        limit,
        &mut rng,
    )?;
    let innocents_named = out.named.iter().filter(|l| !traitors.contains(l)).count();
    let rebuilt = RevocationSet::from_leaves(
        height,
        revoked_leaves
            .iter()
            .copied()
            .chain(out.named.iter().map(|l| l.get())),
    )?;
    let rebuilt_bytes = ekb::encoded_len(scheme, Cover::compute(scheme, &rebuilt)?.len());
    let n = height.leaf_count() as f64;
    let tf = f64::from(t);
    let order = if scheme == Scheme::COMPLETE_SUBTREE {
        tf * (n / tf).log2()
    } else {
        tf * n.log2()
    };
    Ok(EvolutionRow {
        scheme: scheme.name(),
        traitors: t,
        defence: match defence {
            Defence::None => "none",
            _ => "deepening",
        },
        generations: out.generations,
        predicted,
        published_order: (order * 100.0).round() / 100.0,
        named: out.named.len(),
        innocents_named,
        defeated: out.powerless && out.every_box_disabled,
        queries: out.queries,
        initial_subsets: out.initial_subsets,
        final_subsets: out.final_subsets,
        peak_subsets: out.peak_subsets,
        final_bytes: ekb::encoded_len(scheme, out.final_subsets),
        rebuilt_bytes,
    })
}

impl fmt::Display for EvolutionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "pirate evolution: h={} ({} leaves revoked first), deepening to {} levels",
            self.height, self.revoked, self.max_depth
        )?;
        writeln!(
            f,
            "{:<4} {:>3} | {:>9} {:>9} {:>8} {:>9} | {:>9} {:>10} | {:>13} {:>8} | {:>7}",
            "",
            "t",
            "order",
            "predicted",
            "NNL gens",
            "NNL bytes",
            "deep gens",
            "deep bytes",
            "rebuilt bytes",
            "queries",
            "checked"
        )?;
        for pair in self.rows.chunks(2) {
            let [plain, deep] = pair else { continue };
            let ok = plain.defeated
                && deep.defeated
                && plain.innocents_named + deep.innocents_named == 0
                && plain.generations == plain.predicted;
            writeln!(
                f,
                "{:<4} {:>3} | {:>9.1} {:>9} {:>8} {:>9} | {:>9} {:>10} | {:>13} {:>8} | {:>7}",
                plain.scheme,
                plain.traitors,
                plain.published_order,
                plain.predicted,
                plain.generations,
                plain.final_bytes,
                deep.generations,
                deep.final_bytes,
                plain.rebuilt_bytes,
                plain.queries + deep.queries,
                if ok { "ok" } else { "FAILED" }
            )?;
        }
        Ok(())
    }
}
