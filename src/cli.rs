//! Command-line parsing and dispatch.

use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use treecast_keytree::{Scheme, TreeHeight};

mod aacs;
mod cenc;
mod client;
mod cover;
mod demo;
mod dot;
mod ekb;
mod input;
mod journal;
mod keys;
mod logs;
mod packaging;
mod serve;
mod simulate;
pub(crate) mod store;
mod trace;

/// `--version`: the release, the commit it was built from (`unknown` outside a git checkout)
/// and the registry schema versions it writes and reads (issue 28).
fn long_version() -> &'static str {
    static TEXT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "{} (commit {})\nregistry schema: SQLite {}, PostgreSQL {}",
            env!("CARGO_PKG_VERSION"),
            env!("TREECAST_COMMIT"),
            treecast::license::registry::SQLITE_SCHEMA_VERSION,
            treecast::license::registry::POSTGRES_SCHEMA_VERSION,
        )
    });
    TEXT.as_str()
}

/// Broadcast-encryption key management and content licensing.
#[derive(Debug, Parser)]
#[command(name = "treecast", version, long_version = long_version(), about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// AACS profile: media key blocks and KEYDB.cfg device keys that AACS players process.
    #[command(subcommand)]
    Aacs(aacs::AacsCommand),
    /// The distributor's operator, on a `treecast serve`: users, publishing, revocations.
    #[command(subcommand)]
    Admin(client::AdminCommand),
    /// A user's device, on a `treecast serve`: register, buy, play, move, status.
    #[command(subcommand)]
    Client(client::ClientCommand),
    /// Common Encryption (`cenc`) of fragmented MP4 for playback in browsers (issue 30,
    /// `docs/cenc.md`).
    #[command(subcommand)]
    Cenc(cenc::CencCommand),
    /// Print the cover of the non-revoked leaves of a tree.
    Cover(cover::CoverArgs),
    /// Run a small end-to-end demonstration of the key tree.
    Demo(demo::DemoArgs),
    /// Build, inspect and open enabling key blocks.
    #[command(subcommand)]
    Ekb(ekb::EkbCommand),
    /// Create a new distributor key file (the master secret and the license servers' keys),
    /// readable by its owner only.
    Keygen {
        /// Where to write the key file; it must not exist.
        #[arg(long)]
        out: PathBuf,
        /// How many license servers (the leaves are split between them, one subtree each).
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=65_536))]
        servers: u32,
        /// Generate the license servers' signing keys in this PKCS#11 token and seal the master
        /// secret under a key of it (RFC 7512 URI with `module-path` and `pin-source`; the
        /// URI's `object` prefixes the keys' labels): the key file then names them
        /// (`docs/service.md`, "Keys in an HSM").
        #[arg(long, value_name = "PKCS11_URI")]
        hsm: Option<String>,
    },
    /// Export a license server's own key file (`keys export`, issue 29).
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// The authority's work with the master secret, against the shared registry: publish the
    /// current epoch's EKB, revoke a client (issue 29).
    Authority(Box<keys::AuthorityArgs>),
    /// Serve the distributor's license servers over HTTP (`docs/service.md`).
    Serve(Box<serve::ServeArgs>),
    /// Simulate a population of users, purchases, plays, moves and revocations, with attacks,
    /// checking every invariant (the main job).
    Simulate(Box<simulate::SimulateArgs>),
    /// Trace a pirate box built from a coalition of traitors: find them, and the cover that
    /// disables it (`docs/tracing.md`).
    Trace(Box<trace::TraceArgs>),
    /// Check or exercise a stored registry.
    #[command(subcommand)]
    Store(store::StoreCommand),
    /// Write shell completions, the man pages or the systemd unit (for packagers).
    #[command(subcommand)]
    Package(packaging::PackageCommand),
}

/// The command line, with `serve`'s configuration file (`--config`) read in
/// (`serve/config.rs`); exits with clap's message on an error.
pub(crate) fn parse() -> Cli {
    let matches = Cli::command().get_matches();
    let parsed = match matches.subcommand() {
        Some(("serve", sub)) => serve::with_config_file(sub),
        _ => Ok(None),
    };
    let matches = match parsed {
        Ok(Some(reparsed)) => reparsed,
        Ok(None) => matches,
        Err(e) => {
            eprintln!("treecast: error: {e:#}");
            std::process::exit(2);
        }
    };
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

pub(crate) fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Aacs(cmd) => aacs::run(cmd),
        Command::Admin(cmd) => client::run_admin(cmd),
        Command::Cenc(cmd) => cenc::run(&cmd),
        Command::Client(cmd) => client::run(cmd),
        Command::Cover(args) => cover::run(&args),
        Command::Demo(args) => demo::run(&args),
        Command::Ekb(cmd) => ekb::run(cmd),
        Command::Keygen { out, servers, hsm } => {
            input::write_new_key_file(&out, servers, hsm.as_deref())
        }
        Command::Keys(cmd) => keys::run(&cmd),
        Command::Authority(args) => keys::run_authority(&args),
        Command::Serve(args) => serve::run(&args),
        Command::Simulate(args) => simulate::run(&args),
        Command::Store(cmd) => store::run(cmd),
        Command::Trace(args) => trace::run(&args),
        Command::Package(cmd) => packaging::run(&cmd),
    }
}

/// The tree scheme, as named on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum SchemeArg {
    /// Complete Subtree.
    Cs,
    /// Subset Difference.
    Sd,
}

impl From<SchemeArg> for Scheme {
    fn from(s: SchemeArg) -> Self {
        match s {
            SchemeArg::Cs => Scheme::COMPLETE_SUBTREE,
            SchemeArg::Sd => Scheme::SUBSET_DIFFERENCE,
        }
    }
}

/// The tree a command works on, and its revoked leaves.
#[derive(Args, Debug)]
struct TreeArgs {
    /// The tree scheme.
    #[arg(long, value_enum, default_value = "cs")]
    scheme: SchemeArg,
    /// The tree height, 1 to 32 (2^height leaves).
    #[arg(long, value_parser = parse_height)]
    height: TreeHeight,
    /// A file of revoked leaf indices, one per line (`#` starts a comment; `-` reads stdin).
    #[arg(long)]
    revoked: Option<PathBuf>,
}

fn parse_height(s: &str) -> Result<TreeHeight, String> {
    let h: u8 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a height from 1 to 32"))?;
    TreeHeight::new(h).map_err(|e| e.to_string())
}
