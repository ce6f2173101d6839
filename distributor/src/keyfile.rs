//! The distributor's key file: the authority's master secret and every license server's signing
//! key, in one file that only its owner can read. The registry holds public material only.
//!
//! Format (text, at most 64 KiB):
//!
//! ```text
//! treecast-keys-v1
//! master <64 hex digits>
//! derivation seed-tree
//! split <depth>
//! server <id> <64 hex digits> [key <key id>]
//! ...
//! ```
//!
//! `derivation` names how the tree's keys derive from the master secret
//! ([`Derivation`]); a file without the line is of the first derivation (`flat`), as every
//! file written before issue 29. `split` is the depth at which the leaves are split between the
//! license servers, one subtree each (server `n` the `n`-th); it goes with `seed-tree`, whose
//! subtrees `treecast keys export` hands to the license servers. A server's `key` is the ID of
//! its key after a rotation (`treecast authority rotate-server-key`, issue 29); a line without
//! one is key 0.
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
use treecast_keytree::{Authority, Derivation, MasterSecret, TreeConfig};
use treecast_protocol::Error;
use treecast_protocol::ids::{KeyId, ServerId};
use zeroize::Zeroizing;

use crate::hsm::{Pkcs11Uri, Token, TokenKey, Tokens};
use crate::server::LicenseServer;

/// The secrets of a distributor.
pub struct DistributorKeys {
    master: MasterSecret,
    /// Where the master secret is sealed, when it is (a token's AES key), and its sealed bytes.
    sealed: Option<(Pkcs11Uri, Vec<u8>)>,
    /// The authority's signing key in a token, when it is there rather than derived.
    ekb_signer: Option<TokenKey>,
    derivation: Derivation,
    split: Option<u8>,
    servers: Vec<LicenseServer>,
}

impl DistributorKeys {
    /// Fresh keys: a master secret and `servers` license servers with IDs 1, 2, …, for a tree
    /// of the seed-tree derivation whose leaves are split between the servers at the least
    /// depth that gives each a subtree.
    pub fn generate(rng: &mut impl CryptoRng, servers: u32) -> Self {
        Self {
            master: MasterSecret::generate(rng),
            sealed: None,
            ekb_signer: None,
            derivation: Derivation::SeedTree,
            split: Some(split_for(servers)),
            servers: (1..=servers)
                .map(|id| LicenseServer::generate(ServerId(id), rng))
                .collect(),
        }
    }

