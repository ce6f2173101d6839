//! The web device in a real browser (issue 30): headless Chromium, driven over the DevTools
//! protocol, opens the page `treecast serve --app` serves at `/app/` (the WebAssembly device
//! `scripts/build-web.sh` builds) and registers, buys, plays, moves out and in through it, as a
//! person clicking its buttons would (the buttons call the same `window.treecast` actions).
//!
//! Playing means what a person sees: frames decoded and `currentTime` past 2 s, through Media
//! Source Extensions and EME with ClearKey, the key from the device's own license unwrapped in
//! WebAssembly. Skipped with one line where Chromium or the built page is absent;
//! `TREECAST_REQUIRE_CHROMIUM=1` and `TREECAST_REQUIRE_WEB=1` (`.ci/run`) make them mandatory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use super::{Served, keyed_dir, treecast, treecast_refused};
use crate::browser::cdp::Chromium;

const CLEAR: &[u8] = include_bytes!("../../cenc/tests/data/clear-fragmented.mp4");
const NOTE: &str = "A text content, decrypted in WebAssembly and shown in the page.";

/// The built web device (`scripts/build-web.sh`: `target/web`, or `TREECAST_WEB_DIR`), or
/// `None` (skipped) where it is not built.
pub(crate) fn web_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("TREECAST_WEB_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target/web"),
        PathBuf::from,
    );
    if dir.join("pkg/treecast_web_bg.wasm").is_file() {
        return Some(dir);
    }
    assert!(
        std::env::var("TREECAST_REQUIRE_WEB").as_deref() != Ok("1"),
        "TREECAST_REQUIRE_WEB=1 but {} holds no web device (scripts/build-web.sh)",
        dir.display()
    );
    eprintln!("the web device is not built (scripts/build-web.sh): its browser tests are skipped");
    None
}

/// A browser with the page open and its device (if any) loaded.
pub(crate) fn open_page(chromium: &Path, url: &str) -> Chromium {
    let mut browser = Chromium::launch(chromium);
    browser.navigate(url);
    ready(&mut browser);
    browser
}

fn ready(browser: &mut Chromium) {
    assert!(
        browser.wait_for(
            "window.treecast !== undefined && window.treecast.ready.then(() => true)",
            Duration::from_secs(30)
        ),
        "the page's device did not start"
    );
}

/// Whether the page's video plays: frames decoded and the time past 2 s within 30 s, no error.
pub(crate) fn video_plays(browser: &mut Chromium) -> bool {
    browser.wait_for(
        "(() => { const v = document.getElementById('video'); \
         return v.currentTime > 2 && v.getVideoPlaybackQuality().totalVideoFrames > 0 \
         && !v.error; })()",
        Duration::from_secs(30),
    )
}

/// Asks the page to play `content`, which must be refused: the error's message; and nothing
/// plays in the next two seconds.
fn refused_to_play(browser: &mut Chromium, content: u64) -> String {
    let error = browser
        .eval(&format!("treecast.play({content})"))
        .expect_err("played without a license");
    std::thread::sleep(Duration::from_secs(2));
    let time = browser
        .eval("document.getElementById('video').currentTime")
        .unwrap();
    assert_eq!(time.as_f64(), Some(0.0), "{error}");
    error
}

fn status(browser: &mut Chromium) -> Value {
    browser.eval("treecast.status()").unwrap()
}

