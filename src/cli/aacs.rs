//! `treecast aacs`: media key blocks and device keys of the AACS profile.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use treecast_keytree::aacs::{self, AacsAuthority, DeviceKeySet, Mkb, ProcessingKeys};
use treecast_keytree::{Error, LeafIndex, PayloadKey, TreeId};

use super::input::{read_bounded, read_key_file, read_revoked, secret_key16};

#[derive(Debug, Subcommand)]
pub(crate) enum AacsCommand {
    /// Write an MKB (MKB_RO.inf, padded to 2048-byte sectors) that gives a media key to every
    /// non-revoked device.
    Mkb(MkbArgs),
    /// Write the device keys of a leaf as KEYDB.cfg `| DK |` lines.
    DeviceKeys(DeviceKeysArgs),
    /// Process an MKB with the device keys of a KEYDB.cfg and print the media key.
    Process(ProcessArgs),
}

/// The authority of the AACS-profile tree.
#[derive(Args, Debug)]
struct AuthorityArgs {
    /// The authority's key file (see `treecast keygen`).
    #[arg(long = "keys", visible_alias = "key", default_value = "authority.key")]
    key: PathBuf,
    /// The tree identifier.
    #[arg(long, default_value_t = 1)]
    tree_id: u64,
}

impl AuthorityArgs {
    fn authority(&self) -> anyhow::Result<AacsAuthority> {
        let keys = read_key_file(&self.key).with_context(|| {
            format!(
                "cannot read the key file {} (create one with `treecast keygen --out {}`)",
                self.key.display(),
                self.key.display()
            )
        })?;
        Ok(AacsAuthority::new(
            aacs_master(&keys)?,
            TreeId(self.tree_id),
        )?)
    }
}

#[derive(Args, Debug)]
pub(crate) struct MkbArgs {
    #[command(flatten)]
    authority: AuthorityArgs,
    /// A file of revoked leaves (0 to 2^31 - 1), one per line; none revoked without it.
    #[arg(long)]
    revoked: Option<PathBuf>,
    /// The media key, 32 hex digits: on the command line it is visible to every user of this
    /// machine (ps, /proc) and kept in shell history; prefer --media-key-file.
    #[arg(
        long,
        required_unless_present = "media_key_file",
        conflicts_with = "media_key_file"
    )]
    media_key: Option<String>,
    /// A file holding the media key as 32 hex digits (`-`: standard input).
    #[arg(long)]
    media_key_file: Option<PathBuf>,
    /// The MKB version.
    #[arg(long, default_value_t = 1)]
    version: u32,
    /// Where to write the MKB.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args, Debug)]
pub(crate) struct DeviceKeysArgs {
    #[command(flatten)]
    authority: AuthorityArgs,
    /// The device's leaf, 0 to 2^31 - 1.
    #[arg(long)]
    leaf: u32,
    /// Where to write the KEYDB.cfg lines (mode 0600, never overwritten); stdout without it.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub(crate) struct ProcessArgs {
    /// The MKB file.
    #[arg(long)]
    mkb: PathBuf,
    /// A KEYDB.cfg holding the device's `| DK |` lines (either `DEVICE_NODE` form).
    #[arg(long, required_unless_present = "pk", conflicts_with = "pk")]
    keydb: Option<PathBuf>,
    /// A KEYDB.cfg holding published processing keys (`| PK |` lines): the media key is derived
    /// with them instead of device keys, as libaacs does.
    #[arg(long)]
    pk: Option<PathBuf>,
    /// Also check treecast's End-of-MKB signature with this authority key file.
    #[arg(long = "keys", visible_alias = "key")]
    key: Option<PathBuf>,
    /// The tree identifier, for --key.
    #[arg(long, default_value_t = 1)]
    tree_id: u64,
}

pub(crate) fn run(cmd: AacsCommand) -> anyhow::Result<()> {
    match cmd {
        AacsCommand::Mkb(args) => mkb(&args),
        AacsCommand::DeviceKeys(args) => device_keys(&args),
        AacsCommand::Process(args) => process(&args),
    }
}

fn mkb(args: &MkbArgs) -> anyhow::Result<()> {
    let authority = args.authority.authority()?;
    let revoked = read_revoked(args.revoked.as_deref(), aacs::height())?;
    let media_key = PayloadKey::from_bytes(*secret_key16(
        args.media_key.as_deref(),
        args.media_key_file.as_deref(),
    )?);
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).map_err(|e| anyhow::anyhow!("no system randomness: {e}"))?;
    let mut bytes = authority.build_mkb(&media_key, &revoked, args.version, nonce)?;
    let mkb_len = bytes.len();
    aacs::mkb::pad_to_sectors(&mut bytes);
    fs::write(&args.out, &bytes).with_context(|| format!("cannot write {}", args.out.display()))?;
    let subsets = Mkb::parse(&bytes)?.subset_count();
    println!(
        "wrote {}: AACS MKB type 3  version {}  revoked {}  subsets {}  bytes {} ({} with sector padding)",
        args.out.display(),
        args.version,
        revoked.len(),
        subsets,
        mkb_len,
        bytes.len()
    );
    Ok(())
}

