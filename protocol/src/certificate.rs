//! The other signed objects: a client's public-key certificate, the requests a client signs, and
//! the contents copy certificate.

use ed25519_dalek::VerifyingKey;
use treecast_keytree::codec::Reader;
use treecast_keytree::{DecodeError, LeafIndex, TreeId};

use crate::ids::{CertificateId, ClientId, ContentId, LicenseId, ServerId, UserId};
use crate::license::{self, LicenseIn};
use crate::sign::{self, Signable, Signed, Unverified};
use crate::terms::Offer;
use crate::time::UnixTime;

pub use crate::release::ReleaseKey;

/// A client's public-key certificate (claim 5, second table): its key, leaf and owner, signed by
/// the license server it registered with.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ClientCertificateTbs {
    /// The server that issued it.
    pub server_id: ServerId,
    /// The client.
    pub client_id: ClientId,
    /// Its owner.
    pub user_id: UserId,
    /// Its leaf in the key tree.
    pub leaf: u32,
    /// The key tree.
    pub tree_id: TreeId,
    /// The client's Ed25519 public key.
    pub public_key: [u8; 32],
    /// When it was issued.
    pub issued_at: UnixTime,
}

impl ClientCertificateTbs {
    /// A certificate for `client` at `leaf`.
    pub fn new(
        server_id: ServerId,
        client_id: ClientId,
        user_id: UserId,
        leaf: LeafIndex,
        tree_id: TreeId,
        public_key: &VerifyingKey,
        issued_at: UnixTime,
    ) -> Self {
        Self {
            server_id,
            client_id,
            user_id,
            leaf: leaf.get(),
            tree_id,
            public_key: public_key.to_bytes(),
            issued_at,
        }
    }
}

impl sign::sealed::Sealed for ClientCertificateTbs {}

impl Signable for ClientCertificateTbs {
    const LABEL: &'static [u8] = b"treecast/v1/client-certificate\0";
    const MAX_LEN: usize = 5 + 4 + 8 + 8 + 4 + 8 + 32 + 8 + sign::SIGNATURE_LEN;
    const KEYED: bool = true;

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"TCPK");
        out.push(1);
        out.extend_from_slice(&self.server_id.0.to_be_bytes());
        out.extend_from_slice(&self.client_id.0.to_be_bytes());
        out.extend_from_slice(&self.user_id.0.to_be_bytes());
        out.extend_from_slice(&self.leaf.to_be_bytes());
        out.extend_from_slice(&self.tree_id.0.to_be_bytes());
        out.extend_from_slice(&self.public_key);
        out.extend_from_slice(&self.issued_at.0.to_be_bytes());
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        sign::read_start(r, *b"TCPK", 1)?;
        Ok(Self {
            server_id: ServerId(r.u32("server id")?),
            client_id: ClientId(r.u64("client id")?),
            user_id: UserId(r.u64("user id")?),
            leaf: r.u32("leaf")?,
            tree_id: TreeId(r.u64("tree id")?),
            public_key: r.array("public key")?,
            issued_at: UnixTime(r.u64("issued at")?),
        })
    }
}

/// A client's request for a license, signed by the client.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct LicenseRequestTbs {
    /// The requesting client.
    pub client_id: ClientId,
    /// The content wanted.
    pub content_id: ContentId,
    /// A number the client never reuses.
    pub nonce: u64,
    /// When it was made.
    pub created_at: UnixTime,
    /// The offer the client buys under (issue 27); a purchase keeps the first format.
    pub offer: Offer,
}

impl LicenseRequestTbs {
    /// A request by `client_id` for `content_id`, to buy it.
    pub const fn new(
        client_id: ClientId,
        content_id: ContentId,
        nonce: u64,
        created_at: UnixTime,
    ) -> Self {
        Self {
            client_id,
            content_id,
            nonce,
            created_at,
            offer: Offer::Purchase,
        }
    }

    /// The same request under `offer` (a rental, a subscription, a loan).
    #[must_use]
    pub const fn with_offer(mut self, offer: Offer) -> Self {
        self.offer = offer;
        self
    }
}

impl sign::sealed::Sealed for LicenseRequestTbs {}

