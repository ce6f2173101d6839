//! The whole device path on a real, signed EKB that the fuzzer then damages: decode, verify,
//! open. A damaged EKB must never be accepted, and an undamaged one must give exactly the right
//! answer to every device.
#![no_main]

use libfuzzer_sys::fuzz_target;
use treecast_keytree::{
    Authority, EkbIn, Error, LeafIndex, MasterSecret, PayloadKey, RevocationSet, Scheme, TreeConfig, TreeHeight,
    TreeId,
};

fuzz_target!(|data: &[u8]| {
    // Layout of `data`: height (the top bit picks the scheme), device leaf (4 bytes), number of
    // bit flips, flip positions (2 bytes each), then revoked leaves (4 bytes each).
    let Some((&h, rest)) = data.split_first() else { return };
    let Ok(height) = TreeHeight::new(h % 32 + 1) else { return };
    let scheme = if h & 0x80 == 0 { Scheme::COMPLETE_SUBTREE } else { Scheme::SUBSET_DIFFERENCE };
    let Some((leaf, rest)) = rest.split_first_chunk::<4>() else { return };
    let Some((&flips, rest)) = rest.split_first() else { return };
    let flips = usize::from(flips % 4);
    let Some((positions, rest)) = rest.split_at_checked(flips * 2) else { return };
    let mask = (height.leaf_count() - 1) as u32;
    let revoked_leaves = rest.chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) & mask);
    let Ok(revoked) = RevocationSet::from_leaves(height, revoked_leaves) else { return };

    let config = TreeConfig::new(scheme, height, TreeId(5));
    let Ok(authority) = Authority::new(&MasterSecret::from_bytes([9; 32]), config) else { return };
    let payload = PayloadKey::from_bytes([0x42; 16]);
    let Ok(signed) = authority.build_ekb(&payload, &revoked, 1) else { return };
    let original = signed.into_bytes();
    let mut bytes = original.clone();
    for p in positions.chunks_exact(2) {
        let bit = usize::from(u16::from_be_bytes([p[0], p[1]])) % (bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
    }
    let damaged = bytes != original;

    let leaf = LeafIndex::new(u32::from_be_bytes(*leaf) & mask, height).expect("masked leaf is in range");
    let device = authority.device_keys(leaf);
    let result = EkbIn::from_bytes(&bytes)
        .map_err(Error::from)
        .and_then(|ekb| ekb.verify(&authority.verifying_key()))
        .and_then(|ekb| device.open(&ekb));
    if damaged {
        assert!(result.is_err(), "a damaged EKB was accepted");
    } else if revoked.contains(leaf.get()) {
        assert_eq!(result, Err(Error::Revoked));
    } else {
        assert!(result == Ok(payload), "a non-revoked device failed: {result:?}");
    }
});
