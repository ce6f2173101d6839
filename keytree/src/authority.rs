//! The authority: derives every key of a tree on demand from one master secret and builds signed
//! EKBs.

use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::cover::{Cover, Scheme, Subset};
use crate::crypto::{self, G3, Prf};
use crate::delegation::Delegation;
use crate::derivation::{Derivation, Seeds, Walker};
use crate::device::{DeviceKeys, KeySet};
use crate::ekb::{self, EkbHeader, Profile, SignedEkb, TreeConfig};
use crate::error::Error;
use crate::revocation::RevocationSet;
use crate::secret::{DeviceKey, DistributorSecret, MasterSecret, NodeKey, PayloadKey};
use crate::signer::{ExternalSigner, Signer};
use crate::treemath::{LeafIndex, NodeIndex, TreeHeight, low_bits, sd_label_count};

/// The key authority of one tree.
///
/// It keeps no per-node state: a node key is `AES-128(K_node, node)`, a device key is
/// `AES-128(K_device, leaf)`, where `K_node` and `K_device` are derived from the master secret with
/// HKDF-SHA-256 for this tree and purpose. The EKB signing key is derived the same way. Cloning
/// is cheap enough to hand one to each thread.
///
/// ```
/// use treecast_keytree::{Authority, EkbIn, LeafIndex, MasterSecret, PayloadKey, RevocationSet};
/// use treecast_keytree::{Scheme, TreeConfig, TreeHeight, TreeId};
/// # fn main() -> Result<(), treecast_keytree::Error> {
/// let config = TreeConfig::new(Scheme::SUBSET_DIFFERENCE, TreeHeight::new(20)?, TreeId(1));
/// let authority = Authority::new(&MasterSecret::from_bytes([1; 32]), config)?;
/// // Revoke leaf 9; every other device gets the payload of epoch 2.
/// let revoked = RevocationSet::from_leaves(config.height, [9])?;
/// let payload = PayloadKey::from_bytes([5; 16]);
/// let ekb = authority.build_ekb(&payload, &revoked, 2)?;
/// let ekb = EkbIn::from_bytes(ekb.as_bytes())?.verify(&authority.verifying_key())?;
/// let device = authority.device_keys(LeafIndex::new(8, config.height)?);
/// assert_eq!(device.open(&ekb)?, payload);
/// let revoked_device = authority.device_keys(LeafIndex::new(9, config.height)?);
/// assert!(revoked_device.open(&ekb).is_err());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Authority {
    config: TreeConfig,
    derivation: Derivation,
    keys: SchemeKeys,
    /// The key of the device-key PRF, kept to hand on to delegations.
    device_root: NodeKey,
    device_prf: Prf,
    epoch_prf: Prf,
    signer: Signer,
    distributor: DistributorSecret,
}

/// Where node values come from (`derivation.rs`). Not boxed: one a tree, and the flat
/// variant's inline key schedule is what its hot path reads.
#[derive(Clone)]
#[allow(
    clippy::large_enum_variant,
    reason = "one a tree; the flat variant is the hot one"
)]
enum Values {
    /// `AES-128(K, node)`.
    Flat(Prf),
    /// Down the seed tree from the root's seed.
    Seeds(Seeds),
}

impl Values {
    fn value(&self, node: NodeIndex) -> NodeKey {
        match self {
            Self::Flat(prf) => NodeKey::from_bytes(prf.eval(u128::from(node.get()))),
            Self::Seeds(seeds) => seeds.value(node),
        }
    }
}

/// The scheme's root of derivation.
#[derive(Clone)]
enum SchemeKeys {
    /// Node keys: the node values.
    CompleteSubtree { node: Values },
    /// Labels: the value of each inner node `u` is `L(u, u)`, expanded with AES-G3; plus the
    /// key of the all-leaves subset.
    SubsetDifference { label: Values, all: NodeKey },
}

impl Authority {
    /// The authority of the tree `config`, keyed by `master`, of the first derivation
    /// ([`Derivation::Flat`]).
    ///
    /// # Errors
    /// [`Error::UnsupportedScheme`] for a scheme this version cannot run.
    pub fn new(master: &MasterSecret, config: TreeConfig) -> Result<Self, Error> {
        Self::with_derivation(master, config, Derivation::Flat)
    }

