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
            .verify(&w.distributor.authority().verifying_key())
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
