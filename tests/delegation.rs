//! A license server from its exported key file (issue 29, item 1), in one process on a SQLite
//! registry: it registers its subtree's devices, supplies and plays, holding no master secret;
//! it cannot build an EKB nor revoke, and waits for the authority's EKB of each new epoch. The
//! PostgreSQL test with two processes is `service/split.rs`.

use std::path::Path;
use std::sync::Arc;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use treecast::keytree::{Scheme, TreeConfig, TreeHeight, TreeId};
use treecast::license::registry::{MemoryRegistry, Registry, SqliteRegistry};
use treecast::license::{
    Client, Clock, Distributor, DistributorConfig, Error, ManualClock, ServerId, SigningKey,
    Tariff, UnixTime,
};
use treecast_distributor::keyfile::DistributorKeys;
use treecast_distributor::serverkeys::ServerKeyFile;

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(UnixTime(1_800_000_000)))
}

/// The authority's distributor (every server) over `registry`, its leaves split by server.
fn authority(
    keys: &DistributorKeys,
    config: TreeConfig,
    registry: SqliteRegistry,
) -> Distributor<SqliteRegistry> {
    Distributor::new(
        keys.authority(config).unwrap(),
        keys.servers().to_vec(),
        registry,
        Tariff::default(),
        clock(),
        DistributorConfig::default(),
    )
    .unwrap()
    .with_leaf_split(keys.split().unwrap())
    .unwrap()
}

/// The license server of `file` over `registry`, as `serve` starts it (its peers aside).
fn delegated<R: Registry>(file: ServerKeyFile, registry: R) -> Result<Distributor<R>, Error> {
    let (keys, server, _) = file.into_parts();
    Distributor::delegated(
        keys,
        [server],
        registry,
        Tariff::default(),
        clock(),
        DistributorConfig::default(),
    )
}

/// License server 2 from its key file at `path`, over `registry`.
fn server_two(path: &Path, registry: SqliteRegistry) -> Distributor<SqliteRegistry> {
    let file = ServerKeyFile::load(path).unwrap();
    let peers = file.peers().to_vec();
    delegated(file, registry).unwrap().with_peer_servers(peers)
}

/// Server `server`'s key file of `keys`, written to `path`.
fn export(keys: &DistributorKeys, config: TreeConfig, server: u32, path: &Path) {
    ServerKeyFile::export(keys, config, ServerId(server))
        .unwrap()
        .write_new(path)
        .unwrap();
}

/// The authority (from the full key file) publishes the current epoch's EKB in the license
/// server's registry; the license server (from `file`) then serves on.
fn published(
    keys: &DistributorKeys,
    config: TreeConfig,
    file: &Path,
    shop: Distributor<SqliteRegistry>,
) -> Distributor<SqliteRegistry> {
    let full = authority(keys, config, shop.into_registry());
    full.current_ekb().unwrap();
    server_two(file, full.into_registry())
}

/// `phone` takes the current EKB and the license `request` asks for, and plays `content`:
/// the license's epoch.
fn plays(
    shop: &Distributor<SqliteRegistry>,
    phone: &mut Client,
    request: &treecast::license::LicenseRequest,
    content: treecast::license::ContentId,
) -> u64 {
    phone
        .store_ekb(shop.current_ekb().unwrap().1.as_bytes())
        .unwrap();
    let license = shop.supply_license(request.as_bytes()).unwrap();
    phone.acquire_license(license.as_bytes()).unwrap();
    let mut out = Vec::new();
    phone.play(content, &mut out).unwrap();
    assert_eq!(out, b"delegated");
    license.tbs().epoch
}

fn device(shop: &Distributor<SqliteRegistry>, user: treecast::license::UserId, n: u8) -> Client {
    let key = SigningKey::from_bytes(&[n; 32]);
    let registration = shop
        .register_client(user, ServerId(2), &key.verifying_key())
        .unwrap();
    Client::new(key, registration).unwrap()
}

