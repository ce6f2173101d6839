//! The contents distribution system, under the paths it had as one crate (`treecast-license`):
//! the protocol (`treecast-protocol`), the device (`treecast-device`), the registry
//! (`treecast-registry`) and the distributor (`treecast-distributor`), re-exported together.
//! `docs/design.md` opens with the map of those crates.

pub use treecast_keytree as keytree;
pub use treecast_protocol::{
    cenc, certificate, content, credential, giveback, ids, license, registration, renewal, sign,
    terms, time,
};
pub use treecast_registry as registry;

pub use treecast_device::{Client, ClientState, Device, MovePackage};
pub use treecast_distributor::{
    Distributor, DistributorConfig, EkbStats, LicenseServer, LicenseStatus, NewClient, OfferTerms,
    Tariff,
};
pub use treecast_protocol::{
    CertificateId, ClientCertificate, ClientId, Clock, ContentId, CopyCertificate,
    CopyCertificateIn, Error, KeyFingerprint, KeyId, License, LicenseId, LicenseIn, LicenseRequest,
    ManualClock, MoveRequest, Offer, Registration, ReleaseKey, RenewFrom, ReturnReceipt, Rights,
    ServerId, ServerKeyList, ServerKeyListIn, ServerKeys, Signed, SigningKey, SystemClock, Terms,
    UnixTime, Unverified, UserId, VerifyingKey,
};
pub use treecast_registry::{
    ChargeKind, LedgerEntry, MemoryRegistry, Registry, RegistryId, StoreBinding,
};

/// Billing (claims 7 and 8): the registry's ledger and the distributor's tariff.
pub mod billing {
    pub use treecast_distributor::billing::*;
    pub use treecast_registry::billing::*;
}

/// What a registry is bound to: the fingerprint of its keys and its own ID.
pub mod binding {
    pub use treecast_protocol::binding::*;
    pub use treecast_registry::binding::*;
}

/// The client device.
pub mod client {
    pub use treecast_device::client::*;
}

/// The distributor.
pub mod distributor {
    pub use treecast_distributor::{
        Distributor, DistributorConfig, EkbStats, LicenseStatus, NewClient,
    };
    pub use treecast_protocol::Registration;
}

pub use treecast_distributor::keyfile;

/// License servers: the distributor's signing keys and the public keys every client holds.
pub mod server {
    pub use treecast_distributor::server::*;
    pub use treecast_protocol::server::*;
}

/// How a device reaches its distributor: the trait, the HTTP transport and the in-process one.
pub mod transport {
    pub use treecast_device::transport::*;
    pub use treecast_distributor::LocalTransport;
}
