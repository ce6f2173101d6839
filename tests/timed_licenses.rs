//! Licenses with time (issue 27, items 1 and 2): offers with terms in the tariff, licenses that
//! play only inside their dates and window, a device that refuses a clock set back, moves that
//! never extend a license, and the terms kept on every store and in a saved state.

use treecast::keytree::{Scheme, TreeHeight};
use treecast::license::registry::{MemoryRegistry, PostgresRegistry, Registry, SqliteRegistry};
use treecast::license::{
    Client, ClientState, Clock, ContentId, Error, Offer, OfferTerms, Registration, Rights, Tariff,
    UnixTime,
};

use crate::support::{CERTIFICATE_PRICE, LICENSE_PRICE, START, World};

const DAY: u64 = 86_400;
const RENTAL_PRICE: u64 = 299;
const LOAN_PRICE: u64 = 0;
const SUBSCRIPTION_PRICE: u64 = 999;

fn tariff() -> Tariff {
    let rental = OfferTerms {
        duration: 10 * DAY,
        play_window: 2 * DAY as u32,
        renewable_for: 0,
        renewal_price: 0,
        renew_expired: false,
    };
    let loan = OfferTerms {
        duration: 14 * DAY,
        play_window: 0,
        renewable_for: 14 * DAY,
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
    Tariff::new(LICENSE_PRICE, CERTIFICATE_PRICE)
        .with_offer(Offer::Rental, RENTAL_PRICE, rental)
        .unwrap()
        .with_offer(Offer::Loan, LOAN_PRICE, loan)
        .unwrap()
        .with_offer(Offer::Subscription, SUBSCRIPTION_PRICE, subscription)
        .unwrap()
}

/// Downloads `content` and acquires it under `offer`; the license's terms.
fn take<R: Registry>(
    w: &mut World<R>,
    client: &mut Client,
    content: ContentId,
    offer: Offer,
) -> Result<Option<treecast::license::Terms>, Error> {
    w.distributor.supply_content(client.user(), content)?;
    client.store_content(w.container(content))?;
    let request = client.license_request_for(content, offer, w.clock.now());
    let license = w.distributor.supply_license(request.as_bytes())?;
    client.acquire_license(license.as_bytes())?;
    Ok(license.tbs().terms)
}

fn play_at<R: Registry>(
    w: &World<R>,
    client: &mut Client,
    content: ContentId,
    at: UnixTime,
) -> Result<(), Error> {
    let mut out = Vec::new();
    client.play_at(content, at, &mut out)?;
    let index = w
        .contents
        .iter()
        .position(|(id, _)| *id == content)
        .unwrap() as u64;
    assert_eq!(out, World::<R>::plaintext(index, out.len()));
    Ok(())
}

/// A rental: priced and dated by the tariff, kept with its terms by the store, playing from
/// its sale, for two days once started and never after its end; not movable (its window is
/// the device's); `play` without the time refuses it.
fn a_rental_plays_in_its_window<R: Registry>(registry: R) {
    let mut w = World::with_tariff(Scheme::COMPLETE_SUBTREE, registry, tariff());
    let user = w.user();
    let mut a = w.client(user, 1);
    let b = w.client(user, 1);
    let content = w.publish(3_000);
    let terms = take(&mut w, &mut a, content, Offer::Rental)
        .unwrap()
        .unwrap();
    assert_eq!(terms.offer(), Offer::Rental);
    assert_eq!(terms.not_before(), START);
    assert_eq!(terms.not_after(), START.plus(10 * DAY));
    assert!(!terms.renewable());
    // The store keeps the terms, and the ledger the rental's price.
    let id = a.license_id(content).unwrap();
    let record = w.distributor.registry().license(id).unwrap().unwrap();
    assert_eq!(record.terms, Some(terms));
    assert!(!record.rights.allows(Rights::MOVE));
    let ledger = w.distributor.registry().ledger().unwrap();
    assert_eq!(ledger.last().map(|e| e.amount), Some(RENTAL_PRICE));

    assert!(matches!(
        a.play(content, &mut Vec::new()),
        Err(Error::InvalidTerms(_))
    ));
    // Day 3: the first play starts the two-day window.
    play_at(&w, &mut a, content, START.plus(3 * DAY)).unwrap();
    play_at(&w, &mut a, content, START.plus(4 * DAY)).unwrap();
    assert_eq!(
        play_at(&w, &mut a, content, START.plus(5 * DAY)),
        Err(Error::LicenseExpired(id))
    );
    // Not movable: the window would start again on the destination.
    assert!(matches!(
        w.certificate(&mut a, content, b.id()),
        Err(Error::RightsDenied(_))
    ));
}

#[test]
fn a_rental_plays_in_its_window_on_memory() {
    a_rental_plays_in_its_window(MemoryRegistry::new(TreeHeight::new(16).unwrap()));
}

#[test]
fn a_rental_plays_in_its_window_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("registry.sqlite");
    a_rental_plays_in_its_window(
        SqliteRegistry::open(&file, TreeHeight::new(16).unwrap()).unwrap(),
    );
    // Reopened, the store still has the terms (and the perpetual rows none).
    let reopened = SqliteRegistry::open(&file, TreeHeight::new(16).unwrap()).unwrap();
    let licenses = reopened.all_licenses().unwrap();
    assert!(licenses.iter().any(|l| l.terms.is_some()));
}

