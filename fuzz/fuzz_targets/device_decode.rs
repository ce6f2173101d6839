//! What a device reads from outside or from its own storage: a registration request, a sealed
//! registration (from the network service), a registration, a move package (from another
//! program's device), a web device's keys, and a saved client state. Nothing
//! may panic; what a loaded state saves loads back to the same state. A state is sealed under
//! the device key, which random bytes do not pass: the fuzzer's bytes are also sealed by the
//! harness (`hazmat_seal_state`), so that it reaches the decoder behind the seal.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use treecast_keytree::{Authority, MasterSecret, Scheme, TreeConfig, TreeHeight, TreeId};
use treecast_registry::MemoryRegistry;
use treecast_protocol::registration::{RegistrationKey, RegistrationRequest};
use treecast_device::Client;
use treecast_distributor::{Distributor, DistributorConfig, LicenseServer, Tariff};
use treecast_protocol::{ManualClock, ServerId, SigningKey, UnixTime, UserId};

/// A valid registration's bytes and the device's key, made once.
fn device() -> &'static (Vec<u8>, [u8; 32]) {
    static DEVICE: OnceLock<(Vec<u8>, [u8; 32])> = OnceLock::new();
    DEVICE.get_or_init(|| {
        let height = TreeHeight::new(8).unwrap();
        let config = TreeConfig::new(Scheme::COMPLETE_SUBTREE, height, TreeId(1));
        let server = LicenseServer::from_signing_key(ServerId(1), SigningKey::from_bytes(&[5; 32]));
        let d = Distributor::new(
            Authority::new(&MasterSecret::from_bytes([4; 32]), config).unwrap(),
            [server],
            MemoryRegistry::new(height),
            Tariff::default(),
            Arc::new(ManualClock::new(UnixTime(1_800_000_000))),
            DistributorConfig::default(),
        )
        .unwrap();
        let user = d.register_user().unwrap();
        let key = [6; 32];
        let public = SigningKey::from_bytes(&key).verifying_key();
        let registration = d.register_client(user, ServerId(1), &public).unwrap();
        (registration.to_bytes().to_vec(), key)
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = treecast_protocol::Registration::from_bytes(data);
    // A move package from another program (issue 30): what reads re-encodes to the same bytes.
    if let Ok(package) = treecast_device::MovePackage::from_bytes(data) {
        assert_eq!(&package.to_bytes()[..], data);
    }
    let _ = RegistrationRequest::verify_bytes(data, UserId(1));
    let (registration, key) = device();
    let signing = SigningKey::from_bytes(key);
    let request = RegistrationRequest::new(UserId(1), ServerId(1), &signing).unwrap();
    let _ = treecast_protocol::Registration::open_sealed(
        data,
        &RegistrationKey::derive(&signing).unwrap(),
        &request,
    );
    let registration = treecast_protocol::Registration::from_bytes(registration).unwrap();
    let client = Client::new(signing.clone(), registration).unwrap();
    // The bytes as a web device's keys (issue 30: what the page reads back from IndexedDB),
    // with this device's state: a typed error or the device, never a panic.
    let _ = treecast_web::WebDevice::load(&mut data.to_vec(), &client.save());
    // The bytes as a state, and the bytes sealed as this device would seal them.
    let mut body = b"TCCS\x02".to_vec();
    body.extend_from_slice(&client.id().0.to_be_bytes());
    body.extend_from_slice(data);
    let sealed = client.hazmat_seal_state(&body);
    for state in [data, &sealed[..]] {
        let registration = treecast_protocol::Registration::from_bytes(&device().0).unwrap();
        if let Ok(loaded) = Client::load(signing.clone(), registration, state) {
            let saved = loaded.save();
            let again = treecast_protocol::Registration::from_bytes(&device().0).unwrap();
            let reloaded = Client::load(signing.clone(), again, &saved).unwrap();
            assert_eq!(reloaded.save(), saved);
        }
    }
});
