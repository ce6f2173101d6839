//! Licenses: the right of one client to use one content, signed by the client's license server.
//!
//! A license carries the content key wrapped (AES key wrap, RFC 3394) under a *binding key*
//! derived with HKDF-SHA-256 from the payload key of the license's EKB epoch **and** the client's
//! own device key. Unwrapping therefore needs both: a revoked client cannot open the epoch's EKB,
//! and another client lacks the device key.
//!
//! Type states: a [`LicenseTbs`] is signed by a server into a [`License`] (a
//! [`Signed`]`<LicenseTbs>`), the only form that encodes. Bytes from outside decode only into a
//! [`LicenseIn`], and [`Unverified::verify`] turns it into a [`License`].

use aes::Aes128;
use aes::cipher::KeyInit;
use aes_kw::AesKw;
use treecast_keytree::codec::Reader;
use treecast_keytree::{DecodeError, DeviceKey, PayloadKey};
use zeroize::Zeroizing;

use crate::Error;
use crate::content::ContentKey;
use crate::ids::{ClientId, ContentId, LicenseId, ServerId, UserId};
use crate::kdf;
use crate::release::ReleaseKey;
use crate::sign::{self, Signable, Signed, Unverified};
use crate::terms::Terms;
use crate::time::UnixTime;

/// What a license allows, as bit flags on the wire.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub struct Rights(pub u8);

impl Rights {
    /// Play (decrypt) the content.
    pub const PLAY: Self = Self(1);
    /// Move the content to another client of the same user.
    pub const MOVE: Self = Self(2);
    /// Play and move.
    pub const PLAY_AND_MOVE: Self = Self(3);

    /// Whether every right in `other` is granted.
    pub const fn allows(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

/// The fields of a license, before it is signed. The device, another crate, rebuilds it field by
/// field from the compact state it keeps.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct LicenseTbs {
    /// The license.
    pub license_id: LicenseId,
    /// The content it is for.
    pub content_id: ContentId,
    /// The one client that may use it.
    pub client_id: ClientId,
    /// The user who owns it.
    pub user_id: UserId,
    /// The license server that signed it (the client's).
    pub server_id: ServerId,
    /// The EKB epoch whose payload key it is bound to.
    pub epoch: u64,
    /// What it allows.
    pub rights: Rights,
    /// When it was issued.
    pub issued_at: UnixTime,
    /// Its time-bounded rights; `None` for a perpetual purchase (issue 27). A license with
    /// terms is encoded in the second format version.
    pub terms: Option<Terms>,
    /// The content key, wrapped under the binding key.
    pub wrapped_key: [u8; WRAPPED_LEN],
}

impl LicenseTbs {
    /// A license whose content key is wrapped for `device_key` under the payload key of
    /// `epoch`, and, for a license that a copy certificate carries, under the source's
    /// `release` too.
    ///
    /// # Errors
    /// [`Error::Internal`] if key wrapping fails (it cannot for 16-byte keys).
    #[allow(clippy::too_many_arguments, reason = "one argument per license field")]
    pub fn new(
        license_id: LicenseId,
        content_id: ContentId,
        client_id: ClientId,
        user_id: UserId,
        server_id: ServerId,
        epoch: (u64, &PayloadKey),
        (rights, issued_at, terms): (Rights, UnixTime, Option<Terms>),
        binding: (&DeviceKey, Option<&ReleaseKey>),
        content_key: &ContentKey,
    ) -> Result<Self, Error> {
        let kek = binding_key(epoch.1, binding, license_id, content_id, client_id, epoch.0)?;
        let mut wrapped_key = [0u8; WRAPPED_LEN];
        AesKw::<Aes128>::new((&*kek).into())
            .wrap_key(content_key.secret_bytes(), &mut wrapped_key)
            .map_err(|_| Error::Internal("key wrap"))?;
        Ok(Self {
            license_id,
            content_id,
            client_id,
            user_id,
            server_id,
            epoch: epoch.0,
            rights,
            issued_at,
            terms,
            wrapped_key,
        })
    }
}

impl sign::sealed::Sealed for LicenseTbs {}

impl Signable for LicenseTbs {
    const LABEL: &'static [u8] = b"treecast/v1/license\0";
    const MAX_LEN: usize = ENCODED_LEN_TIMED;
    const KEYED: bool = true;

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&MAGIC);
        out.push(if self.terms.is_some() {
            VERSION_TIMED
        } else {
            VERSION
        });
        out.extend_from_slice(&self.license_id.0.to_be_bytes());
        out.extend_from_slice(&self.content_id.0.to_be_bytes());
        out.extend_from_slice(&self.client_id.0.to_be_bytes());
        out.extend_from_slice(&self.user_id.0.to_be_bytes());
        out.extend_from_slice(&self.server_id.0.to_be_bytes());
        out.extend_from_slice(&self.epoch.to_be_bytes());
        out.push(self.rights.0);
        out.extend_from_slice(&self.issued_at.0.to_be_bytes());
        if let Some(terms) = &self.terms {
            terms.encode(out);
        }
        out.extend_from_slice(&self.wrapped_key);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        if r.array::<4>("magic")? != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        let timed = match r.u8("version")? {
            VERSION => false,
            VERSION_TIMED => true,
            other => return Err(DecodeError::UnsupportedVersion(other)),
        };
        Ok(Self {
            license_id: LicenseId(r.u64("license id")?),
            content_id: ContentId(r.u64("content id")?),
            client_id: ClientId(r.u64("client id")?),
            user_id: UserId(r.u64("user id")?),
            server_id: ServerId(r.u32("server id")?),
            epoch: r.u64("epoch")?,
            rights: Rights(r.u8("rights")?),
            issued_at: UnixTime(r.u64("issued at")?),
            terms: if timed { Some(Terms::read(r)?) } else { None },
            wrapped_key: r.array("wrapped key")?,
        })
    }
}

