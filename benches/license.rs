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
use treecast::license::registry::{Durability, PostgresRegistry, SqliteRegistry};
use treecast::license::{
    Client, ContentId, Distributor, DistributorConfig, LicenseServer, ManualClock, MemoryRegistry,
    Registration, ServerId, SigningKey, Tariff, UnixTime,
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
    )
    .expect("distributor");
    let mut container = Vec::new();
    let plain = vec![0x42u8; content_len];
    let record = distributor
        .publish(&plain[..], &mut container, &mut rng)
        .expect("publish");
    let (mut a, b) = another_pair(&distributor, &mut rng, record.id);
    a.store_content(container).expect("store");
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

/// A registration as the service answers it (issue 24): in the clear as before (`register`), and
/// with the device's signed request verified, the answer sealed to the device with HPKE and
/// opened by it (`register_sealed`), so that the difference is what issue 24 adds;
/// `hpke_seal_open` is HPKE alone, on one registration.
fn registration(c: &mut Criterion) {
    use treecast::license::registration::{RegistrationKey, RegistrationRequest};
    let mut s = setup(16);
    let mut group = c.benchmark_group("registration");
    let key = SigningKey::generate(&mut s.rng);
    let opener = RegistrationKey::derive(&key).expect("registration key");
    group.bench_function("register", |b| {
        b.iter(|| {
            let user = s.distributor.register_user().expect("user");
            let registration = s
                .distributor
                .register_client(user, ServerId(1), &key.verifying_key())
                .expect("register");
            Client::new(key.clone(), black_box(registration)).expect("client")
        })
    });
    group.bench_function("register_sealed", |b| {
        b.iter(|| {
            let user = s.distributor.register_user().expect("user");
            // The device signs its request; the service verifies it, registers and seals.
            let sent = RegistrationRequest::new(user, ServerId(1), &key).expect("request");
            let sealed = s
                .distributor
                .register_sealed(user, &sent.to_bytes(), &mut s.rng)
                .expect("register");
            let opener = RegistrationKey::derive(&key).expect("registration key");
            let registration =
                Registration::open_sealed(black_box(&sealed), &opener, &sent).expect("open");
            Client::new(key.clone(), registration).expect("client")
        })
    });
    let user = s.distributor.register_user().expect("user");
    let request = RegistrationRequest::new(user, ServerId(1), &key).expect("request");
    let one = s
        .distributor
        .register_client(user, ServerId(1), &key.verifying_key())
        .expect("register");
    group.bench_function("hpke_seal_open", |b| {
        b.iter(|| {
            let sealed = one.seal(&request, &mut s.rng).expect("seal");
            Registration::open_sealed(black_box(&sealed), &opener, &request).expect("open")
        })
    });
    group.finish();
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

/// The throwaway PostgreSQL clusters of the tests, for the PostgreSQL rows.
#[path = "../tests/pg.rs"]
#[allow(
    dead_code,
    clippy::unwrap_used,
    clippy::panic,
    reason = "the benches use part of the tests' harness, which fails loudly"
)]
mod pg;

/// One distributor and `workers` users, each with two clients and one license to bounce.
struct Workers<R> {
    distributor: Distributor<R>,
    pairs: Vec<(Client, Client, ContentId)>,
}

fn workers_on<R: Registry>(registry: R, workers: usize) -> Workers<R> {
    let Setup {
        distributor,
        a,
        b,
        content,
        mut rng,
    } = setup_on(1024, registry);
    let mut pairs = vec![(a, b, content)];
    for _ in 1..workers {
        let (a, b) = another_pair(&distributor, &mut rng, content);
        pairs.push((a, b, content));
    }
    Workers { distributor, pairs }
}

