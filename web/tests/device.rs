//! The web device natively: the same code the page runs in WebAssembly, against a distributor
//! in this process. Registration from the sealed answer, keys and state that survive a reload
//! (and refuse another's), a text played, the ClearKey license from the device's own license
//! only, moves between two web devices, and typed errors for bytes from anywhere.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests fail loudly by design"
)]

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use treecast_distributor::{Distributor, DistributorConfig, LicenseServer, LocalTransport, Tariff};
use treecast_keytree::{Authority, MasterSecret, Scheme, TreeConfig, TreeHeight, TreeId};
use treecast_protocol::transport::Transport;
use treecast_protocol::{Error, ManualClock, ServerId, UnixTime};
use treecast_registry::MemoryRegistry;
use treecast_web::{WebDevice, WebError};

const NOW: u64 = 1_800_000_000;

struct Shop {
    shop: Arc<Distributor<MemoryRegistry>>,
    transport: LocalTransport<MemoryRegistry>,
    user: u64,
    rng: ChaCha20Rng,
}

fn shop() -> Shop {
    let mut rng = ChaCha20Rng::seed_from_u64(30);
    let height = TreeHeight::new(8).unwrap();
    let shop = Arc::new(
        Distributor::new(
            Authority::new(
                &MasterSecret::from_bytes([5; 32]),
                TreeConfig::new(Scheme::COMPLETE_SUBTREE, height, TreeId(1)),
            )
            .unwrap(),
            [
                LicenseServer::generate(ServerId(1), &mut rng),
                LicenseServer::generate(ServerId(2), &mut rng),
            ],
            MemoryRegistry::new(height),
            Tariff::default(),
            Arc::new(ManualClock::new(UnixTime(NOW))),
            DistributorConfig::default(),
        )
        .unwrap(),
    );
    let user = shop.register_user().unwrap().0;
    Shop {
        transport: LocalTransport::new(Arc::clone(&shop)),
        shop,
        user,
        rng,
    }
}

impl Shop {
    fn device(&mut self, seed: u8, server: u32) -> WebDevice {
        let mut seed = [seed; 32];
        let pending = WebDevice::start_registration(&mut seed, self.user, server).unwrap();
        assert_eq!(seed, [0; 32], "the page's seed is zeroed");
        let sealed = self
            .shop
            .register_sealed(
                treecast_protocol::UserId(self.user),
                &pending.request(),
                &mut self.rng,
            )
            .unwrap();
        let mut device = pending.finish(&sealed).unwrap();
        device
            .store_ekb(&self.transport.current_ekb().unwrap().1)
            .unwrap();
        device
    }

    fn publish(&mut self, text: &[u8]) -> u64 {
        let mut container = Vec::new();
        let id = self
            .shop
            .publish(text, &mut container, &mut self.rng)
            .unwrap()
            .id;
        self.transport.add_container(id, container).unwrap();
        id.0
    }

    fn download(&self, content: u64) -> Vec<u8> {
        let user = treecast_protocol::UserId(self.user);
        let credential = self.shop.user_credential(user).unwrap();
        self.transport
            .download(user, &credential, treecast_protocol::ContentId(content))
            .unwrap()
    }

    fn buy(&self, device: &mut WebDevice, content: u64) {
        device.store_content(&self.download(content)).unwrap();
        let request = device.license_request(content, NOW);
        device
            .acquire_license(&self.transport.license(&request).unwrap())
            .unwrap();
    }

    fn move_over(&self, from: &mut WebDevice, to: &mut WebDevice, content: u64) -> Vec<u8> {
        let request = from.move_request(content, to.id(), NOW).unwrap();
        let certificate = self.transport.certificate(&request).unwrap();
        assert_eq!(
            WebDevice::certificate_server(&certificate).unwrap(),
            to.server()
        );
        let package = from.move_out(&certificate).unwrap();
        assert_eq!(WebDevice::package_content(&package).unwrap(), content);
        if !to.holds(content) {
            to.store_content(&self.download(content)).unwrap();
        }
        assert_eq!(to.move_in(&package, NOW).unwrap(), content);
        package.to_vec()
    }
}

#[test]
fn a_registered_web_device_buys_plays_and_reloads() {
    let mut s = shop();
    let mut device = s.device(1, 1);
    assert_eq!(device.user(), s.user);
    assert_eq!(device.server(), 1);
    let content = s.publish(b"a text for the page");
    s.buy(&mut device, content);
    assert_eq!(device.play(content, NOW).unwrap(), b"a text for the page");

    // A reload: keys and state give the same device, holding the same license.
    let (keys, state) = (device.keys(), device.save());
    let mut again = WebDevice::load(&mut keys.clone(), &state).unwrap();
    assert_eq!(again.id(), device.id());
    assert_eq!(again.status(), device.status());
    assert_eq!(again.play(content, NOW).unwrap(), b"a text for the page");
    let status: serde_json::Value = serde_json::from_str(&again.status()).unwrap();
    assert_eq!(status["licenses"][0]["content"], content);

    // Another device's keys do not open this state; an altered state is refused.
    let other = s.device(2, 1);
    assert!(matches!(
        WebDevice::load(&mut other.keys(), &state),
        Err(WebError(Error::NotForThisClient))
    ));
    let mut altered = state.clone();
    let last = altered.len() - 1;
    altered[last] ^= 1;
    assert!(matches!(
        WebDevice::load(&mut keys.clone(), &altered),
        Err(WebError(Error::StateTampered))
    ));
}

