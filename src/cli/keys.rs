//! `treecast keys export` and `treecast authority` (issue 29): one key file a license server,
//! holding no master secret, and the authority's own work (EKBs, revocations) run where the
//! operator chooses, against the shared registry. `ServeKeys` is what `serve` runs from: the
//! full key file or a license server's.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use treecast::license::registry::{Registry, StoreSpec};
use treecast::license::{ClientId, Distributor, DistributorConfig, ServerId, SystemClock, Tariff};
use treecast_distributor::keyfile::{self, DistributorKeys};
use treecast_distributor::serverkeys::{self, ServerKeyFile};
use treecast_keytree::{TreeConfig, TreeHeight, TreeId};
use treecast_protocol::KeyId;
use treecast_protocol::time::Clock;

use super::SchemeArg;

/// `treecast keys`.
#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Write the key file of one license server: its signing key, the other servers' and the
    /// authority's public keys, the distributor secret and its subtree's keys; no master
    /// secret and no other server's signing key (`docs/service.md`).
    Export(ExportArgs),
    /// Say where each key of a key file is (in the file or in a token, and whether the token
    /// keeps it sensitive and unextractable) and print the public keys.
    Show {
        /// A distributor or license server key file.
        #[arg(long, visible_alias = "key")]
        keys: PathBuf,
    },
}

/// Arguments of `treecast keys export`.
#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// The distributor key file (see `treecast keygen`).
    #[arg(long, visible_alias = "key")]
    keys: PathBuf,
    /// The license server whose file to write.
    #[arg(long)]
    server: u32,
    /// Where to write it; it must not exist (mode 0600).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    tree: TreeArgs,
}

/// The tree a key file's keys are for, as `serve` takes it.
#[derive(Clone, Copy, Debug, Args)]
pub(crate) struct TreeArgs {
    /// The key tree's scheme.
    #[arg(long, value_enum, default_value = "cs")]
    scheme: SchemeArg,
    /// The key tree's height.
    #[arg(long, default_value_t = 32)]
    height: u8,
}

impl TreeArgs {
    fn config(self) -> anyhow::Result<TreeConfig> {
        Ok(TreeConfig::new(
            self.scheme.into(),
            TreeHeight::new(self.height)?,
            TreeId(1),
        ))
    }
}

/// Arguments of `treecast authority`.
#[derive(Debug, Args)]
pub(crate) struct AuthorityArgs {
    /// The distributor key file, with the master secret.
    #[arg(long, visible_alias = "key")]
    keys: PathBuf,
    /// The registry the license servers serve: `sqlite:PATH` (while no `serve` holds it) or
    /// `postgres://…`.
    #[arg(long, env = "TREECAST_STORE")]
    store: StoreSpec,
    /// A file holding the PostgreSQL password (else `PGPASSWORD` or the libpq password file).
    #[arg(long, env = "TREECAST_STORE_PASSWORD_FILE")]
    store_password_file: Option<PathBuf>,
    #[command(flatten)]
    tree: TreeArgs,
    #[command(subcommand)]
    command: AuthorityCommand,
}

/// What the authority does.
#[derive(Debug, Subcommand)]
pub(crate) enum AuthorityCommand {
    /// Build, sign and store the current epoch's EKB (if it is not stored yet), which the
    /// license servers then serve and open.
    PublishEkb,
    /// Revoke a client (its leaf, for good), start a new epoch and publish its EKB.
    Revoke {
        /// The client to revoke.
        #[arg(long)]
        client: u64,
    },
    /// Give a license server a new signing key (issue 29): the authority signs a list of the
    /// server's keys with the new one added into the registry, then the key file gets the new
    /// key in place of the old. Restart (or export again and restart) the server's process; its
    /// old key verifies until `retire-server-key` (`docs/service.md`, "Rotating a license
    /// server's key").
    RotateServerKey {
        /// The license server.
        #[arg(long)]
        server: u32,
    },
    /// Retire a license server's key (issue 29): the authority signs a list of the server's
    /// keys without it. Devices that take the list refuse what that key signed.
    RetireServerKey {
        /// The license server.
        #[arg(long)]
        server: u32,
        /// The key ID to retire (not the one the key file signs with).
        #[arg(long)]
        key: u32,
    },
}

