//! [`WebDevice`]: a `treecast-device` client with its keys, as the page holds it.
//!
//! On `wasm32` the type and its methods are exported to JavaScript by `#[wasm_bindgen]` (which
//! generates `unsafe` glue, allowed in this module only); natively they are plain Rust, which
//! the tests call.
#![cfg_attr(target_arch = "wasm32", allow(unsafe_code))]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use treecast_device::{Client, MovePackage};
use treecast_protocol::certificate::CopyCertificateTbs;
use treecast_protocol::ids::{ClientId, ContentId, ServerId, UserId};
use treecast_protocol::registration::{Registration, RegistrationKey, RegistrationRequest};
use treecast_protocol::sign::Unverified;
use treecast_protocol::time::UnixTime;
use treecast_protocol::{Error, SigningKey};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen::prelude::wasm_bindgen;
use zeroize::{Zeroize, Zeroizing};

/// A failure of a [`WebDevice`] method: the device's [`Error`]. In the page it is thrown as a
/// JavaScript `Error` whose message is this error's.
#[derive(Debug)]
pub struct WebError(pub Error);

impl core::fmt::Display for WebError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.0.fmt(f)
    }
}

impl core::error::Error for WebError {}

impl<E: Into<Error>> From<E> for WebError {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

#[cfg(target_arch = "wasm32")]
impl From<WebError> for wasm_bindgen::JsValue {
    fn from(e: WebError) -> Self {
        wasm_bindgen::JsError::new(&e.to_string()).into()
    }
}

/// Secret bytes handed to the page: on `wasm32` a JavaScript `Uint8Array`, copied out of a
/// buffer that is zeroized at once (a returned `Vec<u8>` would be freed in the module's memory
/// as it is); natively the zeroizing buffer itself.
#[cfg(target_arch = "wasm32")]
pub type SecretBytes = js_sys::Uint8Array;
/// Secret bytes handed to the page: on `wasm32` a JavaScript `Uint8Array`, copied out of a
/// buffer that is zeroized at once (a returned `Vec<u8>` would be freed in the module's memory
/// as it is); natively the zeroizing buffer itself.
#[cfg(not(target_arch = "wasm32"))]
pub type SecretBytes = Zeroizing<Vec<u8>>;

fn hand_out(bytes: Zeroizing<Vec<u8>>) -> SecretBytes {
    #[cfg(target_arch = "wasm32")]
    {
        js_sys::Uint8Array::from(&bytes[..])
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        bytes
    }
}

/// A registration under way: the signing key drawn, its request made, the service's sealed
/// answer awaited ([`WebDevice::start_registration`], then [`PendingRegistration::request`]
/// and [`PendingRegistration::finish`]). The seed crosses into the module once and is zeroed
/// where it came from.
#[cfg_attr(target_arch = "wasm32", wasm_bindgen)]
pub struct PendingRegistration {
    seed: Zeroizing<[u8; 32]>,
    request: RegistrationRequest,
}

impl core::fmt::Debug for PendingRegistration {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PendingRegistration")
            .field("user", &self.request.user)
            .field("server", &self.request.server)
            .finish_non_exhaustive()
    }
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen)]
impl PendingRegistration {
    /// The registration request to `POST /v1/users/{user}/clients` with the user's credential.
    pub fn request(&self) -> Vec<u8> {
        self.request.to_bytes().to_vec()
    }

    /// The device, from the service's sealed answer to [`PendingRegistration::request`]: the
    /// registration is opened with the key only this device's seed derives, and its
    /// certificate must name this device.
    ///
    /// # Errors
    /// [`Error::UnwrapFailed`] for an answer sealed to another request or altered;
    /// [`Error::NotForThisClient`] for a registration of another device; [`Error::Decode`].
    pub fn finish(self, sealed: &[u8]) -> Result<WebDevice, WebError> {
        let key = SigningKey::from_bytes(&self.seed);
        let registration =
            Registration::open_sealed(sealed, &RegistrationKey::derive(&key)?, &self.request)?;
        let bytes = registration.to_bytes();
        Ok(WebDevice {
            client: Client::new(key, registration)?,
            seed: self.seed,
            registration: bytes,
        })
    }
}

