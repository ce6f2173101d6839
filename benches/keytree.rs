//! Benches of the key tree: covers, EKB build, EKB open.
//!
//! Run with `cargo bench --bench keytree`; figures are recorded in `docs/performance.md`.
#![allow(
    missing_docs,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "bench setup fails loudly"
)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand_core::{Rng, SeedableRng};
use sha2::Digest;
use treecast::keytree::{
    Authority, Cover, Derivation, DeviceKeys, EkbIn, LeafIndex, MasterSecret, PayloadKey,
    RevocationSet, Scheme, TreeConfig, TreeHeight, TreeId,
};

/// `r` distinct random leaves of a tree of height `h`, from a fixed seed.
fn random_revoked(h: u8, r: usize, seed: u64) -> RevocationSet {
    let height = TreeHeight::new(h).expect("valid height");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut set = RevocationSet::new(height);
    let mask = (height.leaf_count() - 1) as u32;
    while set.len() < r {
        let want = r - set.len();
        set.extend((0..want).map(|_| rng.next_u32() & mask))
            .expect("leaves in range");
    }
    set
}

fn authority(scheme: Scheme, h: u8) -> Authority {
    let config = TreeConfig::new(scheme, TreeHeight::new(h).expect("valid height"), TreeId(1));
    Authority::new(&MasterSecret::from_bytes([7; 32]), config).expect("supported scheme")
}

const COVER_CASES: [(u8, usize); 5] = [
    (20, 100),
    (20, 1_000),
    (20, 10_000),
    (32, 1_000),
    (32, 100_000),
];
const SCHEMES: [Scheme; 2] = [Scheme::COMPLETE_SUBTREE, Scheme::SUBSET_DIFFERENCE];

/// Runs `work` for each scheme over `COVER_CASES`, in the group `<scheme>_<name>`.
fn sweep<T>(
    c: &mut Criterion,
    name: &str,
    samples: usize,
    work: impl Fn(&Authority, Scheme, &RevocationSet) -> T,
) {
    for scheme in SCHEMES {
        let mut group = c.benchmark_group(format!("{}_{name}", scheme.name()));
        group.sample_size(samples);
        for (h, r) in COVER_CASES {
            let auth = authority(scheme, h);
            let revoked = random_revoked(h, r, 1);
            group.throughput(Throughput::Elements(r as u64));
            group.bench_with_input(
                BenchmarkId::new(format!("h{h}"), r),
                &revoked,
                |b, revoked| b.iter(|| work(&auth, scheme, black_box(revoked))),
            );
        }
        group.finish();
    }
}

/// The cover alone.
fn cover(c: &mut Criterion) {
    sweep(c, "cover", 100, |_, scheme, revoked| {
        Cover::compute(scheme, revoked).expect("cover")
    });
}

/// The cover and the key of every subset (the NNL "cover plus subset keys" step), no wrapping or
/// signature.
fn cover_and_keys(c: &mut Criterion) {
    sweep(c, "cover_and_keys", 10, |auth, scheme, revoked| {
        let cover = Cover::compute(scheme, revoked).expect("cover");
        auth.hazmat_subset_keys(&cover).expect("keys")
    });
}

/// The whole EKB from the revoked set: cover, subset keys, wraps, signature. For SD this is the
/// work of the NNL "cover plus subset keys" step, plus one wrap and the signature.
fn ekb_from_revoked(c: &mut Criterion) {
    let payload = PayloadKey::from_bytes([1; 16]);
    sweep(c, "ekb_from_revoked", 10, |auth, _, revoked| {
        auth.build_ekb(&payload, revoked, 1).expect("build")
    });
}

/// The two derivations side by side (issue 29): an EKB build and a registration's key set,
/// flat against the seed tree (whose values walk down from the root) and against a license
/// server's delegation of half the tree.
fn derivation(c: &mut Criterion) {
    let payload = PayloadKey::from_bytes([1; 16]);
    for scheme in SCHEMES {
        let mut group = c.benchmark_group(format!("{}_derivation", scheme.name()));
        group.sample_size(10);
        let config = TreeConfig::new(scheme, TreeHeight::new(32).expect("h"), TreeId(1));
        let master = MasterSecret::from_bytes([7; 32]);
        let seeded = Authority::with_derivation(&master, config, Derivation::SeedTree)
            .expect("supported scheme");
        let flat = Authority::new(&master, config).expect("supported scheme");
        let revoked = random_revoked(32, 10_000, 3);
        for (name, auth) in [("flat", &flat), ("seed_tree", &seeded)] {
            group.bench_function(BenchmarkId::new("h32_ekb_build", name), |b| {
                b.iter(|| {
                    auth.build_ekb(&payload, black_box(&revoked), 1)
                        .expect("build")
                })
            });
            let leaf = LeafIndex::new(3_000_000_000, config.height).expect("leaf");
            group.bench_function(BenchmarkId::new("h32_device_keys", name), |b| {
                b.iter(|| auth.device_keys(black_box(leaf)))
            });
        }
        let delegation = seeded
            .delegate(treecast::keytree::NodeIndex::new(3, config.height).expect("node"))
            .expect("delegate");
        let leaf = LeafIndex::new(3_000_000_000, config.height).expect("leaf");
        group.bench_function(BenchmarkId::new("h32_device_keys", "delegation"), |b| {
            b.iter(|| {
                delegation
                    .device_keys(black_box(leaf))
                    .expect("in the subtree")
            })
        });
        group.finish();
    }
}

