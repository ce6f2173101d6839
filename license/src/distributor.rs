//! The distributor: registration, content supply, license supply and copy-certificate supply
//! (claim 1), on one key tree, several license servers (claim 3), a registry (claims 5, 6) and a
//! tariff (claims 7, 8).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::{Arc, RwLock};

use aes::Aes128;
use aes::cipher::KeyInit;
use aes_kw::AesKw;
use ed25519_dalek::VerifyingKey;
use rand_core::CryptoRng;
use rayon::prelude::*;
use treecast_keytree::{Authority, DeviceKeys, PayloadKey, RevocationSet, SignedEkb};
use zeroize::Zeroizing;

use crate::Error;
use crate::billing::{Charge, ChargeKind, Tariff};
use crate::certificate::{
    ClientCertificate, ClientCertificateTbs, CopyCertificate, CopyCertificateTbs,
    LicenseRequestTbs, MoveRequestTbs,
};
use crate::content::{self, ContentKey};
use crate::ids::{ClientId, ContentId, ServerId, UserId};
use crate::kdf;
use crate::license::{License, LicenseTbs, Rights};
use crate::registry::{CertificateRecord, ContentRecord, LicenseRecord, MoveIntent, Registry};
use crate::server::LicenseServer;
use crate::sign::{Signable, Unverified};
use crate::time::Clock;

/// Operating limits.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct DistributorConfig {
    /// The most non-revoked clients a user may have.
    pub max_clients_per_user: usize,
    /// How long a copy certificate stays valid, in seconds.
    pub certificate_validity: u64,
    /// The chunk size of packaged content.
    pub chunk_size: u32,
}

impl DistributorConfig {
    /// The defaults with another client limit.
    #[must_use]
    pub const fn with_max_clients_per_user(mut self, max: usize) -> Self {
        self.max_clients_per_user = max;
        self
    }

    /// The defaults with another certificate validity, in seconds.
    #[must_use]
    pub const fn with_certificate_validity(mut self, seconds: u64) -> Self {
        self.certificate_validity = seconds;
        self
    }

    /// The defaults with another content chunk size (a power of two, 1 KiB to 16 MiB).
    #[must_use]
    pub const fn with_chunk_size(mut self, chunk_size: u32) -> Self {
        self.chunk_size = chunk_size;
        self
    }
}

impl Default for DistributorConfig {
    /// Five clients a user, certificates valid for an hour, 64 KiB chunks.
    fn default() -> Self {
        Self {
            max_clients_per_user: 5,
            certificate_validity: 3600,
            chunk_size: content::DEFAULT_CHUNK,
        }
    }
}

/// What a newly registered client receives (claims 3, 10, 12).
#[derive(Debug)]
#[non_exhaustive]
pub struct Registration {
    /// The client's ID.
    pub client_id: ClientId,
    /// Its owner.
    pub user_id: UserId,
    /// Its license server.
    pub server_id: ServerId,
    /// Its key-tree key set (secret).
    pub device_keys: DeviceKeys,
    /// Its public-key certificate, signed by its server.
    pub certificate: ClientCertificate,
    /// Its server's public key, to verify licenses and copy certificates.
    pub server_key: VerifyingKey,
    /// The authority's public key, to verify EKBs.
    pub authority_key: VerifyingKey,
}