#[test]
fn a_license_server_from_its_own_key_file_serves_without_the_master_secret() {
    for scheme in [Scheme::COMPLETE_SUBTREE, Scheme::SUBSET_DIFFERENCE] {
        let dir = tempfile::tempdir().unwrap();
        let height = TreeHeight::new(12).unwrap();
        let config = TreeConfig::new(scheme, height, TreeId(1));
        let keys = DistributorKeys::generate(&mut ChaCha20Rng::seed_from_u64(5), 2);
        let file = dir.path().join("server2.keys");
        export(&keys, config, 2, &file);
        let store = dir.path().join("registry.sqlite");
        let mut rng = ChaCha20Rng::seed_from_u64(6);

        // The authority makes the registry and a content; no EKB is published yet.
        let full = authority(&keys, config, SqliteRegistry::open(&store, height).unwrap());
        let mut container = Vec::new();
        let content = full
            .publish(&b"delegated"[..], &mut container, &mut rng)
            .unwrap()
            .id;
        let shop = server_two(&file, full.into_registry());
        assert!(shop.authority().is_none());
        let user = shop.register_user().unwrap();
        let mut phone = device(&shop, user, 1);
        assert!((2048..4095).contains(&phone.device_keys().leaf().get()));
        // Server 1's key is not here; the authority's work is refused.
        let other = SigningKey::from_bytes(&[9; 32]).verifying_key();
        assert!(matches!(
            shop.register_client(user, ServerId(1), &other),
            Err(Error::UnknownServer(ServerId(1)))
        ));
        assert!(matches!(
            shop.revoke_client(phone.id()),
            Err(Error::AuthorityOnly(_))
        ));
        assert!(matches!(shop.current_ekb(), Err(Error::EkbNotPublished(1))));
        shop.supply_content(user, content).unwrap();
        phone.store_content(container.clone()).unwrap();
        let request = phone.license_request(content, clock().now());
        assert!(matches!(
            shop.supply_license(request.as_bytes()),
            Err(Error::EkbNotPublished(1))
        ));

        // The authority publishes; the license server serves the epoch.
        let shop = published(&keys, config, &file, shop);
        assert_eq!(plays(&shop, &mut phone, &request, content), 1);

        // A revocation by the authority: the next epoch waits for its EKB, then serves.
        let tablet = device(&shop, user, 2);
        let full = authority(&keys, config, shop.into_registry());
        assert_eq!(full.revoke_client(tablet.id()).unwrap(), 2);
        let shop = server_two(&file, full.into_registry());
        let again = phone.license_request(content, clock().now());
        assert!(matches!(
            shop.supply_license(again.as_bytes()),
            Err(Error::EkbNotPublished(2))
        ));
        let shop = published(&keys, config, &file, shop);
        assert_eq!(plays(&shop, &mut phone, &again, content), 2, "{scheme}");
    }
}

/// A license server hands out its subtree's leaves but the last, which is its own: the
/// eighth registration in a subtree of eight leaves is refused, and takes nothing.
#[test]
fn a_subtree_runs_out_before_the_servers_own_leaf() {
    let dir = tempfile::tempdir().unwrap();
    let height = TreeHeight::new(4).unwrap();
    let config = TreeConfig::new(Scheme::SUBSET_DIFFERENCE, height, TreeId(1));
    let keys = DistributorKeys::generate(&mut ChaCha20Rng::seed_from_u64(5), 2);
    let file = dir.path().join("server2.keys");
    export(&keys, config, 2, &file);
    let registry = SqliteRegistry::open(&dir.path().join("r.sqlite"), height).unwrap();
    let shop = server_two(&file, registry);
    let users: Vec<_> = (0..4).map(|_| shop.register_user().unwrap()).collect();
    let mut leaves = Vec::new();
    for n in 0..7u8 {
        leaves.push(
            device(&shop, users[usize::from(n / 2)], n)
                .device_keys()
                .leaf()
                .get(),
        );
    }
    assert_eq!(leaves, (8..15).collect::<Vec<u32>>());
    let key = SigningKey::from_bytes(&[42; 32]).verifying_key();
    let full = shop.register_client(users[3], ServerId(2), &key);
    assert!(
        matches!(
            full,
            Err(Error::KeyTree(treecast::keytree::Error::TreeFull))
        ),
        "{full:?}"
    );
    // Server 1's subtree has its own counter, untouched.
    let all = authority(&keys, config, shop.into_registry());
    let one = all.register_client(users[3], ServerId(1), &key).unwrap();
    assert_eq!(one.device_keys.leaf().get(), 0);
}

#[test]
fn what_cannot_be_delegated_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let height = TreeHeight::new(12).unwrap();
    let config = TreeConfig::new(Scheme::COMPLETE_SUBTREE, height, TreeId(1));
    // A key file of the flat derivation (written before issue 29) keeps working, but its
    // subtrees cannot be exported.
    let flat = dir.path().join("flat.keys");
    std::fs::write(
        &flat,
        format!(
            "treecast-keys-v1\nmaster {}\nserver 1 {}\n",
            "11".repeat(32),
            "22".repeat(32)
        ),
    )
    .unwrap();
    std::fs::set_permissions(&flat, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let old = DistributorKeys::load(&flat).unwrap();
    assert_eq!(old.derivation(), treecast::keytree::Derivation::Flat);
    assert!(matches!(
        ServerKeyFile::export(&old, config, ServerId(1)),
        Err(Error::KeyTree(treecast::keytree::Error::NotDelegable))
    ));
    // A server the file does not hold.
    let keys = DistributorKeys::generate(&mut ChaCha20Rng::seed_from_u64(5), 2);
    assert!(matches!(
        ServerKeyFile::export(&keys, config, ServerId(3)),
        Err(Error::UnknownServer(ServerId(3)))
    ));
    // The memory store has one leaf counter: no license server of a subtree runs on it.
    let exported = ServerKeyFile::export(&keys, config, ServerId(2)).unwrap();
    assert!(matches!(
        delegated(exported, MemoryRegistry::new(height)),
        Err(Error::Storage(_))
    ));
}

