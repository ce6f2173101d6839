//! Tests of the AACS profile: `uv` numbers, the cover, MKB and KEYDB round trips, and the
//! reader on damaged input.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests fail loudly by design"
)]

use proptest::prelude::*;

use super::*;

fn authority() -> AacsAuthority {
    AacsAuthority::new(&MasterSecret::from_bytes([9; 32]), TreeId(7)).unwrap()
}

fn leaf(n: u32) -> LeafIndex {
    LeafIndex::new(n, height()).unwrap()
}

fn revoked(leaves: &[u32]) -> RevocationSet {
    RevocationSet::from_leaves(height(), leaves.iter().copied()).unwrap()
}

const MEDIA_KEY: [u8; 16] = [0xA5; 16];

#[test]
fn uv_round_trips_every_node_down_to_depth_12_and_the_leaves() {
    for n in 1..(1u64 << 13) {
        let node = NodeIndex::new(n, height()).unwrap();
        let uv = Uv::from_node(node).unwrap();
        assert_eq!(uv.depth(), node.depth());
        assert_eq!(uv.node().unwrap(), node);
    }
    for l in [0, 1, 12345, (1 << 31) - 1] {
        let node = leaf(l).node(height());
        assert_eq!(Uv::from_node(node).unwrap(), Uv::of_leaf(leaf(l)));
        assert_eq!(Uv::of_leaf(leaf(l)).node().unwrap(), node);
    }
}

#[test]
fn explicit_subset_round_trips_and_refuses_the_root_as_u() {
    let h = height();
    let u = NodeIndex::new(5, h).unwrap();
    let v = NodeIndex::new(5 << 7 | 33, h).unwrap();
    let subset = Subset::Difference { u, v };
    let entry = ExplicitSubset::from_subset(&subset).unwrap();
    assert_eq!(entry.u_mask_shift, 30);
    assert_eq!(entry.subset().unwrap(), subset);
    let root = Subset::Difference {
        u: NodeIndex::ROOT,
        v,
    };
    assert!(ExplicitSubset::from_subset(&root).is_err());
    // Malformed entries: v above u, u the root, uv = 0.
    for (shift, uv) in [(20, 0x8000_0000), (32, 0x4000_0000), (40, 1), (5, 0)] {
        let e = ExplicitSubset {
            u_mask_shift: shift,
            uv,
        };
        assert!(e.subset().is_err(), "{e:?}");
    }
}

/// The AACS applicability test agrees with set membership.
#[test]
fn applies_to_is_membership() {
    let h = height();
    let u = NodeIndex::new(6, h).unwrap(); // depth 2
    let v = NodeIndex::new(6 << 4 | 9, h).unwrap(); // depth 6
    let subset = Subset::Difference { u, v };
    let entry = ExplicitSubset::from_subset(&subset).unwrap();
    for l in (0..1u32 << 31)
        .step_by(1 << 21)
        .chain([v.first_leaf(h).unwrap() as u32])
    {
        let node = leaf(l).node(h);
        assert_eq!(
            entry.applies_to(Uv::of_leaf(leaf(l))),
            subset.contains(node),
            "leaf {l}"
        );
    }
}

/// Checks a cover of the 31-level tree: no `u` is the root, subsets are disjoint (sorted in
/// preorder of `u`, a device finds at most one), and they hold exactly the non-revoked leaves.
fn check_cover(revoked: &RevocationSet) {
    let h = height();
    let subsets = cover(revoked).unwrap();
    let total: u64 = subsets.iter().map(|s| s.leaf_count(h)).sum();
    assert_eq!(total, h.leaf_count() - revoked.len() as u64);
    for s in &subsets {
        assert_ne!(s.top(), NodeIndex::ROOT, "{s:?}");
        ExplicitSubset::from_subset(s).unwrap();
    }
    for l in revoked.iter() {
        assert!(!subsets.iter().any(|s| s.contains(l.node(h))));
    }
}

#[test]
fn the_cover_splits_subsets_at_the_root() {
    check_cover(&revoked(&[]));
    assert_eq!(cover(&revoked(&[])).unwrap().len(), 4);
    check_cover(&revoked(&[0]));
    check_cover(&revoked(&[(1 << 31) - 1]));
    check_cover(&revoked(&[0, (1 << 31) - 1]));
    check_cover(&revoked(&[1 << 30]));
}

