//! The `treecast` binary, run as a user would.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::cover_vectors::data_dir;

pub(crate) fn treecast(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_treecast"))
        .args(args)
        .output()
        .unwrap()
}

pub(crate) fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A failure as the CLI promises it: non-zero exit, one clear line, no panic.
pub(crate) fn assert_clean_failure(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "expected failure, got success: {}",
        stdout(out)
    );
    assert!(!err.contains("panicked"), "panic: {err}");
    assert!(err.contains(needle), "stderr lacks `{needle}`: {err}");
}

/// `treecast ekb build` with `tree` (scheme, height, epoch) and the files given; it must succeed.
fn build_ekb(tree: &[&str], revoked: &Path, key: &Path, payload: &str, out: &Path) {
    let mut args = vec!["ekb", "build"];
    args.extend_from_slice(tree);
    args.extend_from_slice(&[
        "--revoked",
        path(revoked),
        "--key",
        path(key),
        "--payload-key",
        payload,
        "--out",
        path(out),
    ]);
    let result = treecast(&args);
    assert!(result.status.success(), "{result:?}");
}

pub(crate) fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn cover_json_has_the_promised_fields() {
    let file = data_dir().join("h16_r10_s1002.txt");
    let out = treecast(&[
        "cover",
        "--scheme",
        "cs",
        "--height",
        "16",
        "--revoked",
        path(&file),
        "--json",
    ]);
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["scheme"], "cs");
    assert_eq!(v["height"], 16);
    assert_eq!(v["revoked"], 10);
    assert_eq!(v["subsets"], 120);
    assert!(v.get("list").is_none());

    let out = treecast(&[
        "cover",
        "--height",
        "16",
        "--revoked",
        path(&file),
        "--json",
        "--list",
    ]);
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let list = v["list"].as_array().unwrap();
    assert_eq!(list.len(), 120);
    let leaves: u64 = list.iter().map(|s| s["leaves"].as_u64().unwrap()).sum();
    assert_eq!(leaves, (1 << 16) - 10);
}

#[test]
fn cover_text_lists_subsets() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("revoked.txt");
    std::fs::write(&file, "# one revoked leaf\n2\n\n").unwrap();
    let out = treecast(&["cover", "--height", "3", "--revoked", path(&file), "--list"]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(
        text.starts_with("scheme cs  height 3  revoked 1  subsets 3"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 4);
}

#[test]
fn bad_input_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, "1\nfour\n").unwrap();
    assert_clean_failure(
        &treecast(&["cover", "--height", "4", "--revoked", path(&bad)]),
        ":2: `four` is not a leaf",
    );
    std::fs::write(&bad, "16\n").unwrap();
    assert_clean_failure(
        &treecast(&["cover", "--height", "4", "--revoked", path(&bad)]),
        "outside a height-4 tree",
    );
    std::fs::write(&bad, [0xff, 0xfe, b'\n']).unwrap();
    assert_clean_failure(
        &treecast(&["cover", "--height", "4", "--revoked", path(&bad)]),
        "cannot read line 1",
    );
    assert_clean_failure(&treecast(&["cover", "--height", "33"]), "outside 1..=32");
    assert_clean_failure(
        &treecast(&["cover", "--height", "4", "--revoked", "/nonexistent"]),
        "cannot open",
    );
    let garbage = dir.path().join("garbage.ekb");
    std::fs::write(&garbage, b"TCEK\x01\x01\x00\x20garbage").unwrap();
    assert_clean_failure(
        &treecast(&["ekb", "inspect", path(&garbage)]),
        "not a valid EKB",
    );
}

