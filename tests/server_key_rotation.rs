//! License server key rotation (issue 29, item 3): key IDs in what a server signs, the
//! authority's signed lists of a server's keys, retirement. An object of the old key verifies
//! before its retirement and is refused after it, on a device that took the list; devices learn
//! a new key from the list only, never from a server alone; nothing held is lost.

use std::sync::Arc;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use treecast::keytree::{Authority, MasterSecret, Scheme, TreeConfig, TreeHeight, TreeId};
use treecast::license::server::{ServerKeyListTbs, ServerKeys};
use treecast::license::transport::{LocalTransport, TransportExt};
use treecast::license::{
    Client, Clock, ContentId, Distributor, DistributorConfig, Error, KeyId, LicenseServer,
    ManualClock, MemoryRegistry, Registration, ServerId, SigningKey, Tariff, UnixTime,
};
use treecast_protocol::sign::Signable;

const START: UnixTime = UnixTime(1_800_000_000);

type Shop = Distributor<MemoryRegistry>;

struct Setup {
    master: MasterSecret,
    config: TreeConfig,
    clock: Arc<ManualClock>,
    rng: ChaCha20Rng,
}

impl Setup {
    fn new() -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(29);
        Self {
            master: MasterSecret::generate(&mut rng),
            config: TreeConfig::new(
                Scheme::COMPLETE_SUBTREE,
                TreeHeight::new(16).unwrap(),
                TreeId(1),
            ),
            clock: Arc::new(ManualClock::new(START)),
            rng,
        }
    }

    /// A distributor holding `server` over `registry`: a process started (again) with a key
    /// file.
    fn start(&self, server: LicenseServer, registry: MemoryRegistry) -> Arc<Shop> {
        Arc::new(
            Distributor::new(
                Authority::new(&self.master, self.config).unwrap(),
                [server],
                registry,
                Tariff::default(),
                self.clock.clone(),
                DistributorConfig::default(),
            )
            .unwrap(),
        )
    }

    /// A client of `user` registered with server 1, its registration's bytes and a copy of
    /// its signing key.
    fn client(
        &mut self,
        d: &Shop,
        user: treecast::license::UserId,
    ) -> (Client, Vec<u8>, SigningKey) {
        let key = SigningKey::generate(&mut self.rng);
        let copy = key.clone();
        let registration = d
            .register_client(user, ServerId(1), &key.verifying_key())
            .unwrap();
        let kept = registration.to_bytes().to_vec();
        let mut client = Client::new(key, registration).unwrap();
        client
            .store_ekb(d.current_ekb().unwrap().1.as_bytes())
            .unwrap();
        (client, kept, copy)
    }

    fn publish(&mut self, d: &Shop, text: &[u8]) -> (ContentId, Vec<u8>) {
        let mut container = Vec::new();
        let id = d.publish(text, &mut container, &mut self.rng).unwrap().id;
        (id, container)
    }
}

/// A license for `content` to `client`, as a server answers it (not stored yet).
fn license(d: &Shop, client: &mut Client, content: ContentId, now: UnixTime) -> Vec<u8> {
    d.supply_content(client.user(), content).unwrap();
    let request = client.license_request(content, now);
    d.supply_license(request.as_bytes())
        .unwrap()
        .as_bytes()
        .to_vec()
}

