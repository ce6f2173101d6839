//! treecast: broadcast-encryption key management and content licensing.
//!
//! This facade re-exports the member crates:
//!
//! - [`keytree`]: tree math, revocation sets, covers, the key authority and signed enabling key
//!   blocks (EKBs);
//! - [`license`]: the contents distribution system built on the key tree, from the protocol,
//!   device, registry and distributor crates, under one path;
//! - [`sim`]: the simulator.
//!
//! The `treecast` binary drives all three.
#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(rustdoc::broken_intra_doc_links)]
#![doc(test(attr(deny(warnings))))]

pub mod license;

pub use treecast_keytree as keytree;
pub use treecast_sim as sim;
