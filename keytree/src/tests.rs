//! Property tests of covers and EKBs across the crate's modules.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests fail loudly by design"
)]

use proptest::prelude::*;

use crate::crypto;
use crate::device::KeySet;
use crate::ekb::{self, EkbIn};
use crate::*;

/// The minimal Complete Subtree cover by brute force over the whole tree: a node is in the cover
/// iff no revoked leaf is under it and its parent has one.
fn brute_force_cs(revoked: &RevocationSet) -> Vec<Subset> {
    fn walk(node: NodeIndex, revoked: &RevocationSet, out: &mut Vec<Subset>) {
        let h = revoked.height();
        let range = node.leaf_range(h).unwrap();
        let any = revoked.iter().any(|l| range.contains(&u64::from(l.get())));
        if !any {
            out.push(Subset::Complete(node));
        } else if let Some((l, r)) = node.children(h) {
            walk(l, revoked, out);
            walk(r, revoked, out);
        }
    }
    let mut out = Vec::new();
    walk(NodeIndex::ROOT, revoked, &mut out);
    out
}

fn authority(height: TreeHeight) -> Authority {
    let config = TreeConfig::new(Scheme::COMPLETE_SUBTREE, height, TreeId(42));
    Authority::new(&MasterSecret::from_bytes([3; 32]), config).unwrap()
}

