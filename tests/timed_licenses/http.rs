//! Renewals, returns, loans and the status document over real HTTP (issue 27).

use super::*;

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
