//! `treecast trace`: build a pirate box from a coalition of traitors, trace it, and print what
//! tracing found (`keytree::traitors`, `docs/tracing.md`).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use rand_core::SeedableRng;
use serde::Serialize;
use treecast_keytree::traitors::{self, PirateBox, Strategy, TraceParams};
use treecast_keytree::{Authority, MasterSecret, TreeConfig, TreeId};

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
    /// Which subset the box uses among those its traitors belong to.
    #[arg(long, value_enum, default_value = "first")]
    strategy: StrategyArg,
    /// How often the box decrypts when it can (below 1: a noisy box).
    #[arg(long, default_value_t = 1.0)]
    success: f64,
    /// Queries per probability estimate (one suffices for a deterministic box).
    #[arg(long, default_value_t = 1)]
    samples: u32,
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
    /// The first subset it can open.
    First,
    /// A random one at each query.
    Random,
    /// Every one until one decrypts.
    Every,
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
    let mut params = TraceParams::default();
    params.samples = args.samples.max(1);
    params.threshold = args.threshold;
    let out = traitors::trace(&authority, &revoked, &mut pirate, &params, &mut rng)?;
    let report = TraceReport {
        disabled: out.disabled,
        traitors_found: out.traitors.iter().map(|l| l.get()).collect(),
        innocent_excluded: out.innocent_excluded,
        queries: out.queries,
        cover_subsets: out.cover.len(),
        initial_subsets: out.initial_subsets,
        splits: out.splits,
    };
    if args.dot {
        let mut excluded = revoked.clone();
        excluded.extend(out.traitors.iter().map(|l| l.get()))?;
        print!("{}", super::dot::cover_dot(&out.cover, &excluded)?);
    } else if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{}: {} of {} traitors found, {} innocent leaves excluded, {} queries; cover {} -> {} subsets ({} splits)",
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
            report.splits
        );
        for leaf in &report.traitors_found {
            println!("traitor {leaf}");
        }
    }
    Ok(())
}
