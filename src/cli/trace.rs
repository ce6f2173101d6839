//! `treecast trace`: build a model pirate box from a coalition of traitors, trace it, and print
//! what tracing found, with the evidence for each name (`keytree::traitors`, `docs/tracing.md`).
//! `--verify FILE` checks evidence a trace wrote with `--evidence FILE`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use rand_core::SeedableRng;
use serde::{Deserialize, Serialize};
use treecast_keytree::traitors::{self, Evidence, PirateBox, Strategy, TraceParams};
use treecast_keytree::{Authority, LeafIndex, MasterSecret, PayloadKey, TreeConfig, TreeId};

use super::TreeArgs;
use super::input::read_revoked;

#[derive(Args, Debug)]
pub(crate) struct TraceArgs {
    #[command(flatten)]
    tree: TreeArgs,
    /// A file of the traitors' leaf indices, one per line (like `--revoked`).
    #[arg(long)]
    traitors: PathBuf,
    /// The seed of the tree's keys, the queries and the box's choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The model of the pirate box to simulate: which subset it uses among those its traitors
    /// belong to. The tracer does not know it and does not use it; it only builds the box.
    #[arg(long, value_enum, default_value = "first")]
    strategy: StrategyArg,
    /// The model box decrypts with this probability when it can (below 1: a noisy box).
    #[arg(long, default_value_t = 1.0)]
    success: f64,
    /// The trace's failure probability is 2^-BITS: the chance that the box is declared
    /// disabled while it still decrypts at the threshold. Naming an innocent does not depend
    /// on it (every name carries evidence).
    #[arg(long, default_value_t = 40)]
    failure_bits: u32,
    /// Expert override: misses in a row after which the box counts as disabled (instead of the
    /// count the failure probability gives). The output reports the failure bound it achieves.
    #[arg(long)]
    samples: Option<u32>,
    /// Write the evidence (signed header, recovered key, per named leaf) as JSON to this file.
    #[arg(long)]
    evidence: Option<PathBuf>,
    /// Check an evidence file instead of tracing: the authority's signature (the tree of
    /// `--seed`), the recovered keys, and a replay of each header against the model box.
    #[arg(long, conflicts_with_all = ["evidence", "dot"])]
    verify: Option<PathBuf>,
    /// The box counts as disabled below this success rate.
    #[arg(long, default_value_t = 0.5)]
    threshold: f64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Print the final cover as Graphviz DOT (heights up to 8; the traitors drawn as revoked);
    /// render with `dot -Tsvg`.
    #[arg(long, conflicts_with = "json")]
    dot: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum StrategyArg {
    /// Model: the first subset it can open.
    First,
    /// Model: a random one at each query.
    Random,
    /// Model: every one until one decrypts.
    Every,
}

/// One named leaf's evidence, as written by `--evidence` and read by `--verify`.
#[derive(Deserialize, Serialize)]
struct EvidenceRecord {
    leaf: u32,
    /// The signed evidence header (an EKB), hex.
    header: String,
    /// The authority's signature binding the leaf to the header, hex.
    attestation: String,
    /// The key the box returned for it, hex.
    recovered: String,
    trials: u64,
}

#[derive(Serialize)]
struct TraceReport {
    disabled: bool,
    traitors_found: Vec<u32>,
    innocent_excluded: u64,
    queries: u64,
    cover_subsets: usize,
    initial_subsets: usize,
    splits: u64,
    failure_bound: f64,
}

pub(crate) fn run(args: &TraceArgs) -> anyhow::Result<()> {
    let height = args.tree.height;
    let revoked = read_revoked(args.tree.revoked.as_deref(), height)?;
    let coalition = read_revoked(Some(&args.traitors), height)
        .with_context(|| format!("the traitors in {}", args.traitors.display()))?;
    anyhow::ensure!(
        !coalition.iter().any(|l| revoked.contains(l.get())),
        "a traitor is already revoked: tracing looks for the keys the box still uses"
    );
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.success) && args.threshold > 0.0 && args.threshold <= 1.0,
        "--success must be within 0..=1 and --threshold within (0, 1]"
    );
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(args.seed);
    let config = TreeConfig::new(args.tree.scheme.into(), height, TreeId(1));
    let authority = Authority::new(&MasterSecret::generate(&mut rng), config)?;
    let traitor_leaves: Vec<_> = coalition.iter().collect();
    let strategy = match args.strategy {
        StrategyArg::First => Strategy::First,
        StrategyArg::Random => Strategy::Random,
        StrategyArg::Every => Strategy::Every,
    };
    let mut pirate = PirateBox::new(
        &authority,
        &traitor_leaves,
        strategy,
        args.success,
        args.seed ^ 0xB0C5,
    );
    if let Some(path) = &args.verify {
        return verify(path, &authority, &mut pirate);
    }
    anyhow::ensure!(
        (1..=1000).contains(&args.failure_bits),
        "--failure-bits must be within 1..=1000"
    );
    let mut params = TraceParams::default();
    params.samples = args.samples;
    params.threshold = args.threshold;
    params.failure = 2f64.powi(-i32::try_from(args.failure_bits)?);
    let out = traitors::trace(&authority, &revoked, &mut pirate, &params, &mut rng)?;
    if let Some(path) = &args.evidence {
        let records: Vec<EvidenceRecord> = out
            .evidence
            .iter()
            .map(|e| EvidenceRecord {
                leaf: e.leaf().get(),
                header: hex::encode(e.header().as_bytes()),
                attestation: hex::encode(e.attestation()),
                recovered: hex::encode(e.recovered().secret_bytes()),
                trials: e.trials(),
            })
            .collect();
        std::fs::write(path, serde_json::to_string_pretty(&records)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let report = TraceReport {
        disabled: out.disabled,
        traitors_found: out.traitors.iter().map(|l| l.get()).collect(),
        innocent_excluded: out.innocent_excluded,
        queries: out.queries,
        cover_subsets: out.cover.len(),
        initial_subsets: out.initial_subsets,
        splits: out.splits,
        failure_bound: out.failure,
    };
    if args.dot {
        let mut excluded = revoked.clone();
        excluded.extend(out.traitors.iter().map(|l| l.get()))?;
        print!("{}", super::dot::cover_dot(&out.cover, &excluded)?);
    } else if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{}: {} of {} traitors named with evidence, {} innocent leaves excluded, {} queries; cover {} -> {} subsets ({} splits); P(wrongly disabled) <= {:.3e}",
            if report.disabled {
                "disabled"
            } else {
                "NOT disabled"
            },
            report.traitors_found.len(),
            traitor_leaves.len(),
            report.innocent_excluded,
            report.queries,
            report.initial_subsets,
            report.cover_subsets,
            report.splits,
            report.failure_bound
        );
        for leaf in &report.traitors_found {
            println!("traitor {leaf}");
        }
    }
    Ok(())
}

