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

use treecast::license::UserId;
use treecast::license::transport::{HttpTransport, Retries};

use super::{Served, keyed_dir, treecast, treecast_refused};
use crate::browser::cdp::Chromium;

const CLEAR: &[u8] = include_bytes!("../../cenc/tests/data/clear-fragmented.mp4");
const NOTE: &str = "A text content, decrypted in WebAssembly and shown in the page.";
/// A 1×1 PNG (one red pixel): an image content, shown in the page.
const PIXEL: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x02, 0x00, 0x00, 0x00, 0x90, 0x77, 0x53,
    0xde, 0x00, 0x00, 0x00, 0x0c, 0x49, 0x44, 0x41, 0x54, 0x08, 0xd7, 0x63, 0xf8, 0xcf, 0xc0, 0x00,
    0x00, 0x03, 0x01, 0x01, 0x00, 0x18, 0xdd, 0x8d, 0xb0, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e,
    0x44, 0xae, 0x42, 0x60, 0x82,
];

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

/// A service with the web device's page (`extra` its further flags) on a new SQLite registry,
/// with a user (`alice.credential`): its directory, the service and Chromium; `None` (skipped)
/// where Chromium or the built page is absent.
fn web_service(extra: &[&str]) -> Option<(tempfile::TempDir, Served, PathBuf)> {
    let chromium = crate::browser::chromium()?;
    let web = web_dir()?;
    let dir = keyed_dir();
    let store = format!("sqlite:{}", dir.path().join("registry.sqlite").display());
    let mut args = vec![
        "--auth-failures-per-address",
        "0",
        "--app",
        web.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let served = Served::start(dir.path(), &store, &args);
    admin_cli(
        dir.path(),
        &served,
        &["create-user", "--credential-out", "alice.credential"],
    );
    Some((dir, served, chromium))
}

/// `treecast admin ARGS` against `served`, in `dir`: its standard output.
fn admin_cli(dir: &Path, served: &Served, args: &[&str]) -> String {
    let token = dir.join("admin.token");
    let to = [
        "--server",
        &served.base,
        "--admin-token",
        token.to_str().unwrap(),
    ];
    treecast(dir, &[&["admin"][..], args, &to].concat())
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

/// Makes the page lose the answer to its next request to `path`: the request reaches the
/// service, the answer is thrown away (as a dropped connection would).
fn lose_next_answer(browser: &mut Chromium, path: &str) {
    browser
        .eval(&format!(
            "(() => {{ const real = window.fetch; window.fetch = async (url, options) => {{ \
             const answer = await real(url, options); \
             if (url === '{path}') {{ window.fetch = real; \
               throw new TypeError('the answer was lost on its way'); }} \
             return answer; }}; }})()"
        ))
        .unwrap();
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
    // A day to carry a move package from one device to another.
    let Some((dir, served, chromium)) = web_service(&["--certificate-validity", "86400"]) else {
        return;
    };
    let d = dir.path();
    let run = |args: &[&str]| treecast(d, args);
    let url = served.base.as_str();
    let admin = |args: &[&str]| admin_cli(d, &served, args);
    std::fs::write(d.join("clear.mp4"), CLEAR).unwrap();
    std::fs::write(d.join("note.txt"), NOTE).unwrap();
    assert_eq!(
        admin(&["publish", "--file", "clear.mp4", "--cenc"]),
        "content 1\n"
    );
    assert_eq!(admin(&["publish", "--file", "note.txt"]), "content 2\n");
    std::fs::write(d.join("pixel.png"), PIXEL).unwrap();
    assert_eq!(admin(&["publish", "--file", "pixel.png"]), "content 3\n");
    let credential = std::fs::read_to_string(d.join("alice.credential")).unwrap();
    let credential = credential.trim();
    let app = format!("{url}/app/");

    // A browser registers with server 1, buys both contents and plays them.
    let mut a = open_page(&chromium, &app);
    // The page runs under its Content Security Policy: a script injected inline does not run.
    let csp = a
        .eval("fetch('/app/app.js').then(r => r.headers.get('content-security-policy'))")
        .unwrap();
    let csp = csp.as_str().unwrap();
    for directive in [
        "default-src 'none'",
        "script-src 'self' 'wasm-unsafe-eval'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} in {csp}");
    }
    let nosniff = a
        .eval(
            "fetch('/app/pkg/treecast_web.js').then(r => r.headers.get('x-content-type-options'))",
        )
        .unwrap();
    assert_eq!(nosniff, "nosniff");
    // Files only: a directory is not listed, nor redirected by a path the client chose.
    let statuses = a
        .eval(
            "Promise.all(['/app/pkg', '/app/pkg/', '/app/../keys', '/app'].map((p) => \
             fetch(p, {redirect: 'manual'}).then((r) => r.type === 'opaqueredirect' \
             ? 'redirect' : r.status)))",
        )
        .unwrap();
    assert_eq!(statuses, serde_json::json!([404, 404, 404, "redirect"]));
    let injected = a
        .eval(
            "new Promise((done) => { window.injected = false; \
             const s = document.createElement('script'); \
             s.textContent = 'window.injected = true'; document.body.append(s); \
             setTimeout(() => done(window.injected), 200); })",
        )
        .unwrap();
    assert_eq!(injected, false, "an inline script ran in the page");
    let a_id = a
        .eval(&format!("treecast.register('1', '{credential}', '1')"))
        .unwrap()
        .as_u64()
        .unwrap();
    a.eval("treecast.buy(1)").unwrap();
    let t = HttpTransport::new(url).with_retries(Retries::NONE);
    let one = t.user_total(&served.admin, UserId(1)).unwrap();
    // The answer to the next license request is lost on its way back: the page keeps the
    // signed request and sends the same bytes again, which the service answers again, billed
    // once.
    lose_next_answer(&mut a, "/v1/licenses");
    let lost = a.eval("treecast.buy(2)").expect_err("a lost answer");
    assert!(lost.contains("lost on its way"), "{lost}");
    assert_eq!(licensed(&mut a), [1]);
    a.eval("treecast.buy(2)").unwrap();
    assert_eq!(licensed(&mut a), [1, 2]);
    assert_eq!(t.user_total(&served.admin, UserId(1)).unwrap(), 2 * one);
    let shown = a
        .eval("treecast.play(2).then(() => document.querySelector('#shown pre').textContent)")
        .unwrap();
    assert_eq!(shown, NOTE);
    a.eval("treecast.buy(3)").unwrap();
    let width = a
        .eval(
            "treecast.play(3).then(() => { const img = document.querySelector('#shown img'); \
             return img.decode().then(() => img.naturalWidth); })",
        )
        .unwrap();
    assert_eq!(width, 1, "the image content is shown");
    a.eval("treecast.play(1)").unwrap();
    assert!(video_plays(&mut a), "the licensed web device plays");
    if let Some(path) = std::env::var_os("TREECAST_WEB_SCREENSHOT") {
        std::fs::write(path, a.screenshot()).unwrap();
    }

    // Its state survives a reload: the same client, its licenses, and it plays again.
    a.reload();
    ready(&mut a);
    assert_eq!(status(&mut a)["client"], a_id);
    assert_eq!(licensed(&mut a), [1, 2, 3]);
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
    // The first answer is lost: the page sends the same move request again and gets the same
    // certificate. What plays stops when the license goes.
    assert!(video_plays(&mut a));
    lose_next_answer(&mut a, "/v1/certificates");
    assert!(a.eval(&format!("treecast.moveOut(1, {desk_id})")).is_err());
    assert!(
        video_plays(&mut a),
        "a move that did not happen stops nothing"
    );
    let package = a.eval(&format!("treecast.moveOut(1, {desk_id})")).unwrap();
    let stopped = a
        .eval(
            "(() => { const v = document.getElementById('video'); \
             return v.paused && v.readyState === 0 && v.mediaKeys === null; })()",
        )
        .unwrap();
    assert_eq!(
        stopped, true,
        "the video stopped and its key went with the license"
    );
    // Asked again (a reload, a lost file), the page gives the same package, and to no one else.
    assert_eq!(
        a.eval(&format!("treecast.moveOut(1, {desk_id})")).unwrap(),
        package
    );
    assert!(a.eval(&format!("treecast.moveOut(1, {b_id})")).is_err());
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
    assert_eq!(licensed(&mut a), [2, 3]);
    // The package is the desk's: in a browser of the same server it is refused (another
    // client's certificate), and in one of another server (not its server's signature).
    let stolen = STANDARD.encode(std::fs::read(d.join("to-desk.tcmp")).unwrap());
    let refused = a
        .eval(&format!("treecast.moveIn('{stolen}')"))
        .expect_err("another device's package moved in");
    assert!(refused.contains("another client"), "{refused}");
    let refused = b
        .eval(&format!("treecast.moveIn('{stolen}')"))
        .expect_err("another device's package moved in");
    assert!(refused.contains("signature"), "{refused}");

    // CLI → browser: the CLI device writes the package, the second browser moves in and plays.
    // The package is to be moved in within the service's certificate validity (a day here).
    let to_b = b_id.to_string();
    let move_out_to = |out: &'static str| {
        [
            "client",
            "move-out",
            "--device",
            "desk",
            "--content",
            "1",
            "--to-client",
            to_b.as_str(),
            "--out",
            out,
        ]
    };
    // Never over an existing file (`--out` naming the device's state would destroy it): refused
    // before anything changes.
    let state = std::fs::read(d.join("desk/state")).unwrap();
    let refused = treecast_refused(d, &move_out_to("desk/state"));
    assert!(refused.contains("exists"), "{refused}");
    assert!(std::fs::read(d.join("desk/state")).unwrap() == state);
    let moved_out = run(&move_out_to("to-b.tcmp"));
    let deadline: u64 = moved_out
        .trim()
        .strip_suffix(')')
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no deadline in {moved_out}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        deadline > now + 86_000 && deadline <= now + 86_400,
        "{moved_out}"
    );
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
        "content 4\n"
    );
    let refused = b
        .eval("treecast.buy(4)")
        .expect_err("a revoked device bought");
    assert!(refused.contains("revoked"), "{refused}");
    refused_to_play(&mut b, 4);
    a.eval("treecast.buy(4)").unwrap();
    a.eval("treecast.play(4)").unwrap();
    assert!(
        video_plays(&mut a),
        "a device not revoked plays the later content"
    );
}

