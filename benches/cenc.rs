//! Common Encryption packaging (issue 30): encrypting and decrypting the test file (3 s of
//! H.264 and AAC, 30 KB), against treecast's own container of the same bytes, in one run.

#![allow(clippy::expect_used, reason = "a benchmark fails loudly")]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand_core::SeedableRng;
use treecast::license::ContentId;
use treecast::license::content::{self, ContentKey};
use treecast_cenc::{CencKey, KeyId};

const CLEAR: &[u8] = include_bytes!("../cenc/tests/data/clear-fragmented.mp4");

fn packaging(c: &mut Criterion) {
    let mut group = c.benchmark_group("cenc");
    group.throughput(Throughput::Bytes(CLEAR.len() as u64));
    let key = CencKey::from_bytes([3; 16]);
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
    let protected = treecast_cenc::encrypt(CLEAR, &key, KeyId([1; 16]), &mut rng).expect("encrypt");
    group.bench_function("encrypt", |b| {
        b.iter(|| {
            treecast_cenc::encrypt(black_box(CLEAR), &key, KeyId([1; 16]), &mut rng)
                .expect("encrypt")
        })
    });
    group.bench_function("decrypt", |b| {
        b.iter(|| treecast_cenc::decrypt(black_box(&protected), &key).expect("decrypt"))
    });
    let content_key = ContentKey::generate(&mut rng);
    group.bench_function("treecast_container", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(CLEAR.len() + 4096);
            content::package(
                ContentId(1),
                1,
                content::DEFAULT_CHUNK,
                &content_key,
                content::Nonce::generate(&mut rng),
                black_box(CLEAR),
                &mut out,
            )
            .expect("package");
            out
        })
    });
    group.finish();
}

criterion_group!(benches, packaging);
criterion_main!(benches);
