//! `treecast ekb`: build, inspect and open enabling key blocks.

use std::fs;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde::Serialize;
use treecast_keytree::{EkbIn, LeafIndex, PayloadKey, Scheme, TreeConfig, TreeId};

use super::TreeArgs;
use super::cover::SubsetReport;
use super::input::{read_bounded, read_key_file, read_revoked, secret_key16};

#[derive(Debug, Subcommand)]
pub(crate) enum EkbCommand {
    /// Build a signed EKB that gives a payload key to every non-revoked leaf.
    Build(BuildArgs),
    /// Print an EKB's header and size (and check its signature with --key).
    Inspect(InspectArgs),
    /// Open an EKB as the device at a leaf (its keys derived from the authority's key file).
    Open(OpenArgs),
}

#[derive(Args, Debug)]
pub(crate) struct BuildArgs {
    #[command(flatten)]
    tree: TreeArgs,
    /// The authority's key file (see `treecast keygen`).
    #[arg(long = "keys", visible_alias = "key")]
    key: PathBuf,
    /// The tree identifier.
    #[arg(long, default_value_t = 1)]
    tree_id: u64,
    /// The key epoch.
    #[arg(long, default_value_t = 1)]
    epoch: u64,
    /// The payload key to deliver, 32 hex digits: on the command line it is visible to every
    /// user of this machine (ps, /proc) and kept in shell history; prefer --payload-key-file.
    #[arg(
        long,
        required_unless_present = "payload_key_file",
        conflicts_with = "payload_key_file"
    )]
    payload_key: Option<String>,
    /// A file holding the payload key as 32 hex digits (`-`: standard input).
    #[arg(long)]
    payload_key_file: Option<PathBuf>,
    /// Where to write the EKB.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args, Debug)]
pub(crate) struct InspectArgs {
    /// The EKB file.
    file: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// List every subset.
    #[arg(long)]
    list: bool,
    /// Verify the signature with this authority key file.
    #[arg(long = "keys", visible_alias = "key")]
    key: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub(crate) struct OpenArgs {
    /// The EKB file.
    file: PathBuf,
    /// The authority's key file.
    #[arg(long = "keys", visible_alias = "key")]
    key: PathBuf,
    /// The device's leaf.
    #[arg(long)]
    leaf: u32,
}

pub(crate) fn run(cmd: EkbCommand) -> anyhow::Result<()> {
    match cmd {
        EkbCommand::Build(args) => build(&args),
        EkbCommand::Inspect(args) => inspect(&args),
        EkbCommand::Open(args) => open(&args),
    }
}

fn build(args: &BuildArgs) -> anyhow::Result<()> {
    let height = args.tree.height;
    let config = TreeConfig::new(Scheme::from(args.tree.scheme), height, TreeId(args.tree_id));
    let authority = read_key_file(&args.key)?.authority(config)?;
    let revoked = read_revoked(args.tree.revoked.as_deref(), height)?;
    let payload = PayloadKey::from_bytes(*secret_key16(
        args.payload_key.as_deref(),
        args.payload_key_file.as_deref(),
    )?);
    let ekb = authority.build_ekb(&payload, &revoked, args.epoch)?;
    fs::write(&args.out, ekb.as_bytes())
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    println!(
        "wrote {}: scheme {}  height {}  epoch {}  revoked {}  subsets {}  bytes {}",
        args.out.display(),
        config.scheme,
        height,
        args.epoch,
        revoked.len(),
        ekb.header().subset_count,
        ekb.as_bytes().len()
    );
    Ok(())
}

#[derive(Serialize)]
struct InspectReport {
    scheme: &'static str,
    height: u8,
    tree_id: u64,
    epoch: u64,
    subsets: u32,
    bytes: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    signature_valid: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    list: Option<Vec<SubsetReport>>,
}

fn inspect(args: &InspectArgs) -> anyhow::Result<()> {
    let bytes = read_bounded(&args.file, MAX_EKB_FILE)?;
    let ekb = EkbIn::from_bytes(&bytes)
        .with_context(|| format!("{} is not a valid EKB", args.file.display()))?;
    let header = *ekb.header();
    let list = if args.list {
        let height = header.config.height;
        Some(
            ekb.subsets()
                .map(|s| s.map(|s| SubsetReport::new(&s, height)))
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("{} has a malformed entry", args.file.display()))?,
        )
    } else {
        None
    };
    let signature_valid = match &args.key {
        Some(key) => {
            let authority = read_key_file(key)?.authority(header.config)?;
            Some(ekb.verify(&authority.verifying_key()).is_ok())
        }
        None => None,
    };
    let report = InspectReport {
        scheme: header.config.scheme.name(),
        height: header.config.height.get(),
        tree_id: header.config.tree_id.0,
        epoch: header.epoch,
        subsets: header.subset_count,
        bytes: bytes.len(),
        signature_valid,
        list,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "EKB v{}  scheme {}  height {}  tree {}  epoch {}  subsets {}  bytes {}",
            treecast_keytree::ekb::VERSION,
            report.scheme,
            report.height,
            report.tree_id,
            report.epoch,
            report.subsets,
            report.bytes
        );
        if let Some(valid) = report.signature_valid {
            println!("signature: {}", if valid { "valid" } else { "INVALID" });
        }
        for s in report.list.iter().flatten() {
            println!("{}", s.line());
        }
    }
    if report.signature_valid == Some(false) {
        anyhow::bail!("the signature of {} does not verify", args.file.display());
    }
    Ok(())
}

fn open(args: &OpenArgs) -> anyhow::Result<()> {
    let bytes = read_bounded(&args.file, MAX_EKB_FILE)?;
    let ekb = EkbIn::from_bytes(&bytes)
        .with_context(|| format!("{} is not a valid EKB", args.file.display()))?;
    let config = ekb.header().config;
    let authority = read_key_file(&args.key)?.authority(config)?;
    let leaf = LeafIndex::new(args.leaf, config.height)?;
    let ekb = ekb.verify(&authority.verifying_key())?;
    let payload = match authority.device_keys(leaf).open(&ekb) {
        Ok(payload) => payload,
        // What the README promises: `revoked` on standard output (and a failure status), so
        // that a script tells a revoked leaf from a broken file.
        Err(treecast_keytree::Error::Revoked) => {
            println!("revoked");
            anyhow::bail!("leaf {leaf} is revoked in {}", args.file.display());
        }
        Err(e) => {
            return Err(e)
                .with_context(|| format!("leaf {leaf} cannot open {}", args.file.display()));
        }
    };
    println!("{}", hex::encode(payload.secret_bytes()));
    Ok(())
}

/// The largest EKB file the CLI reads (1 GiB).
const MAX_EKB_FILE: u64 = 1 << 30;
