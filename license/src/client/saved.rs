//! A client's state saved to its own storage and loaded back (`docs/formats.md`, "Saved
//! client"): what a device keeps between runs, for example `treecast client`'s device
//! directory. Keys are not in it: the signing key and the registration (which holds the key
//! set) are kept apart, so that the state file alone opens nothing.

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use treecast_keytree::DecodeError;
use treecast_keytree::codec::Reader;
use zeroize::Zeroizing;

use super::Client;
use crate::Error;
use crate::certificate::ReleaseKey;
use crate::distributor::Registration;
use crate::ids::{CertificateId, ClientId, ContentId, LicenseId};
use crate::license::{LicenseIn, LicenseTbs};
use crate::sign::Signable;

const MAGIC: [u8; 4] = *b"TCCS";
const VERSION: u8 = 1;

impl Client {
    /// The client's state as bytes: its ID, request counter, contents, licenses (with the
    /// releases of moved-in ones), EKBs, used certificates and moved-away licenses. Zeroized on
    /// drop (releases are secrets).
    pub fn save(&self) -> Zeroizing<Vec<u8>> {
        let s = self.device.state.stores();
        let mut len = 64;
        len += s.contents.values().map(|c| 12 + c.len()).sum::<usize>();
        len += s.licenses.len() * (29 + LicenseTbs::MAX_LEN + crate::sign::SIGNATURE_LEN);
        len += s
            .ekbs
            .values()
            .map(|e| 12 + e.as_bytes().len())
            .sum::<usize>();
        len += 8
            * (self.device.state.moves().used_certificates.len()
                + self.device.state.moves().moved_out.len());
        // Reserved up front: a buffer that grew would leave copies of the releases behind.
        let mut out = Zeroizing::new(Vec::with_capacity(len));
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&self.device.state.id.0.to_be_bytes());
        out.extend_from_slice(&self.device.state.next_nonce.to_be_bytes());
        put_count(&mut out, s.contents.len());
        for (id, container) in s.contents.iter() {
            out.extend_from_slice(&id.0.to_be_bytes());
            put_bytes(&mut out, container);
        }
        put_count(&mut out, s.licenses.len());
        let owner = self.device.state.owner();
        for (content, held) in s.licenses.iter() {
            put_bytes(&mut out, &held.encoded(*content, owner));
            match &held.release {
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
        put_count(&mut out, self.device.state.moves().used_certificates.len());
        for id in self.device.state.moves().used_certificates.keys() {
            out.extend_from_slice(&id.0.to_be_bytes());
        }
        put_count(&mut out, self.device.state.moves().moved_out.len());
        for id in self.device.state.moves().moved_out.keys() {
            out.extend_from_slice(&id.0.to_be_bytes());
        }
        out
    }

    /// A client from its signing key, its registration and a state [`Client::save`] wrote.
    /// Every license and EKB is verified again (the state is the device's storage, not
    /// trusted beyond it); containers are checked as [`Device::store_content`](super::Device::store_content) checks them.
    ///
    /// # Errors
    /// As [`Client::new`]; [`Error::Decode`] for anything but an exact, well-formed state;
    /// [`Error::NotForThisClient`] for another client's state; [`Error::BadSignature`] or
    /// [`Error::KeyTree`] for a license or EKB that does not verify.
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
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion(version).into());
        }
        if ClientId(r.u64("client id")?) != client.device.state.id {
            return Err(Error::NotForThisClient);
        }
        client.device.state.next_nonce = r.u64("request counter")?;
        for _ in 0..r.u32("content count")? {
            let id = ContentId(r.u64("content id")?);
            let container: Arc<[u8]> = Arc::from(take_bytes(&mut r, "container")?);
            if client.store_content(container)? != id {
                return Err(DecodeError::InvalidValue("container").into());
            }
        }
        for _ in 0..r.u32("license count")? {
            let license = LicenseIn::from_bytes(take_bytes(&mut r, "license")?)?
                .verify(client.server_key()?)?;
            let release = match r.u8("release flag")? {
                0 => None,
                1 => Some(ReleaseKey::from_bytes(r.array::<16>("release")?)),
                _ => return Err(DecodeError::InvalidValue("release flag").into()),
            };
            client.accept_license(license, release)?;
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
        r.finish()?;
        Ok(client)
    }
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