#[test]
fn keygen_build_inspect_open() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("authority.key");
    assert!(treecast(&["keygen", "--out", path(&key)]).status.success());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    assert_clean_failure(
        &treecast(&["keygen", "--out", path(&key)]),
        "must not exist",
    );

    let revoked = dir.path().join("revoked.txt");
    std::fs::write(&revoked, "5\n77\n1000\n").unwrap();
    let ekb = dir.path().join("e.ekb");
    let payload = "00112233445566778899aabbccddeeff";
    build_ekb(
        &["--height", "12", "--epoch", "3"],
        &revoked,
        &key,
        payload,
        &ekb,
    );

    let out = treecast(&["ekb", "inspect", path(&ekb), "--json", "--key", path(&key)]);
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        (
            v["scheme"].as_str(),
            v["height"].as_u64(),
            v["epoch"].as_u64()
        ),
        (Some("cs"), Some(12), Some(3))
    );
    assert_eq!(v["signature_valid"], true);
    assert_eq!(
        v["bytes"].as_u64().unwrap(),
        std::fs::metadata(&ekb).unwrap().len()
    );

    let out = treecast(&[
        "ekb",
        "open",
        path(&ekb),
        "--key",
        path(&key),
        "--leaf",
        "6",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out).trim(), payload);
    let revoked_leaf = treecast(&[
        "ekb",
        "open",
        path(&ekb),
        "--keys",
        path(&key),
        "--leaf",
        "77",
    ]);
    assert_clean_failure(&revoked_leaf, "revoked");
    // What the README promises (issue 28, item 8): `revoked` on standard output, and nothing
    // else there.
    assert_eq!(stdout(&revoked_leaf).trim(), "revoked");

    // Another authority's key: the signature does not verify.
    let other = dir.path().join("other.key");
    assert!(
        treecast(&["keygen", "--out", path(&other)])
            .status
            .success()
    );
    assert_clean_failure(
        &treecast(&[
            "ekb",
            "open",
            path(&ekb),
            "--key",
            path(&other),
            "--leaf",
            "6",
        ]),
        "signature",
    );
    assert_clean_failure(
        &treecast(&["ekb", "inspect", path(&ekb), "--key", path(&other)]),
        "does not verify",
    );
    // A key file that is not one.
    assert_clean_failure(
        &treecast(&[
            "ekb",
            "open",
            path(&ekb),
            "--key",
            path(&revoked),
            "--leaf",
            "6",
        ]),
        "readable by others",
    );
    // An owner-only file that is not a key file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let bogus = dir.path().join("bogus.key");
        std::fs::write(&bogus, "hello\n").unwrap();
        std::fs::set_permissions(&bogus, std::fs::Permissions::from_mode(0o600)).unwrap();
        let out = treecast(&[
            "ekb",
            "open",
            path(&ekb),
            "--key",
            path(&bogus),
            "--leaf",
            "6",
        ]);
        assert_clean_failure(&out, "not a treecast key file");
    }
}

#[test]
fn demo_runs_and_checks() {
    let out = treecast(&[
        "demo",
        "--height",
        "20",
        "--devices",
        "2000",
        "--revoke",
        "50",
        "--seed",
        "3",
        "--users",
        "100",
    ]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.contains("devices that opened           1950"),
        "{text}"
    );
    assert!(text.contains("all checks passed"));
    assert!(
        text.contains("licensing on memory: scheme cs, 100 users"),
        "{text}"
    );
}

#[test]
fn demo_licensing_on_sqlite_then_store_check() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite:{}", dir.path().join("demo.sqlite").display());
    let out = treecast(&[
        "demo",
        "--scheme",
        "sd",
        "--height",
        "20",
        "--devices",
        "500",
        "--revoke",
        "20",
        "--users",
        "40",
        "--store",
        &store,
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("moves       40"), "{}", stdout(&out));
    let check = treecast(&["store", "check", "--store", &store]);
    assert!(check.status.success(), "{check:?}");
    assert!(
        stdout(&check).starts_with("ok: 40 users, 80 clients, 80 licenses, 40 certificates"),
        "{}",
        stdout(&check)
    );
}

