//! What protects the distributor's own storage: the content-key envelopes and the authentication
//! of the registry rows the server trusts.
//!
//! Both are keyed by the [`DistributorSecret`], which the authority derives from the master
//! secret and which no EKB, device key set or license carries. A registry reader who also holds
//! every epoch's payload key (any registered device has the current one; a revoked device has
//! the old ones) therefore learns no content key and cannot forge a row.
//!
//! - **Envelopes**: a content key is AES-key-wrapped (RFC 3394) under
//!   `HKDF-SHA-256(salt "treecast/v1/content-envelope", ikm = distributor secret,
//!   info = key ID ‖ content ID)`. The key ID is stored in the row, so that new contents can be
//!   enveloped under a new ID while old rows stay readable (`DistributorConfig::storage_key_id`).
//! - **Row tags**: keyed BLAKE3 under `BLAKE3-derive_key("treecast/v1 registry rows",
//!   distributor secret)` over a fixed encoding of every field the server acts on (a
//!   client's owner, leaf, server, public key and revocation; a license's content, client, owner,
//!   epoch, rights, state and origin).

use aes::Aes128;
use aes::cipher::KeyInit;
use aes_kw::AesKw;
use subtle::ConstantTimeEq;
use treecast_keytree::DistributorSecret;
use treecast_protocol::Error;
use treecast_protocol::content::ContentKey;
use treecast_protocol::credential::UserCredential;
use treecast_protocol::ids::{ContentId, UserId};
use treecast_protocol::kdf;
use treecast_registry::RegistryId;
use treecast_registry::{ClientRecord, ContentRecord, LicenseRecord, LicenseState};
use zeroize::Zeroizing;

/// The length of a row tag.
pub(crate) const TAG_LEN: usize = 32;

/// The distributor's storage keys, derived once from its secret.
pub(crate) struct Vault {
    secret: DistributorSecret,
    /// Whether rows are tagged and checked: only where someone but this process can write
    /// them ([`Registry::has_outside_writers`](treecast_registry::Registry::has_outside_writers)).
    tagged: bool,
    rows: Zeroizing<[u8; 32]>,
    credentials: Zeroizing<[u8; 32]>,
}

impl Vault {
    /// The vault of `secret`, tagging and checking registry rows when `tagged`, for the
    /// registry `registry` (user credentials are bound to it).
    pub(crate) fn new(secret: &DistributorSecret, tagged: bool, registry: &RegistryId) -> Self {
        Self {
            secret: secret.clone(),
            tagged,
            rows: Zeroizing::new(blake3::derive_key(
                "treecast/v1 registry rows",
                secret.secret_bytes(),
            )),
            credentials: {
                let root = Zeroizing::new(blake3::derive_key(
                    "treecast/v1 user credentials",
                    secret.secret_bytes(),
                ));
                Zeroizing::new(*blake3::keyed_hash(&root, registry.as_bytes()).as_bytes())
            },
        }
    }

    /// The credential of `user` at credential epoch `epoch` (`credential.rs`): epoch 0 hashes
    /// the user's ID alone (the credentials issued before rotation existed), a later epoch the
    /// ID and the epoch (a longer input, so never an earlier epoch's).
    pub(crate) fn user_credential(&self, user: UserId, epoch: u64) -> UserCredential {
        let mut h = blake3::Hasher::new_keyed(&self.credentials);
        h.update(&user.0.to_be_bytes());
        if epoch > 0 {
            h.update(&epoch.to_be_bytes());
        }
        UserCredential::from_bytes(*h.finalize().as_bytes())
    }

    fn envelope_key(&self, key_id: u32, content: ContentId) -> Result<Zeroizing<[u8; 16]>, Error> {
        kdf::expand(
            b"treecast/v1/content-envelope",
            self.secret.secret_bytes(),
            &[&key_id.to_be_bytes(), &content.0.to_be_bytes()],
        )
    }

    /// Envelopes `key` for storage under storage key `key_id`.
    pub(crate) fn seal(
        &self,
        key_id: u32,
        content: ContentId,
        key: &ContentKey,
    ) -> Result<[u8; 24], Error> {
        let kek = self.envelope_key(key_id, content)?;
        let mut out = [0u8; 24];
        AesKw::<Aes128>::new((&*kek).into())
            .wrap_key(key.secret_bytes(), &mut out)
            .map_err(|_| Error::Internal("key wrap"))?;
        Ok(out)
    }

