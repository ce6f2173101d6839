//! `treecast cenc`: Common Encryption of a clear fragmented MP4 and back (issue 30,
//! `docs/cenc.md`), with the `treecast-cenc` crate.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use rand_core::SeedableRng;
use treecast_cenc::{CencKey, KeyId};
use zeroize::Zeroizing;

/// `treecast cenc`.
#[derive(Debug, Subcommand)]
pub(crate) enum CencCommand {
    /// Encrypt a clear fragmented MP4 (H.264 and AAC) with the `cenc` scheme: `encv`/`enca`
    /// sample entries with `tenc`, `senc`/`saiz`/`saio` in every fragment, video by subsample
    /// with NAL headers clear, and a ClearKey `pssh`.
    Encrypt {
        /// A file of 32 hex digits: the AES-128 content key (mode 0600).
        #[arg(long)]
        key_file: PathBuf,
        /// The key ID, 32 hex digits.
        #[arg(long)]
        kid: String,
        /// The clear fragmented MP4 (`docs/cenc.md` gives the ffmpeg command).
        #[arg(long = "in")]
        input: PathBuf,
        /// Where to write the protected MP4; it must not exist.
        #[arg(long)]
        out: PathBuf,
    },
    /// Decrypt a `cenc` MP4 back into the clear one.
    Decrypt {
        /// A file of 32 hex digits: the content key (mode 0600).
        #[arg(long)]
        key_file: PathBuf,
        /// The protected MP4.
        #[arg(long = "in")]
        input: PathBuf,
        /// Where to write the clear MP4; it must not exist.
        #[arg(long)]
        out: PathBuf,
    },
}

pub(crate) fn run(cmd: &CencCommand) -> anyhow::Result<()> {
    match cmd {
        CencCommand::Encrypt {
            key_file,
            kid,
            input,
            out,
        } => {
            let key = read_key(key_file)?;
            let kid = KeyId::from_hex(kid)?;
            let clear = read_media(input)?;
            let mut seed = Zeroizing::new([0u8; 32]);
            getrandom::fill(seed.as_mut_slice())
                .map_err(|e| anyhow::anyhow!("no system randomness: {e}"))?;
            let mut rng = rand_chacha::ChaCha20Rng::from_seed(*seed);
            let protected = treecast_cenc::encrypt(&clear, &key, kid, &mut rng)
                .with_context(|| format!("cannot encrypt {}", input.display()))?;
            write_new(out, &protected)?;
            println!(
                "wrote {} ({} bytes): cenc, key ID {}",
                out.display(),
                protected.len(),
                kid.to_hex()
            );
        }
        CencCommand::Decrypt {
            key_file,
            input,
            out,
        } => {
            let key = read_key(key_file)?;
            let protected = read_media(input)?;
            let kid = treecast_cenc::key_id(&protected)
                .with_context(|| format!("cannot read {}", input.display()))?;
            let clear = treecast_cenc::decrypt(&protected, &key)
                .with_context(|| format!("cannot decrypt {}", input.display()))?;
            write_new(out, &clear)?;
            println!(
                "wrote {} ({} bytes) from key ID {}",
                out.display(),
                clear.len(),
                kid.to_hex()
            );
        }
    }
    Ok(())
}

/// A content key file: 32 hex digits, readable by its owner only.
fn read_key(path: &Path) -> anyhow::Result<CencKey> {
    let mut file =
        fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file.metadata()?.permissions().mode();
        if mode & 0o077 != 0 {
            anyhow::bail!(
                "{}: readable by others (mode {:o}); chmod 600 it",
                path.display(),
                mode & 0o777
            );
        }
    }
    // Reserved up front: a buffer that grew would leave copies of the key behind.
    let mut text = Zeroizing::new(String::with_capacity(128));
    (&mut file)
        .take(100)
        .read_to_string(&mut text)
        .with_context(|| format!("{}: not a key file", path.display()))?;
    CencKey::from_hex(&text).with_context(|| format!("{}", path.display()))
}

fn read_media(path: &Path) -> anyhow::Result<Vec<u8>> {
    let file = fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(treecast_cenc::MAX_FILE as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() > treecast_cenc::MAX_FILE {
        anyhow::bail!("{}: larger than 4 GiB", path.display());
    }
    Ok(bytes)
}

fn write_new(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("cannot create {} (it must not exist)", path.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}
