//! The AACS profile: Subset Difference on the 31-level tree, written as AACS Media Key Blocks
//! (MKBs) and KEYDB.cfg device keys, so that independent AACS implementations process what
//! treecast writes and treecast processes what they write.
//!
//! What AACS fixes, and this module follows (public facts from the AACS Common specification and
//! its open implementations):
//!
//! - **The tree** has 31 levels below the root (`2^31` devices). A node is named by its 32-bit
//!   [`Uv`] number: its path bits from the root, most significant first, then a terminating 1
//!   bit. A subset `S(u, v)` is written as the pair (`u_mask_shift`, `uv` of `v`) — an
//!   [`ExplicitSubset`] — where `u_mask = 0xFFFFFFFF << u_mask_shift` keeps `u`'s path bits. The
//!   root is never `u` (its shift would be 32), so [`cover`] splits the subsets of the NNL cover
//!   that start at the root.
//! - **Keys** are treecast's SD keys: labels expanded with AES-G3, the processing key of `S(u, v)`
//!   is the middle G3 output of `L(u, v)`. The Media Key Data of subset `j` is
//!   `AES-128-E(K_p, K_m ⊕ (0^96 ‖ uv_j))`; the Verify Media Key record is
//!   `AES-128-E(K_m, 0123456789ABCDEF ‖ 8 random bytes)`.
//! - **The MKB** is a run of records (see [`mkb`]); readers skip the records they do not know.
//!
//! What differs from a licensed AACS MKB: the End-of-MKB record carries treecast's own Ed25519
//! signature (over a domain label and SHA-256 of the MKB before it), not the AACS Licensing
//! Administrator's ECDSA signature — treecast holds no licensing authority's key. See
//! `docs/aacs.md`.
//!
//! ```
//! use treecast_keytree::aacs::{AacsAuthority, DeviceKeySet, Mkb};
//! use treecast_keytree::{LeafIndex, MasterSecret, PayloadKey, RevocationSet, TreeId};
//! # fn main() -> Result<(), treecast_keytree::Error> {
//! let authority = AacsAuthority::new(&MasterSecret::from_bytes([7; 32]), TreeId(1))?;
//! let media_key = PayloadKey::from_bytes([0x42; 16]);
//! let revoked = RevocationSet::from_leaves(authority.height(), [5, 6])?;
//! let mkb_bytes = authority.build_mkb(&media_key, &revoked, 1, [0; 8])?;
//!
//! // A device reads its keys from KEYDB.cfg lines and processes the MKB.
//! let keydb = authority.device_keys(LeafIndex::new(4, authority.height())?)?.to_keydb();
//! let device = DeviceKeySet::from_keydb(&keydb)?;
//! let mkb = Mkb::parse(&mkb_bytes)?;
//! assert_eq!(device.process(&mkb)?, media_key);
//!
//! // A revoked device is refused.
//! let revoked_device = authority.device_keys(LeafIndex::new(5, authority.height())?)?;
//! assert!(revoked_device.process(&mkb).is_err());
//! # Ok(()) }
//! ```

use core::fmt;

use aes::Aes128Dec;
#[cfg(feature = "authority")]
use aes::cipher::BlockCipherEncrypt;
use aes::cipher::{Array, BlockCipherDecrypt, KeyInit};
#[cfg(feature = "authority")]
use ed25519_dalek::VerifyingKey;
use subtle::ConstantTimeEq;

#[cfg(feature = "authority")]
use crate::authority::Authority;
#[cfg(feature = "authority")]
use crate::cover::Cover;
use crate::cover::{Scheme, Subset};
use crate::crypto::{self, G3};
#[cfg(feature = "authority")]
use crate::ekb::{TreeConfig, TreeId};
use crate::error::Error;
#[cfg(feature = "authority")]
use crate::revocation::RevocationSet;
#[cfg(feature = "authority")]
use crate::secret::MasterSecret;
use crate::secret::PayloadKey;
use crate::treemath::{LeafIndex, NodeIndex, TreeHeight, low_bits};

mod keydb;
pub mod mkb;

pub use keydb::{DeviceKeyEntry, DeviceKeySet, MAX_KEYDB_LEN, MAX_KEYS, ProcessingKeys};
pub use mkb::Mkb;

/// The height of the AACS tree: 31 levels below the root.
pub const HEIGHT: u8 = TreeHeight::AACS.get();

