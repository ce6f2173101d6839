//! A client device without its signing key: it stores contents, EKBs and licenses, plays, and
//! moves content out and in. [`Client`](super::Client) adds the signing key, which only requests
//! need.

use std::io::Write;
use std::sync::Arc;

use ed25519_dalek::VerifyingKey;
use treecast_keytree::{DeviceKeys, VerifiedEkbBuf};
use treecast_protocol::Error;
use treecast_protocol::certificate::{CopyCertificateIn, ReleaseKey};
use treecast_protocol::content::{self, ContentHeader, ContentKey};
use treecast_protocol::ids::{ClientId, ContentId, KeyId, LicenseId, ServerId, UserId};
use treecast_protocol::license::{LicenseIn, LicenseTbs, Rights};
use treecast_protocol::server::{ServerKeyListIn, ServerKeys};
use treecast_protocol::time::UnixTime;

use super::MovePackage;
use super::state::{ClientState, Held};

/// A client device without its signing key: everything a [`Client`](super::Client) does but
/// sign requests. Playing, storing, and receiving or releasing a move need no signature; a
/// device restored only for those ([`Device::restore`]) spares the base-point multiplication
/// that turning a stored seed into a signing key costs. A [`Client`](super::Client) is a
/// `Device` with its signing key, and dereferences to it.
///
/// ```
/// use std::sync::Arc;
/// use rand_chacha::ChaCha20Rng;
/// use rand_core::SeedableRng;
/// use treecast_keytree::{Authority, MasterSecret, Scheme, TreeConfig, TreeHeight, TreeId};
/// use treecast_device::{Client, Device};
/// use treecast_distributor::{Distributor, DistributorConfig, LicenseServer, Tariff};
/// use treecast_protocol::{Clock, Error, ManualClock, ServerId, SigningKey, UnixTime};
/// use treecast_registry::MemoryRegistry;
/// # fn main() -> Result<(), treecast_protocol::Error> {
/// let mut rng = ChaCha20Rng::seed_from_u64(1);
/// let height = TreeHeight::new(16)?;
/// let config = TreeConfig::new(Scheme::COMPLETE_SUBTREE, height, TreeId(1));
/// let clock = Arc::new(ManualClock::new(UnixTime(1_800_000_000)));
/// let authority = Authority::new(&MasterSecret::from_bytes([3; 32]), config)?;
/// let shop = Distributor::new(
///     authority.clone(),
///     [LicenseServer::generate(ServerId(1), &mut rng)],
///     MemoryRegistry::new(height),
///     Tariff::default(),
///     clock.clone(),
///     DistributorConfig::default(),
/// )?;
/// let user = shop.register_user()?;
/// let key = SigningKey::generate(&mut rng);
/// let registration = shop.register_client(user, ServerId(1), &key.verifying_key())?;
/// let (leaf, servers) = (registration.device_keys.leaf(), registration.servers.clone());
/// let mut client = Client::new(key.clone(), registration)?;
/// let mut container = Vec::new();
/// let content = shop.publish(&b"hello"[..], &mut container, &mut rng)?.id;
/// client.store_ekb(shop.current_ekb()?.1.as_bytes())?;
/// client.store_content(container)?;
/// let license = shop.supply_license(client.license_request(content, clock.now()).as_bytes())?;
/// client.acquire_license(license.as_bytes())?;
///
/// // Powered off, then on again without its signing key: it still plays.
/// let state = client.into_state();
/// let device = Device::restore(
///     authority.device_keys(leaf),
///     servers,
///     authority.verifying_key(),
///     state,
/// )?;
/// let mut played = Vec::new();
/// device.play(content, &mut played)?;
/// assert_eq!(played, b"hello");
///
/// // To sign again it needs its own key; another one is refused.
/// let other = SigningKey::generate(&mut rng);
/// assert!(matches!(
///     Client::from_device(device, other),
///     Err((Error::NotForThisClient, _))
/// ));
/// # Ok(()) }
/// ```
pub struct Device {
    pub(super) device_keys: DeviceKeys,
    pub(super) servers: Arc<ServerKeys>,
    pub(super) authority_key: VerifyingKey,
    pub(super) state: ClientState,
}