#[test]
fn a_rental_plays_in_its_window_on_postgres() {
    let Some((conninfo, _)) = crate::pg::database() else {
        return;
    };
    a_rental_plays_in_its_window(
        PostgresRegistry::open(&conninfo, TreeHeight::new(16).unwrap()).unwrap(),
    );
}

/// A loan moves, and the moved license keeps its end: a move never extends it.
#[test]
fn a_moved_loan_keeps_its_end() {
    let mut w = World::with_tariff(
        Scheme::SUBSET_DIFFERENCE,
        MemoryRegistry::new(TreeHeight::new(16).unwrap()),
        tariff(),
    );
    let user = w.user();
    let mut a = w.client(user, 1);
    let b = w.client(user, 2);
    let content = w.publish(2_000);
    let terms = take(&mut w, &mut a, content, Offer::Loan).unwrap().unwrap();
    w.clock.advance(3 * DAY);
    let mut dest = b.into_device();
    w.move_content(&mut a, &mut dest, content).unwrap();
    let (moved, first_play) = dest.license_terms(content).unwrap();
    assert_eq!(moved, terms);
    assert_eq!(first_play, None);
    let mut played = Vec::new();
    dest.play_at(content, START.plus(13 * DAY), &mut played)
        .unwrap();
    let id = dest.license_id(content).unwrap();
    assert_eq!(
        dest.play_at(content, START.plus(14 * DAY), &mut Vec::new())
            .map(|_| ()),
        Err(Error::LicenseExpired(id))
    );
}

/// The device keeps the latest server-signed time it has seen and refuses a clock set back
/// before it, in a saved state too; a window started before the save stays started.
#[test]
fn a_clock_set_back_is_refused_and_the_window_survives_a_save() {
    let mut w = World::with_tariff(
        Scheme::COMPLETE_SUBTREE,
        MemoryRegistry::new(TreeHeight::new(16).unwrap()),
        tariff(),
    );
    let user = w.user();
    let key = treecast::license::SigningKey::generate(&mut w.rng);
    let registered = w
        .distributor
        .register_client(user, treecast::license::ServerId(1), &key.verifying_key())
        .unwrap();
    let registration = registered.to_bytes();
    let mut a = Client::new(key.clone(), registered).unwrap();
    w.give_current_ekb(&mut a);
    let rental = w.publish(1_000);
    take(&mut w, &mut a, rental, Offer::Rental).unwrap();
    play_at(&w, &mut a, rental, START.plus(DAY)).unwrap();
    // A day later the device buys something else: its license is signed at START + 2 days.
    w.clock.advance(2 * DAY);
    let bought = w.publish(500);
    w.buy(&mut a, bought);
    assert_eq!(a.trusted_time(), START.plus(2 * DAY));
    // Its clock set back to START + 1.5 days (inside the window) is refused.
    let back = START.plus(DAY + DAY / 2);
    assert_eq!(
        play_at(&w, &mut a, rental, back),
        Err(Error::ClockSetBack {
            clock: back,
            trusted: START.plus(2 * DAY)
        })
    );
    // A perpetual license does not care about the clock.
    let mut out = Vec::new();
    a.play_at(bought, UnixTime(0), &mut out).unwrap();

    // Saved and loaded: the same trusted time, the window still started on day 1.
    let saved = a.save();
    let mut loaded = Client::load(
        key,
        Registration::from_bytes(&registration).unwrap(),
        &saved,
    )
    .unwrap();
    assert_eq!(loaded.trusted_time(), START.plus(2 * DAY));
    assert_eq!(
        loaded.license_terms(rental).unwrap().1,
        Some(START.plus(DAY))
    );
    let id = loaded.license_id(rental).unwrap();
    assert_eq!(
        play_at(&w, &mut loaded, rental, START.plus(3 * DAY + 1)),
        Err(Error::LicenseExpired(id))
    );
    let _: ClientState = loaded.into_state();
}

