//! The simulation through a distributor's service (`treecast simulate --server URL`): the
//! clients run in this process, every supply goes through the service's interface, over HTTP
//! or in process (the same workload, to compare the two). This is the load test.
//!
//! Each user is created by the operator, registers its devices, buys a content, plays it, and
//! (for a share of users) moves it to another device; attacks are mixed in; an operator revokes
//! a few holders at the end. Then every purchase must be held by exactly one device that plays
//! it, and the service must report each license's state as the devices know it. The report
//! adds latency percentiles per operation. Several simulators may drive several `serve`
//! processes on one registry at once: each creates its own users.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use crate::SimError;

mod flow;
mod operator;

pub use operator::{InProcess, Operator, Remote, Revoker};

/// What a service-driven simulation runs.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ServiceConfig {
    /// Users, each created by the operator.
    pub users: u64,
    /// Each user registers 1 to this many devices.
    pub max_clients: u8,
    /// The license servers devices register with, 1 to this.
    pub servers: u32,
    /// Contents published before the users come.
    pub contents: u32,
    /// Bytes per content.
    pub content_size: usize,
    /// The share of users who move their purchase to another of their devices, 0 to 1.
    pub move_share: f64,
    /// Holders revoked at the end.
    pub revocations: u64,
    /// The share of operations followed by an attack, 0 to 1.
    pub attack_share: f64,
    /// Concurrent users (threads).
    pub threads: usize,
    /// The seed of every choice and every device key.
    pub seed: u64,
    /// Appends one line per acknowledged operation (the lines of `store workload --journal`),
    /// for `store check --journal` after a crash.
    pub journal: Option<PathBuf>,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            users: 1_000,
            max_clients: 3,
            servers: 2,
            contents: 20,
            content_size: 1024,
            move_share: 0.25,
            revocations: 2,
            attack_share: 0.05,
            threads: 8,
            seed: 1,
            journal: None,
        }
    }
}

/// Latency of one kind of operation, in microseconds.
#[derive(Clone, Debug, Default, Serialize)]
#[non_exhaustive]
pub struct Latency {
    /// How many were timed.
    pub count: u64,
    /// The median.
    pub p50_us: u64,
    /// The 99th percentile.
    pub p99_us: u64,
    /// The slowest.
    pub max_us: u64,
}

/// One phase of the run.
#[derive(Clone, Debug, Default, Serialize)]
#[non_exhaustive]
pub struct Phase {
    /// Its operations: users set up, licenses supplied, plays, or moves.
    pub operations: u64,
    /// Its wall time.
    pub seconds: f64,
    /// Operations per second.
    pub per_second: f64,
}

/// What a service-driven simulation measured and checked.
#[derive(Clone, Debug, Default, Serialize)]
#[non_exhaustive]
pub struct ServiceReport {
    /// Where the service was (`in-process` or its URL).
    pub service: String,
    /// Users.
    pub users: u64,
    /// Concurrent users.
    pub threads: usize,
    /// The wall time of the four phases, in seconds.
    pub seconds: f64,
    /// The phases, in order: setup (users, devices, downloads), purchase (license supplies),
    /// play (devices only), move (copy-certificate supplies and the moves); each with its
    /// operations and their rate over the phase's wall time.
    pub phases: std::collections::BTreeMap<String, Phase>,
    /// Per operation: `user`, `register`, `ekb`, `download`, `license`, `certificate`,
    /// `revoke`, `status`.
    pub latency: std::collections::BTreeMap<String, Latency>,
    /// Attacks tried, and how many the service and the devices refused (or answered
    /// harmlessly: a retry gets the answer it already had).
    pub attacks: std::collections::BTreeMap<String, (u64, u64)>,
    /// Invariant checks made.
    pub checks: u64,
    /// The first violations found.
    pub violations: Vec<String>,
}

impl ServiceReport {
    /// Whether every check held and every attack was refused.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
            && self
                .attacks
                .values()
                .all(|(tried, refused)| tried == refused)
    }
}

