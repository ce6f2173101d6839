//! A subtree of leaves delegated to a license server: what it needs to give each device of the
//! subtree its key set and device key, without the master secret (issue 29).
//!
//! For the subtree rooted at `r` (depth `k`), a delegation holds `r`'s seed
//! ([`crate::Derivation::SeedTree`]) and what the subtree's devices share from above `r`:
//! - Complete Subtree: the keys of `r`'s `k` ancestors;
//! - Subset Difference: for every ancestor `u` of `r`, the labels `L(u, v)` of the nodes `v`
//!   hanging off the path from `u` down to `r`, then of `r`'s two children; plus the key of the
//!   all-leaves subset. `L(u, r)` itself is not among them: it would open `S(u, r)`, whose
//!   devices all lie outside the subtree.
//!
//! So a delegation yields nothing that the union of its own devices' key sets does not give:
//! a stolen license server opens no EKB that none of its devices could open. It also holds the
//! key of the device-key PRF, so that it can issue a move from a device of another subtree
//! (`Delegation::device_key`).
//!
//! ```
//! use treecast_keytree::{Authority, Derivation, LeafIndex, MasterSecret, NodeIndex};
//! use treecast_keytree::{Scheme, TreeConfig, TreeHeight, TreeId};
//! # fn main() -> Result<(), treecast_keytree::Error> {
//! let height = TreeHeight::new(12)?;
//! let config = TreeConfig::new(Scheme::SUBSET_DIFFERENCE, height, TreeId(1));
//! let master = MasterSecret::from_bytes([1; 32]);
//! let authority = Authority::with_derivation(&master, config, Derivation::SeedTree)?;
//! // The right half of the tree (node 3) for a license server.
//! let delegation = authority.delegate(NodeIndex::new(3, height)?)?;
//! let leaf = LeafIndex::new(3000, height)?;
//! assert!(delegation.device_keys(leaf)? == authority.device_keys(leaf));
//! assert!(delegation.device_keys(LeafIndex::new(5, height)?).is_err(), "the other half");
//! # Ok(()) }
//! ```

use ed25519_dalek::VerifyingKey;

use crate::cover::Scheme;
use crate::crypto::Prf;
use crate::derivation::Seeds;
use crate::device::{DeviceKeys, KeySet};
use crate::ekb::TreeConfig;
use crate::error::Error;
use crate::secret::{DeviceKey, NodeKey};
use crate::treemath::{LeafIndex, NodeIndex, sd_label_count};

/// The key material of one delegated subtree. Zeroized on drop (its keys are), `Debug` shows
/// only the public part.
#[derive(Clone)]
pub struct Delegation {
    config: TreeConfig,
    seeds: Seeds,
    above: Vec<NodeKey>,
    all: Option<NodeKey>,
    device_root: NodeKey,
    device_prf: Prf,
    verifying_key: VerifyingKey,
}

impl Delegation {
    /// A delegation from its parts, as a key file holds them, checked for shape: the subtree's
    /// root must be an inner node of the tree, `above` must hold
    /// [`Delegation::above_count`] keys, and `all` is there exactly for Subset Difference.
    ///
    /// # Errors
    /// [`Error::InvalidNode`] for a root that is not an inner node; [`Error::UnsupportedScheme`];
    /// [`Error::Decode`] for a count that does not match.
    pub fn from_parts(
        config: TreeConfig,
        root: NodeIndex,
        seed: NodeKey,
        above: Vec<NodeKey>,
        all: Option<NodeKey>,
        device_root: NodeKey,
        verifying_key: VerifyingKey,
    ) -> Result<Self, Error> {
        let root = NodeIndex::new(root.get(), config.height)?;
        if root.depth() >= config.height.get() {
            return Err(Error::InvalidNode(root.get()));
        }
        let expected = Self::above_count(config.scheme, root.depth())?;
        let sd = config.scheme == Scheme::SUBSET_DIFFERENCE;
        if above.len() != expected || all.is_some() != sd {
            return Err(Error::Decode(crate::DecodeError::InvalidValue(
                "delegation key count",
            )));
        }
        Ok(Self {
            config,
            seeds: Seeds::new(root, seed),
            above,
            all,
            device_prf: Prf::from_key(&device_root),
            device_root,
            verifying_key,
        })
    }