/// A new user's two clients, the first holding a license for `content`.
fn another_pair<R: Registry>(
    distributor: &Distributor<R>,
    rng: &mut ChaCha20Rng,
    content: ContentId,
) -> (Client, Client) {
    let user = distributor.register_user().expect("user");
    let mut client = |server| {
        let key = SigningKey::generate(rng);
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
    let license = distributor
        .supply_license(a.license_request(content, NOW).as_bytes())
        .expect("license");
    a.acquire_license(license.as_bytes()).expect("acquire");
    (a, b)
}

/// Runs `per` operations on each worker's thread at once (`op` gets the worker's index, its
/// clients and the operation's number); the elapsed time, scaled to `iters` operations.
fn on_threads<R: Registry>(
    w: &mut Workers<R>,
    iters: u64,
    op: impl Fn(&Distributor<R>, usize, &mut (Client, Client, ContentId), u64) + Sync,
) -> std::time::Duration {
    let n = w.pairs.len() as u64;
    let per = iters.div_ceil(n);
    let d = &w.distributor;
    let op = &op;
    let started = std::time::Instant::now();
    std::thread::scope(|scope| {
        for (k, pair) in w.pairs.iter_mut().enumerate() {
            scope.spawn(move || {
                for i in 0..per {
                    op(d, k, pair, i);
                }
            });
        }
    });
    started.elapsed().mul_f64(iters as f64 / (n * per) as f64)
}

/// License supply and whole moves on each store with 1, 2 and 4 concurrent workers, in one
/// run, for the ratios.
fn stores(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let height = TreeHeight::new(32).expect("height");
    let mut group = c.benchmark_group("store");
    let mut run = |name: &str, open: &dyn Fn(usize) -> Box<dyn Registry>| {
        for workers in [1, 2, 4] {
            let mut w = workers_on(open(workers), workers);
            // The server's side of license supply: requests are signed by the clients
            // beforehand, outside the timing.
            group.bench_function(format!("{name}/license_supply/{workers}w"), |b| {
                b.iter_custom(|iters| {
                    let per = iters.div_ceil(workers as u64);
                    let requests: Vec<Vec<_>> = w
                        .pairs
                        .iter_mut()
                        .map(|(a, _, content)| {
                            (0..per).map(|_| a.license_request(*content, NOW)).collect()
                        })
                        .collect();
                    let requests = &requests;
                    on_threads(&mut w, iters, move |d, k, _, i| {
                        let r = &requests[k][i as usize];
                        d.supply_license(black_box(r.as_bytes())).expect("license");
                    })
                })
            });
            group.bench_function(format!("{name}/whole_move/{workers}w"), |b| {
                b.iter_custom(|iters| {
                    on_threads(&mut w, iters, |d, _, (a, b, content), _| {
                        move_once(d, a, b, *content);
                    })
                })
            });
        }
    };
    run("memory", &|_| Box::new(MemoryRegistry::new(height)));
    run("sqlite_process", &|w| {
        Box::new(
            SqliteRegistry::open(&dir.path().join(format!("process-{w}.sqlite")), height)
                .expect("sqlite"),
        )
    });
    run("sqlite_power", &|w| {
        Box::new(
            SqliteRegistry::open_with(
                &dir.path().join(format!("power-{w}.sqlite")),
                height,
                Durability::Power,
            )
            .expect("sqlite"),
        )
    });
    match pg::Cluster::start() {
        Some(cluster) => run("postgres", &|w| {
            let (conninfo, _) = cluster.database(&format!("bench{w}"));
            Box::new(PostgresRegistry::open(&conninfo, height).expect("postgres"))
        }),
        None => eprintln!("no PostgreSQL: the postgres rows are skipped"),
    }
    group.finish();
}

/// One whole move from `a` to `b`; then they swap roles.
fn move_once<R: Registry>(d: &Distributor<R>, a: &mut Client, b: &mut Client, content: ContentId) {
    let license = a.license_id(content).expect("held");
    let request = a.move_request(license, b.id(), NOW);
    let cert = d
        .supply_certificate(request.as_bytes())
        .expect("certificate");
    let package = a.move_out(cert.as_bytes()).expect("out");
    b.move_in(&package, NOW).expect("in");
    std::mem::swap(a, b);
}

criterion_group!(benches, issue, registration, moves, play, stores);
criterion_main!(benches);
