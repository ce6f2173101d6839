//! What a move and a signed request are to the registry: the move as requested and the rows it
//! reads ([`check_move`], claims 4 and 13), and the tag that records a request once.

use treecast_protocol::Error;
use treecast_protocol::ids::{ClientId, LicenseId};
use treecast_protocol::license::Rights;
use treecast_protocol::time::UnixTime;

use crate::{ClientRecord, LicenseRecord, LicenseState};

/// A move as requested: what the registry checks and applies.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct MoveIntent {
    /// The license to move.
    pub license: LicenseId,
    /// Its holder.
    pub source: ClientId,
    /// The client to move it to.
    pub destination: ClientId,
    /// The source's signed request, recorded so that it is used once (and recognised when it
    /// is sent again).
    pub request: RequestTag,
}

impl MoveIntent {
    /// A move of `license` from `source` to `destination`, asked for by the source's `request`.
    pub const fn new(
        license: LicenseId,
        source: ClientId,
        destination: ClientId,
        request: RequestTag,
    ) -> Self {
        Self {
            license,
            source,
            destination,
            request,
        }
    }
}

/// A signed request as the registry records it: its nonce, used once per client, and a digest
/// of its bytes, so that the same bytes sent again (a client that lost the answer) are told
/// from another request that reuses the nonce; and when the registry may forget it.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct RequestTag {
    /// The request's nonce.
    pub nonce: u64,
    /// The first 16 bytes of the SHA-256 of the request's encoding. Only the client's key signs
    /// requests with its nonces, so a collision (2^64 work) would gain its maker only the
    /// answer to its own earlier request.
    pub digest: [u8; 16],
    /// When the distributor asked for the request to be recorded (its clock).
    pub recorded_at: UnixTime,
    /// After this time the request is long stale: a replay of it is refused before the registry
    /// is asked, so a store may forget the tag (the memory store does; the SQL stores keep
    /// every tag). `UnixTime(u64::MAX)`, never, unless [`RequestTag::with_window`] says.
    pub forget_after: UnixTime,
}

impl RequestTag {
    /// The tag of the signed request `bytes`, whose nonce is `nonce`, kept forever.
    pub fn of(nonce: u64, bytes: &[u8]) -> Self {
        use sha2::Digest;
        let full = sha2::Sha256::digest(bytes);
        let mut digest = [0u8; 16];
        digest.copy_from_slice(full.get(..16).unwrap_or(&[0; 16]));
        Self::new(nonce, digest)
    }

    /// A tag from its parts, kept forever.
    pub const fn new(nonce: u64, digest: [u8; 16]) -> Self {
        Self {
            nonce,
            digest,
            recorded_at: UnixTime(0),
            forget_after: UnixTime(u64::MAX),
        }
    }

    /// The same tag, recorded at `recorded_at` and forgettable after `forget_after`.
    #[must_use]
    pub const fn with_window(mut self, recorded_at: UnixTime, forget_after: UnixTime) -> Self {
        self.recorded_at = recorded_at;
        self.forget_after = forget_after;
        self
    }
}

/// A request the registry recorded, and what it produced.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct UsedRequest {
    /// The digest of the request's bytes ([`RequestTag::digest`]).
    pub digest: [u8; 16],
    /// The license ID a license request produced, or the certificate ID a move request did.
    pub answer: u64,
}

impl UsedRequest {
    /// A record from its parts.
    pub const fn new(digest: [u8; 16], answer: u64) -> Self {
        Self { digest, answer }
    }
}

/// What the registry read for a move, checked by [`check_move`] and handed to the builder.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct MoveContext {
    /// The source client.
    pub source: ClientRecord,
    /// The license being moved.
    pub license: LicenseRecord,
    /// The destination client.
    pub destination: ClientRecord,
}

/// The checks of claims 4 and 13 before a certificate is issued: the source client is registered
/// and not revoked, it holds the license and the license is still active, and the destination is
/// a registered, non-revoked client of the same user.
///
/// # Errors
/// The first rule broken, as its own error; but another user's license is
/// [`Error::LicenseNotFound`] and another user's client [`Error::ClientNotFound`], as missing
/// ones are (so a signed request learns nothing of other users' rows).
pub fn check_move(
    intent: &MoveIntent,
    source: Option<ClientRecord>,
    license: Option<LicenseRecord>,
    destination: Option<ClientRecord>,
) -> Result<MoveContext, Error> {
    // Claim 4 (i): the source client is legal: registered and not revoked.
    let source = source.ok_or(Error::ClientNotFound(intent.source))?;
    if source.revoked {
        return Err(Error::ClientRevoked(source.id));
    }
    // Claim 4 (ii): the source holds a license for the content, still usable. Another user's
    // license is answered as a missing one: the request proves who sends it, and tells them
    // nothing of what others own (`docs/threat-model.md`).
    let license = license
        .filter(|l| l.user == source.user)
        .ok_or(Error::LicenseNotFound(intent.license))?;
    if license.client != source.id {
        return Err(Error::LicenseNotHeld(license.id));
    }
    if license.state != LicenseState::Active {
        return Err(Error::LicenseMoved(license.id));
    }
    if !license.rights.allows(Rights::MOVE) {
        return Err(Error::RightsDenied(license.id));
    }
    // Claim 4 (iii) and the destination: a registered, non-revoked client of the same user,
    // and not the source itself. Another user's client is answered as a missing one, revoked
    // or not.
    let destination = destination
        .filter(|d| d.user == source.user)
        .ok_or(Error::ClientNotFound(intent.destination))?;
    if destination.id == source.id {
        return Err(Error::SameClient);
    }
    if destination.revoked {
        return Err(Error::ClientRevoked(destination.id));
    }
    Ok(MoveContext {
        source,
        license,
        destination,
    })
}
