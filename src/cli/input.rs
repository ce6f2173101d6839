//! Reading the CLI's input files: revoked-leaf lists and key files.

use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use anyhow::{Context, bail};
use rand_core::SeedableRng;
use treecast::license::keyfile::DistributorKeys;
use treecast_keytree::{RevocationSet, TreeHeight};
use zeroize::Zeroizing;

/// Reads a revoked-leaf file: one decimal leaf index a line; blank lines and `#` comments are
/// skipped. `None` is the empty set.
pub(crate) fn read_revoked(
    path: Option<&Path>,
    height: TreeHeight,
) -> anyhow::Result<RevocationSet> {
    let Some(path) = path else {
        return Ok(RevocationSet::new(height));
    };
    let reader: Box<dyn BufRead> = if path == Path::new("-") {
        Box::new(BufReader::new(io::stdin()))
    } else {
        let file =
            fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        Box::new(BufReader::new(file))
    };
    let mut leaves = Vec::new();
    // Bounded: at most MAX_REVOKED_TEXT bytes are read, so a line or a file without end cannot
    // exhaust memory (docs/design.md, "CLI").
    let mut read = 0u64;
    for (n, line) in reader.take(MAX_REVOKED_TEXT + 1).lines().enumerate() {
        let line =
            line.with_context(|| format!("{}: cannot read line {}", path.display(), n + 1))?;
        read += line.len() as u64 + 1;
        if read > MAX_REVOKED_TEXT {
            bail!(
                "{}: larger than {} MiB, the most a revoked-leaf file may hold",
                path.display(),
                MAX_REVOKED_TEXT >> 20
            );
        }
        let text = line.split('#').next().unwrap_or("").trim();
        if text.is_empty() {
            continue;
        }
        let leaf: u32 = text.parse().with_context(|| {
            format!("{}:{}: `{text}` is not a leaf index", path.display(), n + 1)
        })?;
        if u64::from(leaf) >= height.leaf_count() {
            bail!(
                "{}:{}: leaf {leaf} is outside a height-{height} tree",
                path.display(),
                n + 1
            );
        }
        leaves.push(leaf);
    }
    Ok(RevocationSet::from_leaves(height, leaves)?)
}

/// The largest revoked-leaf file read: 256 MiB, about 25 million leaves.
const MAX_REVOKED_TEXT: u64 = 256 << 20;

/// Creates a new distributor key file with a master secret and `servers` license servers, from
/// system randomness.
pub(crate) fn write_new_key_file(
    path: &Path,
    servers: u32,
    hsm: Option<&str>,
) -> anyhow::Result<()> {
    let mut seed = Zeroizing::new([0u8; 32]);
    getrandom::fill(seed.as_mut_slice())
        .map_err(|e| anyhow::anyhow!("no system randomness: {e}"))?;
    let mut rng = rand_chacha::ChaCha20Rng::from_seed(*seed);
    match hsm {
        None => {
            DistributorKeys::generate(&mut rng, servers).write_new(path)?;
            println!(
                "wrote a new key file to {} (a master secret and {servers} license servers)",
                path.display()
            );
        }
        Some(uri) => {
            let uri: treecast_distributor::hsm::Pkcs11Uri = uri.parse()?;
            // The file can be made before the token is touched: keys generated in a token for
            // a file that then fails would be orphans there.
            let mut probe = std::fs::OpenOptions::new();
            probe.write(true).create_new(true);
            std::os::unix::fs::OpenOptionsExt::mode(&mut probe, 0o600);
            probe
                .open(path)
                .with_context(|| format!("cannot create {} (it must not exist)", path.display()))?;
            std::fs::remove_file(path)?;
            DistributorKeys::generate_in_token(&uri, &mut rng, servers)?.write_new(path)?;
            println!(
                "wrote a new key file to {} ({servers} license servers' signing keys generated \
                 in token `{}`, the master secret sealed under a key of it)",
                path.display(),
                uri.token()
            );
        }
    }
    Ok(())
}

/// Reads a distributor key file.
pub(crate) fn read_key_file(path: &Path) -> anyhow::Result<DistributorKeys> {
    Ok(DistributorKeys::load(path)?)
}

/// A 16-byte secret key from the command line (`hex`) or from a file (`file`; `-` is standard
/// input) holding 32 hex digits; exactly one of them is given (clap enforces it).
pub(crate) fn secret_key16(
    hex: Option<&str>,
    file: Option<&Path>,
) -> anyhow::Result<Zeroizing<[u8; 16]>> {
    match (hex, file) {
        (Some(text), None) => parse_key16(text),
        (None, Some(path)) => {
            // Reserved up front: a buffer that grew would leave copies of the key behind.
            let mut text = Zeroizing::new(Vec::with_capacity(MAX_KEY_TEXT as usize + 64));
            let reader: Box<dyn Read> = if path == Path::new("-") {
                Box::new(io::stdin())
            } else {
                Box::new(
                    fs::File::open(path)
                        .with_context(|| format!("cannot open {}", path.display()))?,
                )
            };
            reader
                .take(MAX_KEY_TEXT + 1)
                .read_to_end(&mut text)
                .with_context(|| format!("cannot read {}", path.display()))?;
            if text.len() as u64 > MAX_KEY_TEXT {
                bail!("{}: too large to hold a key", path.display());
            }
            let text = std::str::from_utf8(&text)
                .map_err(|_| anyhow::anyhow!("{}: a key must be 32 hex digits", path.display()))?;
            parse_key16(text).with_context(|| path.display().to_string())
        }
        _ => bail!("give the key either on the command line or in a file, not both"),
    }
}

/// The most text a key file given to `--…-key-file` may hold.
const MAX_KEY_TEXT: u64 = 4096;

/// Parses a 16-byte key given as 32 hex digits.
pub(crate) fn parse_key16(s: &str) -> anyhow::Result<Zeroizing<[u8; 16]>> {
    let mut out = Zeroizing::new([0u8; 16]);
    hex::decode_to_slice(s.trim(), out.as_mut_slice())
        .map_err(|_| anyhow::anyhow!("a key must be 32 hex digits"))?;
    Ok(out)
}

/// Reads a whole input file of at most `max` bytes.
pub(crate) fn read_bounded(path: &Path, max: u64) -> anyhow::Result<Vec<u8>> {
    let file = fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() as u64 > max {
        bail!("{} is larger than {max} bytes", path.display());
    }
    Ok(bytes)
}

/// Creates a file readable by its owner only (mode 0600), refusing to overwrite one, and syncs
/// it to disk.
pub(crate) fn write_secret_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    fill_secret_file(create_secret_file(path)?, path, bytes)
}

/// A new file at `path` (mode 0600), to write a secret into once it is known: made first, so
/// that a secret the service hands out only once (a rotated credential) is never lost to a
/// file that cannot be created.
pub(crate) fn create_secret_file(path: &Path) -> anyhow::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .with_context(|| format!("cannot create {} (it must not exist)", path.display()))
}

/// Writes `bytes` into `file` (made by [`create_secret_file`] at `path`) and syncs it.
pub(crate) fn fill_secret_file(
    mut file: fs::File,
    path: &Path,
    bytes: &[u8],
) -> anyhow::Result<()> {
    use std::io::Write;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}
