//! Renewals (issue 27, item 3), on every store.

use super::*;

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
