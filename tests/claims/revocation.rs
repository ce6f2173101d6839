//! Revocation end to end: a new epoch, content keys re-enveloped, and a revoked client gets
//! nothing new.

use treecast::keytree::{EkbIn, Error as TreeError, Scheme};
use treecast::license::{Error, Registry};


#[test]
fn a_revoked_client_cannot_play_later_content_nor_receive_anything() {
    for scheme in [Scheme::COMPLETE_SUBTREE, Scheme::SUBSET_DIFFERENCE] {
        let Some(mut w) = super::world(scheme) else {
        return;
    };
        let user = w.user();
        let mut good = w.client(user, 1);
        let mut bad = w.client(user, 2);
        let old = w.publish(4000);
        w.buy(&mut good, old);
        w.buy(&mut bad, old);

        let epoch = w.distributor.revoke_client(bad.id()).unwrap();
        assert_eq!(epoch, 2);
        // Content keys are under the distributor's storage key: a revocation changes no
        // envelope.
        let before = w.distributor.registry().contents().unwrap();
        assert!(before.iter().all(|c| c.key_id == 1));

        // The revoked client cannot open the new EKB.
        let (_, ekb) = w.distributor.current_ekb().unwrap();
        let verified = EkbIn::from_bytes(ekb.as_bytes())
            .unwrap()
            .verify(&w.distributor.ekb_key())
            .unwrap();
        assert_eq!(bad.device_keys().open(&verified), Err(TreeError::Revoked));
        bad.store_ekb(ekb.as_bytes()).unwrap();

        // New content, new licenses: the good client plays; the revoked one is refused a license.
        let new = w.publish(4000);
        w.give_current_ekb(&mut good);
        w.buy(&mut good, new);
        w.play(&good, new).unwrap();
        let request = bad.license_request(new, crate::support::START);
        assert_eq!(
            w.distributor
                .supply_license(request.as_bytes())
                .unwrap_err(),
            Error::ClientRevoked(bad.id())
        );

        // Even with the good client's license and container, the revoked client cannot play.
        bad.store_content(w.container(new)).unwrap();
        let stolen = w
            .distributor
            .supply_license(good.license_request(new, crate::support::START).as_bytes())
            .unwrap();
        // (It is signed by server 1, the good client's; the revoked client trusts server 2.)
        assert_eq!(
            bad.acquire_license(stolen.as_bytes()),
            Err(Error::BadSignature)
        );
        let epoch_key_seen_by_bad = bad.device_keys().open(&verified);
        assert!(epoch_key_seen_by_bad.is_err());

        // And it cannot receive a move.
        assert_eq!(
            w.certificate(&mut good, new, bad.id()).unwrap_err(),
            Error::ClientRevoked(bad.id())
        );
        // Licenses of the old epoch keep working for the good client.
        w.play(&good, old).unwrap();
    }
}

#[test]
fn a_batch_of_revocations_builds_one_ekb_that_excludes_every_revoked_client() {
    for scheme in [Scheme::COMPLETE_SUBTREE, Scheme::SUBSET_DIFFERENCE] {
        let Some(mut w) = super::world(scheme) else {
            return;
        };
        let user = w.user();
        let good = w.client(user, 1);
        let first = w.client(user, 2);
        let second = w.client(user, 1);
        let (start, _) = w.distributor.current_ekb().unwrap();

        let middle = w.distributor.revoke_client(first.id()).unwrap();
        let last = w.distributor.revoke_client(second.id()).unwrap();
        assert_eq!((middle, last), (start + 1, start + 2));
        // Nobody asked for the middle epoch's EKB: it was never built nor stored.
        let registry = w.distributor.registry();
        assert_eq!(registry.stored_ekb(middle).unwrap(), None);
        assert_eq!(registry.stored_ekb(last).unwrap(), None);

        // The first request builds the last epoch's EKB, stores it, and it shuts out both.
        let (epoch, ekb) = w.distributor.current_ekb().unwrap();
        assert_eq!(epoch, last);
        assert_eq!(
            registry.stored_ekb(last).unwrap().as_deref(),
            Some(ekb.as_bytes())
        );
        let verified = EkbIn::from_bytes(ekb.as_bytes())
            .unwrap()
            .verify(&w.distributor.ekb_key())
            .unwrap();
        for revoked in [&first, &second] {
            assert_eq!(revoked.device_keys().open(&verified), Err(TreeError::Revoked));
        }
        assert!(good.device_keys().open(&verified).is_ok());
        // An epoch that was skipped is not served afterwards either.
        assert!(w.distributor.ekb(middle).is_err());
    }
}
