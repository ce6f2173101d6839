//! A small world for the end-to-end tests: a distributor with two license servers on an
//! in-memory registry, a manual clock, and seeded randomness.

use std::sync::Arc;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use treecast::keytree::{Authority, MasterSecret, Scheme, TreeConfig, TreeHeight, TreeId};
use treecast::license::registry::{LicenseRecord, Registry};
use treecast::license::{
    Client, ClientId, Clock, ContentId, Device, Distributor, DistributorConfig, LicenseServer,
    ManualClock, MemoryRegistry, MovePackage, ServerId, SigningKey, Tariff, UnixTime, UserId,
};

pub(crate) const LICENSE_PRICE: u64 = 500;
pub(crate) const CERTIFICATE_PRICE: u64 = 120;
pub(crate) const START: UnixTime = UnixTime(1_800_000_000);

pub(crate) struct World<R = MemoryRegistry> {
    pub(crate) distributor: Distributor<R>,
    pub(crate) clock: Arc<ManualClock>,
    pub(crate) rng: ChaCha20Rng,
    /// Published contents and their containers.
    pub(crate) contents: Vec<(ContentId, Vec<u8>)>,
    /// What the store needs kept alive as long as the world (a temporary directory).
    pub(crate) keep: Vec<Box<dyn std::any::Any + Send + Sync>>,
}

impl World {
    pub(crate) fn new(scheme: Scheme) -> Self {
        World::with_registry(scheme, MemoryRegistry::new(TreeHeight::new(16).unwrap()))
    }
}

impl<R: Registry> World<R> {
    /// A world on `registry`, which must be for a height-16 tree.
    pub(crate) fn with_registry(scheme: Scheme, registry: R) -> Self {
        Self::with_tariff(
            scheme,
            registry,
            Tariff::new(LICENSE_PRICE, CERTIFICATE_PRICE),
        )
    }

