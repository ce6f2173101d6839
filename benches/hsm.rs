//! What a license server's signature costs in a PKCS#11 token against in memory (issue 29,
//! item 4). The token's half runs when `TREECAST_BENCH_HSM_KEYS` names a key file made by
//! `treecast keygen --hsm` (and `SOFTHSM2_CONF` its token's configuration):
//! `scripts/hsm-bench.sh` makes both with SoftHSM2 and runs this. Without them, the memory half
//! runs alone.

#![allow(clippy::expect_used, reason = "a benchmark fails loudly")]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use rand_core::SeedableRng;
use treecast::license::{LicenseServer, ServerId};
use treecast_distributor::keyfile::DistributorKeys;

fn server_sign(c: &mut Criterion) {
    // About a license's size: what a supply signs.
    let message = [7u8; 200];
    let mut group = c.benchmark_group("server_sign");
    let memory =
        LicenseServer::generate(ServerId(1), &mut rand_chacha::ChaCha20Rng::seed_from_u64(1));
    group.bench_function("memory", |b| {
        b.iter(|| memory.sign_bytes(black_box(&message)).expect("sign"))
    });
    match std::env::var_os("TREECAST_BENCH_HSM_KEYS") {
        Some(path) => {
            let keys = DistributorKeys::load(std::path::Path::new(&path)).expect("HSM key file");
            let server = keys.servers().first().expect("a server").clone();
            assert!(
                server.token_key().is_some(),
                "the key file's keys are not in a token"
            );
            group.bench_function("token", |b| {
                b.iter(|| server.sign_bytes(black_box(&message)).expect("sign"))
            });
        }
        None => eprintln!(
            "TREECAST_BENCH_HSM_KEYS is not set: the token's half is skipped (scripts/hsm-bench.sh)"
        ),
    }
    group.finish();
}

criterion_group!(benches, server_sign);
criterion_main!(benches);
