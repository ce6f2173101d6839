//! A client's state saved to its own storage and loaded back (`docs/formats.md`, "Saved
//! client"): what a device keeps between runs, for example `treecast client`'s device
//! directory. Keys are not in it: the signing key and the registration (which holds the key
//! set) are kept apart, so that the state file alone opens nothing.

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use subtle::ConstantTimeEq;
use treecast_keytree::codec::Reader;
use treecast_keytree::{DecodeError, DeviceKey};
use treecast_protocol::Error;
use treecast_protocol::ids::{CertificateId, ClientId, ContentId, LicenseId};
use treecast_protocol::kdf;
use treecast_protocol::license::LicenseTbs;
use treecast_protocol::registration::Registration;
use treecast_protocol::release::ReleaseKey;
use treecast_protocol::sign::Signable;
use treecast_protocol::time::UnixTime;
use zeroize::Zeroizing;

use super::Client;
use super::state::Window;

const MAGIC: [u8; 4] = *b"TCCS";
/// The version [`Client::save`] writes: licenses without their signatures (with their terms,
/// and each one's first play), the trusted time (issue 27), the authority's lists of the
/// servers' keys the device took (issue 29), the whole state sealed under the device key.
/// [`Client::load`] reads it, the third version (no lists) and the second (no time: its
/// licenses are perpetual). The first version (no seal) is refused: its lists of used certificates and
/// moved-away licenses could be left out by hand, so a state built from a purchase answer and
/// a move package would play a license twice (issue 24).
const VERSION: u8 = 4;
/// The version before the servers' key lists (issue 29), still read.
const VERSION_NO_LISTS: u8 = 3;
/// The version before time (issue 27), still read.
const VERSION_UNTIMED: u8 = 2;
/// The length of the seal that ends a version 2 state.
const SEAL_LEN: usize = 32;

