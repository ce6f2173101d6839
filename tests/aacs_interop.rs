//! The AACS profile checked against `oxideav-aacs`, a clean-room AACS device-side library we did
//! not write: it processes our MKBs with our KEYDB.cfg device keys, refuses our revoked devices,
//! and we process an MKB built record by record with its primitives alone.

use std::path::PathBuf;

use oxideav_aacs::AacsError;
use oxideav_aacs::aes::aes_128_ecb_encrypt;
use oxideav_aacs::keydb::KeyDb;
use oxideav_aacs::mkb::Mkb as OxMkb;
use oxideav_aacs::subdiff::aes_g3;
use oxideav_aacs::unit_key::{UnitKeyFile, UnitKeyFileHeader};
use oxideav_aacs::volume::{AacsVolume, DeviceKey as OxDeviceKey};
use treecast_keytree::aacs::{
    self, AacsAuthority, DeviceKeySet, ExplicitSubset, Mkb, ProcessingKeys, Uv,
};
use treecast_keytree::{
    Error, LeafIndex, MasterSecret, NodeIndex, PayloadKey, RevocationSet, TreeId,
};

const MEDIA_KEY: [u8; 16] = *b"treecast-media-k";

fn leaf(n: u32) -> LeafIndex {
    LeafIndex::new(n, aacs::height()).unwrap()
}

/// An oxideav volume holding just an MKB: its Subset-Difference pipeline needs nothing else.
fn volume(mkb: OxMkb) -> AacsVolume {
    AacsVolume {
        mkb,
        unit_key_file: UnitKeyFile {
            unit_key_block_start_address: 0,
            header: UnitKeyFileHeader {
                application_type: 1,
                num_of_bd_directory: 1,
                use_skb_unified_mkb: false,
                bd_directories: Vec::new(),
            },
            cps_units: Vec::new(),
        },
        cps_units: Vec::new(),
        disc_root: PathBuf::new(),
    }
}

/// oxideav's result for each of a device's keys: the media key when the key leads to one that
/// passes the Verify Media Key record.
fn oxideav_media_keys(vol: &AacsVolume, keys: &[OxDeviceKey]) -> Vec<Result<[u8; 16], AacsError>> {
    keys.iter()
        .map(|k| {
            let km = vol.derive_media_key_from_device_key(k)?;
            vol.mkb.verify_media_key(&km)?;
            Ok(km)
        })
        .collect()
}

/// A treecast key set as oxideav device keys.
fn to_oxideav(keys: &DeviceKeySet) -> Vec<OxDeviceKey> {
    keys.keys()
        .iter()
        .map(|k| OxDeviceKey {
            key: *k.key.secret_bytes(),
            uv: k.uv.get(),
            u_mask_zero_bits: k.u_mask_shift,
            v_mask_zero_bits: k.uv.mask_zero_bits(),
            device_node: Some(keys.device_number().get()),
        })
        .collect()
}