/// The AACS tree height as a [`TreeHeight`].
pub const fn height() -> TreeHeight {
    TreeHeight::AACS
}

/// A node of the AACS tree as its 32-bit `uv` number: the path bits from the root, most
/// significant first, then a terminating 1 bit, then zeros.
///
/// ```
/// use treecast_keytree::aacs::Uv;
/// use treecast_keytree::{NodeIndex, TreeHeight};
/// // The root has no path bits: the terminating 1 is the top bit.
/// assert_eq!(Uv::from_node(NodeIndex::ROOT)?.get(), 0x8000_0000);
/// // Its right child (heap index 3): path bit 1, then the terminating 1.
/// let right = NodeIndex::new(3, TreeHeight::new(31)?)?;
/// assert_eq!(Uv::from_node(right)?.get(), 0xC000_0000);
/// assert_eq!(Uv::from_node(right)?.node()?, right);
/// # Ok::<(), treecast_keytree::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct Uv(u32);

impl Uv {
    /// Wraps a raw `uv` number.
    ///
    /// # Errors
    /// [`Error::InvalidNode`] for 0, which names no node.
    pub const fn new(uv: u32) -> Result<Self, Error> {
        if uv == 0 {
            Err(Error::InvalidNode(0))
        } else {
            Ok(Self(uv))
        }
    }

    /// The `uv` number of a node of the 31-level tree.
    ///
    /// # Errors
    /// [`Error::InvalidNode`] for a node deeper than 31.
    pub const fn from_node(node: NodeIndex) -> Result<Self, Error> {
        let depth = node.depth();
        if depth > HEIGHT {
            return Err(Error::InvalidNode(node.get()));
        }
        // The node number is a 1 followed by the path bits; shift the path bits to the top and
        // put the terminating 1 below them.
        let path = node.get() ^ (1 << depth);
        Ok(Self(((path << 1 | 1) << (HEIGHT - depth)) as u32))
    }

    /// The `uv` number of a device's leaf, which AACS calls the device number (`D_node`).
    pub fn of_leaf(leaf: LeafIndex) -> Self {
        Self((leaf.get() << 1) | 1)
    }

    /// The number.
    pub const fn get(self) -> u32 {
        self.0
    }

    /// The depth of the node: 31 minus the position of the terminating bit.
    pub const fn depth(self) -> u8 {
        (HEIGHT as u32 - self.0.trailing_zeros()) as u8
    }

    /// The node, in heap order.
    ///
    /// # Errors
    /// Never for a value made by this type's constructors; kept fallible for symmetry with
    /// [`Uv::from_node`].
    pub fn node(self) -> Result<NodeIndex, Error> {
        let depth = self.depth();
        let path = (u64::from(self.0) >> (32 - depth)) & low_bits(depth);
        NodeIndex::new((1 << depth) | path, height())
    }

    /// The number of low-order zero bits of the node's mask: the terminating bit and the zeros
    /// below it. A `uv` and a device number agree on the node's path bits when they agree under
    /// `0xFFFFFFFF << mask_zero_bits`.
    pub const fn mask_zero_bits(self) -> u8 {
        (self.0.trailing_zeros() + 1) as u8
    }
}

impl fmt::Display for Uv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:08X}", self.0)
    }
}

/// One entry of the Explicit Subset-Difference record: the subset `S(u, v)` written as
/// `u_mask_shift` (the number of low-order zero bits of `u`'s mask) and `v`'s `uv` number.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub struct ExplicitSubset {
    /// `u_mask = 0xFFFFFFFF << u_mask_shift`; in `1..=31` for a well-formed entry.
    pub u_mask_shift: u8,
    /// The `uv` number of `v`.
    pub uv: u32,
}

impl ExplicitSubset {
    /// The entry for `subset`.
    ///
    /// # Errors
    /// [`Error::UnsupportedScheme`] for anything but a Subset Difference subset whose `u` is not
    /// the root; [`Error::InvalidNode`] for a node deeper than 31.
    pub fn from_subset(subset: &Subset) -> Result<Self, Error> {
        match *subset {
            Subset::Difference { u, v } if u != NodeIndex::ROOT => Ok(Self {
                u_mask_shift: 32 - u.depth(),
                uv: Uv::from_node(v)?.get(),
            }),
            _ => Err(Error::UnsupportedScheme(Scheme::SUBSET_DIFFERENCE)),
        }
    }