    /// The authority of the tree `config`, keyed by `master`, deriving node values by
    /// `derivation`. A seed-tree authority's every key (the signing key, the distributor
    /// secret, the epoch keys included) differs from the flat one's of the same master secret:
    /// its HKDF purposes are of their own.
    ///
    /// # Errors
    /// [`Error::UnsupportedScheme`] for a scheme this version cannot run.
    pub fn with_derivation(
        master: &MasterSecret,
        config: TreeConfig,
        derivation: Derivation,
    ) -> Result<Self, Error> {
        let info = |purpose: &[u8]| info(purpose, &config, derivation);
        let values = |purpose: &[u8]| -> Result<Values, Error> {
            Ok(match derivation {
                Derivation::Flat => Values::Flat(Prf::derive(master, &info(purpose))?),
                Derivation::SeedTree => {
                    let mut seed = zeroize::Zeroizing::new([0u8; 16]);
                    crypto::expand(master, &info(b"seed-root"), seed.as_mut_slice())?;
                    Values::Seeds(Seeds::new(NodeIndex::ROOT, NodeKey::from_bytes(*seed)))
                }
            })
        };
        let keys = match config.scheme {
            Scheme::COMPLETE_SUBTREE => SchemeKeys::CompleteSubtree {
                node: values(b"cs-node")?,
            },
            Scheme::SUBSET_DIFFERENCE => {
                let mut bytes = zeroize::Zeroizing::new([0u8; 16]);
                crypto::expand(master, &info(b"sd-all"), bytes.as_mut_slice())?;
                let all = NodeKey::from_bytes(*bytes);
                SchemeKeys::SubsetDifference {
                    label: values(b"sd-label")?,
                    all,
                }
            }
            other => return Err(Error::UnsupportedScheme(other)),
        };
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        crypto::expand(master, &info(b"ekb-signing"), seed.as_mut_slice())?;
        let mut distributor = zeroize::Zeroizing::new([0u8; 32]);
        crypto::expand(master, &info(b"distributor"), distributor.as_mut_slice())?;
        let mut device = zeroize::Zeroizing::new([0u8; 16]);
        crypto::expand(master, &info(b"device"), device.as_mut_slice())?;
        let device_root = NodeKey::from_bytes(*device);
        Ok(Self {
            config,
            derivation,
            keys,
            device_prf: Prf::from_key(&device_root),
            device_root,
            epoch_prf: Prf::derive(master, &info(b"epoch-key"))?,
            signer: Signer::Derived(SigningKey::from_bytes(&seed)),
            distributor: DistributorSecret::from_bytes(*distributor),
        })
    }

    /// How this tree's node values are derived.
    pub const fn derivation(&self) -> Derivation {
        self.derivation
    }

    /// The distributor's secret for this tree (HKDF purpose `distributor`): what the licensing
    /// layer derives its storage and registry keys from. No EKB and no device key set contains
    /// it or anything it can be computed from.
    pub fn distributor_secret(&self) -> &DistributorSecret {
        &self.distributor
    }

    /// The tree's public parameters.
    pub fn config(&self) -> &TreeConfig {
        &self.config
    }

