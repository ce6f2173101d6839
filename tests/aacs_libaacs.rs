//! The AACS profile checked against libaacs (Debian `libaacs-dev`), the AACS library of VLC and
//! other players: a small C program links it, opens a disc directory holding our `MKB_RO.inf`,
//! reads our KEYDB.cfg and prints the media key libaacs computes.
//!
//! Needs a C compiler and `libaacs-dev`; `.ci/run` installs the package and sets
//! `TREECAST_REQUIRE_LIBAACS=1`, which turns a missing library into a failure instead of a skip.

use std::path::{Path, PathBuf};
use std::process::Command;

use treecast_keytree::aacs::{self, AacsAuthority};
use treecast_keytree::{LeafIndex, MasterSecret, PayloadKey, RevocationSet, TreeId};

/// The helper: `mk DISC KEYDB` prints the media key libaacs computes, or exits 1.
const HELPER: &str = r#"
#include <stdio.h>
#include <libaacs/aacs.h>
int main(int argc, char **argv) {
    if (argc != 3) return 2;
    AACS *aacs = aacs_init();
    if (!aacs) return 3;
    aacs_open_device(aacs, argv[1], argv[2]);
    const uint8_t *mk = aacs_get_mk(aacs);
    if (!mk) { aacs_close(aacs); return 1; }
    for (int i = 0; i < 16; i++) printf("%02x", mk[i]);
    printf("\n");
    aacs_close(aacs);
    return 0;
}
"#;

/// Compiles the helper, or `None` when libaacs is not installed (and not required).
fn helper(dir: &Path) -> Option<PathBuf> {
    let required = std::env::var_os("TREECAST_REQUIRE_LIBAACS").is_some_and(|v| v == "1");
    if !Path::new("/usr/include/libaacs/aacs.h").exists() {
        assert!(
            !required,
            "TREECAST_REQUIRE_LIBAACS=1 but libaacs-dev is not installed"
        );
        eprintln!("libaacs-dev is not installed: the libaacs check is skipped");
        return None;
    }
    let source = dir.join("mk.c");
    std::fs::write(&source, HELPER).unwrap();
    let exe = dir.join("mk");
    let out = Command::new("cc")
        .arg("-o")
        .arg(&exe)
        .arg(&source)
        .arg("-laacs")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(exe)
}

/// A disc directory libaacs opens: our MKB, and a minimal unit key file (one CPS unit) that
/// libaacs needs to name the disc.
fn disc(dir: &Path, mkb: &[u8]) -> PathBuf {
    let disc = dir.join("disc");
    std::fs::create_dir_all(disc.join("AACS")).unwrap();
    std::fs::write(disc.join("AACS/MKB_RO.inf"), mkb).unwrap();
    let mut unit_keys = vec![0u8; 4096];
    unit_keys[..4].copy_from_slice(&0x40u32.to_be_bytes()); // where the key block starts
    unit_keys[16] = 1; // application type: BDMV
    unit_keys[17] = 1; // one BDMV directory
    unit_keys[0x40..0x42].copy_from_slice(&1u16.to_be_bytes()); // one unit key
    unit_keys[0x70..0x80].copy_from_slice(&[0x11; 16]); // a non-empty encrypted unit key
    std::fs::write(disc.join("AACS/Unit_Key_RO.inf"), unit_keys).unwrap();
    disc
}