/// The contents distribution system of one distributor.
///
/// A user buys a content on one client and moves it to another; the README has the whole flow
/// with plays and a revocation, and `examples/distributor.rs` narrates it.
///
/// ```
/// use std::sync::Arc;
/// use rand_chacha::ChaCha20Rng;
/// use rand_core::SeedableRng;
/// use treecast_license::keytree::{Authority, MasterSecret, Scheme, TreeConfig, TreeHeight, TreeId};
/// use treecast_license::{
///     Client, Clock, Distributor, DistributorConfig, LicenseServer, ManualClock, ServerId,
///     SigningKey, Tariff, UnixTime, registry::MemoryRegistry,
/// };
/// # fn main() -> Result<(), treecast_license::Error> {
/// let mut rng = ChaCha20Rng::seed_from_u64(1);
/// let height = TreeHeight::new(16)?;
/// let config = TreeConfig::new(Scheme::COMPLETE_SUBTREE, height, TreeId(1));
/// let clock = Arc::new(ManualClock::new(UnixTime(1_800_000_000)));
/// let shop = Distributor::new(
///     Authority::new(&MasterSecret::from_bytes([3; 32]), config)?,
///     [LicenseServer::generate(ServerId(1), &mut rng)],
///     MemoryRegistry::new(height),
///     Tariff::default(),
///     clock.clone(),
///     DistributorConfig::default(),
/// );
/// let user = shop.register_user()?;
/// let key = SigningKey::generate(&mut rng);
/// let mut client = Client::new(key.clone(), shop.register_client(user, ServerId(1), &key.verifying_key())?)?;
/// let mut container = Vec::new();
/// let content = shop.publish(&b"hello"[..], &mut container, &mut rng)?.id;
/// client.store_ekb(shop.current_ekb()?.1.as_bytes())?;
/// client.store_content(container)?;
/// let license = shop.supply_license(client.license_request(content, clock.now()).as_bytes())?;
/// client.acquire_license(license.as_bytes())?;
/// let mut out = Vec::new();
/// client.play(content, &mut out)?;
/// assert_eq!(out, b"hello");
/// # Ok(()) }
/// ```
pub struct Distributor<R> {
    authority: Authority,
    servers: BTreeMap<ServerId, LicenseServer>,
    registry: R,
    tariff: Tariff,
    clock: Arc<dyn Clock>,
    config: DistributorConfig,
    ekbs: RwLock<BTreeMap<u64, Arc<SignedEkb>>>,
}

impl<R: Registry> Distributor<R> {
    /// A distributor over `registry`, with its key authority, license servers, tariff and clock.
    pub fn new(
        authority: Authority,
        servers: impl IntoIterator<Item = LicenseServer>,
        registry: R,
        tariff: Tariff,
        clock: Arc<dyn Clock>,
        config: DistributorConfig,
    ) -> Self {
        Self {
            authority,
            servers: servers.into_iter().map(|s| (s.id(), s)).collect(),
            registry,
            tariff,
            clock,
            config,
            ekbs: RwLock::new(BTreeMap::new()),
        }
    }

    /// The registry.
    pub fn registry(&self) -> &R {
        &self.registry
    }

    /// The tariff.
    pub fn tariff(&self) -> &Tariff {
        &self.tariff
    }

    /// The key authority.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// The public key of a license server.
    ///
    /// # Errors
    /// [`Error::UnknownServer`].
    pub fn server_key(&self, id: ServerId) -> Result<VerifyingKey, Error> {
        Ok(self.server(id)?.verifying_key())
    }

    /// The current key epoch.
    ///
    /// # Errors
    /// [`Error::Storage`].
    pub fn epoch(&self) -> Result<u64, Error> {
        self.registry.epoch()
    }

    /// The EKB of the current epoch, built once per epoch.
    ///
    /// # Errors
    /// [`Error::Storage`], or a key-tree error.
    pub fn current_ekb(&self) -> Result<(u64, Arc<SignedEkb>), Error> {
        let epoch = self.registry.epoch()?;
        if let Some(ekb) = self.read_ekbs()?.get(&epoch) {
            return Ok((epoch, Arc::clone(ekb)));
        }
        let revoked = RevocationSet::from_leaves(
            self.authority.config().height,
            self.registry.revoked_leaves()?,
        )?;
        let ekb = Arc::new(self.authority.build_ekb(
            &self.authority.epoch_key(epoch),
            &revoked,
            epoch,
        )?);
        self.ekbs
            .write()
            .map_err(|_| Error::Internal("EKB cache poisoned"))?
            .insert(epoch, Arc::clone(&ekb));
        Ok((epoch, ekb))
    }

    /// An EKB built earlier in this process, by epoch.
    ///
    /// # Errors
    /// [`Error::StaleEpoch`] when this process has not built it.
    pub fn ekb(&self, epoch: u64) -> Result<Arc<SignedEkb>, Error> {
        let current = self.registry.epoch()?;
        if epoch == current {
            return self.current_ekb().map(|(_, e)| e);
        }
        self.read_ekbs()?
            .get(&epoch)
            .cloned()
            .ok_or(Error::StaleEpoch {
                got: epoch,
                current,
            })
    }