    /// The key devices verify EKBs with.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.signer.verifying_key()
    }

    /// The key set of the device at `leaf`, and its device key.
    ///
    /// Complete Subtree: the h+1 keys of the nodes on its path. Subset Difference: for every
    /// ancestor `u` and every node `v` hanging off the path below `u`, the label `L(u, v)`
    /// (h(h+1)/2 labels), plus the all-leaves key.
    pub fn device_keys(&self, leaf: LeafIndex) -> DeviceKeys {
        let height = self.config.height;
        let h = height.get();
        let path = |d: u8| NodeIndex::leaf_ancestor(leaf, height, d);
        let keys = match &self.keys {
            SchemeKeys::CompleteSubtree { node } => KeySet::CompleteSubtree(match node {
                Values::Flat(_) => (0..=h).map(|d| node.value(path(d))).collect(),
                Values::Seeds(seeds) => seeds.path_values(leaf.node(height)),
            }),
            SchemeKeys::SubsetDifference { label, all } => {
                let tops: Vec<NodeKey> = match label {
                    Values::Flat(_) => (0..h).map(|d| label.value(path(d))).collect(),
                    Values::Seeds(seeds) => {
                        let mut values = seeds.path_values(leaf.node(height));
                        values.truncate(usize::from(h));
                        values
                    }
                };
                let mut labels = Vec::with_capacity(sd_label_count(h));
                // By reference: keys moved out of the vector would leave their bytes behind in
                // its freed buffer.
                for (d, top) in (0..h).zip(&tops) {
                    sd_labels_below(&mut labels, top.clone(), leaf, height, d + 1);
                }
                KeySet::SubsetDifference {
                    labels,
                    all: all.clone(),
                }
            }
        };
        DeviceKeys::new(self.config, leaf, keys, self.device_key(leaf))
    }

    /// The key material of the subtree rooted at `root`, for a license server that registers
    /// the subtree's devices without the master secret (`delegation.rs`).
    ///
    /// # Errors
    /// [`Error::NotDelegable`] for a tree of the flat derivation; [`Error::InvalidNode`] for a
    /// root that is not an inner node of the tree.
    pub fn delegate(&self, root: NodeIndex) -> Result<Delegation, Error> {
        let height = self.config.height;
        let root = NodeIndex::new(root.get(), height)?;
        if root.depth() >= height.get() {
            return Err(Error::InvalidNode(root.get()));
        }
        let Values::Seeds(seeds) = self.values() else {
            return Err(Error::NotDelegable);
        };
        let k = root.depth();
        let ancestor = |d: u8| root.ancestor(d).ok_or(Error::Internal("ancestor"));
        let mut above = Vec::with_capacity(Delegation::above_count(self.config.scheme, k)?);
        let all = match &self.keys {
            SchemeKeys::CompleteSubtree { node } => {
                for d in 0..k {
                    above.push(node.value(ancestor(d)?));
                }
                None
            }
            SchemeKeys::SubsetDifference { label, all } => {
                for d in 0..k {
                    // L(u, u), walked down to r: the labels off the path on the way, then
                    // both of r's children; L(u, r) itself is dropped.
                    let mut current = label.value(ancestor(d)?);
                    for e in d + 1..=k {
                        let (toward, off) = if ancestor(e)?.get() & 1 == 0 {
                            (G3::Left, G3::Right)
                        } else {
                            (G3::Right, G3::Left)
                        };
                        above.push(crypto::g3(&current, off));
                        current = crypto::g3(&current, toward);
                    }
                    above.push(crypto::g3(&current, G3::Left));
                    above.push(crypto::g3(&current, G3::Right));
                }
                Some(all.clone())
            }
        };
        Delegation::from_parts(
            self.config,
            root,
            seeds.seed(root),
            above,
            all,
            self.device_root.clone(),
            self.verifying_key(),
        )
    }

    /// The payload key of key epoch `epoch`, for a distributor that sends one key per epoch:
    /// `AES-128(K_epoch, epoch)`, `K_epoch` from HKDF (purpose `epoch-key`), so nothing per epoch
    /// needs storing.
    pub fn epoch_key(&self, epoch: u64) -> PayloadKey {
        PayloadKey::from_bytes(self.epoch_prf.eval(u128::from(epoch)))
    }

    /// The device key of the device at `leaf`, for binding a license to it.
    pub fn device_key(&self, leaf: LeafIndex) -> DeviceKey {
        DeviceKey::from_bytes(self.device_prf.eval(u128::from(leaf.get())))
    }

    /// The node values of this tree's scheme.
    fn values(&self) -> &Values {
        match &self.keys {
            SchemeKeys::CompleteSubtree { node } => node,
            SchemeKeys::SubsetDifference { label, .. } => label,
        }
    }

    /// An EKB that gives `payload` to every leaf not in `revoked`, for key epoch `epoch`.
    ///
    /// # Errors
    /// [`Error::WrongTree`] when `revoked` is for a tree of another height.
    pub fn build_ekb(
        &self,
        payload: &PayloadKey,
        revoked: &RevocationSet,
        epoch: u64,
    ) -> Result<SignedEkb, Error> {
        if revoked.height() != self.config.height {
            return Err(Error::WrongTree);
        }
        let cover = Cover::compute(self.config.scheme, revoked)?;
        self.build_ekb_for_cover(payload, &cover, epoch)
    }

    /// An EKB that gives `payload` to the subsets of `cover`, for key epoch `epoch`.
    ///
    /// # Errors
    /// [`Error::WrongTree`] when the cover is for another scheme or height;
    /// [`Error::TooLarge`] beyond [`ekb::MAX_SUBSETS`] subsets.
    pub fn build_ekb_for_cover(
        &self,
        payload: &PayloadKey,
        cover: &Cover,
        epoch: u64,
    ) -> Result<SignedEkb, Error> {
        if cover.scheme() != self.config.scheme || cover.height() != self.config.height {
            return Err(Error::WrongTree);
        }
        let subset_count = u32::try_from(cover.len())
            .ok()
            .filter(|&n| n <= ekb::MAX_SUBSETS)
            .ok_or(Error::TooLarge("subset count"))?;
        let header = EkbHeader {
            config: self.config,
            profile: Profile::NATIVE,
            epoch,
            subset_count,
        };
        let verification = crypto::verification_value(payload, epoch);
        ekb::assemble(header, verification, &self.signer, |out| {
            self.write_entries(out, cover.subsets(), payload)
        })
    }

    /// Derives each subset's key and appends its entry.
    fn write_entries(
        &self,
        out: &mut Vec<u8>,
        subsets: &[Subset],
        payload: &PayloadKey,
    ) -> Result<(), Error> {
        let scheme = self.config.scheme;
        match &self.keys {
            SchemeKeys::CompleteSubtree {
                node: Values::Flat(node),
            } => write_cs_entries(node, out, subsets, payload),
            SchemeKeys::CompleteSubtree {
                node: Values::Seeds(seeds),
            } => {
                // A cover's subsets come in preorder: the walker shares each path's prefix.
                let mut walker = Walker::new(seeds);
                for subset in subsets {
                    let Subset::Complete(node) = *subset else {
                        return Err(Error::Internal("difference subset in a CS cover"));
                    };
                    let key = walker.value(node);
                    let wrapped = crypto::wrap(&key, ekb::subset_tweak(subset), payload);
                    ekb::encode_entry(out, scheme, subset, &wrapped);
                }
                Ok(())
            }
            SchemeKeys::SubsetDifference { label, all } => {
                let mut walker = match label {
                    Values::Seeds(seeds) => Some(Walker::new(seeds)),
                    Values::Flat(_) => None,
                };
                for subset in subsets {
                    let key = sd_subset_key(label, walker.as_mut(), all, subset)?;
                    let wrapped = crypto::wrap(&key, ekb::subset_tweak(subset), payload);
                    ekb::encode_entry(out, scheme, subset, &wrapped);
                }
                Ok(())
            }
        }
    }

    /// The key of one subset of either scheme (tracing wraps its queries with it).
    pub(crate) fn subset_key(&self, subset: &Subset) -> Result<NodeKey, Error> {
        match &self.keys {
            SchemeKeys::CompleteSubtree { node } => match *subset {
                Subset::Complete(n) => Ok(node.value(n)),
                Subset::Difference { .. } => {
                    Err(Error::Internal("difference subset in a CS cover"))
                }
            },
            SchemeKeys::SubsetDifference { label, all } => sd_subset_key(label, None, all, subset),
        }
    }

    /// The key of one Subset Difference subset (the AACS processing key), for the AACS profile.
    pub(crate) fn sd_subset_key(&self, subset: &Subset) -> Result<NodeKey, Error> {
        match &self.keys {
            SchemeKeys::SubsetDifference { label, all } => sd_subset_key(label, None, all, subset),
            SchemeKeys::CompleteSubtree { .. } => Err(Error::UnsupportedScheme(self.config.scheme)),
        }
    }

    /// The key that signs this tree's EKBs (and, in the AACS profile, its MKBs).
    pub(crate) const fn signer(&self) -> &Signer {
        &self.signer
    }

    /// Signs a statement of the license servers' keys (issue 29): `message` must start with
    /// [`SERVER_KEYS_LABEL`](crate::SERVER_KEYS_LABEL), the one domain besides EKBs, MKBs
    /// and tracing evidence that the authority's key signs, so that no other message can be
    /// signed through it.
    ///
    /// # Errors
    /// [`Error::Signer`] for a message of another domain, or from a key in a token.
    pub fn sign_server_keys(&self, message: &[u8]) -> Result<[u8; 64], Error> {
        if !message.starts_with(crate::SERVER_KEYS_LABEL) {
            return Err(Error::Signer(
                "the authority signs server key lists only under their label".into(),
            ));
        }
        Ok(self.signer.sign(message)?.to_bytes())
    }

    /// This authority, signing with `signer` (a key in a token, issue 29) rather than the key
    /// derived from the master secret. Its verifying key, and so the key fingerprint a registry
    /// is bound to, is then `signer`'s.
    #[must_use]
    pub fn with_signer(mut self, signer: std::sync::Arc<dyn ExternalSigner>) -> Self {
        self.signer = Signer::External(signer);
        self
    }

    /// **Hazardous**: the raw key of every subset of `cover`, in its order. Anyone holding one
    /// opens every EKB that lists its subset. For benchmarks and interoperability tests.
    ///
    /// # Errors
    /// [`Error::WrongTree`] when the cover is for another scheme or height.
    #[cfg(feature = "hazmat")]
    pub fn hazmat_subset_keys(&self, cover: &Cover) -> Result<Vec<NodeKey>, Error> {
        if cover.scheme() != self.config.scheme || cover.height() != self.config.height {
            return Err(Error::WrongTree);
        }
        cover.subsets().iter().map(|s| self.subset_key(s)).collect()
    }
}