#[test]
fn subset_difference_through_the_cli() {
    let file = data_dir().join("h16_r500_s1003.txt");
    let out = treecast(&[
        "cover",
        "--scheme",
        "sd",
        "--height",
        "16",
        "--revoked",
        path(&file),
        "--json",
        "--list",
    ]);
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        (
            v["scheme"].as_str(),
            v["revoked"].as_u64(),
            v["subsets"].as_u64()
        ),
        (Some("sd"), Some(500), Some(615))
    );
    let list = v["list"].as_array().unwrap();
    assert!(list.iter().all(|s| s["v"].as_u64().is_some()));
    let leaves: u64 = list.iter().map(|s| s["leaves"].as_u64().unwrap()).sum();
    assert_eq!(leaves, (1 << 16) - 500);

    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("a.key");
    assert!(treecast(&["keygen", "--out", path(&key)]).status.success());
    let ekb = dir.path().join("sd.ekb");
    let payload = "ffeeddccbbaa99887766554433221100";
    build_ekb(
        &["--scheme", "sd", "--height", "16"],
        &file,
        &key,
        payload,
        &ekb,
    );
    let out = treecast(&["ekb", "inspect", path(&ekb), "--json"]);
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        (v["scheme"].as_str(), v["subsets"].as_u64()),
        (Some("sd"), Some(615))
    );
    assert_eq!(v["bytes"].as_u64(), Some(108 + 615 * 32));
    let revoked: Vec<String> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| l.trim().to_owned())
        .collect();
    let revoked_leaf = &revoked[0];
    let free_leaf = (0..65536)
        .map(|l: u32| l.to_string())
        .find(|l| !revoked.contains(l))
        .unwrap();
    let out = treecast(&[
        "ekb",
        "open",
        path(&ekb),
        "--key",
        path(&key),
        "--leaf",
        &free_leaf,
    ]);
    assert_eq!(stdout(&out).trim(), payload, "{out:?}");
    assert_clean_failure(
        &treecast(&[
            "ekb",
            "open",
            path(&ekb),
            "--key",
            path(&key),
            "--leaf",
            revoked_leaf,
        ]),
        "revoked",
    );
}

#[test]
fn aacs_mkb_device_keys_process() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("authority.key");
    assert!(treecast(&["keygen", "--out", path(&key)]).status.success());
    let revoked = dir.path().join("revoked.txt");
    std::fs::write(&revoked, "5\n6\n2147483647\n").unwrap();
    let mkb = dir.path().join("MKB_RO.inf");
    let media_key = "00112233445566778899aabbccddeeff";
    let out = treecast(&[
        "aacs",
        "mkb",
        "--key",
        path(&key),
        "--revoked",
        path(&revoked),
        "--media-key",
        media_key,
        "--out",
        path(&mkb),
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("revoked 3"), "{}", stdout(&out));

    let keydb = |leaf: &str| {
        let file = dir.path().join(format!("KEYDB-{leaf}.cfg"));
        let out = treecast(&[
            "aacs",
            "device-keys",
            "--key",
            path(&key),
            "--leaf",
            leaf,
            "--out",
            path(&file),
        ]);
        assert!(out.status.success(), "{out:?}");
        file
    };
    let good = keydb("4");
    let text = std::fs::read_to_string(&good).unwrap();
    assert_eq!(
        text.lines().filter(|l| l.starts_with("| DK |")).count(),
        465
    );
    let process = |keydb: &Path| {
        treecast(&[
            "aacs",
            "process",
            "--mkb",
            path(&mkb),
            "--keydb",
            path(keydb),
            "--key",
            path(&key),
        ])
    };
    let out = process(&good);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out).trim(), media_key);
    assert_clean_failure(&process(&keydb("6")), "device 6 is revoked");
    assert_clean_failure(&process(&keydb("2147483647")), "is revoked");
    // Bad input: a leaf outside the tree, an existing output, a file that is not an MKB.
    assert_clean_failure(
        &treecast(&[
            "aacs",
            "device-keys",
            "--key",
            path(&key),
            "--leaf",
            "2147483648",
        ]),
        "outside the 31-level AACS tree",
    );
    assert_clean_failure(
        &treecast(&[
            "aacs",
            "device-keys",
            "--key",
            path(&key),
            "--leaf",
            "4",
            "--out",
            path(&good),
        ]),
        "must not exist",
    );
    assert_clean_failure(
        &treecast(&[
            "aacs",
            "process",
            "--mkb",
            path(&revoked),
            "--keydb",
            path(&good),
        ]),
        "not a valid MKB",
    );
    assert_clean_failure(
        &treecast(&[
            "aacs",
            "process",
            "--mkb",
            path(&mkb),
            "--keydb",
            path(&revoked),
        ]),
        "no usable device keys",
    );
}

