//! Crash safety, for real: a workload runs in a child process on a SQLite registry and is killed
//! with SIGKILL at random points, 20 times. After each kill the database is reopened: every
//! operation the child reported as committed is there, no move is half done, and `store check`
//! passes.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use rand_core::{Rng, SeedableRng};
use treecast::license::registry::{LicenseState, SqliteRegistry, audit};
use treecast::license::{CertificateId, ClientId, ContentId, LicenseId, Registry, UserId};

use crate::cli::{stdout, treecast};

#[test]
fn sigkill_at_random_points_loses_nothing_committed() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("distributor.keys");
    let db = dir.path().join("registry.sqlite");
    assert!(
        treecast(&["keygen", "--out", keys.to_str().unwrap()])
            .status
            .success()
    );
    let store = format!("sqlite:{}", db.display());
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(99);
    let mut total_checked = 0;
    for round in 0..20u64 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_treecast"))
            .args([
                "store",
                "workload",
                "--store",
                &store,
                "--keys",
                keys.to_str().unwrap(),
            ])
            .args(["--ops", "1000000", "--seed", &round.to_string(), "--append"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let wanted = 1 + rng.next_u32() % 120;
        let mut lines = Vec::new();
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            lines.push(line.unwrap());
            if lines.len() as u32 >= wanted {
                break;
            }
        }
        child.kill().unwrap(); // SIGKILL on Unix.
        child.wait().unwrap();
        assert!(
            !lines.is_empty(),
            "round {round}: the workload reported nothing"
        );

        let r = SqliteRegistry::open_existing(&db).unwrap();
        for line in &lines {
            check_committed(&r, line);
        }
        total_checked += lines.len();
        let violations = audit(&r, 5).unwrap();
        assert!(violations.is_empty(), "round {round}: {violations:?}");
    }
    assert!(total_checked >= 20);
    let out = treecast(&["store", "check", "--store", &store]);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).starts_with("ok: "));
}

/// One reported operation is in the registry, whole.
fn check_committed(r: &SqliteRegistry, line: &str) {
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap())
        .collect();
    match line.split_whitespace().next().unwrap() {
        "user" => assert!(r.has_user(UserId(f[0])).unwrap(), "{line}"),
        "client" => assert!(r.client(ClientId(f[0])).unwrap().is_some(), "{line}"),
        "content" => assert!(r.content(ContentId(f[0])).unwrap().is_some(), "{line}"),
        "license" => assert!(r.license(LicenseId(f[0])).unwrap().is_some(), "{line}"),
        "move" => {
            let source = r.license(LicenseId(f[0])).unwrap().unwrap();
            assert_eq!(source.state, LicenseState::Moved, "{line}");
            let dest = r.license(LicenseId(f[1])).unwrap().unwrap();
            assert_eq!(dest.origin, Some(CertificateId(f[2])), "{line}");
            let history = r.certificate_history().unwrap();
            let h = history
                .iter()
                .find(|h| h.id == CertificateId(f[2]))
                .unwrap();
            assert_eq!(
                (h.source_license, h.destination_license),
                (LicenseId(f[0]), LicenseId(f[1]))
            );
            assert!(r.ledger().unwrap().iter().any(
                |e| e.reference == f[2] && e.kind == treecast::license::ChargeKind::Certificate
            ));
        }
        "revoke" => {
            assert!(r.client(ClientId(f[0])).unwrap().unwrap().revoked, "{line}");
            assert!(r.epoch().unwrap() >= f[1], "{line}");
        }
        other => panic!("unknown line {other}"),
    }
}

#[test]
fn store_check_fails_on_a_tampered_registry() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("k");
    let db = dir.path().join("r.sqlite");
    let store = format!("sqlite:{}", db.display());
    assert!(
        treecast(&["keygen", "--out", keys.to_str().unwrap()])
            .status
            .success()
    );
    let out = treecast(&[
        "store",
        "workload",
        "--store",
        &store,
        "--keys",
        keys.to_str().unwrap(),
        "--ops",
        "400",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        treecast(&["store", "check", "--store", &store])
            .status
            .success()
    );
    let keys_arg = keys.to_str().unwrap();
    let checked = treecast(&["store", "check", "--store", &store, "--keys", keys_arg]);
    assert!(checked.status.success(), "{checked:?}");
    // A second workload does not write into a registry that holds data, unless told.
    crate::cli::assert_clean_failure(
        &treecast(&[
            "store", "workload", "--store", &store, "--keys", keys_arg, "--ops", "5",
        ]),
        "already holds",
    );
    // Someone with SQL access re-keys a client and plants a trigger; `store check` reports both,
    // fires nothing and changes no byte of the file.
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "UPDATE clients SET public_key = zeroblob(32) WHERE id = (SELECT MIN(id) FROM clients);
             CREATE TRIGGER planted AFTER INSERT ON meta BEGIN DELETE FROM users; END;",
        )
        .unwrap();
    }
    let before = std::fs::read(&db).unwrap();
    let out = treecast(&["store", "check", "--store", &store, "--keys", keys_arg]);
    crate::cli::assert_clean_failure(&out, "invariant violations");
    let text = stdout(&out);
    assert!(text.contains("trigger planted"), "{text}");
    assert!(text.contains("not authenticated"), "{text}");
    assert_eq!(
        std::fs::read(&db).unwrap(),
        before,
        "store check changed the file"
    );
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("DROP TRIGGER planted").unwrap();
    }
    // Bill someone without an event, and give a moved license a second life.
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("UPDATE users SET total = total + 7 WHERE id = 1")
            .unwrap();
        conn.execute_batch(
            "UPDATE licenses SET state = 0 WHERE id = (SELECT source_license FROM history LIMIT 1)",
        )
        .unwrap();
    }
    let out = treecast(&["store", "check", "--store", &store]);
    crate::cli::assert_clean_failure(&out, "invariant violations");
    let text = stdout(&out);
    assert!(text.contains("user-1 has a total"), "{text}");
    assert!(text.contains("usable licenses"), "{text}");
    // Not a registry at all.
    let junk = dir.path().join("junk");
    std::fs::write(&junk, b"junk").unwrap();
    crate::cli::assert_clean_failure(
        &treecast(&[
            "store",
            "check",
            "--store",
            &format!("sqlite:{}", junk.display()),
        ]),
        "not a",
    );
    crate::cli::assert_clean_failure(
        &treecast(&["store", "check", "--store", "postgres:x"]),
        "not a store",
    );
}
