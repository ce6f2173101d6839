//! Claims 5 and 6: the registry's seven tables, updated on every content supply and every
//! license supply.

use treecast::keytree::Scheme;
use treecast::license::registry::LicenseState;
use treecast::license::{ClientCertificate, Registry, ServerId, Unverified};


#[test]
fn the_seven_tables_follow_every_supply() {
    let Some(mut w) = super::world(Scheme::SUBSET_DIFFERENCE) else {
        return;
    };
    let user = w.user();
    let mut a = w.client(user, 1);
    let mut b = w.client(user, 2);
    let (c1, c2) = (w.publish(1000), w.publish(1000));
    let r = w.distributor.registry();

    // Leaf ↔ client, client ↔ certificate, client ↔ user.
    let record = r.client(a.id()).unwrap().unwrap();
    assert_eq!(r.client_by_leaf(record.leaf).unwrap(), Some(a.id()));
    assert_eq!(record.leaf, a.device_keys().leaf());
    assert_eq!(record.user, user);
    let cert = Unverified::<treecast::license::certificate::ClientCertificateTbs>::from_bytes(
        &record.certificate,
    )
    .unwrap()
    .verify(&w.distributor.server_key(ServerId(1)).unwrap())
    .unwrap();
    let _: &ClientCertificate = &cert;
    assert_eq!(
        (cert.tbs().client_id, cert.tbs().leaf),
        (a.id(), record.leaf.get())
    );
    assert_eq!(r.clients_of(user).unwrap(), vec![a.id(), b.id()]);

    // Content supply updates user ↔ contents.
    assert!(r.contents_of_user(user).unwrap().is_empty());
    w.distributor.supply_content(user, c1).unwrap();
    assert_eq!(r.contents_of_user(user).unwrap(), vec![c1]);

    // License supply updates content ↔ licenses and user ↔ licenses.
    w.buy(&mut a, c1);
    w.buy(&mut b, c2);
    let r = w.distributor.registry();
    let (l1, l2) = (a.license_id(c1).unwrap(), b.license_id(c2).unwrap());
    assert_eq!(r.licenses_of_content(c1).unwrap(), vec![l1]);
    assert_eq!(r.licenses_of_user(user).unwrap(), vec![l1, l2]);
    assert_eq!(r.contents_of_user(user).unwrap(), vec![c1, c2]);

    // A move records the certificate issue.
    w.move_content(&mut a, &mut b, c1).unwrap();
    let r = w.distributor.registry();
    let history = r.certificate_history().unwrap();
    assert_eq!(history.len(), 1);
    let h = &history[0];
    assert_eq!(
        (h.source, h.destination, h.content, h.source_license),
        (a.id(), b.id(), c1, l1)
    );
    assert_eq!(r.license(l1).unwrap().unwrap().state, LicenseState::Moved);
    let moved_in = r.license(h.destination_license).unwrap().unwrap();
    assert_eq!(
        (moved_in.client, moved_in.state, moved_in.origin),
        (b.id(), LicenseState::Active, Some(h.id))
    );
    assert_eq!(
        r.licenses_of_content(c1).unwrap(),
        vec![l1, h.destination_license]
    );
}

#[test]
fn the_client_limit_holds_and_a_refusal_changes_nothing() {
    let Some(mut w) = super::world(Scheme::COMPLETE_SUBTREE) else {
        return;
    };
    let user = w.user();
    let clients: Vec<_> = (0..3).map(|_| w.client(user, 1)).collect();
    let before = w.snapshot();
    let key = treecast::license::SigningKey::from_bytes(&[4; 32]).verifying_key();
    assert_eq!(
        w.distributor
            .register_client(user, ServerId(1), &key)
            .unwrap_err(),
        treecast::license::Error::ClientLimit(user)
    );
    assert_eq!(w.snapshot(), before);
    // Deregistering one frees a place; its leaf is never handed out again.
    let freed = w
        .distributor
        .registry()
        .client(clients[0].id())
        .unwrap()
        .unwrap()
        .leaf;
    w.distributor.revoke_client(clients[0].id()).unwrap();
    let registration = w
        .distributor
        .register_client(user, ServerId(1), &key)
        .unwrap();
    assert_ne!(registration.device_keys.leaf(), freed);
    assert!(registration.device_keys.leaf().get() > freed.get());
}
