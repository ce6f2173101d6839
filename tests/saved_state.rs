//! A client's saved state (`docs/formats.md`, "Saved client state"; `docs/threat-model.md`, "A
//! tampered saved state"): sealed under a key derived from the device key, loaded back to the
//! same state, refused when any byte changes, and the first, unsealed version refused (issue 24).

use treecast::keytree::{DecodeError, Scheme};
use treecast::license::{
    Client, Clock, ContentId, Error, Registration, ServerId, SigningKey, UserId,
};
use zeroize::Zeroizing;

use crate::support::World;

/// A client as a device keeps it apart from its state: the signing key and the registration.
struct Keys {
    signing: SigningKey,
    registration: Zeroizing<Vec<u8>>,
}

impl Keys {
    fn load(&self, saved: &[u8]) -> Result<Client, Error> {
        let registration = Registration::from_bytes(&self.registration).unwrap();
        Client::load(self.signing.clone(), registration, saved)
    }
}

fn registered(w: &mut World, user: UserId) -> (Client, Keys) {
    let signing = SigningKey::generate(&mut w.rng);
    let registration = w
        .distributor
        .register_client(user, ServerId(1), &signing.verifying_key())
        .unwrap();
    let bytes = registration.to_bytes();
    let mut client = Client::new(signing.clone(), registration).unwrap();
    w.give_current_ekb(&mut client);
    let keys = Keys {
        signing,
        registration: bytes,
    };
    (client, keys)
}

/// Two clients of one user; the second bought `bought` and received `moved` from the first.
fn with_a_moved_in_license() -> (World, Client, Keys, ContentId, ContentId) {
    let mut w = World::new(Scheme::SUBSET_DIFFERENCE);
    let user = w.user();
    let (mut a, _) = registered(&mut w, user);
    let (mut b, keys) = registered(&mut w, user);
    let (moved, bought) = (w.publish(300), w.publish(200));
    w.buy(&mut a, moved);
    w.buy(&mut b, bought);
    w.move_content(&mut a, &mut b, moved).unwrap();
    (w, b, keys, moved, bought)
}

#[test]
fn a_saved_state_with_a_moved_in_license_loads_back_and_plays() {
    let (w, b, keys, moved, bought) = with_a_moved_in_license();
    let saved = b.save();
    assert_eq!(&saved[..5], b"TCCS\x04", "version 4, sealed");
    let loaded = keys.load(&saved).unwrap();
    w.play(&loaded, moved).unwrap();
    w.play(&loaded, bought).unwrap();
    assert_eq!(loaded.save(), saved);
}

/// A changed byte anywhere (a raised right, an added license, a release swapped) is refused;
/// past the magic, version and client ID, always by the seal.
#[test]
fn every_byte_of_a_saved_state_is_sealed() {
    let (_w, b, keys, _, _) = with_a_moved_in_license();
    let saved = b.save();
    for at in 0..saved.len() {
        let mut changed = saved.to_vec();
        changed[at] ^= 0x01;
        let error = keys.load(&changed).map(|_| ()).unwrap_err();
        if at >= 13 {
            assert_eq!(error, Error::StateTampered, "byte {at}");
        }
    }
    for len in 0..saved.len() {
        assert!(keys.load(&saved[..len]).is_err(), "{len} bytes");
    }
    let mut longer = saved.to_vec();
    longer.push(0);
    assert_eq!(keys.load(&longer).map(|_| ()), Err(Error::StateTampered));
}

/// A state is for its own client: another client's is refused by its ID, and a state whose ID
/// is rewritten to this client's by its seal (the seal key is this device's).
#[test]
fn another_clients_state_is_refused() {
    let mut w = World::new(Scheme::COMPLETE_SUBTREE);
    let user = w.user();
    let (mut a, _) = registered(&mut w, user);
    let (b, b_keys) = registered(&mut w, user);
    let content = w.publish(100);
    w.buy(&mut a, content);
    let a_saved = a.save();
    assert_eq!(
        b_keys.load(&a_saved).map(|_| ()),
        Err(Error::NotForThisClient)
    );
    let mut forged = a_saved.to_vec();
    forged[5..13].copy_from_slice(&b.id().0.to_be_bytes());
    assert_eq!(b_keys.load(&forged).map(|_| ()), Err(Error::StateTampered));
}

/// The downgrade of issue 24: a hand-written first-version state (no seal) for the destination
/// of a move, built only from bytes the user saw (the certificate's license and the
/// container), with the used-certificate list left empty. It would let one purchase play on
/// every device the license passed through; it is refused, and so is the certificate once
/// expired, whatever the state says.
#[test]
fn a_hand_written_first_version_state_is_refused() {
    use treecast::license::certificate::CopyCertificateIn;

    let mut w = World::new(Scheme::COMPLETE_SUBTREE);
    let user = w.user();
    let (mut a, _) = registered(&mut w, user);
    let (b, b_keys) = registered(&mut w, user);
    let content = w.publish(150);
    w.buy(&mut a, content);
    let certificate = w.certificate(&mut a, content, b.id()).unwrap();
    let package = a.move_out(&certificate).unwrap();
    let license = CopyCertificateIn::from_bytes(&certificate)
        .unwrap()
        .unverified()
        .license()
        .unwrap();
    let (_, ekb) = w.distributor.current_ekb().unwrap();
    let container = w.container(content);
    let mut v1 = b"TCCS\x01".to_vec();
    v1.extend_from_slice(&b.id().0.to_be_bytes());
    v1.extend_from_slice(&7u64.to_be_bytes());
    v1.extend_from_slice(&1u32.to_be_bytes());
    v1.extend_from_slice(&content.0.to_be_bytes());
    v1.extend_from_slice(&(container.len() as u32).to_be_bytes());
    v1.extend_from_slice(&container);
    v1.extend_from_slice(&1u32.to_be_bytes());
    v1.extend_from_slice(&(license.as_bytes().len() as u32).to_be_bytes());
    v1.extend_from_slice(license.as_bytes());
    v1.push(1);
    v1.extend_from_slice(package.release.secret_bytes());
    v1.extend_from_slice(&1u32.to_be_bytes());
    v1.extend_from_slice(&(ekb.as_bytes().len() as u32).to_be_bytes());
    v1.extend_from_slice(ekb.as_bytes());
    v1.extend_from_slice(&[0; 8]);
    assert!(matches!(
        b_keys.load(&v1),
        Err(Error::Decode(DecodeError::UnsupportedVersion(1)))
    ));
    // The same bytes with a version-2 header and a made-up seal are tampered.
    let mut v2 = v1.clone();
    v2[4] = 2;
    v2.extend_from_slice(&[0; 32]);
    assert_eq!(b_keys.load(&v2).map(|_| ()), Err(Error::StateTampered));

    // The only way in is the move, and an expired certificate is refused by a device loaded
    // from its own, sealed state.
    let mut b = b_keys.load(&b.save()).unwrap();
    let expired = w.clock.now().plus(30 * 86_400 + 3_600);
    assert_eq!(b.move_in(&package, expired), Err(Error::CertificateExpired));
    assert!(!b.holds(content) || b.license_id(content).is_none());
    b.move_in(&package, w.clock.now()).unwrap();
    w.play(&b, content).unwrap();
}
