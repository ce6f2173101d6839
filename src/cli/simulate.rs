//! `treecast simulate`: the simulator, the README's main job.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use treecast_keytree::TreeHeight;
use treecast_sim::{SimConfig, StoreSpec};

use super::{SchemeArg, parse_height};

#[derive(Args, Debug)]
pub(crate) struct SimulateArgs {
    /// Users.
    #[arg(long, default_value_t = 1_000_000)]
    users: u64,
    /// Each user has 1 to this many clients, uniformly.
    #[arg(long, default_value_t = 4)]
    max_clients: u8,
    /// Contents on sale.
    #[arg(long, default_value_t = 1_000)]
    contents: u32,
    /// The Zipf exponent of content popularity (0 is uniform).
    #[arg(long, default_value_t = 1.0)]
    zipf: f64,
    /// Bytes per content.
    #[arg(long, default_value_t = 1_024)]
    content_size: usize,
    /// Purchases (default: one per user).
    #[arg(long)]
    purchases: Option<u64>,
    /// Plays (default: one per purchase).
    #[arg(long)]
    plays: Option<u64>,
    /// Moves (default: a quarter of the purchases).
    #[arg(long)]
    moves: Option<u64>,
    /// Revocations (default: one per thousand users).
    #[arg(long)]
    revocations: Option<u64>,
    /// Rounds; revocations come between them.
    #[arg(long, default_value_t = 4)]
    rounds: u32,
    /// The tree scheme.
    #[arg(long, value_enum, default_value = "cs")]
    scheme: SchemeArg,
    /// The tree height.
    #[arg(long, value_parser = parse_height, default_value = "32")]
    height: TreeHeight,
    /// The registry: `memory` or `sqlite:PATH`.
    #[arg(long, default_value = "memory")]
    store: String,
    /// The seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// The share of operations followed by an attack, 0 to 1.
    #[arg(long, default_value_t = 0.01)]
    attack_share: f64,
    /// License servers.
    #[arg(long, default_value_t = 2)]
    servers: u32,
    /// Write the report as JSON to this file.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Write SVG charts into this directory.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Run a second time on one thread and check that the reports agree (invariant 6).
    #[arg(long)]
    check_determinism: bool,
}

impl SimulateArgs {
    fn config(&self) -> anyhow::Result<SimConfig> {
        let store: StoreSpec = self.store.parse().map_err(|e: String| anyhow::anyhow!(e))?;
        let mut c = SimConfig::default();
        c.users = self.users;
        c.max_clients = self.max_clients;
        c.contents = self.contents;
        c.zipf_exponent = self.zipf;
        c.content_size = self.content_size;
        c.purchases = self.purchases.unwrap_or(self.users);
        c.plays = self.plays.unwrap_or(c.purchases);
        c.moves = self.moves.unwrap_or(c.purchases / 4);
        c.revocations = self.revocations.unwrap_or((self.users / 1_000).max(1));
        c.rounds = self.rounds;
        c.scheme = self.scheme.into();
        c.height = self.height;
        c.store = store;
        c.seed = self.seed;
        c.threads = self.threads;
        c.attack_share = self.attack_share;
        c.servers = self.servers;
        c.progress = std::io::stderr().is_terminal();
        c.validate()?;
        Ok(c)
    }
}

pub(crate) fn run(args: &SimulateArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    if let StoreSpec::Sqlite(path) = &config.store
        && path.exists()
    {
        bail!(
            "{} exists; the simulator starts from an empty registry",
            path.display()
        );
    }
    let outcome = treecast_sim::run(&config)?;
    let mut report = outcome.report;
    if args.check_determinism {
        let mut again = config.clone();
        again.threads = if report.config.threads == 1 { 2 } else { 1 };
        again.progress = false;
        if let StoreSpec::Sqlite(path) = &config.store {
            let mut p = path.clone().into_os_string();
            p.push(".determinism");
            let p = PathBuf::from(p);
            let _ = std::fs::remove_file(&p);
            again.store = StoreSpec::Sqlite(p);
        }
        let second = treecast_sim::run(&again)?.report;
        let same = second.fingerprint == report.fingerprint;
        let entry = report
            .invariants
            .entry("6_deterministic".into())
            .or_default();
        entry.checked += 1;
        if !same {
            entry.violations += 1;
            report.first_violations.push(format!(
                "6_deterministic: {} threads gave {}, {} threads gave {}",
                report.config.threads, report.fingerprint, again.threads, second.fingerprint
            ));
        }
    }
    println!("{report}");
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("report: {}", path.display());
    }
    if let Some(dir) = &args.plot {
        for file in treecast_sim::plot::write(dir, &report, config.height, &outcome.revoked_leaves)?
        {
            println!("chart: {}", file.display());
        }
    }
    if !report.passed() {
        bail!("the simulation found violations (listed above)");
    }
    Ok(())
}
