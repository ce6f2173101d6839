//! Licenses with time in the simulator (issue 27): a population of its own rents, subscribes,
//! borrows, plays, renews, returns and lets licenses expire, day after day on a simulated
//! clock, through the real distributor and real devices; it attacks the lifecycle and checks
//! its invariants.
//!
//! Each day every user acts on their own licenses on all threads (their outcomes do not depend
//! on one another); loans, which compete for a content's copies, are asked for one user at a
//! time in user order, so that who borrows does not depend on the threads. The report counts
//! only outcomes, so the same seed gives the same report on any number of threads.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::Serialize;
use treecast_device::Client;
use treecast_distributor::{Distributor, DistributorConfig, LicenseServer, OfferTerms, Tariff};
use treecast_keytree::{Authority, MasterSecret, Scheme, TreeConfig, TreeHeight, TreeId};
use treecast_protocol::ids::{ContentId, LicenseId, ServerId, UserId};
use treecast_protocol::renewal::{RenewFrom, RenewalRequestTbs};
use treecast_protocol::sign::Signable;
use treecast_protocol::terms::Offer;
use treecast_protocol::time::{Clock, ManualClock, UnixTime};
use treecast_protocol::{Error, Registration, SigningKey};
use treecast_registry::billing::ChargeKind;
use treecast_registry::{LicenseState, MemoryRegistry, Registry};

use crate::SimError;
use crate::invariants::{AttackCount, InvariantCount};

const DAY: u64 = 86_400;
const START: UnixTime = UnixTime(1_800_000_000);
const RENTAL_PRICE: u64 = 299;
const SUBSCRIPTION_PRICE: u64 = 999;

/// What the lifecycle part of a run does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LifecycleConfig {
    /// Its users (one device each; one in ten has a second).
    pub users: u32,
    /// Simulated days.
    pub days: u32,
    /// Contents on offer.
    pub contents: u32,
    /// Each content's copies for loans.
    pub copies: u32,
}

impl Default for LifecycleConfig {
    /// 2 000 users for 60 days, 20 contents of 5 copies each.
    fn default() -> Self {
        Self {
            users: 2_000,
            days: 60,
            contents: 20,
            copies: 5,
        }
    }
}

impl LifecycleConfig {
    /// Checks the parameters.
    ///
    /// # Errors
    /// [`SimError::Config`] naming the first one out of range.
    pub fn validate(&self) -> Result<(), SimError> {
        let bad = |what: &str| Err(SimError::Config(what.into()));
        if !(1..=100_000).contains(&self.users) {
            return bad("lifecycle users must be 1 to 100 000");
        }
        if !(1..=3_650).contains(&self.days) {
            return bad("lifecycle days must be 1 to 3 650");
        }
        if !(1..=1_000).contains(&self.contents) {
            return bad("lifecycle contents must be 1 to 1 000");
        }
        if self.copies == 0 {
            return bad("lifecycle copies must be at least 1");
        }
        Ok(())
    }
}

/// What the lifecycle came to: the JSON report's `lifecycle` object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LifecycleReport {
    /// Rentals sold.
    pub rentals: u64,
    /// Subscriptions sold.
    pub subscriptions: u64,
    /// Loans made.
    pub loans: u64,
    /// Renewals.
    pub renewals: u64,
    /// Returns.
    pub returns: u64,
    /// Licenses seen expired by their device (a play refused at or after their end).
    pub expiries: u64,
    /// Plays of licenses with terms.
    pub plays: u64,
    /// Subscriptions moved to another device of their user.
    pub moves: u64,
    /// The ledger's total for the lifecycle's sales, renewals and moves.
    pub billed: u64,
    /// Each attack: tried and refused.
    pub attacks: BTreeMap<String, AttackCount>,
    /// Each invariant: checked and violated.
    pub invariants: BTreeMap<String, InvariantCount>,
}