    /// How many keys a delegation of a subtree at depth `depth` holds from above it: `depth` in
    /// Complete Subtree, `depth(depth + 1)/2 + 2 depth` in Subset Difference.
    ///
    /// # Errors
    /// [`Error::UnsupportedScheme`].
    pub fn above_count(scheme: Scheme, depth: u8) -> Result<usize, Error> {
        let k = usize::from(depth);
        match scheme {
            Scheme::COMPLETE_SUBTREE => Ok(k),
            Scheme::SUBSET_DIFFERENCE => Ok(k * (k + 1) / 2 + 2 * k),
            other => Err(Error::UnsupportedScheme(other)),
        }
    }

    /// The tree.
    pub const fn config(&self) -> &TreeConfig {
        &self.config
    }

    /// The root of the delegated subtree.
    pub const fn root(&self) -> NodeIndex {
        self.seeds.root()
    }

    /// The key the authority signs EKBs with.
    pub const fn verifying_key(&self) -> &VerifyingKey {
        &self.verifying_key
    }

    /// **Secret**: the seed of the subtree's root, for writing the delegation to a key file.
    pub const fn root_seed(&self) -> &NodeKey {
        self.seeds.root_seed()
    }

    /// **Secret**: the keys from above the subtree, in order, for writing to a key file.
    pub fn above(&self) -> &[NodeKey] {
        &self.above
    }

    /// **Secret**: the key of the all-leaves subset (Subset Difference), for writing to a key
    /// file.
    pub const fn all(&self) -> Option<&NodeKey> {
        self.all.as_ref()
    }

    /// **Secret**: the key of the device-key PRF, for writing to a key file.
    pub const fn device_root(&self) -> &NodeKey {
        &self.device_root
    }

    /// Whether the subtree holds `leaf`.
    pub fn holds(&self, leaf: LeafIndex) -> bool {
        self.root().contains(leaf.node(self.config.height))
    }

    /// The leaves of the subtree, as a range of leaf numbers.
    pub fn leaves(&self) -> core::ops::Range<u64> {
        self.root().leaf_range(self.config.height).unwrap_or(0..0)
    }

    /// The key set of the device at `leaf`, as the authority would give it.
    ///
    /// # Errors
    /// [`Error::InvalidLeaf`] for a leaf outside the subtree.
    pub fn device_keys(&self, leaf: LeafIndex) -> Result<DeviceKeys, Error> {
        self.check(leaf)?;
        let height = self.config.height;
        let h = height.get();
        let k = self.root().depth();
        let below = self.seeds.path_values(leaf.node(height));
        let keys = match self.all.as_ref() {
            None => KeySet::CompleteSubtree(self.above.iter().chain(&below).cloned().collect()),
            Some(all) => {
                let mut labels = Vec::with_capacity(sd_label_count(h));
                // From the ancestors above the subtree: the stored labels down to r, then the
                // stored label of r's child off the path, and on from the one toward the leaf.
                let child = NodeIndex::leaf_ancestor(leaf, height, k + 1);
                let mut stored = self.above.iter();
                for d in 0..k {
                    let count = usize::from(k - d);
                    labels.extend(stored.by_ref().take(count).cloned());
                    let (left, right) = (stored.next(), stored.next());
                    let (Some(left), Some(right)) = (left, right) else {
                        return Err(Error::Internal("delegation key count"));
                    };
                    let (toward, off) = if child.get() & 1 == 0 {
                        (left, right)
                    } else {
                        (right, left)
                    };
                    labels.push(off.clone());
                    crate::authority::sd_labels_below(
                        &mut labels,
                        toward.clone(),
                        leaf,
                        height,
                        k + 2,
                    );
                }
                // From the ancestors inside the subtree, as the authority derives them.
                // By reference: keys moved out of the vector would leave their bytes behind.
                for (d, top) in (k..h).zip(&below) {
                    crate::authority::sd_labels_below(
                        &mut labels,
                        top.clone(),
                        leaf,
                        height,
                        d + 1,
                    );
                }
                KeySet::SubsetDifference {
                    labels,
                    all: all.clone(),
                }
            }
        };
        Ok(DeviceKeys::new(
            self.config,
            leaf,
            keys,
            self.device_key(leaf),
        ))
    }