    /// The content key of a stored record.
    ///
    /// # Errors
    /// [`Error::UnwrapFailed`] when the envelope was not made by this distributor for this
    /// content and key ID (a forged or moved row).
    pub(crate) fn open(&self, record: &ContentRecord) -> Result<ContentKey, Error> {
        let kek = self.envelope_key(record.key_id, record.id)?;
        let mut out = Zeroizing::new([0u8; 16]);
        AesKw::<Aes128>::new((&*kek).into())
            .unwrap_key(&record.envelope, out.as_mut_slice())
            .map_err(|_| Error::UnwrapFailed)?;
        Ok(ContentKey::from_bytes(*out))
    }

    fn tag(&self, kind: &[u8], fields: &[u8]) -> [u8; TAG_LEN] {
        let mut h = blake3::Hasher::new_keyed(&self.rows);
        h.update(kind);
        h.update(fields);
        *h.finalize().as_bytes()
    }

    /// The tag of a client row as it should be stored.
    pub(crate) fn client_tag(&self, c: &ClientRecord) -> [u8; TAG_LEN] {
        let mut f = Vec::with_capacity(64);
        f.extend_from_slice(&c.id.0.to_be_bytes());
        f.extend_from_slice(&c.user.0.to_be_bytes());
        f.extend_from_slice(&c.leaf.get().to_be_bytes());
        f.extend_from_slice(&c.server.0.to_be_bytes());
        f.extend_from_slice(&c.public_key);
        f.push(u8::from(c.revoked));
        self.tag(b"treecast/v1/row/client\0", &f)
    }

    /// The tag of a license row as it should be stored.
    pub(crate) fn license_tag(&self, l: &LicenseRecord) -> [u8; TAG_LEN] {
        let mut f = Vec::with_capacity(64);
        f.extend_from_slice(&l.id.0.to_be_bytes());
        f.extend_from_slice(&l.content.0.to_be_bytes());
        f.extend_from_slice(&l.client.0.to_be_bytes());
        f.extend_from_slice(&l.user.0.to_be_bytes());
        f.extend_from_slice(&l.epoch.to_be_bytes());
        f.push(l.rights.0);
        f.push(match l.state {
            LicenseState::Active => 0,
            LicenseState::Moved => 1,
            LicenseState::Returned => 2,
        });
        match l.origin {
            Some(c) => {
                f.push(1);
                f.extend_from_slice(&c.0.to_be_bytes());
            }
            None => f.push(0),
        }
        f.extend_from_slice(&l.issued_at.0.to_be_bytes());
        // Terms only when there are some (a fixed length, after the fixed-length fields): a
        // perpetual license keeps the tag it had before issue 27.
        if let Some(terms) = &l.terms {
            terms.encode(&mut f);
        }
        self.tag(b"treecast/v1/row/license\0", &f)
    }

    /// A client row as read from the registry, if its tag is right (any row of a registry
    /// that keeps no tags).
    ///
    /// # Errors
    /// [`Error::Tampered`] when it is not.
    pub(crate) fn check_client(&self, c: ClientRecord) -> Result<ClientRecord, Error> {
        if !self.tagged || bool::from(self.client_tag(&c).ct_eq(&c.tag)) {
            Ok(c)
        } else {
            Err(Error::Tampered("client row"))
        }
    }

    /// A license row as read from the registry, if its tag is right (any row of a registry
    /// that keeps no tags).
    ///
    /// # Errors
    /// [`Error::Tampered`] when it is not.
    pub(crate) fn check_license(&self, l: LicenseRecord) -> Result<LicenseRecord, Error> {
        if !self.tagged || bool::from(self.license_tag(&l).ct_eq(&l.tag)) {
            Ok(l)
        } else {
            Err(Error::Tampered("license row"))
        }
    }

    /// `c` with its tag set (all zero for a registry that keeps no tags).
    pub(crate) fn tag_client(&self, mut c: ClientRecord) -> ClientRecord {
        c.tag = if self.tagged {
            self.client_tag(&c)
        } else {
            [0; TAG_LEN]
        };
        c
    }

    /// `l` with its tag set (all zero for a registry that keeps no tags).
    pub(crate) fn tag_license(&self, mut l: LicenseRecord) -> LicenseRecord {
        l.tag = if self.tagged {
            self.license_tag(&l)
        } else {
            [0; TAG_LEN]
        };
        l
    }
}