impl Device {
    /// A device again, from its saved state and its keys but the signing key: its device key
    /// set (for instance re-provisioned by the authority), the license servers' keys and the
    /// authority's key. See [`Client::restore`](super::Client::restore) for what a restored
    /// snapshot brings back. The servers' keys are taken as given: pass the ones the device
    /// held ([`Device::server_keys`], with the authority's lists it took, issue 29), or a key
    /// it had seen retired verifies again.
    ///
    /// # Errors
    /// [`Error::NotForThisClient`] when the device key set is not this client's (another leaf,
    /// another tree), or the servers' keys lack its own server.
    pub fn restore(
        device_keys: DeviceKeys,
        servers: Arc<ServerKeys>,
        authority_key: VerifyingKey,
        state: ClientState,
    ) -> Result<Self, Error> {
        if device_keys.leaf().get() != state.leaf || !servers.has_server(state.server) {
            return Err(Error::NotForThisClient);
        }
        if let Some(ekb) = state.stores().ekbs.values().next()
            && (ekb.header().config != *device_keys.config()
                || *ekb.verifying_key() != authority_key)
        {
            return Err(Error::NotForThisClient);
        }
        Ok(Self {
            device_keys,
            servers,
            authority_key,
            state,
        })
    }

    /// Saves the device's state and drops its keys (see [`ClientState`]).
    pub fn into_state(self) -> ClientState {
        self.state
    }

    /// The key `key_id` of this client's own license server.
    pub(super) fn server_key(&self, key_id: KeyId) -> Result<&VerifyingKey, Error> {
        self.servers.verifier(self.state.server, key_id)
    }

    /// The license servers' keys this device verifies with.
    pub fn server_keys(&self) -> &ServerKeys {
        &self.servers
    }

    /// Takes the authority's list of a license server's keys (issue 29; `GET
    /// /v1/servers/{id}/keys`): once it verifies under the authority's key and is newer than
    /// the list held, it replaces that server's keys. An object signed by a key it leaves out
    /// no longer verifies here; licenses held stay (they were verified on arrival).
    ///
    /// # Errors
    /// [`Error::Decode`]; [`Error::BadSignature`] for a list the authority did not sign;
    /// [`Error::StaleServerKeys`] for one no newer than the one held (nothing changes).
    pub fn update_server_keys(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let list = ServerKeyListIn::from_bytes(bytes)?.verify(&self.authority_key)?;
        Arc::make_mut(&mut self.servers).apply(list)
    }

    /// The client's ID.
    pub const fn id(&self) -> ClientId {
        self.state.id
    }

    /// The owner.
    pub const fn user(&self) -> UserId {
        self.state.user
    }

    /// The license server it registered with.
    pub const fn server(&self) -> ServerId {
        self.state.server
    }

    /// The authority's key, which EKBs must verify under.
    pub const fn authority_key(&self) -> &VerifyingKey {
        &self.authority_key
    }

    /// Its device key set.
    pub const fn device_keys(&self) -> &DeviceKeys {
        &self.device_keys
    }

    /// Stores a downloaded content container (claim 9).
    ///
    /// # Errors
    /// [`Error::Decode`] when it does not start with a valid container header.
    pub fn store_content(&mut self, container: impl Into<Arc<[u8]>>) -> Result<ContentId, Error> {
        let container = container.into();
        let header = content::header(&container)?;
        self.state
            .stores_mut()
            .contents
            .insert(header.content_id, container);
        Ok(header.content_id)
    }

    /// Deletes a stored container (to free space, say); the license, if any, stays. Returns
    /// whether there was one.
    pub fn remove_content(&mut self, content: ContentId) -> bool {
        self.state.stores_mut().contents.remove(&content).is_some()
    }

    /// Whether the client holds the content and a license for it.
    pub fn holds(&self, content: ContentId) -> bool {
        self.state.stores().contents.contains_key(&content)
            && self.state.stores().licenses.contains_key(&content)
    }

