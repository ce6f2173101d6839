//! Loans with limits (issue 27, item 5), on every store.

use super::*;

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
