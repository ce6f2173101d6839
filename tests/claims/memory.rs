//! The claims on the in-memory registry.

use super::*;

fn world(scheme: Scheme) -> Option<AnyWorld> {
    Some(World::with_registry(
        scheme,
        Box::new(treecast::license::MemoryRegistry::new(height())),
    ))
}

claims!();
