//! The invariants the simulator checks, as it runs and at the end, and the attacks it mixes in.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// The invariants of `DESIGN.md`, and the registry's own audit.
#[derive(Clone, Copy, Debug, Eq, Ord, PartialEq, PartialOrd)]
pub(crate) enum Invariant {
    /// 1. Every non-revoked client with a valid license can play the content (real decryption,
    ///    compared with the original bytes).
    PlaySucceeds,
    /// 2. No revoked client opens an EKB of a later epoch, nor does the union of all revoked
    ///    clients' keys (no subset of the EKB holds a revoked leaf).
    RevokedLockedOut,
    /// 3. Each purchase has exactly one usable license at every moment; a moved-from license and
    ///    a used certificate are refused.
    OneUsableLicense,
    /// 4. No certificate moves content between clients of different users.
    SameUserMoves,
    /// 5. The ledger equals licenses × license price + certificates × certificate price.
    Billing,
    /// 6. The same seed gives the same report on any number of threads (checked by comparing
    ///    two runs: `--check-determinism` and the test suite).
    Deterministic,
    /// The registry's own audit (`registry::audit`): owners, purchases, history, ledger, leaves.
    RegistryAudit,
}

impl Invariant {
    pub(crate) const ALL: [Self; 7] = [
        Self::PlaySucceeds,
        Self::RevokedLockedOut,
        Self::OneUsableLicense,
        Self::SameUserMoves,
        Self::Billing,
        Self::Deterministic,
        Self::RegistryAudit,
    ];

    /// The name in reports.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Self::PlaySucceeds => "1_play_succeeds",
            Self::RevokedLockedOut => "2_revoked_locked_out",
            Self::OneUsableLicense => "3_one_usable_license",
            Self::SameUserMoves => "4_same_user_moves",
            Self::Billing => "5_billing",
            Self::Deterministic => "6_deterministic",
            Self::RegistryAudit => "registry_audit",
        }
    }
}

/// The attacks mixed into the workload. Every one must be refused.
#[derive(Clone, Copy, Debug, Eq, Ord, PartialEq, PartialOrd)]
pub(crate) enum Attack {
    /// A move of a license to a client of another user.
    CrossUserMove,
    /// A copy certificate moved in a second time.
    ReplayedCertificate,
    /// A copy certificate with one byte changed.
    TamperedCertificate,
    /// A second move of a license that was moved already.
    SecondMove,
    /// A move request sent again: refused, or answered with the certificate already used,
    /// which moves nothing a second time.
    ReplayedMoveRequest,
    /// A license copied to another client of the same user.
    CopiedLicense,
    /// A play on a client that holds no license for the content.
    PlayWithoutLicense,
    /// A revoked client asking for a license.
    RevokedLicenseRequest,
    /// A revoked client opening the current EKB.
    RevokedOpensEkb,
    /// A copy certificate taken from the server's reply straight to the destination, the
    /// source never moving out: the destination must not be able to play.
    DivertedCertificate,
    /// A source that deleted its container moves out: it must keep no playable license.
    ContainerlessSource,
    /// A pirate decoder built from a coalition of clients: tracing must disable it, find every
    /// traitor and exclude no innocent client (issue 16).
    PirateBox,
}

impl Attack {
    pub(crate) const ALL: [Self; 12] = [
        Self::CrossUserMove,
        Self::ReplayedCertificate,
        Self::TamperedCertificate,
        Self::SecondMove,
        Self::ReplayedMoveRequest,
        Self::CopiedLicense,
        Self::PlayWithoutLicense,
        Self::RevokedLicenseRequest,
        Self::RevokedOpensEkb,
        Self::DivertedCertificate,
        Self::ContainerlessSource,
        Self::PirateBox,
    ];

    pub(crate) const fn name(self) -> &'static str {
        match self {
            Self::CrossUserMove => "cross_user_move",
            Self::ReplayedCertificate => "replayed_certificate",
            Self::TamperedCertificate => "tampered_certificate",
            Self::SecondMove => "second_move",
            Self::ReplayedMoveRequest => "replayed_move_request",
            Self::CopiedLicense => "copied_license",
            Self::PlayWithoutLicense => "play_without_license",
            Self::RevokedLicenseRequest => "revoked_license_request",
            Self::RevokedOpensEkb => "revoked_opens_ekb",
            Self::DivertedCertificate => "diverted_certificate",
            Self::ContainerlessSource => "containerless_source",
            Self::PirateBox => "pirate_box",
        }
    }
}

