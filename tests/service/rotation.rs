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