#[test]
fn every_device_gets_the_media_key_and_every_revoked_one_is_refused() {
    let a = authority();
    let media_key = PayloadKey::from_bytes(MEDIA_KEY);
    let revoked_leaves = [3, 4, 1000, 1 << 20, (1 << 31) - 2];
    let bytes = a
        .build_mkb(&media_key, &revoked(&revoked_leaves), 7, [1; 8])
        .unwrap();
    let mkb = Mkb::parse(&bytes).unwrap();
    assert_eq!(mkb.version(), 7);
    assert_eq!(mkb.mkb_type(), mkb::MKB_TYPE_3);
    mkb.verify(&a.verifying_key()).unwrap();
    for l in [
        0,
        1,
        2,
        5,
        999,
        1001,
        1 << 19,
        (1 << 20) + 1,
        1 << 30,
        (1 << 31) - 1,
    ] {
        let keys = a.device_keys(leaf(l)).unwrap();
        assert_eq!(keys.keys().len(), keydb::KEY_COUNT);
        assert_eq!(keys.process(&mkb).unwrap(), media_key, "leaf {l}");
    }
    for l in revoked_leaves {
        let keys = a.device_keys(leaf(l)).unwrap();
        assert_eq!(keys.process(&mkb), Err(Error::Revoked), "leaf {l}");
    }
}

#[test]
fn another_authoritys_device_fails_the_verify_record() {
    let media_key = PayloadKey::from_bytes(MEDIA_KEY);
    let bytes = authority()
        .build_mkb(&media_key, &revoked(&[8]), 1, [0; 8])
        .unwrap();
    let mkb = Mkb::parse(&bytes).unwrap();
    let stranger = AacsAuthority::new(&MasterSecret::from_bytes([1; 32]), TreeId(7)).unwrap();
    let keys = stranger.device_keys(leaf(9)).unwrap();
    assert_eq!(keys.process(&mkb), Err(Error::UnwrapFailed));
    assert_eq!(
        mkb.verify(&stranger.verifying_key()),
        Err(Error::BadSignature)
    );
}

#[test]
fn keydb_round_trips_and_reads_a_keydb_with_other_records() {
    let keys = authority().device_keys(leaf(77)).unwrap();
    let text = keys.to_keydb();
    assert_eq!(DeviceKeySet::from_keydb(&text).unwrap(), keys);
    let mixed = format!(
        "; a comment\n\n0123=V 00 | label\n| PK | 0x00112233445566778899AABBCCDDEEFF\n{}",
        text.as_str()
    );
    assert_eq!(DeviceKeySet::from_keydb(&mixed).unwrap(), keys);
    // Only some of the keys, as published key files hold: still a key set.
    let some: String = text.lines().take(4).map(|l| format!("{l}\n")).collect();
    assert_eq!(DeviceKeySet::from_keydb(&some).unwrap().keys().len(), 3);
}

#[test]
fn keydb_device_node_is_written_published_and_read_in_both_forms() {
    for l in [
        0u32,
        1,
        1024,
        (1 << 30) - 1,
        1 << 30,
        (1 << 31) - 2,
        (1 << 31) - 1,
    ] {
        let keys = authority().device_keys(leaf(l)).unwrap();
        let text = keys.to_keydb();
        let published = format!("DEVICE_NODE 0x{:04X} ", l << 1);
        assert!(
            text.contains(&published),
            "leaf {l}: {}",
            text.lines().nth(1).unwrap_or("")
        );
        assert_eq!(DeviceKeySet::from_keydb(&text).unwrap(), keys, "leaf {l}");
        // The uv form (low bit set) names the same device.
        let uv_form = text.replace(&published, &format!("DEVICE_NODE 0x{:04X} ", (l << 1) | 1));
        assert_eq!(
            DeviceKeySet::from_keydb(&uv_form).unwrap(),
            keys,
            "leaf {l}"
        );
        // Both forms in one file are one device; another leaf's node is refused.
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if let Some(last) = lines.last_mut() {
            *last = last.replace(&published, &format!("DEVICE_NODE 0x{:04X} ", (l << 1) | 1));
        }
        assert_eq!(DeviceKeySet::from_keydb(&lines.join("\n")).unwrap(), keys);
        let other = l ^ 1;
        if let Some(last) = lines.last_mut() {
            *last = last.replace(
                &format!("DEVICE_NODE 0x{:04X} ", (l << 1) | 1),
                &format!("DEVICE_NODE 0x{:04X} ", other << 1),
            );
        }
        assert!(
            DeviceKeySet::from_keydb(&lines.join("\n")).is_err(),
            "leaf {l}"
        );
    }
    // The widely circulated entry names leaf 1024.
    let line = |node: &str| {
        format!(
            "| DK | DEVICE_KEY 0x000102030405060708090A0B0C0D0E0F | DEVICE_NODE {node} | KEY_UV 0x00000400 | KEY_U_MASK_SHIFT 0x17"
        )
    };
    let set = DeviceKeySet::from_keydb(&line("0x0800")).unwrap();
    assert_eq!(set.device_number().get(), 0x0801);
    assert_eq!(DeviceKeySet::from_keydb(&line("0x801")).unwrap(), set);
}