    /// Registers a user.
    ///
    /// # Errors
    /// [`Error::Storage`].
    pub fn register_user(&self) -> Result<UserId, Error> {
        self.registry.add_user()
    }

    /// Registers a client of `user` with license server `server` (claim 1, registration): a
    /// leaf, a public-key certificate signed by that server, the device key set, and the keys
    /// to verify the server and the authority with.
    ///
    /// # Errors
    /// [`Error::UnknownServer`], [`Error::UserNotFound`], [`Error::ClientLimit`], or the tree is
    /// full.
    pub fn register_client(
        &self,
        user: UserId,
        server: ServerId,
        public_key: &VerifyingKey,
    ) -> Result<Registration, Error> {
        let license_server = self.server(server)?;
        let tree_id = self.authority.config().tree_id;
        let now = self.clock.now();
        let mut certificate = None;
        let record =
            self.registry
                .add_client(user, self.config.max_clients_per_user, &mut |id, leaf| {
                    let signed =
                        ClientCertificateTbs::new(server, id, user, leaf, tree_id, public_key, now)
                            .sign(license_server.signing_key());
                    let record = crate::registry::ClientRecord::new(
                        id,
                        user,
                        leaf,
                        server,
                        signed.as_bytes().to_vec(),
                        public_key.to_bytes(),
                    );
                    certificate = Some(signed);
                    Ok(record)
                })?;
        Ok(Registration {
            client_id: record.id,
            user_id: user,
            server_id: server,
            device_keys: self.authority.device_keys(record.leaf),
            certificate: certificate.ok_or(Error::Internal("certificate not built"))?,
            server_key: license_server.verifying_key(),
            authority_key: self.authority.verifying_key(),
        })
    }

    /// Revokes a client (or deregisters it: the same thing for the key tree). A new epoch starts,
    /// its EKB excludes the client, and every content key is re-enveloped under the new epoch's
    /// payload key, in parallel. Returns the new epoch.
    ///
    /// # Errors
    /// [`Error::ClientNotFound`], [`Error::ClientRevoked`], or a storage error.
    pub fn revoke_client(&self, client: ClientId) -> Result<u64, Error> {
        let (_, epoch) = self.registry.revoke_client(client)?;
        self.current_ekb()?;
        self.reenvelope_all(epoch)?;
        Ok(epoch)
    }

    /// Deregisters a client. For the key tree this is a revocation: the leaf's keys are known to
    /// the device, so the leaf is revoked (and never reused) and a new epoch starts.
    ///
    /// # Errors
    /// As [`Distributor::revoke_client`].
    pub fn deregister_client(&self, client: ClientId) -> Result<u64, Error> {
        self.revoke_client(client)
    }

    /// Packages `input` as a new content under a fresh content key and writes the container to
    /// `output` (claim 1, content supply). The key is kept only enveloped under the current
    /// epoch's payload key.
    ///
    /// # Errors
    /// [`Error::Io`] when reading or writing fails.
    pub fn publish(
        &self,
        input: impl Read,
        mut output: impl Write,
        rng: &mut impl CryptoRng,
    ) -> Result<ContentRecord, Error> {
        let epoch = self.registry.epoch()?;
        let key = ContentKey::generate(rng);
        let mut nonce = [0u8; 16];
        rng.fill_bytes(&mut nonce);
        let mut input = Some(input);
        self.registry.add_content(&mut |id| {
            let input = input
                .take()
                .ok_or(Error::Internal("content builder called twice"))?;
            content::package(
                id,
                epoch,
                self.config.chunk_size,
                &key,
                nonce,
                input,
                &mut output,
            )?;
            let envelope = seal_envelope(&self.authority.epoch_key(epoch), id, epoch, &key)?;
            Ok(ContentRecord::new(id, epoch, envelope))
        })
    }

    /// Records that `user` downloaded `content` (claim 6). The container itself is public.
    ///
    /// # Errors
    /// [`Error::UserNotFound`], [`Error::ContentNotFound`].
    pub fn supply_content(&self, user: UserId, content: ContentId) -> Result<(), Error> {
        self.registry.record_download(user, content)
    }

