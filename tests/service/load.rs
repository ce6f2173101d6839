//! The load test against the service (issue 15): the simulator driving `treecast serve` over
//! HTTP and in process, and two simulators driving two processes on one PostgreSQL registry.

use std::process::{Command, Stdio};

use super::{Served, keyed_dir};

/// The same service-driven workload in process and over HTTP: both pass, with every attack
/// refused, and report latency per operation.
#[test]
fn the_service_simulation_passes_in_process_and_over_http() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_treecast"))
            .args(["simulate", "--users", "300", "--attack-share", "0.3"])
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("PASSED"), "{text}");
        assert!(
            text.contains("license") && text.contains("p99 ms"),
            "{text}"
        );
        text
    };
    run(&["--server", "in-process"]);
    let dir = keyed_dir();
    let store = format!("sqlite:{}", dir.path().join("r.sqlite").display());
    // The simulator is one address playing many users and their attackers: its attacks with
    // other users' credentials would otherwise throttle its own users.
    let served = Served::start(dir.path(), &store, &["--auth-failures-per-address", "0"]);
    let token = dir.path().join("admin.token");
    let text = run(&[
        "--server",
        &served.base,
        "--admin-token",
        token.to_str().unwrap(),
    ]);
    assert!(text.contains("attack cross_user_move"), "{text}");
    assert!(served.stop().success());
}

/// The topology a distributor scales out with: two `serve` processes on one PostgreSQL
/// registry, two simulators driving them at once (each its own users); afterwards the shared
/// registry passes `store check` with both journals.
#[test]
fn two_simulators_drive_two_services_on_one_postgres_registry() {
    let Some((_, url)) = crate::pg::database() else {
        return;
    };
    let dir = keyed_dir();
    let d = dir.path();
    let unthrottled = ["--auth-failures-per-address", "0"];
    let one = Served::start(d, &url, &unthrottled);
    let two = Served::start(d, &url, &unthrottled);
    let token = d.join("admin.token");
    let sims: Vec<_> = [(&one.base, "j1", "1"), (&two.base, "j2", "2")]
        .into_iter()
        .map(|(base, journal, seed)| {
            Command::new(env!("CARGO_BIN_EXE_treecast"))
                .args([
                    "simulate",
                    "--server",
                    base,
                    "--users",
                    "150",
                    "--threads",
                    "4",
                ])
                .args(["--seed", seed, "--attack-share", "0.2"])
                .arg("--admin-token")
                .arg(&token)
                .arg("--journal")
                .arg(d.join(journal))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // Both run at once; then their outcomes.
    let sims: Vec<_> = sims
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for out in &sims {
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(one.stop().success());
    assert!(two.stop().success());
    for journal in ["j1", "j2"] {
        let out = Command::new(env!("CARGO_BIN_EXE_treecast"))
            .args(["store", "check", "--store", &url, "--keys"])
            .arg(d.join("keys"))
            .arg("--journal")
            .arg(d.join(journal))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("ok: 300 users"), "{text}");
    }
}
