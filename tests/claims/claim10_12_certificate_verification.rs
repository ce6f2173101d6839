//! Claims 10 and 12: the destination verifies the certificate with its license server's public
//! key; a falsified certificate is refused, as are one addressed to another client, an expired
//! one and a replayed one.

use treecast::keytree::Scheme;
use treecast::license::{Clock, Error, MovePackage};

fn world_with_certificate() -> Option<(
    crate::claims::AnyWorld,
    treecast::license::Client,
    treecast::license::Client,
    MovePackage,
)> {
    let mut w = super::world(Scheme::COMPLETE_SUBTREE)?;
    let user = w.user();
    let mut a = w.client(user, 1);
    let b = w.client(user, 1);
    let content = w.publish(3000);
    w.buy(&mut a, content);
    let cert = w.certificate(&mut a, content, b.id()).unwrap();
    let package = a.move_out(&cert).unwrap();
    Some((w, a, b, package))
}

#[test]
fn every_single_bit_flip_of_a_certificate_is_refused() {
    let Some((w, _, b, package)) = world_with_certificate() else {
        return;
    };
    let now = w.clock.now();
    let mut b = b;
    // Each refusal runs on the real destination, which must stay able to accept the real one.
    for bit in 0..package.certificate.len() * 8 {
        let mut bad = package.clone();
        bad.certificate[bit / 8] ^= 1 << (bit % 8);
        assert!(b.move_in(&bad, now).is_err(), "bit {bit} accepted");
    }
    b.move_in(&package, now).unwrap();
}

#[test]
fn a_certificate_for_another_client_expired_or_replayed_is_refused() {
    let Some((w, _, mut b, package)) = world_with_certificate() else {
        return;
    };
    let mut w = w;
    let user = b.user();
    let mut c = w.client(user, 1);
    assert_eq!(
        c.move_in(&package, w.clock.now()),
        Err(Error::NotForThisClient)
    );

    // Expired.
    let expires = w.clock.now().plus(3600);
    assert_eq!(
        b.move_in(&package, expires.plus(1)),
        Err(Error::CertificateExpired)
    );
    // Valid, then replayed.
    b.move_in(&package, expires).unwrap();
    w.play(&b, package_content(&package)).unwrap();
    assert!(matches!(
        b.move_in(&package, expires),
        Err(Error::CertificateReplayed(_))
    ));
}

fn package_content(p: &MovePackage) -> treecast::license::ContentId {
    treecast::license::content::header(p.content.as_deref().unwrap())
        .unwrap()
        .content_id
}

#[test]
fn a_certificate_with_the_wrong_content_is_refused() {
    let Some((mut w, _, mut b, package)) = world_with_certificate() else {
        return;
    };
    let other = w.publish(100);
    let swapped = MovePackage::new(
        package.certificate.clone(),
        Some(w.container(other).into()),
        package.release.clone(),
    );
    assert_eq!(
        b.move_in(&swapped, w.clock.now()),
        Err(Error::ContentCorrupt)
    );
    b.move_in(&package, w.clock.now()).unwrap();
}