fn device_keys(args: &DeviceKeysArgs) -> anyhow::Result<()> {
    let authority = args.authority.authority()?;
    let leaf = LeafIndex::new(args.leaf, aacs::height())
        .map_err(|_| anyhow::anyhow!("leaf {} is outside the 31-level AACS tree", args.leaf))?;
    let text = authority.device_keys(leaf)?.to_keydb();
    match &args.out {
        Some(path) => write_secret_file(path, text.as_bytes()),
        None => {
            std::io::stdout().write_all(text.as_bytes())?;
            Ok(())
        }
    }
}

fn process(args: &ProcessArgs) -> anyhow::Result<()> {
    let bytes = read_bounded(&args.mkb, MAX_MKB_FILE)?;
    let mkb =
        Mkb::parse(&bytes).with_context(|| format!("{} is not a valid MKB", args.mkb.display()))?;
    if let Some(key) = &args.key {
        let keys = read_key_file(key)?;
        let authority = AacsAuthority::new(aacs_master(&keys)?, TreeId(args.tree_id))?;
        mkb.verify(&authority.verifying_key())
            .with_context(|| format!("the signature of {} does not verify", args.mkb.display()))?;
    }
    let (path, text) = match (&args.keydb, &args.pk) {
        (Some(path), None) | (None, Some(path)) => (path, read_keydb(path)?),
        _ => bail!("give --keydb or --pk"),
    };
    if args.pk.is_some() {
        let keys = ProcessingKeys::from_keydb(&text)
            .with_context(|| format!("{} holds no usable processing keys", path.display()))?;
        let media_key = keys.process(&mkb).map_err(|e| match e {
            Error::UnwrapFailed => anyhow::anyhow!(
                "no processing key in {} opens {}",
                path.display(),
                args.mkb.display()
            ),
            other => {
                anyhow::Error::new(other).context(format!("cannot process {}", args.mkb.display()))
            }
        })?;
        println!("{}", hex::encode(media_key.secret_bytes()));
        return Ok(());
    }
    let keys = DeviceKeySet::from_keydb(&text)
        .with_context(|| format!("{} holds no usable device keys", path.display()))?;
    match keys.process(&mkb) {
        Ok(media_key) => {
            println!("{}", hex::encode(media_key.secret_bytes()));
            Ok(())
        }
        Err(Error::Revoked) => bail!(
            "device {} is revoked: no subset of {} covers it",
            keys.device_number().get() >> 1,
            args.mkb.display()
        ),
        Err(e) => Err(e).with_context(|| format!("cannot process {}", args.mkb.display())),
    }
}

/// A KEYDB.cfg file's text, bounded, in a buffer zeroized on drop.
fn read_keydb(path: &Path) -> anyhow::Result<zeroize::Zeroizing<String>> {
    use std::io::Read as _;
    let max = aacs::MAX_KEYDB_LEN as u64;
    let file = fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let size = file.metadata().map_or(max, |m| m.len().min(max));
    // Reserved at the file's size: a buffer that grew would leave copies of keys behind.
    let mut bytes = zeroize::Zeroizing::new(Vec::with_capacity(size as usize + 64));
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() as u64 > max {
        bail!("{} is larger than {max} bytes", path.display());
    }
    std::str::from_utf8(&bytes).with_context(|| format!("{} is not UTF-8", path.display()))?;
    let text = String::from_utf8(std::mem::take(&mut *bytes))
        .map_err(|_| anyhow::anyhow!("{} is not UTF-8", path.display()))?;
    Ok(zeroize::Zeroizing::new(text))
}

/// Creates a file readable by its owner only (refusing to overwrite one) and says so.
fn write_secret_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    super::input::write_secret_file(path, bytes)?;
    println!("wrote {}", path.display());
    Ok(())
}

/// The largest MKB file the CLI reads (64 MiB).
const MAX_MKB_FILE: u64 = 64 << 20;

/// The master secret the AACS profile derives from, refused for a key file whose signing keys
/// are in a token: the profile signs its MKBs with a key derived from the master secret, which
/// would sign outside the token (issue 29).
fn aacs_master(
    keys: &treecast_distributor::keyfile::DistributorKeys,
) -> anyhow::Result<&treecast_keytree::MasterSecret> {
    anyhow::ensure!(
        keys.ekb_signer().is_none(),
        "the key file's signing keys are in a token (keygen --hsm), and the AACS profile signs \
         its MKBs with a key derived from the master secret: not supported"
    );
    Ok(keys.master())
}