impl Signable for LicenseRequestTbs {
    const LABEL: &'static [u8] = b"treecast/v1/license-request\0";
    const MAX_LEN: usize = 5 + 8 * 4 + 1 + sign::SIGNATURE_LEN;

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"TCLR");
        // A purchase keeps the first version, byte for byte; another offer is the second, with
        // the offer's byte at the end.
        let offered = self.offer != Offer::Purchase;
        out.push(if offered { 2 } else { 1 });
        out.extend_from_slice(&self.client_id.0.to_be_bytes());
        out.extend_from_slice(&self.content_id.0.to_be_bytes());
        out.extend_from_slice(&self.nonce.to_be_bytes());
        out.extend_from_slice(&self.created_at.0.to_be_bytes());
        if offered {
            out.push(self.offer.code());
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        if r.array::<4>("magic")? != *b"TCLR" {
            return Err(DecodeError::BadMagic);
        }
        let offered = match r.u8("version")? {
            1 => false,
            2 => true,
            other => return Err(DecodeError::UnsupportedVersion(other)),
        };
        let mut t = Self {
            client_id: ClientId(r.u64("client id")?),
            content_id: ContentId(r.u64("content id")?),
            nonce: r.u64("nonce")?,
            created_at: UnixTime(r.u64("created at")?),
            offer: Offer::Purchase,
        };
        if offered {
            t.offer = Offer::from_code(r.u8("offer")?)
                .filter(|&o| o != Offer::Purchase)
                .ok_or(DecodeError::InvalidValue("offer"))?;
        }
        Ok(t)
    }
}

/// The source client's request to move a license to another client (claim 4), signed by the
/// source.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct MoveRequestTbs {
    /// The license to move.
    pub license_id: LicenseId,
    /// The client that holds it.
    pub source: ClientId,
    /// The client to move it to.
    pub destination: ClientId,
    /// A number the client never reuses.
    pub nonce: u64,
    /// When it was made.
    pub created_at: UnixTime,
}

impl MoveRequestTbs {
    /// A request to move `license_id` from `source` to `destination`.
    pub const fn new(
        license_id: LicenseId,
        source: ClientId,
        destination: ClientId,
        nonce: u64,
        created_at: UnixTime,
    ) -> Self {
        Self {
            license_id,
            source,
            destination,
            nonce,
            created_at,
        }
    }
}

impl sign::sealed::Sealed for MoveRequestTbs {}

impl Signable for MoveRequestTbs {
    const LABEL: &'static [u8] = b"treecast/v1/move-request\0";
    const MAX_LEN: usize = 5 + 8 * 5 + sign::SIGNATURE_LEN;

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"TCMR");
        out.push(1);
        out.extend_from_slice(&self.license_id.0.to_be_bytes());
        out.extend_from_slice(&self.source.0.to_be_bytes());
        out.extend_from_slice(&self.destination.0.to_be_bytes());
        out.extend_from_slice(&self.nonce.to_be_bytes());
        out.extend_from_slice(&self.created_at.0.to_be_bytes());
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        sign::read_start(r, *b"TCMR", 1)?;
        Ok(Self {
            license_id: LicenseId(r.u64("license id")?),
            source: ClientId(r.u64("source")?),
            destination: ClientId(r.u64("destination")?),
            nonce: r.u64("nonce")?,
            created_at: UnixTime(r.u64("created at")?),
        })
    }
}

/// A contents copy certificate (claims 1–3): it moves one content from a source client to a
/// destination client of the same user, carries the destination's license (claim 2), and is
/// signed by the license server the destination is registered with (claim 3). Single-use.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct CopyCertificateTbs {
    /// The certificate's unique ID.
    pub certificate_id: CertificateId,
    /// The user who owns both clients.
    pub user_id: UserId,
    /// The content moved.
    pub content_id: ContentId,
    /// The client the content moves from.
    pub source: ClientId,
    /// The license moved away from (now marked moved).
    pub source_license: LicenseId,
    /// The client the content moves to.
    pub destination: ClientId,
    /// The destination's license server, which signed this certificate.
    pub server_id: ServerId,
    /// When it was issued.
    pub issued_at: UnixTime,
    /// After this, the destination refuses it.
    pub expires_at: UnixTime,
    /// `SHA-256("treecast/v1/release-check\0" ‖ R)` of the release `R` that only the source's
    /// device key yields: the destination stores the license only with the `R` that the
    /// source's `Device::move_out` (`treecast-device`) returns after it deleted its copy.
    pub release_check: [u8; 32],
    license: Vec<u8>,
}

impl CopyCertificateTbs {
    /// A certificate carrying the destination's signed `license`.
    #[allow(
        clippy::too_many_arguments,
        reason = "one argument per certificate field"
    )]
    pub fn new(
        certificate_id: CertificateId,
        user_id: UserId,
        source: ClientId,
        source_license: LicenseId,
        destination: ClientId,
        issued_at: UnixTime,
        expires_at: UnixTime,
        release: &ReleaseKey,
        license: &license::License,
    ) -> Self {
        let t = license.tbs();
        Self {
            certificate_id,
            user_id,
            content_id: t.content_id,
            source,
            source_license,
            destination,
            server_id: t.server_id,
            issued_at,
            expires_at,
            release_check: release.check_value(),
            license: license.as_bytes().to_vec(),
        }
    }

    /// The destination's license, still to be verified with the destination server's key.
    ///
    /// # Errors
    /// A [`DecodeError`] if the embedded license does not decode (it always does once the
    /// certificate decoded).
    pub fn license(&self) -> Result<LicenseIn, DecodeError> {
        LicenseIn::from_bytes(&self.license)
    }
}

