//! What an operator sees and runs (issue 28): the access log and its request IDs, no secret in
//! any log, the metrics, liveness and readiness (a damaged SQLite file, a drain), the metrics on
//! an admin address, SIGHUP reloading the admin token, and a port that is taken.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use treecast::license::transport::{HttpTransport, Transport};

use treecast::license::credential::UserCredential;
use treecast::license::{Client, ServerId, SigningKey, UserId};

use super::{Served, buy, keyed_dir, move_over, play, rand_key};

mod backup;
mod config;
mod recovery;

/// A device registered over HTTP with its EKB, and its signing key's bytes.
fn device(
    t: &HttpTransport,
    user: UserId,
    credential: &UserCredential,
    server: u32,
) -> (Client, [u8; 32]) {
    let bytes = rand_key();
    let key = SigningKey::from_bytes(&bytes);
    let registration = t
        .register(user, credential, ServerId(server), &key)
        .unwrap();
    let mut client = Client::new(key, registration).unwrap();
    client.store_ekb(&t.current_ekb().unwrap().1).unwrap();
    (client, bytes)
}

/// One HTTP/1.1 request on a connection of its own: the status, the head and the body.
pub(crate) fn http(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    let address = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("Content-Length: 0\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

/// `treecast serve` on `store` and `listen`, its files in `dir`, run to its end: for a start
/// that must fail.
fn serve_once(dir: &Path, store: &str, listen: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_treecast"))
        .args([
            "serve", "--height", "16", "--store", store, "--listen", listen,
        ])
        .arg("--keys")
        .arg(dir.join("keys"))
        .arg("--admin-token")
        .arg(dir.join("admin.token"))
        .arg("--content-dir")
        .arg(dir.join("contents"))
        .output()
        .unwrap()
}

/// The JSON log lines of a file.
fn log_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The value of a metric line (`name{labels} value`) whose text starts with `prefix`.
fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn a_whole_flow_is_logged_by_request_with_no_secret_and_counted_in_the_metrics() {
    let dir = keyed_dir();
    let log = dir.path().join("serve.log");
    let store = format!("sqlite:{}", dir.path().join("registry.sqlite").display());
    let served = Served::start_with_stderr(
        dir.path(),
        &store,
        &["--log-format", "json", "--log-level", "info"],
        Stdio::from(std::fs::File::create(&log).unwrap()),
    );
    let t = HttpTransport::new(&served.base);
    let (alice, alice_key) = t.create_user(&served.admin).unwrap();
    let plain = b"logged, counted, never leaked".repeat(50);
    let content = t.publish(&served.admin, &plain).unwrap();
    let (mut a1, a1_key) = device(&t, alice, &alice_key, 1);
    let (mut a2, a2_key) = device(&t, alice, &alice_key, 2);
    buy(&t, &mut a1, alice, &alice_key, content);
    a2.store_content(t.download(alice, &alice_key, content).unwrap())
        .unwrap();
    move_over(&t, &mut a1, &mut a2, content).unwrap();
    assert_eq!(play(&a2, content).unwrap(), plain);
    // A request that is not one: refused, and logged with its kind.
    let (status, _, refused) = http(&served.base, "POST", "/v1/licenses", &[]);
    assert_eq!(status, 400, "{refused}");
    let kind = serde_json::from_str::<serde_json::Value>(&refused).unwrap()["error"]
        .as_str()
        .unwrap()
        .to_owned();
    let epoch = t.revoke(&served.admin, a2.id()).unwrap();
    // Failed logins leave a trace each (the throttle's 429s too).
    for _ in 0..12 {
        let (status, _, _) = http(
            &served.base,
            "POST",
            "/v1/admin/users",
            &[(
                "Authorization",
                "Bearer a-wrong-admin-token-of-enough-length-0000",
            )],
        );
        assert!(status == 401 || status == 429, "{status}");
    }
    // A caller's request ID is answered and logged; a forged one is replaced.
    let (status, head, _) = http(
        &served.base,
        "GET",
        "/v1/live",
        &[("x-request-id", "trace-me-42")],
    );
    assert_eq!(status, 200);
    assert!(
        head.to_lowercase().contains("x-request-id: trace-me-42"),
        "{head}"
    );
    let (_, head, _) = http(&served.base, "GET", "/v1/live", &[("x-request-id", "a\"b")]);
    assert!(!head.contains("a\"b"), "{head}");

    let (status, _, metrics) = http(&served.base, "GET", "/metrics", &[]);
    assert_eq!(status, 200);
    let admin = served.admin.clone();
    let status = served.stop();
    assert!(status.success());

    // The access log: a line per request, with its route, status, latency and request ID.
    let lines = log_lines(&log);
    let access: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["target"] == "treecast::access")
        .collect();
    let find = |route: &str, status: u64| {
        access
            .iter()
            .find(|l| l["route"] == route && l["status"] == status)
            .unwrap_or_else(|| panic!("no access line for {route} {status}"))
    };
    let license = find("/v1/licenses", 200);
    assert_eq!(license["client"], a1.id().0);
    assert!(license["latency_ms"].as_f64().unwrap() > 0.0);
    assert!(
        license["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    assert_eq!(find("/v1/users/{user}/clients", 201)["user"], alice.0);
    assert_eq!(find("/v1/certificates", 200)["client"], a1.id().0);
    assert_eq!(find("/v1/licenses", 400)["error"], kind.as_str());
    assert_eq!(find("/v1/licenses", 400)["level"], "WARN");
    let failed_logins = access
        .iter()
        .filter(|l| l["route"] == "/v1/admin/users" && l["error"].is_string())
        .count();
    assert_eq!(failed_logins, 12, "every failed login is in the log");
    assert!(access.iter().any(|l| l["request_id"] == "trace-me-42"));
    let ids: std::collections::HashSet<&str> = access
        .iter()
        .filter_map(|l| l["request_id"].as_str())
        .collect();
    assert_eq!(ids.len(), access.len(), "one request ID a request");

    // No secret reaches the log: the admin token, the credential, the devices' keys, the key
    // file's secrets, the content.
    let text = std::fs::read_to_string(&log).unwrap();
    let mut secrets = vec![admin, alice_key.to_hex().to_string()];
    for key in [a1_key, a2_key] {
        secrets.push(hex::encode(key));
    }
    let keys = std::fs::read_to_string(dir.path().join("keys")).unwrap();
    secrets.extend(
        keys.split_whitespace()
            .filter(|w| w.len() >= 32 && w.chars().all(|c| c.is_ascii_hexdigit()))
            .map(str::to_owned),
    );
    assert!(secrets.len() >= 5, "{}", secrets.len());
    for secret in &secrets {
        assert!(!text.contains(secret.as_str()), "a secret in the log");
        assert!(
            !metrics.contains(secret.as_str()),
            "a secret in the metrics"
        );
    }
    assert!(!text.contains("logged, counted"), "the content in the log");

    // The metrics: requests by route and status, supplies, moves, refusals, the registry's
    // latency, the EKB builds, the epoch, the build.
    for expected in [
        "treecast_http_requests_total{method=\"POST\",route=\"/v1/licenses\",status=\"200\"} 1",
        "treecast_supplies_total{kind=\"license\"} 1",
        "treecast_moves_total 1",
        "treecast_epoch ",
        "treecast_build_info{",
    ] {
        assert!(metrics.contains(expected), "no `{expected}` in\n{metrics}");
    }
    assert!(metric(&metrics, "treecast_refusals_total{error=\"unauthorized\"}").unwrap() >= 1.0);
    assert_eq!(
        metric(
            &metrics,
            &format!("treecast_refusals_total{{error=\"{kind}\"}}")
        ),
        Some(1.0)
    );
    assert!(
        metric(
            &metrics,
            "treecast_http_request_duration_seconds_count{method=\"POST\",route=\"/v1/licenses\"}"
        )
        .unwrap()
            >= 2.0
    );
    assert!(
        metric(
            &metrics,
            "treecast_registry_transaction_duration_seconds_count{store=\"sqlite\",kind=\"durable\"}"
        )
        .unwrap()
            >= 1.0,
        "{metrics}"
    );
    assert!(metric(&metrics, "treecast_ekb_builds_total").unwrap() >= 1.0);
    assert!(metric(&metrics, "treecast_epoch").unwrap() + 1.0 >= epoch as f64);
}

#[test]
fn metrics_on_an_admin_address_or_not_at_all() {
    let dir = keyed_dir();
    let served = Served::start(dir.path(), "memory", &["--metrics-listen", "127.0.0.1:0"]);
    // The first line also names the metrics address.
    let (status, _, _) = http(&served.base, "GET", "/metrics", &[]);
    assert_eq!(status, 404, "not on the service's address");
    let metrics_base = served.metrics.clone().expect("a metrics address");
    let (status, head, body) = http(&metrics_base, "GET", "/metrics", &[]);
    assert_eq!(status, 200);
    assert!(head.contains("text/plain"), "{head}");
    assert!(body.contains("treecast_build_info"), "{body}");
    drop(served);

    let dir = keyed_dir();
    let served = Served::start(dir.path(), "memory", &["--no-metrics"]);
    assert_eq!(http(&served.base, "GET", "/metrics", &[]).0, 404);
    assert_eq!(http(&served.base, "GET", "/v1/ready", &[]).0, 200);
    drop(served);

    // On a public address, not without `--metrics-public`: it names the build.
    for (extra, expected) in [(&[][..], 404), (&["--metrics-public"][..], 200)] {
        let dir = keyed_dir();
        let mut args = vec!["--listen", "0.0.0.0:0", "--insecure-http"];
        args.extend_from_slice(extra);
        let served = Served::start(dir.path(), "memory", &args);
        let port = served.base.rsplit(':').next().unwrap().to_owned();
        let local = format!("http://127.0.0.1:{port}");
        assert_eq!(
            http(&local, "GET", "/metrics", &[]).0,
            expected,
            "{extra:?}"
        );
        assert_eq!(http(&local, "GET", "/v1/live", &[]).0, 200);
    }
}

#[test]
fn readiness_sees_a_damaged_registry_and_a_drain_while_liveness_does_not() {
    let dir = keyed_dir();
    let file = dir.path().join("registry.sqlite");
    let store = format!("sqlite:{}", file.display());
    let mut served = Served::start(dir.path(), &store, &["--drain-delay", "3"]);
    assert_eq!(http(&served.base, "GET", "/v1/ready", &[]).0, 200);
    assert_eq!(http(&served.base, "GET", "/v1/health", &[]).0, 200);

    // The file is overwritten under the service (a bad restore, a disk fault): readiness sees
    // it at its next check (the last result is kept one second), liveness does not care.
    let mut bytes = std::fs::read(&file).unwrap();
    bytes.iter_mut().take(4096).for_each(|b| *b = 0x5a);
    std::fs::write(&file, &bytes).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let (status, _, body) = http(&served.base, "GET", "/v1/ready", &[]);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("the registry does not answer"), "{body}");
    assert!(
        !body.contains("registry.sqlite"),
        "no path in a public answer: {body}"
    );
    assert_eq!(http(&served.base, "GET", "/v1/health", &[]).0, 503);
    assert_eq!(http(&served.base, "GET", "/v1/live", &[]).0, 200);

    // SIGTERM with a drain delay: not ready at once, still live and serving, then gone.
    served.signal("TERM");
    std::thread::sleep(Duration::from_millis(300));
    let (status, _, body) = http(&served.base, "GET", "/v1/ready", &[]);
    assert_eq!(status, 503);
    assert!(body.contains("draining"), "{body}");
    assert_eq!(http(&served.base, "GET", "/v1/live", &[]).0, 200);
    let status = served
        .wait_exit(Duration::from_secs(20))
        .expect("the service stops after its drain delay");
    assert!(status.success());

    // Started on the damaged file, the service refuses to serve it.
    let out = serve_once(dir.path(), &store, "127.0.0.1:0");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a SQLite database") || err.contains("damaged"),
        "{err}"
    );
}

#[test]
fn a_damaged_page_is_refused_at_startup() {
    let dir = keyed_dir();
    let file = dir.path().join("registry.sqlite");
    let store = format!("sqlite:{}", file.display());
    let served = Served::start(dir.path(), &store, &[]);
    let t = HttpTransport::new(&served.base);
    for _ in 0..200 {
        t.create_user(&served.admin).unwrap();
    }
    assert!(served.stop().success());
    // A page past the header, zeroed: the header and schema read fine, the table does not.
    let mut bytes = std::fs::read(&file).unwrap();
    let page = 1024;
    assert!(bytes.len() > 8 * page, "{}", bytes.len());
    let last = bytes.len() - page;
    bytes[last..].iter_mut().for_each(|b| *b = 0xff);
    std::fs::write(&file, &bytes).unwrap();
    let out = serve_once(dir.path(), &store, "127.0.0.1:0");
    assert!(!out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("startup check") || err.contains("malformed"),
        "{err}"
    );
}

#[test]
fn sighup_reloads_the_admin_token_without_dropping_a_connection() {
    let dir = keyed_dir();
    let served = Served::start(dir.path(), "memory", &[]);
    let old = served.admin.clone();
    // A keep-alive connection opened before the reload.
    let address = served.base.trim_start_matches("http://").to_owned();
    let mut kept = TcpStream::connect(&address).unwrap();
    kept.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let ask = |s: &mut TcpStream| {
        s.write_all(b"GET /v1/live HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let mut reader = BufReader::new(s.try_clone().unwrap());
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if let Some(v) = line.to_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        status
    };
    assert!(ask(&mut kept).contains("200"));

    let new = "0123456789abcdef0123456789abcdef-the-new-admin-token";
    let token = dir.path().join("admin.token");
    std::fs::write(&token, new).unwrap();
    served.signal("HUP");
    let t = HttpTransport::new(&served.base);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while t.create_user(new).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the new token was not loaded"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        t.create_user(&old).is_err(),
        "the old token no longer works"
    );
    assert!(
        ask(&mut kept).contains("200"),
        "the connection outlived the reload"
    );

    // A token file made unreadable to others' eyes only: one that others can read is refused,
    // and the token in use stays.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(&token, "a-third-token-that-is-long-enough-to-be-one-000").unwrap();
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
        served.signal("HUP");
        std::thread::sleep(Duration::from_millis(500));
        t.create_user(new).unwrap();
    }
}

