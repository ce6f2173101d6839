//! `treecast store`: registries on disk — checking one, and a workload that exercises one.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use rand_core::{Rng, SeedableRng};
use treecast::license::registry::{AuditCounts, PostgresRegistry, SqliteRegistry, audit_report};
use treecast::license::{
    Client, Clock, ContentId, Distributor, DistributorConfig, ManualClock, Registry, SigningKey,
    Tariff, UnixTime,
};
use treecast_keytree::{Scheme, TreeConfig, TreeHeight, TreeId};

use super::input::read_key_file;

pub(crate) use treecast_sim::StoreSpec;

#[derive(Debug, Subcommand)]
pub(crate) enum StoreCommand {
    /// Re-check the invariants of a stored registry; exits non-zero on any violation.
    Check {
        /// The registry: `sqlite:PATH` (opened read-only, its schema's functions untrusted;
        /// nothing in it is changed) or `postgres://…` (read in read-only transactions).
        #[arg(long, default_value = DEFAULT_STORE)]
        store: StoreSpec,
        /// The distributor key file of the `store workload` that wrote the registry: with it,
        /// every client and license row is checked for the distributor's tag and every content
        /// key for opening, so that rows written by someone else are reported.
        #[arg(long)]
        keys: Option<PathBuf>,
        /// The key tree's scheme the registry was created with (with `--keys`: a registry is
        /// bound to its keys and scheme, and refuses others).
        #[arg(long, value_enum, default_value = "cs")]
        scheme: super::SchemeArg,
        /// A journal written by `store workload --journal`: every operation in it must be in
        /// the registry.
        #[arg(long)]
        journal: Option<PathBuf>,
        /// How many violations to print at most.
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
    /// Run a random workload of registrations, purchases, moves and revocations against a
    /// registry, printing one line per committed operation.
    Workload(WorkloadArgs),
    /// Copy a SQLite registry to a new file while it is served (SQLite's online backup API): a
    /// consistent snapshot of every change committed before the backup began. A PostgreSQL
    /// registry is backed up with `pg_dump` (`docs/storage.md`).
    Backup {
        /// The registry: `sqlite:PATH`.
        #[arg(long, default_value = DEFAULT_STORE)]
        store: StoreSpec,
        /// The copy's file; it must not exist.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Args, Debug)]
pub(crate) struct WorkloadArgs {
    /// The registry: `memory`, `sqlite:PATH` or `postgres://…`.
    #[arg(long, default_value = DEFAULT_STORE)]
    store: StoreSpec,
    /// Append one line per operation to this file once its change has committed (the same
    /// lines as standard output), for `store check --journal`.
    #[arg(long)]
    journal: Option<PathBuf>,
    /// The distributor key file (see `treecast keygen`).
    #[arg(long)]
    keys: PathBuf,
    /// How many operations to run.
    #[arg(long, default_value_t = 1000)]
    ops: u64,
    /// The seed of the workload's keys and choices; drawn from the operating system when not
    /// given (a fixed seed makes every content and client key predictable).
    #[arg(long)]
    seed: Option<u64>,
    /// Run on a registry that already holds data (by default a non-empty store is refused, so
    /// that a test workload never writes into a real registry by mistake).
    #[arg(long)]
    append: bool,
    /// The tree height.
    #[arg(long, default_value = "20", value_parser = super::parse_height)]
    height: TreeHeight,
    /// The key tree's scheme (a registry is bound to its keys and scheme, and refuses others).
    #[arg(long, value_enum, default_value = "cs")]
    scheme: super::SchemeArg,
}

/// Where a persistent run keeps its registry unless told otherwise.
const DEFAULT_STORE: &str = "sqlite:treecast-registry.sqlite";

pub(crate) fn run(cmd: StoreCommand) -> anyhow::Result<()> {
    match cmd {
        StoreCommand::Check {
            store,
            keys,
            scheme,
            journal,
            limit,
        } => check(
            &store,
            keys.as_deref(),
            scheme.into(),
            journal.as_deref(),
            limit,
        ),
        StoreCommand::Workload(args) => workload(&args, args.store.open(args.height)?),
        StoreCommand::Backup { store, out } => backup(&store, &out),
    }
}

/// `store backup`.
fn backup(store: &StoreSpec, out: &std::path::Path) -> anyhow::Result<()> {
    let StoreSpec::Sqlite(path) = store else {
        bail!(
            "{}: `store backup` copies a SQLite registry; back a PostgreSQL registry up with \
             pg_dump (docs/storage.md, \"Backups\")",
            store.name()
        );
    };
    let started = std::time::Instant::now();
    SqliteRegistry::backup(path, out)?;
    let size = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    println!(
        "backed up {} to {} ({size} bytes, {:.2} s)",
        path.display(),
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn check(
    store: &StoreSpec,
    keys: Option<&std::path::Path>,
    scheme: Scheme,
    journal: Option<&std::path::Path>,
    limit: usize,
) -> anyhow::Result<()> {
    let mut violations = Vec::new();
    let mut checked = || -> anyhow::Result<()> {
        let (registry, height): (Box<dyn Registry>, TreeHeight) = match store {
            StoreSpec::Sqlite(path) => {
                let registry = SqliteRegistry::open_read_only(path)?;
                violations.extend(
                    registry
                        .foreign_schema_objects()?
                        .into_iter()
                        .map(|o| format!("the file has a {o}, which no treecast registry has")),
                );
                let height = registry.height();
                (Box::new(registry), height)
            }
            StoreSpec::Postgres(url) => {
                let registry = PostgresRegistry::open_existing(url)?;
                let height = registry.height();
                (Box::new(registry), height)
            }
            _ => bail!(
                "only a stored registry can be checked: use --store sqlite:PATH or postgres://…"
            ),
        };
        let tree = (scheme, height);
        check_registry(registry, tree, keys, journal, limit, &mut violations)
    };
    checked().with_context(|| store.name())
}

/// The checks of `store check` on an opened registry; prints the counts or the violations.
fn check_registry<R: Registry>(
    registry: R,
    tree: (Scheme, TreeHeight),
    keys: Option<&std::path::Path>,
    journal: Option<&std::path::Path>,
    limit: usize,
    violations: &mut Vec<String>,
) -> anyhow::Result<()> {
    let report = audit_report(&registry, limit)?;
    violations.extend(report.violations);
    if let Some(journal) = journal {
        violations.extend(super::journal::check(&registry, journal, limit)?);
    }
    if let Some(keys) = keys {
        let d = distributor(
            keys,
            registry,
            tree,
            Arc::new(ManualClock::new(UnixTime(0))),
        )?;
        violations.extend(d.check_stored_rows(limit)?);
    } else {
        eprintln!("note: without --keys, row authentication is not checked");
    }
    violations.truncate(limit);
    let AuditCounts {
        users,
        clients,
        licenses,
        certificates,
        ledger_entries: ledger,
        ..
    } = report.counts;
    if violations.is_empty() {
        println!(
            "ok: {users} users, {clients} clients, {licenses} licenses, {certificates} certificates, {ledger} ledger entries"
        );
        return Ok(());
    }
    for v in violations.iter() {
        println!("violation: {v}");
    }
    bail!(
        "the registry has invariant violations (first {} shown)",
        violations.len()
    );
}

/// The distributor of `store workload` and `store check --keys`: a tree with ID 1 of the
/// scheme and height given, the key file's master secret and servers.
fn distributor<R: Registry>(
    keys: &std::path::Path,
    registry: R,
    (scheme, height): (Scheme, TreeHeight),
    clock: Arc<ManualClock>,
) -> anyhow::Result<Distributor<R>> {
    let keys = read_key_file(keys)?;
    let config = TreeConfig::new(scheme, height, TreeId(1));
    let authority = keys.authority(config)?;
    let servers = keys.servers().to_vec();
    anyhow::ensure!(!servers.is_empty(), "the key file has no license server");
    let distributor = Distributor::new(
        authority,
        servers,
        registry,
        Tariff::default(),
        clock,
        DistributorConfig::default(),
    )?;
    // Leaves by server, as `serve` hands them out from this key file.
    Ok(match keys.split() {
        Some(split) => distributor.with_leaf_split(split)?,
        None => distributor,
    })
}

/// The workload: each line is printed (and flushed) only after its change has committed.
fn workload<R: Registry>(args: &WorkloadArgs, registry: R) -> anyhow::Result<()> {
    if !args.append && !registry.users()?.is_empty() {
        bail!(
            "the store already holds a registry: `store workload` writes test data with its own \
             keys; pass --append to run it on this store anyway"
        );
    }
    let clock = Arc::new(ManualClock::new(UnixTime(1_800_000_000)));
    let d = distributor(
        &args.keys,
        registry,
        (args.scheme.into(), args.height),
        clock.clone(),
    )?;
    let mut servers: Vec<treecast::license::ServerId> =
        d.server_keys().iter().map(|(id, _, _)| id).collect();
    // By server, one entry a key.
    servers.dedup();
    let seed = match args.seed {
        Some(seed) => seed,
        None => {
            let mut bytes = [0u8; 8];
            getrandom::fill(&mut bytes)
                .map_err(|e| anyhow::anyhow!("no system randomness: {e}"))?;
            u64::from_le_bytes(bytes)
        }
    };
    eprintln!("workload seed {seed}");
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
    let mut users: Vec<(treecast::license::UserId, Vec<Client>)> = Vec::new();
    let mut contents: Vec<ContentId> = Vec::new();
    let mut containers: std::collections::HashMap<ContentId, Vec<u8>> =
        std::collections::HashMap::new();
    let mut out = std::io::stdout().lock();
    let mut journal = args
        .journal
        .as_ref()
        .map(|path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open the journal {}", path.display()))
        })
        .transpose()?;
    let pick = |rng: &mut rand_chacha::ChaCha20Rng, n: usize| (rng.next_u32() as usize) % n.max(1);
    for _ in 0..args.ops {
        clock.advance(1);
        let roll = rng.next_u32() % 100;
        let line = if users.is_empty() || roll < 10 {
            let user = d.register_user()?;
            users.push((user, Vec::new()));
            format!("user {}", user.0)
        } else if roll < 25 || contents.is_empty() {
            if contents.is_empty() || roll < 15 {
                let plain: Vec<u8> = (0..256).map(|_| rng.next_u32() as u8).collect();
                let mut container = Vec::new();
                let record = d.publish(&plain[..], &mut container, &mut rng)?;
                contents.push(record.id);
                containers.insert(record.id, container);
                format!("content {}", record.id.0)
            } else {
                let u = pick(&mut rng, users.len());
                let s = pick(&mut rng, servers.len());
                let (Some((user, clients)), Some(&server)) = (users.get_mut(u), servers.get(s))
                else {
                    continue;
                };
                let key = SigningKey::generate(&mut rng);
                match d.register_client(*user, server, &key.verifying_key()) {
                    Ok(reg) => {
                        let client = Client::new(key, reg)?;
                        let line = format!("client {}", client.id().0);
                        clients.push(client);
                        line
                    }
                    Err(treecast::license::Error::ClientLimit(_)) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        } else if roll < 70 {
            let u = pick(&mut rng, users.len());
            let Some(&content) = contents.get(pick(&mut rng, contents.len())) else {
                continue;
            };
            let Some((_, clients)) = users.get_mut(u) else {
                continue;
            };
            let c = pick(&mut rng, clients.len());
            let Some(client) = clients.get_mut(c) else {
                continue;
            };
            let request = client.license_request(content, clock.now());
            match d.supply_license(request.as_bytes()) {
                Ok(license) => {
                    client.store_content(containers.get(&content).context("published")?.clone())?;
                    client.acquire_license(license.as_bytes())?;
                    format!("license {}", license.tbs().license_id.0)
                }
                Err(treecast::license::Error::ClientRevoked(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        } else if roll < 98 {
            let u = pick(&mut rng, users.len());
            let Some((_, clients)) = users.get_mut(u) else {
                continue;
            };
            let (s, t) = (pick(&mut rng, clients.len()), pick(&mut rng, clients.len()));
            let Some(destination) = clients.get(t).map(|c| c.id()) else {
                continue;
            };
            let Some(source) = clients.get_mut(s).filter(|c| c.id() != destination) else {
                continue;
            };
            let Some(license) = contents.iter().find_map(|&c| source.license_id(c)) else {
                continue;
            };
            let request = source.move_request(license, destination, clock.now());
            let cert = match d.supply_certificate(request.as_bytes()) {
                Ok(cert) => cert,
                Err(treecast::license::Error::ClientRevoked(_)) => continue,
                Err(e) => return Err(e.into()),
            };
            let package = source.move_out(cert.as_bytes())?;
            // The destination may hold another license for this content; it keeps the new one.
            clients
                .get_mut(t)
                .context("destination")?
                .move_in(&package, clock.now())?;
            let t = cert.tbs();
            let new_license = t.license()?.unverified().license_id;
            format!(
                "move {} {} {}",
                t.source_license.0, new_license.0, t.certificate_id.0
            )
        } else {
            let u = pick(&mut rng, users.len());
            let Some(client) = users.get(u).and_then(|(_, c)| c.first()).map(|c| c.id()) else {
                continue;
            };
            match d.revoke_client(client) {
                Ok(epoch) => format!("revoke {} {epoch}", client.0),
                Err(treecast::license::Error::ClientRevoked(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        };
        if let Some(journal) = journal.as_mut() {
            // Written once the change has committed, and synced: a line in the journal is an
            // operation the store acknowledged. One `write` for the whole line, newline
            // included: `writeln!` writes the text and the newline apart, and a SIGKILL between
            // the two left a line that the next process's first line continued.
            journal.write_all(format!("{line}\n").as_bytes())?;
            journal.sync_data()?;
        }
        writeln!(out, "{line}")?;
        out.flush()?;
    }
    Ok(())
}
