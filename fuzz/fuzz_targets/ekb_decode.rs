//! Decoders of untrusted bytes: the EKB and a device's stored key set. Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use treecast_keytree::{DeviceKeys, EkbIn};

fuzz_target!(|data: &[u8]| {
    if let Ok(ekb) = EkbIn::from_bytes(data) {
        assert_eq!(ekb.encoded_len(), data.len());
        for subset in ekb.subsets() {
            let _ = subset;
        }
    }
    if let Ok(keys) = DeviceKeys::from_bytes(data) {
        assert_eq!(&keys.to_bytes()[..], data);
    }
});