    /// The device key of the device at `leaf`, of any subtree: a move's release is derived
    /// from the source device's key, and its certificate is issued by the destination's
    /// license server (claim 3), whatever subtree the source is in. A device key opens no EKB;
    /// what it guards (a license's content key) the distributor secret, which every license
    /// server holds, gives anyway (`docs/design.md`).
    pub fn device_key(&self, leaf: LeafIndex) -> DeviceKey {
        DeviceKey::from_bytes(self.device_prf.eval(u128::from(leaf.get())))
    }

    fn check(&self, leaf: LeafIndex) -> Result<(), Error> {
        if self.holds(leaf) {
            Ok(())
        } else {
            Err(Error::InvalidLeaf {
                leaf: u64::from(leaf.get()),
                height: self.config.height.get(),
            })
        }
    }
}

impl core::fmt::Debug for Delegation {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Delegation")
            .field("config", &self.config)
            .field("root", &self.root())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;
    use crate::device::KeySet;
    use crate::{
        Authority, Derivation, MasterSecret, PayloadKey, RevocationSet, TreeHeight, TreeId,
    };

    fn authority(scheme: Scheme, height: u8) -> Authority {
        let config = TreeConfig::new(scheme, TreeHeight::new(height).unwrap(), TreeId(9));
        Authority::with_derivation(
            &MasterSecret::from_bytes([4; 32]),
            config,
            Derivation::SeedTree,
        )
        .unwrap()
    }

    fn keys_of(set: &KeySet) -> Vec<[u8; 16]> {
        match set {
            KeySet::CompleteSubtree(keys) => keys.iter().map(|k| *k.secret_bytes()).collect(),
            KeySet::SubsetDifference { labels, all } => labels
                .iter()
                .chain([all])
                .map(|k| *k.secret_bytes())
                .collect(),
        }
    }

    /// Every subtree of small trees of both schemes: each device of the subtree gets from the
    /// delegation exactly the authority's key set; no other device gets one. Device keys are
    /// the authority's for every leaf.
    #[test]
    fn a_delegation_gives_its_devices_the_authoritys_keys_and_no_one_else() {
        for scheme in [Scheme::COMPLETE_SUBTREE, Scheme::SUBSET_DIFFERENCE] {
            for height in 1..=5u8 {
                let authority = authority(scheme, height);
                let h = TreeHeight::new(height).unwrap();
                for root in 1..(1u64 << height) {
                    let root = NodeIndex::new(root, h).unwrap();
                    let delegation = authority.delegate(root).unwrap();
                    for leaf in 0..h.leaf_count() {
                        let leaf = LeafIndex::new(u32::try_from(leaf).unwrap(), h).unwrap();
                        if root.contains(leaf.node(h)) {
                            let keys = delegation.device_keys(leaf).unwrap();
                            assert!(
                                keys == authority.device_keys(leaf),
                                "{scheme} {root} {leaf}"
                            );
                        } else {
                            assert!(delegation.device_keys(leaf).is_err());
                        }
                        assert!(delegation.device_key(leaf) == authority.device_key(leaf));
                    }
                }
            }
        }
    }

