//! The key file of one license server (issue 29): what `treecast keys export` writes from the
//! distributor's key file, and what `treecast serve --keys` runs that server from alone. It
//! holds the server's signing key, the other servers' and the authority's public keys, the
//! distributor secret and the delegation of the server's subtree; no master secret and no other
//! server's signing key.
//!
//! Format (text, at most 64 KiB, mode 0600):
//!
//! ```text
//! treecast-server-keys-v1
//! tree <scheme> <height> <tree id>
//! subtree <node>
//! server <id> <64 hex digits: signing key> [key <key id>]
//! peer <id> <64 hex digits: verifying key> [key <key id>]
//! authority <64 hex digits: the EKB verifying key>
//! distributor <64 hex digits>
//! seed <32 hex digits>
//! device <32 hex digits>
//! above <32 hex digits>
//! ...
//! all <32 hex digits>
//! ```
//!
//! `above` lines come in the delegation's order; `all` is there for Subset Difference only.
//!
//! ```
//! use rand_core::SeedableRng;
//! use treecast_distributor::keyfile::DistributorKeys;
//! use treecast_distributor::serverkeys::ServerKeyFile;
//! use treecast_keytree::{Scheme, TreeConfig, TreeHeight, TreeId};
//! use treecast_protocol::ServerId;
//! # fn main() -> Result<(), treecast_protocol::Error> {
//! let dir = tempfile::tempdir().map_err(|e| treecast_protocol::Error::Io(e.to_string()))?;
//! let keys = DistributorKeys::generate(&mut rand_chacha::ChaCha20Rng::from_seed([1; 32]), 2);
//! let config = TreeConfig::new(Scheme::SUBSET_DIFFERENCE, TreeHeight::new(20)?, TreeId(1));
//! let exported = ServerKeyFile::export(&keys, config, ServerId(2))?;
//! exported.write_new(&dir.path().join("server2.keys"))?;
//! let loaded = ServerKeyFile::load(&dir.path().join("server2.keys"))?;
//! assert_eq!(loaded.server().id(), ServerId(2));
//! assert_eq!(loaded.keys().delegation.leaves(), (1 << 19)..(1 << 20));
//! # Ok(()) }
//! ```

use std::path::Path;

use ed25519_dalek::{SigningKey, VerifyingKey};
use treecast_keytree::{
    Delegation, DistributorSecret, NodeIndex, NodeKey, Scheme, TreeConfig, TreeHeight, TreeId,
};
use treecast_protocol::Error;
use treecast_protocol::ids::{KeyId, ServerId};
use zeroize::Zeroizing;

use crate::keyfile::{
    DistributorKeys, push_hex, push_server_key, read_private, server_in_token, write_private,
};
use crate::keyring::{DelegatedKeys, server_subtree};
use crate::server::LicenseServer;

/// One license server's keys.
pub struct ServerKeyFile {
    keys: DelegatedKeys,
    server: LicenseServer,
    peers: Vec<(ServerId, KeyId, VerifyingKey)>,
}

impl ServerKeyFile {
    /// The keys of license server `server` of the tree `config`, from the distributor's keys.
    ///
    /// # Errors
    /// [`Error::UnknownServer`] for a server the file does not hold; [`Error::KeyTree`]
    /// (`NotDelegable`) for a key file of the flat derivation, whose subtrees cannot be
    /// delegated.
    pub fn export(
        keys: &DistributorKeys,
        config: TreeConfig,
        server: ServerId,
    ) -> Result<Self, Error> {
        let Some(split) = keys.split() else {
            return Err(Error::KeyTree(treecast_keytree::Error::NotDelegable));
        };
        let own = keys
            .servers()
            .iter()
            .find(|s| s.id() == server)
            .ok_or(Error::UnknownServer(server))?
            .clone();
        let authority = keys.authority(config)?;
        let delegation = authority.delegate(server_subtree(&config, split, server)?)?;
        Ok(Self {
            keys: DelegatedKeys {
                delegation,
                distributor: authority.distributor_secret().clone(),
            },
            server: own,
            peers: keys
                .servers()
                .iter()
                .filter(|s| s.id() != server)
                .map(|s| (s.id(), s.key_id(), s.verifying_key()))
                .collect(),
        })
    }

    /// The tree keys.
    pub const fn keys(&self) -> &DelegatedKeys {
        &self.keys
    }

    /// The license server.
    pub const fn server(&self) -> &LicenseServer {
        &self.server
    }