#[test]
fn cover_dot_draws_the_tree_the_revoked_leaves_and_the_subsets() {
    let dir = tempfile::tempdir().unwrap();
    let revoked = dir.path().join("revoked.txt");
    std::fs::write(&revoked, "3\n9\n").unwrap();
    for (scheme, subsets) in [("cs", 6), ("sd", 2)] {
        let out = treecast(&[
            "cover",
            "--scheme",
            scheme,
            "--height",
            "4",
            "--revoked",
            path(&revoked),
            "--dot",
        ]);
        assert!(out.status.success(), "{out:?}");
        let dot = stdout(&out);
        assert!(dot.starts_with("digraph {"), "{dot}");
        assert!(
            dot.contains(&format!("2 revoked: {subsets} subsets")),
            "{dot}"
        );
        // 31 nodes, 30 edges; the two revoked leaves are black.
        assert_eq!(dot.matches(" -> ").count(), 30);
        assert_eq!(dot.matches("fillcolor=black").count(), 2);
        // Every non-revoked leaf is filled with the colour of its subset.
        assert_eq!(dot.matches("fillcolor=\"#").count(), 14);
        // Each subset's top node is outlined (a one-leaf CS subset is its own leaf).
        assert_eq!(dot.matches("penwidth=4").count(), subsets);
    }
    assert_clean_failure(
        &treecast(&["cover", "--height", "9", "--dot"]),
        "height up to 8",
    );
}

