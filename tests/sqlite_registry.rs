//! The SQLite registry: the same behaviour as the in-memory one, durably.

use std::path::Path;

use treecast::keytree::{Scheme, TreeHeight};
use treecast::license::registry::{Durability, SqliteRegistry, audit};
use treecast::license::{Error, Registry};

use crate::support::World;

fn height() -> TreeHeight {
    TreeHeight::new(16).unwrap()
}

fn world(path: &Path) -> World<SqliteRegistry> {
    World::with_registry(
        Scheme::SUBSET_DIFFERENCE,
        SqliteRegistry::open(path, height()).unwrap(),
    )
}

#[test]
fn the_whole_flow_persists_across_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.sqlite");
    let (user, snapshot, moved);
    {
        let mut w = world(&path);
        user = w.user();
        let mut a = w.client(user, 1);
        let mut b = w.client(user, 2);
        let content = w.publish(10_000);
        w.buy(&mut a, content);
        moved = a.license_id(content).unwrap();
        w.move_content(&mut a, &mut b, content).unwrap();
        w.play(&b, content).unwrap();
        let c = w.client(user, 1);
        w.distributor.revoke_client(c.id()).unwrap();
        // Refusals change nothing, on disk too.
        let before = w.snapshot();
        assert_eq!(
            w.certificate(&mut a, content, b.id()).unwrap_err(),
            Error::NoLicense(content)
        );
        let request = a.move_request(moved, b.id(), crate::support::START);
        assert_eq!(
            w.distributor
                .supply_certificate(request.as_bytes())
                .unwrap_err(),
            Error::LicenseMoved(moved)
        );
        assert_eq!(w.snapshot(), before);
        snapshot = w.snapshot();
        assert!(audit(w.distributor.registry(), 10).unwrap().is_empty());
    }
    // A backup taken while in use is the same registry.
    let backup = dir.path().join("backup.sqlite");
    {
        let live = SqliteRegistry::open_existing(&path).unwrap();
        live.backup_to(&backup).unwrap();
        assert!(
            live.backup_to(&backup).is_err(),
            "a backup never overwrites"
        );
    }
    let copy: World<SqliteRegistry> = World::with_registry(
        Scheme::SUBSET_DIFFERENCE,
        SqliteRegistry::open_existing(&backup).unwrap(),
    );
    assert_eq!(copy.snapshot(), snapshot);
    drop(copy);
    let reopened = SqliteRegistry::open_existing(&path).unwrap();
    assert_eq!(reopened.height(), height());
    let w2: World<SqliteRegistry> = World::with_registry(Scheme::SUBSET_DIFFERENCE, reopened);
    assert_eq!(w2.snapshot(), snapshot);
    let r = w2.distributor.registry();
    assert_eq!(r.epoch().unwrap(), 2);
    assert_eq!(r.certificate_history().unwrap().len(), 1);
    assert_eq!(
        r.user_total(user).unwrap(),
        crate::support::LICENSE_PRICE + crate::support::CERTIFICATE_PRICE
    );
    assert!(audit(r, 10).unwrap().is_empty());
}

#[test]
fn memory_and_sqlite_registries_agree() {
    let dir = tempfile::tempdir().unwrap();
    let mut sqlite = world(&dir.path().join("r.sqlite"));
    let mut memory = World::with_registry(
        Scheme::SUBSET_DIFFERENCE,
        treecast::license::MemoryRegistry::new(height()),
    );
    assert_eq!(flow(&mut memory), flow(&mut sqlite));
}

/// Purchases, a refused and an accepted move, a revocation; the registry after each step.
pub(crate) fn flow<R: Registry>(w: &mut World<R>) -> Vec<String> {
    let mut snapshots = Vec::new();
    let (u1, u2) = (w.user(), w.user());
    let mut a = w.client(u1, 1);
    let mut b = w.client(u1, 2);
    let c = w.client(u2, 1);
    let (x, y) = (w.publish(3000), w.publish(3000));
    w.buy(&mut a, x);
    w.buy(&mut b, y);
    snapshots.push(w.snapshot());
    assert_eq!(
        w.certificate(&mut a, x, c.id()).unwrap_err(),
        Error::ClientNotFound(c.id())
    );
    w.move_content(&mut a, &mut b, x).unwrap();
    snapshots.push(w.snapshot());
    w.distributor.revoke_client(c.id()).unwrap();
    snapshots.push(w.snapshot());
    snapshots
}

#[test]
fn two_threads_moving_one_license_on_sqlite_move_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = world(&dir.path().join("r.sqlite"));
    let user = w.user();
    for round in 0..5 {
        let mut a = w.client(user, 1);
        let b = w.client(user, 1);
        let content = w.publish(500);
        w.buy(&mut a, content);
        let license = a.license_id(content).unwrap();
        let reqs = [
            a.move_request(license, b.id(), crate::support::START),
            a.move_request(license, b.id(), crate::support::START),
        ];
        let ok = std::thread::scope(|s| {
            let hs: Vec<_> = reqs
                .iter()
                .map(|r| s.spawn(|| w.distributor.supply_certificate(r.as_bytes()).is_ok()))
                .collect();
            hs.into_iter()
                .map(|h| h.join().unwrap())
                .filter(|ok| *ok)
                .count()
        });
        assert_eq!(ok, 1, "round {round}");
        w.distributor.revoke_client(a.id()).unwrap();
        w.distributor.revoke_client(b.id()).unwrap();
    }
    assert!(audit(w.distributor.registry(), 10).unwrap().is_empty());
}