impl Client {
    /// The client's state as bytes: its ID, request counter, contents, licenses (with the
    /// releases of moved-in ones), EKBs, used certificates and moved-away licenses, sealed
    /// under a key derived from the device key (`docs/formats.md`, "Saved client state").
    /// Zeroized on drop (releases are secrets).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use rand_chacha::ChaCha20Rng;
    /// use rand_core::SeedableRng;
    /// use treecast_keytree::{Authority, MasterSecret, Scheme, TreeConfig, TreeHeight, TreeId};
    /// use treecast_device::Client;
    /// use treecast_distributor::{Distributor, DistributorConfig, LicenseServer, Tariff};
    /// use treecast_protocol::{Clock, Error, ManualClock, Registration, ServerId, SigningKey, UnixTime};
    /// use treecast_registry::MemoryRegistry;
    /// # fn main() -> Result<(), Error> {
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
    /// )?;
    /// let user = shop.register_user()?;
    /// let key = SigningKey::generate(&mut rng);
    /// let registration = shop.register_client(user, ServerId(1), &key.verifying_key())?;
    /// // The device keeps its key and registration apart from its state.
    /// let kept = registration.to_bytes();
    /// let mut client = Client::new(key.clone(), registration)?;
    /// let mut container = Vec::new();
    /// let content = shop.publish(&b"hello"[..], &mut container, &mut rng)?.id;
    /// client.store_ekb(shop.current_ekb()?.1.as_bytes())?;
    /// client.store_content(container)?;
    /// let license = shop.supply_license(client.license_request(content, clock.now()).as_bytes())?;
    /// client.acquire_license(license.as_bytes())?;
    ///
    /// let mut saved = client.save();
    /// let loaded = Client::load(key.clone(), Registration::from_bytes(&kept)?, &saved)?;
    /// let mut played = Vec::new();
    /// loaded.play(content, &mut played)?;
    /// assert_eq!(played, b"hello");
    ///
    /// // One changed byte, and the seal refuses the state.
    /// saved[20] ^= 1;
    /// let refused = Client::load(key, Registration::from_bytes(&kept)?, &saved);
    /// assert!(matches!(refused, Err(Error::StateTampered)));
    /// # Ok(()) }
    /// ```
    pub fn save(&self) -> Zeroizing<Vec<u8>> {
        let state = &self.device.state;
        let (s, moves) = (state.stores(), state.moves());
        let mut len = 64 + SEAL_LEN;
        len += s.contents.values().map(|c| 12 + c.len()).sum::<usize>();
        len += s.licenses.len() * (30 + LicenseTbs::MAX_LEN);
        len += s
            .ekbs
            .values()
            .map(|e| 12 + e.as_bytes().len())
            .sum::<usize>();
        len += 8 * (moves.used_certificates.len() + moves.moved_out.len()) + 8;
        len += 4 + 24 * moves.windows.len();
        len += 4 + self
            .device
            .servers
            .lists()
            .map(|l| 4 + l.as_bytes().len())
            .sum::<usize>();
        // Reserved up front: a buffer that grew would leave copies of the releases behind.
        let mut out = Zeroizing::new(Vec::with_capacity(len));
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&state.id.0.to_be_bytes());
        out.extend_from_slice(&state.next_nonce.to_be_bytes());
        put_count(&mut out, s.contents.len());
        for (id, container) in s.contents.iter() {
            out.extend_from_slice(&id.0.to_be_bytes());
            put_bytes(&mut out, container);
        }
        put_count(&mut out, s.licenses.len());
        let mut fields = Vec::with_capacity(LicenseTbs::MAX_LEN);
        for (content, held) in s.licenses.iter() {
            fields.clear();
            let terms = moves.timed.get(content).copied();
            held.tbs(*content, state.owner(), terms).encode(&mut fields);
            put_bytes(&mut out, &fields);
            match moves.releases.get(content) {
                Some(r) => {
                    out.push(1);
                    out.extend_from_slice(r.secret_bytes());
                }
                None => out.push(0),
            }
        }
        put_count(&mut out, s.ekbs.len());
        for ekb in s.ekbs.values() {
            put_bytes(&mut out, ekb.as_bytes());
        }
        put_count(&mut out, moves.used_certificates.len());
        for id in moves.used_certificates.keys() {
            out.extend_from_slice(&id.0.to_be_bytes());
        }
        put_count(&mut out, moves.moved_out.len());
        for id in moves.moved_out.keys() {
            out.extend_from_slice(&id.0.to_be_bytes());
        }
        put_count(&mut out, moves.windows.len());
        for (id, w) in moves.windows.iter() {
            out.extend_from_slice(&id.0.to_be_bytes());
            out.extend_from_slice(&w.first_play.0.to_be_bytes());
            out.extend_from_slice(&w.until.0.to_be_bytes());
        }
        out.extend_from_slice(&moves.trusted.0.to_be_bytes());
        let lists: Vec<_> = self.device.servers.lists().collect();
        put_count(&mut out, lists.len());
        for list in lists {
            put_bytes(&mut out, list.as_bytes());
        }
        // The key is derived from the device key and the client ID, and never fails to be.
        if let Ok(seal) = seal(self.device_keys().device_key(), state.id, &out) {
            out.extend_from_slice(&seal);
        }
        out
    }

    /// A client from its signing key, its registration and a state [`Client::save`] wrote.
    /// The state's seal is checked before anything in it is read (the state is the device's
    /// storage, not trusted beyond it: nothing outside the seal is used); EKBs are verified
    /// again, containers checked as [`Device::store_content`](super::Device::store_content)
    /// checks them. A state of the first version, which had no seal, is refused.
    ///
    /// # Errors
    /// As [`Client::new`]; [`Error::Decode`] for anything but an exact, well-formed state of
    /// this version ([`DecodeError::UnsupportedVersion`] for a first-version one);
    /// [`Error::NotForThisClient`] for another client's state; [`Error::StateTampered`] for a
    /// state whose seal is not this device's (altered, truncated or forged);
    /// [`Error::KeyTree`] for an EKB that does not verify.
    pub fn load(
        signing_key: SigningKey,
        registration: Registration,
        saved: &[u8],
    ) -> Result<Self, Error> {
        let mut client = Self::new(signing_key, registration)?;
        let mut r = Reader::new(saved);
        if r.array::<4>("magic")? != MAGIC {
            return Err(DecodeError::BadMagic.into());
        }
        let version = r.u8("version")?;
        if ![VERSION, VERSION_NO_LISTS, VERSION_UNTIMED].contains(&version) {
            return Err(DecodeError::UnsupportedVersion(version).into());
        }
        let timed = version != VERSION_UNTIMED;
        if ClientId(r.u64("client id")?) != client.device.state.id {
            return Err(Error::NotForThisClient);
        }
        let at = saved
            .len()
            .checked_sub(SEAL_LEN)
            .ok_or(DecodeError::MissingData("seal"))?;
        let (body, found) = saved.split_at(at);
        let expected = seal(
            client.device_keys().device_key(),
            client.device.state.id,
            body,
        )?;
        if !bool::from(expected.ct_eq(found)) {
            return Err(Error::StateTampered);
        }
        let mut r = Reader::new(body);
        r.take(4 + 1 + 8, "header")?;
        client.device.state.next_nonce = r.u64("request counter")?;
        for _ in 0..r.u32("content count")? {
            let id = ContentId(r.u64("content id")?);
            let container: Arc<[u8]> = Arc::from(take_bytes(&mut r, "container")?);
            if client.store_content(container)? != id {
                return Err(DecodeError::InvalidValue("container").into());
            }
        }
        for _ in 0..r.u32("license count")? {
            let bytes = take_bytes(&mut r, "license")?;
            let mut f = Reader::new(bytes);
            let fields = LicenseTbs::read(&mut f)?;
            f.finish()?;
            let release = match r.u8("release flag")? {
                0 => None,
                1 => Some(ReleaseKey::from_bytes(r.array::<16>("release")?)),
                _ => return Err(DecodeError::InvalidValue("release flag").into()),
            };
            if !timed && fields.terms.is_some() {
                return Err(DecodeError::InvalidValue("license terms").into());
            }
            client.accept_license(&fields, release)?;
        }
        for _ in 0..r.u32("EKB count")? {
            client.store_ekb(take_bytes(&mut r, "EKB")?)?;
        }
        for _ in 0..r.u32("used certificate count")? {
            let id = CertificateId(r.u64("certificate id")?);
            client.state.moves_mut().used_certificates.insert(id, ());
        }
        for _ in 0..r.u32("moved license count")? {
            let id = LicenseId(r.u64("license id")?);
            client.state.moves_mut().moved_out.insert(id, ());
        }
        if timed {
            for _ in 0..r.u32("window count")? {
                let id = LicenseId(r.u64("license id")?);
                let window = Window {
                    first_play: UnixTime(r.u64("first play")?),
                    until: UnixTime(r.u64("window until")?),
                };
                client.state.moves_mut().windows.insert(id, window);
            }
            client.state.trust(UnixTime(r.u64("trusted time")?));
        }
        if version == VERSION {
            for _ in 0..r.u32("server key list count")? {
                // A list the registration brought already is no newer: kept as it is.
                match client.update_server_keys(take_bytes(&mut r, "server key list")?) {
                    Ok(()) | Err(Error::StaleServerKeys { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        r.finish()?;
        Ok(client)
    }
}

impl Client {
    /// **Hazmat, for fuzzing**: seals `body` (a state's bytes before its seal, from its magic
    /// on) as [`Client::save`] would, so that a fuzzer reaches the decoder behind the seal.
    #[cfg(feature = "hazmat")]
    pub fn hazmat_seal_state(&self, body: &[u8]) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(body.len() + SEAL_LEN));
        out.extend_from_slice(body);
        if let Ok(seal) = seal(self.device_keys().device_key(), self.device.state.id, body) {
            out.extend_from_slice(&seal);
        }
        out
    }
}

/// The seal of a saved state's `body`: keyed BLAKE3 under
/// `HKDF-SHA-256(salt "treecast/v1/saved-client-seal", ikm = device key, info = client ID)`.
///
/// # Errors
/// [`Error::Internal`] never in practice (HKDF gives 32 bytes).
fn seal(device_key: &DeviceKey, client: ClientId, body: &[u8]) -> Result<[u8; SEAL_LEN], Error> {
    let key = kdf::expand::<32>(
        b"treecast/v1/saved-client-seal",
        device_key.secret_bytes(),
        &[&client.0.to_be_bytes()],
    )?;
    Ok(*blake3::keyed_hash(&key, body).as_bytes())
}

fn put_count(out: &mut Vec<u8>, n: usize) {
    // A client holds far fewer than 2^32 of anything.
    out.extend_from_slice(&(n as u32).to_be_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    // A container, license or EKB is far below 4 GiB.
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn take_bytes<'a>(r: &mut Reader<'a>, what: &'static str) -> Result<&'a [u8], DecodeError> {
    let len = usize::try_from(r.u32(what)?).map_err(|_| DecodeError::TooLarge(what))?;
    r.take(len, what)
}
