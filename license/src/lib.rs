//! treecast-license: the contents distribution system built on the key tree — registration,
//! content supply, licenses, contents copy certificates, billing and the client device.
//!
//! This crate is being built; today it only re-exports the key tree it builds on.
#![forbid(unsafe_code)]

pub use treecast_keytree as keytree;
