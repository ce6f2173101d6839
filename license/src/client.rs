//! The client device (claims 9–12): it downloads and stores content, acquires licenses, plays,
//! requests copy certificates, and moves content out and in.

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::Arc;

use ed25519_dalek::{SigningKey, VerifyingKey};
use litemap::LiteMap;
use treecast_keytree::{DeviceKeys, VerifiedEkbBuf};

use crate::Error;
use crate::certificate::{
    CopyCertificateIn, LicenseRequest, LicenseRequestTbs, MoveRequest, MoveRequestTbs, ReleaseKey,
};
use crate::content::{self, ContentHeader};
use crate::distributor::Registration;
use crate::ids::{CertificateId, ClientId, ContentId, LicenseId, ServerId, UserId};
use crate::license::{License, LicenseIn, LicenseTbs, Rights};
use crate::server::ServerKeys;
use crate::sign::{SIGNATURE_LEN, Signable};
use crate::time::UnixTime;

mod saved;

/// What a source client hands to the destination when it moves content out: the copy
/// certificate, the release that only the source can make (after deleting its copy), and the
/// container if the source held it (the container is public: the destination can download it
/// instead).
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct MovePackage {
    /// The encoded copy certificate.
    pub certificate: Vec<u8>,
    /// The content container, if the source held it.
    pub content: Option<Arc<[u8]>>,
    /// The source's release of the license the certificate carries (secret until used).
    pub release: ReleaseKey,
}

impl MovePackage {
    /// A package as received from a source client.
    pub fn new(certificate: Vec<u8>, content: Option<Arc<[u8]>>, release: ReleaseKey) -> Self {
        Self {
            certificate,
            content,
            release,
        }
    }
}

/// A client device. It keeps its keys, its contents and licenses, the EKBs it needs, the copy
/// certificates it has used (single use) and the licenses it moved away (never to be taken back).
///
/// [`Distributor`](crate::Distributor) shows a client buying and playing; the README adds a
/// move and a revocation.
pub struct Client {
    signing_key: SigningKey,
    device_keys: DeviceKeys,
    servers: Arc<ServerKeys>,
    authority_key: VerifyingKey,
    state: ClientState,
}

/// What a client keeps in its own storage besides its keys: its identity, contents, licenses,
/// verified EKBs, used certificates, moved-away licenses and request counter.
///
/// A device that powers off saves it ([`Client::into_state`]) and restores it later with its
/// keys ([`Client::restore`]), without verifying its licenses and EKBs again: they were verified
/// when they were stored, and only a [`Client`] makes a `ClientState`. The simulator keeps
/// millions of clients this way, with their key sets re-provisioned by the authority when they
/// act.
#[derive(Clone)]
pub struct ClientState {
    id: ClientId,
    user: UserId,
    server: ServerId,
    leaf: u32,
    /// The first bytes of the client's public key: enough for [`Client::restore`] to tell a
    /// signing key that is not this client's, in a quarter of the space (the certificate and the
    /// registry keep the whole key).
    key_check: [u8; KEY_CHECK_LEN],
    /// What the client stores; boxed, and absent while empty, so that an idle client costs
    /// 8 bytes for it.
    stores: Option<Box<Stores>>,
    next_nonce: u64,
}

/// A client's collections. Sorted vectors, not B-trees: a client holds a few of each, and a
/// B-tree node is allocated for 11 entries (4 KiB for licenses), which millions of clients
/// cannot afford.
#[derive(Clone, Default)]
struct Stores {
    contents: LiteMap<ContentId, Arc<[u8]>>,
    licenses: LiteMap<ContentId, Held>,
    ekbs: LiteMap<u64, Arc<VerifiedEkbBuf>>,
    /// Boxed, and absent until the client takes part in a move, which most never do: 32 bytes
    /// less for each client that holds something.
    moves: Option<Box<Moves>>,
}

/// What a client remembers of its moves.
#[derive(Clone, Default)]
struct Moves {
    used_certificates: LiteMap<CertificateId, ()>,
    moved_out: LiteMap<LicenseId, ()>,
}

/// The moves of a client that took part in none.
static NO_MOVES: Moves = Moves {
    used_certificates: LiteMap::new(),
    moved_out: LiteMap::new(),
};

impl Moves {
    fn is_empty(&self) -> bool {
        self.used_certificates.is_empty() && self.moved_out.is_empty()
    }
}

impl Stores {
    fn moves(&self) -> &Moves {
        self.moves.as_deref().unwrap_or(&NO_MOVES)
    }

    fn moves_mut(&mut self) -> &mut Moves {
        self.moves.get_or_insert_with(Box::default)
    }

    fn is_empty(&self) -> bool {
        self.contents.is_empty()
            && self.licenses.is_empty()
            && self.ekbs.is_empty()
            && self.moves().is_empty()
    }
}