/// A registered device in a browser: its client (key set, licenses, EKBs, containers) and the
/// seed of its signing key. Made by [`PendingRegistration::finish`] or [`WebDevice::load`].
#[cfg_attr(target_arch = "wasm32", wasm_bindgen)]
pub struct WebDevice {
    client: Client,
    seed: Zeroizing<[u8; 32]>,
    registration: Zeroizing<Vec<u8>>,
}

impl core::fmt::Debug for WebDevice {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("WebDevice")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

/// What a copy certificate says, read without verifying it (for routing: whose keys to take,
/// which content to download, by when); the device verifies it before it acts on it.
fn unverified(certificate: &[u8]) -> Result<CopyCertificateTbs, WebError> {
    Ok(Unverified::<CopyCertificateTbs>::from_bytes(certificate)?
        .unverified()
        .clone())
}

/// The seed the page drew (32 bytes), taken into the module and zeroed where it came from.
fn take_seed(seed: &mut [u8]) -> Result<Zeroizing<[u8; 32]>, WebError> {
    let mut array = Zeroizing::new([0u8; 32]);
    let taken = if seed.len() == array.len() {
        array.copy_from_slice(seed);
        Ok(array)
    } else {
        Err(treecast_keytree::DecodeError::InvalidValue("a signing key's seed (32 bytes)").into())
    };
    seed.zeroize();
    taken
}

#[cfg_attr(target_arch = "wasm32", wasm_bindgen)]
impl WebDevice {
    /// Starts registering a new device whose signing key is `seed` (32 bytes from
    /// `crypto.getRandomValues`, zeroed by this call), for `user` with license server
    /// `server`.
    ///
    /// # Errors
    /// A seed of another length (zeroed all the same).
    pub fn start_registration(
        seed: &mut [u8],
        user: u64,
        server: u32,
    ) -> Result<PendingRegistration, WebError> {
        let seed = take_seed(seed)?;
        let key = SigningKey::from_bytes(&seed);
        let request = RegistrationRequest::new(UserId(user), ServerId(server), &key)?;
        Ok(PendingRegistration { seed, request })
    }

    /// The device's keys (its signing key's seed and its registration, `docs/formats.md` "Web
    /// device keys"): secret; the page wraps them with its non-extractable key before it
    /// stores them.
    pub fn keys(&self) -> SecretBytes {
        hand_out(crate::keys::encode(&self.seed, &self.registration))
    }

    /// The device again from its [`WebDevice::keys`] and the state [`WebDevice::save`] wrote
    /// (checked by its seal before it is read, as `Client::load` does). `keys` is zeroed by
    /// this call, whatever its outcome.
    ///
    /// # Errors
    /// [`Error::Decode`] for keys or a state that do not decode; [`Error::StateTampered`] for a
    /// state whose seal is not this device's; [`Error::NotForThisClient`] for another's.
    pub fn load(keys: &mut [u8], state: &[u8]) -> Result<WebDevice, WebError> {
        let decoded = crate::keys::decode(keys);
        keys.zeroize();
        let (key, registration) = decoded?;
        let seed = Zeroizing::new(key.to_bytes());
        let bytes = registration.to_bytes();
        Ok(Self {
            client: Client::load(key, registration, state)?,
            seed,
            registration: bytes,
        })
    }

    /// The device's state, sealed with its own key (`Client::save`): licenses, EKBs,
    /// containers, used certificates and nonces. Store it after every change.
    pub fn save(&self) -> Vec<u8> {
        self.client.save().to_vec()
    }

    /// This device's client ID.
    pub fn id(&self) -> u64 {
        self.client.id().0
    }

    /// Its user's ID.
    pub fn user(&self) -> u64 {
        self.client.user().0
    }

    /// The license server it registered with.
    pub fn server(&self) -> u32 {
        self.client.server().0
    }

    /// Stores an EKB (`GET /v1/ekb` or `/v1/ekb/{epoch}`) once it verifies under the
    /// authority's key; returns its epoch.
    ///
    /// # Errors
    /// [`Error::KeyTree`] for an EKB that does not verify or decode.
    pub fn store_ekb(&mut self, ekb: &[u8]) -> Result<u64, WebError> {
        Ok(self.client.store_ekb(ekb)?)
    }