/// The figures of `docs/performance.md` (issue 30, item 5): opening an EKB and unwrapping a
/// license's key in the page (WebAssembly) against the same natively, on the same service's
/// EKB (a tree of height 32 with 16 clients revoked). Prints them; asserts nothing of time.
/// `cargo test --release --test integration -- --ignored --nocapture web_device_timings`.
#[test]
#[ignore = "a measurement: run it in release and read what it prints"]
fn web_device_timings() {
    use treecast::license::transport::{HttpTransport, Retries, Transport};
    let Some((dir, served, chromium)) = web_service(&[]) else {
        return;
    };
    let d = dir.path();
    let url = served.base.as_str();
    let admin = |args: &[&str]| admin_cli(d, &served, args);
    std::fs::write(d.join("clear.mp4"), CLEAR).unwrap();
    admin(&["publish", "--file", "clear.mp4", "--cenc"]);
    let text = std::fs::read_to_string(d.join("alice.credential")).unwrap();
    let credential = treecast::license::credential::UserCredential::from_hex(text.trim()).unwrap();
    let t = HttpTransport::new(url).with_retries(Retries::NONE);
    for _ in 0..16 {
        let revoked = super::device(&t, UserId(1), &credential, 1);
        t.revoke(&served.admin, revoked.id()).unwrap();
    }
    // Natively, the same module's code on a device of the same service: a CLI device's files
    // make a web device's keys (`docs/formats.md`, "Web device keys") and state.
    let cred = ["--credential-file", "alice.credential"];
    let client = |args: &[&str]| treecast(d, &[&["client"][..], args, &cred].concat());
    client(&[
        "register", "--server", url, "--user", "1", "--device", "desk",
    ]);
    client(&["buy", "--device", "desk", "--content", "1"]);
    let mut keys = b"TCWK\x01".to_vec();
    keys.extend(hex::decode(std::fs::read_to_string(d.join("desk/key")).unwrap().trim()).unwrap());
    keys.extend(std::fs::read(d.join("desk/registration")).unwrap());
    let state = std::fs::read(d.join("desk/state")).unwrap();
    let mut native = treecast_web::WebDevice::load(&mut keys, &state).unwrap();
    let ekb = t.current_ekb().unwrap().1;
    let runs = 200u32;
    let start = std::time::Instant::now();
    for _ in 0..runs {
        native.store_ekb(&ekb).unwrap();
    }
    let native_ekb = start.elapsed() / runs;
    let start = std::time::Instant::now();
    for _ in 0..runs {
        native.clearkey_license(1).unwrap();
    }
    let native_key = start.elapsed() / runs;

    let mut page = open_page(&chromium, &format!("{url}/app/"));
    page.eval(&format!("treecast.register('1', '{}', '1')", text.trim()))
        .unwrap();
    page.eval("treecast.buy(1)").unwrap();
    let measured = page.eval(&format!("treecast.timings(1, {runs})")).unwrap();
    println!(
        "EKB of {} bytes, {runs} runs each: open the EKB: page {:.3} ms, native {:.3} ms; \
         unwrap the key: page {:.3} ms, native {:.3} ms",
        ekb.len(),
        measured["ekbMs"].as_f64().unwrap(),
        native_ekb.as_secs_f64() * 1e3,
        measured["keyMs"].as_f64().unwrap(),
        native_key.as_secs_f64() * 1e3,
    );
    assert_eq!(measured["ekbBytes"].as_u64(), Some(ekb.len() as u64));

    // A 10 s video's first frame through the web device: from the play action (the MP4 read
    // from IndexedDB, the key unwrapped in WebAssembly, the session, the buffer) to the first
    // frame shown. Needs ffmpeg to make the video.
    let made = std::process::Command::new("ffmpeg")
        .current_dir(d)
        .args([
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=duration=10:size=640x360:rate=25",
        ])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:duration=10"])
        .args([
            "-c:v",
            "libx264",
            "-profile:v",
            "baseline",
            "-pix_fmt",
            "yuv420p",
            "-g",
            "25",
        ])
        .args(["-c:a", "aac", "-b:a", "128k", "-movflags"])
        .args([
            "frag_keyframe+empty_moov+default_base_moof",
            "-f",
            "mp4",
            "ten.mp4",
        ])
        .status()
        .is_ok_and(|s| s.success());
    if !made {
        println!("no ffmpeg: the first-frame figure is skipped");
        return;
    }
    admin(&["publish", "--file", "ten.mp4", "--cenc"]);
    page.eval("treecast.buy(2)").unwrap();
    let mut firsts: Vec<f64> = (0..7)
        .map(|_| {
            page.eval(
                "(async () => { const t0 = performance.now(); await treecast.play(2); \
                 const v = document.getElementById('video'); \
                 await new Promise((r) => v.requestVideoFrameCallback(r)); \
                 return performance.now() - t0; })()",
            )
            .unwrap()
            .as_f64()
            .unwrap()
        })
        .collect();
    firsts.sort_by(f64::total_cmp);
    println!(
        "a 10 s video's first frame through the web device, 7 plays: median {:.1} ms \
         (min {:.1}, max {:.1})",
        firsts[3], firsts[0], firsts[6]
    );
}