#[test]
fn corrupt_foreign_or_mismatched_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let storage = |r: Result<SqliteRegistry, Error>| match r {
        Err(Error::Storage(m)) => m,
        other => panic!("expected a storage error, got {other:?}"),
    };
    // Not a database at all.
    let junk = dir.path().join("junk.sqlite");
    std::fs::write(&junk, vec![0x5a; 8192]).unwrap();
    assert!(storage(SqliteRegistry::open(&junk, height())).contains("not a SQLite database"));
    // Someone else's SQLite database.
    let foreign = dir.path().join("foreign.sqlite");
    {
        let conn = rusqlite::Connection::open(&foreign).unwrap();
        conn.execute_batch("CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT)")
            .unwrap();
    }
    assert!(storage(SqliteRegistry::open(&foreign, height())).contains("not a treecast registry"));
    // A registry of another height.
    let ours = dir.path().join("ours.sqlite");
    drop(SqliteRegistry::open(&ours, height()).unwrap());
    assert!(
        storage(SqliteRegistry::open(&ours, TreeHeight::new(20).unwrap())).contains("height-16")
    );
    // A newer schema.
    {
        let conn = rusqlite::Connection::open(&ours).unwrap();
        conn.execute_batch("PRAGMA user_version = 99").unwrap();
    }
    assert!(storage(SqliteRegistry::open(&ours, height())).contains("newer"));
    // A damaged registry: its pages overwritten.
    let damaged = dir.path().join("damaged.sqlite");
    {
        let mut w = world(&damaged);
        let user = w.user();
        let _ = w.client(user, 1);
    }
    let mut bytes = std::fs::read(&damaged).unwrap();
    for b in bytes.iter_mut().skip(100).step_by(7) {
        *b ^= 0xa5;
    }
    std::fs::write(&damaged, &bytes).unwrap();
    let _ = std::fs::remove_file(damaged.with_extension("sqlite-wal"));
    match SqliteRegistry::open(&damaged, height()) {
        Err(Error::Storage(_)) => {}
        Ok(r) => assert!(r.all_clients().is_err() || audit(&r, 5).is_err() || r.epoch().is_err()),
        Err(other) => panic!("unexpected {other:?}"),
    }
    // Durability can be chosen.
    drop(
        SqliteRegistry::open_with(&dir.path().join("full.sqlite"), height(), Durability::Power)
            .unwrap(),
    );
    assert!(
        storage(SqliteRegistry::open_existing(
            &dir.path().join("missing.sqlite")
        ))
        .contains("no such")
    );
}

#[test]
fn a_registry_held_by_another_opener_is_a_clear_error_after_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("held.sqlite");
    let held = SqliteRegistry::open(&path, height()).unwrap();
    held.add_user().unwrap();
    // Another spelling of the same file (a link, a `..` path) finds the same writer's lock
    // (review of issue 28), and a reader still reads beside the writer.
    #[cfg(unix)]
    std::os::unix::fs::symlink(&path, dir.path().join("link.sqlite")).unwrap();
    let other_spelling = dir.path().join("sub").join("..").join("link.sqlite");
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let reader = SqliteRegistry::open_read_only(&path).unwrap();
    assert_eq!(reader.users().unwrap().len(), 1);
    let started = std::time::Instant::now();
    #[cfg(unix)]
    match SqliteRegistry::open(&other_spelling, height()) {
        Err(Error::Storage(m)) => assert!(m.contains("locked"), "{m}"),
        other => panic!("expected a locked error through the link, got {other:?}"),
    }
    match SqliteRegistry::open(&path, height()) {
        Err(Error::Storage(m)) => assert!(m.contains("locked"), "{m}"),
        other => panic!("expected a locked error, got {other:?}"),
    }
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(4),
        "it waited for the lock first"
    );
    drop(held);
    assert_eq!(
        SqliteRegistry::open(&path, height())
            .unwrap()
            .users()
            .unwrap()
            .len(),
        1
    );
}

/// A re-wrapped envelope replaces its row only if the row is still the one it was made from
/// (issue 29, storage key rotation), on both stores in the process.
#[test]
fn an_envelope_replaces_only_the_row_it_was_made_from() {
    use treecast::license::registry::{ContentRecord, MemoryRegistry};
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteRegistry::open(&dir.path().join("r.sqlite"), height()).unwrap();
    let memory = MemoryRegistry::new(height());
    for registry in [&sqlite as &dyn Registry, &memory] {
        let first = registry
            .add_content(&mut |id| Ok(ContentRecord::new(id, 1, [1; 24])))
            .unwrap();
        let rewrapped = ContentRecord::new(first.id, 2, [2; 24]);
        assert!(registry.replace_envelope(&first, &rewrapped).unwrap());
        assert_eq!(registry.content(first.id).unwrap(), Some(rewrapped.clone()));
        // Made from the old row: refused, the row as it is.
        let stale = ContentRecord::new(first.id, 3, [3; 24]);
        assert!(!registry.replace_envelope(&first, &stale).unwrap());
        assert_eq!(registry.content(first.id).unwrap(), Some(rewrapped));
        // Another content's row is never touched through this one.
        let other = ContentRecord::new(treecast::license::ContentId(99), 2, [2; 24]);
        assert!(registry.replace_envelope(&first, &other).is_err());
    }
}