    /// Answers a signed license request (claim 1, license supply): checks the client's
    /// signature, issues a license bound to the client and the current epoch, signed by the
    /// client's license server, and bills it.
    ///
    /// # Errors
    /// [`Error::Decode`], [`Error::ClientNotFound`], [`Error::BadSignature`],
    /// [`Error::ClientRevoked`], [`Error::ContentNotFound`], [`Error::RequestReplayed`].
    pub fn supply_license(&self, request: &[u8]) -> Result<License, Error> {
        let request = Unverified::<LicenseRequestTbs>::from_bytes(request)?;
        let client = self
            .registry
            .client(request.unverified().client_id)?
            .ok_or(Error::ClientNotFound(request.unverified().client_id))?;
        let request = request.verify(&client_key(&client.public_key)?)?;
        let t = request.tbs();
        let content = self
            .registry
            .content(t.content_id)?
            .ok_or(Error::ContentNotFound(t.content_id))?;
        let server = self.server(client.server)?;
        let epoch = self.registry.epoch()?;
        let content_key = self.open_envelope(&content)?;
        let epoch_key = self.authority.epoch_key(epoch);
        let device_key = self.authority.device_key(client.leaf);
        let now = self.clock.now();
        let charge = Charge::new(
            ChargeKind::License,
            self.tariff.price(ChargeKind::License, content.id),
            now,
        );
        let mut license = None;
        self.registry
            .add_license(client.id, content.id, t.nonce, charge, &mut |id| {
                let signed = LicenseTbs::new(
                    id,
                    content.id,
                    client.id,
                    client.user,
                    client.server,
                    (epoch, &epoch_key),
                    Rights::PLAY_AND_MOVE,
                    now,
                    &device_key,
                    &content_key,
                )?
                .sign(server.signing_key());
                license = Some(signed);
                Ok(LicenseRecord::new(
                    id,
                    content.id,
                    client.id,
                    client.user,
                    epoch,
                    None,
                    now,
                ))
            })?;
        license.ok_or(Error::Internal("license not built"))
    }

    /// Answers a signed move request (claims 1–4, 13): checks the source's signature, then, in
    /// one registry change, checks claim 4, marks the source license moved, issues the
    /// destination's license, records the certificate issue and bills it. The certificate is
    /// signed by the destination's license server and carries the destination's license.
    ///
    /// # Errors
    /// [`Error::Decode`], [`Error::BadSignature`], and every refusal of
    /// [`check_move`](crate::registry::check_move).
    pub fn supply_certificate(&self, request: &[u8]) -> Result<CopyCertificate, Error> {
        let request = Unverified::<MoveRequestTbs>::from_bytes(request)?;
        let source_id = request.unverified().source;
        let source = self
            .registry
            .client(source_id)?
            .ok_or(Error::ClientNotFound(source_id))?;
        let request = request.verify(&client_key(&source.public_key)?)?;
        let t = request.tbs();
        if t.source == t.destination {
            return Err(Error::SameClient);
        }
        let license = self
            .registry
            .license(t.license_id)?
            .ok_or(Error::LicenseNotFound(t.license_id))?;
        let content = self
            .registry
            .content(license.content)?
            .ok_or(Error::ContentNotFound(license.content))?;
        let content_key = self.open_envelope(&content)?;
        let epoch = self.registry.epoch()?;
        let epoch_key = self.authority.epoch_key(epoch);
        let now = self.clock.now();
        let expires = now.plus(self.config.certificate_validity);
        let charge = Charge::new(
            ChargeKind::Certificate,
            self.tariff.price(ChargeKind::Certificate, content.id),
            now,
        );
        let mut certificate = None;
        let intent = MoveIntent::new(t.license_id, t.source, t.destination);
        self.registry
            .commit_move(&intent, charge, &mut |ctx, certificate_id, license_id| {
                if ctx.license.content != content.id {
                    return Err(Error::Internal("license changed content during the move"));
                }
                let dest = &ctx.destination;
                // Claim 3: signed with the key of the destination's license server.
                let server = self.server(dest.server)?;
                let new_license = LicenseTbs::new(
                    license_id,
                    content.id,
                    dest.id,
                    dest.user,
                    dest.server,
                    (epoch, &epoch_key),
                    Rights::PLAY_AND_MOVE,
                    now,
                    &self.authority.device_key(dest.leaf),
                    &content_key,
                )?
                .sign(server.signing_key());
                // Claim 2: the certificate carries the destination's license.
                let signed = CopyCertificateTbs::new(
                    certificate_id,
                    dest.user,
                    ctx.source.id,
                    ctx.license.id,
                    dest.id,
                    now,
                    expires,
                    &new_license,
                )
                .sign(server.signing_key());
                certificate = Some(signed);
                let record = LicenseRecord::new(
                    license_id,
                    content.id,
                    dest.id,
                    dest.user,
                    epoch,
                    Some(certificate_id),
                    now,
                );
                let history = CertificateRecord {
                    id: certificate_id,
                    user: dest.user,
                    content: content.id,
                    source: ctx.source.id,
                    source_license: ctx.license.id,
                    destination: dest.id,
                    destination_license: license_id,
                    server: dest.server,
                    issued_at: now,
                    expires_at: expires,
                };
                Ok((record, history))
            })?;
        certificate.ok_or(Error::Internal("certificate not built"))
    }