    /// The subset this entry names, when it is well formed: `u` below the root, `v` strictly
    /// below `u`.
    ///
    /// # Errors
    /// [`Error::InvalidNode`] otherwise.
    pub fn subset(&self) -> Result<Subset, Error> {
        let v = Uv::new(self.uv)?.node()?;
        let du = 32u8.saturating_sub(self.u_mask_shift);
        match v.ancestor(du) {
            Some(u) if du >= 1 && du < v.depth() => Ok(Subset::Difference { u, v }),
            _ => Err(Error::InvalidNode(u64::from(self.uv))),
        }
    }

    /// The AACS applicability test for the device numbered `device`: it agrees with `uv` on
    /// `u`'s path bits and disagrees on `v`'s. Entries with `uv = 0` apply to nobody.
    pub fn applies_to(&self, device: Uv) -> bool {
        let Ok(v) = Uv::new(self.uv) else {
            return false;
        };
        let u_mask = u32::MAX
            .checked_shl(u32::from(self.u_mask_shift))
            .unwrap_or(0);
        let v_mask = u32::MAX
            .checked_shl(u32::from(v.mask_zero_bits()))
            .unwrap_or(0);
        let d = device.get();
        (d & u_mask) == (self.uv & u_mask) && (d & v_mask) != (self.uv & v_mask)
    }
}

/// The cover of the AACS profile: the NNL Subset Difference cover, with each subset that starts
/// at the root split so that `u` is never the root.
///
/// `S(root, v)` becomes `S(c, v)` for the root's child `c` above `v` (unless `v = c`) and the
/// two halves `S(o, o_left)`, `S(o, o_right)` of the other child `o`; the all-leaves subset
/// becomes the four halves of the root's children. At most three subsets are added.
///
/// # Errors
/// [`Error::WrongTree`] when `revoked` is not for the 31-level tree.
#[cfg(feature = "authority")]
pub fn cover(revoked: &RevocationSet) -> Result<Vec<Subset>, Error> {
    let h = height();
    if revoked.height() != h {
        return Err(Error::WrongTree);
    }
    let cover = Cover::compute(Scheme::SUBSET_DIFFERENCE, revoked)?;
    let mut out = Vec::with_capacity(cover.len() + 3);
    let halves = |c: NodeIndex, out: &mut Vec<Subset>| {
        if let Some((l, r)) = c.children(h) {
            out.push(Subset::Difference { u: c, v: r });
            out.push(Subset::Difference { u: c, v: l });
        }
    };
    let (left, right) = NodeIndex::ROOT
        .children(h)
        .ok_or(Error::Internal("the root has children"))?;
    let mut split = false;
    for subset in cover.subsets() {
        match *subset {
            Subset::Complete(_) => {
                halves(left, &mut out);
                halves(right, &mut out);
                split = true;
            }
            Subset::Difference { u, v } if u == NodeIndex::ROOT => {
                let (c, o) = if left.contains(v) {
                    (left, right)
                } else {
                    (right, left)
                };
                if v != c {
                    out.push(Subset::Difference { u: c, v });
                }
                halves(o, &mut out);
                split = true;
            }
            other => out.push(other),
        }
    }
    if split {
        out.sort_unstable_by_key(|s| s.top().preorder_key(h));
    }
    Ok(out)
}

/// The AACS key authority: treecast's Subset Difference [`Authority`] on the 31-level tree,
/// writing MKBs and KEYDB.cfg device keys.
#[cfg(feature = "authority")]
#[derive(Clone, Debug)]
pub struct AacsAuthority {
    inner: Authority,
}

#[cfg(feature = "authority")]
impl AacsAuthority {
    /// The authority of the AACS-profile tree `tree_id`, keyed by `master`. Its keys are those of
    /// the SD tree of height 31 with the same id.
    ///
    /// # Errors
    /// [`Error::Internal`] if key derivation fails (it does not).
    pub fn new(master: &MasterSecret, tree_id: TreeId) -> Result<Self, Error> {
        let config = TreeConfig::new(Scheme::SUBSET_DIFFERENCE, height(), tree_id);
        Ok(Self {
            inner: Authority::new(master, config)?,
        })
    }

    /// The tree height, 31.
    pub fn height(&self) -> TreeHeight {
        height()
    }