/// The key of one Subset Difference subset: `G3_key(L(u, v))`, where `L(u, v)` is `L(u, u)`
/// walked down to `v` with AES-G3; the all-leaves subset has its own key.
fn sd_subset_key(
    label: &Values,
    walker: Option<&mut Walker<'_>>,
    all: &NodeKey,
    subset: &Subset,
) -> Result<NodeKey, Error> {
    match *subset {
        Subset::Difference { u, v } => {
            let steps = v.depth() - u.depth();
            let top = match walker {
                Some(walker) => walker.value(u),
                None => label.value(u),
            };
            let l_uv = crypto::g3_descend(top, v.get() & low_bits(steps), steps);
            Ok(crypto::g3(&l_uv, G3::Key))
        }
        Subset::Complete(NodeIndex::ROOT) => Ok(all.clone()),
        _ => Err(Error::Internal("complete subtree in an SD cover")),
    }
}

/// Appends to `labels` the Subset Difference labels `L(u, v)` a device at `leaf` holds from
/// the ancestor `u` whose label is `current` = `L(u, w)`, `w` the path's node at depth
/// `from - 1`: for each depth `e` from `from` down to the leaf, the label of the node hanging
/// off the path there.
pub(crate) fn sd_labels_below(
    labels: &mut Vec<NodeKey>,
    current: NodeKey,
    leaf: LeafIndex,
    height: TreeHeight,
    from: u8,
) {
    let h = height.get();
    let mut current = current;
    for e in from..=h {
        let (toward_leaf, off_path) = if NodeIndex::leaf_ancestor(leaf, height, e).get() & 1 == 0 {
            (G3::Left, G3::Right)
        } else {
            (G3::Right, G3::Left)
        };
        labels.push(crypto::g3(&current, off_path));
        if e < h {
            current = crypto::g3(&current, toward_leaf);
        }
    }
}

