//! The AACS-profile readers of untrusted input: MKB records, processing an MKB with a device's
//! keys, and KEYDB.cfg text. Nothing may panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use treecast_keytree::aacs::{AacsAuthority, DeviceKeySet, Mkb, ProcessingKeys};
use treecast_keytree::{LeafIndex, MasterSecret, TreeId};

/// A device of a fixed authority, and that authority.
fn device() -> &'static (AacsAuthority, DeviceKeySet) {
    static DEVICE: OnceLock<(AacsAuthority, DeviceKeySet)> = OnceLock::new();
    DEVICE.get_or_init(|| {
        let authority = AacsAuthority::new(&MasterSecret::from_bytes([5; 32]), TreeId(1)).unwrap();
        let leaf = LeafIndex::new(4, authority.height()).unwrap();
        let keys = authority.device_keys(leaf).unwrap();
        (authority, keys)
    })
}

/// An MKB of the fixed authority, with a few revoked devices.
fn mkb() -> &'static [u8] {
    static MKB: OnceLock<Vec<u8>> = OnceLock::new();
    MKB.get_or_init(|| {
        let (authority, _) = device();
        let revoked = treecast_keytree::RevocationSet::from_leaves(authority.height(), [1, 9, 77])
            .unwrap();
        authority
            .build_mkb(&treecast_keytree::PayloadKey::from_bytes([3; 16]), &revoked, 1, [0; 8])
            .unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let (authority, keys) = device();
    if let Ok(mkb) = Mkb::parse(data) {
        let _ = mkb.subsets().count();
        let _ = keys.process(&mkb);
        let _ = mkb.verify(&authority.verifying_key());
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(set) = DeviceKeySet::from_keydb(text) {
            assert_eq!(DeviceKeySet::from_keydb(&set.to_keydb()).unwrap(), set);
        }
        // Published processing keys, tried on an MKB of the fixed authority.
        if let Ok(pks) = ProcessingKeys::from_keydb(text) {
            let _ = pks.process(&Mkb::parse(mkb()).unwrap());
        }
    }
});
