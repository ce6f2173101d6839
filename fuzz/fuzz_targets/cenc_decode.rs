//! The MP4 reader of Common Encryption (issue 30): encrypting, decrypting and reading the key ID
//! of any bytes gives a file or a typed error, never a panic; what encrypts decrypts back to
//! the bytes it came from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rand_chacha::rand_core::SeedableRng;
use treecast_cenc::{CencKey, KeyId};

fuzz_target!(|data: &[u8]| {
    let key = CencKey::from_bytes([7; 16]);
    let _ = treecast_cenc::key_id(data);
    let _ = treecast_cenc::decrypt(data, &key);
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
    if let Ok(protected) = treecast_cenc::encrypt(data, &key, KeyId([1; 16]), &mut rng) {
        assert_eq!(treecast_cenc::decrypt(&protected, &key).ok().as_deref(), Some(data));
    }
});
