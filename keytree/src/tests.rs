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

/// The NNL Subset Difference cover by the paper's own iterative algorithm on an explicit
/// Steiner tree: repeatedly take two Steiner-tree leaves whose common ancestor `v` has no other
/// Steiner-tree leaf below it, add `S(v_l, v_i)` and `S(v_k, v_j)` for the children of `v` toward
/// them (when they differ), and cut the tree below `v`.
fn brute_force_sd(revoked: &RevocationSet) -> Vec<Subset> {
    use std::collections::BTreeSet;
    let h = revoked.height();
    if revoked.is_empty() {
        return vec![Subset::Complete(NodeIndex::ROOT)];
    }
    let mut steiner: BTreeSet<NodeIndex> = BTreeSet::new();
    for leaf in revoked.iter() {
        let n = leaf.node(h);
        for d in 0..=h.get() {
            steiner.insert(n.ancestor(d).unwrap());
        }
    }
    let mut out = Vec::new();
    loop {
        let mut ends: Vec<NodeIndex> = steiner
            .iter()
            .copied()
            .filter(|n| {
                n.children(h)
                    .is_none_or(|(l, r)| !steiner.contains(&l) && !steiner.contains(&r))
            })
            .collect();
        ends.sort_by_key(|n| n.leaf_range(h).unwrap().start);
        if ends.len() == 1 {
            if ends[0] != NodeIndex::ROOT {
                out.push(Subset::Difference {
                    u: NodeIndex::ROOT,
                    v: ends[0],
                });
            }
            break;
        }
        // Adjacent ends whose common ancestor is deepest have no other end below it.
        let (vi, vj) = ends
            .windows(2)
            .map(|w| (w[0], w[1]))
            .max_by_key(|(a, b)| a.common_ancestor(*b).depth())
            .unwrap();
        let v = vi.common_ancestor(vj);
        let (l, k) = v.children(h).unwrap();
        for (child, end) in [(l, vi), (k, vj)] {
            if child != end {
                out.push(Subset::Difference { u: child, v: end });
            }
        }
        steiner.retain(|n| *n == v || !v.contains(*n));
    }
    out
}

fn brute_force(scheme: Scheme, revoked: &RevocationSet) -> Vec<Subset> {
    match scheme {
        Scheme::COMPLETE_SUBTREE => brute_force_cs(revoked),
        _ => brute_force_sd(revoked),
    }
}

fn authority_for(scheme: Scheme, height: TreeHeight) -> Authority {
    let config = TreeConfig::new(scheme, height, TreeId(42));
    Authority::new(&MasterSecret::from_bytes([3; 32]), config).unwrap()
}

fn authority(height: TreeHeight) -> Authority {
    authority_for(Scheme::COMPLETE_SUBTREE, height)
}

fn scheme() -> impl Strategy<Value = Scheme> {
    prop_oneof![
        Just(Scheme::COMPLETE_SUBTREE),
        Just(Scheme::SUBSET_DIFFERENCE)
    ]
}

