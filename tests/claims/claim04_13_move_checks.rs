//! Claims 4 and 13: before a certificate is issued the server checks that the source client is
//! legal, that it holds the license, and that the same user owns source and destination. Every
//! refusal leaves the registry and the ledger unchanged. Another user's client or license is
//! refused as a missing one, and a client that does not exist as a bad signature (issue 24).

use std::sync::Barrier;

use treecast::keytree::Scheme;
use treecast::license::{Error, LicenseId};


/// Runs a refused move and checks the registry did not change.
fn refused(w: &crate::claims::AnyWorld, f: impl FnOnce() -> Result<Vec<u8>, Error>) -> Error {
    let before = w.snapshot();
    let err = f().expect_err("the move must be refused");
    assert_eq!(
        w.snapshot(),
        before,
        "a refused move changed the registry ({err})"
    );
    err
}

#[test]
fn a_move_to_another_users_client_is_refused() {
    let Some(mut w) = super::world(Scheme::COMPLETE_SUBTREE) else {
        return;
    };
    let (alice, bob) = (w.user(), w.user());
    let mut a = w.client(alice, 1);
    let b = w.client(bob, 1);
    let content = w.publish(2000);
    w.buy(&mut a, content);
    // Refused as a destination that does not exist is: Bob's devices are none of Alice's
    // business.
    assert_eq!(
        refused(&w, || w.certificate(&mut a, content, b.id())),
        Error::ClientNotFound(b.id())
    );
}

/// Existence is no oracle (issue 24): a signed move request naming another user's client as
/// its destination (revoked or not) is refused as one naming a client that does not exist, and
/// another user's license as a license that does not exist: the same error, naming only what
/// the request named, at the same point of the supply.
#[test]
fn another_users_client_or_license_is_refused_as_a_missing_one() {
    let Some(mut w) = super::world(Scheme::COMPLETE_SUBTREE) else {
        return;
    };
    let (alice, bob) = (w.user(), w.user());
    let mut a = w.client(alice, 1);
    let a2 = w.client(alice, 1);
    let mut b = w.client(bob, 1);
    let b2 = w.client(bob, 2);
    w.distributor.revoke_client(b2.id()).unwrap();
    let content = w.publish(2000);
    w.buy(&mut a, content);
    w.buy(&mut b, content);
    for destination in [b.id(), b2.id(), treecast::license::ClientId(1 << 40)] {
        let err = refused(&w, || w.certificate(&mut a, content, destination));
        assert_eq!(err, Error::ClientNotFound(destination));
    }
    let bobs = b.license_id(content).unwrap();
    for license in [bobs, LicenseId(1 << 40)] {
        let request = a.move_request(license, a2.id(), crate::support::START);
        let err = refused(&w, || {
            Ok(w.distributor
                .supply_certificate(request.as_bytes())?
                .as_bytes()
                .to_vec())
        });
        assert_eq!(err, Error::LicenseNotFound(license));
    }
}

/// Before a request is authenticated, a client that does not exist and a known client's
/// request under another key are one answer, `BadSignature`, for licenses and moves alike.
#[test]
fn an_unknown_client_is_refused_as_a_bad_signature() {
    use treecast::license::certificate::{LicenseRequestTbs, MoveRequestTbs};
    use treecast::license::sign::Signable;
    let Some(mut w) = super::world(Scheme::COMPLETE_SUBTREE) else {
        return;
    };
    let user = w.user();
    let mut a = w.client(user, 1);
    let b = w.client(user, 1);
    let content = w.publish(2000);
    w.buy(&mut a, content);
    let license = a.license_id(content).unwrap();
    let stranger = treecast::license::SigningKey::from_bytes(&[9; 32]);
    let nobody = treecast::license::ClientId(1 << 40);
    let now = crate::support::START;
    for source in [nobody, a.id()] {
        let request = LicenseRequestTbs::new(source, content, 7, now).sign(&stranger);
        let err = refused(&w, || {
            Ok(w.distributor
                .supply_license(request.as_bytes())?
                .as_bytes()
                .to_vec())
        });
        assert_eq!(err, Error::BadSignature, "a license request from {source}");
        let request = MoveRequestTbs::new(license, source, b.id(), 8, now).sign(&stranger);
        let err = refused(&w, || {
            Ok(w.distributor
                .supply_certificate(request.as_bytes())?
                .as_bytes()
                .to_vec())
        });
        assert_eq!(err, Error::BadSignature, "a move request from {source}");
    }
}

#[test]
fn a_license_the_source_does_not_hold_is_refused() {
    let Some(mut w) = super::world(Scheme::COMPLETE_SUBTREE) else {
        return;
    };
    let user = w.user();
    let mut a = w.client(user, 1);
    let mut b = w.client(user, 1);
    let c = w.client(user, 1);
    let content = w.publish(2000);
    w.buy(&mut a, content);
    let held_by_a = a.license_id(content).unwrap();
    // b, properly signed, asks to move a's license.
    let request = b.move_request(held_by_a, c.id(), crate::support::START);
    let err = refused(&w, || {
        Ok(w.distributor
            .supply_certificate(request.as_bytes())?
            .as_bytes()
            .to_vec())
    });
    assert_eq!(err, Error::LicenseNotHeld(held_by_a));
    // A license that does not exist.
    let request = a.move_request(LicenseId(999), c.id(), crate::support::START);
    let err = refused(&w, || {
        Ok(w.distributor
            .supply_certificate(request.as_bytes())?
            .as_bytes()
            .to_vec())
    });
    assert_eq!(err, Error::LicenseNotFound(LicenseId(999)));
    // A request signed by a key that is not the source's.
    let forged = treecast::license::sign::Signable::sign(
        treecast::license::certificate::MoveRequestTbs::new(
            held_by_a,
            a.id(),
            c.id(),
            3,
            crate::support::START,
        ),
        &treecast::license::SigningKey::from_bytes(&[1; 32]),
    );
    let err = refused(&w, || {
        Ok(w.distributor
            .supply_certificate(forged.as_bytes())?
            .as_bytes()
            .to_vec())
    });
    assert_eq!(err, Error::BadSignature);
}

