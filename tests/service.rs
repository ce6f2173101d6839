//! `treecast serve` over real HTTP (issue 15): the service started as its own process on an
//! ephemeral port, on SQLite and (where installed) PostgreSQL; every step of the licensing flow
//! through the HTTP transport, the refusals, bad bodies on every endpoint, and claim 3's
//! servers as separate processes.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use treecast::license::credential::UserCredential;
use treecast::license::transport::{HttpTransport, Transport};
use treecast::license::{
    Client, ClientId, Clock, ContentId, Error, ServerId, SigningKey, SystemClock, UserId,
};

mod cenc;
mod hsm;
mod load;
mod open_internet;
mod operations;
mod rotation;
mod server_keys;
mod split;
mod web;

/// A running `treecast serve`, stopped with SIGTERM (and waited for) when dropped.
pub(crate) struct Served {
    child: Child,
    pub(crate) base: String,
    pub(crate) admin: String,
    /// The base URL of `--metrics-listen`, when given.
    pub(crate) metrics: Option<String>,
}

impl Served {
    /// Starts `treecast serve` with `args` beside the key file, store and admin token given.
    pub(crate) fn start(dir: &Path, store: &str, extra: &[&str]) -> Self {
        Self::start_with_stderr(dir, store, extra, Stdio::inherit())
    }

    /// As [`Served::start`], its standard error (the logs) sent to `stderr`.
    pub(crate) fn start_with_stderr(
        dir: &Path,
        store: &str,
        extra: &[&str],
        stderr: Stdio,
    ) -> Self {
        Self::spawn(dir, store, extra, stderr, &[])
    }

    /// As [`Served::start`], with environment variables set for the process.
    pub(crate) fn start_with_env(
        dir: &Path,
        store: &str,
        extra: &[&str],
        envs: &[(&str, &Path)],
    ) -> Self {
        Self::spawn(dir, store, extra, Stdio::inherit(), envs)
    }

    fn spawn(
        dir: &Path,
        store: &str,
        extra: &[&str],
        stderr: Stdio,
        envs: &[(&str, &Path)],
    ) -> Self {
        let token_file = dir.join("admin.token");
        let mut child = Command::new(env!("CARGO_BIN_EXE_treecast"))
            .envs(envs.iter().copied())
            .arg("serve")
            .args(if extra.contains(&"--keys") {
                Vec::new()
            } else {
                vec![std::ffi::OsString::from("--keys"), dir.join("keys").into()]
            })
            .args(["--store", store, "--height", "16"])
            .args(if extra.contains(&"--listen") {
                &[][..]
            } else {
                &["--listen", "127.0.0.1:0"][..]
            })
            // The tests' output keeps the service's warnings, not an access line per request.
            .args(if extra.contains(&"--log-level") {
                &[][..]
            } else {
                &["--log-level", "warn"][..]
            })
            .arg("--admin-token")
            .arg(&token_file)
            .arg("--content-dir")
            .arg(dir.join("contents"))
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .split_whitespace()
            .find(|w| w.starts_with("http://") || w.starts_with("https://"))
            .unwrap_or_else(|| panic!("no address in `{line}`"))
            .to_owned();
        let metrics = line
            .split_whitespace()
            .find_map(|w| w.strip_suffix("/metrics"))
            .map(str::to_owned);
        let admin = std::fs::read_to_string(&token_file)
            .unwrap()
            .trim()
            .to_owned();
        Self {
            child,
            base,
            admin,
            metrics,
        }
    }

    /// Sends the signal `name` (`HUP`, `TERM`) to the service.
    pub(crate) fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits up to `limit` for the service to exit; its status, if it did.
    pub(crate) fn wait_exit(
        &mut self,
        limit: std::time::Duration,
    ) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        None
    }

    /// SIGTERM, then the exit status.
    pub(crate) fn stop(mut self) -> std::process::ExitStatus {
        terminate(&self.child);
        let status = self.child.wait().unwrap();
        std::mem::forget(self);
        status
    }
}

