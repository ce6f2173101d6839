//! Recovery without error bursts (issue 28, items 3 and 4): readiness with PostgreSQL stopped;
//! after PostgreSQL restarts, no request that arrives once it is back is answered 503 (the pool
//! checks each connection it hands out); a client resumes across a restart of the service.

use std::time::{Duration, Instant};

use treecast::license::transport::{HttpTransport, Retries, Transport};
use treecast::license::{Clock, Error, SystemClock};

use super::{device, http};
use crate::service::{Served, buy, keyed_dir};

#[test]
fn a_postgresql_restart_costs_no_request_a_503() {
    let Some(mut cluster) = crate::pg::Cluster::start() else {
        return;
    };
    let (_, url) = cluster.database("served");
    let dir = keyed_dir();
    let served = Served::start(dir.path(), &url, &[]);
    // No retry here: a 503 would show.
    let t = HttpTransport::new(&served.base).with_retries(Retries::NONE);
    let (user, credential) = t.create_user(&served.admin).unwrap();
    let content = t.publish(&served.admin, b"through a restart").unwrap();
    let (mut client, _) = device(&t, user, &credential, 1);
    buy(&t, &mut client, user, &credential, content);
    // Every connection of the pool is used once, so that each one is broken by the restart.
    std::thread::scope(|s| {
        for _ in 0..16 {
            s.spawn(|| t.current_ekb().unwrap());
        }
    });
    assert_eq!(http(&served.base, "GET", "/v1/ready", &[]).0, 200);
    // Scrapes read the epoch from PostgreSQL: on the blocking pool, never breaking the pool
    // (review of issue 28: a scrape on the reactor panicked inside the pool's connection check,
    // and sixteen of them left the pool full).
    for _ in 0..20 {
        let (status, _, body) = http(&served.base, "GET", "/metrics", &[]);
        assert_eq!(status, 200);
        assert!(body.contains("treecast_epoch "), "{body}");
        assert!(
            body.contains("treecast_registry_pool_connections"),
            "{body}"
        );
    }
    t.current_ekb().unwrap();
    t.create_user(&served.admin).unwrap();

    cluster.kill();
    std::thread::sleep(Duration::from_millis(1100));
    let (status, _, body) = http(&served.base, "GET", "/v1/ready", &[]);
    assert_eq!(status, 503, "PostgreSQL is down: {body}");
    assert!(body.contains("registry"), "{body}");
    assert_eq!(http(&served.base, "GET", "/v1/live", &[]).0, 200);

    cluster.restart();
    // Back: every request succeeds, reads and writes, from several threads at once.
    std::thread::scope(|s| {
        for i in 0..8u64 {
            let t = &t;
            let credential = &credential;
            let admin = &served.admin;
            s.spawn(move || {
                for _ in 0..5 {
                    t.current_ekb().unwrap();
                    let state =
                        t.license_state(user, credential, treecast::license::LicenseId(i + 1));
                    assert!(
                        !matches!(state, Err(Error::Service { status: 503, .. })),
                        "{state:?}"
                    );
                    t.create_user(admin).unwrap();
                }
            });
        }
    });
    let request = client.license_request(content, SystemClock.now());
    let replayed = t.license(request.as_bytes());
    assert!(
        !matches!(replayed, Err(Error::Service { status: 503, .. })),
        "{replayed:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(3);
    while http(&served.base, "GET", "/v1/ready", &[]).0 != 200 {
        assert!(Instant::now() < deadline, "not ready again");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(served.stop().success());
}

#[test]
fn a_client_resumes_across_a_restart_of_the_service() {
    let dir = keyed_dir();
    let store = format!("sqlite:{}", dir.path().join("registry.sqlite").display());
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let listen = format!("127.0.0.1:{port}");
    let served = Served::start(dir.path(), &store, &["--listen", &listen]);
    let base = served.base.clone();
    let admin = served.admin.clone();
    let t = HttpTransport::new(&base);
    let (user, credential) = t.create_user(&admin).unwrap();
    assert!(served.stop().success());

    // The service comes back a second later; the client's reads wait for it (with backoff)
    // instead of failing.
    let restarted = std::thread::spawn({
        let dir = dir.path().to_owned();
        let store = store.clone();
        let listen = listen.clone();
        move || {
            std::thread::sleep(Duration::from_secs(1));
            Served::start(&dir, &store, &["--listen", &listen])
        }
    });
    let started = Instant::now();
    t.current_ekb().unwrap();
    assert_eq!(t.user_total(&admin, user).unwrap(), 0);
    let _ = &credential;
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "it waited for the restart"
    );
    let served = restarted.join().unwrap();

    // Without retries, the same outage is an error at once.
    assert!(served.stop().success());
    let once = HttpTransport::new(&base).with_retries(Retries::NONE);
    assert!(once.current_ekb().is_err());
}

/// The load test resumes across a restart of the service (issue 28, item 4): SIGTERM drains the
/// requests in flight, a new process starts on the same port and registry a moment later, and
/// the simulator's requests wait for it (refused connections are retried, and reads and signed
/// requests on a lost one) instead of aborting: the run passes, and every operation it
/// acknowledged is in the registry.
#[test]
fn the_load_test_resumes_across_a_restart_of_the_service() {
    let dir = keyed_dir();
    let d = dir.path();
    let store = format!("sqlite:{}", d.join("registry.sqlite").display());
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let listen = format!("127.0.0.1:{port}");
    let extra = [
        "--listen",
        listen.as_str(),
        "--auth-failures-per-address",
        "0",
    ];
    let served = Served::start(d, &store, &extra);
    let journal = d.join("journal");
    let sim = std::process::Command::new(env!("CARGO_BIN_EXE_treecast"))
        .args([
            "simulate",
            "--server",
            &served.base,
            "--users",
            "1500",
            "--threads",
            "4",
        ])
        .arg("--admin-token")
        .arg(d.join("admin.token"))
        .arg("--journal")
        .arg(&journal)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::fs::read_to_string(&journal).map_or(0, |j| j.lines().count()) < 500 {
        assert!(Instant::now() < deadline, "the simulator did not get going");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(served.stop().success());
    std::thread::sleep(Duration::from_millis(500));
    let again = Served::start(d, &store, &extra);
    let out = sim.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("PASSED"), "{text}");
    assert!(again.stop().success());
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_treecast"))
        .args(["store", "check", "--store", &store, "--keys"])
        .arg(d.join("keys"))
        .arg("--journal")
        .arg(&journal)
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
}
