//! The claims on a PostgreSQL registry, a fresh database of the tests' cluster (skipped where
//! PostgreSQL is not installed).

use super::*;

fn world(scheme: Scheme) -> Option<AnyWorld> {
    let (conninfo, _) = crate::pg::database()?;
    let registry =
        treecast::license::registry::PostgresRegistry::open(&conninfo, height()).unwrap();
    Some(World::with_registry(scheme, Box::new(registry)))
}

claims!();
