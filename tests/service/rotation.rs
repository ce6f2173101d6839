//! Rotating a user's credential (issue 29, item 3): the old credential is refused at once, the
//! new one works, and nothing of the user is lost (devices, licenses, bills); the rotation
//! survives a restart. On SQLite and PostgreSQL, through the CLI and the HTTP API.

use std::process::Command;

use treecast::license::credential::UserCredential;
use treecast::license::transport::{HttpTransport, Retries, Transport};
use treecast::license::{Error, UserId};

use super::{Served, buy, device, keyed_dir, play};

fn rotation(store: &str, dir: &std::path::Path) {
    let served = Served::start(dir, store, &["--auth-failures-per-address", "0"]);
    let t = HttpTransport::new(&served.base).with_retries(Retries::NONE);
    let (alice, old) = t.create_user(&served.admin).unwrap();
    let content = t.publish(&served.admin, b"kept across rotations").unwrap();
    let mut phone = device(&t, alice, &old, 1);
    buy(&t, &mut phone, alice, &old, content);
    let license = phone.license_id(content).unwrap();
    assert_eq!(t.license_state(alice, &old, license).unwrap(), "active");

    // Through the CLI, as an operator does.
    let out = Command::new(env!("CARGO_BIN_EXE_treecast"))
        .current_dir(dir)
        .args([
            "admin",
            "rotate-credential",
            "--server",
            &served.base,
            "--user",
            "1",
        ])
        .arg("--admin-token")
        .arg(dir.join("admin.token"))
        .args(["--credential-out", "alice.new"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let new = UserCredential::from_hex(
        std::fs::read_to_string(dir.join("alice.new"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    assert_ne!(new, old);

    // The old credential is refused everywhere a credential is asked for; the new one works.
    assert!(matches!(
        t.license_state(alice, &old, license),
        Err(Error::Service { status: 401, .. })
    ));
    assert!(matches!(
        t.download(alice, &old, content),
        Err(Error::Service { status: 401, .. })
    ));
    assert_eq!(t.license_state(alice, &new, license).unwrap(), "active");
    // Nothing lost: the device plays, a second device registers with the new credential, the
    // bill is the purchase's.
    assert_eq!(play(&phone, content).unwrap(), b"kept across rotations");
    let _laptop = device(&t, alice, &new, 2);
    let price =
        treecast::license::Tariff::default().price(treecast::license::ChargeKind::License, content);
    assert_eq!(t.user_total(&served.admin, alice).unwrap(), price);

    // A second rotation, through the API: the first rotated credential goes too.
    let newer = t.rotate_credential(&served.admin, alice).unwrap();
    assert!(matches!(
        t.license_state(alice, &new, license),
        Err(Error::Service { status: 401, .. })
    ));
    // Only the admin rotates; a missing user is 404.
    assert!(matches!(
        t.rotate_credential(&newer.to_hex(), alice),
        Err(Error::Service { status: 401, .. })
    ));
    assert!(matches!(
        t.rotate_credential(&served.admin, UserId(999)),
        Err(Error::Service { status: 404, .. })
    ));
    assert!(served.stop().success());

    // Durable: after a restart the newest credential alone works.
    let again = Served::start(dir, store, &[]);
    let t = HttpTransport::new(&again.base).with_retries(Retries::NONE);
    assert_eq!(t.license_state(alice, &newer, license).unwrap(), "active");
    assert!(t.license_state(alice, &old, license).is_err());
    assert!(again.stop().success());
}

#[test]
fn a_rotated_credential_is_refused_and_nothing_is_lost_on_sqlite() {
    let dir = keyed_dir();
    let store = format!("sqlite:{}", dir.path().join("registry.sqlite").display());
    rotation(&store, dir.path());
}

#[test]
fn a_rotated_credential_is_refused_and_nothing_is_lost_on_postgres() {
    let Some((_, url)) = crate::pg::database() else {
        return;
    };
    let dir = keyed_dir();
    rotation(&url, dir.path());
}

/// Storage key rotation (issue 29, item 3): the service restarted to publish under key 2, then
/// `admin rekey --to 2` re-wraps the rest online; every content still opens, new and old
/// purchases play, a second run has nothing to do, and `store check --keys` finds every row
/// the distributor's.
fn storage_key_rotation(store: &str, dir: &std::path::Path) -> Vec<u32> {
    let served = Served::start(dir, store, &[]);
    let t = HttpTransport::new(&served.base);
    let (alice, credential) = t.create_user(&served.admin).unwrap();
    let contents: Vec<_> = (0..3)
        .map(|i| {
            t.publish(&served.admin, format!("content {i}").as_bytes())
                .unwrap()
        })
        .collect();
    let mut phone = device(&t, alice, &credential, 1);
    buy(&t, &mut phone, alice, &credential, contents[0]);
    assert!(served.stop().success());

    // Every process now publishes under key 2; the contents of key 1 are re-wrapped online.
    let served = Served::start(dir, store, &["--storage-key-id", "2"]);
    let t = HttpTransport::new(&served.base);
    let fourth = t.publish(&served.admin, b"content 3").unwrap();
    let rekey = |expected: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_treecast"))
            .args(["admin", "rekey", "--server", &served.base, "--to", "2"])
            .arg("--admin-token")
            .arg(dir.join("admin.token"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(text.contains(expected), "{text}");
    };
    rekey("storage key 2: 3 re-wrapped, 1 already under it, 0 changed meanwhile");
    rekey("storage key 2: 0 re-wrapped, 4 already under it");
    // Nothing lost: the purchase made under key 1 plays, a new one of a re-wrapped content
    // and one of the content published under key 2 too.
    assert_eq!(play(&phone, contents[0]).unwrap(), b"content 0");
    buy(&t, &mut phone, alice, &credential, contents[2]);
    assert_eq!(play(&phone, contents[2]).unwrap(), b"content 2");
    buy(&t, &mut phone, alice, &credential, fourth);
    assert_eq!(play(&phone, fourth).unwrap(), b"content 3");
    assert!(served.stop().success());
    let check = Command::new(env!("CARGO_BIN_EXE_treecast"))
        .args(["store", "check", "--store", store])
        .arg("--keys")
        .arg(dir.join("keys"))
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
    contents
        .iter()
        .map(|c| u32::try_from(c.0).unwrap())
        .collect()
}

#[test]
fn the_storage_key_rotates_online_on_sqlite() {
    let dir = keyed_dir();
    let file = dir.path().join("registry.sqlite");
    storage_key_rotation(&format!("sqlite:{}", file.display()), dir.path());
    // Every row is under key 2 now.
    let db = rusqlite::Connection::open(&file).unwrap();
    let keys: Vec<i64> = db
        .prepare("SELECT DISTINCT key_id FROM contents")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(keys, vec![2]);
}

#[test]
fn the_storage_key_rotates_online_on_postgres() {
    let Some((conninfo, url)) = crate::pg::database() else {
        return;
    };
    let dir = keyed_dir();
    storage_key_rotation(&url, dir.path());
    let mut db = postgres::Client::connect(&conninfo, postgres::NoTls).unwrap();
    let keys: Vec<i64> = db
        .query("SELECT DISTINCT key_id FROM contents", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(keys, vec![2]);
}
