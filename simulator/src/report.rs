//! The report: what ran, what was checked, how fast, and how big the EKBs were.

use core::fmt;
use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::bound::CryptoBound;
use crate::invariants::{AttackCount, InvariantCount};

/// An EKB built during the run (the first, and the last of each batch of revocations).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct EkbEpoch {
    /// The epoch.
    pub epoch: u64,
    /// Revoked clients so far.
    pub revoked: u64,
    /// Subsets in its cover.
    pub subsets: u32,
    /// Its size in bytes.
    pub bytes: usize,
}

/// The parameters of the run, as reported.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConfigReport {
    /// The seed.
    pub seed: u64,
    /// Worker threads.
    pub threads: usize,
    /// `cs` or `sd`.
    pub scheme: &'static str,
    /// The tree height.
    pub height: u8,
    /// Users.
    pub users: u64,
    /// The most clients a user has.
    pub max_clients: u8,
    /// Contents.
    pub contents: u32,
    /// The Zipf exponent of popularity.
    pub zipf_exponent: f64,
    /// Bytes per content.
    pub content_size: usize,
    /// Purchases planned.
    pub purchases: u64,
    /// Plays planned.
    pub plays: u64,
    /// Moves planned.
    pub moves: u64,
    /// Revocations planned.
    pub revocations: u64,
    /// Rounds.
    pub rounds: u32,
    /// `memory` or `sqlite:PATH`.
    pub store: String,
    /// The share of operations followed by an attack.
    pub attack_share: f64,
    /// License servers.
    pub servers: u32,
    /// Pirate boxes traced.
    pub pirate_boxes: u32,
    /// How clients keep their device key sets.
    pub key_sets: &'static str,
}

/// What happened.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Users registered.
    pub users: u64,
    /// Clients registered.
    pub clients: u64,
    /// Licenses bought.
    pub purchases: u64,
    /// Plays (real decryptions) of the workload, not counting the final checks'.
    pub plays: u64,
    /// Moves done.
    pub moves: u64,
    /// Clients revoked.
    pub revocations: u64,
    /// Attacks tried.
    pub attacks_tried: u64,
    /// Attacks refused.
    pub attacks_refused: u64,
    /// The ledger's total, in cents.
    pub billed: u64,
    /// Pirate boxes traced (issue 16).
    pub pirate_boxes: u64,
    /// Queries the traces made to the boxes.
    pub tracing_queries: u64,
    /// Subsets the traced covers added, summed over the boxes.
    pub traced_cover_growth: u64,
}

/// The whole report; `--report FILE` writes it as JSON.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The parameters.
    pub config: ConfigReport,
    /// What happened.
    pub counts: Counts,
    /// Each invariant: how often it was checked and how often it failed.
    pub invariants: BTreeMap<String, InvariantCount>,
    /// Each attack kind: tried and refused.
    pub attacks: BTreeMap<String, AttackCount>,
    /// The first violations, in a deterministic order.
    pub first_violations: Vec<String>,
    /// Operations per second of wall time, by operation (the time in each operation summed
    /// over threads, divided by the threads).
    pub throughput: BTreeMap<String, f64>,
    /// The crypto work alone, and the run against it.
    pub crypto_bound: CryptoBound,
    /// Per epoch: revoked clients, subsets, bytes.
    pub ekb: Vec<EkbEpoch>,
    /// Wall time of each phase, in seconds.
    pub seconds: BTreeMap<String, f64>,
    /// The peak resident set size (Linux `VmHWM`), 0 where unknown.
    pub peak_rss_bytes: u64,
    /// Peak resident bytes per client.
    pub peak_rss_bytes_per_client: f64,
    /// Peak resident bytes per client beyond the stored licenses: the peak, less what the rounds
    /// added (licenses and what is kept with them: the clients' copies, registry rows, ledger,
    /// history), per client.
    pub peak_rss_bytes_per_client_beyond_licenses: f64,
    /// The resident set size after each phase, in bytes.
    pub rss_after: BTreeMap<String, u64>,
    /// SHA-256 of the deterministic part of the report (everything but timings, memory and
    /// threads): equal for equal seeds and parameters on any number of threads.
    pub fingerprint: String,
    /// The pirate-evolution experiment, when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evolution: Option<crate::EvolutionReport>,
    /// Licenses with time, when they ran (issue 27).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<crate::LifecycleReport>,
}

