//! Claim 2: the copy certificate contains the license for the move destination.

use treecast::keytree::Scheme;
use treecast::license::license::LicenseTbs;
use treecast::license::{CopyCertificateIn, Unverified};


#[test]
fn the_certificate_carries_a_license_for_the_destination() {
    let Some(mut w) = super::world(Scheme::COMPLETE_SUBTREE) else {
        return;
    };
    let user = w.user();
    let mut a = w.client(user, 1);
    let b = w.client(user, 1);
    let content = w.publish(5000);
    w.buy(&mut a, content);
    let cert = w.certificate(&mut a, content, b.id()).unwrap();
    let server_key = w
        .distributor
        .server_key(treecast::license::ServerId(1))
        .unwrap();
    let cert = CopyCertificateIn::from_bytes(&cert)
        .unwrap()
        .verify(&server_key)
        .unwrap();
    let license = cert.tbs().license().unwrap().verify(&server_key).unwrap();
    let t: &LicenseTbs = license.tbs();
    assert_eq!(
        (t.client_id, t.content_id, t.user_id),
        (b.id(), content, user)
    );
    assert_ne!(Some(t.license_id), a.license_id(content));
    // The sizes docs/formats.md states.
    assert_eq!(license.as_bytes().len(), 146);
    assert_eq!(treecast::license::license::ENCODED_LEN, 146);
    // The embedded license is a license, not a certificate: it decodes only as a license.
    assert!(Unverified::<LicenseTbs>::from_bytes(license.as_bytes()).is_ok());
    assert!(CopyCertificateIn::from_bytes(license.as_bytes()).is_err());
}