    /// Fresh keys in the PKCS#11 token `uri` names (issue 29): `servers` Ed25519 key pairs
    /// generated in it (`OBJECT-server-N`, sensitive, not extractable) and an AES-256 key
    /// (`OBJECT-wrap`) that seals a fresh master secret, `OBJECT` the URI's object (default
    /// `treecast`). Refused when the token holds an object of one of those labels already.
    ///
    /// # Errors
    /// [`Error::Io`] from the token, or for labels taken.
    pub fn generate_in_token(
        uri: &Pkcs11Uri,
        rng: &mut impl CryptoRng,
        servers: u32,
    ) -> Result<Self, Error> {
        let token = Token::open(uri)?;
        let prefix = uri.object().unwrap_or("treecast");
        let wrap = format!("{prefix}-wrap");
        let ekb = format!("{prefix}-ekb");
        let labels: Vec<String> = (1..=servers)
            .map(|n| format!("{prefix}-server-{n}"))
            .chain([wrap.clone(), ekb.clone()])
            .collect();
        for label in &labels {
            if token.has(label)? {
                return Err(Error::Io(format!(
                    "PKCS#11: token `{}` holds `{label}` already: name other keys with the \
                     URI's object=",
                    uri.token()
                )));
            }
        }
        token.generate_aes(&wrap)?;
        let master = MasterSecret::generate(rng);
        let sealed = token.seal(&wrap, SEAL_AAD, master.secret_bytes())?;
        // Opened once before anything is written: a seal that does not open would lose the
        // master secret with the key file.
        if *token.unseal(&wrap, SEAL_AAD, &sealed)? != master.secret_bytes() {
            return Err(Error::Io(
                "PKCS#11: the sealed master secret does not open to itself".into(),
            ));
        }
        let ekb_signer = token.generate_ed25519(&ekb)?;
        let servers = (1..=servers)
            .map(|n| {
                let key = token.generate_ed25519(&format!("{prefix}-server-{n}"))?;
                Ok(LicenseServer::from_token(ServerId(n), key))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(Self {
            master,
            sealed: Some((token.uri_of(&wrap), sealed)),
            ekb_signer: Some(ekb_signer),
            derivation: Derivation::SeedTree,
            split: Some(split_for(u32::try_from(servers.len()).unwrap_or(u32::MAX))),
            servers,
        })
    }

    /// The authority's master secret.
    pub const fn master(&self) -> &MasterSecret {
        &self.master
    }

    /// The license servers.
    pub fn servers(&self) -> &[LicenseServer] {
        &self.servers
    }

    /// The token key the master secret is sealed under, when it is.
    pub fn sealed_by(&self) -> Option<&Pkcs11Uri> {
        self.sealed.as_ref().map(|(uri, _)| uri)
    }

    /// How the tree's keys derive from the master secret.
    pub const fn derivation(&self) -> Derivation {
        self.derivation
    }

    /// The depth at which the leaves are split between the license servers (seed-tree files).
    pub const fn split(&self) -> Option<u8> {
        self.split
    }

    /// The authority of the tree `config` under these keys, of the file's derivation.
    ///
    /// # Errors
    /// [`Error::KeyTree`] for a scheme this version cannot run.
    pub fn authority(&self, config: TreeConfig) -> Result<Authority, Error> {
        let authority = Authority::with_derivation(&self.master, config, self.derivation)?;
        Ok(match &self.ekb_signer {
            Some(key) => authority.with_signer(std::sync::Arc::new(key.clone())),
            None => authority,
        })
    }

    /// The authority's signing key in a token, when it is there.
    pub const fn ekb_signer(&self) -> Option<&TokenKey> {
        self.ekb_signer.as_ref()
    }

    /// Writes the keys to a new file, readable and writable by its owner only (mode 0600),
    /// refusing to replace an existing file, and syncs it to disk.
    ///
    /// # Errors
    /// [`Error::Io`] when the file exists or cannot be written.
    pub fn write_new(&self, path: &Path) -> Result<(), Error> {
        // Reserved up front so that appending never reallocates (and leaves a copy behind).
        let mut text = Zeroizing::new(String::with_capacity(192 + 96 * self.servers.len()));
        text.push_str(LABEL);
        match &self.sealed {
            None => {
                text.push_str("\nmaster ");
                push_hex(&mut text, self.master.secret_bytes());
            }
            Some((uri, sealed)) => {
                text.push_str(&format!("\nmaster-sealed {uri} {}", hex::encode(sealed)));
            }
        }
        if let Some(key) = &self.ekb_signer {
            text.push_str(&format!("\nekb-signing {}", key.uri()));
        }
        if self.derivation != Derivation::Flat {
            text.push_str("\nderivation ");
            text.push_str(self.derivation.name());
        }
        if let Some(split) = self.split {
            text.push_str(&format!("\nsplit {split}"));
        }
        for s in &self.servers {
            text.push_str(&format!("\nserver {} ", s.id().0));
            push_server_key(&mut text, s);
        }
        text.push('\n');
        write_private(path, &text)
    }

    /// Replaces the file at `path` with these keys, atomically: written to a new file beside
    /// it (mode 0600), synced, then renamed over it, so that a crash leaves the old file or the
    /// new one, never a part (`treecast authority rotate-server-key`, issue 29).
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be written.
    pub fn replace(&self, path: &Path) -> Result<(), Error> {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".new");
        let new = path.with_file_name(name);
        // A file left by a crash of an earlier replacement is not ours to keep.
        let _ = fs::remove_file(&new);
        self.write_new(&new)?;
        fs::rename(&new, path)?;
        if let Some(dir) = path.parent()
            && let Ok(dir) = fs::File::open(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            })
        {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    /// A new key for server `id`, as its key `key_id` (a rotation, issue 29): in memory for a
    /// key held in the file, generated in the same token for a key in a token (label
    /// `<the old key's label without its "-key-N">-key-<key_id>`; a label taken, by a
    /// rotation that stopped, moves the key ID on to the first free one). The file is not
    /// changed: [`DistributorKeys::set_server`] takes it in.
    ///
    /// # Errors
    /// [`Error::UnknownServer`] for a server the file does not hold; [`Error::Io`] from the
    /// token, or for a label it holds already.
    pub fn new_server_key(
        &self,
        id: ServerId,
        key_id: KeyId,
        rng: &mut impl CryptoRng,
    ) -> Result<LicenseServer, Error> {
        let old = self
            .servers
            .iter()
            .find(|s| s.id() == id)
            .ok_or(Error::UnknownServer(id))?;
        let server = match old.token_key() {
            None => LicenseServer::generate(id, rng),
            Some(key) => {
                let uri = key.uri();
                let token = Token::open(&uri)?;
                let label = uri.object().unwrap_or("treecast-server");
                let base = label
                    .rsplit_once("-key-")
                    .filter(|(_, n)| n.parse::<u32>().is_ok())
                    .map_or(label, |(base, _)| base);
                let mut key_id = key_id;
                while token.has(&format!("{base}-key-{}", key_id.0))? {
                    key_id = KeyId(key_id.0.checked_add(1).ok_or_else(|| {
                        Error::Io(format!(
                            "PKCS#11: token `{}` has no key ID left",
                            uri.token()
                        ))
                    })?);
                }
                let label = format!("{base}-key-{}", key_id.0);
                return Ok(
                    LicenseServer::from_token(id, token.generate_ed25519(&label)?)
                        .with_key_id(key_id),
                );
            }
        };
        Ok(server.with_key_id(key_id))
    }

    /// Replaces server `server.id()`'s key with `server` (a rotation's new key).
    ///
    /// # Errors
    /// [`Error::UnknownServer`] for a server the file does not hold.
    pub fn set_server(&mut self, server: LicenseServer) -> Result<(), Error> {
        let slot = self
            .servers
            .iter_mut()
            .find(|s| s.id() == server.id())
            .ok_or(Error::UnknownServer(server.id()))?;
        *slot = server;
        Ok(())
    }

    /// Reads a key file. On Unix, a file that its group or others can read is refused.
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be read, is too permissive, too large, or malformed.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let bad = |why: &str| Error::Io(format!("{}: {why}", path.display()));
        let text = read_private(path, LABEL)?;
        let lines = text.lines().skip(1);
        let mut master = None;
        let mut tokens = Tokens::default();
        let mut sealed = None;
        let mut ekb_signer = None;
        let mut derivation = None;
        let mut split = None;
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
                ["master-sealed", uri, hex_text] if master.is_none() => {
                    let uri: Pkcs11Uri = uri.parse()?;
                    let bytes = hex::decode(hex_text)
                        .map_err(|_| bad(&format!("line {}: the sealed secret is hex", n + 2)))?;
                    let label = uri
                        .object()
                        .ok_or_else(|| bad(&format!("line {}: the URI names no object", n + 2)))?;
                    let secret = tokens.open(&uri)?.unseal(label, SEAL_AAD, &bytes)?;
                    if secret.len() != 32 {
                        return Err(bad(&format!("line {}: a master secret is 32 bytes", n + 2)));
                    }
                    let mut out = Zeroizing::new([0u8; 32]);
                    out.copy_from_slice(&secret);
                    master = Some(MasterSecret::from_bytes(*out));
                    sealed = Some((uri, bytes));
                }
                ["ekb-signing", uri] if ekb_signer.is_none() => {
                    let uri: Pkcs11Uri = uri.parse()?;
                    let label = uri
                        .object()
                        .ok_or_else(|| bad(&format!("line {}: the URI names no object", n + 2)))?;
                    ekb_signer = Some(TokenKey::find(&tokens.open(&uri)?, label)?);
                }
                ["derivation", name] if derivation.is_none() => {
                    derivation = Some(Derivation::from_name(name).ok_or_else(|| {
                        bad(&format!(
                            "line {}: unknown derivation `{name}` (flat or seed-tree)",
                            n + 2
                        ))
                    })?);
                }
                ["split", depth] if split.is_none() => {
                    split = Some(
                        depth
                            .parse::<u8>()
                            .ok()
                            .filter(|&d| d <= MAX_SPLIT)
                            .ok_or_else(|| {
                                bad(&format!("line {}: split must be 0..={MAX_SPLIT}", n + 2))
                            })?,
                    );
                }
                ["server", id, k] | ["server", id, k, "key", _] => {
                    let id: u32 = id
                        .parse()
                        .map_err(|_| bad(&format!("line {}: bad server id", n + 2)))?;
                    let key_id = match fields.as_slice() {
                        [.., "key", kid] => KeyId(
                            kid.parse()
                                .map_err(|_| bad(&format!("line {}: bad key id", n + 2)))?,
                        ),
                        _ => KeyId(0),
                    };
                    if servers
                        .iter()
                        .any(|s: &LicenseServer| s.id() == ServerId(id))
                    {
                        return Err(bad(&format!("line {}: server {id} twice", n + 2)));
                    }
                    let server = if k.starts_with("pkcs11:") {
                        server_in_token(&mut tokens, ServerId(id), k)?
                    } else {
                        LicenseServer::from_signing_key(
                            ServerId(id),
                            SigningKey::from_bytes(&*key(k)?),
                        )
                    };
                    servers.push(server.with_key_id(key_id));
                }
                _ => {
                    return Err(bad(&format!(
                        "line {}: expected `master <hex>` or `master-sealed <uri> <hex>`, \
                         `ekb-signing <uri>`, `derivation <name>`, `split <depth>` or `server \
                         <id> <hex or uri> [key <id>]`, each once but servers",
                        n + 2
                    )));
                }
            }
        }
        let master = master.ok_or_else(|| bad("no master secret"))?;
        let derivation = derivation.unwrap_or(Derivation::Flat);
        if split.is_some() != (derivation == Derivation::SeedTree) {
            return Err(bad(
                "`split` goes with `derivation seed-tree`, and only with it",
            ));
        }
        if let Some(depth) = split
            && let Some(s) = servers
                .iter()
                .find(|s| u64::from(s.id().0) > 1u64 << depth || s.id().0 == 0)
        {
            return Err(bad(&format!(
                "server {} has no subtree when the leaves are split at depth {depth}",
                s.id().0
            )));
        }
        Ok(Self {
            master,
            sealed,
            ekb_signer,
            derivation,
            split,
            servers,
        })
    }
}

