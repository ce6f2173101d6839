//! Split license servers with the shipped tools (issue 29, items 1 and 2): two `serve` processes
//! on one PostgreSQL registry, each run from the key file `treecast keys export` wrote for it
//! (its own signing key and subtree, no master secret) and naming the other's URL
//! (`--server-url`); `treecast authority` publishes the EKBs and revokes. A request that reaches the wrong process is answered `421
//! other_server` with the right URL, which clients follow; `treecast client` runs the README
//! flow with a move across the servers; `simulate --server URL1,URL2` drives both.

use std::process::Command;

use treecast::license::transport::{HttpTransport, Retries, Transport};
use treecast::license::{Clock, ServerId, SigningKey, SystemClock};

use super::operations::http;
use super::{Served, keyed_dir, rand_key, treecast, treecast_refused};

/// A free loopback port (bound and let go: a port that is free now).
fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap().port()
}

/// Two processes, server 1 and server 2, on `store`, each from its exported key file and
/// naming both URLs; the authority publishes the first epoch's EKB before they start.
pub(super) fn split(dir: &std::path::Path, store: &str) -> (Served, Served) {
    for n in ["1", "2"] {
        let out = format!("server{n}.keys");
        let said = treecast(
            dir,
            &[
                "keys", "export", "--keys", "keys", "--server", n, "--out", &out, "--height", "16",
            ],
        );
        assert!(said.contains("no master secret"), "{said}");
    }
    let published = treecast(
        dir,
        &[
            "authority",
            "--keys",
            "keys",
            "--store",
            store,
            "--height",
            "16",
            "publish-ekb",
        ],
    );
    assert!(
        published.starts_with("published the EKB of epoch 1"),
        "{published}"
    );
    let urls: Vec<String> = (0..2)
        .map(|_| format!("http://127.0.0.1:{}", free_port()))
        .collect();
    let urls = [urls[0].clone(), urls[1].clone()];
    (
        serve_split(dir, store, &urls, 1, "server1.keys"),
        serve_split(dir, store, &urls, 2, "server2.keys"),
    )
}

/// The process of license server `n` (1 or 2) of a split deployment at `urls`, from the key
/// file `keys` in `dir`: started, or started again after a stop.
pub(super) fn serve_split(
    dir: &std::path::Path,
    store: &str,
    urls: &[String; 2],
    n: usize,
    keys: &str,
) -> Served {
    let map = [format!("1={}", urls[0]), format!("2={}", urls[1])];
    let listen = urls[n - 1].trim_start_matches("http://").to_owned();
    let keys = dir.join(keys);
    Served::start(
        dir,
        store,
        &[
            "--listen",
            &listen,
            "--keys",
            keys.to_str().unwrap(),
            "--server-url",
            &map[0],
            "--server-url",
            &map[1],
            "--auth-failures-per-address",
            "0",
        ],
    )
}

#[test]
fn a_misdirected_request_is_answered_with_the_right_url_and_followed() {
    let Some((_, url)) = crate::pg::database() else {
        return;
    };
    let dir = keyed_dir();
    let (one, two) = split(dir.path(), &url);
    let t1 = HttpTransport::new(&one.base).with_retries(Retries::NONE);
    let (alice, key) = t1.create_user(&one.admin).unwrap();
    let content = t1.publish(&one.admin, b"split servers").unwrap();
    // Registering with server 2 at process one: the credential is not taken elsewhere unless
    // the transport knows process two as a peer.
    let device_key = SigningKey::from_bytes(&rand_key());
    let refused = t1.register(alice, &key, ServerId(2), &device_key);
    assert!(
        matches!(
            &refused,
            Err(treecast::license::Error::Service { status: 421, .. })
        ),
        "{refused:?}"
    );
    let peers = HttpTransport::new(&one.base).with_peers([one.base.clone(), two.base.clone()]);
    let registration = peers
        .register(alice, &key, ServerId(2), &device_key)
        .unwrap();
    let mut device = treecast::license::Client::new(device_key, registration).unwrap();
    device.store_ekb(&t1.current_ekb().unwrap().1).unwrap();
    // The 421 itself names the URL.
    device
        .store_content(t1.download(alice, &key, content).unwrap())
        .unwrap();
    let request = device.license_request(content, SystemClock.now());
    let answer = ureq_free_post(&one.base, "/v1/licenses", request.as_bytes());
    assert!(answer.0 == 421, "{answer:?}");
    assert!(
        answer
            .1
            .contains(&format!("\"server_url\":\"{}\"", two.base)),
        "{answer:?}"
    );
    // A device's signed request follows it without being told the peers.
    let license = t1.license(request.as_bytes()).unwrap();
    device.acquire_license(&license).unwrap();
    let mut out = Vec::new();
    device.play(content, &mut out).unwrap();
    assert_eq!(out, b"split servers");
    assert_eq!(http(&two.base, "GET", "/v1/ready", &[]).0, 200);
}