/// `--verify`: each record's signature and key with the authority's public key, then a replay of
/// its header against the model box (16 times).
fn verify(
    path: &std::path::Path,
    authority: &Authority,
    pirate: &mut PirateBox,
) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let records: Vec<EvidenceRecord> = serde_json::from_str(&text)?;
    let vk = authority.verifying_key();
    let height = authority.config().height;
    let mut all = true;
    for r in &records {
        let key: [u8; 16] = hex::decode(&r.recovered)?
            .try_into()
            .map_err(|_| anyhow::anyhow!("a recovered key of 16 bytes"))?;
        let attestation: [u8; 64] = hex::decode(&r.attestation)?
            .try_into()
            .map_err(|_| anyhow::anyhow!("an attestation of 64 bytes"))?;
        let evidence = Evidence::from_parts(
            LeafIndex::new(r.leaf, height)?,
            hex::decode(&r.header)?,
            attestation,
            PayloadKey::from_bytes(key),
            r.trials,
            &vk,
        );
        let checked = evidence.and_then(|e| {
            e.verify(&vk)?;
            e.replay(&vk, pirate, REPLAYS)
        });
        match checked {
            Ok(hits) => println!(
                "leaf {}: evidence verifies; the box decrypts it again {hits} of {REPLAYS}",
                r.leaf
            ),
            Err(e) => {
                all = false;
                println!("leaf {}: evidence does NOT verify ({e})", r.leaf);
            }
        }
    }
    anyhow::ensure!(all, "some evidence does not verify");
    Ok(())
}

/// Replays of each evidence header under `--verify`.
const REPLAYS: u64 = 16;
