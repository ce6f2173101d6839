//! Reading the CLI's input files: revoked-leaf lists and key files.

use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::Path;

use anyhow::{Context, bail};
use rand_core::SeedableRng;
use treecast_keytree::{MasterSecret, RevocationSet, TreeHeight};
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
    for (n, line) in reader.lines().enumerate() {
        let line =
            line.with_context(|| format!("{}: cannot read line {}", path.display(), n + 1))?;
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

/// Writes a new key file holding a fresh master secret, owner-only (0600), refusing to replace
/// an existing file.
pub(crate) fn write_new_key_file(path: &Path) -> anyhow::Result<()> {
    let mut seed = Zeroizing::new([0u8; 32]);
    getrandom::fill(seed.as_mut_slice())
        .map_err(|e| anyhow::anyhow!("no system randomness: {e}"))?;
    let mut rng = rand_chacha::ChaCha20Rng::from_seed(*seed);
    let secret = MasterSecret::generate(&mut rng);
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {} (it must not exist)", path.display()))?;
    let text = Zeroizing::new(format!(
        "{KEY_FILE_LABEL}\n{}\n",
        hex::encode(secret.secret_bytes())
    ));
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!("wrote a new master secret to {}", path.display());
    Ok(())
}

/// Reads a key file written by [`write_new_key_file`].
pub(crate) fn read_key_file(path: &Path) -> anyhow::Result<MasterSecret> {
    let file =
        fs::File::open(path).with_context(|| format!("cannot open key file {}", path.display()))?;
    let mut text = Zeroizing::new(String::new());
    file.take(MAX_KEY_FILE_LEN + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("key file {} is not text", path.display()))?;
    if text.len() as u64 > MAX_KEY_FILE_LEN {
        bail!("key file {} is too large to be a key file", path.display());
    }
    let mut lines = text.lines();
    if lines.next() != Some(KEY_FILE_LABEL) {
        bail!(
            "{} is not a treecast key file (first line must be `{KEY_FILE_LABEL}`)",
            path.display()
        );
    }
    let mut bytes = Zeroizing::new([0u8; 32]);
    let hex_line = lines.next().unwrap_or("").trim();
    hex::decode_to_slice(hex_line, bytes.as_mut_slice())
        .map_err(|_| anyhow::anyhow!("{}: the secret must be 64 hex digits", path.display()))?;
    Ok(MasterSecret::from_bytes(*bytes))
}

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

const KEY_FILE_LABEL: &str = "treecast-master-secret-v1";
const MAX_KEY_FILE_LEN: u64 = 4096;
