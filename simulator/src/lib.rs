//! treecast-sim: the simulator that runs millions of users, purchases, moves and revocations
//! through the real library and checks every invariant.
//!
//! This crate is being built; until it exists, `treecast demo` is the main job.
#![forbid(unsafe_code)]

pub use treecast_keytree as keytree;
