//! The simulator in small runs: every invariant holds and every attack is refused; the report
//! does not depend on the number of threads; a planted fault is caught.

use treecast::keytree::{Scheme, TreeHeight};
use treecast::license::registry::MemoryRegistry;
use treecast::sim::{SimConfig, StoreSpec, run, run_with};

use crate::cli::{assert_clean_failure, path, stdout, treecast};

fn small(users: u64, threads: usize) -> SimConfig {
    let mut c = SimConfig::small(users);
    c.threads = threads;
    c.attack_share = 0.05;
    c
}

#[test]
fn a_small_run_passes_and_does_what_it_was_asked() {
    let config = small(2_000, 2);
    let report = run(&config).unwrap().report;
    assert!(report.passed(), "{report}");
    let n = &report.counts;
    assert_eq!(n.users, 2_000);
    assert!(n.clients >= 2_000 && n.clients <= 8_000);
    assert_eq!(n.purchases, config.purchases);
    assert_eq!(n.plays, config.plays);
    assert_eq!(n.moves, config.moves);
    assert_eq!(n.revocations, config.revocations);
    assert!(n.attacks_tried > 50, "{n:?}");
    assert_eq!(n.attacks_tried, n.attacks_refused);
    // Every kind of attack was tried, the move-protocol ones of issue 12 included.
    for (name, a) in &report.attacks {
        assert!(a.tried > 0 && a.refused == a.tried, "{name}: {a:?}");
    }
    assert!(report.attacks.contains_key("diverted_certificate"));
    assert!(report.attacks.contains_key("containerless_source"));
    assert_eq!(n.billed, n.purchases * 300 + n.moves * 50);
    // The crypto bound prices each phase at unit costs sampled during it: the first user of
    // the registration and of each round is sampled.
    let bound = &report.crypto_bound;
    assert_eq!(bound.phases[0].samples.count, 1);
    assert_eq!(bound.phases[1].samples.count, config.rounds);
    assert_eq!(bound.samples.count, 1 + config.rounds);
    assert!(bound.unit_seconds.verify > 0.0 && bound.ratio > 0.0);
    for (name, inv) in &report.invariants {
        if name != "6_deterministic" {
            assert!(inv.checked > 0, "{name} was never checked");
        }
        assert_eq!(inv.violations, 0, "{name}");
    }
    // A pirate box was traced mid-run: its 1 to 4 traitors found and revoked (issue 16).
    assert_eq!(n.pirate_boxes, 1);
    assert!(n.tracing_queries > 0);
    let last = report.ekb.last().expect("the EKBs built");
    let traitors = last.revoked - config.revocations;
    assert!((1..=4).contains(&traitors), "{traitors} traitors revoked");
    // One epoch per revoked client; one EKB built per batch of revocations (the first EKB, one
    // after each round's revocations, one for the traitors), never one per revocation.
    assert_eq!(last.epoch, 1 + last.revoked);
    assert!(config.revocations >= u64::from(config.rounds));
    assert_eq!(report.ekb.len() as u64, 1 + u64::from(config.rounds) + 1);
    assert!(
        report
            .ekb
            .windows(2)
            .all(|w| w[1].epoch > w[0].epoch && w[1].revoked > w[0].revoked)
    );
}

#[test]
fn one_thread_and_two_give_the_same_report() {
    let one = run(&small(1_500, 1)).unwrap().report;
    let two = run(&small(1_500, 2)).unwrap().report;
    assert_eq!(one.deterministic(), two.deterministic());
    assert_eq!(one.fingerprint, two.fingerprint);
    // A different seed gives a different run.
    let mut other = small(1_500, 2);
    other.seed = 2;
    assert_ne!(run(&other).unwrap().report.fingerprint, one.fingerprint);
}

/// The pirate-evolution experiment: the same report on one thread and two, every coalition
/// defeated without naming an innocent, the undefended generations exactly as predicted (the
/// Steiner-tree count under Complete Subtree), and the deepening defence needing fewer.
#[test]
fn pirate_evolution_is_counted_the_same_on_any_threads() {
    let config = treecast::sim::EvolutionConfig {
        height: TreeHeight::new(11).unwrap(),
        max_traitors: 4,
        revoked: 6,
        max_depth: 4,
    };
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(|| treecast::sim::evolution::run(&config, 5).unwrap());
    let two = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap()
        .install(|| treecast::sim::evolution::run(&config, 5).unwrap());
    assert_eq!(one, two);
    assert!(one.passed());
    for pair in one.rows.chunks(2) {
        let (plain, deep) = (&pair[0], &pair[1]);
        assert_eq!((plain.defence, deep.defence), ("none", "deepening"));
        assert_eq!(plain.generations, plain.predicted);
        assert_eq!(plain.named, plain.traitors as usize);
        assert!(deep.generations < plain.generations, "{plain:?} {deep:?}");
        assert!(deep.final_bytes >= plain.final_bytes);
    }
    // A bad parameter is refused before anything runs.
    let mut bad = config;
    bad.max_depth = 1;
    assert!(treecast::sim::evolution::run(&bad, 5).is_err());
}

