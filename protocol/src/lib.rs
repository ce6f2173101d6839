//! treecast-protocol: what a distributor and a device exchange, on the key tree of
//! `treecast-keytree`. Both parties link it; it does no I/O.
//!
//! - [`License`], [`CopyCertificate`], the requests a client signs and the other signed
//!   objects, with type-state verification ([`Unverified`] → [`Signed`]);
//! - [`Registration`]: what a newly registered device receives, sealed to it
//!   ([`registration`]);
//! - [`content`]: chunked authenticated encryption of content;
//! - the IDs, [`UnixTime`] and [`Clock`], and the [`Error`] both sides share;
//! - [`transport::Transport`]: the requests a device sends its distributor, one answer each.
//!
//! The device (`treecast-device`) and the distributor (`treecast-distributor`, over a
//! `treecast-registry`) are built on it. Time ([`Clock`]) and randomness
//! (`&mut impl CryptoRng`) are injected.
#![forbid(unsafe_code)]
#![deny(rustdoc::broken_intra_doc_links)]
#![doc(test(attr(deny(warnings))))]

pub mod binding;
pub mod cenc;
pub mod certificate;
pub mod content;
pub mod credential;
mod error;
pub mod giveback;
pub mod ids;
pub mod kdf;
pub mod license;
pub mod registration;
pub mod release;
pub mod renewal;
pub mod server;
pub mod sign;
pub mod terms;
pub mod time;
pub mod transport;

pub use binding::KeyFingerprint;
pub use certificate::{
    ClientCertificate, CopyCertificate, CopyCertificateIn, LicenseRequest, MoveRequest, ReleaseKey,
};
pub use ed25519_dalek::{SigningKey, VerifyingKey};
pub use error::Error;
pub use giveback::{ReturnReceipt, ReturnRequest, ReturnRequestIn};
pub use ids::{CertificateId, ClientId, ContentId, KeyId, LicenseId, ServerId, UserId};
pub use license::{License, LicenseIn, Rights};
pub use registration::Registration;
pub use renewal::{RenewFrom, RenewalRequest, RenewalRequestIn};
pub use server::{ServerKeyList, ServerKeyListIn, ServerKeys};
pub use sign::{Signed, Unverified};
pub use terms::{Offer, Terms};
pub use time::{Clock, ManualClock, SystemClock, UnixTime};
pub use treecast_keytree as keytree;
