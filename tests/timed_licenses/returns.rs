//! Returns (issue 27, item 4) and the status document (item 6), on every store.

use super::*;

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
        &w.distributor
            .authority()
            .unwrap()
            .device_key(b.device_keys().leaf()),
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