/// Complete Subtree entries: node keys are derived in batches so that the AES pipeline stays
/// full.
fn write_cs_entries(
    node: &Prf,
    out: &mut Vec<u8>,
    subsets: &[Subset],
    payload: &PayloadKey,
) -> Result<(), Error> {
    let mut blocks = [[0u8; 16]; BATCH];
    for chunk in subsets.chunks(BATCH) {
        let blocks = blocks
            .get_mut(..chunk.len())
            .ok_or(Error::Internal("batch size"))?;
        let mut tweaks = [0u128; BATCH];
        for ((block, subset), tweak) in blocks.iter_mut().zip(chunk).zip(tweaks.iter_mut()) {
            *tweak = ekb::subset_tweak(subset);
            *block = tweak.to_be_bytes();
        }
        node.eval_many(blocks);
        for ((block, subset), tweak) in blocks.iter_mut().zip(chunk).zip(tweaks.iter()) {
            let key = NodeKey::from_bytes(*block);
            block.fill(0);
            let wrapped = crypto::wrap(&key, *tweak, payload);
            ekb::encode_entry(out, Scheme::COMPLETE_SUBTREE, subset, &wrapped);
        }
    }
    Ok(())
}

impl core::fmt::Debug for Authority {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Authority")
            .field("config", &self.config)
            .field("verifying_key", &self.verifying_key())
            .finish_non_exhaustive()
    }
}

/// The HKDF info for one purpose of one tree: label, tree id, scheme and height.
fn info(purpose: &[u8], config: &TreeConfig, derivation: Derivation) -> Vec<u8> {
    let mut info = Vec::with_capacity(INFO_PREFIX.len() + purpose.len() + 10);
    info.extend_from_slice(match derivation {
        Derivation::Flat => INFO_PREFIX,
        Derivation::SeedTree => SEED_TREE_INFO_PREFIX,
    });
    info.extend_from_slice(purpose);
    info.extend_from_slice(&config.tree_id.0.to_be_bytes());
    info.push(config.scheme.0);
    info.push(config.height.get());
    info
}

const INFO_PREFIX: &[u8] = b"treecast/v1/";
/// The HKDF purposes of seed-tree trees: every key of such a tree is its own.
const SEED_TREE_INFO_PREFIX: &[u8] = b"treecast/v2/";
const BATCH: usize = 16;