/// Runs the helper with a fresh home, so that libaacs's key cache (keyed by disc) is empty.
fn libaacs_media_key(helper: &Path, disc: &Path, keydb: &Path, home: &Path) -> Option<String> {
    std::fs::create_dir_all(home).unwrap();
    let out = Command::new(helper)
        .arg(disc)
        .arg(keydb)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_CACHE_HOME", home.join("cache"))
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[test]
fn libaacs_computes_our_media_key_and_refuses_revoked_devices() {
    let dir = tempfile::tempdir().unwrap();
    let Some(helper) = helper(dir.path()) else {
        return;
    };
    let authority = AacsAuthority::new(&MasterSecret::from_bytes([8; 32]), TreeId(1)).unwrap();
    let media_key = PayloadKey::from_bytes(*b"libaacs-check-mk");
    let revoked_leaves = [5u32, 6, 1000, 1 << 29, (1 << 31) - 1];
    let revoked = RevocationSet::from_leaves(aacs::height(), revoked_leaves).unwrap();
    let mut mkb = authority
        .build_mkb(&media_key, &revoked, 3, [9; 8])
        .unwrap();
    aacs::mkb::pad_to_sectors(&mut mkb);
    let disc = disc(dir.path(), &mkb);
    let expected = hex::encode(media_key.secret_bytes());

    let mut run = 0;
    let mut check = |leaf: u32| {
        let keys = authority
            .device_keys(LeafIndex::new(leaf, aacs::height()).unwrap())
            .unwrap();
        let keydb = dir.path().join(format!("KEYDB-{leaf}.cfg"));
        std::fs::write(&keydb, keys.to_keydb().as_bytes()).unwrap();
        run += 1;
        libaacs_media_key(
            &helper,
            &disc,
            &keydb,
            &dir.path().join(format!("home{run}")),
        )
    };
    for leaf in [0, 4, 7, 999, 1001, 1 << 20, (1 << 29) + 1, (1 << 31) - 2] {
        assert_eq!(
            check(leaf).as_deref(),
            Some(expected.as_str()),
            "leaf {leaf}"
        );
    }
    for leaf in revoked_leaves {
        assert_eq!(check(leaf), None, "revoked leaf {leaf}");
    }
}

/// The leaves at the edges of the range and of each half of the tree (issue 13): libaacs
/// derives the media key for each when it is not revoked and none when it is, from the KEYDB.cfg
/// `aacs device-keys` writes (the published `DEVICE_NODE` form) and from one the test writes by
/// hand; `treecast aacs process` reads the hand-written one to the same key.
#[test]
fn libaacs_and_treecast_agree_at_the_edges_of_the_tree() {
    let dir = tempfile::tempdir().unwrap();
    let Some(helper) = helper(dir.path()) else {
        return;
    };
    let edges = [
        0u32,
        1,
        (1 << 30) - 1,
        1 << 30,
        (1 << 31) - 2,
        (1 << 31) - 1,
    ];
    let master = dir.path().join("authority.key");
    let keygen = crate::cli::treecast(&["keygen", "--out", master.to_str().unwrap()]);
    assert!(keygen.status.success(), "{keygen:?}");
    let media_key = "00112233445566778899aabbccddeeff";
    let media_key_file = dir.path().join("media.key");
    std::fs::write(&media_key_file, media_key).unwrap();
    let mut run = 0;
    for revoke_edges in [false, true] {
        let tag = if revoke_edges { "revoked" } else { "clear" };
        let revoked_file = dir.path().join(format!("revoked-{tag}.txt"));
        let mut revoked: Vec<u32> = vec![17, 1 << 29];
        if revoke_edges {
            revoked.extend(edges);
        }
        let list: String = revoked.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(&revoked_file, list).unwrap();
        let mkb_file = dir.path().join(format!("MKB-{tag}.inf"));
        let out = crate::cli::treecast(&[
            "aacs",
            "mkb",
            "--key",
            master.to_str().unwrap(),
            "--revoked",
            revoked_file.to_str().unwrap(),
            "--media-key-file",
            media_key_file.to_str().unwrap(),
            "--out",
            mkb_file.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{out:?}");
        let disc = disc(&dir.path().join(tag), &std::fs::read(&mkb_file).unwrap());
        for leaf in edges {
            let written = dir.path().join(format!("KEYDB-{tag}-{leaf}.cfg"));
            let out = crate::cli::treecast(&[
                "aacs",
                "device-keys",
                "--key",
                master.to_str().unwrap(),
                "--leaf",
                &leaf.to_string(),
                "--out",
                written.to_str().unwrap(),
            ]);
            assert!(out.status.success(), "{out:?}");
            let text = std::fs::read_to_string(&written).unwrap();
            assert!(
                text.contains(&format!("DEVICE_NODE 0x{:04X} ", leaf << 1)),
                "leaf {leaf}: not the published form"
            );
            // The same keys, written by hand in the published form.
            let by_hand = dir.path().join(format!("KEYDB-hand-{tag}-{leaf}.cfg"));
            let mut hand = String::from("; KEYDB.cfg written by hand\n");
            for line in text.lines().filter(|l| l.starts_with("| DK |")) {
                let field = |name: &str| {
                    line.split('|')
                        .map(str::trim)
                        .find_map(|f| f.strip_prefix(name).map(|v| v.trim().to_owned()))
                        .unwrap()
                };
                hand.push_str(&format!(
                    "| DK | DEVICE_KEY {} | DEVICE_NODE 0x{:08x} | KEY_UV {} | KEY_U_MASK_SHIFT {} ; by hand\n",
                    field("DEVICE_KEY"),
                    leaf << 1,
                    field("KEY_UV"),
                    field("KEY_U_MASK_SHIFT"),
                ));
            }
            std::fs::write(&by_hand, &hand).unwrap();
            let expected = (!revoke_edges).then(|| media_key.to_owned());
            for keydb in [&written, &by_hand] {
                run += 1;
                let got =
                    libaacs_media_key(&helper, &disc, keydb, &dir.path().join(format!("h{run}")));
                assert_eq!(
                    got,
                    expected,
                    "libaacs, leaf {leaf}, {tag}, {}",
                    keydb.display()
                );
            }
            let ours = crate::cli::treecast(&[
                "aacs",
                "process",
                "--mkb",
                mkb_file.to_str().unwrap(),
                "--keydb",
                by_hand.to_str().unwrap(),
            ]);
            if revoke_edges {
                crate::cli::assert_clean_failure(&ours, "revoked");
            } else {
                assert!(ours.status.success(), "{ours:?}");
                assert_eq!(crate::cli::stdout(&ours).trim(), media_key, "leaf {leaf}");
            }
        }
    }
}
