//! `treecast simulate`: the simulator, the README's main job.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use rand_core::SeedableRng;
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
    /// The registry: `memory`, `sqlite:PATH` or `postgres://…` (an empty database).
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
    /// Pirate boxes, each built from 1 to 4 clients after the middle round, traced, and its
    /// traitors revoked.
    #[arg(long, default_value_t = 1)]
    pirate_boxes: u32,
    /// Skip the pirate-evolution experiment. By default, after the workload, coalitions of 1 to
    /// `--evolution-traitors` traitors release box after box, each traced, against the tracer
    /// with and without the deepening defence, under both schemes (issue 26; about 6 s); the
    /// report compares the generations with the published figures, `--plot` draws them.
    #[arg(long)]
    no_evolution: bool,
    /// The evolution experiment's tree height.
    #[arg(long, value_parser = parse_height, default_value = "16")]
    evolution_height: TreeHeight,
    /// The evolution experiment's largest coalition.
    #[arg(long, default_value_t = 16)]
    evolution_traitors: u32,
    /// Leaves revoked before the first box of the evolution experiment.
    #[arg(long, default_value_t = 16)]
    evolution_revoked: u32,
    /// Users of the licenses-with-time part (issue 27: rentals, subscriptions, loans, renewals,
    /// returns and expiries over `--lifecycle-days` simulated days, attacked and checked);
    /// 0 skips it.
    #[arg(long, default_value_t = 2_000)]
    lifecycle_users: u32,
    /// Simulated days of the licenses-with-time part.
    #[arg(long, default_value_t = 60)]
    lifecycle_days: u32,
    /// The most levels the deepening defence descends in one generation.
    #[arg(long, default_value_t = 4)]
    evolution_depth: u32,
    /// Write the report as JSON to this file.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Write SVG charts into this directory.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Run a second time on one thread and check that the reports agree (invariant 6).
    #[arg(long)]
    check_determinism: bool,
    /// Drive a `treecast serve` at this URL (the load test: devices here, every supply over
    /// HTTP), or `in-process` for the same workload on a distributor in this process. A split
    /// deployment (one process per license server): its URLs, comma-separated, the processes
    /// started with `--server-url` so that each names the others.
    #[arg(long)]
    server: Option<String>,
    /// With `--server` on license servers run from their own key files (which leave revoking
    /// to the authority): the full key file, with which this process revokes and publishes
    /// each new epoch's EKB in the registry `--store`, as `treecast authority` does.
    #[arg(long, requires = "server")]
    authority_keys: Option<std::path::PathBuf>,
    /// With `--server URL`: the admin token's file.
    #[arg(long, requires = "server")]
    admin_token: Option<PathBuf>,
    /// With `--server https://…` and a private certificate authority: its PEM certificate.
    #[arg(long, requires = "server")]
    ca_file: Option<PathBuf>,
    /// With `--server`: the share of users who move their purchase, 0 to 1.
    #[arg(long, default_value_t = 0.25, requires = "server")]
    move_share: f64,
    /// With `--server`: append one line per acknowledged operation to this file (for
    /// `store check --journal`).
    #[arg(long, requires = "server")]
    journal: Option<PathBuf>,
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
        c.pirate_boxes = self.pirate_boxes;
        c.progress = treecast_sim::Progress::for_stderr();
        c.lifecycle = (self.lifecycle_users > 0).then(|| treecast_sim::LifecycleConfig {
            users: self.lifecycle_users,
            days: self.lifecycle_days,
            ..treecast_sim::LifecycleConfig::default()
        });
        c.evolution = (!self.no_evolution).then_some(treecast_sim::EvolutionConfig {
            height: self.evolution_height,
            max_traitors: self.evolution_traitors,
            revoked: self.evolution_revoked,
            max_depth: self.evolution_depth,
        });
        c.validate()?;
        Ok(c)
    }
}

