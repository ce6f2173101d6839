//! Retries are safe (issue 15, item 3): the same signed request sent again is answered with
//! the same bytes and billed once, so a client that lost an answer asks again; another request
//! that reuses a nonce is refused.

use treecast::keytree::Scheme;
use treecast::license::certificate::{LicenseRequestTbs, MoveRequestTbs};
use treecast::license::sign::Signable;
use treecast::license::{Clock, Error, Registry};

#[test]
fn a_license_request_sent_again_gets_the_same_license_billed_once() {
    let Some(mut w) = super::world(Scheme::COMPLETE_SUBTREE) else {
        return;
    };
    let user = w.user();
    let (mut client, key) = w.client_with_key(user, 1);
    let content = w.publish(100);
    client.store_content(w.container(content)).unwrap();
    let request = client.license_request(content, w.clock.now());
    let first = w.distributor.supply_license(request.as_bytes()).unwrap();
    // The answer was lost; the same bytes again.
    let again = w.distributor.supply_license(request.as_bytes()).unwrap();
    assert_eq!(first.as_bytes(), again.as_bytes());
    assert_eq!(w.distributor.registry().licenses_of_user(user).unwrap().len(), 1);
    assert_eq!(w.distributor.registry().ledger().unwrap().len(), 1);
    client.acquire_license(again.as_bytes()).unwrap();
    w.play(&client, content).unwrap();

    // Another request with the nonce of the first (signed by the client's own key).
    let other = w.publish(100);
    let nonce = 1;
    let reused = LicenseRequestTbs::new(client.id(), other, nonce, w.clock.now()).sign(&key);
    assert_eq!(
        w.distributor.supply_license(reused.as_bytes()).err(),
        Some(Error::RequestReplayed)
    );
    assert_eq!(w.distributor.registry().ledger().unwrap().len(), 1);
}

#[test]
fn a_move_request_sent_again_gets_the_same_certificate_and_the_move_completes() {
    let Some(mut w) = super::world(Scheme::COMPLETE_SUBTREE) else {
        return;
    };
    let user = w.user();
    let (mut a, key) = w.client_with_key(user, 1);
    let mut b = w.client(user, 2);
    let content = w.publish(100);
    w.buy(&mut a, content);
    let license = a.license_id(content).unwrap();
    let request = a.move_request(license, b.id(), w.clock.now());
    let first = w.distributor.supply_certificate(request.as_bytes()).unwrap();
    // The certificate was lost on its way to the source: it asks again.
    let again = w
        .distributor
        .supply_certificate(request.as_bytes())
        .unwrap();
    assert_eq!(first.as_bytes(), again.as_bytes());
    assert_eq!(w.distributor.registry().certificate_history().unwrap().len(), 1);
    assert_eq!(w.distributor.registry().ledger().unwrap().len(), 2, "one license, one certificate");
    let package = a.move_out(again.as_bytes()).unwrap();
    b.store_content(w.container(content)).unwrap();
    b.move_in(&package, w.clock.now()).unwrap();
    w.play(&b, content).unwrap();
    assert!(w.play(&a, content).is_err());

    // Another request reusing the nonce, or a new one for the moved license: refused.
    let c = w.client(user, 1);
    let nonce = 2;
    let reused = MoveRequestTbs::new(license, a.id(), c.id(), nonce, w.clock.now()).sign(&key);
    assert!(matches!(
        w.distributor.supply_certificate(reused.as_bytes()),
        Err(Error::RequestReplayed | Error::LicenseMoved(_))
    ));
    let fresh = a.move_request(license, c.id(), w.clock.now());
    assert_eq!(
        w.distributor.supply_certificate(fresh.as_bytes()).err(),
        Some(Error::LicenseMoved(license))
    );
    assert_eq!(w.distributor.registry().certificate_history().unwrap().len(), 1);
}