/// A license the client holds, with the release it came with if it arrived by a move. Its
/// signature was verified when it arrived; the fields and the signature are kept, and the
/// encoding is made again when the state is saved (no vector on the heap: about 150 bytes less
/// per license).
#[derive(Clone)]
struct Held {
    license: LicenseTbs,
    signature: [u8; SIGNATURE_LEN],
    release: Option<ReleaseKey>,
}

impl Held {
    /// What the client keeps of `license`, which must encode again to its own bytes (every
    /// license the servers sign does; the encoding has one form for each license).
    fn new(license: &License, release: Option<ReleaseKey>) -> Result<Self, Error> {
        let bytes = license.as_bytes();
        let at = bytes
            .len()
            .checked_sub(SIGNATURE_LEN)
            .ok_or(Error::Internal("a license without a signature"))?;
        let signature: [u8; SIGNATURE_LEN] = bytes
            .get(at..)
            .and_then(|s| s.try_into().ok())
            .ok_or(Error::Internal("a license without a signature"))?;
        let held = Self {
            license: license.tbs().clone(),
            signature,
            release,
        };
        if held.encoded() != bytes {
            return Err(treecast_keytree::DecodeError::InvalidValue("license encoding").into());
        }
        Ok(held)
    }

    /// The license's encoding: the fields, then the signature.
    fn encoded(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(LicenseTbs::MAX_LEN + SIGNATURE_LEN);
        self.license.encode(&mut bytes);
        bytes.extend_from_slice(&self.signature);
        bytes
    }
}

/// Bytes of the public key a saved state keeps.
const KEY_CHECK_LEN: usize = 8;

/// What a saved state keeps of a public key.
fn key_check(public_key: &[u8; 32]) -> [u8; KEY_CHECK_LEN] {
    let mut check = [0; KEY_CHECK_LEN];
    check.copy_from_slice(&public_key[..KEY_CHECK_LEN]);
    check
}

/// The stores of a client that holds nothing.
static EMPTY: Stores = Stores {
    contents: LiteMap::new(),
    licenses: LiteMap::new(),
    ekbs: LiteMap::new(),
    moves: None,
};

impl ClientState {
    /// The client's ID.
    pub const fn id(&self) -> ClientId {
        self.id
    }

    /// Whether the client holds a license.
    pub fn holds_licenses(&self) -> bool {
        !self.stores().licenses.is_empty()
    }

    /// The contents for which the client holds a license.
    pub fn licensed(&self) -> impl Iterator<Item = ContentId> + '_ {
        self.stores().licenses.keys().copied()
    }

    /// Makes the state as small as it can be for storage: drops the EKBs of epochs no held
    /// license needs (keeping the newest, unless the client holds nothing) and frees the spare
    /// capacity of every collection.
    pub fn compact(&mut self) {
        let Some(s) = self.stores.as_deref_mut() else {
            return;
        };
        let newest = s.ekbs.last().map(|(e, _)| *e);
        let needed: BTreeSet<u64> = s.licenses.values().map(|h| h.license.epoch).collect();
        s.ekbs
            .retain(|e, _| needed.contains(e) || Some(*e) == newest);
        if s.licenses.is_empty() && s.contents.is_empty() {
            // Nothing to play: no EKB to keep either.
            s.ekbs.clear();
        }
        shrink(&mut s.contents);
        shrink(&mut s.licenses);
        shrink(&mut s.ekbs);
        if let Some(moves) = s.moves.as_deref_mut() {
            shrink(&mut moves.used_certificates);
            shrink(&mut moves.moved_out);
        }
        if s.moves.as_deref().is_some_and(Moves::is_empty) {
            s.moves = None;
        }
        if s.is_empty() {
            self.stores = None;
        }
    }

    fn stores(&self) -> &Stores {
        self.stores.as_deref().unwrap_or(&EMPTY)
    }

    fn stores_mut(&mut self) -> &mut Stores {
        self.stores.get_or_insert_with(Box::default)
    }
}

/// Frees a sorted map's spare capacity (a vector grows to 4 entries on its first insert).
fn shrink<K, V>(map: &mut LiteMap<K, V>) {
    let mut entries = core::mem::take(map).into_tuple_vec();
    entries.shrink_to_fit();
    *map = LiteMap::from_sorted_store_unchecked(entries);
}