impl sign::sealed::Sealed for CopyCertificateTbs {}

impl Signable for CopyCertificateTbs {
    const LABEL: &'static [u8] = b"treecast/v1/copy-certificate\0";
    const MAX_LEN: usize = 5
        + 8 * 8
        + 4
        + 32
        + 2
        + license::ENCODED_LEN_TIMED
        + sign::KEY_ID_LEN
        + sign::SIGNATURE_LEN;
    const KEYED: bool = true;

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"TCCC");
        // A certificate carrying a license with terms has the version after this one, so that
        // a device of before issue 27 refuses it instead of dropping the terms.
        let unkeyed = self.license.len() - sign::key_id_len(&self.license);
        out.push(if unkeyed == license::ENCODED_LEN {
            COPY_CERTIFICATE_VERSION
        } else {
            COPY_CERTIFICATE_VERSION_TIMED
        });
        out.extend_from_slice(&self.certificate_id.0.to_be_bytes());
        out.extend_from_slice(&self.user_id.0.to_be_bytes());
        out.extend_from_slice(&self.content_id.0.to_be_bytes());
        out.extend_from_slice(&self.source.0.to_be_bytes());
        out.extend_from_slice(&self.source_license.0.to_be_bytes());
        out.extend_from_slice(&self.destination.0.to_be_bytes());
        out.extend_from_slice(&self.server_id.0.to_be_bytes());
        out.extend_from_slice(&self.issued_at.0.to_be_bytes());
        out.extend_from_slice(&self.expires_at.0.to_be_bytes());
        out.extend_from_slice(&self.release_check);
        // The embedded license has a fixed length (and a key ID), far below u16::MAX.
        out.extend_from_slice(&(self.license.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.license);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        if r.array::<4>("magic")? != *b"TCCC" {
            return Err(DecodeError::BadMagic);
        }
        let license_len = match r.u8("version")? {
            COPY_CERTIFICATE_VERSION => license::ENCODED_LEN,
            COPY_CERTIFICATE_VERSION_TIMED => license::ENCODED_LEN_TIMED,
            other => return Err(DecodeError::UnsupportedVersion(other)),
        };
        let tbs = Self {
            certificate_id: CertificateId(r.u64("certificate id")?),
            user_id: UserId(r.u64("user id")?),
            content_id: ContentId(r.u64("content id")?),
            source: ClientId(r.u64("source")?),
            source_license: LicenseId(r.u64("source license")?),
            destination: ClientId(r.u64("destination")?),
            server_id: ServerId(r.u32("server id")?),
            issued_at: UnixTime(r.u64("issued at")?),
            expires_at: UnixTime(r.u64("expires at")?),
            release_check: r.array("release check")?,
            license: {
                let len = usize::from(r.u16("license length")?);
                // With the license's key ID when its server's key rotated (issue 29).
                if len != license_len && len != license_len + sign::KEY_ID_LEN {
                    return Err(DecodeError::InvalidValue("license length"));
                }
                r.take(len, "license")?.to_vec()
            },
        };
        tbs.license()?;
        Ok(tbs)
    }
}

/// The copy-certificate format version: 2 added the release check (issue 12).
pub const COPY_CERTIFICATE_VERSION: u8 = 2;
/// The version of a copy certificate that carries a license with terms (issue 27): the same
/// fields, the embedded license in its second version.
pub const COPY_CERTIFICATE_VERSION_TIMED: u8 = 3;

impl ReleaseKey {
    /// Whether this release is the one `certificate` was issued for (constant time).
    pub fn opens(&self, certificate: &CopyCertificateTbs) -> bool {
        use subtle::ConstantTimeEq;
        bool::from(self.check_value().ct_eq(&certificate.release_check))
    }
}

/// A client's public-key certificate, signed.
pub type ClientCertificate = Signed<ClientCertificateTbs>;
/// A signed license request.
pub type LicenseRequest = Signed<LicenseRequestTbs>;
/// A signed move request.
pub type MoveRequest = Signed<MoveRequestTbs>;
/// A signed contents copy certificate.
pub type CopyCertificate = Signed<CopyCertificateTbs>;
/// A client certificate as received, not yet verified.
pub type ClientCertificateIn = Unverified<ClientCertificateTbs>;
/// A copy certificate as received, not yet verified.
pub type CopyCertificateIn = Unverified<CopyCertificateTbs>;