    /// The other license servers' public keys.
    pub fn peers(&self) -> &[(ServerId, KeyId, VerifyingKey)] {
        &self.peers
    }

    /// Its parts: the tree keys, the server, the peers.
    pub fn into_parts(
        self,
    ) -> (
        DelegatedKeys,
        LicenseServer,
        Vec<(ServerId, KeyId, VerifyingKey)>,
    ) {
        (self.keys, self.server, self.peers)
    }

    /// Writes the file, mode 0600, refusing to replace one.
    ///
    /// # Errors
    /// [`Error::Io`] when the file exists or cannot be written.
    pub fn write_new(&self, path: &Path) -> Result<(), Error> {
        let d = &self.keys.delegation;
        let config = d.config();
        // Reserved up front so that appending never reallocates (and leaves a copy behind).
        let lines = 8 + self.peers.len() + d.above().len();
        // A server key in a token is a URI (at most 4 KiB) rather than 64 hex digits.
        let mut text = Zeroizing::new(String::with_capacity(96 * lines + 4096));
        text.push_str(LABEL);
        text.push_str(&format!(
            "\ntree {} {} {}\nsubtree {}\nserver {} ",
            config.scheme.0,
            config.height.get(),
            config.tree_id.0,
            d.root().get(),
            self.server.id().0
        ));
        push_server_key(&mut text, &self.server);
        for (id, key_id, key) in &self.peers {
            text.push_str(&format!("\npeer {} {}", id.0, hex::encode(key.as_bytes())));
            if key_id.0 != 0 {
                text.push_str(&format!(" key {}", key_id.0));
            }
        }
        text.push_str(&format!(
            "\nauthority {}\ndistributor ",
            hex::encode(d.verifying_key().as_bytes())
        ));
        push_hex(&mut text, self.keys.distributor.secret_bytes());
        text.push_str("\nseed ");
        push_hex(&mut text, d.root_seed().secret_bytes());
        text.push_str("\ndevice ");
        push_hex(&mut text, d.device_root().secret_bytes());
        for key in d.above() {
            text.push_str("\nabove ");
            push_hex(&mut text, key.secret_bytes());
        }
        if let Some(all) = d.all() {
            text.push_str("\nall ");
            push_hex(&mut text, all.secret_bytes());
        }
        text.push('\n');
        write_private(path, &text)
    }