#[test]
fn moves_from_or_to_revoked_or_unregistered_clients_are_refused() {
    let Some(mut w) = super::world(Scheme::COMPLETE_SUBTREE) else {
        return;
    };
    let user = w.user();
    let mut a = w.client(user, 1);
    let mut b = w.client(user, 1);
    let content = w.publish(2000);
    w.buy(&mut a, content);
    w.buy(&mut b, content);
    // To an unregistered client.
    assert_eq!(
        refused(&w, || w.certificate(
            &mut a,
            content,
            treecast::license::ClientId(77)
        )),
        Error::ClientNotFound(treecast::license::ClientId(77))
    );
    // From an unregistered client (its request is signed, but by nobody the registry knows):
    // refused as a bad signature, which tells no one whether the client exists.
    let ghost = treecast::license::sign::Signable::sign(
        treecast::license::certificate::MoveRequestTbs::new(
            a.license_id(content).unwrap(),
            treecast::license::ClientId(78),
            a.id(),
            1,
            crate::support::START,
        ),
        &treecast::license::SigningKey::from_bytes(&[9; 32]),
    );
    assert_eq!(
        refused(&w, || Ok(w
            .distributor
            .supply_certificate(ghost.as_bytes())?
            .as_bytes()
            .to_vec())),
        Error::BadSignature
    );
    // To a revoked client.
    let c = w.client(user, 2);
    w.distributor.revoke_client(c.id()).unwrap();
    assert_eq!(
        refused(&w, || w.certificate(&mut a, content, c.id())),
        Error::ClientRevoked(c.id())
    );
    // From a revoked client.
    w.distributor.revoke_client(b.id()).unwrap();
    assert_eq!(
        refused(&w, || w.certificate(&mut b, content, a.id())),
        Error::ClientRevoked(b.id())
    );
    // To itself.
    let a_id = a.id();
    assert_eq!(
        refused(&w, || w.certificate(&mut a, content, a_id)),
        Error::SameClient
    );
}

#[test]
fn a_second_move_of_a_moved_license_is_refused() {
    let Some(mut w) = super::world(Scheme::COMPLETE_SUBTREE) else {
        return;
    };
    let user = w.user();
    let mut a = w.client(user, 1);
    let mut b = w.client(user, 1);
    let c = w.client(user, 2);
    let content = w.publish(2000);
    w.buy(&mut a, content);
    let moved = a.license_id(content).unwrap();
    let request = a.move_request(moved, b.id(), crate::support::START);
    let cert = w
        .distributor
        .supply_certificate(request.as_bytes())
        .unwrap();
    // The same request again (a replay, or a source that lost the answer) gets the same
    // certificate and changes nothing; a fresh request for the moved license is refused.
    let before = w.snapshot();
    let again = w
        .distributor
        .supply_certificate(request.as_bytes())
        .unwrap();
    assert_eq!(again.as_bytes(), cert.as_bytes());
    assert_eq!(w.snapshot(), before, "a replayed move request changed the registry");
    assert_eq!(
        refused(&w, || w.certificate(&mut a, content, c.id())),
        Error::LicenseMoved(moved)
    );
    let package = a.move_out(cert.as_bytes()).unwrap();
    b.move_in(&package, crate::support::START).unwrap();
    w.play(&b, content).unwrap();
}

#[test]
fn the_same_license_moved_from_two_threads_at_once_moves_once() {
    for round in 0..20 {
        let Some(mut w) = super::world(Scheme::COMPLETE_SUBTREE) else {
        return;
    };
        let user = w.user();
        let mut a = w.client(user, 1);
        let b = w.client(user, 1);
        let c = w.client(user, 2);
        let content = w.publish(1000);
        w.buy(&mut a, content);
        let license = a.license_id(content).unwrap();
        let to_b = a.move_request(license, b.id(), crate::support::START);
        let to_c = a.move_request(license, c.id(), crate::support::START);
        let barrier = Barrier::new(2);
        let results: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = [to_b.as_bytes(), to_c.as_bytes()]
                .into_iter()
                .map(|req| {
                    let (w, barrier) = (&w, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        w.distributor.supply_certificate(req).map(|_| ())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let wins = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: {results:?}");
        assert!(
            results
                .iter()
                .any(|r| matches!(r, Err(Error::LicenseMoved(_))))
        );
        let r = w.distributor.registry();
        use treecast::license::Registry;
        assert_eq!(r.certificate_history().unwrap().len(), 1);
        assert_eq!(
            r.ledger().unwrap().len(),
            2,
            "one license and one certificate billed"
        );
    }
}
