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

/// Renewals (item 3): from the end and from now, up to the limit, billed at the offer's price,
/// the same request answered again and billed once; only the device that holds the license
/// renews it (not another device of the user, not another user's, not the device it moved
/// away from); a perpetual license, a license at its limit and an ended loan are refused and
/// change nothing.
fn renewals_extend_and_only_for_the_holder<R: Registry>(registry: R) {
    use treecast::license::ChargeKind;
    use treecast::license::RenewFrom;
    use treecast::license::renewal::RenewalRequestTbs;
    use treecast::license::sign::Signable;

    let mut w = World::with_tariff(Scheme::SUBSET_DIFFERENCE, registry, tariff());
    let user = w.user();
    let (mut a, a_key) = w.client_with_key(user, 1);
    let (b, b_key) = w.client_with_key(user, 2);
    let other = w.user();
    let (c, c_key) = w.client_with_key(other, 1);
    let (series, book, film) = (w.publish(900), w.publish(700), w.publish(500));
    let sub = take(&mut w, &mut a, series, Offer::Subscription)
        .unwrap()
        .unwrap();
    assert_eq!(sub.not_after(), START.plus(30 * DAY));
    let sub_id = a.license_id(series).unwrap();

    // Day 10, from the end: 30 more days, billed, issued now; the device plays on day 50.
    w.clock.advance(10 * DAY);
    let request = a
        .renewal_request(series, RenewFrom::End, w.clock.now())
        .unwrap();
    let renewed = w.distributor.renew_license(request.as_bytes()).unwrap();
    let terms = renewed.tbs().terms.unwrap();
    assert_eq!(terms.not_after(), START.plus(60 * DAY));
    assert_eq!(renewed.tbs().issued_at, START.plus(10 * DAY));
    a.acquire_license(renewed.as_bytes()).unwrap();
    play_at(&w, &mut a, series, START.plus(50 * DAY)).unwrap();
    let entry = *w.distributor.registry().ledger().unwrap().last().unwrap();
    assert_eq!(
        (entry.kind, entry.amount, entry.reference),
        (ChargeKind::Renewal, SUBSCRIPTION_PRICE, sub_id.0)
    );
    // The same request again: the same license, billed once.
    let ledger = w.distributor.registry().ledger().unwrap().len();
    let again = w.distributor.renew_license(request.as_bytes()).unwrap();
    assert_eq!(again.tbs(), renewed.tbs());
    assert_eq!(w.distributor.registry().ledger().unwrap().len(), ledger);

    // A loan, from now, up to its limit (14 days beyond its first end).
    let loan = take(&mut w, &mut a, book, Offer::Loan).unwrap().unwrap();
    assert_eq!(loan.renew_until(), START.plus(38 * DAY));
    w.clock.advance(10 * DAY);
    let request = a
        .renewal_request(book, RenewFrom::Now, w.clock.now())
        .unwrap();
    let renewed = w.distributor.renew_license(request.as_bytes()).unwrap();
    assert_eq!(
        renewed.tbs().terms.unwrap().not_after(),
        START.plus(34 * DAY)
    );
    a.acquire_license(renewed.as_bytes()).unwrap();
    w.clock.advance(5 * DAY);
    let request = a
        .renewal_request(book, RenewFrom::Now, w.clock.now())
        .unwrap();
    let renewed = w.distributor.renew_license(request.as_bytes()).unwrap();
    assert_eq!(
        renewed.tbs().terms.unwrap().not_after(),
        START.plus(38 * DAY)
    );
    a.acquire_license(renewed.as_bytes()).unwrap();

    let before = w.snapshot();
    let book_id = a.license_id(book).unwrap();
    // At its limit: nothing to extend.
    let request = a
        .renewal_request(book, RenewFrom::Now, w.clock.now())
        .unwrap();
    assert!(matches!(
        w.distributor.renew_license(request.as_bytes()),
        Err(Error::InvalidTerms(_))
    ));
    // Another device of the user, signing for a's license; another user's device.
    let request =
        RenewalRequestTbs::new(book_id, b.id(), 1_000, w.clock.now(), RenewFrom::End).sign(&b_key);
    assert_eq!(
        w.distributor.renew_license(request.as_bytes()).map(|_| ()),
        Err(Error::LicenseNotHeld(book_id))
    );
    let request =
        RenewalRequestTbs::new(book_id, c.id(), 1_000, w.clock.now(), RenewFrom::End).sign(&c_key);
    assert_eq!(
        w.distributor.renew_license(request.as_bytes()).map(|_| ()),
        Err(Error::LicenseNotFound(book_id))
    );
    // A perpetual license has nothing to renew.
    w.buy(&mut a, film);
    let before_film = w.snapshot();
    let request = a
        .renewal_request(film, RenewFrom::End, w.clock.now())
        .unwrap();
    assert!(matches!(
        w.distributor.renew_license(request.as_bytes()),
        Err(Error::InvalidTerms(_))
    ));
    assert_eq!(w.snapshot(), before_film);
    let _ = before;

    // The subscription moves to b: a can no longer renew it, b can (its license is bound to
    // the move's release, derived again), and b plays it.
    let mut dest = b.into_device();
    w.move_content(&mut a, &mut dest, series).unwrap();
    let request =
        RenewalRequestTbs::new(sub_id, a.id(), 2_000, w.clock.now(), RenewFrom::End).sign(&a_key);
    assert_eq!(
        w.distributor.renew_license(request.as_bytes()).map(|_| ()),
        Err(Error::LicenseMoved(sub_id))
    );
    let moved_id = dest.license_id(series).unwrap();
    let request = RenewalRequestTbs::new(moved_id, dest.id(), 3_000, w.clock.now(), RenewFrom::End)
        .sign(&b_key);
    let renewed = w.distributor.renew_license(request.as_bytes()).unwrap();
    assert_eq!(
        renewed.tbs().terms.unwrap().not_after(),
        START.plus(90 * DAY)
    );
    dest.acquire_license(renewed.as_bytes()).unwrap();
    let mut out = Vec::new();
    dest.play_at(series, START.plus(80 * DAY), &mut out)
        .unwrap();

    // An ended loan is not renewed (its offer says so).
    w.clock.set(START.plus(39 * DAY));
    let request = a
        .renewal_request(book, RenewFrom::Now, w.clock.now())
        .unwrap();
    assert_eq!(
        w.distributor.renew_license(request.as_bytes()).map(|_| ()),
        Err(Error::LicenseExpired(book_id))
    );
    // The moved subscription, ended on day 90, renewed from now on day 91 (its offer allows).
    w.clock.set(START.plus(91 * DAY));
    let request = RenewalRequestTbs::new(moved_id, dest.id(), 4_000, w.clock.now(), RenewFrom::Now)
        .sign(&b_key);
    let renewed = w.distributor.renew_license(request.as_bytes()).unwrap();
    assert_eq!(
        renewed.tbs().terms.unwrap().not_after(),
        START.plus(121 * DAY)
    );
    // The audit finds every renewal billed for a license with terms.
    assert!(w.distributor.check_stored_rows(10).unwrap().is_empty());
}