    /// The contents for which the client holds a license.
    pub fn licensed(&self) -> impl Iterator<Item = ContentId> + '_ {
        self.state.licensed()
    }

    /// The epoch of the license held for `content` when the client lacks that epoch's EKB (a
    /// revocation came between its last EKB and the license): the EKB to fetch before playing.
    pub fn missing_ekb(&self, content: ContentId) -> Option<u64> {
        let epoch = self.state.stores().licenses.get(&content)?.epoch;
        (!self.state.stores().ekbs.contains_key(&epoch)).then_some(epoch)
    }

    /// The ID of the license the client holds for `content`.
    pub fn license_id(&self, content: ContentId) -> Option<LicenseId> {
        self.state
            .stores()
            .licenses
            .get(&content)
            .map(|h| h.license_id)
    }

    /// Stores an EKB after verifying the authority's signature, once: plays open the stored,
    /// verified EKB.
    ///
    /// # Errors
    /// [`Error::Decode`] or [`Error::KeyTree`] (`BadSignature`).
    pub fn store_ekb(&mut self, bytes: &[u8]) -> Result<u64, Error> {
        let ekb = VerifiedEkbBuf::verify(bytes.to_vec(), &self.authority_key)?;
        self.store_verified_ekb(Arc::new(ekb))
    }

    /// Stores an EKB that was verified already, for instance once for many clients of one
    /// process. It must have been verified with this client's authority key.
    ///
    /// # Errors
    /// [`Error::KeyTree`]: `BadSignature` when it was verified with another key, `WrongTree`
    /// for an EKB of another tree (one authority key may sign several trees: a key in a token
    /// signs every tree of its key file, issue 29), which is not stored.
    pub fn store_verified_ekb(&mut self, ekb: Arc<VerifiedEkbBuf>) -> Result<u64, Error> {
        if *ekb.verifying_key() != self.authority_key {
            return Err(Error::KeyTree(treecast_keytree::Error::BadSignature));
        }
        if ekb.header().config != *self.device_keys.config() {
            return Err(Error::KeyTree(treecast_keytree::Error::WrongTree));
        }
        let epoch = ekb.header().epoch;
        self.state.stores_mut().ekbs.insert(epoch, ekb);
        Ok(epoch)
    }

    /// Stores a license (claim 9): it must verify under this client's server key and be for
    /// this client.
    ///
    /// # Errors
    /// [`Error::Decode`], [`Error::BadSignature`], [`Error::NotForThisClient`], or
    /// [`Error::LicenseMoved`] for a license this client moved away.
    pub fn acquire_license(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let license = LicenseIn::from_bytes(bytes)?;
        let key = self.server_key(license.key_id())?;
        let license = license.verify(key)?;
        self.accept_license(license.tbs(), None)
    }

    /// Plays `content`: opens the stored EKB of its license's epoch, unwraps the content key with
    /// the epoch key and the device key, decrypts and authenticates the content into `output`
    /// (claim 9). The license and the EKB were verified when they were stored.
    ///
    /// # Errors
    /// [`Error::NoLicense`], [`Error::RightsDenied`] for a license without the play right,
    /// [`Error::ContentNotFound`], [`Error::StaleEpoch`] when the EKB of the license's epoch is
    /// missing, [`Error::KeyTree`] (`Revoked`) for a revoked client, [`Error::UnwrapFailed`],
    /// [`Error::ContentCorrupt`]; [`Error::InvalidTerms`] for a license with terms (a rental,
    /// a loan, a subscription), which plays only with the time: [`Device::play_at`].
    pub fn play(&self, content: ContentId, output: impl Write) -> Result<ContentHeader, Error> {
        if self.state.timed(content).is_some() {
            return Err(Error::InvalidTerms(
                "this license has terms: it plays only with the time (play_at)",
            ));
        }
        self.decrypt(content, output)
    }

    /// The key ID and AES-128 key of `content` packaged with Common Encryption (issue 30,
    /// `docs/cenc.md`), from this client's license, which must allow play: what a browser's
    /// ClearKey module is given, and only from the device's own license (unwrapped as for
    /// [`Device::play`]: the epoch's EKB opened with this device's keys, the content key
    /// unwrapped with its device key). The protected MP4 itself is not needed.
    ///
    /// # Errors
    /// As [`Device::play`] but [`Error::ContentNotFound`]: [`Error::NoLicense`],
    /// [`Error::RightsDenied`], [`Error::StaleEpoch`], [`Error::KeyTree`] (`Revoked`),
    /// [`Error::UnwrapFailed`], [`Error::InvalidTerms`] for a license with terms.
    pub fn cenc_key(
        &self,
        content: ContentId,
    ) -> Result<([u8; 16], treecast_protocol::cenc::SampleKey), Error> {
        if self.state.timed(content).is_some() {
            return Err(Error::InvalidTerms(
                "a license with terms gives no key for a browser yet",
            ));
        }
        let held = self.playable(content)?;
        let key = self.unwrap_content_key(content, held)?;
        Ok((
            treecast_protocol::cenc::key_id(content),
            treecast_protocol::cenc::key(&key, content)?,
        ))
    }

    /// The license held for `content`, if it allows play.
    fn playable(&self, content: ContentId) -> Result<&Held, Error> {
        let held = self
            .state
            .stores()
            .licenses
            .get(&content)
            .ok_or(Error::NoLicense(content))?;
        if !held.rights.allows(Rights::PLAY) {
            return Err(Error::RightsDenied(held.license_id));
        }
        Ok(held)
    }

    /// The content key of `held`, the license for `content`: its epoch's stored EKB opened with
    /// this device's keys, the key unwrapped with its device key (and a move's release).
    fn unwrap_content_key(&self, content: ContentId, held: &Held) -> Result<ContentKey, Error> {
        let epoch = held.epoch;
        let ekb = self
            .state
            .stores()
            .ekbs
            .get(&epoch)
            .ok_or(Error::StaleEpoch {
                got: epoch,
                current: self.state.stores().ekbs.last().map_or(0, |(e, _)| *e),
            })?;
        let epoch_key = self.device_keys.open(&ekb.get())?;
        held.tbs(content, self.state.owner(), None).content_key(
            &epoch_key,
            self.device_keys.device_key(),
            self.state.moves().releases.get(&content),
        )
    }

    /// Decrypts `content` through its license, whatever its terms.
    pub(super) fn decrypt(
        &self,
        content: ContentId,
        output: impl Write,
    ) -> Result<ContentHeader, Error> {
        let held = self.playable(content)?;
        let container = self
            .state
            .stores()
            .contents
            .get(&content)
            .ok_or(Error::ContentNotFound(content))?;
        let content_key = self.unwrap_content_key(content, held)?;
        let header = content::open(&content_key, &container[..], output)?;
        if header.content_id != content {
            return Err(Error::ContentCorrupt);
        }
        Ok(header)
    }

    /// Moves content out with a copy certificate (claim 11). It first verifies the certificate
    /// with the key of the server that signed it (the destination's), and that it moves this
    /// client's license of this user; only then does it delete the license (and the container,
    /// if it holds it), remember the license as moved away, and return the release that lets
    /// the destination open the license the certificate carries. Nothing is changed when any
    /// check fails. The source does not need the container to move out.
    ///
    /// # Errors
    /// [`Error::Decode`]; [`Error::UnknownServer`] or [`Error::BadSignature`] for a certificate
    /// no license server of this distributor signed; [`Error::NotForThisClient`] for one that
    /// moves another client's license; [`Error::NoLicense`] when this client does not hold the
    /// license it names.
    ///
    /// A certificate this client already moved out with gives its package again (the same
    /// release, without the container) and changes nothing: the license is gone already, so a
    /// device that lost the package before the destination stored it (a crash, a lost
    /// answer) sends the same move request again and finishes the move (issue 24).
    pub fn move_out(&mut self, certificate: &[u8]) -> Result<MovePackage, Error> {
        let cert = CopyCertificateIn::from_bytes(certificate)?;
        let server = cert.unverified().server_id;
        let key = self.servers.verifier(server, cert.key_id())?;
        let cert = cert.verify(key)?;
        let t = cert.tbs();
        if t.source != self.state.id || t.user_id != self.state.user {
            return Err(Error::NotForThisClient);
        }
        let again = self.license_id(t.content_id) != Some(t.source_license);
        if again && !self.state.moves().moved_out.contains_key(&t.source_license) {
            return Err(Error::NoLicense(t.content_id));
        }
        let release = ReleaseKey::derive(
            self.device_keys.device_key(),
            t.certificate_id,
            t.source_license,
            t.destination,
        )?;
        if !release.opens(t) {
            // Signed by our distributor for this license, yet not releasable by this device:
            // refuse before deleting anything.
            return Err(Error::NotForThisClient);
        }
        if again {
            return Ok(MovePackage {
                certificate: certificate.to_vec(),
                content: None,
                release,
            });
        }
        // The license's issue time and the certificate's stay trusted after the license goes.
        self.state.keep_time_of(t.content_id);
        if self.state.moves().timed.contains_key(&t.content_id) {
            self.state.moves_mut().timed.remove(&t.content_id);
        }
        let stores = self.state.stores_mut();
        stores.licenses.remove(&t.content_id);
        let content = stores.contents.remove(&t.content_id);
        let moves = self.state.moves_mut();
        moves.releases.remove(&t.content_id);
        moves.moved_out.insert(t.source_license, ());
        self.state.trust(t.issued_at);
        Ok(MovePackage {
            certificate: certificate.to_vec(),
            content,
            release,
        })
    }

    /// Moves content in (claims 10–12): verifies the certificate with this client's server key,
    /// checks it is addressed to this client, unexpired and unused, that the package carries the
    /// source's release for it, verifies the license it carries, and stores the license (and the
    /// container, if the package has it; otherwise the client downloads it).
    ///
    /// # Errors
    /// [`Error::Decode`], [`Error::BadSignature`] (a falsified certificate, or one signed by
    /// another server), [`Error::NotForThisClient`], [`Error::CertificateExpired`],
    /// [`Error::CertificateReplayed`], [`Error::NotReleased`] when the release is missing or
    /// wrong (the source has not moved out), [`Error::ContentCorrupt`] when the container is not
    /// the certified content.
    pub fn move_in(&mut self, package: &MovePackage, now: UnixTime) -> Result<(), Error> {
        let cert = CopyCertificateIn::from_bytes(&package.certificate)?;
        let key = self.server_key(cert.key_id())?;
        let cert = cert.verify(key)?;
        let t = cert.tbs();
        if t.destination != self.state.id || t.user_id != self.state.user {
            return Err(Error::NotForThisClient);
        }
        let trusted = self.state.trusted_time();
        if now < trusted {
            return Err(Error::ClockSetBack {
                clock: now,
                trusted,
            });
        }
        if now > t.expires_at {
            return Err(Error::CertificateExpired);
        }
        if self
            .state
            .moves()
            .used_certificates
            .contains_key(&t.certificate_id)
        {
            return Err(Error::CertificateReplayed(t.certificate_id));
        }
        if !package.release.opens(t) {
            return Err(Error::NotReleased);
        }
        let license = t.license()?;
        let key = self.server_key(license.key_id())?;
        let license = license.verify(key)?;
        if license.tbs().content_id != t.content_id {
            return Err(Error::ContentCorrupt);
        }
        if let Some(container) = &package.content
            && content::header(container)?.content_id != t.content_id
        {
            return Err(Error::ContentCorrupt);
        }
        self.accept_license(license.tbs(), Some(package.release.clone()))?;
        self.state.trust(t.issued_at);
        self.state
            .moves_mut()
            .used_certificates
            .insert(t.certificate_id, ());
        if let Some(container) = &package.content {
            self.state
                .stores_mut()
                .contents
                .insert(t.content_id, container.clone());
        }
        Ok(())
    }

    /// Stores a license whose signature was verified (or, loading a saved state, whose seal
    /// was), with the release it came with if it arrived by a move.
    pub(super) fn accept_license(
        &mut self,
        t: &LicenseTbs,
        release: Option<ReleaseKey>,
    ) -> Result<(), Error> {
        if t.client_id != self.state.id {
            return Err(Error::NotForThisClient);
        }
        if self.state.moves().moved_out.contains_key(&t.license_id) {
            return Err(Error::LicenseMoved(t.license_id));
        }
        let content = t.content_id;
        let held = Held::new(t, self.state.owner())?;
        // The same license again (renewed, or acquired twice) keeps its move's release.
        let same = self.license_id(content) == Some(t.license_id);
        // A license it replaces keeps counting for the trusted time.
        self.state.keep_time_of(content);
        self.state.stores_mut().licenses.insert(content, held);
        match t.terms {
            Some(terms) => {
                // A window it started before, if it is the same license, stays started.
                self.state.moves_mut().timed.insert(content, terms);
            }
            None => {
                if self.state.moves().timed.contains_key(&content) {
                    self.state.moves_mut().timed.remove(&content);
                }
            }
        }
        match release {
            Some(release) => {
                self.state.moves_mut().releases.insert(content, release);
            }
            None => {
                // A bought license replaces a moved-in one's release, if any; looked up first so
                // that a client that never moved gets no move records for it.
                if !same && self.state.moves().releases.contains_key(&content) {
                    self.state.moves_mut().releases.remove(&content);
                }
            }
        }
        Ok(())
    }
}

impl core::fmt::Debug for Device {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Device")
            .field("id", &self.state.id)
            .field("user", &self.state.user)
            .field("server", &self.state.server)
            .field("contents", &self.state.stores().contents.len())
            .field("licenses", &self.state.stores().licenses.len())
            .finish_non_exhaustive()
    }
}