pub(crate) fn run(cmd: &KeysCommand) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::Show { keys } => show(keys),
        KeysCommand::Export(args) => {
            let keys = DistributorKeys::load(&args.keys)?;
            let exported = ServerKeyFile::export(&keys, args.tree.config()?, ServerId(args.server))
                .with_context(|| {
                    format!(
                        "cannot export license server {} from {}",
                        args.server,
                        args.keys.display()
                    )
                })?;
            exported.write_new(&args.out)?;
            let leaves = exported.keys().delegation.leaves();
            println!(
                "wrote {} for license server {}: leaves {}..{} (the last is the server's own), \
                 no master secret",
                args.out.display(),
                args.server,
                leaves.start,
                leaves.end
            );
            Ok(())
        }
    }
}

pub(crate) fn run_authority(args: &AuthorityArgs) -> anyhow::Result<()> {
    let config = args.tree.config()?;
    let password = args
        .store_password_file
        .as_deref()
        .map(super::serve::read_password)
        .transpose()?;
    let registry = args
        .store
        .open_with_password(config.height, password.as_ref().map(|p| p.as_str()))
        .with_context(|| args.store.name())?;
    drop(password);
    let distributor = authority_distributor(&args.keys, config, registry)?;
    match args.command {
        AuthorityCommand::Revoke { client } => {
            let epoch = distributor.revoke_client(ClientId(client))?;
            println!("revoked client {client}: epoch {epoch}");
        }
        AuthorityCommand::RotateServerKey { server } => {
            return rotate_server_key(&args.keys, &distributor, ServerId(server));
        }
        AuthorityCommand::RetireServerKey { server, key } => {
            return retire_server_key(&args.keys, &distributor, ServerId(server), KeyId(key));
        }
        AuthorityCommand::PublishEkb => {}
    }
    let (epoch, ekb) = distributor.current_ekb()?;
    println!(
        "published the EKB of epoch {epoch} ({} bytes) at {}",
        ekb.as_bytes().len(),
        SystemClock.now().0
    );
    Ok(())
}

/// `authority rotate-server-key`: a new key for `server`, listed beside the keys that verify
/// now, then written to the key file in place of the old.
fn rotate_server_key<R: Registry>(
    path: &Path,
    distributor: &Distributor<R>,
    server: ServerId,
) -> anyhow::Result<()> {
    let mut keys = DistributorKeys::load(path)?;
    let signing = keys
        .servers()
        .iter()
        .find(|s| s.id() == server)
        .with_context(|| format!("{} holds no key of {server}", path.display()))?
        .key_id();
    let (_, mut listed) = distributor.server_keys_of(server)?;
    // The new key is named by the number of the list that adds it: never given twice.
    let sequence = distributor.next_server_key_list(server)?;
    let key_id = KeyId(u32::try_from(sequence).context("list numbers past 2^32")?);
    if listed.len() >= treecast_protocol::server::MAX_SERVER_KEYS {
        anyhow::bail!(
            "{server} has {} keys that verify, the most a list holds: retire one first \
             (`treecast authority retire-server-key`)",
            listed.len()
        );
    }
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::fill(seed.as_mut_slice())
        .map_err(|e| anyhow::anyhow!("no system randomness: {e}"))?;
    let mut rng = <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::from_seed(*seed);
    let new = keys.new_server_key(server, key_id, &mut rng)?;
    // A key left in a token by a run that stopped takes its label: the new one is numbered on.
    let key_id = new.key_id();
    let sequence = sequence.max(u64::from(key_id.0));
    listed.push((key_id, new.verifying_key()));
    // The registry first: a key file whose new key no list names would sign what no device
    // verifies; a list that names a key the file lost is only retired later.
    let list = distributor.publish_server_keys(server, sequence, listed)?;
    keys.set_server(new)?;
    keys.replace(path)
        .with_context(|| format!("list {} is published but", list.tbs().sequence))?;
    println!(
        "{server}: new key {key_id} written to {}; list {} of its keys: {}. Restart its \
         process with the new key file (export it again for a license server's own file), \
         then retire {signing} once devices have the list",
        path.display(),
        list.tbs().sequence,
        key_names(&list.tbs().keys),
    );
    Ok(())
}

