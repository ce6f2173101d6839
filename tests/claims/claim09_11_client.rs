//! Claims 9 and 11: the client downloads, stores, acquires a license, plays, acquires a
//! certificate, moves out (deleting its copy) and moves in.

use treecast::keytree::Scheme;
use treecast::license::{Clock, Error, LicenseIn};


#[test]
fn a_move_leaves_exactly_one_usable_copy() {
    let Some(mut w) = super::world(Scheme::COMPLETE_SUBTREE) else {
        return;
    };
    let user = w.user();
    let mut a = w.client(user, 1);
    let mut b = w.client(user, 1);
    let content = w.publish(70_000);
    w.buy(&mut a, content);
    let old_license = a.license_id(content).unwrap();
    let package = w.move_content(&mut a, &mut b, content).unwrap();
    assert!(b.holds(content) && !a.holds(content));
    w.play(&b, content).unwrap();
    assert_eq!(a.play(content, Vec::new()), Err(Error::NoLicense(content)));
    // The source cannot take its old license back: it is remembered as moved away.
    let cert = treecast::license::CopyCertificateIn::from_bytes(&package.certificate).unwrap();
    let _ = cert;
    let r = w.distributor.registry();
    use treecast::license::Registry;
    assert_eq!(
        r.license(old_license).unwrap().unwrap().state,
        treecast::license::registry::LicenseState::Moved
    );
}

#[test]
fn a_license_used_on_another_client_is_refused() {
    let Some(mut w) = super::world(Scheme::SUBSET_DIFFERENCE) else {
        return;
    };
    let (alice, bob) = (w.user(), w.user());
    let mut a = w.client(alice, 1);
    let mut b = w.client(bob, 1);
    let mut a2 = w.client(alice, 1);
    let content = w.publish(5000);
    w.buy(&mut a, content);
    // Copy a's license and content onto b and onto a2 (same user): both refuse it.
    let request = a.license_request(content, crate::support::START);
    let license = w.distributor.supply_license(request.as_bytes()).unwrap();
    for other in [&mut b, &mut a2] {
        other.store_content(w.container(content)).unwrap();
        assert_eq!(
            other.acquire_license(license.as_bytes()),
            Err(Error::NotForThisClient)
        );
        assert_eq!(
            other.play(content, Vec::new()),
            Err(Error::NoLicense(content))
        );
    }
    // And the key inside it does not unwrap with another client's device key, even if a
    // tampered client skipped the check.
    let license = LicenseIn::from_bytes(license.as_bytes())
        .unwrap()
        .verify(
            &w.distributor
                .server_key(treecast::license::ServerId(1))
                .unwrap(),
        )
        .unwrap();
    let epoch_key = w.distributor.authority().unwrap().epoch_key(license.tbs().epoch);
    assert!(
        license
            .content_key(&epoch_key, a.device_keys().device_key(), None)
            .is_ok()
    );
    assert_eq!(
        license
            .content_key(&epoch_key, b.device_keys().device_key(), None)
            .unwrap_err(),
        Error::UnwrapFailed
    );
    assert_eq!(
        license
            .content_key(
                &w.distributor.authority().unwrap().epoch_key(9),
                a.device_keys().device_key(),
                None
            )
            .unwrap_err(),
        Error::UnwrapFailed
    );
}

#[test]
fn a_replayed_license_request_gets_the_same_license_and_is_billed_once() {
    let Some(mut w) = super::world(Scheme::COMPLETE_SUBTREE) else {
        return;
    };
    let user = w.user();
    let mut a = w.client(user, 1);
    let content = w.publish(1000);
    let request = a.license_request(content, crate::support::START);
    let first = w.distributor.supply_license(request.as_bytes()).unwrap();
    let before = w.snapshot();
    let again = w.distributor.supply_license(request.as_bytes()).unwrap();
    assert_eq!(again.as_bytes(), first.as_bytes());
    assert_eq!(w.snapshot(), before, "a replayed request changed the registry");
}

/// Issue 24, item 9: a source that moved out but lost the package (a crash before the
/// destination stored it, a lost answer) gets it again from the same certificate, with the
/// same release and nothing changed, and the move finishes; the license is still in one place.
#[test]
fn a_lost_move_package_is_given_again_and_the_move_finishes() {
    let Some(mut w) = super::world(Scheme::COMPLETE_SUBTREE) else {
        return;
    };
    let user = w.user();
    let mut a = w.client(user, 1);
    let mut b = w.client(user, 2);
    let content = w.publish(3000);
    w.buy(&mut a, content);
    let certificate = w.certificate(&mut a, content, b.id()).unwrap();
    let first = a.move_out(&certificate).unwrap();
    let saved = a.save();
    let again = a.move_out(&certificate).unwrap();
    assert_eq!(
        again.release.secret_bytes(),
        first.release.secret_bytes()
    );
    assert!(again.content.is_none());
    assert_eq!(*a.save(), *saved, "giving the package again changed the source");
    assert_eq!(a.play(content, Vec::new()), Err(Error::NoLicense(content)));
    b.store_content(w.container(content)).unwrap();
    b.move_in(&again, w.clock.now()).unwrap();
    w.play(&b, content).unwrap();
    // The first package is the same move: refused as replayed, not a second copy.
    assert!(matches!(
        b.move_in(&first, w.clock.now()),
        Err(Error::CertificateReplayed(_))
    ));
    // A certificate for a license the source never held is still refused.
    let mut c = w.client(user, 1);
    w.buy(&mut c, content);
    let other = w.certificate(&mut c, content, b.id()).unwrap();
    assert_eq!(
        a.move_out(&other).map(|_| ()),
        Err(Error::NotForThisClient)
    );
}
