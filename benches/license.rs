//! Benches of the contents distribution system: license issue, certificate issue, a whole move
//! beside the Ed25519 work it needs, and content play.
//!
//! Run with `cargo bench --bench license`; figures are recorded in `docs/performance.md`.
#![allow(
    missing_docs,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "bench setup fails loudly"
)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use treecast::keytree::{Authority, MasterSecret, Scheme, TreeConfig, TreeHeight, TreeId};
use treecast::license::Registry;
use treecast::license::content::{self, ContentKey};
use treecast::license::registry::{Durability, SqliteRegistry};
use treecast::license::{
    Client, ContentId, Distributor, DistributorConfig, LicenseServer, ManualClock, MemoryRegistry,
    ServerId, SigningKey, Tariff, UnixTime,
};

struct Setup<R = MemoryRegistry> {
    distributor: Distributor<R>,
    a: Client,
    b: Client,
    content: ContentId,
    rng: ChaCha20Rng,
}

const NOW: UnixTime = UnixTime(1_800_000_000);

fn setup(content_len: usize) -> Setup {
    setup_on(
        content_len,
        MemoryRegistry::new(TreeHeight::new(32).expect("height")),
    )
}

fn setup_on<R: Registry>(content_len: usize, registry: R) -> Setup<R> {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let height = TreeHeight::new(32).expect("height");
    let authority = Authority::new(
        &MasterSecret::generate(&mut rng),
        TreeConfig::new(Scheme::COMPLETE_SUBTREE, height, TreeId(1)),
    )
    .expect("authority");
    let servers = [
        LicenseServer::generate(ServerId(1), &mut rng),
        LicenseServer::generate(ServerId(2), &mut rng),
    ];
    let distributor = Distributor::new(
        authority,
        servers,
        registry,
        Tariff::default(),
        Arc::new(ManualClock::new(NOW)),
        DistributorConfig::default(),
    );
    let user = distributor.register_user().expect("user");
    let mut client = |server| {
        let key = SigningKey::generate(&mut rng);
        let reg = distributor
            .register_client(user, ServerId(server), &key.verifying_key())
            .expect("register");
        let mut c = Client::new(key, reg).expect("client");
        c.store_ekb(distributor.current_ekb().expect("ekb").1.as_bytes())
            .expect("ekb");
        c
    };
    let mut a = client(1);
    let b = client(2);
    let mut container = Vec::new();
    let plain = vec![0x42u8; content_len];
    let record = distributor
        .publish(&plain[..], &mut container, &mut rng)
        .expect("publish");
    a.store_content(container).expect("store");
    let license = distributor
        .supply_license(a.license_request(record.id, NOW).as_bytes())
        .expect("license");
    a.acquire_license(license.as_bytes()).expect("acquire");
    Setup {
        distributor,
        a,
        b,
        content: record.id,
        rng,
    }
}

/// One whole move of the license, from `a` to `b`; then `a` and `b` swap roles.
fn bounce<R: Registry>(s: &mut Setup<R>) {
    let license = s.a.license_id(s.content).expect("held");
    let request = s.a.move_request(license, s.b.id(), NOW);
    let cert = s
        .distributor
        .supply_certificate(request.as_bytes())
        .expect("certificate");
    let package = s.a.move_out(cert.as_bytes()).expect("out");
    s.b.move_in(&package, NOW).expect("in");
    std::mem::swap(&mut s.a, &mut s.b);
}

fn issue(c: &mut Criterion) {
    let mut s = setup(1024);
    let mut group = c.benchmark_group("license");
    group.bench_function("license_issue", |b| {
        b.iter(|| {
            let request = s.a.license_request(s.content, NOW);
            s.distributor
                .supply_license(black_box(request.as_bytes()))
                .expect("license")
        })
    });
    group.finish();
    let _ = &mut s.rng;
}

/// One whole move per iteration, bouncing the license between the two clients, beside the
/// Ed25519 work a move needs: the source signs the request, the server verifies it and signs the
/// destination's license and the certificate, the destination verifies both.
fn moves(c: &mut Criterion) {
    let mut s = setup(1024);
    let mut group = c.benchmark_group("move");
    // Times only the server's part; the move is completed outside the timing so that the next
    // request is valid again.
    group.bench_function("certificate_issue", |b| {
        b.iter_custom(|iters| {
            let mut timed = std::time::Duration::ZERO;
            for _ in 0..iters {
                let license = s.a.license_id(s.content).expect("held");
                let request = s.a.move_request(license, s.b.id(), NOW);
                let started = std::time::Instant::now();
                let cert = s
                    .distributor
                    .supply_certificate(black_box(request.as_bytes()))
                    .expect("certificate");
                timed += started.elapsed();
                let package = s.a.move_out(cert.as_bytes()).expect("out");
                s.b.move_in(&package, NOW).expect("in");
                std::mem::swap(&mut s.a, &mut s.b);
            }
            timed
        })
    });
    group.bench_function("whole_move", |b| b.iter(|| bounce(&mut s)));
    // The same signatures on messages of the same sizes: request 69 B, license 115 B,
    // certificate 197 B (payloads).
    let keys: Vec<SigningKey> = (0..3).map(|_| SigningKey::generate(&mut s.rng)).collect();
    let messages = [vec![1u8; 69 + 25], vec![2u8; 115 + 20], vec![3u8; 197 + 29]];
    group.bench_function("ed25519_3_sign_3_verify", |b| {
        use ed25519_dalek::Signer;
        b.iter(|| {
            for (key, msg) in keys.iter().zip(&messages) {
                let sig = key.sign(black_box(msg));
                key.verifying_key()
                    .verify_strict(msg, &sig)
                    .expect("verify");
            }
        })
    });
    group.finish();
}