/// A height and a revoked set: sparse random sets on trees up to height 12, and dense ones
/// (each leaf with probability 1/2, including none and all) on trees up to height 8.
fn tree_and_revoked() -> impl Strategy<Value = RevocationSet> {
    (1u8..=12).prop_flat_map(|h| {
        let height = TreeHeight::new(h).unwrap();
        let n = height.leaf_count();
        let sparse = proptest::collection::btree_set(0..n as u32, 0..=(n as usize).min(48))
            .prop_map(move |s| RevocationSet::from_leaves(height, s).unwrap());
        if h <= 8 {
            let dense =
                proptest::collection::vec(any::<bool>(), n as usize).prop_map(move |bits| {
                    let leaves = bits
                        .iter()
                        .enumerate()
                        .filter(|(_, b)| **b)
                        .map(|(i, _)| i as u32);
                    RevocationSet::from_leaves(height, leaves).unwrap()
                });
            let extremes = prop_oneof![
                Just(RevocationSet::new(height)),
                Just(RevocationSet::from_leaves(height, 0..n as u32).unwrap()),
            ];
            prop_oneof![3 => sparse, 2 => dense, 1 => extremes].boxed()
        } else {
            sparse.boxed()
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn cs_cover_is_the_exact_minimum(revoked in tree_and_revoked()) {
        let h = revoked.height();
        let cover = Cover::compute(Scheme::COMPLETE_SUBTREE, &revoked).unwrap();
        // Same subsets, same order, as the brute-force minimum.
        let expected = brute_force_cs(&revoked);
        prop_assert_eq!(cover.subsets(), expected.as_slice());
        // Disjoint, sorted, and the union is exactly the non-revoked leaves.
        let mut next = 0u64;
        let mut covered = 0u64;
        for s in cover.subsets() {
            let Subset::Complete(n) = s else { panic!("not a complete subtree") };
            let range = n.leaf_range(h).unwrap();
            prop_assert!(range.start >= next, "overlap or out of order");
            for leaf in next..range.start {
                prop_assert!(revoked.contains(leaf as u32), "leaf {} uncovered", leaf);
            }
            for leaf in range.clone() {
                prop_assert!(!revoked.contains(leaf as u32), "revoked leaf {} covered", leaf);
            }
            covered += range.end - range.start;
            next = range.end;
        }
        for leaf in next..h.leaf_count() {
            prop_assert!(revoked.contains(leaf as u32));
        }
        prop_assert_eq!(covered + revoked.len() as u64, h.leaf_count());
        // The NNL bound r·log2(N/r) for 0 < r < N.
        let r = revoked.len() as f64;
        if r > 0.0 && !revoked.is_full() {
            prop_assert!(cover.len() as f64 <= r * (h.leaf_count() as f64 / r).log2() + 1e-9);
        }
    }

    #[test]
    fn every_device_opens_or_is_refused(revoked in tree_and_revoked(), epoch in any::<u64>()) {
        let h = revoked.height();
        let auth = authority(h);
        let payload = PayloadKey::from_bytes([0x5a; 16]);
        let signed = auth.build_ekb(&payload, &revoked, epoch).unwrap();
        let ekb = EkbIn::from_bytes(signed.as_bytes()).unwrap().verify(&auth.verifying_key()).unwrap();
        for leaf in 0..h.leaf_count() as u32 {
            let device = auth.device_keys(LeafIndex::new(leaf, h).unwrap());
            let got = device.open(&ekb);
            if revoked.contains(leaf) {
                prop_assert_eq!(got, Err(Error::Revoked), "revoked leaf {} opened", leaf);
            } else {
                prop_assert!(got == Ok(payload.clone()), "leaf {} failed: {:?}", leaf, got);
            }
        }
    }

    /// Every key held by any revoked device, tried against every entry: none unwraps to a key
    /// that passes the verification value.
    #[test]
    fn coalition_of_revoked_devices_opens_nothing(revoked in tree_and_revoked()) {
        let h = revoked.height();
        let auth = authority(h);
        let payload = PayloadKey::from_bytes([0xa5; 16]);
        let signed = auth.build_ekb(&payload, &revoked, 9).unwrap();
        let ekb = EkbIn::from_bytes(signed.as_bytes()).unwrap().verify(&auth.verifying_key()).unwrap();
        let mut keys: Vec<NodeKey> = Vec::new();
        for leaf in revoked.iter() {
            let d = auth.device_keys(leaf);
            let KeySet::CompleteSubtree(path) = &d.keys;
            keys.extend(path.iter().cloned());
            keys.push(NodeKey::from_bytes(*d.device_key().secret_bytes()));
        }
        keys.sort_by_key(|k| *k.secret_bytes());
        keys.dedup();
        let body = ekb.body();
        for i in 0..body.len() {
            let (subset, wrapped) = body.entry(i).unwrap();
            for k in &keys {
                let p = crypto::unwrap(k, ekb::subset_tweak(&subset), &wrapped);
                prop_assert!(!crypto::verifies(&p, 9, ekb.verification()), "coalition opened entry {}", i);
                prop_assert!(p != payload);
            }
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = EkbIn::from_bytes(&bytes);
        let _ = DeviceKeys::from_bytes(&bytes);
    }

    /// Random bytes behind a valid header prefix, so decoding gets past the magic.
    #[test]
    fn random_bodies_never_panic(
        height in 0u8..40, scheme in 0u8..4, count in 0u32..20,
        body in proptest::collection::vec(any::<u8>(), 0..800),
    ) {
        let mut bytes = b"TCEK\x01".to_vec();
        bytes.extend_from_slice(&[scheme, 0, height]);
        bytes.extend_from_slice(&[0; 16]);
        bytes.extend_from_slice(&count.to_be_bytes());
        bytes.extend_from_slice(&body);
        if let Ok(ekb) = EkbIn::from_bytes(&bytes) {
            for s in ekb.subsets() {
                let _ = s;
            }
            let auth = authority(TreeHeight::new(4).unwrap());
            prop_assert!(ekb.verify(&auth.verifying_key()).is_err());
        }
    }
}

fn small_ekb() -> (Authority, Vec<u8>) {
    let h = TreeHeight::new(4).unwrap();
    let auth = authority(h);
    let revoked = RevocationSet::from_leaves(h, [3, 9]).unwrap();
    let signed = auth
        .build_ekb(&PayloadKey::from_bytes([1; 16]), &revoked, 5)
        .unwrap();
    (auth, signed.into_bytes())
}

#[test]
fn every_single_bit_flip_is_refused() {
    let (auth, bytes) = small_ekb();
    let vk = auth.verifying_key();
    assert!(EkbIn::from_bytes(&bytes).unwrap().verify(&vk).is_ok());
    for bit in 0..bytes.len() * 8 {
        let mut flipped = bytes.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        let result = EkbIn::from_bytes(&flipped)
            .map_err(Error::from)
            .and_then(|e| e.verify(&vk));
        assert!(result.is_err(), "bit {bit} flip accepted");
    }
}

#[test]
fn every_truncation_and_extension_is_refused() {
    let (_, bytes) = small_ekb();
    for len in 0..bytes.len() {
        assert!(
            EkbIn::from_bytes(&bytes[..len]).is_err(),
            "truncation to {len} accepted"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(
        EkbIn::from_bytes(&longer).unwrap_err(),
        DecodeError::TrailingData(1)
    );
}

#[test]
fn wrong_key_wrong_tree_and_wrong_epoch_are_refused() {
    let (auth, bytes) = small_ekb();
    let h = TreeHeight::new(4).unwrap();
    let other = Authority::new(
        &MasterSecret::from_bytes([4; 32]),
        TreeConfig::new(Scheme::COMPLETE_SUBTREE, h, TreeId(42)),
    )
    .unwrap();
    assert_eq!(
        EkbIn::from_bytes(&bytes)
            .unwrap()
            .verify(&other.verifying_key())
            .unwrap_err(),
        Error::BadSignature
    );
    // A device of another tree of the same authority.
    let other_tree = Authority::new(
        &MasterSecret::from_bytes([3; 32]),
        TreeConfig::new(Scheme::COMPLETE_SUBTREE, h, TreeId(43)),
    )
    .unwrap();
    let ekb = EkbIn::from_bytes(&bytes)
        .unwrap()
        .verify(&auth.verifying_key())
        .unwrap();
    let stranger = other_tree.device_keys(LeafIndex::new(0, h).unwrap());
    assert_eq!(stranger.open(&ekb), Err(Error::WrongTree));
    // Different trees derive different keys and signing keys.
    assert_ne!(other_tree.verifying_key(), auth.verifying_key());
}

#[test]
fn nothing_revoked_is_one_subset_and_everything_revoked_is_empty() {
    let h = TreeHeight::new(5).unwrap();
    let none = Cover::compute(Scheme::COMPLETE_SUBTREE, &RevocationSet::new(h)).unwrap();
    assert_eq!(none.subsets(), &[Subset::Complete(NodeIndex::ROOT)]);
    let all = RevocationSet::from_leaves(h, 0..32).unwrap();
    assert!(
        Cover::compute(Scheme::COMPLETE_SUBTREE, &all)
            .unwrap()
            .is_empty()
    );
    // An EKB with no subsets still decodes, verifies, and refuses everyone.
    let auth = authority(h);
    let signed = auth
        .build_ekb(&PayloadKey::from_bytes([2; 16]), &all, 1)
        .unwrap();
    let ekb = EkbIn::from_bytes(signed.as_bytes())
        .unwrap()
        .verify(&auth.verifying_key())
        .unwrap();
    let device = auth.device_keys(LeafIndex::new(31, h).unwrap());
    assert_eq!(device.open(&ekb), Err(Error::Revoked));
}

#[test]
fn height_32_extremes() {
    let h = TreeHeight::new(32).unwrap();
    let auth = authority(h);
    let revoked = RevocationSet::from_leaves(h, [0, 1, u32::MAX, 1 << 31]).unwrap();
    let payload = PayloadKey::from_bytes([8; 16]);
    let signed = auth.build_ekb(&payload, &revoked, 2).unwrap();
    let ekb = EkbIn::from_bytes(signed.as_bytes())
        .unwrap()
        .verify(&auth.verifying_key())
        .unwrap();
    for leaf in [
        2,
        3,
        u32::MAX - 1,
        (1 << 31) - 1,
        (1 << 31) + 1,
        123_456_789,
    ] {
        let d = auth.device_keys(LeafIndex::new(leaf, h).unwrap());
        assert!(d.open(&ekb).unwrap() == payload, "leaf {leaf}");
    }
    for leaf in revoked.iter() {
        assert_eq!(auth.device_keys(leaf).open(&ekb), Err(Error::Revoked));
    }
}

#[test]
fn device_keys_round_trip_and_refuse_damage() {
    let h = TreeHeight::new(6).unwrap();
    let auth = authority(h);
    let keys = auth.device_keys(LeafIndex::new(17, h).unwrap());
    let bytes = keys.to_bytes();
    assert_eq!(DeviceKeys::from_bytes(&bytes).unwrap(), keys);
    assert_eq!(keys.key_material_len(), 16 * 8);
    for len in 0..bytes.len() {
        assert!(DeviceKeys::from_bytes(&bytes[..len]).is_err());
    }
    assert!(format!("{keys:?}").contains("leaf"));
    assert!(!format!("{keys:?}").contains("keys:"));
}