impl Report {
    /// The part of the report that a seed determines: no timings, no memory, no thread count.
    pub fn deterministic(&self) -> serde_json::Value {
        let mut config = self.config.clone();
        config.threads = 0;
        let mut value = serde_json::json!({
            "config": config,
            "counts": self.counts,
            "invariants": self.invariants,
            "attacks": self.attacks,
            "first_violations": self.first_violations,
            "ekb": self.ekb,
        });
        // Only when it ran, so that a run without it (the library's default; `--no-evolution`)
        // keeps the fingerprint it had before the experiment existed.
        if let (Some(evolution), Some(map)) = (&self.evolution, value.as_object_mut()) {
            map.insert("evolution".into(), serde_json::json!(evolution));
        }
        if let (Some(lifecycle), Some(map)) = (&self.lifecycle, value.as_object_mut()) {
            map.insert("lifecycle".into(), serde_json::json!(lifecycle));
        }
        value
    }

    pub(crate) fn fingerprint_of(value: &serde_json::Value) -> String {
        hex::encode(Sha256::digest(value.to_string().as_bytes()))
    }

    /// Whether every invariant held and every attack was refused.
    pub fn passed(&self) -> bool {
        self.invariants.values().all(|i| i.violations == 0)
            && self.counts.attacks_tried == self.counts.attacks_refused
            && self
                .evolution
                .as_ref()
                .is_none_or(crate::EvolutionReport::passed)
            && self
                .lifecycle
                .as_ref()
                .is_none_or(crate::LifecycleReport::passed)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        writeln!(
            f,
            "treecast simulation: seed {}  {} threads  {} h={}  store {}  key sets {}",
            c.seed, c.threads, c.scheme, c.height, c.store, c.key_sets
        )?;
        let n = &self.counts;
        writeln!(
            f,
            "users {}  clients {}  purchases {}  plays {}  moves {}  revocations {}  billed {}",
            n.users, n.clients, n.purchases, n.plays, n.moves, n.revocations, n.billed
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "{:<26} {:>12} {:>10}",
            "invariant", "checked", "violations"
        )?;
        for (name, i) in &self.invariants {
            writeln!(f, "{name:<26} {:>12} {:>10}", i.checked, i.violations)?;
        }
        writeln!(f)?;
        writeln!(f, "{:<26} {:>12} {:>10}", "attack", "tried", "refused")?;
        for (name, a) in &self.attacks {
            writeln!(f, "{name:<26} {:>12} {:>10}", a.tried, a.refused)?;
        }
        writeln!(
            f,
            "{:<26} {:>12} {:>10}",
            "all attacks", n.attacks_tried, n.attacks_refused
        )?;
        if n.pirate_boxes > 0 {
            writeln!(
                f,
                "pirate boxes traced: {}, {} queries, the covers grew by {} subsets",
                n.pirate_boxes, n.tracing_queries, n.traced_cover_growth
            )?;
        }
        writeln!(f)?;
        writeln!(f, "{:<26} {:>12}", "operation", "per second")?;
        for (name, rate) in &self.throughput {
            writeln!(f, "{name:<26} {rate:>12.0}")?;
        }
        let b = &self.crypto_bound;
        writeln!(
            f,
            "crypto alone {:.1} s per thread, run {:.1} s: ratio {:.2} (target >= {:.2}; {:.2} at \
             the fastest costs)",
            b.crypto_seconds_per_thread,
            b.wall_seconds,
            b.ratio,
            CryptoBound::TARGET,
            b.warm_ratio
        )?;
        for p in &b.phases {
            writeln!(
                f,
                "  {:<13} crypto {:.1} s per thread, wall {:.1} s: ratio {:.2}",
                p.phase, p.crypto_seconds_per_thread, p.wall_seconds, p.ratio
            )?;
        }
        let costs = |u: &crate::UnitCosts| {
            format!(
                "key generation {:.1}, sign {:.1}, verify {:.1}, key decoding {:.1}, decrypt {:.2}",
                u.keygen * 1e6,
                u.sign * 1e6,
                u.verify * 1e6,
                u.parse_key * 1e6,
                u.decrypt * 1e6
            )
        };
        writeln!(
            f,
            "  unit costs (µs, mean of {} samples taken during the run): {}",
            b.samples.count,
            costs(&b.unit_seconds)
        )?;
        writeln!(
            f,
            "  unit costs (µs, fastest before and after the run): {}",
            costs(&b.warm_unit_seconds)
        )?;
        let last = self.ekb.last();
        writeln!(
            f,
            "EKB: {} built, up to epoch {}; last: {} revoked, {} subsets, {} bytes",
            self.ekb.len(),
            last.map_or(0, |e| e.epoch),
            last.map_or(0, |e| e.revoked),
            last.map_or(0, |e| e.subsets),
            last.map_or(0, |e| e.bytes)
        )?;
        let total = self.seconds.get("total").copied().unwrap_or(0.0);
        writeln!(
            f,
            "time {total:.1} s; peak RSS {:.0} MiB ({:.0} bytes per client, {:.0} beyond the licenses)",
            self.peak_rss_bytes as f64 / (1 << 20) as f64,
            self.peak_rss_bytes_per_client,
            self.peak_rss_bytes_per_client_beyond_licenses
        )?;
        if let Some(evolution) = &self.evolution {
            writeln!(f)?;
            write!(f, "{evolution}")?;
            writeln!(
                f,
                "({:.1} s; predicted: the undefended count without tracing, under CS \
                 Kiayias-Pehlivanoglu's Steiner-tree nodes; order: the published orders of growth without constants, t·log2(N/t) CS, t·log2 N SD)",
                self.seconds.get("evolution").copied().unwrap_or(0.0)
            )?;
        }
        if let Some(l) = &self.lifecycle {
            writeln!(f)?;
            writeln!(
                f,
                "licenses with time ({:.1} s): {} rentals, {} subscriptions, {} loans, {} renewals, \
                 {} returns, {} expiries, {} plays, billed {}",
                self.seconds.get("lifecycle").copied().unwrap_or(0.0),
                l.rentals,
                l.subscriptions,
                l.loans,
                l.renewals,
                l.returns,
                l.expiries,
                l.plays,
                l.billed
            )?;
            for (name, a) in &l.attacks {
                writeln!(
                    f,
                    "  attack {name:<28} {:>8} tried {:>8} refused",
                    a.tried, a.refused
                )?;
            }
            for (name, i) in &l.invariants {
                writeln!(
                    f,
                    "  invariant {name:<25} {:>8} checked {:>5} violations",
                    i.checked, i.violations
                )?;
            }
        }
        if !self.first_violations.is_empty() {
            writeln!(f)?;
            writeln!(f, "first violations:")?;
            for v in &self.first_violations {
                writeln!(f, "  {v}")?;
            }
        }
        // The verdict is correctness alone; the crypto-bound ratio is a measurement beside it,
        // on a line of its own, so that a ratio below its target never reads as a failure
        // (issue 28).
        writeln!(f)?;
        let b = &self.crypto_bound;
        writeln!(
            f,
            "performance (a measurement, not part of the verdict): ratio {:.2} {} the target of \
             {:.2}",
            b.ratio,
            if b.ratio >= CryptoBound::TARGET {
                "meets"
            } else {
                "is below"
            },
            CryptoBound::TARGET
        )?;
        write!(
            f,
            "{}",
            if self.passed() {
                "verdict: PASSED: every invariant held, every attack was refused"
            } else {
                "verdict: FAILED: an invariant was violated or an attack succeeded (above)"
            }
        )
    }
}

/// The peak resident set size of this process, from `/proc/self/status` (`VmHWM`), or 0.
pub(crate) fn peak_rss_bytes() -> u64 {
    proc_status("VmHWM:")
}

/// The resident set size of this process now (`VmRSS`), or 0.
pub(crate) fn rss_bytes() -> u64 {
    proc_status("VmRSS:")
}

fn proc_status(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
