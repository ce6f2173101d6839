//! Keys in an HSM (issue 29, item 4), with Debian's SoftHSM2 initialised by the test itself:
//! `keygen --hsm` generates the license servers' signing keys in the token (sensitive, never
//! extractable) and seals the master secret under a token key; `serve` signs there; the key
//! file holds URIs and a sealed blob, no secret. Skipped with one line where SoftHSM2 is not
//! installed; `.ci/run` installs it and sets `TREECAST_REQUIRE_SOFTHSM=1`.

use std::path::{Path, PathBuf};
use std::process::Command;

use treecast::license::transport::{HttpTransport, Retries, Transport};
use treecast::license::{Client, Clock, KeyId, ServerId, SigningKey, SystemClock};

use super::{Served, rand_key};

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// A SoftHSM2 token of its own, in a temporary directory.
pub(crate) struct SoftHsm {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) conf: PathBuf,
}

impl SoftHsm {
    /// A fresh token labelled `treecast` with user PIN 1234 (in the file `pin`), or `None`
    /// where SoftHSM2 is not installed.
    pub(crate) fn new() -> Option<Self> {
        let installed = Path::new(MODULE).exists()
            && Command::new("softhsm2-util")
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success());
        if !installed {
            assert!(
                std::env::var("TREECAST_REQUIRE_SOFTHSM").as_deref() != Ok("1"),
                "TREECAST_REQUIRE_SOFTHSM=1 but SoftHSM2 ({MODULE}, softhsm2-util) is not installed"
            );
            eprintln!("SoftHSM2 is not installed: this test is skipped");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tokens")).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                dir.path().join("tokens").display()
            ),
        )
        .unwrap();
        let init = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &conf)
            .args(["--init-token", "--free", "--label", "treecast"])
            .args(["--pin", "1234", "--so-pin", "5678"])
            .output()
            .unwrap();
        assert!(init.status.success(), "{init:?}");
        let pin = dir.path().join("pin");
        std::fs::write(&pin, "1234\n").unwrap();
        std::fs::set_permissions(&pin, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        Some(Self { dir, conf })
    }

    /// The token's URI, naming `object`, with the PIN file `pin`.
    pub(crate) fn uri(&self, object: &str, pin: &str) -> String {
        format!(
            "pkcs11:token=treecast;object={object}?module-path={MODULE}&pin-source=file:{}",
            self.dir.path().join(pin).display()
        )
    }

    /// `treecast ARGS` with the token's configuration.
    pub(crate) fn treecast(&self, dir: &Path, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_treecast"))
            .current_dir(dir)
            .env("SOFTHSM2_CONF", &self.conf)
            .args(args)
            .output()
            .unwrap()
    }
}

