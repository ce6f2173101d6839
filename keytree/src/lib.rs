#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(rustdoc::broken_intra_doc_links)]
#![doc(test(attr(deny(warnings))))]

pub mod treemath;

pub mod aacs;

#[cfg(feature = "authority")]
mod authority;
pub mod codec;
mod cover;
mod crypto;
#[cfg(feature = "authority")]
mod delegation;
mod derivation;
mod device;
pub mod ekb;
mod error;
#[cfg(feature = "authority")]
mod leaves;
#[cfg(feature = "authority")]
mod revocation;
#[macro_use]
mod secret;
#[cfg(feature = "authority")]
mod signer;
#[cfg(feature = "authority")]
pub mod traitors;

#[cfg(feature = "authority")]
pub use authority::Authority;
#[cfg(feature = "authority")]
pub use cover::Cover;
pub use cover::{Scheme, Subset};
#[cfg(feature = "authority")]
pub use delegation::Delegation;
pub use derivation::Derivation;
pub use device::DeviceKeys;
pub use ekb::{
    EkbHeader, EkbIn, Profile, SignedEkb, TreeConfig, TreeId, VerifiedEkb, VerifiedEkbBuf,
};
pub use error::{DecodeError, Error};
#[cfg(feature = "authority")]
pub use leaves::LeafAllocator;
#[cfg(feature = "authority")]
pub use revocation::RevocationSet;
pub use secret::{DeviceKey, DistributorSecret, MasterSecret, NodeKey, PayloadKey};
#[cfg(feature = "authority")]
pub use signer::ExternalSigner;

/// The domain label of a list of a license server's keys signed by the authority
/// (`treecast-protocol`'s `ServerKeyList`, issue 29): [`Authority::sign_server_keys`] signs only
/// messages that start with it.
pub const SERVER_KEYS_LABEL: &[u8] = b"treecast/v1/server-keys\0";
pub use treemath::{LeafIndex, NodeIndex, TreeHeight};

pub use ed25519_dalek::VerifyingKey;

/// Re-exports for the `secret_type!` macro; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use rand_core;
    pub use subtle;
    pub use zeroize;
}

#[cfg(all(test, feature = "authority"))]
mod tests;