impl core::fmt::Debug for DistributorKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DistributorKeys")
            .field("servers", &self.servers)
            .finish_non_exhaustive()
    }
}

/// Appends `secret` as hex without leaving an unzeroized copy behind (`text` has room).
pub(crate) fn push_hex(text: &mut Zeroizing<String>, secret: &[u8]) {
    let mut buf = Zeroizing::new([0u8; 64]);
    for chunk in secret.chunks(32) {
        if let Some(out) = buf.get_mut(..chunk.len() * 2)
            && hex::encode_to_slice(chunk, out).is_ok()
        {
            text.extend(out.iter().map(|&b| char::from(b)));
        }
    }
}

/// Appends a server's key as a key file holds it: 64 hex digits, or the URI of its key in a
/// token.
pub(crate) fn push_server_key(text: &mut Zeroizing<String>, server: &LicenseServer) {
    match (server.memory_key(), server.token_key()) {
        (Some(key), _) => push_hex(text, key.as_bytes()),
        (None, Some(key)) => text.push_str(&key.uri().to_string()),
        (None, None) => {}
    }
    if server.key_id().0 != 0 {
        text.push_str(&format!(" key {}", server.key_id().0));
    }
}

/// License server `id` whose key is in a token, named by `uri`.
pub(crate) fn server_in_token(
    tokens: &mut Tokens,
    id: ServerId,
    uri: &str,
) -> Result<LicenseServer, Error> {
    let uri: Pkcs11Uri = uri.parse()?;
    let label = uri
        .object()
        .ok_or_else(|| Error::Io(format!("server {}: the URI names no object", id.0)))?
        .to_owned();
    let token = tokens.open(&uri)?;
    Ok(LicenseServer::from_token(
        id,
        TokenKey::find(&token, &label)?,
    ))
}