fn licensed(browser: &mut Chromium) -> Vec<u64> {
    status(browser)["licenses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["content"].as_u64().unwrap())
        .collect()
}

#[test]
fn the_web_device_registers_buys_plays_and_moves_with_browsers_and_the_cli() {
    let Some(chromium) = crate::browser::chromium() else {
        return;
    };
    let Some(web) = web_dir() else {
        return;
    };
    let dir = keyed_dir();
    let d = dir.path();
    let store = format!("sqlite:{}", d.join("registry.sqlite").display());
    let served = Served::start(
        d,
        &store,
        &[
            "--auth-failures-per-address",
            "0",
            "--app",
            web.to_str().unwrap(),
        ],
    );
    let run = |args: &[&str]| treecast(d, args);
    let url = served.base.as_str();
    let token = d.join("admin.token");
    let admin = ["--server", url, "--admin-token", token.to_str().unwrap()];
    let admin = |args: &[&str]| run(&[&["admin"][..], args, &admin].concat());
    admin(&["create-user", "--credential-out", "alice.credential"]);
    std::fs::write(d.join("clear.mp4"), CLEAR).unwrap();
    std::fs::write(d.join("note.txt"), NOTE).unwrap();
    assert_eq!(
        admin(&["publish", "--file", "clear.mp4", "--cenc"]),
        "content 1\n"
    );
    assert_eq!(admin(&["publish", "--file", "note.txt"]), "content 2\n");
    let credential = std::fs::read_to_string(d.join("alice.credential")).unwrap();
    let credential = credential.trim();
    let app = format!("{url}/app/");

    // A browser registers with server 1, buys both contents and plays them.
    let mut a = open_page(&chromium, &app);
    let a_id = a
        .eval(&format!("treecast.register('1', '{credential}', '1')"))
        .unwrap()
        .as_u64()
        .unwrap();
    a.eval("treecast.buy(1)").unwrap();
    a.eval("treecast.buy(2)").unwrap();
    assert_eq!(licensed(&mut a), [1, 2]);
    let shown = a
        .eval("treecast.play(2).then(() => document.querySelector('#shown pre').textContent)")
        .unwrap();
    assert_eq!(shown, NOTE);
    a.eval("treecast.play(1)").unwrap();
    assert!(video_plays(&mut a), "the licensed web device plays");
    if let Some(path) = std::env::var_os("TREECAST_WEB_SCREENSHOT") {
        std::fs::write(path, a.screenshot()).unwrap();
    }

    // Its state survives a reload: the same client, its licenses, and it plays again.
    a.reload();
    ready(&mut a);
    assert_eq!(status(&mut a)["client"], a_id);
    assert_eq!(licensed(&mut a), [1, 2]);
    a.eval("treecast.play(1)").unwrap();
    assert!(video_plays(&mut a), "it plays after a reload");

    // A second browser (another profile, another license server) without a license: no key.
    let mut b = open_page(&chromium, &app);
    let b_id = b
        .eval(&format!("treecast.register('1', '{credential}', '2')"))
        .unwrap()
        .as_u64()
        .unwrap();
    let error = refused_to_play(&mut b, 1);
    assert!(error.contains("no usable license"), "{error}");

    // Browser → CLI: the package from the page moves in on a CLI device, which plays; the
    // browser no longer does.
    let cred = ["--credential-file", "alice.credential"];
    let client = |args: &[&str]| run(&[&["client"][..], args, &cred].concat());
    let registered = client(&[
        "register", "--server", url, "--user", "1", "--device", "desk",
    ]);
    let desk_id: u64 = registered
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let package = a.eval(&format!("treecast.moveOut(1, {desk_id})")).unwrap();
    std::fs::write(
        d.join("to-desk.tcmp"),
        STANDARD.decode(package.as_str().unwrap()).unwrap(),
    )
    .unwrap();
    let moved = client(&["move-in", "--device", "desk", "--package", "to-desk.tcmp"]);
    assert!(moved.starts_with("moved content 1 into client"), "{moved}");
    run(&[
        "client",
        "play",
        "--device",
        "desk",
        "--content",
        "1",
        "--out",
        "desk.mp4",
    ]);
    assert!(std::fs::read(d.join("desk.mp4")).unwrap() == CLEAR);
    let error = refused_to_play(&mut a, 1);
    assert!(error.contains("no usable license"), "{error}");
    assert_eq!(licensed(&mut a), [2]);
    // The package is the desk's: in the second browser it is refused (its certificate is of
    // another client, signed by another server than the second browser's).
    let stolen = STANDARD.encode(std::fs::read(d.join("to-desk.tcmp")).unwrap());
    let refused = b
        .eval(&format!("treecast.moveIn('{stolen}')"))
        .expect_err("another device's package moved in");
    assert!(
        refused.contains("another client") || refused.contains("signature"),
        "{refused}"
    );

    // CLI → browser: the CLI device writes the package, the second browser moves in and plays.
    run(&[
        "client",
        "move-out",
        "--device",
        "desk",
        "--content",
        "1",
        "--to-client",
        &b_id.to_string(),
        "--out",
        "to-b.tcmp",
    ]);
    let package = STANDARD.encode(std::fs::read(d.join("to-b.tcmp")).unwrap());
    assert_eq!(b.eval(&format!("treecast.moveIn('{package}')")).unwrap(), 1);
    b.eval("treecast.play(1)").unwrap();
    assert!(
        video_plays(&mut b),
        "moved in from the CLI, the browser plays"
    );
    treecast_refused(
        d,
        &[
            "client",
            "play",
            "--device",
            "desk",
            "--content",
            "1",
            "--out",
            "again.mp4",
        ],
    );
    // The package once more, in the browser: refused (the certificate is used).
    assert!(b.eval(&format!("treecast.moveIn('{package}')")).is_err());

    // Browser → browser: back to the first, which plays again; the second no longer.
    let package = b.eval(&format!("treecast.moveOut(1, {a_id})")).unwrap();
    let package = package.as_str().unwrap();
    assert_eq!(a.eval(&format!("treecast.moveIn('{package}')")).unwrap(), 1);
    a.eval("treecast.play(1)").unwrap();
    assert!(
        video_plays(&mut a),
        "moved in from a browser, the browser plays"
    );
    refused_to_play(&mut b, 1);

    // A revoked browser is sold nothing later, so plays nothing later.
    admin(&["revoke", "--client", &b_id.to_string()]);
    assert_eq!(
        admin(&["publish", "--file", "clear.mp4", "--cenc"]),
        "content 3\n"
    );
    let refused = b
        .eval("treecast.buy(3)")
        .expect_err("a revoked device bought");
    assert!(refused.contains("revoked"), "{refused}");
    refused_to_play(&mut b, 3);
    a.eval("treecast.buy(3)").unwrap();
    a.eval("treecast.play(3)").unwrap();
    assert!(
        video_plays(&mut a),
        "a device not revoked plays the later content"
    );
}
