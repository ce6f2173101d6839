//! Subset tracing on random trees and coalitions (issue 16): the box is disabled every time, a
//! deterministic box gives up exactly its traitors and no innocent leaf, the number of splits
//! and queries stays within the bound below, and the final cover works as an EKB for everyone
//! else.
//!
//! The bound checked: every split halves a subset that holds a traitor, so a traitor causes at
//! most `h` splits under Complete Subtree and `2h` under Subset Difference (an `S(u, v)` may
//! first give the subtree `S(u, k)` at the same top, then halves at the next depth). Each round
//! (a split or a traitor found) makes at most `⌈log2 m⌉ + 1` estimates, `m` the cover's size,
//! which is at most the initial size plus the splits. NNL 2001 (§5.2) states the same orders:
//! `t · log N` rounds of `log m` estimates each.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

use std::collections::BTreeSet;

use proptest::prelude::{Just, ProptestConfig, Strategy as _, proptest};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use super::*;
use crate::{MasterSecret, TreeConfig, TreeId};

fn authority(scheme: Scheme, height: TreeHeight) -> Authority {
    Authority::new(
        &MasterSecret::from_bytes([8; 32]),
        TreeConfig::new(scheme, height, TreeId(1)),
    )
    .unwrap()
}

fn check(scheme: Scheme, h: u8, revoked: &[u32], traitors: &[u32], strategy: Strategy) {
    let height = TreeHeight::new(h).unwrap();
    let a = authority(scheme, height);
    let revoked_set = RevocationSet::from_leaves(height, revoked.to_vec()).unwrap();
    let traitor_leaves: Vec<LeafIndex> = traitors
        .iter()
        .map(|&l| LeafIndex::new(l, height).unwrap())
        .collect();
    let mut pirate = PirateBox::new(&a, &traitor_leaves, strategy, 1.0, 3);
    let mut rng = ChaCha20Rng::seed_from_u64(u64::from(h) + traitors.len() as u64);
    let out = trace(
        &a,
        &revoked_set,
        &mut pirate,
        &TraceParams::default(),
        &mut rng,
    )
    .unwrap();
    let t = traitors.len() as u64;
    assert!(out.disabled, "the box still decrypts");
    let found: BTreeSet<u32> = out.traitors.iter().map(|l| l.get()).collect();
    let expected: BTreeSet<u32> = traitors.iter().copied().collect();
    assert_eq!(found, expected, "every traitor, and only traitors");
    assert_eq!(out.innocent_excluded, 0);
    let per_traitor = if scheme == Scheme::COMPLETE_SUBTREE {
        1
    } else {
        2
    };
    assert!(
        out.splits <= per_traitor * t * u64::from(h),
        "{} splits for {t} traitors at height {h}",
        out.splits
    );
    // The final cover: the initial one, one more subset per split, one fewer per traitor.
    assert_eq!(
        out.cover.len() as u64,
        out.initial_subsets as u64 + out.splits - t,
        "cover size"
    );
    assert!(out.cover.len() as u64 <= out.initial_subsets as u64 + per_traitor * t * u64::from(h));
    let m = (out.initial_subsets as u64 + out.splits).max(2);
    let per_round = 64 - (m - 1).leading_zeros() as u64 + 1;
    let rounds = out.splits + t + 1;
    assert!(
        out.queries <= rounds * per_round,
        "{} queries for {rounds} rounds of at most {per_round}",
        out.queries
    );
    // The final cover is an EKB every other device opens, and no traitor.
    let payload = PayloadKey::from_bytes([5; 16]);
    let built = a.build_ekb_for_cover(&payload, &out.cover, 9).unwrap();
    let ekb = crate::VerifiedEkbBuf::verify(built.into_bytes(), &a.verifying_key()).unwrap();
    for leaf in 0..(1u32 << h) {
        let keys = a.device_keys(LeafIndex::new(leaf, height).unwrap());
        let opened = keys.open(&ekb.get());
        if revoked.contains(&leaf) || traitors.contains(&leaf) {
            assert!(
                opened.is_err(),
                "leaf {leaf} (revoked or traitor) opens the EKB"
            );
        } else {
            assert_eq!(
                opened.unwrap(),
                payload,
                "leaf {leaf} does not open the EKB"
            );
        }
    }
}

