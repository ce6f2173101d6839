//! A store is bound to its keys and scheme, and a credential to its registry (issue 24, items 5
//! and 6): a typo in a key file or `--scheme` is refused before anything is written, naming both
//! fingerprints, on every store and through every command that opens one; a credential of one
//! registry acts for nobody in another started with the same key file.

use std::sync::Arc;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use treecast::keytree::{Authority, MasterSecret, Scheme, TreeConfig, TreeHeight, TreeId};
use treecast::license::registry::{MemoryRegistry, PostgresRegistry, SqliteRegistry};
use treecast::license::{
    Distributor, DistributorConfig, Error, KeyFingerprint, LicenseServer, ManualClock, Registry,
    ServerId, Tariff, UnixTime,
};

use crate::cli::{path, treecast};
use crate::support::World;

fn height() -> TreeHeight {
    TreeHeight::new(16).unwrap()
}

/// The authority of `World` (seed 7), or another one.
fn authority(master_seed: u64, scheme: Scheme) -> Authority {
    let mut rng = ChaCha20Rng::seed_from_u64(master_seed);
    Authority::new(
        &MasterSecret::generate(&mut rng),
        TreeConfig::new(scheme, height(), TreeId(3)),
    )
    .unwrap()
}

fn distributor<R: Registry>(authority: Authority, registry: R) -> Result<Distributor<R>, Error> {
    let mut rng = ChaCha20Rng::seed_from_u64(99);
    Distributor::new(
        authority,
        [LicenseServer::generate(ServerId(1), &mut rng)],
        registry,
        Tariff::default(),
        Arc::new(ManualClock::new(UnixTime(1_800_000_000))),
        DistributorConfig::default(),
    )
}

/// Opens `open()` as `World`'s distributor, writes a little, then opens it with another master
/// secret and with another scheme: both refused, naming both fingerprints, and nothing written.
fn refuses_other_keys<R: Registry>(open: impl Fn() -> R) {
    // One connection at a time: a SQLite registry is one process's.
    let (bound, before) = {
        let mut w = World::with_registry(Scheme::COMPLETE_SUBTREE, open());
        let user = w.user();
        let mut a = w.client(user, 1);
        let content = w.publish(100);
        w.buy(&mut a, content);
        (
            KeyFingerprint::of(w.distributor.authority().unwrap()),
            w.snapshot(),
        )
    };
    for (seed, scheme) in [
        (8, Scheme::COMPLETE_SUBTREE),
        (7, Scheme::SUBSET_DIFFERENCE),
    ] {
        let other = authority(seed, scheme);
        let given = KeyFingerprint::of(&other);
        assert_ne!(given, bound);
        let refused = distributor(other, open()).map(|_| ());
        assert_eq!(
            refused,
            Err(Error::KeysMismatch {
                stored: bound,
                given
            })
        );
        let message = refused.unwrap_err().to_string();
        assert!(
            message.contains(&bound.to_string()) && message.contains(&given.to_string()),
            "{message}"
        );
    }
    // The right keys still open it, unchanged.
    let w = World::with_registry(Scheme::COMPLETE_SUBTREE, open());
    assert_eq!(w.snapshot(), before);
}

#[test]
fn a_sqlite_store_refuses_other_keys_and_another_scheme() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("registry.sqlite");
    refuses_other_keys(|| SqliteRegistry::open(&file, height()).unwrap());
}

#[test]
fn a_postgres_store_refuses_other_keys_and_another_scheme() {
    let Some((conninfo, _)) = crate::pg::database() else {
        return;
    };
    refuses_other_keys(|| PostgresRegistry::open(&conninfo, height()).unwrap());
}

#[test]
fn a_memory_store_refuses_other_keys() {
    let registry = MemoryRegistry::new(height());
    let keys = KeyFingerprint::of(&authority(7, Scheme::COMPLETE_SUBTREE));
    let bound = registry.bind(&keys).unwrap();
    assert_eq!(bound.keys, keys);
    let other = authority(8, Scheme::COMPLETE_SUBTREE);
    let given = KeyFingerprint::of(&other);
    assert_eq!(
        distributor(other, registry).map(|_| ()),
        Err(Error::KeysMismatch {
            stored: keys,
            given
        })
    );
}