    /// The epoch whose EKB the license of `content` needs and the device lacks, if any: fetch
    /// it (`GET /v1/ekb/{epoch}`) and [`WebDevice::store_ekb`] it.
    pub fn missing_ekb(&self, content: u64) -> Option<u64> {
        self.client.missing_ekb(ContentId(content))
    }

    /// Takes the authority's signed list of a server's keys (`GET /v1/servers/{id}/keys`):
    /// returns whether the device's keys changed (an older or equal list changes nothing).
    ///
    /// # Errors
    /// [`Error::BadSignature`] or [`Error::Decode`] for a list the authority did not sign.
    pub fn update_server_keys(&mut self, list: &[u8]) -> Result<bool, WebError> {
        match self.client.update_server_keys(list) {
            Ok(()) => Ok(true),
            Err(Error::StaleServerKeys { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Stores a content's container (treecast's own format, `GET
    /// /v1/users/{user}/contents/{id}`); returns its content ID. A Common Encryption MP4 is
    /// not stored here: the page keeps it and checks it with [`WebDevice::key_id`].
    ///
    /// # Errors
    /// [`Error::Decode`] for bytes that are not a container.
    pub fn store_content(&mut self, container: &[u8]) -> Result<u64, WebError> {
        Ok(self.client.store_content(container.to_vec())?.0)
    }

    /// Whether the device holds `content`'s container.
    pub fn holds(&self, content: u64) -> bool {
        self.client.holds(ContentId(content))
    }

    /// The Common Encryption key ID of `content` (`treecast` ‖ its ID): public.
    pub fn key_id(content: u64) -> Vec<u8> {
        treecast_protocol::cenc::key_id(ContentId(content)).to_vec()
    }

    /// A signed request for a license to `content` (`POST /v1/licenses`), at `now` (Unix
    /// seconds). It uses a nonce: save the state before sending it.
    pub fn license_request(&mut self, content: u64, now: u64) -> Vec<u8> {
        self.client
            .license_request(ContentId(content), UnixTime(now))
            .as_bytes()
            .to_vec()
    }

    /// Stores a license the service answered once it verifies under this device's server's
    /// key and is this device's.
    ///
    /// # Errors
    /// [`Error::BadSignature`], [`Error::UnknownServerKey`] (take the server's newest key list
    /// first), [`Error::NotForThisClient`], [`Error::Decode`].
    pub fn acquire_license(&mut self, license: &[u8]) -> Result<(), WebError> {
        Ok(self.client.acquire_license(license)?)
    }

    /// Plays `content` from treecast's container (a text or an image): its clear bytes, from
    /// this device's license only, at `now` (Unix seconds; a license with terms plays inside
    /// them).
    ///
    /// # Errors
    /// [`Error::NoLicense`], [`Error::ContentNotFound`], [`Error::KeyTree`] for a revoked
    /// device, [`Error::StaleEpoch`], and the rest of `Device::play_at`'s.
    pub fn play(&mut self, content: u64, now: u64) -> Result<Vec<u8>, WebError> {
        let mut out = Vec::new();
        self.client
            .play_at(ContentId(content), UnixTime(now), &mut out)?;
        Ok(out)
    }

    /// The ClearKey license (the JSON Web Key Set of W3C EME's ClearKey, as bytes) that gives
    /// the browser's CDM the key of `content` packaged with Common Encryption: from this
    /// device's own license only (`Device::cenc_key`). Pass it to `MediaKeySession.update` and
    /// drop it; it holds the content's sample key.
    ///
    /// # Errors
    /// As `Device::cenc_key`: [`Error::NoLicense`] without a license (never moved in, moved
    /// away), [`Error::KeyTree`] for a revoked device, [`Error::InvalidTerms`] for a license
    /// with terms (no browser key yet).
    pub fn clearkey_license(&self, content: u64) -> Result<SecretBytes, WebError> {
        let (kid, key) = self.client.cenc_key(ContentId(content))?;
        let k = Zeroizing::new(URL_SAFE_NO_PAD.encode(key.secret_bytes()));
        let json = Zeroizing::new(format!(
            r#"{{"keys":[{{"kty":"oct","kid":"{}","k":"{}"}}],"type":"temporary"}}"#,
            URL_SAFE_NO_PAD.encode(kid),
            k.as_str()
        ));
        Ok(hand_out(Zeroizing::new(json.as_bytes().to_vec())))
    }

    /// A signed request (`POST /v1/certificates`) to move this device's license for `content`
    /// to client `destination` of the same user, at `now`. It uses a nonce: save the state
    /// before sending it.
    ///
    /// # Errors
    /// [`Error::NoLicense`] when the device holds no license for `content`.
    pub fn move_request(
        &mut self,
        content: u64,
        destination: u64,
        now: u64,
    ) -> Result<Vec<u8>, WebError> {
        let content = ContentId(content);
        let license = self
            .client
            .license_id(content)
            .ok_or(Error::NoLicense(content))?;
        Ok(self
            .client
            .move_request(license, ClientId(destination), UnixTime(now))
            .as_bytes()
            .to_vec())
    }

    /// The license server that signed a copy certificate (the destination's), read without
    /// verifying it: whose key list to take before [`WebDevice::move_out`].
    ///
    /// # Errors
    /// [`Error::Decode`] for bytes that are not a certificate.
    pub fn certificate_server(certificate: &[u8]) -> Result<u32, WebError> {
        Ok(unverified(certificate)?.server_id.0)
    }

    /// Moves out with the service's certificate: deletes this device's license and gives the
    /// move package (`MovePackage::to_bytes`: the certificate and the release) for the
    /// destination. Save the state at once. The same certificate again gives the same package.
    ///
    /// # Errors
    /// As `Device::move_out`.
    pub fn move_out(&mut self, certificate: &[u8]) -> Result<SecretBytes, WebError> {
        Ok(hand_out(self.client.move_out(certificate)?.to_bytes()))
    }

    /// When a copy certificate expires (Unix seconds), read without verifying it: the
    /// destination must move in before then, or the move fails and the license is lost to
    /// both (the source deleted it).
    ///
    /// # Errors
    /// [`Error::Decode`] for bytes that are not a certificate.
    pub fn certificate_expires(certificate: &[u8]) -> Result<u64, WebError> {
        Ok(unverified(certificate)?.expires_at.0)
    }

    /// The content a move package moves (read without verifying it): whose container to
    /// download before [`WebDevice::move_in`].
    ///
    /// # Errors
    /// [`Error::Decode`] for bytes that are not a move package.
    pub fn package_content(package: &[u8]) -> Result<u64, WebError> {
        let package = MovePackage::from_bytes(package)?;
        Ok(unverified(&package.certificate)?.content_id.0)
    }

    /// Moves in from a move package another device gave (a browser's or a command line's):
    /// stores the license its certificate carries once the certificate verifies, is for this
    /// device, is fresh at `now` and was not used before, and the release opens it. Returns the
    /// content ID.
    ///
    /// # Errors
    /// As `Device::move_in`; [`Error::Decode`] for bytes that are not a package.
    pub fn move_in(&mut self, package: &[u8], now: u64) -> Result<u64, WebError> {
        let package = MovePackage::from_bytes(package)?;
        let content = unverified(&package.certificate)?.content_id;
        self.client.move_in(&package, UnixTime(now))?;
        Ok(content.0)
    }

    /// What the device holds, as JSON: `{"client", "user", "server", "licenses": [{"content",
    /// "license" (a string), "terms"}]}`.
    pub fn status(&self) -> String {
        let licenses: Vec<serde_json::Value> = self
            .client
            .licensed()
            .map(|content| {
                serde_json::json!({
                    "content": content.0,
                    // A string: license IDs pass 2^53, where JavaScript's numbers stop.
                    "license": self.client.license_id(content).map(|l| l.0.to_string()),
                    "terms": self.client.license_terms(content)
                        .map(|(terms, _)| format!("{terms:?}")),
                })
            })
            .collect();
        serde_json::json!({
            "client": self.client.id().0,
            "user": self.client.user().0,
            "server": self.client.server().0,
            "licenses": licenses,
        })
        .to_string()
    }
}

impl WebDevice {
    /// The client inside, for native callers (tests, the figures' comparison).
    pub fn client(&self) -> &Client {
        &self.client
    }
}