/// `authority retire-server-key`: a list of `server`'s keys without `key`.
fn retire_server_key<R: Registry>(
    path: &Path,
    distributor: &Distributor<R>,
    server: ServerId,
    key: KeyId,
) -> anyhow::Result<()> {
    let keys = DistributorKeys::load(path)?;
    if keys
        .servers()
        .iter()
        .any(|s| s.id() == server && s.key_id() == key)
    {
        anyhow::bail!(
            "{} signs as {server}'s {key}: rotate first (`treecast authority rotate-server-key`)",
            path.display()
        );
    }
    let (_, listed) = distributor.server_keys_of(server)?;
    if !listed.iter().any(|(k, _)| *k == key) {
        anyhow::bail!(
            "{key} is not among {server}'s keys that verify ({})",
            key_names(&listed)
        );
    }
    let kept: Vec<_> = listed.into_iter().filter(|(k, _)| *k != key).collect();
    let list =
        distributor.publish_server_keys(server, distributor.next_server_key_list(server)?, kept)?;
    println!(
        "{server}: {key} retired; list {} of its keys: {}",
        list.tbs().sequence,
        key_names(&list.tbs().keys)
    );
    Ok(())
}

fn key_names(keys: &[(KeyId, treecast_protocol::VerifyingKey)]) -> String {
    keys.iter()
        .map(|(k, _)| k.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The authority's distributor from the full key file at `keys`, over `registry`: what
/// `treecast authority` (and `simulate --authority-keys`) revoke and publish with.
pub(crate) fn authority_distributor<R: Registry>(
    keys: &Path,
    config: TreeConfig,
    registry: R,
) -> anyhow::Result<Distributor<R>> {
    let keys = DistributorKeys::load(keys)?;
    ServeKeys::Full(Box::new(keys))
        .for_tree(config, &[])?
        .distributor(
            registry,
            Tariff::default(),
            Arc::new(SystemClock),
            DistributorConfig::default(),
        )
}

/// `keys show`: where each key is.
fn show(path: &Path) -> anyhow::Result<()> {
    let describe = |server: &treecast::license::LicenseServer| -> anyhow::Result<String> {
        let public = hex::encode(server.verifying_key().as_bytes());
        Ok(match server.token_key() {
            None => format!("in the key file; public {public}"),
            Some(key) => {
                let uri = key.uri();
                let kept = if key.stays_in_token()? {
                    "sensitive, not extractable"
                } else {
                    "EXTRACTABLE OR NOT SENSITIVE"
                };
                format!(
                    "in token `{}` ({}): {kept}; public {public}",
                    uri.token(),
                    uri.object().unwrap_or_default()
                )
            }
        })
    };
    // A key after a rotation is named by its ID.
    let name = |server: &treecast::license::LicenseServer| match server.key_id() {
        KeyId(0) => format!("server {}", server.id().0),
        key => format!("server {} ({key})", server.id().0),
    };
    if keyfile::label_of(path)? == serverkeys::LABEL {
        let file = ServerKeyFile::load(path)?;
        println!(
            "license server {} of a delegated subtree (node {}): no master secret",
            file.server().id().0,
            file.keys().delegation.root()
        );
        println!("{}: {}", name(file.server()), describe(file.server())?);
    } else {
        let keys = DistributorKeys::load(path)?;
        println!(
            "master secret: {}",
            match keys.sealed_by() {
                Some(uri) => format!(
                    "sealed under `{}` of token `{}`, unsealed into memory",
                    uri.object().unwrap_or_default(),
                    uri.token()
                ),
                None => "in the key file".to_owned(),
            }
        );
        match keys.ekb_signer() {
            Some(key) => {
                let uri = key.uri();
                println!(
                    "EKB signing key: in token `{}` ({}): {}; public {}",
                    uri.token(),
                    uri.object().unwrap_or_default(),
                    if key.stays_in_token()? {
                        "sensitive, not extractable"
                    } else {
                        "EXTRACTABLE OR NOT SENSITIVE"
                    },
                    hex::encode(key.verifying_key().as_bytes())
                );
            }
            None => println!("EKB signing key: derived from the master secret, per tree"),
        }
        for server in keys.servers() {
            println!("{}: {}", name(server), describe(server)?);
        }
    }
    Ok(())
}

/// The keys `serve` runs from.
pub(crate) enum ServeKeys {
    /// The distributor's key file: the authority, and the servers the process holds.
    Full(Box<DistributorKeys>),
    /// A license server's key file.
    Server(Box<ServerKeyFile>),
}

/// `ServeKeys` checked against the tree and the servers asked for.
pub(crate) struct Loaded {
    keys: ServeKeys,
    config: TreeConfig,
    server_ids: Vec<u32>,
}

impl ServeKeys {
    /// The key file at `path`, of either kind.
    pub(crate) fn load(
        path: &Path,
        config: TreeConfig,
        server_ids: &[u32],
    ) -> anyhow::Result<Loaded> {
        let keys = if keyfile::label_of(path)? == serverkeys::LABEL {
            Self::Server(Box::new(ServerKeyFile::load(path)?))
        } else {
            Self::Full(Box::new(DistributorKeys::load(path)?))
        };
        keys.for_tree(config, server_ids)
    }

    fn for_tree(self, config: TreeConfig, server_ids: &[u32]) -> anyhow::Result<Loaded> {
        match &self {
            Self::Full(keys) => {
                for id in server_ids {
                    anyhow::ensure!(
                        keys.servers().iter().any(|s| s.id() == ServerId(*id)),
                        "the key file has no license server {id}"
                    );
                }
            }
            Self::Server(file) => {
                let own = file.keys().delegation.config();
                anyhow::ensure!(
                    *own == config,
                    "the license server's key file is for a tree of scheme {}, height {}; serve \
                     was given scheme {}, height {} (--scheme, --height)",
                    own.scheme,
                    own.height.get(),
                    config.scheme,
                    config.height.get()
                );
                let id = file.server().id().0;
                anyhow::ensure!(
                    server_ids.iter().all(|s| *s == id),
                    "the key file holds license server {id} only"
                );
            }
        }
        Ok(Loaded {
            keys: self,
            config,
            server_ids: server_ids.to_vec(),
        })
    }
}

impl Loaded {
    /// The distributor these keys run over `registry`.
    pub(crate) fn distributor<R: Registry>(
        self,
        registry: R,
        tariff: Tariff,
        clock: Arc<dyn Clock>,
        config: DistributorConfig,
    ) -> anyhow::Result<Distributor<R>> {
        match self.keys {
            ServeKeys::Full(keys) => {
                let all = keys.servers();
                let held = all
                    .iter()
                    .filter(|s| self.server_ids.is_empty() || self.server_ids.contains(&s.id().0))
                    .cloned();
                let peers = all.iter().map(|s| (s.id(), s.key_id(), s.verifying_key()));
                let mut distributor = Distributor::new(
                    keys.authority(self.config)?,
                    held,
                    registry,
                    tariff,
                    clock,
                    config,
                )?
                .with_peer_servers(peers);
                if let Some(split) = keys.split() {
                    distributor = distributor.with_leaf_split(split)?;
                }
                Ok(distributor)
            }
            ServeKeys::Server(file) => {
                let (keys, server, peers) = file.into_parts();
                Ok(
                    Distributor::delegated(keys, [server], registry, tariff, clock, config)?
                        .with_peer_servers(peers),
                )
            }
        }
    }
}