/// Writes `text` to a new file, readable and writable by its owner only (mode 0600), refusing
/// to replace an existing file, and syncs it to disk.
pub(crate) fn write_private(path: &Path, text: &str) -> Result<(), Error> {
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

/// Reads a key file whose first line is `label`: refused on Unix when its group or others can
/// read it, when larger than 64 KiB or not text. The buffer is reserved up front for the
/// largest file read: one that grew would leave copies of the secrets in freed memory.
pub(crate) fn read_private(path: &Path, label: &str) -> Result<Zeroizing<String>, Error> {
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
    let mut text = Zeroizing::new(String::with_capacity(MAX_LEN as usize + 64));
    file.take(MAX_LEN + 1)
        .read_to_string(&mut text)
        .map_err(|_| bad("not a treecast key file (not text)"))?;
    if text.len() as u64 > MAX_LEN {
        return Err(bad("too large to be a key file"));
    }
    if text.lines().next() != Some(label) {
        return Err(bad(&format!(
            "not a {} (the first line must be `{label}`)",
            if label == LABEL {
                "treecast key file"
            } else {
                "treecast license server key file"
            }
        )));
    }
    Ok(text)
}

/// The first line of the file at `path` (at most 64 bytes of it): what kind of key file it is.
///
/// # Errors
/// [`Error::Io`] when it cannot be read.
pub fn label_of(path: &Path) -> Result<String, Error> {
    let mut first = [0u8; 64];
    let mut file =
        fs::File::open(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    let n = file.read(&mut first)?;
    let head = first.get(..n).unwrap_or_default();
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    Ok(String::from_utf8_lossy(line).into_owned())
}

/// The least depth that gives each of `servers` license servers a subtree.
fn split_for(servers: u32) -> u8 {
    let mut depth = 0u8;
    while depth < MAX_SPLIT && (1u64 << depth) < u64::from(servers) {
        depth += 1;
    }
    depth
}

const LABEL: &str = "treecast-keys-v1";
/// The associated data a sealed master secret is bound to.
const SEAL_AAD: &[u8] = b"treecast/v1 master secret";
/// At most 2^16 license servers.
const MAX_SPLIT: u8 = 16;
const MAX_LEN: u64 = 64 * 1024;
