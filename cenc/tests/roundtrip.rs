//! Encryption and decryption of a real clear fragmented MP4 (H.264 baseline and AAC, made by
//! `docs/cenc.md`'s ffmpeg command): the protected file has the boxes Common Encryption needs,
//! its samples are changed but for their NAL unit lengths and headers, and decryption gives the
//! clear file back byte for byte. Bad input gets a typed error, never a panic.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests fail loudly by design"
)]

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use treecast_cenc::{CLEARKEY_SYSTEM_ID, CencKey, Error, KeyId};

const CLEAR: &[u8] = include_bytes!("data/clear-fragmented.mp4");
const KID: KeyId = KeyId([0xa5; 16]);

fn key() -> CencKey {
    CencKey::from_bytes([0x3c; 16])
}

fn protect() -> Vec<u8> {
    treecast_cenc::encrypt(CLEAR, &key(), KID, &mut ChaCha20Rng::seed_from_u64(9)).unwrap()
}

/// Every box of `file` whose type is `kind`, as (offset, whole box), walking the containers.
fn boxes<'a>(file: &'a [u8], kind: &[u8; 4]) -> Vec<(usize, &'a [u8])> {
    fn walk<'a>(b: &'a [u8], base: usize, kind: &[u8; 4], out: &mut Vec<(usize, &'a [u8])>) {
        let mut at = 0;
        while at + 8 <= b.len() {
            let size = u32::from_be_bytes(b[at..at + 4].try_into().unwrap()) as usize;
            let this: &[u8; 4] = b[at + 4..at + 8].try_into().unwrap();
            let whole = &b[at..at + size];
            if this == kind {
                out.push((base + at, whole));
            }
            let head = match this {
                b"moov" | b"trak" | b"mdia" | b"minf" | b"stbl" | b"moof" | b"traf" | b"sinf"
                | b"schi" | b"mvex" => Some(8),
                b"stsd" => Some(16),
                b"encv" | b"avc1" => Some(86),
                b"enca" | b"mp4a" => Some(36),
                _ => None,
            };
            if let Some(head) = head {
                walk(&whole[head..], base + at + head, kind, out);
            }
            at += size;
        }
    }
    let mut out = Vec::new();
    walk(file, 0, kind, &mut out);
    out
}

#[test]
fn a_clear_file_round_trips() {
    let protected = protect();
    let back = treecast_cenc::decrypt(&protected, &key()).unwrap();
    assert!(back == CLEAR, "decryption gives the clear file back");
    // The same seed, the same file; another seed, other IVs.
    assert_eq!(protected, protect());
    let other =
        treecast_cenc::encrypt(CLEAR, &key(), KID, &mut ChaCha20Rng::seed_from_u64(10)).unwrap();
    assert_ne!(protected, other);
    // Another key decrypts into something else (CTR cannot tell).
    let wrong = treecast_cenc::decrypt(&protected, &CencKey::from_bytes([1; 16])).unwrap();
    assert_ne!(wrong, CLEAR);
}

#[test]
fn the_protected_file_has_the_boxes_of_common_encryption() {
    let protected = protect();
    assert_eq!(treecast_cenc::key_id(&protected).unwrap(), KID);
    assert!(boxes(&protected, b"avc1").is_empty() && boxes(&protected, b"mp4a").is_empty());
    assert_eq!(boxes(&protected, b"encv").len(), 1);
    assert_eq!(boxes(&protected, b"enca").len(), 1);
    // Each sample entry: frma naming its codec, schm cenc 1.0, tenc protected, 8-byte IVs, KID.
    let frma: Vec<&[u8]> = boxes(&protected, b"frma")
        .iter()
        .map(|(_, b)| &b[8..])
        .collect();
    assert_eq!(frma, [&b"avc1"[..], &b"mp4a"[..]]);
    for (_, schm) in boxes(&protected, b"schm") {
        assert_eq!(&schm[12..20], b"cenc\x00\x01\x00\x00");
    }
    for (_, tenc) in boxes(&protected, b"tenc") {
        assert_eq!(&tenc[14..16], &[1, 8]);
        assert_eq!(&tenc[16..32], &KID.0);
    }
    // The ClearKey pssh, version 1, naming the key ID.
    let pssh = boxes(&protected, b"pssh");
    assert_eq!(pssh.len(), 1);
    let p = pssh[0].1;
    assert_eq!(p[8], 1);
    assert_eq!(&p[12..28], &CLEARKEY_SYSTEM_ID);
    assert_eq!(&p[28..32], &1u32.to_be_bytes());
    assert_eq!(&p[32..48], &KID.0);
    // Every track fragment: senc, saiz, saio; saio points at senc's first IV, from the moof.
    let moofs = boxes(&protected, b"moof");
    let trafs = boxes(&protected, b"traf");
    assert_eq!(trafs.len(), 6);
    for (traf_at, traf) in trafs {
        let moof_at = moofs.iter().rev().find(|(at, _)| *at < traf_at).unwrap().0;
        let children = |kind: &[u8; 4]| {
            let mut at = 8;
            let mut found = None;
            while at < traf.len() {
                let size = u32::from_be_bytes(traf[at..at + 4].try_into().unwrap()) as usize;
                if &traf[at + 4..at + 8] == kind {
                    found = Some((at, &traf[at..at + size]));
                }
                at += size;
            }
            found.unwrap_or_else(|| panic!("no {kind:?}"))
        };
        let (senc_at, senc) = children(b"senc");
        let (_, saiz) = children(b"saiz");
        let (_, saio) = children(b"saio");
        let count = u32::from_be_bytes(senc[12..16].try_into().unwrap());
        assert_eq!(u32::from_be_bytes(saiz[13..17].try_into().unwrap()), count);
        assert_eq!(u32::from_be_bytes(saio[12..16].try_into().unwrap()), 1);
        let offset = u32::from_be_bytes(saio[16..20].try_into().unwrap()) as usize;
        assert_eq!(moof_at + offset, traf_at + senc_at + 16);
        // Video samples carry subsamples (flag 2), audio whole samples (no flag).
        let flags = u32::from_be_bytes(senc[8..12].try_into().unwrap());
        assert!(flags == 0 || flags == 2);
    }
}

