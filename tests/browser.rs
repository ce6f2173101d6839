//! Playback in a real browser (issue 30): Debian's Chromium, headless, plays what `treecast
//! cenc encrypt` wrote through Media Source Extensions and EME with the W3C ClearKey key system,
//! and does not with another key or with none. The page (`tests/browser/eme.html`) is served by
//! a small HTTP server of the test's own and posts what happens, which the test reads.
//!
//! Skipped with one line where Chromium is absent; `TREECAST_REQUIRE_CHROMIUM=1` (`.ci/run`)
//! makes it mandatory. Chromium runs in real time (`--virtual-time-budget` never starts
//! playback), without its sandbox as root, muted and with autoplay allowed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub(crate) mod cdp;

const PAGE: &str = include_str!("browser/eme.html");
const CLEAR: &[u8] = include_bytes!("../cenc/tests/data/clear-fragmented.mp4");
const KEY: &str = "3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c";
const KID: &str = "a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5";

/// The Chromium binary, or `None` (skipped) where it is not installed.
pub(crate) fn chromium() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .flat_map(|dir| ["chromium", "chromium-browser"].map(|n| dir.join(n)))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var("TREECAST_REQUIRE_CHROMIUM").as_deref() != Ok("1"),
            "TREECAST_REQUIRE_CHROMIUM=1 but chromium is not installed"
        );
        eprintln!("chromium is not installed: the browser tests are skipped");
    }
    found
}

/// How Chromium runs here: headless in real time (`--virtual-time-budget` never starts
/// playback), without its sandbox (as root), muted with autoplay allowed, and with no
/// background connections for this machine's closed network to refuse.
pub(crate) const HEADLESS: [&str; 10] = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--mute-audio",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
];

/// What the page posted, one JSON object a line.
type Log = Arc<Mutex<Vec<serde_json::Value>>>;

/// Serves `page` at `/`, `media` at `/media.mp4`, and takes the page's posts to `/log`, on a
/// loopback port of its own; returns the base URL and the log.
fn serve(page: &'static str, media: Vec<u8>) -> (String, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let log: Log = Arc::default();
    let kept = Arc::clone(&log);
    let media = Arc::new(media);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (log, media) = (Arc::clone(&kept), Arc::clone(&media));
            std::thread::spawn(move || {
                let _ = answer(stream, page, &media, &log);
            });
        }
    });
    (base, log)
}

fn answer(stream: std::net::TcpStream, page: &str, media: &[u8], log: &Log) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header)?;
        if header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; length.min(1 << 20)];
    reader.read_exact(&mut body)?;
    let mut out = stream;
    let (status, kind, bytes): (&str, &str, &[u8]) = if path == "/log" {
        if let Ok(v) = serde_json::from_slice(&body) {
            log.lock().unwrap().push(v);
        }
        ("204 No Content", "text/plain", b"")
    } else if path == "/media.mp4" {
        ("200 OK", "video/mp4", media)
    } else if path.starts_with("/?") || path == "/" {
        ("200 OK", "text/html", page.as_bytes())
    } else {
        ("404 Not Found", "text/plain", b"")
    };
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        bytes.len()
    )?;
    out.write_all(bytes)
}

/// A headless Chromium on `url`, killed when dropped (its profile directory with it).
pub(crate) struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub(crate) fn open(binary: &Path, url: &str) -> Self {
        let profile = tempfile::tempdir().unwrap();
        let child = Command::new(binary)
            .args(HEADLESS)
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Self {
            child,
            _profile: profile,
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `done` holds of the log or `limit` passes; returns the log.
fn wait(
    log: &Log,
    limit: Duration,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let start = Instant::now();
    loop {
        let seen = log.lock().unwrap().clone();
        if done(&seen) || start.elapsed() > limit {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn state(seen: &[serde_json::Value]) -> Option<(f64, u64, Option<String>)> {
    seen.iter().rev().find(|v| v["event"] == "state").map(|v| {
        (
            v["time"].as_f64().unwrap_or(0.0),
            v["frames"].as_u64().unwrap_or(0),
            v["error"].as_str().map(str::to_owned),
        )
    })
}

/// The packaged file, made through the CLI as an operator makes it.
fn packaged(dir: &Path) -> Vec<u8> {
    std::fs::write(dir.join("clear.mp4"), CLEAR).unwrap();
    let key = dir.join("content.key");
    std::fs::write(&key, format!("{KEY}\n")).unwrap();
    #[cfg(unix)]
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_treecast"))
        .current_dir(dir)
        .args([
            "cenc",
            "encrypt",
            "--key-file",
            "content.key",
            "--kid",
            KID,
            "--in",
            "clear.mp4",
            "--out",
            "enc.mp4",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    std::fs::read(dir.join("enc.mp4")).unwrap()
}

/// Whether headless Chromium plays `media` (a cenc MP4) with the key and key ID given in hex:
/// frames decoded and the time past 2 s, within a minute, with no error, after the `encrypted`
/// event its `pssh` makes the browser fire.
pub(crate) fn plays(chromium: &Path, media: Vec<u8>, key: &str, kid: &str) -> bool {
    let (base, log) = serve(PAGE, media);
    let _browser = Browser::open(chromium, &format!("{base}/?key={key}&kid={kid}"));
    let seen = wait(&log, Duration::from_secs(60), |s| {
        state(s).is_some_and(|(t, frames, _)| t > 2.0 && frames > 0)
    });
    let asked = seen.iter().any(|v| v["event"] == "encrypted");
    let played = state(&seen).is_some_and(|(t, frames, e)| t > 2.0 && frames > 0 && e.is_none());
    if !(asked && played) {
        eprintln!("the page said: {seen:?}");
    }
    asked && played
}

#[test]
fn a_cenc_file_plays_with_its_key_and_not_without() {
    let Some(chromium) = chromium() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let media = packaged(dir.path());
    assert!(
        plays(&chromium, media.clone(), KEY, KID),
        "the right key plays"
    );
    let (base, log) = serve(PAGE, media);
    for query in [
        format!("?key={}&kid={KID}", "3d".repeat(16)),
        "?".to_owned(),
    ] {
        log.lock().unwrap().clear();
        let _browser = Browser::open(&chromium, &format!("{base}/{query}"));
        // Given the time the right key took to play two seconds, and more.
        let seen = wait(&log, Duration::from_secs(10), |s| {
            state(s).is_some_and(|(t, _, e)| t > 0.0 || e.is_some())
        });
        let (time, frames, _) = state(&seen).unwrap_or_else(|| panic!("{query}: {seen:?}"));
        assert!(time == 0.0 && frames == 0, "{query}: {seen:?}");
    }
}
