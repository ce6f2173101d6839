//! treecast-license: the contents distribution system of the seed patent, on the key tree of
//! `treecast-keytree`.
//!
//! - [`Distributor`]: registration, content supply, license supply and copy-certificate supply
//!   (claim 1), with several [`LicenseServer`]s (claim 3), a [`Registry`] (claims 5, 6) and a
//!   [`Tariff`] (claims 7, 8);
//! - [`Client`]: the device side (claims 9–12);
//! - [`License`], [`CopyCertificate`] and the other signed objects, with type-state
//!   verification ([`Unverified`] → [`Signed`]);
//! - [`content`]: chunked authenticated encryption of content.
//!
//! Time ([`Clock`]) and randomness (`&mut impl CryptoRng`) are injected.
#![forbid(unsafe_code)]
#![deny(rustdoc::broken_intra_doc_links)]
#![doc(test(attr(deny(warnings))))]

pub mod billing;
pub mod binding;
pub mod certificate;
pub mod client;
pub mod content;
pub mod credential;
pub mod distributor;
mod error;
pub mod ids;
mod kdf;
pub mod keyfile;
pub mod license;
pub mod registration;
pub mod registry;
pub mod release;
pub mod server;
pub mod sign;
pub mod time;
pub mod transport;
mod vault;

pub use billing::{ChargeKind, LedgerEntry, Tariff};
pub use binding::{KeyFingerprint, RegistryId, StoreBinding};
pub use certificate::{
    ClientCertificate, CopyCertificate, CopyCertificateIn, LicenseRequest, MoveRequest, ReleaseKey,
};
pub use client::{Client, ClientState, Device, MovePackage};
pub use distributor::{Distributor, DistributorConfig, EkbStats, LicenseStatus, NewClient};
pub use ed25519_dalek::{SigningKey, VerifyingKey};
pub use error::Error;
pub use ids::{CertificateId, ClientId, ContentId, LicenseId, ServerId, UserId};
pub use license::{License, LicenseIn, Rights};
pub use registration::Registration;
pub use registry::{MemoryRegistry, Registry};
pub use server::{LicenseServer, ServerKeys};
pub use sign::{Signed, Unverified};
pub use time::{Clock, ManualClock, SystemClock, UnixTime};
pub use treecast_keytree as keytree;