fn play(c: &mut Criterion) {
    const MIB: usize = 1 << 20;
    let s = setup(MIB);
    let mut group = c.benchmark_group("content");
    group.throughput(Throughput::Bytes(MIB as u64));
    let mut out = Vec::with_capacity(MIB);
    group.bench_function("play_1MiB", |b| {
        b.iter(|| {
            out.clear();
            s.a.play(s.content, &mut out).expect("play")
        })
    });
    let key = ContentKey::from_bytes([9; 16]);
    let mut nonces = rand_chacha::ChaCha20Rng::seed_from_u64(5);
    let plain = vec![7u8; MIB];
    let mut packed = Vec::new();
    content::package(
        ContentId(1),
        1,
        content::DEFAULT_CHUNK,
        &key,
        content::Nonce::generate(&mut nonces),
        &plain[..],
        &mut packed,
    )
    .expect("package");
    group.bench_function("decrypt_1MiB", |b| {
        b.iter(|| {
            out.clear();
            content::open(&key, black_box(&packed[..]), &mut out).expect("open")
        })
    });
    group.bench_function("package_1MiB", |b| {
        let mut sink = Vec::with_capacity(MIB + 4096);
        b.iter(|| {
            sink.clear();
            content::package(
                ContentId(1),
                1,
                content::DEFAULT_CHUNK,
                &key,
                content::Nonce::generate(&mut nonces),
                black_box(&plain[..]),
                &mut sink,
            )
            .expect("package")
        })
    });
    group.finish();
}

/// License supply and whole moves on each store, in one run, for the ratios.
fn stores(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let height = TreeHeight::new(32).expect("height");
    let mut group = c.benchmark_group("store");
    let mut run = |name: &str, mut s: Setup<Box<dyn Registry>>| {
        // The server's side of license supply: requests are signed by the clients beforehand.
        group.bench_function(format!("{name}/license_supply"), |b| {
            b.iter_custom(|iters| {
                let requests: Vec<_> = (0..iters)
                    .map(|_| s.a.license_request(s.content, NOW))
                    .collect();
                let started = std::time::Instant::now();
                for r in &requests {
                    s.distributor
                        .supply_license(black_box(r.as_bytes()))
                        .expect("license");
                }
                started.elapsed()
            })
        });
        // The same on two threads at once (this machine has two cores).
        group.bench_function(format!("{name}/license_supply_2_threads"), |b| {
            b.iter_custom(|iters| {
                let half = iters.div_ceil(2);
                let batches: Vec<Vec<_>> = [&mut s.a, &mut s.b]
                    .into_iter()
                    .map(|c| {
                        (0..half)
                            .map(|_| c.license_request(s.content, NOW))
                            .collect()
                    })
                    .collect();
                let d = &s.distributor;
                let started = std::time::Instant::now();
                std::thread::scope(|scope| {
                    for batch in &batches {
                        scope.spawn(move || {
                            for r in batch {
                                d.supply_license(black_box(r.as_bytes())).expect("license");
                            }
                        });
                    }
                });
                started.elapsed().mul_f64(iters as f64 / (2 * half) as f64)
            })
        });
        group.bench_function(format!("{name}/whole_move"), |b| b.iter(|| bounce(&mut s)));
    };
    run(
        "memory",
        setup_on(1024, Box::new(MemoryRegistry::new(height))),
    );
    let process = SqliteRegistry::open(&dir.path().join("process.sqlite"), height).expect("sqlite");
    run("sqlite_process", setup_on(1024, Box::new(process)));
    let power =
        SqliteRegistry::open_with(&dir.path().join("power.sqlite"), height, Durability::Power)
            .expect("sqlite");
    run("sqlite_power", setup_on(1024, Box::new(power)));
    group.finish();
}

criterion_group!(benches, issue, moves, play, stores);
criterion_main!(benches);