/// The attack of item 6: the old registry's user 1 credential, against a fresh registry
/// started with the same key file.
#[test]
fn a_credential_acts_only_in_its_own_registry() {
    let dir = tempfile::tempdir().unwrap();
    let open = |name: &str| SqliteRegistry::open(&dir.path().join(name), height()).unwrap();
    let old = distributor(authority(7, Scheme::COMPLETE_SUBTREE), open("old.sqlite")).unwrap();
    let new = distributor(authority(7, Scheme::COMPLETE_SUBTREE), open("new.sqlite")).unwrap();
    let (old_user, new_user) = (old.register_user().unwrap(), new.register_user().unwrap());
    assert_eq!(old_user, new_user);
    let old_credential = old.user_credential(old_user).unwrap();
    assert_eq!(
        new.check_user_credential(new_user, &old_credential),
        Err(Error::BadCredential)
    );
    old.check_user_credential(old_user, &old_credential)
        .unwrap();
    // The same registry reopened keeps its ID, and so its credentials.
    drop(old);
    let reopened = distributor(authority(7, Scheme::COMPLETE_SUBTREE), open("old.sqlite")).unwrap();
    reopened
        .check_user_credential(old_user, &old_credential)
        .unwrap();
    // Two memory registries too.
    let a = distributor(
        authority(7, Scheme::COMPLETE_SUBTREE),
        MemoryRegistry::new(height()),
    )
    .unwrap();
    let b = distributor(
        authority(7, Scheme::COMPLETE_SUBTREE),
        MemoryRegistry::new(height()),
    )
    .unwrap();
    let (ua, ub) = (a.register_user().unwrap(), b.register_user().unwrap());
    assert_eq!(
        b.check_user_credential(ub, &a.user_credential(ua).unwrap()),
        Err(Error::BadCredential)
    );
}

/// The attack of item 5 through the commands: `serve`, `store workload`, `store check --keys`
/// given another key file or another scheme exit non-zero naming both fingerprints, and the
/// store is unchanged. (`simulate --store` refuses any store that holds a registry, and opens
/// an empty one through the same `Distributor::new`.)
#[test]
fn every_command_refuses_a_store_of_other_keys() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let other = dir.path().join("other-keys");
    for k in [&keys, &other] {
        assert!(
            treecast(&["keygen", "--out", path(k)]).status.success(),
            "keygen"
        );
    }
    let file = dir.path().join("registry.sqlite");
    let store = format!("sqlite:{}", file.display());
    let made = treecast(&[
        "store",
        "workload",
        "--store",
        &store,
        "--keys",
        path(&keys),
        "--ops",
        "20",
        "--seed",
        "1",
        "--height",
        "16",
    ]);
    assert!(made.status.success(), "{made:?}");
    let counts = || {
        let r = SqliteRegistry::open_existing(&file).unwrap();
        (r.users().unwrap().len(), r.epoch().unwrap())
    };
    let before = counts();
    let refused = |args: &[&str]| {
        let out = treecast(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            err.contains("fingerprint") && !err.contains("panicked"),
            "{args:?}: {err}"
        );
        assert_eq!(counts(), before, "{args:?} wrote to the store");
    };
    let token = dir.path().join("admin.token");
    let contents = dir.path().join("contents");
    for (k, scheme) in [(&other, "cs"), (&keys, "sd")] {
        refused(&[
            "serve",
            "--keys",
            path(k),
            "--store",
            &store,
            "--scheme",
            scheme,
            "--height",
            "16",
            "--listen",
            "127.0.0.1:0",
            "--admin-token",
            path(&token),
            "--content-dir",
            path(&contents),
        ]);
        refused(&[
            "store",
            "workload",
            "--store",
            &store,
            "--keys",
            path(k),
            "--scheme",
            scheme,
            "--append",
            "--ops",
            "5",
            "--height",
            "16",
        ]);
    }
    refused(&["store", "check", "--store", &store, "--keys", path(&other)]);
    let ok = treecast(&["store", "check", "--store", &store, "--keys", path(&keys)]);
    assert!(ok.status.success(), "{ok:?}");
}
