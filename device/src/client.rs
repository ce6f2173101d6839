//! The client device (claims 9–12): it downloads and stores content, acquires licenses, plays,
//! requests copy certificates, and moves content out and in.

use std::sync::Arc;

use ed25519_dalek::{SigningKey, VerifyingKey};
use treecast_keytree::DeviceKeys;
use treecast_protocol::Error;
use treecast_protocol::certificate::{
    CopyCertificateIn, CopyCertificateTbs, LicenseRequest, LicenseRequestTbs, MoveRequest,
    MoveRequestTbs, ReleaseKey,
};
use treecast_protocol::giveback::{ReturnReceipt, ReturnRequest, ReturnRequestTbs};
use treecast_protocol::ids::{ClientId, ContentId, LicenseId};
use treecast_protocol::registration::Registration;
use treecast_protocol::renewal::{RenewFrom, RenewalRequest, RenewalRequestTbs};
use treecast_protocol::server::ServerKeys;
use treecast_protocol::sign::Signable;
use treecast_protocol::terms::Offer;
use treecast_protocol::time::UnixTime;

mod device;
mod inline;
mod saved;
mod state;
mod time;

pub use device::Device;
pub use state::ClientState;
use state::key_check;

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

    /// The package on a wire, for a destination in another program (a browser's device and a
    /// command line's, issue 30; `docs/formats.md`, "Move package"): magic `TCMP`, version 1,
    /// the certificate's length (2) and the certificate, the release (16). The container is
    /// not carried: it is public, and the destination downloads it. The release opens the
    /// license only with the destination's device key, so the package may travel in the clear.
    /// Zeroized on drop.
    pub fn to_bytes(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let mut out = zeroize::Zeroizing::new(Vec::with_capacity(
            PACKAGE_HEAD + self.certificate.len() + ReleaseKey::LEN,
        ));
        out.extend_from_slice(&PACKAGE_MAGIC);
        out.push(PACKAGE_VERSION);
        // A certificate is at most a few hundred bytes (`CopyCertificateTbs::MAX_LEN`).
        out.extend_from_slice(&(self.certificate.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.certificate);
        out.extend_from_slice(self.release.secret_bytes());
        out
    }

    /// A package read from a wire ([`MovePackage::to_bytes`]), without a container.
    /// `Device::move_in` checks the certificate and the release.
    ///
    /// # Errors
    /// [`Error::Decode`] for anything but an exact, well-formed package.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        use treecast_keytree::DecodeError;
        if bytes.len() > PACKAGE_HEAD + MAX_CERTIFICATE + ReleaseKey::LEN {
            return Err(DecodeError::TooLarge("move package").into());
        }
        let mut r = treecast_keytree::codec::Reader::new(bytes);
        if r.array::<4>("magic")? != PACKAGE_MAGIC {
            return Err(DecodeError::BadMagic.into());
        }
        let version = r.u8("version")?;
        if version != PACKAGE_VERSION {
            return Err(DecodeError::UnsupportedVersion(version).into());
        }
        let len = usize::from(r.u16("certificate length")?);
        let certificate = r.take(len, "certificate")?.to_vec();
        // Checked as a certificate here, verified by the destination.
        CopyCertificateIn::from_bytes(&certificate)?;
        let release = ReleaseKey::from_bytes(r.array::<16>("release")?);
        r.finish()?;
        Ok(Self {
            certificate,
            content: None,
            release,
        })
    }
}

const PACKAGE_MAGIC: [u8; 4] = *b"TCMP";
const PACKAGE_VERSION: u8 = 1;
/// Magic, version and the certificate's length.
const PACKAGE_HEAD: usize = 4 + 1 + 2;
/// The longest copy certificate, with a key ID.
const MAX_CERTIFICATE: usize = <CopyCertificateTbs as Signable>::MAX_LEN + 4;

/// A client device. It keeps its keys, its contents and licenses, the EKBs it needs, the copy
/// certificates it has used (single use) and the licenses it moved away (never to be taken back).
///
/// A client is a [`Device`] with its signing key, which requests need; it dereferences to its
/// device for everything else (storing, playing, moving out and in).
///
/// The [`transport`](crate::transport) module shows a client registering, buying and playing;
/// the README of `treecast` adds a move and a revocation.
pub struct Client {
    signing_key: SigningKey,
    device: Device,
}

impl core::ops::Deref for Client {
    type Target = Device;

    fn deref(&self) -> &Device {
        &self.device
    }
}