/// Issue 12, item 11: a secret key can come from a file or standard input, and the help says
/// what a key on the command line exposes.
#[test]
fn keys_come_from_a_file_or_standard_input() {
    use std::io::Write;
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("authority.key");
    assert!(treecast(&["keygen", "--out", path(&key)]).status.success());
    let payload = "00112233445566778899aabbccddeeff";
    let tree = ["--scheme", "sd", "--height", "8"];
    let revoked = dir.path().join("none.txt");
    std::fs::write(&revoked, "3\n").unwrap();
    let by_arg = dir.path().join("arg.ekb");
    build_ekb(&tree, &revoked, &key, payload, &by_arg);
    let key_file = dir.path().join("payload.hex");
    std::fs::write(&key_file, format!("{payload}\n")).unwrap();
    let by_file = dir.path().join("file.ekb");
    let mut args = vec!["ekb", "build"];
    args.extend_from_slice(&tree);
    args.extend_from_slice(&["--revoked", path(&revoked), "--key", path(&key)]);
    let common = args.clone();
    args.extend_from_slice(&[
        "--payload-key-file",
        path(&key_file),
        "--out",
        path(&by_file),
    ]);
    assert!(treecast(&args).status.success());
    let by_stdin = dir.path().join("stdin.ekb");
    let mut args = common.clone();
    args.extend_from_slice(&["--payload-key-file", "-", "--out", path(&by_stdin)]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_treecast"))
        .args(&args)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(payload.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    let reference = std::fs::read(&by_arg).unwrap();
    assert_eq!(std::fs::read(&by_file).unwrap(), reference);
    assert_eq!(std::fs::read(&by_stdin).unwrap(), reference);
    // Both forms at once, or neither, is a usage error; the help warns about the first.
    let mut both = common.clone();
    both.extend_from_slice(&[
        "--payload-key",
        payload,
        "--payload-key-file",
        path(&key_file),
    ]);
    both.extend_from_slice(&["--out", path(&by_file)]);
    assert!(!treecast(&both).status.success());
    let help = stdout(&treecast(&["ekb", "build", "--help"]));
    assert!(help.contains("visible to every user"), "{help}");
    let help = stdout(&treecast(&["aacs", "mkb", "--help"]));
    assert!(help.contains("visible to every user"), "{help}");
}

/// Issue 12, item 12: a revoked-leaf file is read up to 256 MiB, not without end.
#[test]
fn a_revoked_leaf_file_without_end_is_refused() {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_treecast"))
        .args([
            "cover",
            "--scheme",
            "cs",
            "--height",
            "16",
            "--revoked",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let block = vec![b'7'; 1 << 20];
        // 257 MiB on one line; the reader stops after 256 MiB and closes the pipe.
        for _ in 0..257 {
            if stdin.write_all(&block).is_err() {
                break;
            }
        }
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert_clean_failure(&out, "256 MiB");
}

/// `treecast trace` (issue 16): the promised JSON fields; every traitor found, no innocent
/// excluded, the box disabled, on both schemes at height 32; a revoked traitor is refused.
#[test]
fn trace_finds_the_coalition_and_disables_the_box() {
    let dir = tempfile::tempdir().unwrap();
    let traitors = dir.path().join("traitors.txt");
    std::fs::write(&traitors, "5\n# a comment\n123456\n4000000000\n").unwrap();
    let revoked = dir.path().join("revoked.txt");
    std::fs::write(&revoked, "7\n99\n").unwrap();
    for scheme in ["cs", "sd"] {
        for strategy in ["first", "every"] {
            let out = treecast(&[
                "trace",
                "--scheme",
                scheme,
                "--height",
                "32",
                "--traitors",
                path(&traitors),
                "--revoked",
                path(&revoked),
                "--strategy",
                strategy,
                "--json",
            ]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
            assert_eq!(v["disabled"], true);
            let mut found: Vec<u64> = v["traitors_found"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap())
                .collect();
            found.sort_unstable();
            assert_eq!(found, [5, 123_456, 4_000_000_000]);
            assert_eq!(v["innocent_excluded"], 0);
            assert!(v["queries"].as_u64().unwrap() > 0);
            assert!(v["cover_subsets"].as_u64().unwrap() > 3);
        }
    }
    std::fs::write(&revoked, "5\n").unwrap();
    let out = treecast(&[
        "trace",
        "--height",
        "32",
        "--traitors",
        path(&traitors),
        "--revoked",
        path(&revoked),
    ]);
    assert_clean_failure(&out, "already revoked");
    let out = treecast(&["trace", "--height", "16", "--traitors", path(&traitors)]);
    assert_clean_failure(&out, "outside a height-16 tree");
}

/// `--version` names the commit the binary was built from and the registry schema versions it
/// reads (issue 28); `-V` stays the short version.
#[test]
fn version_names_the_commit_and_the_schema_versions() {
    use treecast::license::registry::{POSTGRES_SCHEMA_VERSION, SQLITE_SCHEMA_VERSION};
    let out = treecast(&["--version"]);
    assert!(out.status.success());
    let text = stdout(&out);
    let commit = text
        .split("(commit ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap();
    assert!(
        commit == "unknown"
            || (commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "registry schema: SQLite {SQLITE_SCHEMA_VERSION}, PostgreSQL {POSTGRES_SCHEMA_VERSION}"
        )),
        "{text}"
    );
    assert_eq!((SQLITE_SCHEMA_VERSION, POSTGRES_SCHEMA_VERSION), (9, 8));
    let short = stdout(&treecast(&["-V"]));
    assert_eq!(
        short.trim(),
        format!("treecast {}", env!("CARGO_PKG_VERSION"))
    );
}

/// `treecast package` (issue 28, item 7): completions for each shell, a man page for the
/// command and each subcommand, and the systemd unit as shipped (CI runs `systemd-analyze
/// verify` on it).
#[test]
fn packaging_writes_completions_man_pages_and_the_unit() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = treecast(&["package", "completions", shell]);
        assert!(out.status.success(), "{shell}: {out:?}");
        let text = stdout(&out);
        assert!(
            text.contains("serve") && text.contains("check-config"),
            "{shell}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let out = treecast(&["package", "man", "--out", path(dir.path())]);
    assert!(out.status.success(), "{out:?}");
    let page = std::fs::read_to_string(dir.path().join("treecast-serve.1")).unwrap();
    assert!(
        page.contains(".TH") && page.contains("check\\-config"),
        "{page}"
    );
    assert!(dir.path().join("treecast.1").exists());
    assert!(dir.path().join("treecast-client-buy.1").exists());
    let unit = stdout(&treecast(&["package", "systemd"]));
    assert_eq!(
        unit,
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/packaging/treecast.service"
        ))
        .unwrap()
    );
    for hardening in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "CapabilityBoundingSet=",
    ] {
        assert!(unit.contains(hardening), "{hardening}");
    }
}

/// The simulator's verdict is correctness alone; the performance ratio has its own line
/// (issue 28, item 7).
#[test]
fn the_verdict_stands_apart_from_the_performance_ratio() {
    let out = treecast(&[
        "simulate",
        "--users",
        "300",
        "--no-evolution",
        "--lifecycle-users",
        "0",
    ]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    let last = text.trim_end().lines().last().unwrap();
    assert!(last.starts_with("verdict: PASSED"), "{text}");
    let ratio = text
        .lines()
        .find(|l| l.starts_with("performance (a measurement, not part of the verdict): ratio"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(ratio.contains("the target of 0.85"), "{ratio}");
    assert!(!ratio.contains("PASSED") && !ratio.contains("FAILED"));
}
