//! Protected video from publishing to playing (issue 30): `treecast admin publish --cenc`
//! packages a clear fragmented MP4 with Common Encryption under a key derived from the new
//! content's key; a device that buys it gets the key only from its own license (`treecast client
//! play` gives the clear MP4 back; headless Chromium plays the downloaded MP4 through EME with
//! the key its license gave); a device without the license, one the license moved away from,
//! and a revoked one get no key.

use treecast::license::transport::{HttpTransport, Retries, Transport};
use treecast::license::{Clock, ContentId, Error, UserId};

use super::{Served, device, keyed_dir, treecast, treecast_refused};

const CLEAR: &[u8] = include_bytes!("../../cenc/tests/data/clear-fragmented.mp4");

#[test]
fn a_cenc_content_plays_from_its_license_only() {
    let dir = keyed_dir();
    let d = dir.path();
    let store = format!("sqlite:{}", d.join("registry.sqlite").display());
    let served = Served::start(d, &store, &["--auth-failures-per-address", "0"]);
    let run = |args: &[&str]| treecast(d, args);
    let url = served.base.as_str();
    let token = d.join("admin.token");
    let token = token.to_str().unwrap();
    run(&[
        "admin",
        "create-user",
        "--server",
        url,
        "--admin-token",
        token,
        "--credential-out",
        "alice.credential",
    ]);
    std::fs::write(d.join("clear.mp4"), CLEAR).unwrap();
    let published = run(&[
        "admin",
        "publish",
        "--server",
        url,
        "--admin-token",
        token,
        "--file",
        "clear.mp4",
        "--cenc",
    ]);
    assert_eq!(published, "content 1\n");
    // Not an MP4 the packager takes: refused, nothing published.
    std::fs::write(d.join("not.mp4"), b"plain text, not a fragmented MP4").unwrap();
    let refused = treecast_refused(
        d,
        &[
            "admin",
            "publish",
            "--server",
            url,
            "--admin-token",
            token,
            "--file",
            "not.mp4",
            "--cenc",
        ],
    );
    assert!(refused.contains("malformed"), "{refused}");

    // The CLI device: buys, and plays the clear MP4 back from its license.
    let cred = ["--credential-file", "alice.credential"];
    let client = |args: &[&str]| run(&[&["client"][..], args, &cred].concat());
    client(&[
        "register", "--server", url, "--user", "1", "--device", "phone",
    ]);
    client(&["buy", "--device", "phone", "--content", "1"]);
    assert!(d.join("phone/content-1.mp4").exists());
    run(&[
        "client",
        "play",
        "--device",
        "phone",
        "--content",
        "1",
        "--out",
        "played.mp4",
    ]);
    assert!(std::fs::read(d.join("played.mp4")).unwrap() == CLEAR);
    // A move through the CLI: the laptop (a second CLI device) gets the MP4 and the license,
    // and plays; the phone no longer does.
    client(&[
        "register", "--server", url, "--user", "1", "--device", "desk",
    ]);
    let moved = client(&["move", "--from", "phone", "--to", "desk", "--content", "1"]);
    assert!(moved.starts_with("moved content 1"), "{moved}");
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
            "again.mp4",
        ],
    );
    // The downloaded file is protected under the content's key ID.
    let protected = std::fs::read(d.join("phone/content-1.mp4")).unwrap();
    assert_ne!(protected, CLEAR);
    assert_eq!(
        treecast_cenc::key_id(&protected).unwrap().0,
        treecast::license::cenc::key_id(ContentId(1))
    );

    // Devices through the library: the key comes from the license, and only from it.
    let t = HttpTransport::new(url).with_retries(Retries::NONE);
    let credential = treecast::license::credential::UserCredential::from_hex(
        std::fs::read_to_string(d.join("alice.credential"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    let alice = UserId(1);
    let content = ContentId(1);
    let mut tablet = device(&t, alice, &credential, 1);
    let mut laptop = device(&t, alice, &credential, 2);
    let mut watch = device(&t, alice, &credential, 1);
    assert!(matches!(tablet.cenc_key(content), Err(Error::NoLicense(_))));
    // `buy` stores the download as a container: a Common Encryption MP4 is not one.
    let refused = tablet.store_content(t.download(alice, &credential, content).unwrap());
    assert!(refused.is_err());
    buy_license(&t, &mut tablet, content);
    buy_license(&t, &mut watch, content);
    let (kid, key) = tablet.cenc_key(content).unwrap();
    let opened = treecast_cenc::decrypt(
        &protected,
        &treecast_cenc::CencKey::from_bytes(*key.secret_bytes()),
    )
    .unwrap();
    assert!(opened == CLEAR);
    // A headless browser plays it with that key (where Chromium is installed).
    if let Some(chromium) = crate::browser::chromium() {
        assert!(crate::browser::plays(
            &chromium,
            protected.clone(),
            &hex::encode(key.secret_bytes()),
            &hex::encode(kid)
        ));
    }
    // A move: the tablet's license goes to the laptop, which then has the key; the tablet not.
    let license = tablet.license_id(content).unwrap();
    let request = tablet.move_request(license, laptop.id(), treecast::license::SystemClock.now());
    let certificate = t.certificate(request.as_bytes()).unwrap();
    let package = tablet.move_out(&certificate).unwrap();
    laptop
        .move_in(&package, treecast::license::SystemClock.now())
        .unwrap();
    assert!(matches!(tablet.cenc_key(content), Err(Error::NoLicense(_))));
    assert_eq!(laptop.cenc_key(content).unwrap().1, key);
    // A revoked device gets no license for a content of a later epoch, so no key; what it was
    // licensed before stays (by design: `docs/threat-model.md`).
    t.revoke(&served.admin, watch.id()).unwrap();
    let later = t.publish_cenc(&served.admin, CLEAR).unwrap();
    let request = watch.license_request(later, treecast::license::SystemClock.now());
    assert!(matches!(
        t.license(request.as_bytes()),
        Err(Error::ClientRevoked(_) | Error::Service { status: 403, .. })
    ));
    assert!(matches!(watch.cenc_key(later), Err(Error::NoLicense(_))));
    assert!(watch.cenc_key(content).is_ok());
    // Another device buys the later content and plays it; the revoked one cannot use that
    // license (another device's), even handed the bytes.
    let mut phone = device(&t, alice, &credential, 2);
    buy_license(&t, &mut phone, later);
    assert!(phone.cenc_key(later).is_ok());
}

fn buy_license(t: &HttpTransport, client: &mut treecast::license::Client, content: ContentId) {
    let request = client.license_request(content, treecast::license::SystemClock.now());
    client
        .acquire_license(&t.license(request.as_bytes()).unwrap())
        .unwrap();
}
