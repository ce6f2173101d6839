//! Rotating a license server's key (issue 29, item 3), as `docs/service.md` ("Rotating a
//! license server's key") tells an operator, on a split deployment on PostgreSQL: the
//! authority lists the new key beside the old, the server's process restarts from its file
//! exported again, devices learn the new key from the authority's list when they meet it
//! (`treecast client` fetches it), and the old key is retired. An object of the old key
//! verifies before the retirement and is refused after it; nothing held is lost.

use treecast::license::transport::{HttpTransport, Retries, Transport};
use treecast::license::{Clock, Error, KeyId, ServerId, ServerKeyListIn, SystemClock, UserId};

use super::operations::http;
use super::split::{serve_split, split};
use super::{device, keyed_dir, treecast, treecast_refused};

#[test]
fn a_license_servers_key_rotates_and_retires_as_the_procedure_says() {
    let Some((_, url)) = crate::pg::database() else {
        return;
    };
    let dir = keyed_dir();
    let d = dir.path();
    let (one, two) = split(d, &url);
    let run = |args: &[&str]| treecast(d, args);
    let authority = |args: &[&str]| {
        run(&[
            &[
                "authority",
                "--keys",
                "keys",
                "--store",
                &url,
                "--height",
                "16",
            ][..],
            args,
        ]
        .concat())
    };
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
    for (n, text) in ["first", "second", "third"].iter().enumerate() {
        let file = format!("{n}.txt");
        std::fs::write(d.join(&file), format!("the {text} song\n")).unwrap();
        run(&[
            "admin",
            "publish",
            "--server",
            &one.base,
            "--admin-token",
            token,
            "--file",
            &file,
        ]);
    }
    let cred = ["--credential-file", "alice.credential"];
    let client = |args: &[&str]| run(&[&["client"][..], args, &cred].concat());
    client(&[
        "register",
        "--server",
        &one.base,
        "--user",
        "1",
        "--device",
        "phone",
        "--license-server",
        "1",
    ]);
    client(&[
        "register",
        "--server",
        &two.base,
        "--user",
        "1",
        "--device",
        "laptop",
        "--license-server",
        "2",
    ]);
    client(&["buy", "--device", "phone", "--content", "1"]);
    let play = |device: &str, content: &str| {
        run(&[
            "client",
            "play",
            "--device",
            device,
            "--content",
            content,
            "--out",
            "-",
        ])
    };
    assert_eq!(play("phone", "1"), "the first song\n");

    // Two devices of server 1 with licenses of its first key, not stored yet.
    let credential = treecast::license::credential::UserCredential::from_hex(
        std::fs::read_to_string(d.join("alice.credential"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    let t1 = HttpTransport::new(&one.base).with_retries(Retries::NONE);
    let alice = UserId(1);
    let content = treecast::license::ContentId(1);
    let early_license = |t: &HttpTransport| {
        let mut c = device(t, alice, &credential, 1);
        c.store_content(t.download(alice, &credential, content).unwrap())
            .unwrap();
        let request = c.license_request(content, SystemClock.now());
        let license = t.license(request.as_bytes()).unwrap();
        (c, license)
    };
    let (mut tablet, for_tablet) = early_license(&t1);
    let (mut watch, for_watch) = early_license(&t1);
    let authority_key = *tablet.authority_key();
    assert_eq!(
        http(&one.base, "GET", "/v1/servers/1/keys", &[]).0,
        204,
        "no list before the first rotation"
    );

    // 1. The authority adds a new key; the key file now signs with it.
    let rotated = authority(&["rotate-server-key", "--server", "1"]);
    // The new key is named by the number of the list that adds it (from the clock).
    let new_key: u32 = rotated
        .split("new key key-")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{rotated}"));
    assert!(u64::from(new_key) >= SystemClock.now().0 - 600, "{rotated}");
    let file = std::fs::read_to_string(d.join("keys")).unwrap();
    assert!(
        file.lines()
            .any(|l| l.starts_with("server 1 ") && l.ends_with(&format!(" key {new_key}"))),
        "{file}"
    );
    // 2. Server 1's process restarts from its file exported again.
    let said = run(&[
        "keys",
        "export",
        "--keys",
        "keys",
        "--server",
        "1",
        "--out",
        "server1-key1.keys",
        "--height",
        "16",
    ]);
    assert!(said.contains("no master secret"), "{said}");
    let urls = [one.base.clone(), two.base.clone()];
    assert!(one.stop().success());
    let _one = serve_split(d, &url, &urls, 1, "server1-key1.keys");
    let list = ServerKeyListIn::from_bytes(&t1.server_keys(ServerId(1)).unwrap().unwrap())
        .unwrap()
        .verify(&authority_key)
        .unwrap();
    let listed: Vec<KeyId> = list.tbs().keys.iter().map(|(k, _)| *k).collect();
    assert_eq!(listed, [KeyId(0), KeyId(new_key)]);

    // 3. Devices meet the new key and learn it from the list: the phone buys under it; the
    // laptop, of server 2, moves to the phone with a certificate of server 1's new key.
    client(&["buy", "--device", "phone", "--content", "2"]);
    assert_eq!(play("phone", "2"), "the second song\n");
    assert_eq!(play("phone", "1"), "the first song\n");
    client(&["buy", "--device", "laptop", "--content", "3"]);
    let moved = client(&[
        "move",
        "--from",
        "laptop",
        "--to",
        "phone",
        "--content",
        "3",
    ]);
    assert!(moved.starts_with("moved content 3"), "{moved}");
    assert_eq!(play("phone", "3"), "the third song\n");
    // Before the retirement, the old key's license verifies on a device that took the list.
    tablet
        .update_server_keys(&t1.server_keys(ServerId(1)).unwrap().unwrap())
        .unwrap();
    tablet.acquire_license(&for_tablet).unwrap();

    // 4. The old key is retired; the key the file signs with cannot be.
    let refused = treecast_refused(
        d,
        &[
            "authority",
            "--keys",
            "keys",
            "--store",
            &url,
            "--height",
            "16",
            "retire-server-key",
            "--server",
            "1",
            "--key",
            &new_key.to_string(),
        ],
    );
    assert!(refused.contains("rotate first"), "{refused}");
    let retired = authority(&["retire-server-key", "--server", "1", "--key", "0"]);
    assert!(retired.contains("key-0 retired"), "{retired}");
    watch
        .update_server_keys(&t1.server_keys(ServerId(1)).unwrap().unwrap())
        .unwrap();
    assert!(matches!(
        watch.acquire_license(&for_watch),
        Err(Error::UnknownServerKey(ServerId(1), KeyId(0)))
    ));
    assert!(watch.license_id(content).is_none());
    // A device registered now is given the list and refuses the old key's objects at once.
    let (mut late, _) = early_license(&t1);
    assert!(late.server_keys().get(ServerId(1), KeyId(0)).is_none());
    assert!(matches!(
        late.acquire_license(&for_watch),
        Err(Error::UnknownServerKey(ServerId(1), KeyId(0)))
    ));
    // Nothing held is lost: what the phone bought under the old key still plays.
    assert_eq!(play("phone", "1"), "the first song\n");
    drop(two);
}
