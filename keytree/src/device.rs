//! The device side: a device's key set and opening an EKB with it.

use core::fmt;

use zeroize::Zeroizing;

use crate::codec::Reader;
use crate::cover::{Scheme, Subset};
use crate::crypto;
use crate::ekb::{self, TreeConfig, TreeId, VerifiedEkb};
use crate::error::{DecodeError, Error};
use crate::secret::{DeviceKey, NodeKey, PayloadKey};
use crate::treemath::{LeafIndex, TreeHeight};

/// Everything a device holds to open EKBs of its tree: its leaf, the keys of its scheme and its
/// own device key. Zeroized on drop; `Debug` shows only the public part.
#[derive(Clone, Eq, PartialEq)]
pub struct DeviceKeys {
    config: TreeConfig,
    leaf: LeafIndex,
    pub(crate) keys: KeySet,
    device_key: DeviceKey,
}

/// The scheme-specific keys of a device.
#[derive(Clone, Eq, PartialEq)]
pub(crate) enum KeySet {
    /// The keys of the nodes on the path, root first (h + 1 of them).
    CompleteSubtree(Vec<NodeKey>),
}

impl DeviceKeys {
    pub(crate) fn new(
        config: TreeConfig,
        leaf: LeafIndex,
        keys: KeySet,
        device_key: DeviceKey,
    ) -> Self {
        Self {
            config,
            leaf,
            keys,
            device_key,
        }
    }

    /// The tree these keys belong to.
    pub fn config(&self) -> &TreeConfig {
        &self.config
    }

    /// The device's leaf.
    pub fn leaf(&self) -> LeafIndex {
        self.leaf
    }

    /// The device's own key, for unwrapping licenses bound to it.
    pub fn device_key(&self) -> &DeviceKey {
        &self.device_key
    }

    /// Opens a verified EKB: finds the subset holding this device by binary search (O(log n)
    /// entries read), unwraps the payload key and checks the verification value.
    ///
    /// # Errors
    /// [`Error::WrongTree`] for an EKB of another tree; [`Error::Revoked`] when no subset holds
    /// this device; [`Error::UnwrapFailed`] when the unwrapped key fails the verification value;
    /// [`Error::Decode`] for an entry that is not a subset of the tree.
    pub fn open(&self, ekb: &VerifiedEkb<'_>) -> Result<PayloadKey, Error> {
        if ekb.header().config != self.config {
            return Err(Error::WrongTree);
        }
        let (subset, wrapped) = self.find(ekb)?;
        let key = self.subset_key(&subset)?;
        let payload = crypto::unwrap(&key, ekb::subset_tweak(&subset), &wrapped);
        if crypto::verifies(&payload, ekb.header().epoch, ekb.verification()) {
            Ok(payload)
        } else {
            Err(Error::UnwrapFailed)
        }
    }

    /// The bytes a device stores: see `docs/formats.md`.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let keys = self.node_keys();
        let mut out = Zeroizing::new(Vec::with_capacity(KEYS_HEADER_LEN + 16 * (keys.len() + 1)));
        out.extend_from_slice(&KEYS_MAGIC);
        out.push(KEYS_VERSION);
        out.push(self.config.scheme.0);
        out.push(self.config.height.get());
        out.extend_from_slice(&self.config.tree_id.0.to_be_bytes());
        out.extend_from_slice(&self.leaf.get().to_be_bytes());
        // The count is at most (32 + 1), checked by the constructor's scheme and height.
        out.extend_from_slice(&(keys.len() as u16).to_be_bytes());
        for k in keys {
            out.extend_from_slice(k.secret_bytes());
        }
        out.extend_from_slice(self.device_key.secret_bytes());
        out
    }

    /// Reads the bytes written by [`DeviceKeys::to_bytes`].
    ///
    /// # Errors
    /// A [`DecodeError`] for anything but an exact, well-formed encoding.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        if r.array::<4>("magic")? != KEYS_MAGIC {
            return Err(DecodeError::BadMagic);
        }
        let version = r.u8("version")?;
        if version != KEYS_VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let scheme = Scheme(r.u8("scheme")?);
        let height =
            TreeHeight::new(r.u8("height")?).map_err(|_| DecodeError::InvalidValue("height"))?;
        let tree_id = TreeId(r.u64("tree id")?);
        let leaf = LeafIndex::new(r.u32("leaf")?, height)
            .map_err(|_| DecodeError::InvalidValue("leaf"))?;
        let count = usize::from(r.u16("key count")?);
        let expected = match scheme {
            Scheme::COMPLETE_SUBTREE => usize::from(height.get()) + 1,
            _ => return Err(DecodeError::InvalidValue("scheme")),
        };
        if count != expected {
            return Err(DecodeError::InvalidValue("key count"));
        }
        let keys = (0..count)
            .map(|_| r.array::<16>("key").map(NodeKey::from_bytes))
            .collect::<Result<Vec<_>, _>>()?;
        let device_key = DeviceKey::from_bytes(r.array::<16>("device key")?);
        r.finish()?;
        Ok(Self::new(
            TreeConfig::new(scheme, height, tree_id),
            leaf,
            KeySet::CompleteSubtree(keys),
            device_key,
        ))
    }

    /// The number of bytes of key material the device stores.
    pub fn key_material_len(&self) -> usize {
        16 * (self.node_keys().len() + 1)
    }

    fn node_keys(&self) -> &[NodeKey] {
        match &self.keys {
            KeySet::CompleteSubtree(keys) => keys,
        }
    }

    /// The entry whose subset holds this device, by binary search on the first leaf of each
    /// subset (entries are sorted by it, and the signature vouches for the order).
    fn find(&self, ekb: &VerifiedEkb<'_>) -> Result<(Subset, [u8; 16]), Error> {
        let body = ekb.body();
        let height = self.config.height;
        let leaf = u64::from(self.leaf.get());
        let first_leaf = |i: usize| -> Result<u64, Error> {
            let (subset, _) = body.entry(i)?;
            match subset {
                Subset::Complete(n) => n.first_leaf(height).ok_or(Error::InvalidNode(n.get())),
                Subset::Difference { u, .. } => {
                    u.first_leaf(height).ok_or(Error::InvalidNode(u.get()))
                }
            }
        };
        // 1) The number of entries whose first leaf is at or before ours.
        let (mut lo, mut hi) = (0, body.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if first_leaf(mid)? <= leaf {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        // 2) The last of them is the only candidate; it must hold our leaf.
        let candidate = lo.checked_sub(1).ok_or(Error::Revoked)?;
        let (subset, wrapped) = body.entry(candidate)?;
        if subset.contains(self.leaf.node(height)) {
            Ok((subset, wrapped))
        } else {
            Err(Error::Revoked)
        }
    }

    /// The key of a subset that holds this device.
    fn subset_key(&self, subset: &Subset) -> Result<NodeKey, Error> {
        match (subset, &self.keys) {
            (Subset::Complete(n), KeySet::CompleteSubtree(keys)) => keys
                .get(usize::from(n.depth()))
                .cloned()
                .ok_or(Error::Internal("path key missing")),
            _ => Err(Error::UnsupportedScheme(self.config.scheme)),
        }
    }
}

impl fmt::Debug for DeviceKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceKeys")
            .field("config", &self.config)
            .field("leaf", &self.leaf)
            .finish_non_exhaustive()
    }
}

const KEYS_MAGIC: [u8; 4] = *b"TCDK";
const KEYS_VERSION: u8 = 1;
const KEYS_HEADER_LEN: usize = 4 + 1 + 1 + 1 + 8 + 4 + 2;