pub(crate) fn run(args: &SimulateArgs) -> anyhow::Result<()> {
    if let Some(server) = &args.server {
        return through_service(args, server);
    }
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
        again.progress = treecast_sim::Progress::Off;
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

/// `simulate --server`: the workload through a service, over HTTP or in process.
fn through_service(args: &SimulateArgs, server: &str) -> anyhow::Result<()> {
    use treecast_sim::service::{self, InProcess, Remote, ServiceConfig};

    let mut cfg = ServiceConfig::default();
    cfg.users = args.users;
    cfg.max_clients = args.max_clients;
    cfg.servers = args.servers;
    cfg.contents = args.contents;
    cfg.content_size = args.content_size;
    cfg.move_share = args.move_share;
    cfg.revocations = args.revocations.unwrap_or((args.users / 1_000).max(1));
    cfg.attack_share = args.attack_share;
    cfg.seed = args.seed;
    cfg.journal = args.journal.clone();
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let report = if server == "in-process" {
        cfg.threads = if args.threads == 0 {
            cores
        } else {
            args.threads
        };
        let store: StoreSpec = args.store.parse().map_err(|e: String| anyhow::anyhow!(e))?;
        let distributor = std::sync::Arc::new(in_process_distributor(args, &store)?);
        let op = InProcess::new(
            distributor,
            rand_chacha::ChaCha20Rng::seed_from_u64(args.seed ^ 0xC0_47E7),
        );
        service::run(&op, "in-process", &cfg)?
    } else {
        // Devices wait on the network: more of them than cores keep the service busy.
        cfg.threads = if args.threads == 0 {
            4 * cores
        } else {
            args.threads
        };
        let Some(token_file) = &args.admin_token else {
            bail!("--server URL needs --admin-token FILE");
        };
        let token = zeroize::Zeroizing::new(
            std::fs::read_to_string(token_file)
                .with_context(|| format!("cannot read {}", token_file.display()))?
                .trim()
                .to_owned(),
        );
        // Several URLs, comma-separated: a split deployment (one process per license server,
        // issue 29); requests go to the first and follow `421 other_server` to the others.
        let urls: Vec<String> = server
            .split(',')
            .map(|u| u.trim().trim_end_matches('/').to_owned())
            .filter(|u| !u.is_empty())
            .collect();
        let first = urls.first().map_or(server, String::as_str);
        let http = match &args.ca_file {
            None => treecast::license::transport::HttpTransport::new(first),
            Some(ca) => treecast::license::transport::HttpTransport::with_root_certificates(
                first,
                &std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?,
            )?,
        }
        .with_peers(urls.iter().cloned());
        let mut remote = Remote::new(http, token);
        if let Some(keys) = &args.authority_keys {
            let store: treecast::license::registry::StoreSpec = args
                .store
                .parse()
                .map_err(|e| anyhow::anyhow!("--store: {e}"))?;
            anyhow::ensure!(
                !matches!(store, treecast::license::registry::StoreSpec::Memory),
                "--authority-keys revokes in the license servers' registry: give it as --store"
            );
            let registry = store.open(args.height).with_context(|| store.name())?;
            let config = treecast_keytree::TreeConfig::new(
                args.scheme.into(),
                args.height,
                treecast_keytree::TreeId(1),
            );
            let authority = super::keys::authority_distributor(keys, config, registry)?;
            remote = remote.with_revoker(Box::new(move |client| {
                let epoch = authority.revoke_client(client)?;
                authority.current_ekb()?;
                Ok(epoch)
            }));
        }
        service::run(&remote, server, &cfg)?
    };
    println!("{report}");
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if !report.passed() {
        bail!("the simulation found violations (listed above)");
    }
    Ok(())
}

/// The distributor of `simulate --server in-process`: keys from the seed, `servers` license
/// servers, a fresh registry in `store`, the system clock (as a `serve` has).
fn in_process_distributor(
    args: &SimulateArgs,
    store: &StoreSpec,
) -> anyhow::Result<treecast::license::Distributor<Box<dyn treecast::license::Registry>>> {
    use treecast::license::{DistributorConfig, LicenseServer, ServerId, SystemClock, Tariff};
    use treecast_keytree::{Authority, MasterSecret, TreeConfig, TreeId};

    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(args.seed ^ 0xD157);
    let config = TreeConfig::new(args.scheme.into(), args.height, TreeId(1));
    let authority = Authority::new(&MasterSecret::generate(&mut rng), config)?;
    let servers: Vec<_> = (1..=args.servers)
        .map(|id| LicenseServer::generate(ServerId(id), &mut rng))
        .collect();
    Ok(treecast::license::Distributor::new(
        authority,
        servers,
        store.open(args.height)?,
        Tariff::default(),
        std::sync::Arc::new(SystemClock),
        DistributorConfig::default(),
    )?)
}