#[test]
fn oxideav_processes_our_mkb_with_our_keydb_and_refuses_revoked_devices() {
    let authority = AacsAuthority::new(&MasterSecret::from_bytes([3; 32]), TreeId(1)).unwrap();
    let media_key = PayloadKey::from_bytes(MEDIA_KEY);
    let revoked_leaves = [2u32, 3, 700, 20_000, 1 << 24, (1 << 31) - 1];
    let revoked = RevocationSet::from_leaves(aacs::height(), revoked_leaves).unwrap();
    let bytes = authority
        .build_mkb(&media_key, &revoked, 5, [7; 8])
        .unwrap();

    // oxideav reads the same records we do.
    let ox = OxMkb::parse(&bytes).unwrap();
    let ours = Mkb::parse(&bytes).unwrap();
    assert_eq!(ox.version, 5);
    assert_eq!(ox.mkb_type.map(|t| t.as_u32()), Some(aacs::mkb::MKB_TYPE_3));
    assert!(ox.end_of_block);
    let entries: Vec<ExplicitSubset> = ox
        .explicit_subdiff
        .iter()
        .map(|e| ExplicitSubset {
            u_mask_shift: e.u_mask_zero_bits,
            uv: e.uv,
        })
        .collect();
    assert_eq!(entries, ours.subsets().collect::<Vec<_>>());
    assert_eq!(ox.media_key_data.len(), entries.len());
    assert!(ox.is_verified_media_key(&MEDIA_KEY));
    let vol = volume(ox);

    // Devices whose number fits KEYDB.cfg's usual 4 hex digits go through oxideav's KEYDB
    // parser; the others are handed over key by key.
    for l in [0u32, 1, 4, 699, 701, 16_383, 20_001, 1 << 20, (1 << 31) - 2] {
        let keys = authority.device_keys(leaf(l)).unwrap();
        let ox_keys = if Uv::of_leaf(leaf(l)).get() <= 0xFFFF {
            let db = KeyDb::parse(&keys.to_keydb()).unwrap();
            assert_eq!(db.device_keys().len(), keys.keys().len());
            db.device_keys()
                .iter()
                .map(|r| OxDeviceKey {
                    key: r.device_key,
                    uv: u32::from_be_bytes(r.key_uv),
                    u_mask_zero_bits: r.key_u_mask_shift,
                    v_mask_zero_bits: (u32::from_be_bytes(r.key_uv).trailing_zeros() + 1) as u8,
                    device_node: Some(u32::from(u16::from_be_bytes(r.device_node))),
                })
                .collect()
        } else {
            to_oxideav(&keys)
        };
        let found: Vec<[u8; 16]> = oxideav_media_keys(&vol, &ox_keys)
            .into_iter()
            .flatten()
            .collect();
        // Exactly the one key that lies on the way to the applicable subset leads there.
        assert_eq!(found, vec![MEDIA_KEY], "leaf {l}");
        assert_eq!(keys.process(&ours).unwrap(), media_key, "leaf {l}");
    }
    for l in revoked_leaves {
        let keys = authority.device_keys(leaf(l)).unwrap();
        for result in oxideav_media_keys(&vol, &to_oxideav(&keys)) {
            assert!(matches!(result, Err(AacsError::DeviceRevoked)), "leaf {l}");
        }
        assert_eq!(keys.process(&ours), Err(Error::Revoked), "leaf {l}");
    }
}

/// One record: type, 3-byte length including the header, payload, zero padding to 4 bytes.
fn record(out: &mut Vec<u8>, record_type: u8, payload: &[u8]) {
    let len = (4 + payload.len()).next_multiple_of(4);
    out.push(record_type);
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    out.extend_from_slice(payload);
    out.resize(out.len() + len - 4 - payload.len(), 0);
}

/// Walks a label down the tree with oxideav's AES-G3: `bits` are the path bits, top first.
fn walk(mut label: [u8; 16], bits: &[bool]) -> [u8; 16] {
    for &right in bits {
        let g = aes_g3(&label);
        label = if right { g.right_child } else { g.left_child };
    }
    label
}

/// The path bits of a node below the root, top first.
fn path_bits(node: NodeIndex) -> Vec<bool> {
    (0..node.depth())
        .rev()
        .map(|i| (node.get() >> i) & 1 == 1)
        .collect()
}

