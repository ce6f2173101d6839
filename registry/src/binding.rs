//! What a store is bound to (issue 24): its own random [`RegistryId`], made with it, and the
//! [`KeyFingerprint`] of the keys that write it (`treecast-protocol`'s `binding` module says
//! why).

use core::fmt;

use treecast_protocol::Error;
use treecast_protocol::binding::KeyFingerprint;

/// The length of a [`RegistryId`].
pub const REGISTRY_ID_LEN: usize = 16;

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
    /// [`Error::Internal`] when the system has no randomness.
    pub fn random() -> Result<Self, Error> {
        let mut bytes = [0u8; REGISTRY_ID_LEN];
        getrandom::fill(&mut bytes).map_err(|_| Error::Internal("no system randomness"))?;
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
    /// [`Error::KeysMismatch`], naming both fingerprints.
    pub fn check(&self, keys: &KeyFingerprint) -> Result<RegistryId, Error> {
        if self.keys == *keys {
            Ok(self.registry)
        } else {
            Err(Error::KeysMismatch {
                stored: self.keys,
                given: *keys,
            })
        }
    }
}