#[test]
fn a_rotated_key_verifies_until_retired_and_devices_learn_keys_only_from_the_authority() {
    let mut s = Setup::new();
    let old = LicenseServer::generate(ServerId(1), &mut s.rng);
    let new = LicenseServer::generate(ServerId(1), &mut s.rng).with_key_id(KeyId(1));
    let d = s.start(old.clone(), MemoryRegistry::new(s.config.height));
    let user = d.register_user().unwrap();
    let (first, first_container) = s.publish(&d, b"bought under the old key");
    let (mut phone, phone_registration, phone_key) = s.client(&d, user);
    let (mut tablet, _, _) = s.client(&d, user);
    let (mut laptop, _, _) = s.client(&d, user);
    phone.store_content(first_container.clone()).unwrap();
    let now = s.clock.now();
    let bought = license(&d, &mut phone, first, now);
    phone.acquire_license(&bought).unwrap();
    // Licenses signed by the old key that the tablet and the laptop have not stored yet.
    let for_tablet = license(&d, &mut tablet, first, now);
    let for_laptop = license(&d, &mut laptop, first, now);

    // A server alone cannot teach a device a key: an object of a key it does not hold is
    // refused, whoever signed it.
    let stranger = LicenseServer::generate(ServerId(1), &mut s.rng).with_key_id(KeyId(5));
    let forged = s.start(stranger, MemoryRegistry::new(s.config.height));
    let forged_user = forged.register_user().unwrap();
    let (mut victim, _, _) = s.client(&forged, forged_user);
    let (content, _) = s.publish(&forged, b"x");
    let forged_license = license(&forged, &mut victim, content, now);
    assert!(matches!(
        tablet.acquire_license(&forged_license),
        Err(Error::UnknownServerKey(ServerId(1), KeyId(5)))
    ));

    // Rotation: the authority lists the old key and the new, then the process restarts with
    // the new key.
    // Lists are numbered from the clock at least: a registry restored from a backup never makes
    // the authority number one below what devices hold.
    let number1 = d.next_server_key_list(ServerId(1)).unwrap();
    assert_eq!(number1, START.0);
    let list = d
        .publish_server_keys(
            ServerId(1),
            number1,
            vec![
                (KeyId(0), old.verifying_key()),
                (KeyId(1), new.verifying_key()),
            ],
        )
        .unwrap();
    assert_eq!(list.tbs().sequence, number1);
    // Not twice under one number.
    assert!(matches!(
        d.publish_server_keys(ServerId(1), number1, vec![(KeyId(0), old.verifying_key())]),
        Err(Error::Storage(_))
    ));
    let registry = Arc::into_inner(d).unwrap().into_registry();
    let d = s.start(new.clone(), registry);
    let t = LocalTransport::new(Arc::clone(&d));

    // A license of the new key: the phone does not hold the key, fetches the authority's list
    // and stores the license; it still plays what it bought under the old key.
    let (second, second_container) = s.publish(&d, b"bought under the new key");
    phone.store_content(second_container).unwrap();
    let fresh = license(&d, &mut phone, second, s.clock.now());
    assert!(matches!(
        phone.acquire_license(&fresh),
        Err(Error::UnknownServerKey(ServerId(1), KeyId(1)))
    ));
    t.with_server_keys(&mut phone, |c| c.acquire_license(&fresh))
        .unwrap();
    assert_eq!(phone.server_keys().sequence(ServerId(1)), number1);
    for (content, text) in [
        (first, &b"bought under the old key"[..]),
        (second, &b"bought under the new key"[..]),
    ] {
        let mut out = Vec::new();
        phone.play(content, &mut out).unwrap();
        assert_eq!(out, text);
    }
    // Before retirement, the old key's objects verify on a device that took the list.
    tablet
        .update_server_keys(&d.server_key_list(ServerId(1)).unwrap().unwrap())
        .unwrap();
    tablet.acquire_license(&for_tablet).unwrap();
    // The same list again changes nothing.
    assert!(matches!(
        tablet.update_server_keys(list.as_bytes()),
        Err(Error::StaleServerKeys { got, held, .. }) if got == number1 && held == number1
    ));

    // Retirement: a list without the old key.
    let number2 = d.next_server_key_list(ServerId(1)).unwrap();
    assert_eq!(number2, number1 + 1);
    let retired = d
        .publish_server_keys(ServerId(1), number2, vec![(KeyId(1), new.verifying_key())])
        .unwrap();
    laptop.update_server_keys(retired.as_bytes()).unwrap();
    assert!(matches!(
        laptop.acquire_license(&for_laptop),
        Err(Error::UnknownServerKey(ServerId(1), KeyId(0)))
    ));
    assert!(laptop.license_id(first).is_none());
    // An older list does not bring the retired key back.
    assert!(matches!(
        laptop.update_server_keys(list.as_bytes()),
        Err(Error::StaleServerKeys { got, held, .. }) if got == number1 && held == number2
    ));
    // Nor does a list signed by anyone but the authority, however new.
    let impostor = SigningKey::generate(&mut s.rng);
    let fake = ServerKeyListTbs::new(
        ServerId(1),
        9,
        vec![
            (KeyId(0), old.verifying_key()),
            (KeyId(1), new.verifying_key()),
        ],
    )
    .unwrap()
    .sign(&impostor);
    assert!(matches!(
        laptop.update_server_keys(fake.as_bytes()),
        Err(Error::BadSignature)
    ));

    // The list is kept with the device's saved state: loaded from its first registration (which
    // knew key 0 only), the phone holds list 2 and plays both contents.
    phone.update_server_keys(retired.as_bytes()).unwrap();
    let saved = phone.save();
    let registration = Registration::from_bytes(&phone_registration).unwrap();
    assert!(registration.servers.get(ServerId(1), KeyId(1)).is_none());
    let loaded = Client::load(phone_key, registration, &saved).unwrap();
    assert_eq!(loaded.server_keys().sequence(ServerId(1)), number2);
    assert!(loaded.server_keys().get(ServerId(1), KeyId(0)).is_none());
    let mut out = Vec::new();
    loaded.play(second, &mut out).unwrap();
    assert_eq!(out, b"bought under the new key");

    // A device registered now receives the list with its registration (the second format,
    // with key IDs), through its bytes.
    let (mut watch, watch_registration, _) = s.client(&d, user);
    let read = Registration::from_bytes(&watch_registration).unwrap();
    assert_eq!(read.servers.sequence(ServerId(1)), number2);
    assert!(read.servers.get(ServerId(1), KeyId(0)).is_none());
    assert!(matches!(
        watch.acquire_license(&for_tablet),
        Err(Error::UnknownServerKey(ServerId(1), KeyId(0)))
    ));
    // And a move signed by the new key goes through: phone to watch.
    let request = phone.move_request(phone.license_id(second).unwrap(), watch.id(), s.clock.now());
    let certificate = d.supply_certificate(request.as_bytes()).unwrap();
    assert_eq!(certificate.key_id(), KeyId(1));
    let package = phone.move_out(certificate.as_bytes()).unwrap();
    watch.move_in(&package, s.clock.now()).unwrap();
    let mut out = Vec::new();
    watch.play(second, &mut out).unwrap();
    assert_eq!(out, b"bought under the new key");
}