#[test]
fn signing_keys_in_a_token_sign_there_and_never_leave_it() {
    let Some(hsm) = SoftHsm::new() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let uri = hsm.uri("tc", "pin");
    let made = hsm.treecast(d, &["keygen", "--out", "keys", "--hsm", &uri]);
    assert!(made.status.success(), "{made:?}");
    // The key file names the token's keys and holds the master secret sealed: no key in it.
    let text = std::fs::read_to_string(d.join("keys")).unwrap();
    for line in text.lines().skip(1) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["server", _, uri] => assert!(uri.starts_with("pkcs11:"), "{line}"),
            ["master-sealed", uri, sealed] => {
                assert!(uri.starts_with("pkcs11:") && sealed.len() == 2 * (12 + 32 + 16));
            }
            ["ekb-signing", uri] => assert!(uri.starts_with("pkcs11:"), "{line}"),
            ["derivation", "seed-tree"] | ["split", "1"] => {}
            _ => panic!("unexpected key file line {line}"),
        }
    }
    // The token says so too: sensitive, not extractable (CKA_SENSITIVE, CKA_EXTRACTABLE).
    let shown = hsm.treecast(d, &["keys", "show", "--keys", "keys"]);
    let shown_text = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success(), "{shown:?}");
    assert_eq!(
        shown_text
            .matches("in token `treecast` (tc-server-")
            .count(),
        2,
        "{shown_text}"
    );
    assert_eq!(shown_text.matches("sensitive, not extractable").count(), 3);
    assert!(
        shown_text.contains("EKB signing key: in token `treecast` (tc-ekb)"),
        "{shown_text}"
    );
    assert!(
        shown_text.contains("sealed under `tc-wrap`"),
        "{shown_text}"
    );
    // And so says OpenSC's tool, where it is installed, reading the attributes itself: both
    // private keys and the sealing key sensitive and never extractable, and the sealing key's
    // value refused.
    if let Ok(out) = Command::new("pkcs11-tool")
        .env("SOFTHSM2_CONF", &hsm.conf)
        .args([
            "--module",
            MODULE,
            "--login",
            "--pin",
            "1234",
            "--list-objects",
        ])
        .output()
    {
        let listed = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            listed
                .matches("sensitive, always sensitive, never extractable")
                .count(),
            4,
            "{listed}"
        );
        let read = Command::new("pkcs11-tool")
            .env("SOFTHSM2_CONF", &hsm.conf)
            .args(["--module", MODULE, "--login", "--pin", "1234"])
            .args(["--read-object", "--type", "secrkey", "--label", "tc-wrap"])
            .output()
            .unwrap();
        assert!(
            !read.status.success() || read.stdout.is_empty(),
            "pkcs11-tool read the sealing key: {read:?}"
        );
    } else {
        assert!(
            std::env::var("TREECAST_REQUIRE_SOFTHSM").as_deref() != Ok("1"),
            "TREECAST_REQUIRE_SOFTHSM=1 but OpenSC's pkcs11-tool is not installed"
        );
        eprintln!("pkcs11-tool (OpenSC) is not installed: the token's own word is checked only");
    }
    // A second keygen into the same labels is refused; the first file is kept.
    let again = hsm.treecast(d, &["keygen", "--out", "keys2", "--hsm", &uri]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("holds `tc-"));

    // `serve` signs in the token: a device verifies its registration and license with the
    // token's public key and plays.
    let served = Served::start_with_env(
        d,
        &format!("sqlite:{}", d.join("registry.sqlite").display()),
        &["--keys", d.join("keys").to_str().unwrap()],
        &[("SOFTHSM2_CONF", &hsm.conf)],
    );
    let t = HttpTransport::new(&served.base).with_retries(Retries::NONE);
    let (alice, credential) = t.create_user(&served.admin).unwrap();
    let content = t.publish(&served.admin, b"signed in a token").unwrap();
    let key = SigningKey::from_bytes(&rand_key());
    let registration = t.register(alice, &credential, ServerId(2), &key).unwrap();
    let public = shown_text
        .lines()
        .find(|l| l.starts_with("server 2:"))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap()
        .to_owned();
    assert_eq!(
        hex::encode(
            registration
                .servers
                .get(ServerId(2), KeyId(0))
                .unwrap()
                .as_bytes()
        ),
        public
    );
    // The EKB is signed in the token too: it verifies under the token's EKB key.
    let ekb_public = shown_text
        .lines()
        .find(|l| l.starts_with("EKB signing key:"))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap()
        .to_owned();
    assert_eq!(
        hex::encode(registration.authority_key.as_bytes()),
        ekb_public
    );
    let mut device = Client::new(key, registration).unwrap();
    device.store_ekb(&t.current_ekb().unwrap().1).unwrap();
    device
        .store_content(t.download(alice, &credential, content).unwrap())
        .unwrap();
    let request = device.license_request(content, SystemClock.now());
    let license = t.license(request.as_bytes()).unwrap();
    device.acquire_license(&license).unwrap();
    let mut out = Vec::new();
    device.play(content, &mut out).unwrap();
    assert_eq!(out, b"signed in a token");
    assert!(served.stop().success());

    // The authority's commands and `keys export` read the same file: the EKB is published with
    // the token's key, and license server 2's own file names its key in the token.
    let store = format!("sqlite:{}", d.join("registry.sqlite").display());
    let published = hsm.treecast(
        d,
        &[
            "authority",
            "--keys",
            "keys",
            "--store",
            &store,
            "--height",
            "16",
            "publish-ekb",
        ],
    );
    assert!(published.status.success(), "{published:?}");
    let exported = hsm.treecast(
        d,
        &[
            "keys", "export", "--keys", "keys", "--server", "2", "--out", "s2.keys", "--height",
            "16",
        ],
    );
    assert!(exported.status.success(), "{exported:?}");
    let shown = hsm.treecast(d, &["keys", "show", "--keys", "s2.keys"]);
    let shown_text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown_text
            .contains("server 2: in token `treecast` (tc-server-2): sensitive, not extractable"),
        "{shown_text}"
    );
    // A rotation makes the new key in the token too (issue 29): the file names it, the token
    // keeps it sensitive, and a device registered after it verifies a license of the new key.
    let rotated = hsm.treecast(
        d,
        &[
            "authority",
            "--keys",
            "keys",
            "--store",
            &store,
            "--height",
            "16",
            "rotate-server-key",
            "--server",
            "2",
        ],
    );
    assert!(rotated.status.success(), "{rotated:?}");
    let text = std::fs::read_to_string(d.join("keys")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("server 2 pkcs11:"))
        .unwrap_or_else(|| panic!("{text}"));
    let new_key: u32 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(
        line.contains(&format!("tc-server-2-key-{new_key}")) && line.contains(" key "),
        "{text}"
    );
    let shown = hsm.treecast(d, &["keys", "show", "--keys", "keys"]);
    let shown_text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown_text.contains(&format!(
            "server 2 (key-{new_key}): in token `treecast` (tc-server-2-key-{new_key}): \
                 sensitive, not extractable"
        )),
        "{shown_text}"
    );
    let served = Served::start_with_env(
        d,
        &store,
        &["--keys", d.join("keys").to_str().unwrap()],
        &[("SOFTHSM2_CONF", &hsm.conf)],
    );
    let t = HttpTransport::new(&served.base).with_retries(Retries::NONE);
    let key = SigningKey::from_bytes(&rand_key());
    let registration = t.register(alice, &credential, ServerId(2), &key).unwrap();
    assert!(
        registration
            .servers
            .get(ServerId(2), KeyId(new_key))
            .is_some()
    );
    let mut device = Client::new(key, registration).unwrap();
    device.store_ekb(&t.current_ekb().unwrap().1).unwrap();
    device
        .store_content(t.download(alice, &credential, content).unwrap())
        .unwrap();
    let request = device.license_request(content, SystemClock.now());
    let license =
        treecast::license::LicenseIn::from_bytes(&t.license(request.as_bytes()).unwrap()).unwrap();
    assert_eq!(license.key_id(), KeyId(new_key));
    device.acquire_license(license.as_bytes()).unwrap();
    assert!(served.stop().success());

    // The AACS profile would sign its MKBs outside the token: refused.
    std::fs::write(d.join("media.key"), "00112233445566778899aabbccddeeff\n").unwrap();
    let mkb = hsm.treecast(
        d,
        &[
            "aacs",
            "mkb",
            "--keys",
            "keys",
            "--media-key-file",
            "media.key",
            "--out",
            "mkb.inf",
        ],
    );
    assert!(!mkb.status.success());
    assert!(String::from_utf8_lossy(&mkb.stderr).contains("in a token"));
}