#[test]
fn the_clearkey_license_comes_from_the_devices_own_license_only() {
    let mut s = shop();
    let mut owner = s.device(1, 1);
    let mut stranger = s.device(2, 2);
    let content = s.publish(b"stands in for a video: the key is the content's either way");
    assert!(matches!(
        owner.clearkey_license(content),
        Err(WebError(Error::NoLicense(_)))
    ));
    s.buy(&mut owner, content);
    let license: serde_json::Value =
        serde_json::from_slice(&owner.clearkey_license(content).unwrap()).unwrap();
    let (kid, key) = owner.client().cenc_key(content.into_id()).unwrap();
    assert_eq!(license["keys"][0]["kty"], "oct");
    assert_eq!(license["keys"][0]["kid"], URL_SAFE_NO_PAD.encode(kid));
    assert_eq!(
        license["keys"][0]["k"],
        URL_SAFE_NO_PAD.encode(key.secret_bytes())
    );
    assert_eq!(WebDevice::key_id(content), kid);
    assert_eq!(
        status_license(&owner),
        owner
            .client()
            .license_id(content.into_id())
            .unwrap()
            .0
            .to_string()
    );
    // The stranger holds the container but no license: no key.
    stranger.store_content(&s.download(content)).unwrap();
    assert!(stranger.clearkey_license(content).is_err());

    // Moved to the stranger: the key is its own now, and the owner's is gone.
    let package = s.move_over(&mut owner, &mut stranger, content);
    assert!(owner.clearkey_license(content).is_err());
    let moved: serde_json::Value =
        serde_json::from_slice(&stranger.clearkey_license(content).unwrap()).unwrap();
    assert_eq!(moved, license);
    // The same package again is refused: no second copy.
    assert!(stranger.move_in(&package, NOW).is_err());
}

#[test]
fn bytes_from_anywhere_give_typed_errors() {
    let mut s = shop();
    let mut device = s.device(1, 1);
    let keys = device.keys();
    let state = device.save();
    let mut short = [1; 31];
    assert!(WebDevice::start_registration(&mut short, s.user, 1).is_err());
    assert_eq!(short, [0; 31], "a refused seed is zeroed too");
    let pending = WebDevice::start_registration(&mut [1; 32], s.user, 1).unwrap();
    assert!(pending.finish(b"not sealed").is_err());
    // Every cut of the keys and of the state is refused, never a panic; the keys are zeroed.
    for cut in 0..keys.len() {
        let mut cut_keys = keys[..cut].to_vec();
        assert!(
            WebDevice::load(&mut cut_keys, &state).is_err(),
            "keys cut at {cut}"
        );
        assert!(cut_keys.iter().all(|&b| b == 0));
    }
    for cut in 0..state.len() {
        assert!(
            WebDevice::load(&mut keys.to_vec(), &state[..cut]).is_err(),
            "state cut at {cut}"
        );
    }
    let mut other_version = keys.to_vec();
    other_version[4] = 2;
    assert!(WebDevice::load(&mut other_version, &state).is_err());
    for garbage in [&b""[..], b"TCMP", b"\x00\x01\x02", &[0xff; 300]] {
        assert!(device.store_ekb(garbage).is_err());
        assert!(device.acquire_license(garbage).is_err());
        assert!(device.store_content(garbage).is_err());
        assert!(device.move_out(garbage).is_err());
        assert!(device.move_in(garbage, NOW).is_err());
        assert!(device.update_server_keys(garbage).is_err());
        assert!(WebDevice::package_content(garbage).is_err());
        assert!(WebDevice::certificate_server(garbage).is_err());
    }
    assert!(device.move_request(99, 2, NOW).is_err());
    assert!(device.play(99, NOW).is_err());
    // Nothing of that changed the device.
    assert_eq!(device.save(), state);
}

fn status_license(device: &WebDevice) -> String {
    let status: serde_json::Value = serde_json::from_str(&device.status()).unwrap();
    status["licenses"][0]["license"]
        .as_str()
        .unwrap()
        .to_owned()
}

trait IntoId {
    fn into_id(self) -> treecast_protocol::ContentId;
}

impl IntoId for u64 {
    fn into_id(self) -> treecast_protocol::ContentId {
        treecast_protocol::ContentId(self)
    }
}