fn ekb_build(c: &mut Criterion) {
    let auth = authority(Scheme::COMPLETE_SUBTREE, 32);
    let payload = PayloadKey::from_bytes([1; 16]);
    // Derive + wrap + sign from a ready cover, to separate the per-subset cost.
    let mut group = c.benchmark_group("cs_ekb_build");
    group.sample_size(20);
    for r in [1_000, 10_000, 100_000] {
        let cover =
            Cover::compute(Scheme::COMPLETE_SUBTREE, &random_revoked(32, r, 2)).expect("cover");
        group.throughput(Throughput::Elements(cover.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("h32_subsets", cover.len()),
            &cover,
            |b, cover| {
                b.iter(|| {
                    auth.build_ekb_for_cover(&payload, black_box(cover), 1)
                        .expect("build")
                })
            },
        );
    }
    // The fixed cost inside every build: one Ed25519 signature (an EKB of one subset).
    let one = Cover::compute(
        Scheme::COMPLETE_SUBTREE,
        &RevocationSet::new(TreeHeight::new(32).expect("h")),
    )
    .expect("cover");
    group.throughput(Throughput::Elements(1));
    group.bench_function("h32_sign_only", |b| {
        b.iter(|| {
            auth.build_ekb_for_cover(&payload, black_box(&one), 1)
                .expect("build")
        })
    });
    // The per-byte cost inside every build: SHA-256 of the body (24 bytes a subset).
    let body = vec![0u8; 24 * 1_000_000];
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("sha256_24MB", |b| {
        b.iter(|| sha2::Sha256::digest(black_box(&body)))
    });
    group.finish();
}

fn ekb_open(c: &mut Criterion) {
    let payload = PayloadKey::from_bytes([1; 16]);
    for scheme in SCHEMES {
        let auth = authority(scheme, 32);
        let height = auth.config().height;
        let mut group = c.benchmark_group(format!("{}_ekb_open", scheme.name()));
        for r in [1_000, 100_000] {
            let revoked = random_revoked(32, r, 3);
            let signed = auth.build_ekb(&payload, &revoked, 1).expect("build");
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
            let devices: Vec<DeviceKeys> = (0..256)
                .map(|_| rng.next_u32())
                .filter(|l| !revoked.contains(*l))
                .map(|l| auth.device_keys(LeafIndex::new(l, height).expect("leaf")))
                .collect();
            let vk = auth.verifying_key();
            let verified = EkbIn::from_bytes(signed.as_bytes())
                .expect("decode")
                .verify(&vk)
                .expect("verify");
            group.throughput(Throughput::Elements(1));
            group.bench_function(BenchmarkId::new("h32_open_after_verify", r), |b| {
                let mut i = 0;
                b.iter(|| {
                    i = (i + 1) % devices.len();
                    devices[i].open(black_box(&verified)).expect("open")
                })
            });
            group.bench_function(BenchmarkId::new("h32_decode_and_verify", r), |b| {
                b.iter(|| {
                    EkbIn::from_bytes(black_box(signed.as_bytes()))
                        .expect("decode")
                        .verify(&vk)
                        .expect("verify")
                })
            });
        }
        group.finish();
    }
}

/// The AACS profile: MKB generation, and a device processing an MKB (parsed, and parse included).
fn aacs(c: &mut Criterion) {
    use treecast::keytree::aacs::{self, AacsAuthority, DeviceKeySet, Mkb};
    let auth =
        AacsAuthority::new(&MasterSecret::from_bytes([7; 32]), TreeId(1)).expect("authority");
    let media_key = PayloadKey::from_bytes([1; 16]);
    let mut group = c.benchmark_group("aacs");
    for r in [1_000, 10_000] {
        let revoked = random_revoked(aacs::HEIGHT, r, 5);
        group.bench_function(BenchmarkId::new("mkb_build", r), |b| {
            b.iter(|| {
                auth.build_mkb(&media_key, black_box(&revoked), 1, [0; 8])
                    .expect("build")
            })
        });
        let bytes = auth
            .build_mkb(&media_key, &revoked, 1, [0; 8])
            .expect("build");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(6);
        let devices: Vec<DeviceKeySet> = (0..64)
            .map(|_| rng.next_u32() >> 1)
            .filter(|l| !revoked.contains(*l))
            .map(|l| {
                let leaf = LeafIndex::new(l, aacs::height()).expect("leaf");
                auth.device_keys(leaf).expect("keys")
            })
            .collect();
        let mkb = Mkb::parse(&bytes).expect("parse");
        group.bench_function(BenchmarkId::new("device_process", r), |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % devices.len();
                devices[i].process(black_box(&mkb)).expect("process")
            })
        });
        group.bench_function(BenchmarkId::new("device_parse_and_process", r), |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % devices.len();
                let mkb = Mkb::parse(black_box(&bytes)).expect("parse");
                devices[i].process(&mkb).expect("process")
            })
        });
    }
    group.finish();
}

