//! A registration on the wire: what a license server sends a newly registered device
//! (`docs/formats.md`, "Registration"). It carries the device's key set, a secret: over a
//! network it travels only sealed to the device ([`Registration::seal`], `sealed.rs`), whatever
//! the channel.

use std::sync::Arc;

use ed25519_dalek::VerifyingKey;
use treecast_keytree::codec::Reader;
use treecast_keytree::{DecodeError, DeviceKeys};
use zeroize::Zeroizing;

use crate::Error;
use crate::certificate::{ClientCertificate, ClientCertificateIn};
use crate::ids::{ClientId, KeyId, ServerId, UserId};
use crate::server::{ServerKeyListIn, ServerKeys};

mod sealed;

pub use sealed::{HPKE_PUBLIC_KEY_LEN, MAX_SEALED_LEN, RegistrationKey, RegistrationRequest};

/// What a newly registered client receives (claims 3, 10, 12). The distributor, another crate,
/// builds it field by field.
#[derive(Debug)]
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
    /// The license servers' public keys: its own server's verifies its licenses and the
    /// certificates that move content to it; the others verify certificates that move content
    /// away from it.
    pub servers: Arc<ServerKeys>,
    /// The authority's public key, to verify EKBs.
    pub authority_key: VerifyingKey,
}

const MAGIC: [u8; 4] = *b"TCRS";
const VERSION: u8 = 1;
/// The version with key IDs and the authority's lists of the servers' keys (issue 29),
/// written when a server has a key other than its first.
const VERSION_KEY_IDS: u8 = 2;

/// The most license servers a registration lists.
pub const MAX_SERVERS: usize = 1024;

/// The largest encoded registration read: a height-32 Subset Difference key set (529 keys),
/// the most servers, each with a list of the most keys (issue 29), and a client certificate.
pub const MAX_LEN: usize = 512 * 1024;

