//! The client device (claims 9–12): it downloads and stores content, acquires licenses, plays,
//! requests copy certificates, and moves content out and in.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use ed25519_dalek::{SigningKey, VerifyingKey};
use treecast_keytree::{DeviceKeys, EkbIn};

use crate::Error;
use crate::certificate::{
    CopyCertificateIn, LicenseRequest, LicenseRequestTbs, MoveRequest, MoveRequestTbs,
};
use crate::content::{self, ContentHeader};
use crate::distributor::Registration;
use crate::ids::{CertificateId, ClientId, ContentId, LicenseId, ServerId, UserId};
use crate::license::{License, LicenseIn};
use crate::sign::Signable;
use crate::time::UnixTime;

/// What a source client hands to the destination when it moves content out: the container and
/// the copy certificate.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct MovePackage {
    /// The encoded copy certificate.
    pub certificate: Vec<u8>,
    /// The content container.
    pub content: Vec<u8>,
}

impl MovePackage {
    /// A package of a certificate and a container, as received from a source client.
    pub const fn new(certificate: Vec<u8>, content: Vec<u8>) -> Self {
        Self {
            certificate,
            content,
        }
    }
}

/// A client device. It keeps its keys, its contents and licenses, the EKBs it needs, the copy
/// certificates it has used (single use) and the licenses it moved away (never to be taken back).
pub struct Client {
    id: ClientId,
    user: UserId,
    server: ServerId,
    signing_key: SigningKey,
    device_keys: DeviceKeys,
    server_key: VerifyingKey,
    authority_key: VerifyingKey,
    contents: BTreeMap<ContentId, Vec<u8>>,
    licenses: BTreeMap<ContentId, License>,
    ekbs: BTreeMap<u64, Vec<u8>>,
    used_certificates: BTreeSet<CertificateId>,
    moved_out: BTreeSet<LicenseId>,
    next_nonce: u64,
}

impl Client {
    /// A client from its signing key and what registration returned.
    ///
    /// # Errors
    /// [`Error::NotForThisClient`] when the registration's certificate is for another key or
    /// client; [`Error::BadSignature`] when it is not signed by the registration's server.
    pub fn new(signing_key: SigningKey, registration: Registration) -> Result<Self, Error> {
        let certificate = crate::certificate::ClientCertificateIn::from_bytes(
            registration.certificate.as_bytes(),
        )?
        .verify(&registration.server_key)?;
        let c = certificate.tbs();
        if c.public_key != signing_key.verifying_key().to_bytes()
            || c.client_id != registration.client_id
            || c.leaf != registration.device_keys.leaf().get()
        {
            return Err(Error::NotForThisClient);
        }
        Ok(Self {
            id: registration.client_id,
            user: registration.user_id,
            server: registration.server_id,
            signing_key,
            device_keys: registration.device_keys,
            server_key: registration.server_key,
            authority_key: registration.authority_key,
            contents: BTreeMap::new(),
            licenses: BTreeMap::new(),
            ekbs: BTreeMap::new(),
            used_certificates: BTreeSet::new(),
            moved_out: BTreeSet::new(),
            next_nonce: 1,
        })
    }

    /// The client's ID.
    pub const fn id(&self) -> ClientId {
        self.id
    }

    /// The owner.
    pub const fn user(&self) -> UserId {
        self.user
    }

    /// The license server it registered with.
    pub const fn server(&self) -> ServerId {
        self.server
    }

    /// Its device key set.
    pub const fn device_keys(&self) -> &DeviceKeys {
        &self.device_keys
    }

    /// Stores a downloaded content container (claim 9).
    ///
    /// # Errors
    /// [`Error::Decode`] when it does not start with a valid container header.
    pub fn store_content(&mut self, container: Vec<u8>) -> Result<ContentId, Error> {
        let header = content::header(&container)?;
        self.contents.insert(header.content_id, container);
        Ok(header.content_id)
    }

    /// Whether the client holds the content and a license for it.
    pub fn holds(&self, content: ContentId) -> bool {
        self.contents.contains_key(&content) && self.licenses.contains_key(&content)
    }

    /// The ID of the license the client holds for `content`.
    pub fn license_id(&self, content: ContentId) -> Option<LicenseId> {
        self.licenses.get(&content).map(|l| l.tbs().license_id)
    }

    /// Stores an EKB after verifying the authority's signature.
    ///
    /// # Errors
    /// [`Error::Decode`] or [`Error::KeyTree`] (`BadSignature`).
    pub fn store_ekb(&mut self, bytes: &[u8]) -> Result<u64, Error> {
        let ekb = EkbIn::from_bytes(bytes)?.verify(&self.authority_key)?;
        let epoch = ekb.header().epoch;
        self.ekbs.insert(epoch, bytes.to_vec());
        Ok(epoch)
    }

    /// A signed request for a license to `content`.
    pub fn license_request(&mut self, content: ContentId, now: UnixTime) -> LicenseRequest {
        let nonce = self.nonce();
        LicenseRequestTbs::new(self.id, content, nonce, now).sign(&self.signing_key)
    }