/// Every key a device holds, and every key it can derive for the subsets of `ekb` (for SD: each
/// label expanded down to each entry's `v` where it is an ancestor of it).
fn keys_derivable_by(device: &DeviceKeys, ekb: &VerifiedEkb<'_>) -> Vec<(Option<usize>, NodeKey)> {
    let mut out: Vec<(Option<usize>, NodeKey)> = vec![(
        None,
        NodeKey::from_bytes(*device.device_key().secret_bytes()),
    )];
    match &device.keys {
        KeySet::CompleteSubtree(path) => out.extend(path.iter().map(|k| (None, k.clone()))),
        KeySet::SubsetDifference { labels, all } => {
            out.push((None, all.clone()));
            let h = device.config().height.get();
            let leaf = device.leaf().node(device.config().height);
            let body = ekb.body();
            // Reconstruct which (u, w) each label is for, in the stored order.
            let mut index = 0;
            for d in 0..h {
                let u = leaf.ancestor(d).unwrap();
                for e in d + 1..=h {
                    let w = leaf.ancestor(e).unwrap().sibling().unwrap();
                    let label = &labels[index];
                    index += 1;
                    out.push((None, crypto::g3(label, crypto::G3::Key)));
                    for i in 0..body.len() {
                        if let (Subset::Difference { u: eu, v }, _) = body.entry(i).unwrap()
                            && eu == u
                            && w.contains(v)
                        {
                            let steps = v.depth() - w.depth();
                            let l = crypto::g3_descend(
                                label.clone(),
                                v.get() & treemath::low_bits(steps),
                                steps,
                            );
                            out.push((Some(i), crypto::g3(&l, crypto::G3::Key)));
                        }
                    }
                }
            }
        }
    }
    out
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
    fn cover_is_the_exact_minimum(scheme in scheme(), revoked in tree_and_revoked()) {
        let h = revoked.height();
        let cover = Cover::compute(scheme, &revoked).unwrap();
        // The same subsets as the brute-force minimum.
        let key = |s: &Subset| match *s {
            Subset::Complete(n) => (n.get(), 0),
            Subset::Difference { u, v } => (u.get(), v.get()),
        };
        let mut expected = brute_force(scheme, &revoked);
        let mut got = cover.subsets().to_vec();
        expected.sort_by_key(key);
        got.sort_by_key(key);
        prop_assert_eq!(got, expected);
        // Ordered in preorder of the top node.
        let top = |s: &Subset| match *s {
            Subset::Complete(n) | Subset::Difference { u: n, .. } => n.preorder_key(h),
        };
        prop_assert!(cover.subsets().windows(2).all(|w| top(&w[0]) < top(&w[1])));
        // Disjoint, and the union is exactly the non-revoked leaves.
        let mut owner = vec![None; h.leaf_count() as usize];
        for (i, s) in cover.subsets().iter().enumerate() {
            for leaf in 0..h.leaf_count() {
                if s.contains(LeafIndex::new(leaf as u32, h).unwrap().node(h)) {
                    prop_assert!(owner[leaf as usize].is_none(), "leaf {} in two subsets", leaf);
                    owner[leaf as usize] = Some(i);
                }
            }
        }
        for leaf in 0..h.leaf_count() {
            prop_assert_eq!(owner[leaf as usize].is_some(), !revoked.contains(leaf as u32), "leaf {}", leaf);
        }
        let r = revoked.len();
        if scheme == Scheme::COMPLETE_SUBTREE {
            // The NNL bound r·log2(N/r) for 0 < r < N.
            if r > 0 && !revoked.is_full() {
                let bound = r as f64 * (h.leaf_count() as f64 / r as f64).log2();
                prop_assert!(cover.len() as f64 <= bound + 1e-9);
            }
        } else {
            prop_assert!(cover.len() <= (2 * r).saturating_sub(1).max(1));
        }
    }

    /// The CS cover comes out in exactly the order of a left-to-right walk of the tree.
    #[test]
    fn cs_cover_walk_agrees(revoked in tree_and_revoked()) {
        let cover = Cover::compute(Scheme::COMPLETE_SUBTREE, &revoked).unwrap();
        let expected = brute_force_cs(&revoked);
        prop_assert_eq!(cover.subsets(), expected.as_slice());
    }

    #[test]
    fn every_device_opens_or_is_refused(scheme in scheme(), revoked in tree_and_revoked(), epoch in any::<u64>(), seeded in any::<bool>()) {
        let h = revoked.height();
        let auth = if seeded {
            // The seed-tree derivation (issue 29): its EKB builds walk the seeds.
            let config = TreeConfig::new(scheme, h, TreeId(42));
            Authority::with_derivation(&MasterSecret::from_bytes([3; 32]), config, crate::Derivation::SeedTree).unwrap()
        } else {
            authority_for(scheme, h)
        };
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

    /// Every key held by any revoked device, and every key it can derive from them, tried
    /// against every entry: none unwraps to a key that passes the verification value.
    #[test]
    fn coalition_of_revoked_devices_opens_nothing(scheme in scheme(), revoked in tree_and_revoked()) {
        let h = revoked.height();
        let auth = authority_for(scheme, h);
        let payload = PayloadKey::from_bytes([0xa5; 16]);
        let signed = auth.build_ekb(&payload, &revoked, 9).unwrap();
        let ekb = EkbIn::from_bytes(signed.as_bytes()).unwrap().verify(&auth.verifying_key()).unwrap();
        let body = ekb.body();
        // All revoked devices up to 64 of them; an even sample of the dense sets (up to 256).
        let step = (revoked.len() / 64).max(1);
        let mut general: Vec<NodeKey> = Vec::new();
        for leaf in revoked.iter().step_by(step) {
            let device = auth.device_keys(leaf);
            for (target, key) in keys_derivable_by(&device, &ekb) {
                match target {
                    Some(i) => {
                        let (subset, wrapped) = body.entry(i).unwrap();
                        let p = crypto::unwrap(&key, ekb::subset_tweak(&subset), &wrapped);
                        prop_assert!(!crypto::verifies(&p, 9, ekb.verification()), "derived key opened entry {}", i);
                    }
                    None => general.push(key),
                }
            }
        }
        general.sort_by_key(|k| *k.secret_bytes());
        general.dedup();
        for i in 0..body.len() {
            let (subset, wrapped) = body.entry(i).unwrap();
            for k in &general {
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

fn small_ekb_of(scheme: Scheme) -> (Authority, Vec<u8>) {
    let h = TreeHeight::new(4).unwrap();
    let auth = authority_for(scheme, h);
    let revoked = RevocationSet::from_leaves(h, [3, 9]).unwrap();
    let signed = auth
        .build_ekb(&PayloadKey::from_bytes([1; 16]), &revoked, 5)
        .unwrap();
    (auth, signed.into_bytes())
}

fn small_ekb() -> (Authority, Vec<u8>) {
    small_ekb_of(Scheme::COMPLETE_SUBTREE)
}

const SCHEMES: [Scheme; 2] = [Scheme::COMPLETE_SUBTREE, Scheme::SUBSET_DIFFERENCE];

#[test]
fn every_single_bit_flip_is_refused() {
    for scheme in SCHEMES {
        let (auth, bytes) = small_ekb_of(scheme);
        let vk = auth.verifying_key();
        assert!(EkbIn::from_bytes(&bytes).unwrap().verify(&vk).is_ok());
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            let result = EkbIn::from_bytes(&flipped)
                .map_err(Error::from)
                .and_then(|e| e.verify(&vk));
            assert!(result.is_err(), "{scheme}: bit {bit} flip accepted");
        }
    }
}

#[test]
fn every_truncation_and_extension_is_refused() {
    for scheme in SCHEMES {
        let (_, bytes) = small_ekb_of(scheme);
        for len in 0..bytes.len() {
            assert!(
                EkbIn::from_bytes(&bytes[..len]).is_err(),
                "{scheme}: truncation to {len} accepted"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            EkbIn::from_bytes(&longer).unwrap_err(),
            DecodeError::TrailingData(1)
        );
    }
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
    for scheme in SCHEMES {
        let auth = authority_for(scheme, h);
        for revoked in [
            vec![0, 1, u32::MAX, 1 << 31],
            vec![5],
            vec![],
            (0..64).map(|i| i * 67_108_864 + i).collect(),
        ] {
            let revoked = RevocationSet::from_leaves(h, revoked).unwrap();
            let payload = PayloadKey::from_bytes([8; 16]);
            let signed = auth.build_ekb(&payload, &revoked, 2).unwrap();
            let ekb = EkbIn::from_bytes(signed.as_bytes())
                .unwrap()
                .verify(&auth.verifying_key())
                .unwrap();
            for leaf in [
                0,
                2,
                3,
                4,
                6,
                u32::MAX - 1,
                (1 << 31) - 1,
                (1 << 31) + 1,
                123_456_789,
                67_108_865,
            ] {
                let d = auth.device_keys(LeafIndex::new(leaf, h).unwrap());
                if revoked.contains(leaf) {
                    assert_eq!(d.open(&ekb), Err(Error::Revoked), "{scheme} leaf {leaf}");
                } else {
                    assert!(d.open(&ekb).unwrap() == payload, "{scheme} leaf {leaf}");
                }
            }
            for leaf in revoked.iter() {
                assert_eq!(auth.device_keys(leaf).open(&ekb), Err(Error::Revoked));
            }
        }
    }
}

#[test]
fn sd_key_set_at_height_32_is_under_20_kib() {
    let h = TreeHeight::new(32).unwrap();
    let keys =
        authority_for(Scheme::SUBSET_DIFFERENCE, h).device_keys(LeafIndex::new(77, h).unwrap());
    // 528 labels, the all-leaves key and the device key.
    assert_eq!(keys.key_material_len(), 16 * (528 + 2));
    assert!(keys.to_bytes().len() <= 20 * 1024);
}

#[test]
fn device_keys_round_trip_and_refuse_damage() {
    let h = TreeHeight::new(6).unwrap();
    for (scheme, material) in [
        (Scheme::COMPLETE_SUBTREE, 16 * 8),
        (Scheme::SUBSET_DIFFERENCE, 16 * (21 + 2)),
    ] {
        let auth = authority_for(scheme, h);
        let keys = auth.device_keys(LeafIndex::new(17, h).unwrap());
        let bytes = keys.to_bytes();
        let back = DeviceKeys::from_bytes(&bytes).unwrap();
        assert_eq!(back, keys);
        assert_eq!(keys.key_material_len(), material);
        // The decoded keys still open an EKB.
        let payload = PayloadKey::from_bytes([6; 16]);
        let signed = auth
            .build_ekb(
                &payload,
                &RevocationSet::from_leaves(h, [16, 40]).unwrap(),
                1,
            )
            .unwrap();
        let ekb = EkbIn::from_bytes(signed.as_bytes())
            .unwrap()
            .verify(&auth.verifying_key())
            .unwrap();
        assert!(back.open(&ekb).unwrap() == payload);
        for len in 0..bytes.len() {
            assert!(DeviceKeys::from_bytes(&bytes[..len]).is_err());
        }
        assert!(format!("{keys:?}").contains("leaf"));
        assert!(!format!("{keys:?}").contains("labels"));
    }
}
