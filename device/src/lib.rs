//! treecast-device: what runs on a user's device (claims 9–12), on `treecast-protocol` and the
//! device's half of `treecast-keytree`.
//!
//! - [`Client`]: its key set, the licenses it holds, plays, and moves out and in;
//! - [`Device`] and [`ClientState`]: the same without the signing key, and its saved state;
//! - [`transport`]: how it reaches its distributor, over HTTP with feature `http`.
//!
//! It links no registry, no distributor and no thread pool: it builds for
//! `wasm32-unknown-unknown`.
#![forbid(unsafe_code)]
#![deny(rustdoc::broken_intra_doc_links)]
#![doc(test(attr(deny(warnings))))]

pub mod client;
pub mod transport;

pub use client::{Client, ClientState, Device, MovePackage};