/// Sends `request` on a new connection to `address` and reads the whole answer (the server
/// closes: `Connection: close`, or a body it will not read).
fn raw(address: &str, request: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    // A guard against a hang, not a measure: the server answers at once or not at all.
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// `/app/` as anyone on the internet reaches it, over a raw socket (no browser to tidy the
/// path): a file beside the page's directory is out of reach whatever the spelling of `..`, a
/// directory is neither listed nor redirected, a huge body is answered without being read,
/// and the page comes with its headers. Needs no browser and no build: a directory of its own
/// stands for the page.
#[test]
fn the_app_directory_gives_its_files_and_nothing_beside_them() {
    let dir = keyed_dir();
    let d = dir.path();
    let web = d.join("web");
    std::fs::create_dir_all(web.join("pkg")).unwrap();
    std::fs::write(
        web.join("index.html"),
        "<!doctype html><title>the page</title>",
    )
    .unwrap();
    std::fs::write(web.join("pkg/module.js"), "export {};").unwrap();
    std::fs::write(d.join("secret.txt"), "SECRET BESIDE THE PAGE").unwrap();
    let store = format!("sqlite:{}", d.join("registry.sqlite").display());
    let served = Served::start(d, &store, &["--app", web.to_str().unwrap()]);
    let address = served.base.strip_prefix("http://").unwrap();
    let get = |target: &str| {
        raw(
            address,
            &format!("GET {target} HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n"),
        )
    };
    let page = get("/app/").to_ascii_lowercase();
    assert!(page.starts_with("http/1.1 200"), "{page}");
    assert!(page.contains("the page"), "{page}");
    assert!(
        page.contains("content-security-policy: default-src 'none'"),
        "{page}"
    );
    assert!(page.contains("x-content-type-options: nosniff"), "{page}");
    assert!(get("/app/pkg/module.js").starts_with("HTTP/1.1 200"));
    for target in [
        "/app/../secret.txt",
        "/app/%2e%2e/secret.txt",
        "/app/..%2fsecret.txt",
        "/app/%2e%2e%2fsecret.txt",
        "/app/pkg/../../secret.txt",
        "/app/pkg/%2e%2e/%2e%2e/secret.txt",
        "/app//../secret.txt",
        "/app/%5c..%5csecret.txt",
        "/app/pkg",
        "/app/pkg/",
        "/app/%00",
    ] {
        let answer = get(target);
        assert!(!answer.contains("SECRET"), "{target}: {answer}");
        let status = answer.get(9..12).unwrap_or_default();
        assert!(
            status.starts_with('4'),
            "{target}: not refused as the client's error: {answer}"
        );
    }
    // Gigabytes announced to a page's file: answered at once (the method is not allowed), the
    // body never read (had it waited for it, the body's deadline would answer 408).
    let answer = raw(
        address,
        "POST /app/index.html HTTP/1.1\r\nHost: shop\r\nContent-Length: 10000000000\r\n\r\npartial",
    );
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    // `/app` leads to `/app/`, nowhere else.
    let answer = get("/app").to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 303"), "{answer}");
    assert!(answer.contains("location: /app/\r\n"), "{answer}");
}