/// A license server's key file that was cut, edited or left readable is refused, naming what
/// is wrong; one for another tree's registry is refused by the registry's binding.
#[test]
fn a_damaged_server_key_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let height = TreeHeight::new(12).unwrap();
    let config = TreeConfig::new(Scheme::SUBSET_DIFFERENCE, height, TreeId(1));
    let keys = DistributorKeys::generate(&mut ChaCha20Rng::seed_from_u64(5), 4);
    let good = dir.path().join("good.keys");
    export(&keys, config, 3, &good);
    let text = std::fs::read_to_string(&good).unwrap();
    assert!(ServerKeyFile::load(&good).is_ok());
    assert!(
        ServerKeyFile::export(&keys, config, ServerId(3))
            .unwrap()
            .write_new(&good)
            .is_err(),
        "never replaced"
    );
    let write = |name: &str, body: &str| {
        let path = dir.path().join(name);
        let mut options = std::fs::OpenOptions::new();
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        use std::io::Write;
        options
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
        path
    };
    let without = |prefix: &str| -> String {
        let mut dropped = false;
        text.lines()
            .filter(|l| {
                let drop = !dropped && l.starts_with(prefix);
                dropped |= drop;
                !drop
            })
            .map(|l| format!("{l}\n"))
            .collect()
    };
    for (name, body, says) in [
        ("no-seed", without("seed "), "no `seed` line"),
        ("no-above", without("above "), "do not fit its tree"),
        ("no-all", without("all "), "do not fit its tree"),
        ("no-device", without("device "), "no `device` line"),
        ("short", text.replace("seed ", "seed 00"), "32 hex digits"),
        (
            "twice",
            format!(
                "{text}{}\n",
                text.lines().find(|l| l.starts_with("seed ")).unwrap()
            ),
            "repeated",
        ),
        (
            "extra",
            format!("{text}master {}\n", "00".repeat(32)),
            "not a line of a license server's key file",
        ),
        (
            "full",
            std::fs::read_to_string(&good)
                .unwrap()
                .replace("treecast-server-keys-v1", "treecast-keys-v1"),
            "first line",
        ),
    ] {
        let path = write(name, &body);
        let e = ServerKeyFile::load(&path).unwrap_err().to_string();
        assert!(e.contains(says), "{name}: {e}");
    }
    let open = write("open", &text);
    std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    assert!(
        ServerKeyFile::load(&open)
            .unwrap_err()
            .to_string()
            .contains("chmod 600")
    );
    // Another key file's server on this registry: refused before anything is written.
    let registry = SqliteRegistry::open(&dir.path().join("r.sqlite"), height).unwrap();
    let shop = authority(&keys, config, registry);
    let other = DistributorKeys::generate(&mut ChaCha20Rng::seed_from_u64(6), 4);
    let stranger = dir.path().join("stranger.keys");
    export(&other, config, 3, &stranger);
    assert!(matches!(
        delegated(
            ServerKeyFile::load(&stranger).unwrap(),
            shop.into_registry()
        ),
        Err(Error::KeysMismatch { .. })
    ));
}

/// Two processes must never hand out one leaf: a registry refuses its one counter once leaves
/// are split between license servers, ranges of another split (an edited `split` line), and
/// ranges once the one counter handed out a leaf.
#[test]
fn a_registry_never_mixes_one_counter_with_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let height = TreeHeight::new(8).unwrap();
    let config = TreeConfig::new(Scheme::COMPLETE_SUBTREE, height, TreeId(1));
    let keys = DistributorKeys::generate(&mut ChaCha20Rng::seed_from_u64(5), 2);
    let key = |n: u8| SigningKey::from_bytes(&[n; 32]).verifying_key();
    let unsplit = |registry| {
        Distributor::new(
            keys.authority(config).unwrap(),
            keys.servers().to_vec(),
            registry,
            Tariff::default(),
            clock(),
            DistributorConfig::default(),
        )
        .unwrap()
    };
    let split = authority(
        &keys,
        config,
        SqliteRegistry::open(&dir.path().join("a.sqlite"), height).unwrap(),
    );
    let user = split.register_user().unwrap();
    split.register_client(user, ServerId(1), &key(1)).unwrap();
    let one_counter = unsplit(split.into_registry());
    let refused = one_counter.register_client(user, ServerId(1), &key(2));
    assert!(
        matches!(&refused, Err(Error::Storage(m)) if m.contains("by license server")),
        "{refused:?}"
    );
    let other_split = one_counter.with_leaf_split(2).unwrap();
    let refused = other_split.register_client(user, ServerId(1), &key(3));
    assert!(
        matches!(&refused, Err(Error::Storage(m)) if m.contains("differently")),
        "{refused:?}"
    );
    assert_eq!(other_split.registry().clients_of(user).unwrap().len(), 1);

    let flat_first = unsplit(SqliteRegistry::open(&dir.path().join("b.sqlite"), height).unwrap());
    let user = flat_first.register_user().unwrap();
    flat_first
        .register_client(user, ServerId(1), &key(1))
        .unwrap();
    let now_split = flat_first.with_leaf_split(1).unwrap();
    let refused = now_split.register_client(user, ServerId(2), &key(2));
    assert!(
        matches!(&refused, Err(Error::Storage(m)) if m.contains("one counter")),
        "{refused:?}"
    );
}