    fn server(&self, id: ServerId) -> Result<&LicenseServer, Error> {
        self.servers.get(&id).ok_or(Error::UnknownServer(id))
    }

    fn read_ekbs(
        &self,
    ) -> Result<std::sync::RwLockReadGuard<'_, BTreeMap<u64, Arc<SignedEkb>>>, Error> {
        self.ekbs
            .read()
            .map_err(|_| Error::Internal("EKB cache poisoned"))
    }

    fn open_envelope(&self, record: &ContentRecord) -> Result<ContentKey, Error> {
        open_envelope(&self.authority.epoch_key(record.epoch), record)
    }

    /// Re-envelopes every content key under the payload key of `epoch`, in parallel.
    fn reenvelope_all(&self, epoch: u64) -> Result<(), Error> {
        let new_key = self.authority.epoch_key(epoch);
        let updated = self
            .registry
            .contents()?
            .par_iter()
            .filter(|r| r.epoch != epoch)
            .map(|r| {
                let key = self.open_envelope(r)?;
                Ok(ContentRecord::new(
                    r.id,
                    epoch,
                    seal_envelope(&new_key, r.id, epoch, &key)?,
                ))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        self.registry.replace_envelopes(&updated)
    }
}

/// The key that envelopes content keys in the registry: HKDF-SHA-256 of the epoch's payload
/// key, bound to the content and the epoch.
fn envelope_key(
    epoch_key: &PayloadKey,
    content: ContentId,
    epoch: u64,
) -> Result<Zeroizing<[u8; 16]>, Error> {
    kdf::expand(
        b"treecast/v1/content-envelope",
        epoch_key.secret_bytes(),
        &[&content.0.to_be_bytes(), &epoch.to_be_bytes()],
    )
}

fn seal_envelope(
    epoch_key: &PayloadKey,
    content: ContentId,
    epoch: u64,
    key: &ContentKey,
) -> Result<[u8; 24], Error> {
    let kek = envelope_key(epoch_key, content, epoch)?;
    let mut out = [0u8; 24];
    AesKw::<Aes128>::new((&*kek).into())
        .wrap_key(key.secret_bytes(), &mut out)
        .map_err(|_| Error::Internal("key wrap"))?;
    Ok(out)
}

fn open_envelope(epoch_key: &PayloadKey, record: &ContentRecord) -> Result<ContentKey, Error> {
    let kek = envelope_key(epoch_key, record.id, record.epoch)?;
    let mut out = Zeroizing::new([0u8; 16]);
    AesKw::<Aes128>::new((&*kek).into())
        .unwrap_key(&record.envelope, out.as_mut_slice())
        .map_err(|_| Error::UnwrapFailed)?;
    Ok(ContentKey::from_bytes(*out))
}

fn client_key(bytes: &[u8; 32]) -> Result<VerifyingKey, Error> {
    VerifyingKey::from_bytes(bytes).map_err(|_| Error::BadSignature)
}
