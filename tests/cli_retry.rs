//! A lost answer can be retried from the command line (issue 24, item 9): a proxy between
//! `treecast client` and `treecast serve` forwards each request but withholds the first answer
//! to a license and to a certificate request, as a user (or the network) can. The retry sends
//! the same signed bytes, gets the same answer, and nothing is lost or copied; a failed
//! registration leaves no directory behind.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use treecast::license::transport::HttpTransport;

use crate::service::Served;

/// One HTTP/1.1 message (head and a `content-length` body) read from `r`, or `None` at the end.
fn message(r: &mut BufReader<TcpStream>) -> Option<(String, Vec<u8>)> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let end = line == "\r\n";
        head.push_str(&line);
        if end {
            break;
        }
    }
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0; length];
    r.read_exact(&mut body).ok()?;
    Some((head, body))
}

/// A proxy to `upstream` on a loopback port that forwards every request, one per connection
/// (it answers `connection: close`), and withholds the first answer to each path in
/// `withhold`: it closes the connection instead. Stops when `stop` is set.
struct Withholding {
    url: String,
    stop: Arc<AtomicBool>,
    withheld: Arc<AtomicU32>,
}

impl Withholding {
    fn start(upstream: &str, withhold: &'static [&'static str]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let stop = Arc::new(AtomicBool::new(false));
        let withheld = Arc::new(AtomicU32::new(0));
        let (s, w) = (Arc::clone(&stop), Arc::clone(&withheld));
        std::thread::spawn(move || {
            let mut seen: Vec<&str> = Vec::new();
            while !s.load(Ordering::Relaxed) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let mut from_client = BufReader::new(client.try_clone().unwrap());
                let Some((head, body)) = message(&mut from_client) else {
                    continue;
                };
                let mut server = TcpStream::connect(&upstream).unwrap();
                server.write_all(head.as_bytes()).unwrap();
                server.write_all(&body).unwrap();
                let mut from_server = BufReader::new(server);
                let (answer_head, answer_body) = message(&mut from_server).unwrap();
                let target = head
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_owned();
                if let Some(path) = withhold.iter().find(|p| target == **p && !seen.contains(p)) {
                    // The service acted on the request; its answer never arrives.
                    seen.push(path);
                    w.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let answer_head = answer_head.replacen("\r\n", "\r\nconnection: close\r\n", 1);
                let mut client = client;
                let _ = client.write_all(answer_head.as_bytes());
                let _ = client.write_all(&answer_body);
            }
        });
        Self {
            url,
            stop,
            withheld,
        }
    }
}