/// A whole trace (issue 16): a pirate box of `t` traitors (the first subset it can open) at
/// `h = 32`, traced until it is disabled, on both schemes.
fn trace(c: &mut Criterion) {
    use treecast::keytree::traitors::{self, PirateBox, Strategy, TraceParams};
    let mut group = c.benchmark_group("trace");
    group.sample_size(10);
    let height = TreeHeight::new(32).expect("valid height");
    for scheme in SCHEMES {
        let authority = authority(scheme, 32);
        for t in [1usize, 4, 16] {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(t as u64);
            let traitors: Vec<LeafIndex> = (0..t)
                .map(|_| LeafIndex::new(rng.next_u32(), height).expect("leaf"))
                .collect();
            group.bench_function(BenchmarkId::new(scheme.name(), t), |b| {
                b.iter(|| {
                    let mut pirate = PirateBox::new(&authority, &traitors, Strategy::First, 1.0, 1);
                    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
                    let out = traitors::trace(
                        &authority,
                        &RevocationSet::new(height),
                        &mut pirate,
                        &TraceParams::default(),
                        &mut rng,
                    )
                    .expect("trace");
                    assert!(out.disabled);
                    black_box(out.queries)
                });
            });
        }
    }
    group.finish();
}

/// Tracing a randomised box with the defaults (issue 26): `t` random traitors among leaves of
/// `h = 24` with 50 random leaves revoked, the box picking one of its subsets at random at every
/// query, traced until it is disabled; every named leaf a traitor.
fn trace_random(c: &mut Criterion) {
    use treecast::keytree::traitors::{self, PirateBox, Strategy, TraceParams};
    let mut group = c.benchmark_group("trace_random");
    group.sample_size(10);
    let height = TreeHeight::new(24).expect("valid height");
    for scheme in SCHEMES {
        let authority = authority(scheme, 24);
        for t in [2usize, 4, 16] {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(73 + t as u64);
            let mut leaves: Vec<u32> = (0..t + 50).map(|_| rng.next_u32() >> 8).collect();
            leaves.sort_unstable();
            leaves.dedup();
            let (traitor_leaves, revoked) = leaves.split_at(t.min(leaves.len()));
            let traitors: Vec<LeafIndex> = traitor_leaves
                .iter()
                .map(|&l| LeafIndex::new(l, height).expect("leaf"))
                .collect();
            let revoked = RevocationSet::from_leaves(height, revoked.to_vec()).expect("revoked");
            group.bench_function(BenchmarkId::new(scheme.name(), t), |b| {
                b.iter(|| {
                    let mut pirate =
                        PirateBox::new(&authority, &traitors, Strategy::Random, 1.0, 1);
                    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
                    let out = traitors::trace(
                        &authority,
                        &revoked,
                        &mut pirate,
                        &TraceParams::default(),
                        &mut rng,
                    )
                    .expect("trace");
                    assert!(out.disabled && out.traitors.iter().all(|l| traitors.contains(l)));
                    black_box(out.queries)
                });
            });
        }
    }
    group.finish();
}

criterion_group!(
    benches,
    aacs,
    trace,
    trace_random,
    cover,
    cover_and_keys,
    ekb_from_revoked,
    ekb_build,
    derivation,
    ekb_open
);
criterion_main!(benches);