impl core::fmt::Display for ServiceReport {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        writeln!(
            f,
            "service {}: {} users on {} threads in {:.1} s",
            self.service, self.users, self.threads, self.seconds
        )?;
        writeln!(f, "phase          operations    seconds      per s")?;
        for (name, p) in &self.phases {
            writeln!(
                f,
                "{name:<12} {:>12} {:>10.2} {:>10.0}",
                p.operations, p.seconds, p.per_second
            )?;
        }
        writeln!(
            f,
            "operation         count     p50 ms     p99 ms     max ms"
        )?;
        for (name, l) in &self.latency {
            writeln!(
                f,
                "{name:<12} {:>10} {:>10.2} {:>10.2} {:>10.2}",
                l.count,
                l.p50_us as f64 / 1e3,
                l.p99_us as f64 / 1e3,
                l.max_us as f64 / 1e3
            )?;
        }
        for (name, (tried, refused)) in &self.attacks {
            writeln!(f, "attack {name}: {tried} tried, {refused} refused")?;
        }
        writeln!(
            f,
            "{} checks, {} violations",
            self.checks,
            self.violations.len()
        )?;
        for v in &self.violations {
            writeln!(f, "violation: {v}")?;
        }
        if self.passed() {
            write!(f, "PASSED: every invariant held, every attack was refused")
        } else {
            write!(f, "FAILED")
        }
    }
}

/// What the run shares between threads.
pub(crate) struct Shared<'a> {
    pub(crate) op: &'a dyn Operator,
    pub(crate) cfg: &'a ServiceConfig,
    pub(crate) contents: Vec<(treecast_protocol::ContentId, Vec<u8>)>,
    pub(crate) timings: Mutex<Vec<(&'static str, u32)>>,
    pub(crate) attacks: Mutex<std::collections::BTreeMap<String, (u64, u64)>>,
    pub(crate) checks: std::sync::atomic::AtomicU64,
    pub(crate) violations: Mutex<Vec<String>>,
    pub(crate) journal: Option<Mutex<File>>,
    /// A client of some other user, for cross-user attacks.
    pub(crate) foreign: std::sync::atomic::AtomicU64,
}

impl Shared<'_> {
    /// Runs `f`, timing it as `name`.
    pub(crate) fn timed<T>(
        &self,
        name: &'static str,
        f: impl FnOnce() -> Result<T, treecast_protocol::Error>,
    ) -> Result<T, treecast_protocol::Error> {
        let start = Instant::now();
        let out = f();
        let us = u32::try_from(start.elapsed().as_micros()).unwrap_or(u32::MAX);
        if let Ok(mut t) = self.timings.lock() {
            t.push((name, us));
        }
        out
    }

    /// Counts a check; records a violation when it failed.
    pub(crate) fn check(&self, ok: bool, what: impl FnOnce() -> String) {
        self.checks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if !ok
            && let Ok(mut v) = self.violations.lock()
            && v.len() < 20
        {
            v.push(what());
        }
    }

    /// How many operations named `name` were timed so far.
    pub(crate) fn count(&self, name: &str) -> u64 {
        self.timings
            .lock()
            .map_or(0, |t| t.iter().filter(|(n, _)| *n == name).count() as u64)
    }

    /// Counts an attack; `refused` when it achieved nothing.
    pub(crate) fn attack(&self, name: &str, refused: bool) {
        if let Ok(mut a) = self.attacks.lock() {
            let e = a.entry(name.to_owned()).or_default();
            e.0 += 1;
            e.1 += u64::from(refused);
        }
    }

    /// Appends an acknowledged operation to the journal.
    pub(crate) fn journal(&self, line: &str) -> Result<(), SimError> {
        if let Some(j) = &self.journal {
            let mut file = j
                .lock()
                .map_err(|_| SimError::Config("journal lock poisoned".into()))?;
            // One `write` for the line and its newline, so that a kill never leaves half a
            // line for the next run's first line to continue.
            file.write_all(format!("{line}\n").as_bytes())
                .and_then(|()| file.flush())
                .map_err(|e| SimError::Config(format!("the journal: {e}")))?;
        }
        Ok(())
    }
}