#[test]
fn a_registry_that_lets_a_second_move_through_is_caught() {
    let mut config = small(1_000, 2);
    config.attack_share = 1.0;
    let registry = MemoryRegistry::new(config.height);
    registry.danger_skip_move_checks().unwrap();
    let report = run_with(&config, registry).unwrap().report;
    assert!(!report.passed());
    let second = &report.attacks["second_move"];
    assert!(
        second.tried > 0 && second.refused < second.tried,
        "{second:?}"
    );
    assert!(report.invariants["registry_audit"].violations > 0);
    assert!(
        report
            .first_violations
            .iter()
            .any(|v| v.contains("second_move")),
        "{:?}",
        report.first_violations
    );
}

#[test]
fn subset_difference_and_sqlite_runs_pass() {
    let mut sd = small(600, 2);
    sd.scheme = Scheme::SUBSET_DIFFERENCE;
    sd.height = TreeHeight::new(24).unwrap();
    let report = run(&sd).unwrap().report;
    assert!(report.passed(), "{report}");
    assert_eq!(report.config.scheme, "sd");

    let dir = tempfile::tempdir().unwrap();
    let mut sqlite = small(400, 2);
    sqlite.store = StoreSpec::Sqlite(dir.path().join("sim.sqlite"));
    let report = run(&sqlite).unwrap().report;
    assert!(report.passed(), "{report}");
    // The file holds the registry the run left: `store check` audits it again.
    let out = treecast(&[
        "store",
        "check",
        "--store",
        &format!("sqlite:{}", path(&dir.path().join("sim.sqlite"))),
    ]);
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn cli_simulate_writes_the_report_and_the_charts() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let plots = dir.path().join("plots");
    let out = treecast(&[
        "simulate",
        "--users",
        "800",
        "--threads",
        "2",
        "--report",
        path(&report),
        "--plot",
        path(&plots),
        "--check-determinism",
        "--evolution-height",
        "10",
        "--evolution-traitors",
        "3",
        "--evolution-revoked",
        "4",
        "--lifecycle-users",
        "120",
        "--lifecycle-days",
        "30",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout(&out).contains("pirate evolution"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("PASSED"), "{}", stdout(&out));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    for key in ["seed", "threads", "scheme", "height", "users", "store"] {
        assert!(json["config"].get(key).is_some(), "config.{key}");
    }
    for key in [
        "users",
        "clients",
        "purchases",
        "plays",
        "moves",
        "revocations",
        "attacks_tried",
        "attacks_refused",
    ] {
        assert!(json["counts"][key].as_u64().is_some(), "counts.{key}");
    }
    for (name, inv) in json["invariants"].as_object().unwrap() {
        assert!(inv["checked"].as_u64().unwrap() > 0, "{name}");
        assert_eq!(inv["violations"].as_u64(), Some(0), "{name}");
    }
    assert!(json["throughput"]["purchase"].as_f64().unwrap() > 0.0);
    let ekb = json["ekb"].as_array().unwrap();
    assert!(ekb[0].get("revoked").is_some() && ekb[0].get("subsets").is_some());
    assert!(ekb[0].get("bytes").is_some());
    assert!(json["peak_rss_bytes"].as_u64().is_some());
    // Licenses with time: every kind happened, every attack was refused, every invariant held.
    let lifecycle = &json["lifecycle"];
    for key in [
        "rentals",
        "subscriptions",
        "loans",
        "renewals",
        "returns",
        "expiries",
        "plays",
    ] {
        assert!(
            lifecycle[key].as_u64().unwrap() > 0,
            "lifecycle.{key}: {lifecycle}"
        );
    }
    for (name, a) in lifecycle["attacks"].as_object().unwrap() {
        assert!(a["tried"].as_u64().unwrap() > 0, "{name}");
        assert_eq!(a["tried"], a["refused"], "{name}");
    }
    for (name, i) in lifecycle["invariants"].as_object().unwrap() {
        assert!(i["checked"].as_u64().unwrap() > 0, "{name}");
        assert_eq!(i["violations"].as_u64(), Some(0), "{name}");
    }
    // Both schemes, coalitions of 1 to 3, each with and without the defence.
    let rows = json["evolution"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2 * 3 * 2);
    for row in rows {
        assert_eq!(row["defeated"].as_bool(), Some(true), "{row}");
        assert_eq!(row["innocents_named"].as_u64(), Some(0), "{row}");
    }
    for chart in ["ekb_size.svg", "throughput.svg", "evolution.svg"] {
        let svg = std::fs::read_to_string(plots.join(chart)).unwrap();
        assert!(svg.starts_with("<svg"), "{chart}");
    }
    assert_clean_failure(
        &treecast(&["simulate", "--users", "10", "--attack-share", "2"]),
        "attack share",
    );
    assert_clean_failure(
        &treecast(&["simulate", "--users", "10", "--store", "postgres:x"]),
        "is not a store",
    );
}
