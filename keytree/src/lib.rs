#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(rustdoc::broken_intra_doc_links)]
#![doc(test(attr(deny(warnings))))]

pub mod treemath;

pub mod aacs;

mod authority;
pub mod codec;
mod cover;
mod crypto;
mod device;
pub mod ekb;
mod error;
mod leaves;
mod revocation;
#[macro_use]
mod secret;
pub mod traitors;

pub use authority::Authority;
pub use cover::{Cover, Scheme, Subset};
pub use device::DeviceKeys;
pub use ekb::{
    EkbHeader, EkbIn, Profile, SignedEkb, TreeConfig, TreeId, VerifiedEkb, VerifiedEkbBuf,
};
pub use error::{DecodeError, Error};
pub use leaves::LeafAllocator;
pub use revocation::RevocationSet;
pub use secret::{DeviceKey, DistributorSecret, MasterSecret, NodeKey, PayloadKey};
pub use treemath::{LeafIndex, NodeIndex, TreeHeight};

pub use ed25519_dalek::VerifyingKey;

/// Re-exports for the `secret_type!` macro; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use rand_core;
    pub use subtle;
    pub use zeroize;
}

#[cfg(test)]
mod tests;