/// Checked and violated counts of one invariant, in the report.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq, Serialize)]
pub struct InvariantCount {
    /// How many times it was checked.
    pub checked: u64,
    /// How many times it did not hold.
    pub violations: u64,
}

/// Tried and refused counts of one attack kind, in the report.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq, Serialize)]
pub struct AttackCount {
    /// How many times it was tried.
    pub tried: u64,
    /// How many times it was refused.
    pub refused: u64,
}

/// Thread-safe tallies, and the first violations in a deterministic order.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    checks: [AtomicU64; 7],
    violations: [AtomicU64; 7],
    attacks_tried: [AtomicU64; Attack::ALL.len()],
    attacks_refused: [AtomicU64; Attack::ALL.len()],
    /// (sort key, message): sorted at the end so that threads do not change which come first.
    first: Mutex<Vec<(u64, String)>>,
}

/// How many violation messages are kept.
pub(crate) const KEPT_VIOLATIONS: usize = 20;

impl Tally {
    /// Records one check of `inv`; `ok` is whether it held. `key` orders the messages
    /// (for instance the user's index), `message` says what failed.
    pub(crate) fn check(
        &self,
        inv: Invariant,
        ok: bool,
        key: u64,
        message: impl FnOnce() -> String,
    ) {
        let i = inv as usize;
        if let Some(c) = self.checks.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        if !ok {
            if let Some(v) = self.violations.get(i) {
                v.fetch_add(1, Ordering::Relaxed);
            }
            self.keep(key, format!("{}: {}", inv.name(), message()));
        }
    }

    /// Records many checks of `inv` that all held.
    pub(crate) fn checked_ok(&self, inv: Invariant, n: u64) {
        if let Some(c) = self.checks.get(inv as usize) {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Records an attack; `refused` is whether the system refused it.
    pub(crate) fn attack(&self, attack: Attack, refused: bool, key: u64) {
        let i = attack as usize;
        if let Some(c) = self.attacks_tried.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        if refused {
            if let Some(c) = self.attacks_refused.get(i) {
                c.fetch_add(1, Ordering::Relaxed);
            }
        } else {
            self.keep(key, format!("attack accepted: {}", attack.name()));
        }
    }

    fn keep(&self, key: u64, message: String) {
        if let Ok(mut first) = self.first.lock() {
            first.push((key, message));
            if first.len() > 4 * KEPT_VIOLATIONS {
                first.sort();
                first.truncate(KEPT_VIOLATIONS);
            }
        }
    }

    pub(crate) fn invariants(&self) -> BTreeMap<String, InvariantCount> {
        let count = |inv: Invariant| InvariantCount {
            checked: load(&self.checks, inv as usize),
            violations: load(&self.violations, inv as usize),
        };
        Invariant::ALL
            .iter()
            .map(|&inv| (inv.name().to_owned(), count(inv)))
            .collect()
    }

    pub(crate) fn attacks(&self) -> BTreeMap<String, AttackCount> {
        let count = |a: Attack| AttackCount {
            tried: load(&self.attacks_tried, a as usize),
            refused: load(&self.attacks_refused, a as usize),
        };
        Attack::ALL
            .iter()
            .map(|&a| (a.name().to_owned(), count(a)))
            .collect()
    }

    pub(crate) fn first_violations(&self) -> Vec<String> {
        let mut first = self.first.lock().map(|f| f.clone()).unwrap_or_default();
        first.sort();
        first.truncate(KEPT_VIOLATIONS);
        first.into_iter().map(|(_, m)| m).collect()
    }
}

/// Counter `i` of `counters`, 0 past the end.
fn load(counters: &[AtomicU64], i: usize) -> u64 {
    counters.get(i).map_or(0, |c| c.load(Ordering::Relaxed))
}
