//! The device side: a device's key set and opening an EKB with it.

use core::fmt;

use zeroize::Zeroizing;

use crate::codec::Reader;
use crate::cover::{Scheme, Subset};
use crate::crypto::{self, G3};
use crate::ekb::{self, TreeConfig, TreeId, VerifiedEkb};
use crate::error::{DecodeError, Error};
use crate::secret::{DeviceKey, NodeKey, PayloadKey};
use crate::treemath::{LeafIndex, NodeIndex, TreeHeight, low_bits, sd_label_count};

/// Everything a device holds to open EKBs of its tree: its leaf, the keys of its scheme and its
/// own device key. Zeroized on drop; `Debug` shows only the public part; `PartialEq` compares
/// every key in constant time.
#[derive(Clone)]
pub struct DeviceKeys {
    config: TreeConfig,
    leaf: LeafIndex,
    pub(crate) keys: KeySet,
    device_key: DeviceKey,
}

/// The scheme-specific keys of a device.
#[derive(Clone)]
pub(crate) enum KeySet {
    /// The keys of the nodes on the path, root first (h + 1 of them).
    CompleteSubtree(Vec<NodeKey>),
    /// The labels `L(u, v)` for each ancestor `u` (root first) and each `v` hanging off the path
    /// below it (top first): h(h+1)/2 of them; then the all-leaves key.
    SubsetDifference {
        /// The labels.
        labels: Vec<NodeKey>,
        /// The key of the all-leaves subset.
        all: NodeKey,
    },
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
        let keys = self.stored_keys();
        let mut out = Zeroizing::new(Vec::with_capacity(KEYS_HEADER_LEN + 16 * (keys.len() + 1)));
        out.extend_from_slice(&KEYS_MAGIC);
        out.push(KEYS_VERSION);
        out.push(self.config.scheme.0);
        out.push(self.config.height.get());
        out.extend_from_slice(&self.config.tree_id.0.to_be_bytes());
        out.extend_from_slice(&self.leaf.get().to_be_bytes());
        // The count is at most 32·33/2 + 1 = 529, set by the scheme and height.
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
        let h = height.get();
        let expected = match scheme {
            Scheme::COMPLETE_SUBTREE => usize::from(h) + 1,
            Scheme::SUBSET_DIFFERENCE => sd_label_count(h) + 1,
            _ => return Err(DecodeError::InvalidValue("scheme")),
        };
        if count != expected {
            return Err(DecodeError::InvalidValue("key count"));
        }
        // Reserved exactly: a vector that grew would leave copies of keys in freed memory.
        let mut keys = Vec::with_capacity(count);
        for _ in 0..count {
            keys.push(NodeKey::from_bytes(r.array::<16>("key")?));
        }
        let device_key = DeviceKey::from_bytes(r.array::<16>("device key")?);
        r.finish()?;
        let keys = match scheme {
            Scheme::SUBSET_DIFFERENCE => {
                let all = keys
                    .pop()
                    .ok_or(DecodeError::MissingData("all-leaves key"))?;
                KeySet::SubsetDifference { labels: keys, all }
            }
            _ => KeySet::CompleteSubtree(keys),
        };
        Ok(Self::new(
            TreeConfig::new(scheme, height, tree_id),
            leaf,
            keys,
            device_key,
        ))
    }

    /// The number of bytes of key material the device stores (its keys and its device key).
    pub fn key_material_len(&self) -> usize {
        16 * (self.stored_keys().len() + 1)
    }

    /// The keys in their stored order.
    fn stored_keys(&self) -> Vec<&NodeKey> {
        match &self.keys {
            KeySet::CompleteSubtree(keys) => keys.iter().collect(),
            KeySet::SubsetDifference { labels, all } => labels.iter().chain([all]).collect(),
        }
    }

    /// The entry whose subset holds this device: see [`find_in_preorder`].
    fn find(&self, ekb: &VerifiedEkb<'_>) -> Result<(Subset, [u8; 16]), Error> {
        let body = ekb.body();
        let height = self.config.height;
        let leaf = self.leaf.node(height);
        let index = find_in_preorder(body.len(), |i| Ok(body.entry(i)?.0.top()), leaf, height)?;
        let (subset, wrapped) = body.entry(index)?;
        if subset.contains(leaf) {
            return Ok((subset, wrapped));
        }
        // A traced cover may split a subtree into its two halves, two subsets with the same
        // top (`traitors`): they are listed by `v`, and the search lands on the second.
        if let Some(before) = index.checked_sub(1) {
            let (previous, wrapped) = body.entry(before)?;
            if previous.top() == subset.top() && previous.contains(leaf) {
                return Ok((previous, wrapped));
            }
        }
        Err(Error::Revoked)
    }

    /// The key of a subset that holds this device.
    pub(crate) fn subset_key(&self, subset: &Subset) -> Result<NodeKey, Error> {
        match (subset, &self.keys) {
            (Subset::Complete(n), KeySet::CompleteSubtree(keys)) => keys
                .get(usize::from(n.depth()))
                .cloned()
                .ok_or(Error::Internal("path key missing")),
            (Subset::Complete(NodeIndex::ROOT), KeySet::SubsetDifference { all, .. }) => {
                Ok(all.clone())
            }
            (Subset::Difference { u, v }, KeySet::SubsetDifference { labels, .. }) => {
                // The device holds L(u, w) for w, the child of the common ancestor of v and this
                // leaf that lies toward v; v is at most h steps of AES-G3 below w.
                let h = self.config.height.get();
                let leaf = self.leaf.node(self.config.height);
                let (du, dv) = (u.depth(), v.depth());
                let w_depth = v.common_ancestor(leaf).depth() + 1;
                if du >= w_depth || w_depth > dv {
                    return Err(Error::Internal("subset does not hold this device"));
                }
                let index = sd_label_offset(du, h) + usize::from(w_depth - du - 1);
                let label = labels
                    .get(index)
                    .cloned()
                    .ok_or(Error::Internal("label missing"))?;
                let steps = dv - w_depth;
                let l_uv = crypto::g3_descend(label, v.get() & low_bits(steps), steps);
                Ok(crypto::g3(&l_uv, G3::Key))
            }
            _ => Err(Error::UnsupportedScheme(self.config.scheme)),
        }
    }
}

