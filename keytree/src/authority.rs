//! The authority: derives every key of a tree on demand from one master secret and builds signed
//! EKBs.

use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::cover::{Cover, Scheme, Subset};
use crate::crypto::{self, Prf};
use crate::device::{DeviceKeys, KeySet};
use crate::ekb::{self, EkbHeader, Profile, SignedEkb, TreeConfig};
use crate::error::Error;
use crate::revocation::RevocationSet;
use crate::secret::{DeviceKey, MasterSecret, NodeKey, PayloadKey};
use crate::treemath::{LeafIndex, NodeIndex};

/// The key authority of one tree.
///
/// It keeps no per-node state: a node key is `AES-128(K_node, node)`, a device key is
/// `AES-128(K_device, leaf)`, where `K_node` and `K_device` are derived from the master secret with
/// HKDF-SHA-256 for this tree and purpose. The EKB signing key is derived the same way. Cloning
/// is cheap enough to hand one to each thread.
#[derive(Clone)]
pub struct Authority {
    config: TreeConfig,
    node_prf: Prf,
    device_prf: Prf,
    signing_key: SigningKey,
}

impl Authority {
    /// The authority of the tree `config`, keyed by `master`.
    ///
    /// # Errors
    /// [`Error::UnsupportedScheme`] for a scheme this version cannot run.
    pub fn new(master: &MasterSecret, config: TreeConfig) -> Result<Self, Error> {
        if config.scheme != Scheme::COMPLETE_SUBTREE {
            return Err(Error::UnsupportedScheme(config.scheme));
        }
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        crypto::expand(master, &info(b"ekb-signing", &config), seed.as_mut_slice());
        Ok(Self {
            config,
            node_prf: Prf::derive(master, &info(b"cs-node", &config)),
            device_prf: Prf::derive(master, &info(b"device", &config)),
            signing_key: SigningKey::from_bytes(&seed),
        })
    }

    /// The tree's public parameters.
    pub fn config(&self) -> &TreeConfig {
        &self.config
    }

    /// The key devices verify EKBs with.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing_key.verifying_key()
    }

    /// The key set of the device at `leaf`: its h+1 path keys and its device key.
    pub fn device_keys(&self, leaf: LeafIndex) -> DeviceKeys {
        let h = self.config.height.get();
        let keys = (0..=h)
            .map(|d| self.node_key(NodeIndex::leaf_ancestor(leaf, self.config.height, d)))
            .collect();
        DeviceKeys::new(
            self.config,
            leaf,
            KeySet::CompleteSubtree(keys),
            self.device_key(leaf),
        )
    }

    /// The device key of the device at `leaf`, for binding a license to it.
    pub fn device_key(&self, leaf: LeafIndex) -> DeviceKey {
        DeviceKey::from_bytes(self.device_prf.eval(u128::from(leaf.get())))
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
        ekb::assemble(header, verification, &self.signing_key, |out| {
            self.write_entries(out, cover.subsets(), payload)
        })
    }

    /// Derives each subset's key and appends its entry. Node keys are derived in batches so that
    /// the AES pipeline stays full.
    fn write_entries(
        &self,
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
            self.node_prf.eval_many(blocks);
            for ((block, subset), tweak) in blocks.iter_mut().zip(chunk).zip(tweaks.iter()) {
                let key = NodeKey::from_bytes(*block);
                block.fill(0);
                let wrapped = crypto::wrap(&key, *tweak, payload);
                ekb::encode_entry(out, subset, &wrapped);
            }
        }
        Ok(())
    }

    fn node_key(&self, node: NodeIndex) -> NodeKey {
        NodeKey::from_bytes(self.node_prf.eval(u128::from(node.get())))
    }
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
fn info(purpose: &[u8], config: &TreeConfig) -> Vec<u8> {
    let mut info = Vec::with_capacity(INFO_PREFIX.len() + purpose.len() + 10);
    info.extend_from_slice(INFO_PREFIX);
    info.extend_from_slice(purpose);
    info.extend_from_slice(&config.tree_id.0.to_be_bytes());
    info.push(config.scheme.0);
    info.push(config.height.get());
    info
}

const INFO_PREFIX: &[u8] = b"treecast/v1/";
const BATCH: usize = 16;