#[test]
fn a_taken_port_creates_no_registry_token_or_directory() {
    let dir = keyed_dir();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let registry = dir.path().join("registry.sqlite");
    let out = serve_once(
        dir.path(),
        &format!("sqlite:{}", registry.display()),
        &address,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen"));
    assert!(!registry.exists());
    assert!(!dir.path().join("admin.token").exists());
    assert!(!dir.path().join("contents").exists());
}

#[test]
fn sighup_reloads_the_tls_certificate_for_new_handshakes() {
    let dir = keyed_dir();
    let d = dir.path();
    let make = || {
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap()
    };
    let (first, second) = (make(), make());
    let (cert, key) = (d.join("cert.pem"), d.join("key.pem"));
    std::fs::write(&cert, first.cert.pem()).unwrap();
    std::fs::write(&key, first.key_pair.serialize_pem()).unwrap();
    let served = Served::start(
        d,
        "memory",
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let trusting = |pem: &str| {
        HttpTransport::with_root_certificates(&served.base, pem.as_bytes())
            .unwrap()
            .with_retries(treecast::license::transport::Retries::NONE)
    };
    trusting(&first.cert.pem()).current_ekb().unwrap();
    assert!(trusting(&second.cert.pem()).current_ekb().is_err());

    // A renewed certificate: written over the files, then SIGHUP.
    std::fs::write(&cert, second.cert.pem()).unwrap();
    std::fs::write(&key, second.key_pair.serialize_pem()).unwrap();
    served.signal("HUP");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while trusting(&second.cert.pem()).current_ekb().is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the new certificate was not loaded"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        trusting(&first.cert.pem()).current_ekb().is_err(),
        "new handshakes use the new one"
    );

    // A broken file keeps the certificate in use.
    std::fs::write(&key, "not a key").unwrap();
    served.signal("HUP");
    std::thread::sleep(Duration::from_millis(300));
    trusting(&second.cert.pem()).current_ekb().unwrap();
    assert!(served.stop().success());
}