impl Drop for Withholding {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// `treecast_in`, with a client that sends each request once (`TREECAST_CLIENT_TRIES=1`): a
/// withheld answer is a failed command, and the pending request is left for the next one.
fn treecast_once(dir: &Path, args: &[&str]) -> Output {
    treecast_with(dir, args, &[("TREECAST_CLIENT_TRIES", "1")])
}

fn treecast_in(dir: &Path, args: &[&str]) -> Output {
    treecast_with(dir, args, &[])
}

fn treecast_with(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_treecast"))
        .current_dir(dir)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_withheld_license_or_certificate_is_retried_with_the_same_request() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(&treecast_in(d, &["keygen", "--out", "keys"]));
    let store = format!("sqlite:{}", d.join("registry.sqlite").display());
    let served = Served::start(d, &store, &[]);
    let url = served.base.as_str();
    let token = d.join("admin.token");
    let token = token.to_str().unwrap();
    ok(&treecast_in(
        d,
        &[
            "admin",
            "create-user",
            "--server",
            url,
            "--admin-token",
            token,
            "--credential-out",
            "alice.credential",
        ],
    ));
    std::fs::write(d.join("song.txt"), b"A song that is bought once.\n").unwrap();
    ok(&treecast_in(
        d,
        &[
            "admin",
            "publish",
            "--server",
            url,
            "--admin-token",
            token,
            "--file",
            "song.txt",
        ],
    ));

    // A registration refused (a wrong credential) leaves no directory; the retry works.
    std::fs::write(d.join("wrong.credential"), "00".repeat(32)).unwrap();
    let register = |device: &str, credential: &str| {
        treecast_in(
            d,
            &[
                "client",
                "register",
                "--server",
                url,
                "--user",
                "1",
                "--device",
                device,
                "--credential-file",
                credential,
            ],
        )
    };
    assert!(!register("phone", "wrong.credential").status.success());
    assert!(!d.join("phone").exists());
    let leftovers: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    ok(&register("phone", "alice.credential"));
    ok(&register("laptop", "alice.credential"));

    // Both devices talk through the withholding proxy from now on.
    let proxy = Withholding::start(url, &["/v1/licenses", "/v1/certificates"]);
    for device in ["phone", "laptop"] {
        std::fs::write(d.join(device).join("server"), &proxy.url).unwrap();
    }
    let cred = ["--credential-file", "alice.credential"];
    let buy = [
        &["client", "buy", "--device", "phone", "--content", "1"][..],
        &cred,
    ]
    .concat();
    assert!(
        !treecast_once(d, &buy).status.success(),
        "the answer was withheld"
    );
    assert_eq!(proxy.withheld.load(Ordering::Relaxed), 1);
    assert!(d.join("phone").join("pending-license-1").exists());
    assert!(ok(&treecast_in(d, &buy)).starts_with("bought"));
    assert!(!d.join("phone").join("pending-license-1").exists());
    let play = |device: &str| {
        treecast_in(
            d,
            &[
                "client",
                "play",
                "--device",
                device,
                "--content",
                "1",
                "--out",
                "-",
            ],
        )
    };
    assert_eq!(ok(&play("phone")), "A song that is bought once.\n");
    // The retry was the same request: answered again, billed once.
    let t = HttpTransport::new(url);
    let price = treecast::license::Tariff::default().price(
        treecast::license::ChargeKind::License,
        treecast::license::ContentId(1),
    );
    assert_eq!(
        t.user_total(&served.admin, treecast::license::UserId(1))
            .unwrap(),
        price
    );

    let mv = [
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
    .concat();
    assert!(
        !treecast_once(d, &mv).status.success(),
        "the answer was withheld"
    );
    assert_eq!(proxy.withheld.load(Ordering::Relaxed), 2);
    assert!(d.join("phone").join("pending-move-1").exists());
    // The pending move names the laptop: towards another device it is refused, unsent.
    ok(&register("tablet", "alice.credential"));
    std::fs::write(d.join("tablet").join("server"), &proxy.url).unwrap();
    let elsewhere = treecast_in(
        d,
        &[
            &[
                "client",
                "move",
                "--from",
                "phone",
                "--to",
                "tablet",
                "--content",
                "1",
            ][..],
            &cred,
        ]
        .concat(),
    );
    assert!(!elsewhere.status.success());
    assert!(
        String::from_utf8_lossy(&elsewhere.stderr).contains("pending"),
        "{elsewhere:?}"
    );
    ok(&treecast_in(d, &mv));
    assert!(!d.join("phone").join("pending-move-1.certificate").exists());
    assert!(!d.join("phone").join("pending-move-1").exists());
    assert_eq!(ok(&play("laptop")), "A song that is bought once.\n");
    assert!(!play("phone").status.success());
    let status = ok(&treecast_in(
        d,
        &[&["client", "status", "--device", "laptop"][..], &cred].concat(),
    ));
    assert!(status.contains("(active)"), "{status}");
    drop(proxy);

    // With the transport's own retries (issue 28), a withheld answer costs one command nothing:
    // the same signed request is sent again and answered from the records, billed once.
    let proxy = Withholding::start(url, &["/v1/licenses"]);
    std::fs::write(d.join("tablet").join("server"), &proxy.url).unwrap();
    let buy_again = [
        &["client", "buy", "--device", "tablet", "--content", "1"][..],
        &cred,
    ]
    .concat();
    assert!(ok(&treecast_in(d, &buy_again)).starts_with("bought"));
    assert_eq!(proxy.withheld.load(Ordering::Relaxed), 1);
    assert!(!d.join("tablet").join("pending-license-1").exists());
    let move_price = treecast::license::Tariff::default().price(
        treecast::license::ChargeKind::Certificate,
        treecast::license::ContentId(1),
    );
    assert_eq!(
        t.user_total(&served.admin, treecast::license::UserId(1))
            .unwrap(),
        2 * price + move_price,
        "the retried purchase was billed once"
    );
    drop(proxy);
    assert!(served.stop().success());
}