/// A license server's key file damaged in its subtree's keys (one hex digit of the root key
/// it holds from above) is refused at start once an EKB is published, rather than handing out
/// wrong key sets.
#[test]
fn a_damaged_subtree_key_is_caught_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let height = TreeHeight::new(10).unwrap();
    let config = TreeConfig::new(Scheme::COMPLETE_SUBTREE, height, TreeId(1));
    let keys = DistributorKeys::generate(&mut ChaCha20Rng::seed_from_u64(5), 2);
    let good = dir.path().join("good.keys");
    export(&keys, config, 2, &good);
    let text = std::fs::read_to_string(&good).unwrap();
    let line = text.lines().find(|l| l.starts_with("above ")).unwrap();
    let last = line.chars().last().unwrap();
    let flipped = format!(
        "{}{}",
        &line[..line.len() - 1],
        if last == '0' { '1' } else { '0' }
    );
    let bad = dir.path().join("bad.keys");
    std::fs::write(&bad, text.replace(line, &flipped)).unwrap();
    std::fs::set_permissions(&bad, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let full = authority(
        &keys,
        config,
        SqliteRegistry::open(&dir.path().join("r.sqlite"), height).unwrap(),
    );
    full.current_ekb().unwrap();
    let refused = delegated(ServerKeyFile::load(&bad).unwrap(), full.into_registry());
    assert!(
        matches!(&refused, Err(Error::Io(m)) if m.contains("does not open")),
        "{:?}",
        refused.err()
    );
}

/// One signing key for several trees (a key in a token signs every tree of its key file): a
/// device refuses another tree's EKB, signed by its own authority key, and keeps its own.
#[test]
fn an_ekb_of_another_tree_under_the_same_key_is_refused() {
    struct Held(SigningKey);
    impl treecast::keytree::ExternalSigner for Held {
        fn verifying_key(&self) -> treecast::license::VerifyingKey {
            self.0.verifying_key()
        }
        fn sign(&self, message: &[u8]) -> Result<[u8; 64], treecast::keytree::Error> {
            use ed25519_dalek::Signer;
            Ok(self.0.sign(message).to_bytes())
        }
    }
    let signer = Arc::new(Held(SigningKey::from_bytes(&[8; 32])));
    let keys = DistributorKeys::generate(&mut ChaCha20Rng::seed_from_u64(5), 1);
    let tree = |h: u8| {
        keys.authority(TreeConfig::new(
            Scheme::COMPLETE_SUBTREE,
            TreeHeight::new(h).unwrap(),
            TreeId(1),
        ))
        .unwrap()
        .with_signer(signer.clone())
    };
    let (mine, other) = (tree(10), tree(12));
    assert_eq!(mine.verifying_key(), other.verifying_key());
    let shop = Distributor::new(
        mine.clone(),
        keys.servers().to_vec(),
        MemoryRegistry::new(TreeHeight::new(10).unwrap()),
        Tariff::default(),
        clock(),
        DistributorConfig::default(),
    )
    .unwrap();
    let user = shop.register_user().unwrap();
    let key = SigningKey::from_bytes(&[3; 32]);
    let registration = shop
        .register_client(user, ServerId(1), &key.verifying_key())
        .unwrap();
    let mut phone = Client::new(key, registration).unwrap();
    let payload = treecast::keytree::PayloadKey::from_bytes([1; 16]);
    let revoked = treecast::keytree::RevocationSet::new(TreeHeight::new(12).unwrap());
    let foreign = other.build_ekb(&payload, &revoked, 1).unwrap();
    assert!(matches!(
        phone.store_ekb(foreign.as_bytes()),
        Err(Error::KeyTree(treecast::keytree::Error::WrongTree))
    ));
    let own = shop.current_ekb().unwrap().1;
    assert_eq!(phone.store_ekb(own.as_bytes()).unwrap(), 1);
}
