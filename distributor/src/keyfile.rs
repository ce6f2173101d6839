//! The distributor's key file: the authority's master secret and every license server's signing
//! key, in one file that only its owner can read. The registry holds public material only.
//!
//! Format (text, at most 64 KiB):
//!
//! ```text
//! treecast-keys-v1
//! master <64 hex digits>
//! server <id> <64 hex digits>
//! ...
//! ```
//!
//! ```
//! use treecast_distributor::keyfile::DistributorKeys;
//! # fn main() -> Result<(), treecast_protocol::Error> {
//! let dir = tempfile::tempdir().map_err(|e| treecast_protocol::Error::Io(e.to_string()))?;
//! let path = dir.path().join("distributor.keys");
//! let keys = DistributorKeys::generate(&mut rand_chacha::ChaCha20Rng::from_seed([1; 32]), 2);
//! keys.write_new(&path)?;
//! let loaded = DistributorKeys::load(&path)?;
//! assert_eq!(loaded.servers().len(), 2);
//! # Ok(()) }
//! # use rand_core::SeedableRng;
//! ```

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;

use ed25519_dalek::SigningKey;
use rand_core::CryptoRng;
use treecast_keytree::MasterSecret;
use treecast_protocol::Error;
use treecast_protocol::ids::ServerId;
use zeroize::Zeroizing;

use crate::server::LicenseServer;

/// The secrets of a distributor.
pub struct DistributorKeys {
    master: MasterSecret,
    servers: Vec<LicenseServer>,
}

impl DistributorKeys {
    /// Fresh keys: a master secret and `servers` license servers with IDs 1, 2, …
    pub fn generate(rng: &mut impl CryptoRng, servers: u32) -> Self {
        Self {
            master: MasterSecret::generate(rng),
            servers: (1..=servers)
                .map(|id| LicenseServer::generate(ServerId(id), rng))
                .collect(),
        }
    }

    /// The authority's master secret.
    pub const fn master(&self) -> &MasterSecret {
        &self.master
    }

    /// The license servers.
    pub fn servers(&self) -> &[LicenseServer] {
        &self.servers
    }

    /// Writes the keys to a new file, readable and writable by its owner only (mode 0600),
    /// refusing to replace an existing file, and syncs it to disk.
    ///
    /// # Errors
    /// [`Error::Io`] when the file exists or cannot be written.
    pub fn write_new(&self, path: &Path) -> Result<(), Error> {
        // Reserved up front so that appending never reallocates (and leaves a copy behind).
        let mut text = Zeroizing::new(String::with_capacity(128 + 96 * self.servers.len()));
        text.push_str(LABEL);
        text.push_str("\nmaster ");
        push_hex(&mut text, self.master.secret_bytes());
        for s in &self.servers {
            text.push_str(&format!("\nserver {} ", s.id().0));
            push_hex(&mut text, s.signing_key().as_bytes());
        }
        text.push('\n');
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(|e| {
            Error::Io(format!(
                "cannot create {} (it must not exist): {e}",
                path.display()
            ))
        })?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        Ok(())
    }

    /// Reads a key file. On Unix, a file that its group or others can read is refused.
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be read, is too permissive, too large, or malformed.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let bad = |why: &str| Error::Io(format!("{}: {why}", path.display()));
        let file = fs::File::open(path).map_err(|e| bad(&e.to_string()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = file.metadata()?.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(bad(&format!(
                    "readable by others (mode {:o}); chmod 600 it",
                    mode & 0o777
                )));
            }
        }
        // Reserved up front for the largest file read: a buffer that grew would leave copies of
        // the secrets in freed memory.
        let mut text = Zeroizing::new(String::with_capacity(MAX_LEN as usize + 64));
        file.take(MAX_LEN + 1)
            .read_to_string(&mut text)
            .map_err(|_| bad("not a treecast key file (not text)"))?;
        if text.len() as u64 > MAX_LEN {
            return Err(bad("too large to be a key file"));
        }
        let mut lines = text.lines();
        if lines.next() != Some(LABEL) {
            return Err(bad(&format!(
                "not a treecast key file (the first line must be `{LABEL}`)"
            )));
        }
        let mut master = None;
        // One slot a line at most, reserved before any key is decoded into it (a vector that
        // grew would move the signing keys and leave copies behind).
        let mut servers = Vec::with_capacity(text.lines().count());
        for (n, line) in lines.enumerate() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let key = |hex_text: &str| -> Result<Zeroizing<[u8; 32]>, Error> {
                let mut out = Zeroizing::new([0u8; 32]);
                hex::decode_to_slice(hex_text, out.as_mut_slice())
                    .map_err(|_| bad(&format!("line {}: a key must be 64 hex digits", n + 2)))?;
                Ok(out)
            };
            match fields.as_slice() {
                [] => {}
                ["master", k] if master.is_none() => {
                    master = Some(MasterSecret::from_bytes(*key(k)?))
                }
                ["server", id, k] => {
                    let id: u32 = id
                        .parse()
                        .map_err(|_| bad(&format!("line {}: bad server id", n + 2)))?;
                    if servers
                        .iter()
                        .any(|s: &LicenseServer| s.id() == ServerId(id))
                    {
                        return Err(bad(&format!("line {}: server {id} twice", n + 2)));
                    }
                    servers.push(LicenseServer::from_signing_key(
                        ServerId(id),
                        SigningKey::from_bytes(&*key(k)?),
                    ));
                }
                _ => {
                    return Err(bad(&format!(
                        "line {}: expected `master <hex>` or `server <id> <hex>`",
                        n + 2
                    )));
                }
            }
        }
        let master = master.ok_or_else(|| bad("no master secret"))?;
        Ok(Self { master, servers })
    }
}

impl core::fmt::Debug for DistributorKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DistributorKeys")
            .field("servers", &self.servers)
            .finish_non_exhaustive()
    }
}

/// Appends `secret` as hex without leaving an unzeroized copy behind.
fn push_hex(text: &mut Zeroizing<String>, secret: &[u8; 32]) {
    let mut buf = Zeroizing::new([0u8; 64]);
    if hex::encode_to_slice(secret, buf.as_mut_slice()).is_ok() {
        text.extend(buf.iter().map(|&b| char::from(b)));
    }
}

const LABEL: &str = "treecast-keys-v1";
const MAX_LEN: u64 = 64 * 1024;