#[test]
fn renewals_extend_and_only_for_the_holder_on_memory() {
    renewals_extend_and_only_for_the_holder(MemoryRegistry::new(TreeHeight::new(16).unwrap()));
}

#[test]
fn renewals_extend_and_only_for_the_holder_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("registry.sqlite");
    renewals_extend_and_only_for_the_holder(
        SqliteRegistry::open(&file, TreeHeight::new(16).unwrap()).unwrap(),
    );
}

#[test]
fn renewals_extend_and_only_for_the_holder_on_postgres() {
    let Some((conninfo, _)) = crate::pg::database() else {
        return;
    };
    renewals_extend_and_only_for_the_holder(
        PostgresRegistry::open(&conninfo, TreeHeight::new(16).unwrap()).unwrap(),
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

/// Returns (item 4): the device deletes the loan first and proves it with a receipt only its
/// key yields; the store marks it returned, bills nothing; the license never comes back on the
/// device and cannot be renewed; the same request is answered again; a receipt that is not the
/// device's, a purchase, another device's request are refused and change nothing.
fn returns_delete_first_and_prove_it<R: Registry>(registry: R) {
    use treecast::license::giveback::{ReturnReceipt, ReturnRequestTbs};
    use treecast::license::sign::Signable;
    use treecast::license::{LicenseStatus, RenewFrom};

    let mut w = World::with_tariff(Scheme::COMPLETE_SUBTREE, registry, tariff());
    let user = w.user();
    let (mut a, a_key) = w.client_with_key(user, 1);
    let (b, b_key) = w.client_with_key(user, 1);
    let other_user = w.user();
    let (book, film) = (w.publish(700), w.publish(500));
    w.distributor.supply_content(user, book).unwrap();
    a.store_content(w.container(book)).unwrap();
    let request = a.license_request_for(book, Offer::Loan, w.clock.now());
    let loan_bytes = w
        .distributor
        .supply_license(request.as_bytes())
        .unwrap()
        .as_bytes()
        .to_vec();
    a.acquire_license(&loan_bytes).unwrap();
    let loan = a.license_id(book).unwrap();
    w.buy(&mut a, film);
    let ledger = w.distributor.registry().ledger().unwrap().len();

    // A purchase is not returned.
    assert!(matches!(
        a.return_license(film),
        Err(Error::InvalidTerms(_))
    ));
    // Another device of the user cannot return a's loan, even with a receipt of its own.
    let receipt = ReturnReceipt::derive(
        &w.distributor.authority().device_key(b.device_keys().leaf()),
        loan,
        b.id(),
    )
    .unwrap();
    let request = ReturnRequestTbs::new(loan, b.id(), 5_000, w.clock.now(), receipt).sign(&b_key);
    let before = w.snapshot();
    assert_eq!(
        w.distributor.return_license(request.as_bytes()),
        Err(Error::LicenseNotHeld(loan))
    );
    assert_eq!(w.snapshot(), before);

    // a returns it: deleted first.
    w.clock.advance(DAY);
    let (id, receipt) = a.return_license(book).unwrap();
    assert_eq!(id, loan);
    assert!(matches!(
        a.play_at(book, w.clock.now(), &mut Vec::new()),
        Err(Error::NoLicense(_))
    ));
    // A receipt that is not a's device key's is refused.
    let forged = ReturnReceipt::derive(
        &treecast::keytree::DeviceKey::from_bytes([1; 16]),
        loan,
        a.id(),
    )
    .unwrap();
    let request = a.return_request(loan, forged, w.clock.now());
    assert_eq!(
        w.distributor.return_license(request.as_bytes()),
        Err(Error::NotReleased)
    );
    assert_eq!(w.snapshot(), before);
    let request = a.return_request(loan, receipt.clone(), w.clock.now());
    w.distributor.return_license(request.as_bytes()).unwrap();
    // Answered again; one event in the ledger, at 0.
    w.distributor.return_license(request.as_bytes()).unwrap();
    let entries = w.distributor.registry().ledger().unwrap();
    assert_eq!(entries.len(), ledger + 1);
    let event = entries.last().unwrap();
    assert_eq!(
        (event.kind, event.amount, event.reference),
        (treecast::license::ChargeKind::Return, 0, loan.0)
    );
    let (_, status) = w.distributor.license_state(user, loan).unwrap();
    assert_eq!(status, LicenseStatus::Returned);
    // Its status document (item 6), from this store's rows: returned, issued then returned.
    let document = w.distributor.status_document(user, loan).unwrap();
    assert_eq!(document.status, LicenseStatus::Returned);
    let kinds: Vec<_> = document.events.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, ["register", "return"]);
    assert!(document.events.iter().all(|e| e.device == a.id()));
    assert_eq!(
        w.distributor.status_document(other_user, loan).map(|_| ()),
        Err(Error::LicenseNotFound(loan))
    );
    assert_eq!(a.return_receipt(loan), Some(receipt));

    // The license never comes back: not on the device, not by renewal.
    assert_eq!(
        a.acquire_license(&loan_bytes),
        Err(Error::LicenseMoved(loan))
    );
    assert!(
        a.renewal_request(book, RenewFrom::Now, w.clock.now())
            .is_err()
    );
    let request = treecast::license::renewal::RenewalRequestTbs::new(
        loan,
        a.id(),
        6_000,
        w.clock.now(),
        RenewFrom::Now,
    )
    .sign(&a_key);
    assert_eq!(
        w.distributor.renew_license(request.as_bytes()).map(|_| ()),
        Err(Error::LicenseMoved(loan))
    );
    // The audit passes.
    assert!(w.distributor.check_stored_rows(10).unwrap().is_empty());
}

#[test]
fn returns_delete_first_and_prove_it_on_memory() {
    returns_delete_first_and_prove_it(MemoryRegistry::new(TreeHeight::new(16).unwrap()));
}

#[test]
fn returns_delete_first_and_prove_it_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("registry.sqlite");
    returns_delete_first_and_prove_it(
        SqliteRegistry::open(&file, TreeHeight::new(16).unwrap()).unwrap(),
    );
}