pub(crate) fn terminate(child: &Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
}

impl Drop for Served {
    fn drop(&mut self) {
        terminate(&self.child);
        let _ = self.child.wait();
    }
}

/// A directory with a fresh key file of two license servers.
pub(crate) fn keyed_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_treecast"))
        .args(["keygen", "--servers", "2", "--out"])
        .arg(dir.path().join("keys"))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    dir
}

/// `treecast ARGS` in `dir`, run to its end.
fn treecast_run(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_treecast"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

/// `treecast ARGS` in `dir`, which must fail: its standard error.
pub(crate) fn treecast_refused(dir: &Path, args: &[&str]) -> String {
    let out = treecast_run(dir, args);
    assert!(
        !out.status.success(),
        "treecast {args:?} succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `treecast ARGS` in `dir`, which must succeed: its standard output.
pub(crate) fn treecast(dir: &Path, args: &[&str]) -> String {
    let out = treecast_run(dir, args);
    assert!(
        out.status.success(),
        "treecast {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A device registered over HTTP, with its EKB.
fn device(t: &HttpTransport, user: UserId, credential: &UserCredential, server: u32) -> Client {
    let key = SigningKey::from_bytes(&rand_key());
    let registration = t
        .register(user, credential, ServerId(server), &key)
        .unwrap();
    let mut client = Client::new(key, registration).unwrap();
    client.store_ekb(&t.current_ekb().unwrap().1).unwrap();
    client
}

fn rand_key() -> [u8; 32] {
    let mut k = [0u8; 32];
    getrandom::fill(&mut k).unwrap();
    k
}

/// Buys `content` on `client` over `t`: download, license request, license.
fn buy(
    t: &HttpTransport,
    client: &mut Client,
    user: UserId,
    credential: &UserCredential,
    content: ContentId,
) {
    client
        .store_content(t.download(user, credential, content).unwrap())
        .unwrap();
    let request = client.license_request(content, SystemClock.now());
    client
        .acquire_license(&t.license(request.as_bytes()).unwrap())
        .unwrap();
}

fn play(client: &Client, content: ContentId) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    client.play(content, &mut out)?;
    Ok(out)
}

/// Moves `content` from `a` to `b` through the service at `t`.
fn move_over(
    t: &HttpTransport,
    a: &mut Client,
    b: &mut Client,
    content: ContentId,
) -> Result<(), Error> {
    let license = a.license_id(content).unwrap();
    let request = a.move_request(license, b.id(), SystemClock.now());
    let certificate = t.certificate(request.as_bytes())?;
    let package = a.move_out(&certificate)?;
    b.move_in(&package, SystemClock.now())
}

/// The whole licensing flow over HTTP, with its refusals, on one store.
fn the_flow(store: &str, dir: &Path) {
    let served = Served::start(dir, store, &[]);
    let t = HttpTransport::new(&served.base);
    let (alice, alice_key) = t.create_user(&served.admin).unwrap();
    let (bob, bob_key) = t.create_user(&served.admin).unwrap();
    let plain = b"the content, sold over HTTP".repeat(100);
    let content = t.publish(&served.admin, &plain).unwrap();

    // Register, buy, play.
    let mut a1 = device(&t, alice, &alice_key, 1);
    let mut a2 = device(&t, alice, &alice_key, 2);
    buy(&t, &mut a1, alice, &alice_key, content);
    assert_eq!(play(&a1, content).unwrap(), plain);
    let first = a1.license_id(content).unwrap();
    assert_eq!(t.license_state(alice, &alice_key, first).unwrap(), "active");

    // Move to the other device (a certificate signed by server 2), play there only.
    a2.store_content(t.download(alice, &alice_key, content).unwrap())
        .unwrap();
    move_over(&t, &mut a1, &mut a2, content).unwrap();
    assert_eq!(play(&a2, content).unwrap(), plain);
    assert!(play(&a1, content).is_err());
    assert_eq!(t.license_state(alice, &alice_key, first).unwrap(), "moved");
    let second = a2.license_id(content).unwrap();
    assert_eq!(
        t.license_state(alice, &alice_key, second).unwrap(),
        "active"
    );

    // No one acts for another user: bob's credential on alice's rows and devices.
    let mallory = SigningKey::from_bytes(&rand_key());
    let refused = t.register(alice, &bob_key, ServerId(1), &mallory);
    assert!(
        matches!(refused, Err(Error::Service { status: 401, .. })),
        "{refused:?}"
    );
    assert!(matches!(
        t.license_state(alice, &bob_key, first),
        Err(Error::Service { status: 401, .. })
    ));
    assert!(matches!(
        t.license_state(bob, &bob_key, first),
        Err(Error::Service { status: 404, .. })
    ));
    assert!(matches!(
        t.download(alice, &bob_key, content),
        Err(Error::Service { status: 401, .. })
    ));
    // A bob device cannot receive alice's content.
    let mut b1 = device(&t, bob, &bob_key, 1);
    assert!(move_over(&t, &mut a2, &mut b1, content).is_err());
    assert_eq!(play(&a2, content).unwrap(), plain);
    // Admin calls need the admin token.
    assert!(matches!(
        t.create_user("not-the-admin-token-but-long-enough-to-be-one"),
        Err(Error::Service { status: 401, .. })
    ));
    assert!(matches!(
        t.revoke(&alice_key.to_hex(), a2.id()),
        Err(Error::Service { status: 401, .. })
    ));

    // A retried license request (the same bytes: the answer was lost) gets the same license.
    let request = b1.license_request(content, SystemClock.now());
    b1.store_content(t.download(bob, &bob_key, content).unwrap())
        .unwrap();
    let first = t.license(request.as_bytes()).unwrap();
    let again = t.license(request.as_bytes()).unwrap();
    assert_eq!(first, again);
    b1.acquire_license(&again).unwrap();
    assert_eq!(play(&b1, content).unwrap(), plain);

    // Claims 7 and 8 over HTTP: a license and a move are billed, differently, once each.
    let tariff = treecast::license::Tariff::default();
    let (license_price, move_price) = (
        tariff.price(treecast::license::ChargeKind::License, content),
        tariff.price(treecast::license::ChargeKind::Certificate, content),
    );
    assert_ne!(license_price, move_price);
    assert_eq!(
        t.user_total(&served.admin, alice).unwrap(),
        license_price + move_price
    );
    assert_eq!(t.user_total(&served.admin, bob).unwrap(), license_price);

    // Revoke: a new epoch; the revoked device's license is reported revoked.
    let epoch = t.revoke(&served.admin, a2.id()).unwrap();
    assert_eq!(t.current_ekb().unwrap().0, epoch);
    assert_eq!(
        t.license_state(alice, &alice_key, second).unwrap(),
        "revoked"
    );
    assert!(matches!(
        t.revoke(&served.admin, ClientId(1 << 50)),
        Err(Error::Service { status: 404, .. })
    ));

    let status = served.stop();
    assert!(
        status.success(),
        "SIGTERM ends the service cleanly: {status:?}"
    );
}

#[test]
fn the_licensing_flow_over_http_on_sqlite() {
    let dir = keyed_dir();
    let store = format!("sqlite:{}", dir.path().join("r.sqlite").display());
    the_flow(&store, dir.path());
    // The registry the service left passes `store check`.
    let out = Command::new(env!("CARGO_BIN_EXE_treecast"))
        .args(["store", "check", "--store", &store, "--keys"])
        .arg(dir.path().join("keys"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn the_licensing_flow_over_http_on_postgres() {
    let Some((_, url)) = crate::pg::database() else {
        return;
    };
    let dir = keyed_dir();
    the_flow(&url, dir.path());
}

/// Claim 3's license servers as separate processes on one PostgreSQL registry: each `serve`
/// holds one server's key; a request for the other server's clients is sent back (421), and a
/// move is certified by the destination's server's process.
#[test]
fn two_serve_processes_each_hold_one_license_server() {
    let Some((_, url)) = crate::pg::database() else {
        return;
    };
    let dir = keyed_dir();
    let one = Served::start(dir.path(), &url, &["--server-id", "1"]);
    let two = Served::start(dir.path(), &url, &["--server-id", "2"]);
    let (t1, t2) = (HttpTransport::new(&one.base), HttpTransport::new(&two.base));
    let (alice, key) = t1.create_user(&one.admin).unwrap();
    let plain = b"two servers, one registry".to_vec();
    let content = t1.publish(&one.admin, &plain).unwrap();

    // Registration with server 2 is process two's.
    let device_key = SigningKey::from_bytes(&rand_key());
    let misdirected = t1.register(alice, &key, ServerId(2), &device_key);
    assert!(
        matches!(&misdirected, Err(Error::Service { status: 421, code, .. }) if code == "other_server"),
        "{misdirected:?}"
    );
    let mut a1 = device(&t1, alice, &key, 1);
    let mut a2 = device(&t2, alice, &key, 2);

    // A license for a server-1 device is server 1's: process two sends it back.
    a1.store_content(t1.download(alice, &key, content).unwrap())
        .unwrap();
    let request = a1.license_request(content, SystemClock.now());
    assert!(matches!(
        t2.license(request.as_bytes()),
        Err(Error::Service { status: 421, .. })
    ));
    a1.acquire_license(&t1.license(request.as_bytes()).unwrap())
        .unwrap();
    assert_eq!(play(&a1, content).unwrap(), plain);

    // The move to the server-2 device is certified by process two, not one.
    a2.store_content(t2.download(alice, &key, content).unwrap())
        .unwrap();
    let license = a1.license_id(content).unwrap();
    let request = a1.move_request(license, a2.id(), SystemClock.now());
    assert!(matches!(
        t1.certificate(request.as_bytes()),
        Err(Error::Service { status: 421, .. })
    ));
    let certificate = t2.certificate(request.as_bytes()).unwrap();
    let package = a1.move_out(&certificate).unwrap();
    a2.move_in(&package, SystemClock.now()).unwrap();
    assert_eq!(play(&a2, content).unwrap(), plain);
    // Both processes see one registry: the state is the same from either.
    assert_eq!(t1.license_state(alice, &key, license).unwrap(), "moved");
    assert_eq!(t2.license_state(alice, &key, license).unwrap(), "moved");
    assert!(one.stop().success());
    assert!(two.stop().success());
}

/// The README's second-terminal walk-through, command by command: an operator creates a user
/// and publishes; the user registers two devices, buys, plays, moves, plays on the other, and
/// the first one no longer plays.
#[test]
fn the_readme_walkthrough_with_treecast_client() {
    let dir = keyed_dir();
    let d = dir.path();
    let store = format!("sqlite:{}", d.join("registry.sqlite").display());
    let served = Served::start(d, &store, &[]);
    let run = |args: &[&str]| treecast(d, args);
    let url = served.base.as_str();
    let token = d.join("admin.token");
    let token = token.to_str().unwrap();
    assert_eq!(
        run(&[
            "admin",
            "create-user",
            "--server",
            url,
            "--admin-token",
            token,
            "--credential-out",
            "alice.credential"
        ]),
        "user 1\n"
    );
    std::fs::write(d.join("song.txt"), b"A song, played on a device.\n").unwrap();
    assert_eq!(
        run(&[
            "admin",
            "publish",
            "--server",
            url,
            "--admin-token",
            token,
            "--file",
            "song.txt"
        ]),
        "content 1\n"
    );
    let cred = ["--credential-file", "alice.credential"];
    run(&[
        &[
            "client", "register", "--server", url, "--user", "1", "--device", "phone",
        ][..],
        &cred,
    ]
    .concat());
    run(&[
        &[
            "client",
            "register",
            "--server",
            url,
            "--user",
            "1",
            "--license-server",
            "2",
            "--device",
            "laptop",
        ][..],
        &cred,
    ]
    .concat());
    run(&[
        &["client", "buy", "--device", "phone", "--content", "1"][..],
        &cred,
    ]
    .concat());
    assert_eq!(
        run(&[
            "client",
            "play",
            "--device",
            "phone",
            "--content",
            "1",
            "--out",
            "-"
        ]),
        "A song, played on a device.\n"
    );
    run(&[
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
    run(&[
        "client",
        "play",
        "--device",
        "laptop",
        "--content",
        "1",
        "--out",
        "played.txt",
    ]);
    assert_eq!(
        std::fs::read(d.join("played.txt")).unwrap(),
        b"A song, played on a device.\n"
    );
    let refused = Command::new(env!("CARGO_BIN_EXE_treecast"))
        .current_dir(d)
        .args([
            "client",
            "play",
            "--device",
            "phone",
            "--content",
            "1",
            "--out",
            "-",
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let status = run(&[&["client", "status", "--device", "laptop"][..], &cred].concat());
    assert!(status.contains("(active)"), "{status}");
    // The device's secrets are its owner's only.
    #[cfg(unix)]
    for name in ["key", "registration", "state"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.join("phone").join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{name} is readable by others");
    }
    assert!(served.stop().success());
}

/// TLS with rustls: `serve --tls-cert --tls-key` answers HTTPS; a client that trusts the
/// certificate registers, buys and plays; one that does not, or speaks plain HTTP, gets nothing.
#[test]
fn the_service_over_tls() {
    let dir = keyed_dir();
    let d = dir.path();
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let pem = certified.cert.pem();
    std::fs::write(d.join("cert.pem"), &pem).unwrap();
    std::fs::write(d.join("key.pem"), certified.key_pair.serialize_pem()).unwrap();
    let store = format!("sqlite:{}", d.join("r.sqlite").display());
    let cert = d.join("cert.pem");
    let key = d.join("key.pem");
    let served = Served::start(
        d,
        &store,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(served.base.starts_with("https://"), "{}", served.base);
    let t = HttpTransport::with_root_certificates(&served.base, pem.as_bytes()).unwrap();
    let (alice, credential) = t.create_user(&served.admin).unwrap();
    let content = t.publish(&served.admin, b"over TLS").unwrap();
    let mut a = device(&t, alice, &credential, 1);
    buy(&t, &mut a, alice, &credential, content);
    assert_eq!(play(&a, content).unwrap(), b"over TLS");
    // Without trusting the certificate, or in plain HTTP: no answer.
    assert!(HttpTransport::new(&served.base).current_ekb().is_err());
    let plain = served.base.replacen("https://", "http://", 1);
    assert!(HttpTransport::new(&plain).current_ekb().is_err());
    assert!(served.stop().success());
}

/// SIGKILL of the service under load (issue 15, item 6): the simulator drives the service with
/// a journal of acknowledged operations; the service is killed mid-run, the simulator stops
/// with an error, the service restarts on the same registry, and `store check --journal`
/// finds every invariant and every acknowledged operation.
#[test]
fn a_killed_service_restarts_with_everything_it_acknowledged() {
    let dir = keyed_dir();
    let d = dir.path();
    let store = format!("sqlite:{}", d.join("registry.sqlite").display());
    let mut served = Served::start(d, &store, &[]);
    let journal = d.join("journal");
    let mut sim = Command::new(env!("CARGO_BIN_EXE_treecast"))
        .args([
            "simulate",
            "--server",
            &served.base,
            "--users",
            "100000",
            "--threads",
            "4",
        ])
        .arg("--admin-token")
        .arg(d.join("admin.token"))
        .arg("--journal")
        .arg(&journal)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill once a few hundred operations were acknowledged.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while std::fs::read_to_string(&journal).map_or(0, |j| j.lines().count()) < 300 {
        assert!(
            std::time::Instant::now() < deadline,
            "the simulator did not get going"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    served.child.kill().unwrap();
    served.child.wait().unwrap();
    std::mem::forget(served);
    assert!(
        !sim.wait().unwrap().success(),
        "the simulator noticed the service was gone"
    );
    let lines = std::fs::read_to_string(&journal).unwrap().lines().count();
    assert!(lines >= 300);

    // The service starts again on the same registry and answers.
    let again = Served::start(d, &store, &[]);
    let t = HttpTransport::new(&again.base);
    assert!(t.current_ekb().is_ok());
    assert!(again.stop().success());
    let out = Command::new(env!("CARGO_BIN_EXE_treecast"))
        .args(["store", "check", "--store", &store, "--keys"])
        .arg(d.join("keys"))
        .arg("--journal")
        .arg(&journal)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Licenses with time from the command line (issue 27): `serve --offer` sells a loan with one
/// copy; `client buy --offer loan` borrows it, `client play` plays it with the time,
/// `client renew` extends it, `client status --documents` shows its status document,
/// `client return` gives it back, after which it no longer plays and the copy is free.
#[test]
fn a_loan_from_the_command_line() {
    let dir = keyed_dir();
    let d = dir.path();
    let store = format!("sqlite:{}", d.join("registry.sqlite").display());
    let served = Served::start(
        d,
        &store,
        &[
            "--offer",
            "loan:0:1209600:0:1209600:0",
            "--loan-copies",
            "1",
        ],
    );
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_treecast"))
            .current_dir(d)
            .args(args)
            .output()
            .unwrap()
    };
    let ok = |args: &[&str]| {
        let out = run(args);
        assert!(
            out.status.success(),
            "treecast {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let url = served.base.as_str();
    let token = d.join("admin.token");
    let token = token.to_str().unwrap();
    ok(&[
        "admin",
        "create-user",
        "--server",
        url,
        "--admin-token",
        token,
        "--credential-out",
        "reader.credential",
    ]);
    std::fs::write(d.join("book.txt"), b"A book, lent for two weeks.\n").unwrap();
    ok(&[
        "admin",
        "publish",
        "--server",
        url,
        "--admin-token",
        token,
        "--file",
        "book.txt",
    ]);
    let cred = ["--credential-file", "reader.credential"];
    for device in ["reader", "tablet"] {
        ok(&[
            &[
                "client", "register", "--server", url, "--user", "1", "--device", device,
            ][..],
            &cred,
        ]
        .concat());
    }
    let on = |device: &'static str| [&["--device", device][..], &cred[..]].concat();
    ok(&[
        &["client", "buy", "--content", "1", "--offer", "loan"][..],
        &on("reader"),
    ]
    .concat());
    // One copy: the tablet waits.
    let refused = run(&[
        &["client", "buy", "--content", "1", "--offer", "loan"][..],
        &on("tablet"),
    ]
    .concat());
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("no_copy_available"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    ok(&[
        "client",
        "play",
        "--device",
        "reader",
        "--content",
        "1",
        "--out",
        "read.txt",
    ]);
    assert_eq!(
        std::fs::read(d.join("read.txt")).unwrap(),
        b"A book, lent for two weeks.\n"
    );
    let renewed = ok(&[
        &["client", "renew", "--content", "1", "--from", "end"][..],
        &on("reader"),
    ]
    .concat());
    assert!(renewed.starts_with("renewed content 1 until "), "{renewed}");
    let status = ok(&[&["client", "status", "--documents"][..], &on("reader")].concat());
    assert!(status.contains("loan until"), "{status}");
    assert!(
        status.contains("\"renew\"") && status.contains("\"offer\":\"loan\""),
        "{status}"
    );
    ok(&[&["client", "return", "--content", "1"][..], &on("reader")].concat());
    assert!(
        !run(&[
            "client",
            "play",
            "--device",
            "reader",
            "--content",
            "1",
            "--out",
            "-"
        ])
        .status
        .success()
    );
    ok(&[
        &["client", "buy", "--content", "1", "--offer", "loan"][..],
        &on("tablet"),
    ]
    .concat());
}
