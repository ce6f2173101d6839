//! What a registry is bound to (issue 24): the public fingerprint of the keys that write it,
//! and its own random ID.
//!
//! - A store records the [`KeyFingerprint`] of the first distributor that opens it (the
//!   authority's verifying key and the tree configuration: public values, so the fingerprint
//!   reveals nothing). A distributor given another key file or another scheme is refused
//!   ([`Error::KeysMismatch`](crate::Error::KeysMismatch)) before it writes anything, so a typo
//!   in a key file cannot write users, clients and contents under the wrong keys.
//! - A store has a random [`RegistryId`], made with it. User credentials are derived with it
//!   (`credential.rs`), so a credential of one registry acts for nobody in another one started
//!   with the same key file.

use core::fmt;

use sha2::{Digest, Sha256};
use treecast_keytree::Authority;

/// The length of a [`RegistryId`].
pub const REGISTRY_ID_LEN: usize = 16;

/// The public fingerprint of a distributor's keys and tree: SHA-256 of
/// `"treecast/v1 key binding\0" ‖ authority verifying key (32) ‖ scheme (1) ‖ height (1) ‖
/// tree ID (8)`. Shown as its first 16 hexadecimal digits.
#[derive(Clone, Copy, Eq, Hash, PartialEq)]
pub struct KeyFingerprint([u8; 32]);

impl KeyFingerprint {
    /// The fingerprint of `authority`'s verifying key and tree configuration.
    pub fn of(authority: &Authority) -> Self {
        let config = authority.config();
        let mut h = Sha256::new();
        h.update(b"treecast/v1 key binding\0");
        h.update(authority.verifying_key().as_bytes());
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

/// A registry's random ID, made when the store is created. Not secret.
#[derive(Clone, Copy, Eq, Hash, PartialEq)]
pub struct RegistryId([u8; REGISTRY_ID_LEN]);

impl RegistryId {
    /// An ID from its bytes (a store's, or a seeded one for a deterministic run).
    pub const fn from_bytes(bytes: [u8; REGISTRY_ID_LEN]) -> Self {
        Self(bytes)
    }

    /// A fresh ID from the operating system's randomness.
    ///
    /// # Errors
    /// [`Error::Internal`](crate::Error::Internal) when the system has no randomness.
    pub fn random() -> Result<Self, crate::Error> {
        let mut bytes = [0u8; REGISTRY_ID_LEN];
        getrandom::fill(&mut bytes).map_err(|_| crate::Error::Internal("no system randomness"))?;
        Ok(Self(bytes))
    }

    /// A fresh ID from the system's randomness, or, where the system has none (it always
    /// has), from the time and the process: distinct from any other registry's in practice.
    pub(crate) fn random_or_fallback() -> Self {
        Self::random().unwrap_or_else(|_| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let mut h = blake3::Hasher::new();
            h.update(&nanos.to_be_bytes());
            h.update(&std::process::id().to_be_bytes());
            let mut bytes = [0u8; REGISTRY_ID_LEN];
            h.finalize_xof().fill(&mut bytes);
            Self(bytes)
        })
    }

    /// The ID's bytes.
    pub const fn as_bytes(&self) -> &[u8; REGISTRY_ID_LEN] {
        &self.0
    }
}

impl fmt::Display for RegistryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for RegistryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RegistryId({self})")
    }
}

/// What a store is bound to: its ID and the fingerprint of its keys.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct StoreBinding {
    /// The store's random ID.
    pub registry: RegistryId,
    /// The fingerprint of the keys that write it.
    pub keys: KeyFingerprint,
}

impl StoreBinding {
    /// Checks that the store is bound to `keys`.
    ///
    /// # Errors
    /// [`Error::KeysMismatch`](crate::Error::KeysMismatch), naming both fingerprints.
    pub fn check(&self, keys: &KeyFingerprint) -> Result<RegistryId, crate::Error> {
        if self.keys == *keys {
            Ok(self.registry)
        } else {
            Err(crate::Error::KeysMismatch {
                stored: self.keys,
                given: *keys,
            })
        }
    }
}
