//! The content container reader: arbitrary bytes, and damaged real containers. Nothing may
//! panic, and a damaged container must never open.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rand_chacha::rand_core::SeedableRng;
use treecast_protocol::ContentId;
use treecast_protocol::content::{self, ContentKey};

fuzz_target!(|data: &[u8]| {
    let key = ContentKey::from_bytes([4; 16]);
    let _ = content::open(&key, data, std::io::sink());
    let _ = content::header(data);

    // A real container of the first bytes, with one byte changed where the rest says.
    let Some((&len, rest)) = data.split_first() else { return };
    let Some((pos, plain)) = rest.split_first_chunk::<2>() else { return };
    let plain = &plain[..plain.len().min(usize::from(len) * 20)];
    let mut packed = Vec::new();
    let nonce = content::Nonce::generate(&mut rand_chacha::ChaCha8Rng::seed_from_u64(u64::from(len)));
    content::package(ContentId(1), 1, 1024, &key, nonce, plain, &mut packed).expect("packaging to memory");
    let mut out = Vec::new();
    content::open(&key, &packed[..], &mut out).expect("a fresh container opens");
    assert_eq!(out, plain);
    let at = usize::from(u16::from_be_bytes(*pos)) % packed.len();
    packed[at] ^= 0x5a;
    assert!(content::open(&key, &packed[..], std::io::sink()).is_err(), "a damaged container opened");
});
