//! Claim 3: several license servers, each with its own key pair; a client receives its server's
//! public key at registration; a certificate is signed with the key of the server the
//! destination is registered with.

use treecast::keytree::Scheme;
use treecast::license::{CopyCertificateIn, Error, LicenseIn, ServerId};


#[test]
fn each_server_signs_for_its_own_clients() {
    let Some(mut w) = super::world(Scheme::COMPLETE_SUBTREE) else {
        return;
    };
    let key1 = w.distributor.server_key(ServerId(1)).unwrap();
    let key2 = w.distributor.server_key(ServerId(2)).unwrap();
    assert_ne!(key1, key2);
    assert_eq!(
        w.distributor.server_key(ServerId(9)),
        Err(Error::UnknownServer(ServerId(9)))
    );

    let user = w.user();
    let mut on1 = w.client(user, 1);
    let mut on2 = w.client(user, 2);
    let content = w.publish(3000);
    w.distributor.supply_content(user, content).unwrap();
    on1.store_content(w.container(content)).unwrap();
    let license = w
        .distributor
        .supply_license(
            on1.license_request(content, crate::support::START)
                .as_bytes(),
        )
        .unwrap();
    // Signed by server 1, the client's server; not by server 2.
    assert!(
        LicenseIn::from_bytes(license.as_bytes())
            .unwrap()
            .verify(&key1)
            .is_ok()
    );
    assert_eq!(
        LicenseIn::from_bytes(license.as_bytes())
            .unwrap()
            .verify(&key2)
            .unwrap_err(),
        Error::BadSignature
    );
    on1.acquire_license(license.as_bytes()).unwrap();

    // Moving from a server-1 client to a server-2 client: the certificate is server 2's.
    let cert = w.certificate(&mut on1, content, on2.id()).unwrap();
    assert!(
        CopyCertificateIn::from_bytes(&cert)
            .unwrap()
            .verify(&key2)
            .is_ok()
    );
    assert_eq!(
        CopyCertificateIn::from_bytes(&cert)
            .unwrap()
            .verify(&key1)
            .unwrap_err(),
        Error::BadSignature
    );
    let package = on1.move_out(&cert).unwrap();
    on2.move_in(&package, crate::support::START).unwrap();
    w.play(&on2, content).unwrap();
}

#[test]
fn a_certificate_signed_by_the_wrong_server_is_refused() {
    let Some(mut w) = super::world(Scheme::COMPLETE_SUBTREE) else {
        return;
    };
    let user = w.user();
    let mut a = w.client(user, 1);
    let mut b = w.client(user, 2);
    let mut c = w.client(user, 1);
    let content = w.publish(3000);
    w.buy(&mut a, content);
    // A certificate for c (server 1), presented to b (server 2): b's server did not sign it.
    let cert = w.certificate(&mut a, content, c.id()).unwrap();
    let package = a.move_out(&cert).unwrap();
    assert_eq!(
        b.move_in(&package, crate::support::START),
        Err(Error::BadSignature)
    );
    c.move_in(&package, crate::support::START).unwrap();
}