    /// As [`World::with_registry`], selling at `tariff`.
    pub(crate) fn with_tariff(scheme: Scheme, registry: R, tariff: Tariff) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let height = TreeHeight::new(16).unwrap();
        let authority = Authority::new(
            &MasterSecret::generate(&mut rng),
            TreeConfig::new(scheme, height, TreeId(3)),
        )
        .unwrap();
        let servers = [
            LicenseServer::generate(ServerId(1), &mut rng),
            LicenseServer::generate(ServerId(2), &mut rng),
        ];
        let clock = Arc::new(ManualClock::new(START));
        let config = DistributorConfig::default().with_max_clients_per_user(3);
        let distributor =
            Distributor::new(authority, servers, registry, tariff, clock.clone(), config).unwrap();
        Self {
            distributor,
            clock,
            rng,
            contents: Vec::new(),
            keep: Vec::new(),
        }
    }

    pub(crate) fn user(&mut self) -> UserId {
        self.distributor.register_user().unwrap()
    }

    /// A client of `user` registered with `server`, holding the current EKB.
    pub(crate) fn client(&mut self, user: UserId, server: u32) -> Client {
        self.client_with_key(user, server).0
    }

    /// As [`World::client`], with a copy of the client's signing key (to sign requests by hand).
    pub(crate) fn client_with_key(&mut self, user: UserId, server: u32) -> (Client, SigningKey) {
        let key = SigningKey::generate(&mut self.rng);
        let copy = key.clone();
        let registration = self
            .distributor
            .register_client(user, ServerId(server), &key.verifying_key())
            .unwrap();
        let mut client = Client::new(key, registration).unwrap();
        self.give_current_ekb(&mut client);
        (client, copy)
    }

    pub(crate) fn give_current_ekb(&self, client: &mut Client) {
        let (_, ekb) = self.distributor.current_ekb().unwrap();
        client.store_ekb(ekb.as_bytes()).unwrap();
    }

    /// Publishes `len` bytes of content; returns its ID.
    pub(crate) fn publish(&mut self, len: usize) -> ContentId {
        self.publish_result(len).unwrap()
    }

    /// As [`World::publish`], returning the distributor's error.
    pub(crate) fn publish_result(
        &mut self,
        len: usize,
    ) -> Result<ContentId, treecast::license::Error> {
        let plain = Self::plaintext(self.contents.len() as u64, len);
        let mut container = Vec::new();
        let record = self
            .distributor
            .publish(&plain[..], &mut container, &mut self.rng)?;
        self.contents.push((record.id, container));
        Ok(record.id)
    }

    pub(crate) fn plaintext(seed: u64, len: usize) -> Vec<u8> {
        (0..len as u64)
            .map(|i| (i.wrapping_mul(seed + 13) % 251) as u8)
            .collect()
    }

    pub(crate) fn container(&self, content: ContentId) -> Vec<u8> {
        self.contents
            .iter()
            .find(|(id, _)| *id == content)
            .unwrap()
            .1
            .clone()
    }

    /// Downloads and buys `content` on `client`.
    pub(crate) fn buy(&mut self, client: &mut Client, content: ContentId) {
        self.distributor
            .supply_content(client.user(), content)
            .unwrap();
        client.store_content(self.container(content)).unwrap();
        let request = client.license_request(content, self.clock.now());
        let license = self.distributor.supply_license(request.as_bytes()).unwrap();
        client.acquire_license(license.as_bytes()).unwrap();
    }

    /// The certificate for moving `content` from `source` to `destination`.
    pub(crate) fn certificate(
        &self,
        source: &mut Client,
        content: ContentId,
        destination: ClientId,
    ) -> Result<Vec<u8>, treecast::license::Error> {
        let license = source
            .license_id(content)
            .ok_or(treecast::license::Error::NoLicense(content))?;
        let request = source.move_request(license, destination, self.clock.now());
        Ok(self
            .distributor
            .supply_certificate(request.as_bytes())?
            .as_bytes()
            .to_vec())
    }

    /// The whole move: request, certificate, move out, move in.
    pub(crate) fn move_content(
        &self,
        source: &mut Client,
        destination: &mut Device,
        content: ContentId,
    ) -> Result<MovePackage, treecast::license::Error> {
        let certificate = self.certificate(source, content, destination.id())?;
        let package = source.move_out(&certificate)?;
        destination.move_in(&package, self.clock.now())?;
        Ok(package)
    }

    /// Plays `content` on `client` and checks the plaintext.
    pub(crate) fn play(
        &self,
        client: &Device,
        content: ContentId,
    ) -> Result<(), treecast::license::Error> {
        let mut out = Vec::new();
        client.play(content, &mut out)?;
        let index = self
            .contents
            .iter()
            .position(|(id, _)| *id == content)
            .unwrap() as u64;
        let len = out.len();
        assert_eq!(out, Self::plaintext(index, len), "played bytes differ");
        Ok(())
    }

    /// Everything the registry holds, for checking that a refused operation changed nothing.
    pub(crate) fn snapshot(&self) -> String {
        let r = self.distributor.registry();
        let mut s = format!("epoch {:?}\n", r.epoch());
        s += &format!(
            "ledger {:?}\nhistory {:?}\n",
            r.ledger(),
            r.certificate_history()
        );
        // Without the rows' tags: they are the distributor's, and a store with no outside
        // writers keeps none (`Registry::has_outside_writers`); `check_stored_rows` checks them
        // where they are kept.
        let untagged_license = |mut l: LicenseRecord| {
            l.tag = [0; 32];
            l
        };
        for l in r.all_licenses().unwrap() {
            let read = r.license(l.id).map(|l| l.map(untagged_license));
            s += &format!("{:?} {:?}\n", read, untagged_license(l));
        }
        for id in 1..64 {
            let read = r.client(ClientId(id)).map(|c| {
                c.map(|mut c| {
                    c.tag = [0; 32];
                    c
                })
            });
            s += &format!("{read:?}\n");
        }
        for user in 1..8 {
            let u = UserId(user);
            s += &format!(
                "{:?} {:?} {:?} {:?} {:?}\n",
                r.clients_of(u),
                r.contents_of_user(u),
                r.licenses_of_user(u),
                r.user_total(u),
                r.licenses_of_content(ContentId(user))
            );
        }
        s += &format!("{:?} {:?}", r.revoked_leaves(), r.contents());
        s
    }
}