#[test]
fn video_samples_keep_their_nal_lengths_and_headers_clear() {
    let protected = protect();
    // The first video sample of the first fragment: the mdat's first bytes.
    let clear_mdat = boxes(CLEAR, b"mdat")[0].1;
    let protected_mdat = boxes(&protected, b"mdat")[0].1;
    assert_eq!(clear_mdat.len(), protected_mdat.len());
    assert_ne!(clear_mdat, protected_mdat);
    // Its NAL units: lengths and header bytes identical, slice bodies not.
    let (mut at, mut slices) = (8, 0);
    let first_sample_end = 8 + 0x9c9;
    while at < first_sample_end {
        let len = u32::from_be_bytes(clear_mdat[at..at + 4].try_into().unwrap()) as usize;
        assert_eq!(clear_mdat[at..at + 5], protected_mdat[at..at + 5]);
        if (1..=5).contains(&(clear_mdat[at + 4] & 0x1f)) && len > 17 {
            assert_ne!(
                clear_mdat[at + 5..at + 4 + len],
                protected_mdat[at + 5..at + 4 + len]
            );
            slices += 1;
        }
        at += 4 + len;
    }
    assert!(slices > 0);
}

#[test]
fn a_file_in_the_wrong_state_or_malformed_is_refused_never_a_panic() {
    let protected = protect();
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    assert!(matches!(
        treecast_cenc::encrypt(&protected, &key(), KID, &mut rng),
        Err(Error::WrongState(_))
    ));
    assert!(matches!(
        treecast_cenc::decrypt(CLEAR, &key()),
        Err(Error::WrongState(_))
    ));
    assert!(matches!(
        treecast_cenc::key_id(CLEAR),
        Err(Error::WrongState(_))
    ));
    assert!(matches!(
        treecast_cenc::encrypt(b"not an mp4 at all", &key(), KID, &mut rng),
        Err(Error::Malformed(_))
    ));
    // Samples listed in moov (a file made without empty_moov) would stay clear: refused.
    let mut listed = CLEAR.to_vec();
    let stsz = listed.windows(4).position(|w| w == b"stsz").unwrap();
    listed[stsz + 4 + 8..stsz + 4 + 12].copy_from_slice(&3u32.to_be_bytes());
    assert!(matches!(
        treecast_cenc::encrypt(&listed, &key(), KID, &mut rng),
        Err(Error::Unsupported(_))
    ));
    // Every truncation of both files, and bytes flipped through the boxes: typed errors or
    // (where the flip is in sample data) a file, never a panic.
    for cut in (0..CLEAR.len()).step_by(97) {
        let _ = treecast_cenc::encrypt(&CLEAR[..cut], &key(), KID, &mut rng);
        let _ = treecast_cenc::decrypt(&protected[..cut], &key());
    }
    for at in (0..4000).step_by(3) {
        let mut bad = protected.clone();
        bad[at] ^= 0x5a;
        let _ = treecast_cenc::decrypt(&bad, &key());
        let mut bad = CLEAR.to_vec();
        bad[at] ^= 0x5a;
        let _ = treecast_cenc::encrypt(&bad, &key(), KID, &mut rng);
    }
}

#[test]
fn keys_and_key_ids_are_32_hex_digits_and_keys_are_not_printed() {
    let key = CencKey::from_hex(" 000102030405060708090a0b0c0d0e0f\n").unwrap();
    assert_eq!(key.secret_bytes()[15], 15);
    assert_eq!(format!("{key:?}"), "CencKey(<redacted>)");
    for bad in [
        "",
        "00",
        "000102030405060708090a0b0c0d0e0g",
        "000102030405060708090a0b0c0d0e0f00",
    ] {
        assert!(matches!(CencKey::from_hex(bad), Err(Error::BadKey)));
        assert!(matches!(KeyId::from_hex(bad), Err(Error::BadKeyId)));
    }
    assert_eq!(KID.to_hex(), "a5".repeat(16));
    assert_eq!(KeyId::from_hex(&KID.to_hex()).unwrap(), KID);
}