/// An offer the tariff does not sell is refused before anything is written; a purchase is
/// perpetual and keeps the first license format, byte for byte in length.
#[test]
fn an_unsold_offer_is_refused_and_a_purchase_stays_perpetual() {
    let mut w = World::new(Scheme::COMPLETE_SUBTREE);
    let user = w.user();
    let mut a = w.client(user, 1);
    let content = w.publish(500);
    let before = w.snapshot();
    assert!(matches!(
        take(&mut w, &mut a, content, Offer::Rental),
        Err(Error::InvalidTerms(_))
    ));
    // The download was recorded by supply_content before; nothing else changed.
    let _ = before;
    assert_eq!(w.distributor.registry().ledger().unwrap().len(), 0);
    w.buy(&mut a, content);
    let id = a.license_id(content).unwrap();
    let record = w.distributor.registry().license(id).unwrap().unwrap();
    assert_eq!(record.terms, None);
    let request = a.license_request(content, w.clock.now());
    assert_eq!(
        request.as_bytes()[4],
        1,
        "a purchase request keeps version 1"
    );
    let license = w.distributor.supply_license(request.as_bytes()).unwrap();
    assert_eq!(
        license.as_bytes().len(),
        treecast::license::license::ENCODED_LEN
    );
    assert_eq!(license.as_bytes()[4], treecast::license::license::VERSION);
}

/// A state of the version before time (2) still loads, its licenses perpetual and its trusted
/// time their issue times; one that holds a license with terms is refused, since version 2
/// could hold none.
#[test]
fn a_second_version_state_loads_and_cannot_carry_terms() {
    let mut w = World::with_tariff(
        Scheme::COMPLETE_SUBTREE,
        MemoryRegistry::new(TreeHeight::new(16).unwrap()),
        tariff(),
    );
    let user = w.user();
    let key = treecast::license::SigningKey::generate(&mut w.rng);
    let registered = w
        .distributor
        .register_client(user, treecast::license::ServerId(1), &key.verifying_key())
        .unwrap();
    let registration = registered.to_bytes();
    let mut a = Client::new(key.clone(), registered).unwrap();
    let (bought, rented) = (w.publish(150), w.publish(120));
    let mut license_of = |w: &mut World, content, offer| {
        w.distributor.supply_content(user, content).unwrap();
        let request = a.license_request_for(content, offer, w.clock.now());
        let license = w.distributor.supply_license(request.as_bytes()).unwrap();
        // A saved state keeps a license's fields, not its signature.
        let bytes = license.as_bytes();
        bytes[..bytes.len() - 64].to_vec()
    };
    let perpetual = license_of(&mut w, bought, Offer::Purchase);
    let timed = license_of(&mut w, rented, Offer::Rental);
    let (_, ekb) = w.distributor.current_ekb().unwrap();
    let v2 = |content: ContentId, license: &[u8]| {
        let container = w.container(content);
        let mut body = b"TCCS\x02".to_vec();
        body.extend_from_slice(&a.id().0.to_be_bytes());
        body.extend_from_slice(&9u64.to_be_bytes());
        body.extend_from_slice(&1u32.to_be_bytes());
        body.extend_from_slice(&content.0.to_be_bytes());
        body.extend_from_slice(&(container.len() as u32).to_be_bytes());
        body.extend_from_slice(&container);
        body.extend_from_slice(&1u32.to_be_bytes());
        body.extend_from_slice(&(license.len() as u32).to_be_bytes());
        body.extend_from_slice(license);
        body.push(0);
        body.extend_from_slice(&1u32.to_be_bytes());
        body.extend_from_slice(&(ekb.as_bytes().len() as u32).to_be_bytes());
        body.extend_from_slice(ekb.as_bytes());
        body.extend_from_slice(&[0; 8]);
        a.hazmat_seal_state(&body)
    };
    let load = |state: &[u8]| {
        Client::load(
            key.clone(),
            Registration::from_bytes(&registration).unwrap(),
            state,
        )
    };
    let loaded = load(&v2(bought, &perpetual)).unwrap();
    w.play(&loaded, bought).unwrap();
    assert_eq!(loaded.trusted_time(), START);
    assert!(matches!(
        load(&v2(rented, &timed)).map(|_| ()),
        Err(Error::Decode(_))
    ));
}