impl LifecycleReport {
    /// Whether every invariant held and every attack was refused.
    pub fn passed(&self) -> bool {
        self.invariants.values().all(|i| i.violations == 0)
            && self.attacks.values().all(|a| a.tried == a.refused)
    }
}

/// Thread-safe counts.
#[derive(Default)]
struct Tally {
    counts: [AtomicU64; 8],
    attacks: [[AtomicU64; 2]; ATTACKS.len()],
    invariants: [[AtomicU64; 2]; INVARIANTS.len()],
}

const RENTALS: usize = 0;
const SUBSCRIPTIONS: usize = 1;
const LOANS: usize = 2;
const RENEWALS: usize = 3;
const RETURNS: usize = 4;
const EXPIRIES: usize = 5;
const PLAYS: usize = 6;
const MOVES: usize = 7;

const ATTACKS: [&str; 5] = [
    "play_after_expiry",
    "clock_set_back",
    "renew_from_moved_device",
    "restored_state_after_return",
    "loan_beyond_copies",
];
const PLAY_AFTER_EXPIRY: usize = 0;
const CLOCK_SET_BACK: usize = 1;
const RENEW_FROM_MOVED: usize = 2;
const RESTORED_AFTER_RETURN: usize = 3;
const LOAN_BEYOND_COPIES: usize = 4;

const INVARIANTS: [&str; 3] = [
    "no_play_outside_window",
    "loans_within_copies",
    "ledger_equals_events",
];
const NO_PLAY_OUTSIDE: usize = 0;
const LOANS_WITHIN: usize = 1;
const LEDGER_EQUALS: usize = 2;