/// Runs the simulation through `op`.
///
/// # Errors
/// [`SimError::Config`] for bad parameters or a journal that cannot be written;
/// [`SimError::Library`] when an operation the workload expects to succeed fails (the service
/// is gone, say): the journal then holds every operation acknowledged before.
pub fn run(
    op: &dyn Operator,
    service: &str,
    cfg: &ServiceConfig,
) -> Result<ServiceReport, SimError> {
    if cfg.users == 0 || cfg.contents == 0 || cfg.max_clients == 0 || cfg.servers == 0 {
        return Err(SimError::Config(
            "users, contents, clients and servers must be at least 1".into(),
        ));
    }
    let journal = cfg
        .journal
        .as_ref()
        .map(|p| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map(Mutex::new)
                .map_err(|e| SimError::Config(format!("{}: {e}", p.display())))
        })
        .transpose()?;
    let mut shared = Shared {
        op,
        cfg,
        contents: Vec::new(),
        timings: Mutex::new(Vec::new()),
        attacks: Mutex::new(std::collections::BTreeMap::new()),
        checks: std::sync::atomic::AtomicU64::new(0),
        violations: Mutex::new(Vec::new()),
        journal,
        foreign: std::sync::atomic::AtomicU64::new(0),
    };
    for c in 0..cfg.contents {
        let plain = flow::plaintext(cfg.seed, c, cfg.content_size);
        let id = op.publish(&plain)?;
        shared.journal(&format!("content {}", id.0))?;
        shared.contents.push((id, plain));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.threads.max(1))
        .build()
        .map_err(|e| SimError::Config(format!("thread pool: {e}")))?;
    let mut phases = std::collections::BTreeMap::new();
    let mut phase = |name: &str, operations: u64, start: Instant| {
        let seconds = start.elapsed().as_secs_f64();
        phases.insert(
            name.to_owned(),
            Phase {
                operations,
                seconds,
                per_second: operations as f64 / seconds.max(1e-9),
            },
        );
    };
    let start = Instant::now();
    let mut users: Vec<flow::SimUser> = pool.install(|| {
        (0..cfg.users)
            .into_par_iter()
            .map(|u| flow::setup(&shared, u))
            .collect::<Result<_, SimError>>()
    })?;
    phase("1_setup", cfg.users, start);
    let start = Instant::now();
    pool.install(|| {
        users
            .par_iter_mut()
            .try_for_each(|u| flow::purchase(&shared, u))
    })?;
    phase("2_purchase", cfg.users, start);
    let start = Instant::now();
    pool.install(|| users.par_iter().try_for_each(|u| flow::play(&shared, u)))?;
    phase("3_play", cfg.users, start);
    let before = shared.count("certificate");
    let start = Instant::now();
    pool.install(|| {
        users
            .par_iter_mut()
            .try_for_each(|u| flow::maybe_move(&shared, u))
    })?;
    phase("4_move", shared.count("certificate") - before, start);
    let seconds = phases.values().map(|p| p.seconds).sum();
    flow::finish(&shared, users)?;
    let mut report = report(shared, service, seconds)?;
    report.phases = phases;
    Ok(report)
}

fn report(shared: Shared<'_>, service: &str, seconds: f64) -> Result<ServiceReport, SimError> {
    let poisoned = || SimError::Config("a lock was poisoned".into());
    let mut timings = shared.timings.into_inner().map_err(|_| poisoned())?;
    timings.sort_unstable();
    let mut latency = std::collections::BTreeMap::new();
    for chunk in timings.chunk_by(|a, b| a.0 == b.0) {
        let Some(&(name, _)) = chunk.first() else {
            continue;
        };
        let at = |q: f64| {
            let i = ((chunk.len() as f64 - 1.0) * q).round() as usize;
            chunk.get(i).map_or(0, |&(_, us)| u64::from(us))
        };
        latency.insert(
            name.to_owned(),
            Latency {
                count: chunk.len() as u64,
                p50_us: at(0.5),
                p99_us: at(0.99),
                max_us: at(1.0),
            },
        );
    }
    Ok(ServiceReport {
        service: service.to_owned(),
        users: shared.cfg.users,
        threads: shared.cfg.threads,
        seconds,
        phases: std::collections::BTreeMap::new(),
        latency,
        attacks: shared.attacks.into_inner().map_err(|_| poisoned())?,
        checks: shared.checks.into_inner(),
        violations: shared.violations.into_inner().map_err(|_| poisoned())?,
    })
}