    /// Stores a license (claim 9): it must verify under this client's server key and be for
    /// this client.
    ///
    /// # Errors
    /// [`Error::Decode`], [`Error::BadSignature`], [`Error::NotForThisClient`], or
    /// [`Error::LicenseMoved`] for a license this client moved away.
    pub fn acquire_license(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let license = LicenseIn::from_bytes(bytes)?.verify(&self.server_key)?;
        self.accept_license(license)
    }

    /// Plays `content`: verifies the license, opens the EKB of its epoch, unwraps the content
    /// key with the epoch key and the device key, decrypts and authenticates the content into
    /// `output` (claim 9).
    ///
    /// # Errors
    /// [`Error::NoLicense`], [`Error::ContentNotFound`], [`Error::StaleEpoch`] when the EKB of the
    /// license's epoch is missing, [`Error::KeyTree`] (`Revoked`) for a revoked client,
    /// [`Error::UnwrapFailed`], [`Error::ContentCorrupt`].
    pub fn play(&self, content: ContentId, output: impl Write) -> Result<ContentHeader, Error> {
        let license = self
            .licenses
            .get(&content)
            .ok_or(Error::NoLicense(content))?;
        let container = self
            .contents
            .get(&content)
            .ok_or(Error::ContentNotFound(content))?;
        let epoch = license.tbs().epoch;
        let ekb_bytes = self.ekbs.get(&epoch).ok_or(Error::StaleEpoch {
            got: epoch,
            current: self.ekbs.keys().next_back().copied().unwrap_or(0),
        })?;
        let ekb = EkbIn::from_bytes(ekb_bytes)?.verify(&self.authority_key)?;
        let epoch_key = self.device_keys.open(&ekb)?;
        let content_key = license.content_key(&epoch_key, self.device_keys.device_key())?;
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
        MoveRequestTbs::new(license, self.id, destination, nonce, now).sign(&self.signing_key)
    }

    /// Moves content out with a copy certificate: deletes this client's license and copy, and
    /// returns what to hand to the destination (claim 11). The license is remembered as moved
    /// away, so it is never accepted again.
    ///
    /// # Errors
    /// [`Error::Decode`]; [`Error::NotForThisClient`] for a certificate that moves another
    /// client's license; [`Error::NoLicense`] when this client no longer holds it.
    pub fn move_out(&mut self, certificate: &[u8]) -> Result<MovePackage, Error> {
        // The certificate is signed by the destination's server, which this client may not
        // know; the destination verifies it. Here it only has to name our license.
        let cert = CopyCertificateIn::from_bytes(certificate)?;
        let t = cert.unverified();
        if t.source != self.id {
            return Err(Error::NotForThisClient);
        }
        if self.license_id(t.content_id) != Some(t.source_license) {
            return Err(Error::NoLicense(t.content_id));
        }
        let content = self
            .contents
            .remove(&t.content_id)
            .ok_or(Error::ContentNotFound(t.content_id))?;
        self.licenses.remove(&t.content_id);
        self.moved_out.insert(t.source_license);
        Ok(MovePackage {
            certificate: certificate.to_vec(),
            content,
        })
    }

    /// Moves content in (claims 10–12): verifies the certificate with this client's server key,
    /// checks it is addressed to this client, unexpired and unused, verifies the license it
    /// carries, and stores content and license.
    ///
    /// # Errors
    /// [`Error::Decode`], [`Error::BadSignature`] (a falsified certificate, or one signed by
    /// another server), [`Error::NotForThisClient`], [`Error::CertificateExpired`],
    /// [`Error::CertificateReplayed`], [`Error::ContentCorrupt`] when the container is not the
    /// certified content.
    pub fn move_in(&mut self, package: &MovePackage, now: UnixTime) -> Result<(), Error> {
        let cert = CopyCertificateIn::from_bytes(&package.certificate)?.verify(&self.server_key)?;
        let t = cert.tbs();
        if t.destination != self.id || t.user_id != self.user {
            return Err(Error::NotForThisClient);
        }
        if now > t.expires_at {
            return Err(Error::CertificateExpired);
        }
        if self.used_certificates.contains(&t.certificate_id) {
            return Err(Error::CertificateReplayed(t.certificate_id));
        }
        let license = t.license()?.verify(&self.server_key)?;
        if license.tbs().content_id != t.content_id
            || content::header(&package.content)?.content_id != t.content_id
        {
            return Err(Error::ContentCorrupt);
        }
        self.accept_license(license)?;
        self.used_certificates.insert(t.certificate_id);
        self.contents.insert(t.content_id, package.content.clone());
        Ok(())
    }

    fn accept_license(&mut self, license: License) -> Result<(), Error> {
        let t = license.tbs();
        if t.client_id != self.id {
            return Err(Error::NotForThisClient);
        }
        if self.moved_out.contains(&t.license_id) {
            return Err(Error::LicenseMoved(t.license_id));
        }
        self.licenses.insert(t.content_id, license);
        Ok(())
    }

    fn nonce(&mut self) -> u64 {
        let n = self.next_nonce;
        self.next_nonce += 1;
        n
    }
}

impl core::fmt::Debug for Client {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Client")
            .field("id", &self.id)
            .field("user", &self.user)
            .field("server", &self.server)
            .field("contents", &self.contents.len())
            .field("licenses", &self.licenses.len())
            .finish_non_exhaustive()
    }
}