    /// The key that checks this authority's End-of-MKB signatures.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.inner.verifying_key()
    }

    /// An MKB (type 3: the media key is computed directly) that gives `media_key` to every device
    /// not in `revoked`. `verify_nonce` is the 8 random bytes of the Verify Media Key record; the
    /// caller draws them, so that a seeded run is reproducible.
    ///
    /// # Errors
    /// [`Error::WrongTree`] when `revoked` is not for the 31-level tree; [`Error::TooLarge`]
    /// when the cover does not fit a record (beyond about a million subsets).
    pub fn build_mkb(
        &self,
        media_key: &PayloadKey,
        revoked: &RevocationSet,
        version: u32,
        verify_nonce: [u8; 8],
    ) -> Result<Vec<u8>, Error> {
        let subsets = cover(revoked)?;
        let mut entries = Vec::with_capacity(subsets.len());
        let mut data = Vec::with_capacity(subsets.len());
        for subset in &subsets {
            let entry = ExplicitSubset::from_subset(subset)?;
            let key = self.inner.sd_subset_key(subset)?;
            data.push(crypto::wrap(&key, u128::from(entry.uv), media_key));
            entries.push(entry);
        }
        let verify = verify_media_key_record(media_key, verify_nonce);
        mkb::write(version, &verify, &entries, &data, |signed| {
            Ok(self
                .inner
                .signer()
                .sign(&mkb::signing_message(signed))?
                .to_bytes())
        })
    }

    /// The device keys of the device at `leaf`: for every ancestor `u` below the root and every
    /// node `v` hanging off the path below `u`, the label `L(u, v)` — 465 keys.
    ///
    /// # Errors
    /// [`Error::InvalidLeaf`] for a leaf beyond `2^31`.
    pub fn device_keys(&self, leaf: LeafIndex) -> Result<DeviceKeySet, Error> {
        let h = height();
        let leaf = LeafIndex::new(leaf.get(), h)?;
        let full = self.inner.device_keys(leaf);
        let crate::device::KeySet::SubsetDifference { labels, .. } = &full.keys else {
            return Err(Error::Internal(
                "an AACS authority is a Subset Difference one",
            ));
        };
        let node = leaf.node(h);
        let path = |d: u8| NodeIndex::leaf_ancestor(leaf, h, d);
        let mut keys = Vec::with_capacity(keydb::KEY_COUNT);
        let mut labels = labels.iter();
        for du in 0..HEIGHT {
            for dv in du + 1..=HEIGHT {
                let label = labels.next().ok_or(Error::Internal("label count"))?;
                if du == 0 {
                    continue;
                }
                let v = path(dv)
                    .sibling()
                    .ok_or(Error::Internal("v is not the root"))?;
                keys.push(DeviceKeyEntry {
                    key: label.clone(),
                    uv: Uv::from_node(v)?,
                    u_mask_shift: 32 - du,
                });
            }
        }
        debug_assert!(node.depth() == HEIGHT);
        DeviceKeySet::new(Uv::of_leaf(leaf), keys)
    }
}

impl DeviceKeySet {
    /// Processes an MKB: finds the subset that applies to this device, walks the matching device
    /// key down to it with AES-G3, takes the processing key, decrypts the Media Key Data and
    /// checks the result against the Verify Media Key record.
    ///
    /// The MKB's signature is not checked here (an AACS MKB is signed by a key treecast does not
    /// hold): call [`Mkb::verify`] first for treecast's own MKBs. The media key is trusted only
    /// because it passes the Verify Media Key record.
    ///
    /// # Errors
    /// [`Error::Revoked`] when no subset applies to this device, or this key set holds no key
    /// for the one that does; [`Error::UnwrapFailed`] when the recovered key fails the Verify
    /// Media Key record; [`Error::Decode`] when a record the processing needs is missing or
    /// the applicable entry is malformed.
    pub fn process(&self, mkb: &Mkb<'_>) -> Result<PayloadKey, Error> {
        let index = self.applicable(mkb)?;
        let entry = mkb.subset(index)?;
        let subset = entry.subset()?;
        let Subset::Difference { v, .. } = subset else {
            return Err(Error::Internal("an explicit subset is a difference"));
        };
        let start = self.key_for(&entry).ok_or(Error::Revoked)?;
        let steps = v.depth() - start.uv.depth();
        let l_uv = crypto::g3_descend(start.key.clone(), v.get() & low_bits(steps), steps);
        let processing_key = crypto::g3(&l_uv, G3::Key);
        let data = mkb.media_key_data(index)?;
        let media_key = crypto::unwrap(&processing_key, u128::from(entry.uv), &data);
        let verify =
            mkb.verify_media_key()
                .ok_or(Error::Decode(crate::DecodeError::MissingData(
                    "Verify Media Key record",
                )))?;
        if verifies_media_key(&media_key, &verify) {
            Ok(media_key)
        } else {
            Err(Error::UnwrapFailed)
        }
    }