impl core::ops::DerefMut for Client {
    fn deref_mut(&mut self) -> &mut Device {
        &mut self.device
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
        let certificate = treecast_protocol::certificate::ClientCertificateIn::from_bytes(
            registration.certificate.as_bytes(),
        )?;
        let c = certificate.unverified();
        let public_key = signing_key.verifying_key().to_bytes();
        if c.public_key != public_key
            || c.client_id != registration.client_id
            || c.user_id != registration.user_id
            || c.server_id != registration.server_id
            || c.leaf != registration.device_keys.leaf().get()
            || !registration.servers.has_server(c.server_id)
        {
            return Err(Error::NotForThisClient);
        }
        let state = ClientState::new(&registration, c.leaf, key_check(&public_key));
        Ok(Self {
            signing_key,
            device: Device {
                state,
                device_keys: registration.device_keys,
                servers: registration.servers,
                authority_key: registration.authority_key,
            },
        })
    }

    /// Saves the client's state and drops its keys (see [`ClientState`]).
    pub fn into_state(self) -> ClientState {
        self.device.into_state()
    }

    /// The device without its signing key (dropped).
    pub fn into_device(self) -> Device {
        self.device
    }

    /// A client from a device and its signing key: the device signs requests again.
    ///
    /// # Errors
    /// [`Error::NotForThisClient`] when `signing_key` is not this client's; the device is handed
    /// back with the error.
    pub fn from_device(
        device: Device,
        signing_key: SigningKey,
    ) -> Result<Self, (Error, Box<Device>)> {
        if key_check(&signing_key.verifying_key().to_bytes()) != device.state.key_check {
            return Err((Error::NotForThisClient, Box::new(device)));
        }
        Ok(Self {
            signing_key,
            device,
        })
    }

    /// A client again, from its saved state and its keys: its signing key, its device key set
    /// (for instance re-provisioned by the authority), the license servers' keys and the
    /// authority's key. [`Device::restore`] restores it without the signing key, for what needs
    /// no signature.
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
        let device = Device::restore(device_keys, servers, authority_key, state)?;
        Self::from_device(device, signing_key).map_err(|(e, _)| e)
    }

    /// A signed request for a license to `content`.
    pub fn license_request(&mut self, content: ContentId, now: UnixTime) -> LicenseRequest {
        let nonce = self.device.state.take_nonce();
        LicenseRequestTbs::new(self.id(), content, nonce, now).sign(&self.signing_key)
    }

    /// A signed request for a license to `content` under `offer` (a rental, a subscription, a
    /// loan; issue 27): the distributor answers with a license whose terms its tariff gives.
    pub fn license_request_for(
        &mut self,
        content: ContentId,
        offer: Offer,
        now: UnixTime,
    ) -> LicenseRequest {
        let nonce = self.device.state.take_nonce();
        LicenseRequestTbs::new(self.id(), content, nonce, now)
            .with_offer(offer)
            .sign(&self.signing_key)
    }

    /// A signed request to renew `content`'s license (issue 27), its extension starting from
    /// the license's end or from now; the distributor answers with the license renewed, which
    /// [`Device::acquire_license`] stores.
    ///
    /// # Errors
    /// [`Error::NoLicense`] when this client holds no license for `content`.
    pub fn renewal_request(
        &mut self,
        content: ContentId,
        from: RenewFrom,
        now: UnixTime,
    ) -> Result<RenewalRequest, Error> {
        let license = self.license_id(content).ok_or(Error::NoLicense(content))?;
        let nonce = self.device.state.take_nonce();
        Ok(RenewalRequestTbs::new(license, self.id(), nonce, now, from).sign(&self.signing_key))
    }

    /// A signed request to return `license` with the `receipt`
    /// [`Device::return_license`] gave when it deleted it (issue 27).
    pub fn return_request(
        &mut self,
        license: LicenseId,
        receipt: ReturnReceipt,
        now: UnixTime,
    ) -> ReturnRequest {
        let nonce = self.device.state.take_nonce();
        ReturnRequestTbs::new(license, self.id(), nonce, now, receipt).sign(&self.signing_key)
    }

    /// A signed request to move the content of `license` to `destination` (claim 11). The
    /// server checks that this client holds it.
    pub fn move_request(
        &mut self,
        license: LicenseId,
        destination: ClientId,
        now: UnixTime,
    ) -> MoveRequest {
        let nonce = self.device.state.take_nonce();
        MoveRequestTbs::new(license, self.id(), destination, nonce, now).sign(&self.signing_key)
    }
}

impl core::fmt::Debug for Client {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Client")
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}