fn case() -> impl proptest::strategy::Strategy<Value = (u8, Vec<u32>, Vec<u32>)> {
    (3u8..=8).prop_flat_map(|h| {
        let n = 1u32 << h;
        (
            Just(h),
            proptest::collection::btree_set(0..n, 0..6),
            proptest::collection::btree_set(0..n, 1..=16),
        )
            .prop_map(|(h, revoked, traitors)| {
                let traitors: Vec<u32> = traitors
                    .into_iter()
                    .filter(|t| !revoked.contains(t))
                    .collect();
                (h, revoked.into_iter().collect(), traitors)
            })
            .prop_filter("a traitor", |(_, _, t)| !t.is_empty())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn complete_subtree_traces_every_coalition((h, revoked, traitors) in case()) {
        check(Scheme::COMPLETE_SUBTREE, h, &revoked, &traitors, Strategy::First);
        check(Scheme::COMPLETE_SUBTREE, h, &revoked, &traitors, Strategy::Every);
    }

    #[test]
    fn subset_difference_traces_every_coalition((h, revoked, traitors) in case()) {
        check(Scheme::SUBSET_DIFFERENCE, h, &revoked, &traitors, Strategy::First);
        check(Scheme::SUBSET_DIFFERENCE, h, &revoked, &traitors, Strategy::Every);
    }
}

/// A box that picks its subset at random is traced with enough queries per estimate: every
/// leaf it names is a traitor, and it ends disabled.
#[test]
fn a_randomised_box_is_traced_with_sampling() {
    for scheme in [Scheme::COMPLETE_SUBTREE, Scheme::SUBSET_DIFFERENCE] {
        let height = TreeHeight::new(8).unwrap();
        let a = authority(scheme, height);
        let traitors: Vec<LeafIndex> = [3u32, 77, 200]
            .iter()
            .map(|&l| LeafIndex::new(l, height).unwrap())
            .collect();
        let mut pirate = PirateBox::new(&a, &traitors, Strategy::Random, 1.0, 11);
        let params = TraceParams {
            samples: 400,
            ..TraceParams::default()
        };
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let out = trace(
            &a,
            &RevocationSet::new(height),
            &mut pirate,
            &params,
            &mut rng,
        )
        .unwrap();
        assert!(out.disabled);
        assert!(
            out.traitors.iter().all(|l| traitors.contains(l)),
            "{:?}",
            out.traitors
        );
        assert_eq!(out.innocent_excluded, 0);
    }
}

/// A noisy box (decrypting 90 % of what it can) counts as disabled below the threshold.
#[test]
fn a_noisy_box_is_disabled() {
    let height = TreeHeight::new(6).unwrap();
    let a = authority(Scheme::COMPLETE_SUBTREE, height);
    let traitors = [LeafIndex::new(9, height).unwrap()];
    let mut pirate = PirateBox::new(&a, &traitors, Strategy::First, 0.9, 5);
    let params = TraceParams {
        samples: 200,
        ..TraceParams::default()
    };
    let mut rng = ChaCha20Rng::seed_from_u64(6);
    let out = trace(
        &a,
        &RevocationSet::new(height),
        &mut pirate,
        &params,
        &mut rng,
    )
    .unwrap();
    assert!(out.disabled);
    assert_eq!(out.traitors, traitors);
}

/// A box with no traitor key is disabled at once; the cover is unchanged.
#[test]
fn a_box_without_keys_is_disabled_at_once() {
    let height = TreeHeight::new(6).unwrap();
    let a = authority(Scheme::SUBSET_DIFFERENCE, height);
    let mut pirate = PirateBox::new(&a, &[], Strategy::First, 1.0, 5);
    let mut rng = ChaCha20Rng::seed_from_u64(6);
    let out = trace(
        &a,
        &RevocationSet::new(height),
        &mut pirate,
        &TraceParams::default(),
        &mut rng,
    )
    .unwrap();
    assert!(out.disabled);
    assert_eq!((out.queries, out.splits, out.cover.len()), (1, 0, 1));
}

#[test]
fn the_samples_for_a_confidence_follow_hoeffding() {
    // ln(2 / 0.05) / (2 · 0.1²) = 184.4…
    assert_eq!(TraceParams::samples_for(0.1, 0.05), 185);
    assert_eq!(TraceParams::samples_for(2.0, 0.5), 1);
}
