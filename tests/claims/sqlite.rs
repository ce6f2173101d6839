//! The claims on a SQLite registry in a temporary file.

use super::*;

fn world(scheme: Scheme) -> Option<AnyWorld> {
    let dir = tempfile::tempdir().unwrap();
    let registry =
        treecast::license::registry::SqliteRegistry::open(&dir.path().join("r.sqlite"), height())
            .unwrap();
    let mut w: AnyWorld = World::with_registry(scheme, Box::new(registry));
    w.keep.push(Box::new(dir));
    Some(w)
}

claims!();