    /// What a delegation holds from above its subtree is in the key set of one of its devices:
    /// a stolen license server learns no key none of its devices holds (its seed gives values
    /// of nodes inside the subtree only).
    #[test]
    fn a_delegation_holds_nothing_beyond_its_devices_keys() {
        for scheme in [Scheme::COMPLETE_SUBTREE, Scheme::SUBSET_DIFFERENCE] {
            let authority = authority(scheme, 6);
            let h = authority.config().height;
            for root in [2u64, 3, 5, 12, 27] {
                let root = NodeIndex::new(root, h).unwrap();
                let delegation = authority.delegate(root).unwrap();
                let held: Vec<[u8; 16]> = delegation
                    .leaves()
                    .flat_map(|l| {
                        let leaf = LeafIndex::new(u32::try_from(l).unwrap(), h).unwrap();
                        keys_of(&authority.device_keys(leaf).keys)
                    })
                    .collect();
                for key in delegation.above().iter().chain(delegation.all()) {
                    assert!(held.contains(key.secret_bytes()), "{scheme} root {root}");
                }
            }
        }
    }

    /// The subtree's whole revocation: the EKB opens for every other device and for none of
    /// the subtree, whatever its delegation derives.
    #[test]
    fn a_revoked_subtree_opens_nothing_with_its_delegation() {
        for scheme in [Scheme::COMPLETE_SUBTREE, Scheme::SUBSET_DIFFERENCE] {
            let authority = authority(scheme, 7);
            let h = authority.config().height;
            let root = NodeIndex::new(6, h).unwrap();
            let delegation = authority.delegate(root).unwrap();
            let revoked = RevocationSet::from_leaves(
                h,
                delegation.leaves().map(|l| u32::try_from(l).unwrap()),
            )
            .unwrap();
            let payload = PayloadKey::from_bytes([3; 16]);
            let ekb = authority.build_ekb(&payload, &revoked, 2).unwrap();
            let ekb = crate::EkbIn::from_bytes(ekb.as_bytes())
                .unwrap()
                .verify(&authority.verifying_key())
                .unwrap();
            for leaf in 0..h.leaf_count() {
                let leaf = LeafIndex::new(u32::try_from(leaf).unwrap(), h).unwrap();
                let opened = authority.device_keys(leaf).open(&ekb);
                if delegation.holds(leaf) {
                    assert!(opened.is_err());
                    assert!(delegation.device_keys(leaf).unwrap().open(&ekb).is_err());
                } else {
                    assert!(opened.unwrap() == payload);
                }
            }
        }
    }

    #[test]
    fn flat_trees_and_leaves_are_refused() {
        let config = TreeConfig::new(
            Scheme::COMPLETE_SUBTREE,
            TreeHeight::new(8).unwrap(),
            TreeId(1),
        );
        let flat = Authority::new(&MasterSecret::from_bytes([4; 32]), config).unwrap();
        let root = NodeIndex::new(2, config.height).unwrap();
        assert_eq!(flat.delegate(root).err(), Some(Error::NotDelegable));
        let seeded = authority(Scheme::COMPLETE_SUBTREE, 8);
        let leaf_node = NodeIndex::new(256, config.height).unwrap();
        assert_eq!(
            seeded.delegate(leaf_node).err(),
            Some(Error::InvalidNode(256))
        );
        // A seed tree's keys are its own, the signing key included.
        let same_master = Authority::with_derivation(
            &MasterSecret::from_bytes([4; 32]),
            config,
            Derivation::Flat,
        )
        .unwrap();
        assert_ne!(flat.verifying_key(), seeded.verifying_key());
        assert_eq!(flat.verifying_key(), same_master.verifying_key());
        // A shape that does not match is refused.
        let d = seeded.delegate(root).unwrap();
        let short = Delegation::from_parts(
            *d.config(),
            d.root(),
            d.root_seed().clone(),
            Vec::new(),
            None,
            d.device_root().clone(),
            *d.verifying_key(),
        );
        assert!(short.is_err());
    }
}
