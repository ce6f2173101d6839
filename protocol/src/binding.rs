//! What a registry is bound to (issue 24): the public fingerprint of the keys that write it,
//! and its own random ID (`treecast-registry`'s `binding` module). The fingerprint is here,
//! with the errors, since [`Error::KeysMismatch`](crate::Error::KeysMismatch) names it.
//!
//! - A store records the [`KeyFingerprint`] of the first distributor that opens it (the
//!   authority's verifying key and the tree configuration: public values, so the fingerprint
//!   reveals nothing). A distributor given another key file or another scheme is refused
//!   ([`Error::KeysMismatch`](crate::Error::KeysMismatch)) before it writes anything, so a typo
//!   in a key file cannot write users, clients and contents under the wrong keys.
//! - A store has a random `RegistryId`, made with it. User credentials are derived with it
//!   (`credential.rs`), so a credential of one registry acts for nobody in another one started
//!   with the same key file.

use core::fmt;

#[cfg(feature = "authority")]
use sha2::{Digest, Sha256};
#[cfg(feature = "authority")]
use treecast_keytree::{Authority, TreeConfig};

/// The public fingerprint of a distributor's keys and tree: SHA-256 of
/// `"treecast/v1 key binding\0" ‖ authority verifying key (32) ‖ scheme (1) ‖ height (1) ‖
/// tree ID (8)`. Shown as its first 16 hexadecimal digits.
#[derive(Clone, Copy, Eq, Hash, PartialEq)]
pub struct KeyFingerprint([u8; 32]);

impl KeyFingerprint {
    /// The fingerprint of `authority`'s verifying key and tree configuration (feature
    /// `authority`: the distributor's).
    #[cfg(feature = "authority")]
    pub fn of(authority: &Authority) -> Self {
        Self::of_parts(&authority.verifying_key(), authority.config())
    }

    /// The fingerprint of an authority's verifying key and tree configuration, as a license
    /// server of a delegated subtree knows them (issue 29).
    #[cfg(feature = "authority")]
    pub fn of_parts(verifying_key: &treecast_keytree::VerifyingKey, config: &TreeConfig) -> Self {
        let mut h = Sha256::new();
        h.update(b"treecast/v1 key binding\0");
        h.update(verifying_key.as_bytes());
        h.update([config.scheme.0, config.height.get()]);
        h.update(config.tree_id.0.to_be_bytes());
        Self(h.finalize().into())
    }

    /// A fingerprint from its bytes (as a store keeps it).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The fingerprint's bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for KeyFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().take(8).try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for KeyFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyFingerprint({self})")
    }
}
