//! Backups of a SQLite registry while it is written (issue 28, item 6): `treecast store backup`
//! reads the file beside its writer (SQLite's online backup API) and the copy holds every
//! operation acknowledged before the backup began (`store check --journal` on the copy).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use treecast::license::transport::HttpTransport;

use crate::service::{Served, keyed_dir};

fn treecast(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_treecast"))
        .args(args)
        .output()
        .unwrap()
}

/// The complete lines of a journal (a line still being written is not acknowledged).
fn acknowledged(journal: &std::path::Path) -> String {
    let text = std::fs::read_to_string(journal).unwrap_or_default();
    match text.rfind('\n') {
        Some(end) => text[..=end].to_owned(),
        None => String::new(),
    }
}

#[test]
fn a_backup_under_load_holds_every_operation_acknowledged_before_it() {
    let dir = keyed_dir();
    let keys = dir.path().join("keys");
    let file = dir.path().join("registry.sqlite");
    let store = format!("sqlite:{}", file.display());
    let journal = dir.path().join("journal");
    let mut load = Command::new(env!("CARGO_BIN_EXE_treecast"))
        .args([
            "store", "workload", "--store", &store, "--ops", "100000", "--seed", "7",
        ])
        .arg("--keys")
        .arg(&keys)
        .arg("--journal")
        .arg(&journal)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acknowledged(&journal).lines().count() < 200 {
        assert!(Instant::now() < deadline, "the workload did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let dirs = tempfile::tempdir().unwrap();
    let mut copies = Vec::new();
    for i in 0..3 {
        let before = acknowledged(&journal);
        let out = dirs.path().join(format!("copy-{i}.sqlite"));
        let done = treecast(&[
            "store",
            "backup",
            "--store",
            &store,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(done.status.success(), "{done:?}");
        let seen = dirs.path().join(format!("journal-{i}"));
        std::fs::write(&seen, &before).unwrap();
        copies.push((out, seen, before.lines().count()));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        load.try_wait().unwrap().is_none(),
        "the workload was still writing during every backup"
    );
    let _ = load.kill();
    let _ = load.wait();
    for (copy, seen, lines) in &copies {
        let out = treecast(&[
            "store",
            "check",
            "--store",
            &format!("sqlite:{}", copy.display()),
            "--keys",
            keys.to_str().unwrap(),
            "--journal",
            seen.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "a copy misses an acknowledged operation ({lines} lines): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A backup never overwrites a file.
    let again = treecast(&[
        "store",
        "backup",
        "--store",
        &store,
        "--out",
        copies[0].0.to_str().unwrap(),
    ]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));
}

#[test]
fn a_served_registry_is_backed_up_and_the_copy_serves() {
    let dir = keyed_dir();
    let file = dir.path().join("registry.sqlite");
    let store = format!("sqlite:{}", file.display());
    let served = Served::start(dir.path(), &store, &[]);
    let t = HttpTransport::new(&served.base);
    let (user, _) = t.create_user(&served.admin).unwrap();
    let copy = dir.path().join("copy.sqlite");
    let out = treecast(&[
        "store",
        "backup",
        "--store",
        &store,
        "--out",
        copy.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    // The service went on while it ran.
    t.create_user(&served.admin).unwrap();
    assert!(served.stop().success());
    // The copy is a registry: checked, and served (its users are there).
    let keys = dir.path().join("keys");
    let check = treecast(&[
        "store",
        "check",
        "--store",
        &format!("sqlite:{}", copy.display()),
        "--keys",
        keys.to_str().unwrap(),
    ]);
    assert!(check.status.success(), "{check:?}");
    let restored = keyed_dir();
    std::fs::copy(&keys, restored.path().join("keys")).unwrap();
    std::fs::copy(
        dir.path().join("admin.token"),
        restored.path().join("admin.token"),
    )
    .unwrap();
    let served = Served::start(restored.path(), &format!("sqlite:{}", copy.display()), &[]);
    let t = HttpTransport::new(&served.base);
    assert_eq!(t.user_total(&served.admin, user).unwrap(), 0);
    // A PostgreSQL registry is backed up with pg_dump: said plainly.
    let out = treecast(&[
        "store",
        "backup",
        "--store",
        "postgres://u@h/d",
        "--out",
        "x",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("pg_dump"));
}

#[test]
fn a_postgresql_registry_is_backed_up_with_pg_dump_and_restored_with_pg_restore() {
    let Some((bin, _)) = crate::pg::available() else {
        return;
    };
    let Some(cluster) = crate::pg::Cluster::start() else {
        return;
    };
    let (_, url) = cluster.database("live");
    let dir = keyed_dir();
    let keys = dir.path().join("keys");
    let load = treecast(&[
        "store",
        "workload",
        "--store",
        &url,
        "--ops",
        "300",
        "--seed",
        "3",
        "--keys",
        keys.to_str().unwrap(),
        "--journal",
        dir.path().join("journal").to_str().unwrap(),
    ]);
    assert!(load.status.success(), "{load:?}");
    // The procedure of docs/storage.md, "Backups": a custom-format dump, restored into a new
    // database.
    let socket = cluster.dir.display().to_string();
    let dump = dir.path().join("registry.dump");
    let run = |program: &str, args: &[&str]| {
        // Beside initdb, or (where initdb is a link of its own on the PATH) the PATH's.
        let exe = if bin.join(program).is_file() {
            bin.join(program)
        } else {
            std::path::PathBuf::from(program)
        };
        let out = Command::new(&exe)
            .args(["-h", &socket, "-p", "5432", "-U", "postgres"])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", exe.display()));
        assert!(out.status.success(), "{program}: {out:?}");
    };
    run(
        "pg_dump",
        &["--format=custom", "--file", dump.to_str().unwrap(), "live"],
    );
    cluster.database("restored");
    run(
        "pg_restore",
        &["--dbname", "restored", "--no-owner", dump.to_str().unwrap()],
    );
    let restored = url.replace("/live", "/restored");
    let check = treecast(&[
        "store",
        "check",
        "--store",
        &restored,
        "--keys",
        keys.to_str().unwrap(),
        "--journal",
        dir.path().join("journal").to_str().unwrap(),
    ]);
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}
