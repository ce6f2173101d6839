//! The cover sizes of the shared vectors (`tests/data/cover`), computed by an independent
//! reference from the Steiner tree of the revoked leaves.

use std::path::PathBuf;

use serde_json::Value;
use treecast::keytree::{Cover, RevocationSet, Scheme, TreeHeight};

pub(crate) fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/cover")
}

/// Each vector: (file, height, revoked set, expected sizes object).
pub(crate) fn vectors() -> Vec<(String, RevocationSet, Value)> {
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(data_dir().join("expected.json")).unwrap())
            .unwrap();
    let list = expected.as_array().unwrap();
    assert_eq!(list.len(), 11, "every vector file is listed");
    list.iter()
        .map(|v| {
            let file = v["file"].as_str().unwrap().to_owned();
            let height = TreeHeight::new(v["height"].as_u64().unwrap() as u8).unwrap();
            let text = std::fs::read_to_string(data_dir().join(&file)).unwrap();
            let leaves = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| l.trim().parse::<u32>().unwrap());
            let set = RevocationSet::from_leaves(height, leaves).unwrap();
            assert_eq!(
                set.len() as u64,
                v["revoked"].as_u64().unwrap(),
                "{file}: revoked count"
            );
            (file, set, v.clone())
        })
        .collect()
}

#[test]
fn cs_cover_sizes_match_the_reference() {
    for (file, revoked, expected) in vectors() {
        let cover = Cover::compute(Scheme::COMPLETE_SUBTREE, &revoked).unwrap();
        assert_eq!(
            cover.len() as u64,
            expected["cs"].as_u64().unwrap(),
            "{file}: CS cover size"
        );
    }
}

#[test]
fn sd_cover_sizes_match_the_reference() {
    for (file, revoked, expected) in vectors() {
        let cover = Cover::compute(Scheme::SUBSET_DIFFERENCE, &revoked).unwrap();
        assert_eq!(
            cover.len() as u64,
            expected["sd"].as_u64().unwrap(),
            "{file}: SD cover size"
        );
        if !revoked.is_empty() {
            assert!(
                cover.len() < 2 * revoked.len(),
                "{file}: more than 2r-1 subsets"
            );
        }
    }
}