impl Registration {
    /// The encoding a server sends the device: see `docs/formats.md`. Zeroized on drop (it
    /// holds the device keys).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let keys = self.device_keys.to_bytes();
        let certificate = self.certificate.as_bytes();
        let lists: Vec<_> = self.servers.lists().take(MAX_SERVERS).collect();
        // A server's keys that a list brings are not repeated.
        let listed = |id: ServerId| lists.iter().any(|l| l.tbs().server_id == id);
        let servers: Vec<_> = self
            .servers
            .iter()
            .filter(|(id, _, _)| !listed(*id))
            .take(MAX_SERVERS)
            .collect();
        // The first version when nothing needs the second: every key is its server's key 0.
        let version = if lists.is_empty() && servers.iter().all(|(_, k, _)| k.0 == 0) {
            VERSION
        } else {
            VERSION_KEY_IDS
        };
        let list_len: usize = lists.iter().map(|l| 2 + l.as_bytes().len()).sum();
        // Reserved up front: a buffer that grew would leave copies of the keys behind.
        let mut out = Zeroizing::new(Vec::with_capacity(
            64 + keys.len() + certificate.len() + 40 * servers.len() + list_len,
        ));
        out.extend_from_slice(&MAGIC);
        out.push(version);
        out.extend_from_slice(&self.client_id.0.to_be_bytes());
        out.extend_from_slice(&self.user_id.0.to_be_bytes());
        out.extend_from_slice(&self.server_id.0.to_be_bytes());
        out.extend_from_slice(self.authority_key.as_bytes());
        // At most MAX_SERVERS (1024) fits a u16.
        out.extend_from_slice(&(servers.len() as u16).to_be_bytes());
        for (id, key_id, key) in servers {
            out.extend_from_slice(&id.0.to_be_bytes());
            if version == VERSION_KEY_IDS {
                out.extend_from_slice(&key_id.0.to_be_bytes());
            }
            out.extend_from_slice(key.as_bytes());
        }
        if version == VERSION_KEY_IDS {
            out.extend_from_slice(&(lists.len() as u16).to_be_bytes());
            for list in lists {
                // A list is at most a few hundred bytes (ServerKeyListTbs::MAX_LEN).
                out.extend_from_slice(&(list.as_bytes().len() as u16).to_be_bytes());
                out.extend_from_slice(list.as_bytes());
            }
        }
        // A client certificate is a few hundred bytes; a key set at most 8.5 KiB.
        out.extend_from_slice(&(certificate.len() as u16).to_be_bytes());
        out.extend_from_slice(certificate);
        out.extend_from_slice(&(keys.len() as u32).to_be_bytes());
        out.extend_from_slice(&keys);
        out
    }

    /// Reads a registration, checking that its certificate verifies under its own server's key
    /// among those it lists. The device's `Client::new` then checks that it is the
    /// device's own.
    ///
    /// # Errors
    /// [`Error::Decode`] for anything but an exact, well-formed encoding of at most
    /// [`MAX_LEN`] bytes; [`Error::UnknownServer`] when its server is not listed;
    /// [`Error::BadSignature`] when the certificate does not verify.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() > MAX_LEN {
            return Err(DecodeError::TooLarge("registration").into());
        }
        let mut r = Reader::new(bytes);
        if r.array::<4>("magic")? != MAGIC {
            return Err(DecodeError::BadMagic.into());
        }
        let version = r.u8("version")?;
        if version != VERSION && version != VERSION_KEY_IDS {
            return Err(DecodeError::UnsupportedVersion(version).into());
        }
        let client_id = ClientId(r.u64("client id")?);
        let user_id = UserId(r.u64("user id")?);
        let server_id = ServerId(r.u32("server id")?);
        let authority_key = verifying_key(r.array::<32>("authority key")?)?;
        let count = usize::from(r.u16("server count")?);
        if count > MAX_SERVERS {
            return Err(DecodeError::TooLarge("server count").into());
        }
        let mut servers = Vec::with_capacity(count);
        for _ in 0..count {
            let id = ServerId(r.u32("server id")?);
            let key_id = if version == VERSION_KEY_IDS {
                KeyId(r.u32("key id")?)
            } else {
                KeyId(0)
            };
            servers.push((id, key_id, verifying_key(r.array::<32>("server key")?)?));
        }
        // One encoding each: the second version only when the first cannot say it, and no
        // entry for a server whose list follows.
        let entries_need_ids = servers.iter().any(|(_, k, _)| k.0 != 0);
        let entry_servers: Vec<ServerId> = servers.iter().map(|(id, _, _)| *id).collect();
        let mut servers = ServerKeys::with_key_ids(servers);
        if version == VERSION_KEY_IDS {
            let lists = usize::from(r.u16("list count")?);
            if lists > MAX_SERVERS {
                return Err(DecodeError::TooLarge("list count").into());
            }
            if lists == 0 && !entries_need_ids {
                return Err(DecodeError::InvalidValue(
                    "a second-version registration of the first's content",
                )
                .into());
            }
            for _ in 0..lists {
                let len = usize::from(r.u16("list length")?);
                let list = ServerKeyListIn::from_bytes(r.take(len, "server key list")?)?
                    .verify(&authority_key)?;
                if entry_servers.contains(&list.tbs().server_id) {
                    return Err(DecodeError::InvalidValue(
                        "server entries beside the server's list",
                    )
                    .into());
                }
                servers
                    .apply(list)
                    .map_err(|_| DecodeError::InvalidValue("two lists of one server"))?;
            }
        }
        let len = usize::from(r.u16("certificate length")?);
        let certificate = ClientCertificateIn::from_bytes(r.take(len, "certificate")?)?;
        let len = usize::try_from(r.u32("key set length")?)
            .map_err(|_| DecodeError::TooLarge("key set"))?;
        let device_keys = treecast_keytree::DeviceKeys::from_bytes(r.take(len, "key set")?)?;
        r.finish()?;
        let key = servers.verifier(server_id, certificate.key_id())?;
        let certificate = certificate.verify(key)?;
        Ok(Self {
            client_id,
            user_id,
            server_id,
            device_keys,
            certificate,
            servers: Arc::new(servers),
            authority_key,
        })
    }
}

fn verifying_key(bytes: [u8; 32]) -> Result<VerifyingKey, DecodeError> {
    VerifyingKey::from_bytes(&bytes).map_err(|_| DecodeError::InvalidValue("public key"))
}