#[test]
fn keydb_refuses_malformed_lines() {
    let good = "| DK | DEVICE_KEY 0x000102030405060708090A0B0C0D0E0F | DEVICE_NODE 0x0001 | KEY_UV 0x80000000 | KEY_U_MASK_SHIFT 0x1F";
    let cases = [
        "",
        "| DK | DEVICE_KEY 0x0001 | DEVICE_NODE 0x0001 | KEY_UV 0x40000000 | KEY_U_MASK_SHIFT 0x1F",
        "| DK | DEVICE_KEY 0x000102030405060708090A0B0C0D0E0F | KEY_UV 0x40000000 | KEY_U_MASK_SHIFT 0x1F",
        "| DK | DEVICE_KEY 0x000102030405060708090A0B0C0D0E0F | DEVICE_NODE 0x0001 | KEY_UV 0x0 | KEY_U_MASK_SHIFT 0x1F",
        "| DK | DEVICE_KEY 0x000102030405060708090A0B0C0D0E0F | DEVICE_NODE 0x0001 | KEY_UV 0x+1 | KEY_U_MASK_SHIFT 0x1F",
        "| DK | DEVICE_KEY 0x000102030405060708090A0B0C0D0E0F | DEVICE_NODE 0x0001 | KEY_UV 0x123456789 | KEY_U_MASK_SHIFT 0x1F",
        // u is the root.
        "| DK | DEVICE_KEY 0x000102030405060708090A0B0C0D0E0F | DEVICE_NODE 0x0001 | KEY_UV 0xC0000000 | KEY_U_MASK_SHIFT 0x20",
        // v is on the device's own path.
        good,
    ];
    for case in cases {
        assert!(DeviceKeySet::from_keydb(case).is_err(), "{case}");
    }
    let two_devices = "| DK | DEVICE_KEY 0x000102030405060708090A0B0C0D0E0F | DEVICE_NODE 0x0001 | KEY_UV 0x60000000 | KEY_U_MASK_SHIFT 0x1F\n\
                       | DK | DEVICE_KEY 0x000102030405060708090A0B0C0D0E0F | DEVICE_NODE 0x0003 | KEY_UV 0x60000000 | KEY_U_MASK_SHIFT 0x1F";
    assert!(DeviceKeySet::from_keydb(two_devices).is_err());
    assert!(DeviceKeySet::from_keydb(&"; x\n".repeat(MAX_KEYDB_LEN / 4 + 1)).is_err());
}

/// Builds an MKB by hand from records, each `(type, payload)`, with the length field computed.
fn records(list: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (t, payload) in list {
        let len = (4 + payload.len()) as u32;
        out.push(*t);
        out.extend_from_slice(&len.to_be_bytes()[1..]);
        out.extend_from_slice(payload);
    }
    out
}