/// A POST of `body` to `base` + `path` with a plain socket: the status and the body.
fn ureq_free_post(base: &str, path: &str, body: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(base.trim_start_matches("http://")).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(body).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

#[test]
fn the_readme_flow_and_the_load_test_run_on_split_servers() {
    let Some((_, url)) = crate::pg::database() else {
        return;
    };
    let dir = keyed_dir();
    let d = dir.path();
    let (one, two) = split(d, &url);
    let run = |args: &[&str]| treecast(d, args);
    let token = d.join("admin.token");
    let token = token.to_str().unwrap();
    run(&[
        "admin",
        "create-user",
        "--server",
        &one.base,
        "--admin-token",
        token,
        "--credential-out",
        "alice.credential",
    ]);
    std::fs::write(d.join("song.txt"), b"A song, moved across servers.\n").unwrap();
    run(&[
        "admin",
        "publish",
        "--server",
        &one.base,
        "--admin-token",
        token,
        "--file",
        "song.txt",
    ]);
    let cred = ["--credential-file", "alice.credential"];
    // The phone with server 1 at process one, the laptop with server 2 at process two.
    run(&[
        &[
            "client",
            "register",
            "--server",
            &one.base,
            "--user",
            "1",
            "--device",
            "phone",
            "--license-server",
            "1",
        ][..],
        &cred,
    ]
    .concat());
    run(&[
        &[
            "client",
            "register",
            "--server",
            &two.base,
            "--user",
            "1",
            "--device",
            "laptop",
            "--license-server",
            "2",
        ][..],
        &cred,
    ]
    .concat());
    run(&[
        &["client", "buy", "--device", "phone", "--content", "1"][..],
        &cred,
    ]
    .concat());
    let played = run(&[
        "client",
        "play",
        "--device",
        "phone",
        "--content",
        "1",
        "--out",
        "-",
    ]);
    assert_eq!(played, "A song, moved across servers.\n");
    // The move's certificate is server 2's: signed by process two, which alone holds its key.
    let moved = run(&[
        &[
            "client",
            "move",
            "--from",
            "phone",
            "--to",
            "laptop",
            "--content",
            "1",
        ][..],
        &cred,
    ]
    .concat());
    assert!(moved.starts_with("moved content 1"), "{moved}");
    let played = run(&[
        "client",
        "play",
        "--device",
        "laptop",
        "--content",
        "1",
        "--out",
        "-",
    ]);
    assert_eq!(played, "A song, moved across servers.\n");
    // The phone no longer plays it.
    treecast_refused(
        d,
        &[
            "client",
            "play",
            "--device",
            "phone",
            "--content",
            "1",
            "--out",
            "-",
        ],
    );

    // Neither process holds the master secret nor the other's signing key.
    let full = std::fs::read_to_string(d.join("keys")).unwrap();
    let secret_of = |prefix: &str| {
        full.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap()
            .to_owned()
    };
    let master = secret_of("master ");
    for (n, other) in [(1, 2), (2, 1)] {
        let own = std::fs::read_to_string(d.join(format!("server{n}.keys"))).unwrap();
        assert!(!own.contains(&master), "server {n} holds the master secret");
        let theirs = secret_of(&format!("server {other} "));
        assert!(
            !own.contains(&theirs),
            "server {n} holds server {other}'s key"
        );
        assert!(own.contains(&secret_of(&format!("server {n} "))));
    }
    // Revoking is the authority's: a license server refuses it, the authority does it and
    // publishes the new epoch's EKB, which the license servers then open.
    let refused = Command::new(env!("CARGO_BIN_EXE_treecast"))
        .current_dir(d)
        .args([
            "admin",
            "revoke",
            "--server",
            &one.base,
            "--admin-token",
            token,
            "--client",
            "1",
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("authority_only"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let revoked = run(&[
        "authority",
        "--keys",
        "keys",
        "--store",
        &url,
        "--height",
        "16",
        "revoke",
        "--client",
        "1",
    ]);
    assert!(revoked.contains("revoked client 1: epoch 2"), "{revoked}");
    assert!(
        revoked.contains("published the EKB of epoch 2"),
        "{revoked}"
    );
    // A revoked device gets no license.
    treecast_refused(
        d,
        &[
            &["client", "buy", "--device", "phone", "--content", "1"][..],
            &cred[..],
        ]
        .concat(),
    );
    run(&[
        &[
            "client",
            "register",
            "--server",
            &one.base,
            "--user",
            "1",
            "--device",
            "tablet",
            "--license-server",
            "1",
        ][..],
        &cred,
    ]
    .concat());
    run(&[
        &["client", "buy", "--device", "tablet", "--content", "1"][..],
        &cred,
    ]
    .concat());
    let played = run(&[
        "client",
        "play",
        "--device",
        "tablet",
        "--content",
        "1",
        "--out",
        "-",
    ]);
    assert_eq!(
        played, "A song, moved across servers.\n",
        "epoch 2, at server 1"
    );

    // The load test drives both processes, with every attack; it revokes as the authority
    // does, on the registry (the license servers refuse to).
    let out = Command::new(env!("CARGO_BIN_EXE_treecast"))
        .args([
            "simulate",
            "--server",
            &format!("{},{}", one.base, two.base),
            "--servers",
            "2",
            "--users",
            "200",
            "--threads",
            "4",
            "--attack-share",
            "0.2",
            "--authority-keys",
            d.join("keys").to_str().unwrap(),
            "--store",
            &url,
            "--height",
            "16",
            "--admin-token",
            token,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("PASSED"), "{text}");
    assert!(one.stop().success());
    assert!(two.stop().success());
}