#[test]
fn a_wrong_or_exposed_pin_and_an_altered_seal_are_refused() {
    let Some(hsm) = SoftHsm::new() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let made = hsm.treecast(
        d,
        &["keygen", "--out", "keys", "--hsm", &hsm.uri("tc", "pin")],
    );
    assert!(made.status.success(), "{made:?}");
    let text = std::fs::read_to_string(d.join("keys")).unwrap();
    let write = |name: &str, body: &str| {
        std::fs::write(d.join(name), body).unwrap();
        std::fs::set_permissions(
            d.join(name),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
    };
    // A wrong PIN.
    let wrong_pin = hsm.dir.path().join("wrong");
    std::fs::write(&wrong_pin, "0000\n").unwrap();
    std::fs::set_permissions(
        &wrong_pin,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    write(
        "wrong.keys",
        &text.replace(
            &format!("{}", hsm.dir.path().join("pin").display()),
            &format!("{}", wrong_pin.display()),
        ),
    );
    let out = hsm.treecast(d, &["keys", "show", "--keys", "wrong.keys"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("login"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A PIN file others can read.
    std::fs::set_permissions(
        hsm.dir.path().join("pin"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let out = hsm.treecast(d, &["keys", "show", "--keys", "keys"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
    std::fs::set_permissions(
        hsm.dir.path().join("pin"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    // A sealed master secret altered by one bit.
    let sealed = text
        .lines()
        .find(|l| l.starts_with("master-sealed "))
        .unwrap();
    let last = sealed.chars().last().unwrap();
    let altered = format!(
        "{}{}",
        &sealed[..sealed.len() - 1],
        if last == '0' { '1' } else { '0' }
    );
    write("altered.keys", &text.replace(sealed, &altered));
    let out = hsm.treecast(d, &["keys", "show", "--keys", "altered.keys"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unsealing"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A PIN on the URI itself.
    let out = hsm.treecast(
        d,
        &[
            "keygen",
            "--out",
            "pinned.keys",
            "--hsm",
            &format!("pkcs11:token=treecast;object=x?module-path={MODULE}&pin-value=1234"),
        ],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("pin-source"));
    assert!(!d.join("pinned.keys").exists());
}