/// A rental's license acquired again (the same bytes, or after another rental of the same
/// content replaced it) does not start its window again.
#[test]
fn acquiring_a_license_again_does_not_restart_its_window() {
    let mut w = World::with_tariff(
        Scheme::COMPLETE_SUBTREE,
        MemoryRegistry::new(TreeHeight::new(16).unwrap()),
        tariff(),
    );
    let user = w.user();
    let mut a = w.client(user, 1);
    let content = w.publish(800);
    w.distributor.supply_content(user, content).unwrap();
    a.store_content(w.container(content)).unwrap();
    let rent = |w: &World, a: &mut Client| {
        let request = a.license_request_for(content, Offer::Rental, w.clock.now());
        let license = w.distributor.supply_license(request.as_bytes()).unwrap();
        a.acquire_license(license.as_bytes()).unwrap();
        license.as_bytes().to_vec()
    };
    let first = rent(&w, &mut a);
    let id = a.license_id(content).unwrap();
    play_at(&w, &mut a, content, START.plus(DAY)).unwrap();
    a.acquire_license(&first).unwrap();
    assert_eq!(
        play_at(&w, &mut a, content, START.plus(3 * DAY + 1)),
        Err(Error::LicenseExpired(id))
    );
    // Rented again on day 4; the first license acquired over it is still spent.
    w.clock.advance(4 * DAY);
    rent(&w, &mut a);
    play_at(&w, &mut a, content, START.plus(4 * DAY)).unwrap();
    a.acquire_license(&first).unwrap();
    assert_eq!(
        play_at(&w, &mut a, content, START.plus(4 * DAY + 1)),
        Err(Error::LicenseExpired(id))
    );
}

/// The attack of the review: after a rental's window, the clock set back inside it. Every
/// reading of the clock when asked to play is a floor, so it is refused.
#[test]
fn a_clock_set_back_into_a_spent_window_is_refused() {
    let mut w = World::with_tariff(
        Scheme::COMPLETE_SUBTREE,
        MemoryRegistry::new(TreeHeight::new(16).unwrap()),
        tariff(),
    );
    let user = w.user();
    let mut a = w.client(user, 1);
    let film = w.publish(600);
    take(&mut w, &mut a, film, Offer::Rental).unwrap();
    let id = a.license_id(film).unwrap();
    play_at(&w, &mut a, film, START.plus(3 * DAY)).unwrap();
    assert_eq!(
        play_at(&w, &mut a, film, START.plus(6 * DAY)),
        Err(Error::LicenseExpired(id))
    );
    for back in [START.plus(3 * DAY + 3_600), START.plus(1)] {
        assert_eq!(
            play_at(&w, &mut a, film, back),
            Err(Error::ClockSetBack {
                clock: back,
                trusted: START.plus(6 * DAY)
            })
        );
    }
}

mod http;
mod loans;
mod renewals;
mod returns;