#[test]
fn a_list_that_does_not_verify_in_the_registry_is_left_out_of_registrations() {
    let mut s = Setup::new();
    let server = LicenseServer::generate(ServerId(1), &mut s.rng);
    let d = s.start(server.clone(), MemoryRegistry::new(s.config.height));
    let impostor = SigningKey::generate(&mut s.rng);
    let fake = ServerKeyListTbs::new(ServerId(1), 7, vec![(KeyId(3), impostor.verifying_key())])
        .unwrap()
        .sign(&impostor);
    assert!(
        treecast::license::registry::Registry::keep_server_key_list(
            d.registry(),
            ServerId(1),
            7,
            fake.as_bytes()
        )
        .unwrap()
    );
    let keys: Arc<ServerKeys> = d.current_server_keys().unwrap();
    assert_eq!(keys.sequence(ServerId(1)), 0);
    assert!(keys.get(ServerId(1), KeyId(3)).is_none());
    let user = d.register_user().unwrap();
    let (client, _, _) = s.client(&d, user);
    assert_eq!(
        client.server_keys().get(ServerId(1), KeyId(0)),
        Some(&server.verifying_key())
    );
}

/// A state saved before issue 29 (version 3: no lists) still loads; a version-4 state's lists
/// are under its seal.
#[test]
fn a_state_of_before_the_key_lists_loads_and_the_lists_are_sealed() {
    let mut s = Setup::new();
    let server = LicenseServer::generate(ServerId(1), &mut s.rng);
    let d = s.start(server, MemoryRegistry::new(s.config.height));
    let user = d.register_user().unwrap();
    let (mut phone, registration, key) = s.client(&d, user);
    let (content, container) = s.publish(&d, b"saved before the lists");
    phone.store_content(container).unwrap();
    let bought = license(&d, &mut phone, content, s.clock.now());
    phone.acquire_license(&bought).unwrap();
    let saved = phone.save();
    assert_eq!(&saved[..5], b"TCCS\x04");
    // Version 3 is version 4 without the list count (0 here) before the seal.
    let body = &saved[..saved.len() - 32];
    assert_eq!(&body[body.len() - 4..], &[0; 4]);
    let mut v3 = body[..body.len() - 4].to_vec();
    v3[4] = 3;
    let v3 = phone.hazmat_seal_state(&v3);
    let loaded = Client::load(
        key.clone(),
        Registration::from_bytes(&registration).unwrap(),
        &v3,
    )
    .unwrap();
    let mut out = Vec::new();
    loaded.play(content, &mut out).unwrap();
    assert_eq!(out, b"saved before the lists");
    // A list spliced into a version-4 state without its seal is refused.
    let list = d
        .publish_server_keys(
            ServerId(1),
            d.next_server_key_list(ServerId(1)).unwrap(),
            vec![(
                KeyId(0),
                *phone.server_keys().get(ServerId(1), KeyId(0)).unwrap(),
            )],
        )
        .unwrap();
    let mut spliced = body[..body.len() - 4].to_vec();
    spliced.extend_from_slice(&1u32.to_be_bytes());
    spliced.extend_from_slice(&(list.as_bytes().len() as u32).to_be_bytes());
    spliced.extend_from_slice(list.as_bytes());
    spliced.extend_from_slice(&saved[saved.len() - 32..]);
    assert!(matches!(
        Client::load(
            key,
            Registration::from_bytes(&registration).unwrap(),
            &spliced
        ),
        Err(Error::StateTampered)
    ));
}