    /// The index of the entry that applies to this device. Entries written in preorder of `u`
    /// (as treecast writes them) are found with two binary searches; otherwise, or when that
    /// finds nothing, by the linear scan an AACS player does.
    fn applicable(&self, mkb: &Mkb<'_>) -> Result<usize, Error> {
        let device = self.device_number();
        let h = height();
        let leaf = device.node()?;
        let top = |i: usize| -> Result<NodeIndex, Error> { Ok(mkb.subset(i)?.subset()?.top()) };
        if let Ok(i) = crate::device::find_in_preorder(mkb.subset_count(), top, leaf, h)
            && mkb.subset(i)?.applies_to(device)
        {
            return Ok(i);
        }
        mkb.subsets()
            .position(|e| e.applies_to(device))
            .ok_or(Error::Revoked)
    }

    /// The stored key from which `entry`'s processing key is reached: the one for the same `u`
    /// whose `v` is `entry`'s `v` or above it.
    fn key_for(&self, entry: &ExplicitSubset) -> Option<&DeviceKeyEntry> {
        self.keys().iter().find(|k| {
            let mask = u32::MAX
                .checked_shl(u32::from(k.uv.mask_zero_bits()))
                .unwrap_or(0);
            k.u_mask_shift == entry.u_mask_shift
                && (entry.uv & mask) == (k.uv.get() & mask)
                && k.uv.depth() <= Uv(entry.uv).depth()
        })
    }
}

impl ProcessingKeys {
    /// The media key of `mkb`, from a processing key instead of device keys, as libaacs does
    /// with published `| PK |` lines: each key is tried on each subset's Media Key Data entry,
    /// `K_m = AES-128-D(K_p, C) ⊕ (0^96 ‖ uv)`, and the first that passes the Verify Media Key
    /// record is the media key. At most `keys × subsets` AES operations
    /// ([`MAX_KEYS`](crate::aacs::MAX_KEYS) keys).
    ///
    /// # Errors
    /// [`Error::UnwrapFailed`] when no key opens any entry; [`Error::Decode`] when the MKB lacks
    /// the Verify Media Key record or an entry.
    pub fn process(&self, mkb: &Mkb<'_>) -> Result<PayloadKey, Error> {
        let verify =
            mkb.verify_media_key()
                .ok_or(Error::Decode(crate::DecodeError::MissingData(
                    "Verify Media Key record",
                )))?;
        for index in 0..mkb.subset_count() {
            let entry = mkb.subset(index)?;
            let data = mkb.media_key_data(index)?;
            for key in self.keys() {
                let media_key = crypto::unwrap(key, u128::from(entry.uv), &data);
                if verifies_media_key(&media_key, &verify) {
                    return Ok(media_key);
                }
            }
        }
        Err(Error::UnwrapFailed)
    }
}

/// The Verify Media Key record: `AES-128-E(K_m, 0123456789ABCDEF ‖ nonce)`.
#[cfg(feature = "authority")]
fn verify_media_key_record(media_key: &PayloadKey, nonce: [u8; 8]) -> [u8; 16] {
    let cipher = aes::Aes128Enc::new(media_key.secret_bytes().into());
    let mut block = [0u8; 16];
    block[..8].copy_from_slice(&VERIFY_SENTINEL);
    block[8..].copy_from_slice(&nonce);
    let mut block = Array::from(block);
    cipher.encrypt_block(&mut block);
    block.into()
}

/// Whether `media_key` decrypts the Verify Media Key record to the sentinel, in constant time.
fn verifies_media_key(media_key: &PayloadKey, record: &[u8; 16]) -> bool {
    let cipher = Aes128Dec::new(media_key.secret_bytes().into());
    let mut block = Array::from(*record);
    cipher.decrypt_block(&mut block);
    let ok = block
        .get(..8)
        .is_some_and(|b| b.ct_eq(&VERIFY_SENTINEL).into());
    block.fill(0);
    ok
}

/// The first half of a Verify Media Key record's plaintext.
const VERIFY_SENTINEL: [u8; 8] = [0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF];

#[cfg(all(test, feature = "authority"))]
mod tests;