/// A signed license (signed by its server, or verified).
pub type License = Signed<LicenseTbs>;

/// A decoded license whose signature has not been checked.
pub type LicenseIn = Unverified<LicenseTbs>;

impl Signed<LicenseTbs> {
    /// The content key, unwrapped with the epoch's payload key and this client's device key
    /// (and, for a license that arrived by a move, the source's release).
    ///
    /// # Errors
    /// [`Error::UnwrapFailed`] when a key is not the one the license was issued for.
    pub fn content_key(
        &self,
        epoch_key: &PayloadKey,
        device_key: &DeviceKey,
        release: Option<&ReleaseKey>,
    ) -> Result<ContentKey, Error> {
        self.tbs().content_key(epoch_key, device_key, release)
    }
}

impl LicenseTbs {
    /// The content key, unwrapped as [`License::content_key`] does, from the fields of a
    /// license whose signature was verified when it arrived (a client keeps only these).
    ///
    /// # Errors
    /// [`Error::UnwrapFailed`] when a key is not the one the license was issued for.
    pub fn content_key(
        &self,
        epoch_key: &PayloadKey,
        device_key: &DeviceKey,
        release: Option<&ReleaseKey>,
    ) -> Result<ContentKey, Error> {
        let t = self;
        let kek = binding_key(
            epoch_key,
            (device_key, release),
            t.license_id,
            t.content_id,
            t.client_id,
            t.epoch,
        )?;
        let mut out = Zeroizing::new([0u8; 16]);
        AesKw::<Aes128>::new((&*kek).into())
            .unwrap_key(&t.wrapped_key, out.as_mut_slice())
            .map_err(|_| Error::UnwrapFailed)?;
        Ok(ContentKey::from_bytes(*out))
    }
}

/// The key that binds a license to its epoch and client, and for a moved license to the
/// source's release: `HKDF-SHA-256(salt, ikm = epoch key ‖ device key [‖ release], info = IDs)`,
/// the salt `treecast/v1/license-binding` or, with a release, `treecast/v1/moved-license-binding`.
fn binding_key(
    epoch_key: &PayloadKey,
    (device_key, release): (&DeviceKey, Option<&ReleaseKey>),
    license: LicenseId,
    content: ContentId,
    client: ClientId,
    epoch: u64,
) -> Result<Zeroizing<[u8; 16]>, Error> {
    let mut ikm = Zeroizing::new([0u8; 48]);
    let (first, rest) = ikm.split_at_mut(16);
    let (second, third) = rest.split_at_mut(16);
    first.copy_from_slice(epoch_key.secret_bytes());
    second.copy_from_slice(device_key.secret_bytes());
    let (salt, ikm): (&[u8], &[u8]) = match release {
        Some(r) => {
            third.copy_from_slice(r.secret_bytes());
            (b"treecast/v1/moved-license-binding", ikm.as_slice())
        }
        None => (
            b"treecast/v1/license-binding",
            ikm.get(..32).unwrap_or_default(),
        ),
    };
    kdf::expand(
        salt,
        ikm,
        &[
            &license.0.to_be_bytes(),
            &content.0.to_be_bytes(),
            &client.0.to_be_bytes(),
            &epoch.to_be_bytes(),
        ],
    )
}

/// The magic label of a license.
pub const MAGIC: [u8; 4] = *b"TCLI";
/// The license format version of a perpetual license (no terms).
pub const VERSION: u8 = 1;
/// The license format version of a license with [`Terms`] (issue 27): the first version's
/// fields with the terms between the issue time and the wrapped key.
pub const VERSION_TIMED: u8 = 2;
/// The length of the wrapped content key.
pub const WRAPPED_LEN: usize = 24;
/// The encoded length of a signed license.
pub const ENCODED_LEN: usize = 4 + 1 + 8 * 4 + 4 + 8 + 1 + 8 + WRAPPED_LEN + sign::SIGNATURE_LEN;
/// The encoded length of a signed license with terms.
pub const ENCODED_LEN_TIMED: usize = ENCODED_LEN + Terms::ENCODED_LEN;