impl Tally {
    fn add(&self, what: usize) {
        if let Some(c) = self.counts.get(what) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn attack(&self, which: usize, refused: bool) {
        if let Some([tried, ok]) = self.attacks.get(which) {
            tried.fetch_add(1, Ordering::Relaxed);
            ok.fetch_add(u64::from(refused), Ordering::Relaxed);
        }
    }

    fn check(&self, which: usize, held: bool) {
        if let Some([checked, violations]) = self.invariants.get(which) {
            checked.fetch_add(1, Ordering::Relaxed);
            violations.fetch_add(u64::from(!held), Ordering::Relaxed);
        }
    }

    fn count(&self, what: usize) -> u64 {
        self.counts
            .get(what)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

/// A user of the lifecycle: their devices and what they keep to attack with.
struct Member {
    user: UserId,
    devices: Vec<(Client, SigningKey, Vec<u8>)>,
    rng: ChaCha20Rng,
    /// A state saved before a return, with the loan's end: restored after it, it must not play.
    saved_before_return: Option<(Vec<u8>, ContentId, UnixTime)>,
    /// A license moved away from the first device: renewing it from there must be refused.
    moved_away: Option<LicenseId>,
    /// Today's wish to borrow a content.
    wants_loan: Option<ContentId>,
    /// The licenses seen expired (counted once, then left alone).
    expired: Vec<LicenseId>,
}

/// Runs the lifecycle on all worker threads.
///
/// # Errors
/// [`SimError::Config`] for bad parameters; [`SimError::Library`] when an operation the
/// lifecycle expects to succeed fails.
pub fn run(config: &LifecycleConfig, seed: u64) -> Result<LifecycleReport, SimError> {
    config.validate()?;
    let height = TreeHeight::new(16)?;
    let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 0x6c69_6665_6379);
    let authority = Authority::new(
        &MasterSecret::generate(&mut rng),
        TreeConfig::new(Scheme::COMPLETE_SUBTREE, height, TreeId(27)),
    )?;
    let clock = Arc::new(ManualClock::new(START));
    let distributor = Distributor::new(
        authority,
        [LicenseServer::generate(ServerId(1), &mut rng)],
        MemoryRegistry::new(height),
        tariff(config.copies)?,
        clock.clone(),
        DistributorConfig::default(),
    )?;
    let mut containers = Vec::new();
    for i in 0..config.contents {
        let mut container = Vec::new();
        let plain = format!("content {i} of the lifecycle");
        let record = distributor.publish(plain.as_bytes(), &mut container, &mut rng)?;
        containers.push((record.id, container));
    }
    let (_, ekb) = distributor.current_ekb()?;
    let mut members = Vec::with_capacity(config.users as usize);
    for u in 0..config.users {
        let user = distributor.register_user()?;
        let mut member_rng = ChaCha20Rng::seed_from_u64(seed ^ (u64::from(u) << 20) ^ 0x6d65_6d62);
        let count = if member_rng.next_u32().is_multiple_of(10) {
            2
        } else {
            1
        };
        let mut devices = Vec::new();
        for _ in 0..count {
            let key = SigningKey::from_bytes(&random32(&mut member_rng));
            let registration =
                distributor.register_client(user, ServerId(1), &key.verifying_key())?;
            let kept = registration.to_bytes().to_vec();
            let mut client = Client::new(key.clone(), registration)?;
            client.store_ekb(ekb.as_bytes())?;
            for (_, container) in &containers {
                client.store_content(container.clone())?;
            }
            devices.push((client, key, kept));
        }
        for (id, _) in &containers {
            distributor.supply_content(user, *id)?;
        }
        members.push(Member {
            user,
            devices,
            rng: member_rng,
            saved_before_return: None,
            moved_away: None,
            wants_loan: None,
            expired: Vec::new(),
        });
    }
    let contents: Vec<ContentId> = containers.iter().map(|(id, _)| *id).collect();
    let tally = Tally::default();
    let mut expected_billed = 0u64;
    let billed = AtomicU64::new(0);
    for day in 0..config.days {
        clock.set(START.plus(u64::from(day) * DAY + 3_600));
        let now = clock.now();
        members
            .par_iter_mut()
            .try_for_each(|m| act(m, &distributor, &containers, now, &tally, &billed))?;
        // Loans compete for copies: asked one user at a time, in user order.
        for m in &mut members {
            let Some(content) = m.wants_loan.take() else {
                continue;
            };
            let Some((client, _, _)) = m.devices.first_mut() else {
                continue;
            };
            let request = client.license_request_for(content, Offer::Loan, now);
            match distributor.supply_license(request.as_bytes()) {
                Ok(license) => {
                    client.acquire_license(license.as_bytes())?;
                    tally.add(LOANS);
                }
                Err(Error::NoCopyAvailable(_)) => tally.attack(LOAN_BEYOND_COPIES, true),
                Err(e) => return Err(e.into()),
            }
        }
        // No content lent beyond its copies.
        let mut lent: BTreeMap<ContentId, u32> = BTreeMap::new();
        for l in distributor.registry().all_licenses()? {
            let loan = l
                .terms
                .is_some_and(|t| t.offer() == Offer::Loan && t.not_after() > now);
            if loan && l.state == LicenseState::Active {
                *lent.entry(l.content).or_default() += 1;
            }
        }
        for content in &contents {
            tally.check(
                LOANS_WITHIN,
                lent.get(content).copied().unwrap_or(0) <= config.copies,
            );
        }
    }
    // The ledger equals the events: one sale per rental, subscription and loan, one entry per
    // renewal and per return, and their prices.
    let ledger = distributor.registry().ledger()?;
    let kind = |k: ChargeKind| ledger.iter().filter(|e| e.kind == k).count() as u64;
    let sold = tally.count(RENTALS) + tally.count(SUBSCRIPTIONS) + tally.count(LOANS);
    expected_billed += billed.load(Ordering::Relaxed);
    let total: u64 = ledger.iter().map(|e| e.amount).sum();
    tally.check(
        LEDGER_EQUALS,
        kind(ChargeKind::License) == sold
            && kind(ChargeKind::Renewal) == tally.count(RENEWALS)
            && kind(ChargeKind::Return) == tally.count(RETURNS)
            && kind(ChargeKind::Certificate) == tally.count(MOVES)
            && total == expected_billed,
    );
    tally.check(LEDGER_EQUALS, distributor.check_stored_rows(1)?.is_empty());
    let map = |names: &[&str], cells: &[[AtomicU64; 2]]| -> Vec<(String, [u64; 2])> {
        names
            .iter()
            .zip(cells)
            .map(|(n, [a, b])| {
                (
                    (*n).to_owned(),
                    [a.load(Ordering::Relaxed), b.load(Ordering::Relaxed)],
                )
            })
            .collect()
    };
    Ok(LifecycleReport {
        rentals: tally.count(RENTALS),
        subscriptions: tally.count(SUBSCRIPTIONS),
        loans: tally.count(LOANS),
        renewals: tally.count(RENEWALS),
        returns: tally.count(RETURNS),
        expiries: tally.count(EXPIRIES),
        plays: tally.count(PLAYS),
        moves: tally.count(MOVES),
        billed: total,
        attacks: map(&ATTACKS, &tally.attacks)
            .into_iter()
            .map(|(n, [tried, refused])| (n, AttackCount { tried, refused }))
            .collect(),
        invariants: map(&INVARIANTS, &tally.invariants)
            .into_iter()
            .map(|(n, [checked, violations])| {
                (
                    n,
                    InvariantCount {
                        checked,
                        violations,
                    },
                )
            })
            .collect(),
    })
}

/// The lifecycle's tariff: rentals (7 days, 48 hours once played), subscriptions (30 days,
/// renewed a year at most, also once ended), loans (14 days, renewed once from now), `copies`
/// copies of each content.
fn tariff(copies: u32) -> Result<Tariff, SimError> {
    let rental = OfferTerms {
        duration: 7 * DAY,
        play_window: 2 * DAY as u32,
        renewable_for: 0,
        renewal_price: 0,
        renew_expired: false,
    };
    let subscription = OfferTerms {
        duration: 30 * DAY,
        play_window: 0,
        renewable_for: 365 * DAY,
        renewal_price: SUBSCRIPTION_PRICE,
        renew_expired: true,
    };
    let loan = OfferTerms {
        duration: 14 * DAY,
        play_window: 0,
        renewable_for: 14 * DAY,
        renewal_price: 0,
        renew_expired: false,
    };
    Ok(Tariff::default()
        .with_offer(Offer::Rental, RENTAL_PRICE, rental)?
        .with_offer(Offer::Subscription, SUBSCRIPTION_PRICE, subscription)?
        .with_offer(Offer::Loan, 0, loan)?
        .with_loan_copies(copies))
}

fn random32(rng: &mut ChaCha20Rng) -> [u8; 32] {
    let mut out = [0u8; 32];
    rng.fill_bytes(&mut out);
    out
}

/// One user's day: buy, play (checking every outcome against the signed terms), renew, return,
/// move, and the attacks on their own licenses.
fn act(
    m: &mut Member,
    d: &Distributor<MemoryRegistry>,
    containers: &[(ContentId, Vec<u8>)],
    now: UnixTime,
    tally: &Tally,
    billed: &AtomicU64,
) -> Result<(), SimError> {
    let pick = |rng: &mut ChaCha20Rng| {
        containers
            .get(rng.next_u32() as usize % containers.len().max(1))
            .map(|(id, _)| *id)
    };
    // A restored state from before a return, once the loan has ended, must not play.
    if let Some((saved, content, end)) = m.saved_before_return.take() {
        if now >= end {
            if let Some((_, key, kept)) = m.devices.first() {
                let registration = Registration::from_bytes(kept)?;
                let mut restored = Client::load(key.clone(), registration, &saved)?;
                let refused = restored.play_at(content, now, &mut Vec::new()).is_err();
                tally.attack(RESTORED_AFTER_RETURN, refused);
            }
        } else {
            m.saved_before_return = Some((saved, content, end));
        }
    }
    let roll = m.rng.next_u32() % 100;
    let Some((client, _, _)) = m.devices.first_mut() else {
        return Ok(());
    };
    let held: Vec<ContentId> = client
        .licensed()
        .filter(|c| client.license_terms(*c).is_some())
        .collect();
    // Buy: a rental or a subscription; or wish for a loan (asked in order later).
    if held.len() < 3
        && let Some(content) = pick(&mut m.rng).filter(|c| client.license_id(*c).is_none())
    {
        // Downloaded again if a move took the container away.
        if !client.holds(content)
            && let Some((_, container)) = containers.iter().find(|(id, _)| *id == content)
        {
            client.store_content(container.clone())?;
        }
        let offer = match roll {
            0..=14 => Some(Offer::Rental),
            15..=24 => Some(Offer::Subscription),
            25..=39 => {
                m.wants_loan = Some(content);
                None
            }
            _ => None,
        };
        if let Some(offer) = offer {
            let request = client.license_request_for(content, offer, now);
            let license = d.supply_license(request.as_bytes())?;
            client.acquire_license(license.as_bytes())?;
            let (counter, price) = match offer {
                Offer::Rental => (RENTALS, RENTAL_PRICE),
                _ => (SUBSCRIPTIONS, SUBSCRIPTION_PRICE),
            };
            tally.add(counter);
            billed.fetch_add(price, Ordering::Relaxed);
        }
    }
    for content in held {
        let Some((terms, first_play)) = client.license_terms(content) else {
            continue;
        };
        let Some(license) = client.license_id(content) else {
            continue;
        };
        if m.expired.contains(&license) {
            continue;
        }
        let playable = terms.allows_play_at(now, first_play) && now >= client.trusted_time();
        match client.play_at(content, now, &mut Vec::new()) {
            Ok(_) => {
                tally.add(PLAYS);
                tally.check(NO_PLAY_OUTSIDE, playable);
                // The clock set back a day below what it just read.
                if m.rng.next_u32().is_multiple_of(20) {
                    let back = UnixTime(now.0.saturating_sub(DAY));
                    let refused = matches!(
                        client.play_at(content, back, &mut Vec::new()),
                        Err(Error::ClockSetBack { .. })
                    );
                    tally.attack(CLOCK_SET_BACK, refused);
                }
            }
            Err(Error::LicenseExpired(_)) => {
                tally.check(NO_PLAY_OUTSIDE, !playable);
                tally.add(EXPIRIES);
                m.expired.push(license);
                // Asked again, the ended license still does not play.
                let refused = client.play_at(content, now, &mut Vec::new()).is_err();
                tally.attack(PLAY_AFTER_EXPIRY, refused);
                // An ended subscription is renewed (its offer allows), others let go.
                if terms.offer() == Offer::Subscription && m.rng.next_u32().is_multiple_of(2) {
                    renew(client, d, content, RenewFrom::Now, now, tally, billed)?;
                }
            }
            Err(e) => return Err(e.into()),
        }
        let ends_soon =
            terms.not_after().0.saturating_sub(now.0) < 3 * DAY && now < terms.not_after();
        match terms.offer() {
            Offer::Subscription if ends_soon && !m.rng.next_u32().is_multiple_of(3) => {
                renew(client, d, content, RenewFrom::End, now, tally, billed)?;
            }
            Offer::Loan
                if ends_soon
                    && terms.renewable()
                    && terms.not_after() < terms.renew_until()
                    && m.rng.next_u32().is_multiple_of(2) =>
            {
                renew(client, d, content, RenewFrom::Now, now, tally, billed)?;
            }
            Offer::Loan if now < terms.not_after() && m.rng.next_u32().is_multiple_of(10) => {
                // Saved before the return, for the restore attack once the loan has ended.
                if m.saved_before_return.is_none() {
                    m.saved_before_return =
                        Some((client.save().to_vec(), content, terms.not_after()));
                }
                let (id, receipt) = client.return_license(content)?;
                let request = client.return_request(id, receipt, now);
                d.return_license(request.as_bytes())?;
                tally.add(RETURNS);
            }
            _ => {}
        }
    }
    // One in twenty users with two devices moves a subscription to the second, then asks the
    // first to renew it.
    if m.devices.len() == 2 && m.moved_away.is_none() && m.rng.next_u32().is_multiple_of(20) {
        move_and_attack(m, d, now, tally, billed)?;
    } else if let Some(moved) = m.moved_away
        && m.rng.next_u32().is_multiple_of(10)
        && let Some((client, key, _)) = m.devices.first()
    {
        let request =
            RenewalRequestTbs::new(moved, client.id(), m.rng.next_u64(), now, RenewFrom::End)
                .sign(key);
        let refused = matches!(
            d.renew_license(request.as_bytes()),
            Err(Error::LicenseMoved(_))
        );
        tally.attack(RENEW_FROM_MOVED, refused);
    }
    Ok(())
}

/// Renews `content`'s license on `client` and counts it; a refusal the offer explains (at its
/// limit, ended and not renewable) is not an error.
fn renew(
    client: &mut Client,
    d: &Distributor<MemoryRegistry>,
    content: ContentId,
    from: RenewFrom,
    now: UnixTime,
    tally: &Tally,
    billed: &AtomicU64,
) -> Result<(), SimError> {
    let request = client.renewal_request(content, from, now)?;
    match d.renew_license(request.as_bytes()) {
        Ok(license) => {
            client.acquire_license(license.as_bytes())?;
            tally.add(RENEWALS);
            if license
                .tbs()
                .terms
                .is_some_and(|t| t.offer() == Offer::Subscription)
            {
                billed.fetch_add(SUBSCRIPTION_PRICE, Ordering::Relaxed);
            }
            Ok(())
        }
        Err(Error::InvalidTerms(_) | Error::LicenseExpired(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Moves a subscription of the first device to the second, then has the first ask to renew it.
fn move_and_attack(
    m: &mut Member,
    d: &Distributor<MemoryRegistry>,
    now: UnixTime,
    tally: &Tally,
    billed: &AtomicU64,
) -> Result<(), SimError> {
    let [(a, a_key, _), (b, _, _)] = m.devices.as_mut_slice() else {
        return Ok(());
    };
    let Some(content) = a.licensed().find(|c| {
        a.license_terms(*c)
            .is_some_and(|(t, _)| t.offer() == Offer::Subscription && now < t.not_after())
    }) else {
        return Ok(());
    };
    let Some(license) = a.license_id(content) else {
        return Ok(());
    };
    if b.license_id(content).is_some() {
        return Ok(());
    }
    let request = a.move_request(license, b.id(), now);
    let certificate = d.supply_certificate(request.as_bytes())?;
    let package = a.move_out(certificate.as_bytes())?;
    b.move_in(&package, now)?;
    tally.add(MOVES);
    billed.fetch_add(
        d.tariff().price(ChargeKind::Certificate, content),
        Ordering::Relaxed,
    );
    m.moved_away = Some(license);
    let request =
        RenewalRequestTbs::new(license, a.id(), m.rng.next_u64(), now, RenewFrom::End).sign(a_key);
    let refused = matches!(
        d.renew_license(request.as_bytes()),
        Err(Error::LicenseMoved(_))
    );
    tally.attack(RENEW_FROM_MOVED, refused);
    let _ = m.user;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn a_small_lifecycle_passes() {
        let config = LifecycleConfig {
            users: 60,
            days: 40,
            contents: 3,
            copies: 2,
        };
        let report = run(&config, 1).unwrap();
        assert!(report.passed(), "{report:?}");
        assert!(report.rentals > 0 && report.subscriptions > 0 && report.loans > 0);
    }
}