#[test]
fn returns_delete_first_and_prove_it_on_postgres() {
    let Some((conninfo, _)) = crate::pg::database() else {
        return;
    };
    returns_delete_first_and_prove_it(
        PostgresRegistry::open(&conninfo, TreeHeight::new(16).unwrap()).unwrap(),
    );
}

/// Loans with limits (item 5): with two copies, of six devices asking at once exactly two
/// borrow, the others are told every copy is on loan and nothing of theirs is written; a
/// return frees a copy, and so does a loan's end.
fn loans_never_exceed_their_copies<R: Registry + Sync>(registry: R) {
    let copies = 2;
    let mut w = World::with_tariff(
        Scheme::COMPLETE_SUBTREE,
        registry,
        tariff().with_loan_copies(copies),
    );
    let book = w.publish(400);
    let mut devices = Vec::new();
    for _ in 0..2 {
        let user = w.user();
        for _ in 0..3 {
            let mut c = w.client(user, 1);
            w.distributor.supply_content(user, book).unwrap();
            c.store_content(w.container(book)).unwrap();
            devices.push(c);
        }
    }
    let requests: Vec<_> = devices
        .iter_mut()
        .map(|c| c.license_request_for(book, Offer::Loan, w.clock.now()))
        .collect();
    let distributor = &w.distributor;
    let answers: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = requests
            .iter()
            .map(|r| s.spawn(move || distributor.supply_license(r.as_bytes())))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let lent = answers.iter().filter(|a| a.is_ok()).count();
    assert_eq!(lent, copies as usize, "{answers:?}");
    assert!(
        answers
            .iter()
            .filter_map(|a| a.as_ref().err())
            .all(|e| *e == Error::NoCopyAvailable(book))
    );
    assert_eq!(
        distributor.registry().ledger().unwrap().len(),
        copies as usize
    );
    // A borrower returns its copy; another device borrows it.
    let (borrower, license) = answers
        .iter()
        .position(|a| a.is_ok())
        .map(|i| (i, answers[i].as_ref().unwrap().clone()))
        .unwrap();
    devices[borrower]
        .acquire_license(license.as_bytes())
        .unwrap();
    let (id, receipt) = devices[borrower].return_license(book).unwrap();
    let request = devices[borrower].return_request(id, receipt, w.clock.now());
    distributor.return_license(request.as_bytes()).unwrap();
    let waiting = answers.iter().position(|a| a.is_err()).unwrap();
    let request = devices[waiting].license_request_for(book, Offer::Loan, w.clock.now());
    distributor.supply_license(request.as_bytes()).unwrap();
    let next = answers
        .iter()
        .enumerate()
        .position(|(i, a)| a.is_err() && i != waiting)
        .unwrap();
    let request = devices[next].license_request_for(book, Offer::Loan, w.clock.now());
    assert_eq!(
        distributor.supply_license(request.as_bytes()).map(|_| ()),
        Err(Error::NoCopyAvailable(book))
    );
    // Once the loans have ended (14 days), their copies are free again.
    w.clock.advance(15 * DAY);
    let request = devices[next].license_request_for(book, Offer::Loan, w.clock.now());
    w.distributor.supply_license(request.as_bytes()).unwrap();
    assert!(w.distributor.check_stored_rows(10).unwrap().is_empty());
}