impl core::fmt::Debug for ClientState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ClientState")
            .field("id", &self.id)
            .field("licenses", &self.stores().licenses.len())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client from its signing key and what registration returned.
    ///
    /// The certificate must name this client, its leaf, its server and its public key. Its
    /// signature is not checked here: the registration carries the server key alongside it, so
    /// a signature check with that key would prove nothing the channel did not already vouch
    /// for (`docs/design.md`). Licenses and certificates are verified when they arrive.
    ///
    /// # Errors
    /// [`Error::NotForThisClient`] when the registration's certificate is for another key,
    /// client, leaf or server; [`Error::Decode`] when it does not decode.
    pub fn new(signing_key: SigningKey, registration: Registration) -> Result<Self, Error> {
        let certificate = crate::certificate::ClientCertificateIn::from_bytes(
            registration.certificate.as_bytes(),
        )?;
        let c = certificate.unverified();
        let public_key = signing_key.verifying_key().to_bytes();
        if c.public_key != public_key
            || c.client_id != registration.client_id
            || c.user_id != registration.user_id
            || c.server_id != registration.server_id
            || c.leaf != registration.device_keys.leaf().get()
            || registration.servers.get(c.server_id).is_none()
        {
            return Err(Error::NotForThisClient);
        }
        Ok(Self {
            signing_key,
            state: ClientState {
                id: registration.client_id,
                user: registration.user_id,
                server: registration.server_id,
                leaf: c.leaf,
                key_check: key_check(&public_key),
                stores: None,
                next_nonce: 1,
            },
            device_keys: registration.device_keys,
            servers: registration.servers,
            authority_key: registration.authority_key,
        })
    }

    /// Saves the client's state and drops its keys (see [`ClientState`]).
    pub fn into_state(self) -> ClientState {
        self.state
    }

    /// A client again, from its saved state and its keys: its signing key, its device key set
    /// (for instance re-provisioned by the authority), the license servers' keys and the
    /// authority's key.
    ///
    /// A device that restores an older snapshot of its state gets back what it held then,
    /// licenses it has moved out since included: only storage the device cannot roll back (a
    /// monotonic counter in secure storage) stops that (`docs/threat-model.md`).
    ///
    /// # Errors
    /// [`Error::NotForThisClient`] when the signing key or the device key set is not this
    /// client's (another leaf, another tree), or the servers' keys lack its own server.
    pub fn restore(
        signing_key: SigningKey,
        device_keys: DeviceKeys,
        servers: Arc<ServerKeys>,
        authority_key: VerifyingKey,
        state: ClientState,
    ) -> Result<Self, Error> {
        if key_check(&signing_key.verifying_key().to_bytes()) != state.key_check
            || device_keys.leaf().get() != state.leaf
            || servers.get(state.server).is_none()
        {
            return Err(Error::NotForThisClient);
        }
        if let Some(ekb) = state.stores().ekbs.values().next()
            && (ekb.header().config != *device_keys.config()
                || *ekb.verifying_key() != authority_key)
        {
            return Err(Error::NotForThisClient);
        }
        Ok(Self {
            signing_key,
            device_keys,
            servers,
            authority_key,
            state,
        })
    }

    /// The key of this client's own license server.
    fn server_key(&self) -> Result<&VerifyingKey, Error> {
        self.servers
            .get(self.state.server)
            .ok_or(Error::UnknownServer(self.state.server))
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
        let epoch = self.state.stores().licenses.get(&content)?.license.epoch;
        (!self.state.stores().ekbs.contains_key(&epoch)).then_some(epoch)
    }

    /// The ID of the license the client holds for `content`.
    pub fn license_id(&self, content: ContentId) -> Option<LicenseId> {
        self.state
            .stores()
            .licenses
            .get(&content)
            .map(|h| h.license.license_id)
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
    /// [`Error::KeyTree`] (`BadSignature`) when it was verified with another key.
    pub fn store_verified_ekb(&mut self, ekb: Arc<VerifiedEkbBuf>) -> Result<u64, Error> {
        if *ekb.verifying_key() != self.authority_key {
            return Err(Error::KeyTree(treecast_keytree::Error::BadSignature));
        }
        let epoch = ekb.header().epoch;
        self.state.stores_mut().ekbs.insert(epoch, ekb);
        Ok(epoch)
    }

    /// A signed request for a license to `content`.
    pub fn license_request(&mut self, content: ContentId, now: UnixTime) -> LicenseRequest {
        let nonce = self.nonce();
        LicenseRequestTbs::new(self.state.id, content, nonce, now).sign(&self.signing_key)
    }

    /// Stores a license (claim 9): it must verify under this client's server key and be for
    /// this client.
    ///
    /// # Errors
    /// [`Error::Decode`], [`Error::BadSignature`], [`Error::NotForThisClient`], or
    /// [`Error::LicenseMoved`] for a license this client moved away.
    pub fn acquire_license(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let license = LicenseIn::from_bytes(bytes)?.verify(self.server_key()?)?;
        self.accept_license(license, None)
    }

    /// Plays `content`: opens the stored EKB of its license's epoch, unwraps the content key with
    /// the epoch key and the device key, decrypts and authenticates the content into `output`
    /// (claim 9). The license and the EKB were verified when they were stored.
    ///
    /// # Errors
    /// [`Error::NoLicense`], [`Error::RightsDenied`] for a license without the play right,
    /// [`Error::ContentNotFound`], [`Error::StaleEpoch`] when the EKB of the license's epoch is
    /// missing, [`Error::KeyTree`] (`Revoked`) for a revoked client, [`Error::UnwrapFailed`],
    /// [`Error::ContentCorrupt`].
    pub fn play(&self, content: ContentId, output: impl Write) -> Result<ContentHeader, Error> {
        let held = self
            .state
            .stores()
            .licenses
            .get(&content)
            .ok_or(Error::NoLicense(content))?;
        let license = &held.license;
        if !license.rights.allows(Rights::PLAY) {
            return Err(Error::RightsDenied(license.license_id));
        }
        let container = self
            .state
            .stores()
            .contents
            .get(&content)
            .ok_or(Error::ContentNotFound(content))?;
        let epoch = license.epoch;
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
        let content_key = license.content_key(
            &epoch_key,
            self.device_keys.device_key(),
            held.release.as_ref(),
        )?;
        let header = content::open(&content_key, &container[..], output)?;
        if header.content_id != content {
            return Err(Error::ContentCorrupt);
        }
        Ok(header)
    }

    /// A signed request to move the content of `license` to `destination` (claim 11). The
    /// server checks that this client holds it.
    pub fn move_request(
        &mut self,
        license: LicenseId,
        destination: ClientId,
        now: UnixTime,
    ) -> MoveRequest {
        let nonce = self.nonce();
        MoveRequestTbs::new(license, self.state.id, destination, nonce, now).sign(&self.signing_key)
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
    pub fn move_out(&mut self, certificate: &[u8]) -> Result<MovePackage, Error> {
        let cert = CopyCertificateIn::from_bytes(certificate)?;
        let server = cert.unverified().server_id;
        let key = self
            .servers
            .get(server)
            .ok_or(Error::UnknownServer(server))?;
        let cert = cert.verify(key)?;
        let t = cert.tbs();
        if t.source != self.state.id || t.user_id != self.state.user {
            return Err(Error::NotForThisClient);
        }
        if self.license_id(t.content_id) != Some(t.source_license) {
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
        let stores = self.state.stores_mut();
        stores.licenses.remove(&t.content_id);
        let content = stores.contents.remove(&t.content_id);
        stores.moves_mut().moved_out.insert(t.source_license, ());
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
        let cert =
            CopyCertificateIn::from_bytes(&package.certificate)?.verify(self.server_key()?)?;
        let t = cert.tbs();
        if t.destination != self.state.id || t.user_id != self.state.user {
            return Err(Error::NotForThisClient);
        }
        if now > t.expires_at {
            return Err(Error::CertificateExpired);
        }
        if self
            .state
            .stores()
            .moves()
            .used_certificates
            .contains_key(&t.certificate_id)
        {
            return Err(Error::CertificateReplayed(t.certificate_id));
        }
        if !package.release.opens(t) {
            return Err(Error::NotReleased);
        }
        let license = t.license()?.verify(self.server_key()?)?;
        if license.tbs().content_id != t.content_id {
            return Err(Error::ContentCorrupt);
        }
        if let Some(container) = &package.content
            && content::header(container)?.content_id != t.content_id
        {
            return Err(Error::ContentCorrupt);
        }
        self.accept_license(license, Some(package.release.clone()))?;
        let stores = self.state.stores_mut();
        stores
            .moves_mut()
            .used_certificates
            .insert(t.certificate_id, ());
        if let Some(container) = &package.content {
            stores.contents.insert(t.content_id, container.clone());
        }
        Ok(())
    }

    fn accept_license(
        &mut self,
        license: License,
        release: Option<ReleaseKey>,
    ) -> Result<(), Error> {
        let t = license.tbs();
        if t.client_id != self.state.id {
            return Err(Error::NotForThisClient);
        }
        if self
            .state
            .stores()
            .moves()
            .moved_out
            .contains_key(&t.license_id)
        {
            return Err(Error::LicenseMoved(t.license_id));
        }
        let content = t.content_id;
        let held = Held::new(&license, release)?;
        self.state.stores_mut().licenses.insert(content, held);
        Ok(())
    }

    fn nonce(&mut self) -> u64 {
        let n = self.state.next_nonce;
        self.state.next_nonce += 1;
        n
    }
}

impl core::fmt::Debug for Client {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Client")
            .field("id", &self.state.id)
            .field("user", &self.state.user)
            .field("server", &self.state.server)
            .field("contents", &self.state.stores().contents.len())
            .field("licenses", &self.state.stores().licenses.len())
            .finish_non_exhaustive()
    }
}
