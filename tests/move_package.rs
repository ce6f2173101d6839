//! A move package on a wire (issue 30): what a source hands a destination in another program
//! (a browser's device and a command line's) reads back into a package the destination moves in
//! with; the container is not carried (it is public and downloaded); a cut or altered package is
//! a typed error, and one with another release does not open.

use treecast::keytree::Scheme;
use treecast::license::{Clock, Error, MovePackage, ReleaseKey};

use crate::support::World;

#[test]
fn a_package_crosses_a_wire_and_moves_in() {
    let mut w = World::new(Scheme::COMPLETE_SUBTREE);
    let user = w.user();
    let mut source = w.client(user, 1);
    let mut destination = w.client(user, 2);
    let content = w.publish(500);
    w.buy(&mut source, content);
    let certificate = w
        .certificate(&mut source, content, destination.id())
        .unwrap();
    let package = source.move_out(&certificate).unwrap();
    let wire = package.to_bytes();
    assert_eq!(&wire[..5], b"TCMP\x01");
    let read = MovePackage::from_bytes(&wire).unwrap();
    assert_eq!(read.certificate, package.certificate);
    assert_eq!(read.release, package.release);
    assert!(read.content.is_none());
    // Every cut is a typed error, and so is a byte more.
    for n in 0..wire.len() {
        assert!(matches!(
            MovePackage::from_bytes(&wire[..n]),
            Err(Error::Decode(_))
        ));
    }
    let mut longer = wire.to_vec();
    longer.push(0);
    assert!(matches!(
        MovePackage::from_bytes(&longer),
        Err(Error::Decode(_))
    ));
    // Another release reads, but does not open: nothing is moved in.
    let mut other = wire.to_vec();
    let last = other.len() - 1;
    other[last] ^= 1;
    let forged = MovePackage::from_bytes(&other).unwrap();
    assert_ne!(
        forged.release,
        ReleaseKey::from_bytes(*package.release.secret_bytes()).clone()
    );
    let now = w.clock.now();
    assert!(matches!(
        destination.move_in(&forged, now),
        Err(Error::NotReleased)
    ));
    assert!(destination.license_id(content).is_none());
    // The package read back moves in; the destination downloads the container and plays.
    destination.move_in(&read, now).unwrap();
    destination.store_content(w.container(content)).unwrap();
    w.play(&destination, content).unwrap();
}