#[test]
fn loans_never_exceed_their_copies_on_memory() {
    loans_never_exceed_their_copies(MemoryRegistry::new(TreeHeight::new(16).unwrap()));
}

#[test]
fn loans_never_exceed_their_copies_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("registry.sqlite");
    loans_never_exceed_their_copies(
        SqliteRegistry::open(&file, TreeHeight::new(16).unwrap()).unwrap(),
    );
}

#[test]
fn loans_never_exceed_their_copies_on_postgres() {
    let Some((conninfo, _)) = crate::pg::database() else {
        return;
    };
    loans_never_exceed_their_copies(
        PostgresRegistry::open(&conninfo, TreeHeight::new(16).unwrap()).unwrap(),
    );
}

/// The same over real HTTP (`treecast serve`'s server on a socket, the device's
/// `HttpTransport`): a loan bought, renewed, described by its status document with its events
/// and links, returned, and the attacks refused with their codes: a renewal from the device it
/// moved away from... (here: another device of the user), a return without the device's
/// receipt, a loan beyond the copies.
#[test]
fn renewals_returns_and_the_status_document_over_http() {
    use std::sync::Arc;

    use treecast::license::credential::UserCredential;
    use treecast::license::renewal::RenewalRequestTbs;
    use treecast::license::sign::Signable;
    use treecast::license::transport::{HttpTransport, Transport};
    use treecast::license::{RenewFrom, ReturnReceipt};

    let registry: Box<dyn Registry> = Box::new(MemoryRegistry::new(TreeHeight::new(16).unwrap()));
    let mut w = World::with_tariff(
        Scheme::COMPLETE_SUBTREE,
        registry,
        tariff().with_loan_copies(1),
    );
    let user = w.user();
    let credential: UserCredential = w.distributor.user_credential(user).unwrap();
    let (mut a, a_key) = w.client_with_key(user, 1);
    let (mut b, b_key) = w.client_with_key(user, 1);
    let book = w.publish(900);
    w.distributor.supply_content(user, book).unwrap();
    a.store_content(w.container(book)).unwrap();
    b.store_content(w.container(book)).unwrap();
    let clock = Arc::clone(&w.clock);
    let dir = tempfile::tempdir().unwrap();
    let World {
        distributor, rng, ..
    } = w;
    let service = treecast_server::Service::new(
        distributor,
        treecast_server::ContentDir::open(dir.path()).unwrap(),
        treecast_server::AdminToken::new("0123456789abcdef0123456789abcdef-admin").unwrap(),
        rng,
    );
    let limits = treecast_server::Limits::default();
    let app = treecast_server::router(Arc::new(service), &limits);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = runtime.spawn(async move {
        let limits = treecast_server::Limits::default();
        treecast_server::serve(listener, app, &limits, async {
            let _ = stopped.await;
        })
        .await
    });
    let http = HttpTransport::new(&base);

    let request = a.license_request_for(book, Offer::Loan, clock.now());
    let loan = http.license(request.as_bytes()).unwrap();
    a.acquire_license(&loan).unwrap();
    let id = a.license_id(book).unwrap();
    // One copy: b waits.
    let request = b.license_request_for(book, Offer::Loan, clock.now());
    assert_eq!(
        http.license(request.as_bytes()).map(|_| ()),
        Err(Error::Service {
            status: 409,
            code: "no_copy_available".into(),
            message: format!("every copy of {book} is on loan"),
        })
    );
    // Renewed from now, ten days in.
    clock.advance(10 * DAY);
    let request = a
        .renewal_request(book, RenewFrom::Now, clock.now())
        .unwrap();
    let renewed = http.renew(request.as_bytes()).unwrap();
    a.acquire_license(&renewed).unwrap();
    assert_eq!(
        a.license_terms(book).unwrap().0.not_after(),
        START.plus(24 * DAY)
    );
    // b signs a renewal of a's loan: refused.
    let request = RenewalRequestTbs::new(id, b.id(), 77, clock.now(), RenewFrom::End).sign(&b_key);
    assert!(matches!(
        http.renew(request.as_bytes()),
        Err(Error::Service { status: 403, .. })
    ));
    // The status document: active, a loan, its rights, register then renew, the links.
    let document: serde_json::Value =
        serde_json::from_str(&http.status_document(user, &credential, id).unwrap()).unwrap();
    assert_eq!(document["status"], "active");
    assert_eq!(document["offer"], "loan");
    assert_eq!(document["rights"]["end"], START.plus(24 * DAY).0);
    let kinds: Vec<_> = document["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["register", "renew"]);
    assert_eq!(document["links"][0]["rel"], "renew");
    // A return without a's receipt is refused; with it, 204, and the document says returned.
    let (id, receipt) = a.return_license(book).unwrap();
    let forged = ReturnReceipt::derive(
        &treecast::keytree::DeviceKey::from_bytes([9; 16]),
        id,
        a.id(),
    )
    .unwrap();
    let request = a.return_request(id, forged, clock.now());
    assert_eq!(http.give_back(request.as_bytes()), Err(Error::NotReleased));
    let request = a.return_request(id, receipt, clock.now());
    http.give_back(request.as_bytes()).unwrap();
    let document: serde_json::Value =
        serde_json::from_str(&http.status_document(user, &credential, id).unwrap()).unwrap();
    assert_eq!(document["status"], "returned");
    assert_eq!(document["events"][2]["type"], "return");
    // The device that gave the license up cannot renew it: 409 license_moved.
    let request = RenewalRequestTbs::new(id, a.id(), 78, clock.now(), RenewFrom::End).sign(&a_key);
    assert!(matches!(
        http.renew(request.as_bytes()),
        Err(Error::Service { status: 409, ref code, .. }) if code == "license_moved"
    ));
    // The copy is free: b borrows it.
    let request = b.license_request_for(book, Offer::Loan, clock.now());
    b.acquire_license(&http.license(request.as_bytes()).unwrap())
        .unwrap();
    let _ = stop.send(());
    runtime.block_on(server).unwrap().unwrap();
}