    /// Reads a license server's key file.
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be read, is too permissive, too large or malformed, naming
    /// the line.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let bad = |why: String| Error::Io(format!("{}: {why}", path.display()));
        let text = read_private(path, LABEL)?;
        let count = text.lines().count();
        let mut fields = Fields::default();
        // Reserved before any key is decoded into them (a vector that grew would leave copies).
        let mut above: Vec<NodeKey> = Vec::with_capacity(count);
        let mut peers = Vec::with_capacity(count);
        for (n, line) in text.lines().enumerate().skip(1) {
            let at = |why: &str| bad(format!("line {}: {why}", n + 1));
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                [] => {}
                ["tree", scheme, height, id] if fields.tree.is_none() => {
                    let scheme = Scheme(scheme.parse().map_err(|_| at("bad scheme"))?);
                    let height = TreeHeight::new(height.parse().map_err(|_| at("bad height"))?)?;
                    let id = TreeId(id.parse().map_err(|_| at("bad tree id"))?);
                    fields.tree = Some(TreeConfig::new(scheme, height, id));
                }
                ["subtree", node] if fields.subtree.is_none() => {
                    fields.subtree = Some(node.parse::<u64>().map_err(|_| at("bad node"))?);
                }
                ["server", id, key, rest @ ..] if fields.server.is_none() => {
                    let id = ServerId(id.parse().map_err(|_| at("bad server id"))?);
                    if id.0 == 0 {
                        return Err(at("server 0 is not a license server"));
                    }
                    let key_id = key_id(rest).ok_or_else(|| at("expected `key <key id>`"))?;
                    let server = if key.starts_with("pkcs11:") {
                        server_in_token(&mut Default::default(), id, key)?
                    } else {
                        let key = secret::<32>(key).ok_or_else(|| at("a key is 64 hex digits"))?;
                        LicenseServer::from_signing_key(id, SigningKey::from_bytes(&key))
                    };
                    fields.server = Some(server.with_key_id(key_id));
                }
                ["peer", id, key, rest @ ..] => {
                    let id = ServerId(id.parse().map_err(|_| at("bad server id"))?);
                    if id.0 == 0 || peers.iter().any(|(p, _, _)| *p == id) {
                        return Err(at("a peer's ID is repeated or 0"));
                    }
                    let key_id = key_id(rest).ok_or_else(|| at("expected `key <key id>`"))?;
                    peers.push((id, key_id, public(key).ok_or_else(|| at("bad public key"))?));
                }
                ["authority", key] if fields.authority.is_none() => {
                    fields.authority = Some(public(key).ok_or_else(|| at("bad public key"))?);
                }
                ["distributor", key] if fields.distributor.is_none() => {
                    let key = secret::<32>(key).ok_or_else(|| at("a key is 64 hex digits"))?;
                    fields.distributor = Some(DistributorSecret::from_bytes(*key));
                }
                ["seed", key] if fields.seed.is_none() => {
                    let key = secret::<16>(key).ok_or_else(|| at("a seed is 32 hex digits"))?;
                    fields.seed = Some(NodeKey::from_bytes(*key));
                }
                ["device", key] if fields.device.is_none() => {
                    let key = secret::<16>(key).ok_or_else(|| at("a key is 32 hex digits"))?;
                    fields.device = Some(NodeKey::from_bytes(*key));
                }
                ["above", key] => {
                    let key = secret::<16>(key).ok_or_else(|| at("a key is 32 hex digits"))?;
                    above.push(NodeKey::from_bytes(*key));
                }
                ["all", key] if fields.all.is_none() => {
                    let key = secret::<16>(key).ok_or_else(|| at("a key is 32 hex digits"))?;
                    fields.all = Some(NodeKey::from_bytes(*key));
                }
                // The word is named only when it is one of the format's: a line of another kind
                // may be a secret.
                [word, ..] if KEYWORDS.contains(word) => {
                    return Err(at(&format!(
                        "a `{word}` line that is repeated or has the wrong number of fields"
                    )));
                }
                _ => return Err(at("not a line of a license server's key file")),
            }
        }
        let missing = |what: &str| bad(format!("no `{what}` line"));
        let config = fields.tree.ok_or_else(|| missing("tree"))?;
        let root = NodeIndex::new(
            fields.subtree.ok_or_else(|| missing("subtree"))?,
            config.height,
        )?;
        let server = fields.server.ok_or_else(|| missing("server"))?;
        if peers.iter().any(|(id, _, _)| *id == server.id()) {
            return Err(bad(format!("server {} is also a peer", server.id().0)));
        }
        let delegation = Delegation::from_parts(
            config,
            root,
            fields.seed.ok_or_else(|| missing("seed"))?,
            above,
            fields.all,
            fields.device.ok_or_else(|| missing("device"))?,
            fields.authority.ok_or_else(|| missing("authority"))?,
        )
        .map_err(|e| bad(format!("the subtree's keys do not fit its tree: {e}")))?;
        Ok(Self {
            keys: DelegatedKeys {
                delegation,
                distributor: fields.distributor.ok_or_else(|| missing("distributor"))?,
            },
            server,
            peers,
        })
    }
}

impl core::fmt::Debug for ServerKeyFile {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ServerKeyFile")
            .field("keys", &self.keys)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// The single-valued lines read so far.
#[derive(Default)]
struct Fields {
    tree: Option<TreeConfig>,
    subtree: Option<u64>,
    server: Option<LicenseServer>,
    authority: Option<VerifyingKey>,
    distributor: Option<DistributorSecret>,
    seed: Option<NodeKey>,
    device: Option<NodeKey>,
    all: Option<NodeKey>,
}

/// `N` secret bytes from `2N` hex digits, in zeroized memory.
fn secret<const N: usize>(text: &str) -> Option<Zeroizing<[u8; N]>> {
    let mut out = Zeroizing::new([0u8; N]);
    hex::decode_to_slice(text, out.as_mut_slice()).ok()?;
    Some(out)
}

/// The key ID a `server` or `peer` line ends with (`key <id>`), 0 without one.
fn key_id(rest: &[&str]) -> Option<KeyId> {
    match rest {
        [] => Some(KeyId(0)),
        ["key", id] => id.parse().ok().map(KeyId),
        _ => None,
    }
}

fn public(text: &str) -> Option<VerifyingKey> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    VerifyingKey::from_bytes(&out).ok()
}

/// The first words of the format's lines.
const KEYWORDS: [&str; 10] = [
    "tree",
    "subtree",
    "server",
    "peer",
    "authority",
    "distributor",
    "seed",
    "device",
    "above",
    "all",
];

/// The first line of a license server's key file.
pub const LABEL: &str = "treecast-server-keys-v1";