#[test]
fn we_process_an_mkb_built_with_oxideav_primitives_alone() {
    let h = aacs::height();
    // One subset S(u, v): u at depth 3, v a leaf below it. Its processing key comes from a label
    // L(u, u) chosen here, walked down with oxideav's AES-G3.
    let u = NodeIndex::new(0b1010, h).unwrap();
    let l_uu = [0x5Au8; 16];
    let v_leaf = leaf((0b010 << 28) | 12_345);
    let v = v_leaf.node(h);
    assert!(u.contains(v));
    let v_uv = Uv::from_node(v).unwrap().get();
    let below_u = |n: NodeIndex| path_bits(n).split_off(3);
    let processing_key = aes_g3(&walk(l_uu, &below_u(v))).processing_key;
    let mut plain = MEDIA_KEY;
    for (b, x) in plain[12..].iter_mut().zip(v_uv.to_be_bytes()) {
        *b ^= x;
    }
    let media_key_data = aes_128_ecb_encrypt(&processing_key, &plain);
    let mut sentinel = [0u8; 16];
    sentinel[..8].copy_from_slice(&[0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF]);
    sentinel[8..].copy_from_slice(b"nonce!!!");
    let verify = aes_128_ecb_encrypt(&MEDIA_KEY, &sentinel);

    // The records in the order of a pressed disc, with records we do not know among them.
    let mut bytes = Vec::new();
    record(&mut bytes, 0x10, &[0x00, 0x03, 0x10, 0x03, 0, 0, 0, 68]);
    record(&mut bytes, 0x21, &[0, 0, 0, 0, 0, 0, 0, 0]); // an empty Host Revocation List
    record(&mut bytes, 0x20, &[0, 0, 0, 0, 0, 0, 0, 0]); // an empty Drive Revocation List
    record(&mut bytes, 0x81, &verify);
    let mut sd = vec![29];
    sd.extend_from_slice(&v_uv.to_be_bytes());
    sd.extend_from_slice(&[0xC0, 0, 0, 0, 0]); // the end-of-list marker
    record(&mut bytes, 0x04, &sd);
    record(&mut bytes, 0x07, &[0, 0, 0, 1, 0, 0, 0]); // a Subset-Difference Index
    record(&mut bytes, 0x05, &media_key_data);
    record(&mut bytes, 0x02, &[0; 40]); // an ECDSA-sized signature we cannot check
    bytes.resize(bytes.len() + 100, 0); // sector padding
    assert!(
        OxMkb::parse(&bytes)
            .unwrap()
            .is_verified_media_key(&MEDIA_KEY)
    );

    // A device under u beside v holds L(u, w) for each w hanging off its path below u; it writes
    // them as KEYDB.cfg lines by hand.
    let keydb_for = |device: LeafIndex| -> String {
        let node = device.node(h);
        let bits = below_u(node);
        let mut text =
            String::from("; written by the test\n| PK | 0x00000000000000000000000000000000\n");
        for depth in 4..=31u8 {
            let on_path = node.ancestor(depth).unwrap();
            let w = NodeIndex::new(on_path.get() ^ 1, h).unwrap();
            let mut w_bits = bits[..usize::from(depth - 3)].to_vec();
            *w_bits.last_mut().unwrap() ^= true;
            let label = walk(l_uu, &w_bits);
            text.push_str(&format!(
                "| DK | DEVICE_KEY 0x{} | DEVICE_NODE 0x{:08X} | KEY_UV 0x{:08X} | KEY_U_MASK_SHIFT 0x1D ; depth {depth}\n",
                hex::encode_upper(label),
                Uv::of_leaf(device).get(),
                Uv::from_node(w).unwrap().get(),
            ));
        }
        text
    };
    let mkb = Mkb::parse(&bytes).unwrap();
    assert_eq!(mkb.unknown_records(), 3);
    for device in [(0b010 << 28) | 12_344, 0b010 << 28, (0b011 << 28) - 1] {
        let keys = DeviceKeySet::from_keydb(&keydb_for(leaf(device))).unwrap();
        assert_eq!(
            keys.process(&mkb).unwrap(),
            PayloadKey::from_bytes(MEDIA_KEY),
            "{device}"
        );
    }
    // v itself is revoked; a device outside u is covered by no subset.
    let revoked = DeviceKeySet::from_keydb(&keydb_for(v_leaf)).unwrap();
    assert_eq!(revoked.process(&mkb), Err(Error::Revoked));
    let outside = AacsAuthority::new(&MasterSecret::from_bytes([1; 32]), TreeId(1))
        .unwrap()
        .device_keys(leaf(0))
        .unwrap();
    assert_eq!(outside.process(&mkb), Err(Error::Revoked));

    // Issue 13: a published processing key (computed above with oxideav's AES-G3 alone) derives
    // the media key, through the library and through `treecast aacs process --pk`, as libaacs
    // does; a key for no subset of this MKB derives nothing.
    let pk_text = format!(
        "; published processing keys\n| PK | 0x{} ; another disc\n| PK | 0x{} ; this one\n",
        hex::encode_upper([0x11u8; 16]),
        hex::encode_upper(processing_key)
    );
    let pks = ProcessingKeys::from_keydb(&pk_text).unwrap();
    assert_eq!(pks.keys().len(), 2);
    assert_eq!(
        pks.process(&mkb).unwrap(),
        PayloadKey::from_bytes(MEDIA_KEY)
    );
    let wrong = ProcessingKeys::from_keydb("| PK | 0x00112233445566778899AABBCCDDEEFF\n").unwrap();
    assert_eq!(wrong.process(&mkb), Err(Error::UnwrapFailed));
    let dir = tempfile::tempdir().unwrap();
    let mkb_file = dir.path().join("MKB_RO.inf");
    let pk_file = dir.path().join("KEYDB.cfg");
    std::fs::write(&mkb_file, &bytes).unwrap();
    std::fs::write(&pk_file, &pk_text).unwrap();
    let out = crate::cli::treecast(&[
        "aacs",
        "process",
        "--mkb",
        mkb_file.to_str().unwrap(),
        "--pk",
        pk_file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(crate::cli::stdout(&out).trim(), hex::encode(MEDIA_KEY));
}