/// Where the labels of the ancestor at depth `d` start: the ancestors above it hold
/// h, h−1, …, h−d+1 labels.
const fn sd_label_offset(d: u8, h: u8) -> usize {
    let (d, h) = (d as usize, h as usize);
    d * h - d * (d.saturating_sub(1)) / 2
}

/// The index of the only entry that can hold `leaf`, among `len` disjoint subsets sorted in
/// preorder of their top node (`top(i)`); the caller checks that it does.
///
/// The subset holding a non-revoked leaf is the entry with the deepest top above the leaf.
/// First, find the last entry at or before the leaf in preorder; if its top is above the leaf,
/// that is the one. Otherwise that entry lies under the `v` of the wanted subset, left of the
/// leaf, and the wanted entry is the last one at or before the common ancestor of the two. Two
/// binary searches; `design.md` has the proof.
///
/// # Errors
/// [`Error::Revoked`] when no entry comes at or before the leaf; the error of `top`.
pub(crate) fn find_in_preorder(
    len: usize,
    top: impl Fn(usize) -> Result<NodeIndex, Error>,
    leaf: NodeIndex,
    height: TreeHeight,
) -> Result<usize, Error> {
    // The number of entries whose top node is at or before `key` in preorder.
    let at_or_before = |key: u64| -> Result<usize, Error> {
        let (mut lo, mut hi) = (0, len);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if top(mid)?.preorder_key(height) <= key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    };
    let last = at_or_before(leaf.preorder_key(height))?
        .checked_sub(1)
        .ok_or(Error::Revoked)?;
    let last_top = top(last)?;
    if last_top.contains(leaf) {
        return Ok(last);
    }
    let meet = last_top.common_ancestor(leaf);
    at_or_before(meet.preorder_key(height))?
        .checked_sub(1)
        .ok_or(Error::Revoked)
}

impl subtle::ConstantTimeEq for DeviceKeys {
    /// Compares every key, whatever the first difference: the time depends on the public parts
    /// (tree, leaf, key count) only.
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        let public = subtle::Choice::from(u8::from(
            self.config == other.config
                && self.leaf == other.leaf
                && self.keys.len() == other.keys.len(),
        ));
        let keys = self
            .keys
            .all()
            .zip(other.keys.all())
            .fold(subtle::Choice::from(1), |acc, (a, b)| acc & a.ct_eq(b));
        public & keys & self.device_key.ct_eq(&other.device_key)
    }
}

impl PartialEq for DeviceKeys {
    fn eq(&self, other: &Self) -> bool {
        subtle::ConstantTimeEq::ct_eq(self, other).into()
    }
}

impl Eq for DeviceKeys {}

impl KeySet {
    fn len(&self) -> usize {
        match self {
            Self::CompleteSubtree(keys) => keys.len(),
            Self::SubsetDifference { labels, .. } => labels.len() + 1,
        }
    }

    /// Every key, in storage order; the scheme tells them apart.
    fn all(&self) -> impl Iterator<Item = &NodeKey> {
        let (keys, all): (&[NodeKey], Option<&NodeKey>) = match self {
            Self::CompleteSubtree(keys) => (keys, None),
            Self::SubsetDifference { labels, all } => (labels, Some(all)),
        };
        keys.iter().chain(all)
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