#[test]
fn unknown_records_are_skipped_and_processing_still_works() {
    let a = authority();
    let media_key = PayloadKey::from_bytes(MEDIA_KEY);
    let bytes = a.build_mkb(&media_key, &revoked(&[5]), 2, [0; 8]).unwrap();
    // Insert a Host Revocation List-like record (0x21) and an unknown one after the first record.
    let first_len = 12;
    let extra = records(&[(0x21, vec![0; 12]), (0x7E, vec![1, 2, 3, 4])]);
    let mut with = bytes[..first_len].to_vec();
    with.extend_from_slice(&extra);
    with.extend_from_slice(&bytes[first_len..]);
    let mkb = Mkb::parse(&with).unwrap();
    assert_eq!(mkb.unknown_records(), 2);
    let keys = a.device_keys(leaf(4)).unwrap();
    assert_eq!(keys.process(&mkb).unwrap(), media_key);
    // The signature covers the records, so the edited MKB no longer verifies.
    assert_eq!(mkb.verify(&a.verifying_key()), Err(Error::BadSignature));
    // Sector padding after End of MKB is ignored.
    let mut padded = bytes.clone();
    padded.resize(bytes.len() + 2048, 0);
    Mkb::parse(&padded)
        .unwrap()
        .verify(&a.verifying_key())
        .unwrap();
}

#[test]
fn truncated_records_and_lying_lengths_are_refused() {
    let a = authority();
    let bytes = a
        .build_mkb(
            &PayloadKey::from_bytes(MEDIA_KEY),
            &revoked(&[5, 9]),
            2,
            [0; 8],
        )
        .unwrap();
    // Every truncation either fails to parse or is refused when processed or verified.
    let keys = a.device_keys(leaf(4)).unwrap();
    for cut in 0..bytes.len() {
        let prefix = &bytes[..cut];
        if let Ok(mkb) = Mkb::parse(prefix) {
            assert!(mkb.verify(&a.verifying_key()).is_err(), "cut {cut}");
            if let Ok(k) = keys.process(&mkb) {
                // Only a cut at or inside End of MKB leaves the media key reachable.
                assert!(cut >= bytes.len() - 68, "cut {cut}");
                assert_eq!(k, PayloadKey::from_bytes(MEDIA_KEY));
            }
        }
    }
    // A record length past the end, below 4, or a duplicate record.
    let mut long = bytes.clone();
    long[13..16].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
    assert!(Mkb::parse(&long).is_err());
    let mut short = bytes.clone();
    short[13..16].copy_from_slice(&[0, 0, 2]);
    assert!(Mkb::parse(&short).is_err());
    let dup = records(&[(0x10, vec![0; 8]), (0x10, vec![0; 8])]);
    assert!(Mkb::parse(&dup).is_err());
    assert!(Mkb::parse(&records(&[(0x81, vec![0; 16])])).is_err());
    assert!(Mkb::parse(&[]).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random revocations: the cover checks out, sampled devices get the key or are refused.
    #[test]
    fn random_revocations(
        leaves in proptest::collection::vec(0u32..(1 << 31), 0..40),
        probes in proptest::collection::vec(0u32..(1 << 31), 4),
    ) {
        let set = revoked(&leaves);
        check_cover(&set);
        let a = authority();
        let media_key = PayloadKey::from_bytes(MEDIA_KEY);
        let bytes = a.build_mkb(&media_key, &set, 1, [0; 8]).unwrap();
        let mkb = Mkb::parse(&bytes).unwrap();
        for l in probes.iter().chain(leaves.iter().take(3)) {
            let result = a.device_keys(leaf(*l)).unwrap().process(&mkb);
            if set.contains(*l) {
                prop_assert_eq!(result, Err(Error::Revoked));
            } else {
                prop_assert_eq!(result.unwrap(), media_key.clone());
            }
        }
    }

    /// Damaged MKBs never panic the reader or the device.
    #[test]
    fn damaged_mkbs_never_panic(flips in proptest::collection::vec((0usize..4096, any::<u8>()), 1..8)) {
        let a = authority();
        let bytes = a.build_mkb(&PayloadKey::from_bytes(MEDIA_KEY), &revoked(&[5, 70, 900]), 1, [0; 8]).unwrap();
        let mut damaged = bytes.clone();
        for (at, x) in flips {
            let at = at % damaged.len();
            damaged[at] ^= x;
        }
        if let Ok(mkb) = Mkb::parse(&damaged) {
            let _ = a.device_keys(leaf(4)).unwrap().process(&mkb);
            let _ = mkb.verify(&a.verifying_key());
        }
    }
}
