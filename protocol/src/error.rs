//! The error type of the contents distribution system.

use core::fmt;

use treecast_keytree::DecodeError;

use crate::ids::{CertificateId, ClientId, ContentId, KeyId, LicenseId, ServerId, UserId};

/// What went wrong. Cryptographic failures are deliberately opaque (`BadSignature`,
/// `UnwrapFailed`, `ContentCorrupt`).
#[non_exhaustive]
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Error {
    /// A signature does not verify under the key it must verify under.
    BadSignature,
    /// A user's credential is not theirs (or not a credential at all).
    BadCredential,
    /// A copy certificate has already been used on this client.
    CertificateReplayed(CertificateId),
    /// A copy certificate is past its expiry.
    CertificateExpired,
    /// The user already has the maximum number of clients.
    ClientLimit(UserId),
    /// No such client is registered.
    ClientNotFound(ClientId),
    /// The client is revoked.
    ClientRevoked(ClientId),
    /// Content failed authentication: altered, truncated or under another key.
    ContentCorrupt,
    /// No such content.
    ContentNotFound(ContentId),
    /// Bytes from outside are not a well-formed encoding.
    Decode(DecodeError),
    /// The source and destination of a move belong to different users. The distributor no
    /// longer answers it (another user's client is [`Error::ClientNotFound`], as a missing one
    /// is); an older service may.
    DifferentUsers,
    /// A state the library should never reach; please report it.
    Internal(&'static str),
    /// Reading or writing a stream failed.
    Io(String),
    /// A key-tree operation failed.
    KeyTree(treecast_keytree::Error),
    /// The registry was created with other keys or another tree (another key file, scheme,
    /// height or tree ID): nothing was written to it.
    KeysMismatch {
        /// The fingerprint the store is bound to.
        stored: crate::binding::KeyFingerprint,
        /// The fingerprint of the keys it was opened with.
        given: crate::binding::KeyFingerprint,
    },
    /// The license has been moved to another client and is no longer usable.
    LicenseMoved(LicenseId),
    /// The source client does not hold this license.
    LicenseNotHeld(LicenseId),
    /// No such license.
    LicenseNotFound(LicenseId),
    /// This client holds no usable license for the content.
    NoLicense(ContentId),
    /// The license, certificate or request is addressed to another client.
    NotForThisClient,
    /// A signed request was already used (same client, same nonce).
    RequestReplayed,
    /// A signed request is older than the server accepts, or dated too far in the future.
    RequestStale,
    /// The license does not grant the right this needs (play or move).
    RightsDenied(LicenseId),
    /// A moved-in license arrived without the source's release: the source has not deleted its
    /// copy (or the release is not the one for this certificate).
    NotReleased,
    /// A registry row the server acts on does not carry the distributor's tag: it was written
    /// by someone else.
    Tampered(&'static str),
    /// A saved client state is not sealed under this client's device key: altered, truncated,
    /// or made by someone else.
    StateTampered,
    /// The registry's storage failed.
    Storage(String),
    /// The license was issued for an epoch whose EKB this client cannot open, or a stale epoch.
    StaleEpoch {
        /// The epoch named in the object.
        got: u64,
        /// The epoch the server is in.
        current: u64,
    },
    /// A move from a client to itself.
    SameClient,
    /// No such license server.
    UnknownServer(ServerId),
    /// An object signed by a key of its server that the verifier does not hold (issue 29): a
    /// key newer than the verifier's list of that server's keys (fetch the list and try
    /// again), or one retired.
    UnknownServerKey(ServerId, KeyId),
    /// A list of a server's keys no newer than the one held (issue 29).
    StaleServerKeys {
        /// The server.
        server: ServerId,
        /// The list's sequence number.
        got: u64,
        /// The sequence number of the list held.
        held: u64,
    },
    /// No such user.
    UserNotFound(UserId),
    /// A wrapped key did not unwrap.
    UnwrapFailed,
    /// License terms that do not hold together (dates out of order, a renewal beyond its
    /// limit, an offer the content does not have).
    InvalidTerms(&'static str),
    /// The license's time has ended (or its playback window has).
    LicenseExpired(LicenseId),
    /// The license does not play yet.
    LicenseNotYetValid(LicenseId),
    /// Every copy of the content is on loan (issue 27).
    NoCopyAvailable(ContentId),
    /// The registry holds no EKB for this epoch yet, and this license server, holding no master
    /// secret, cannot build one: the authority publishes it (issue 29).
    EkbNotPublished(u64),
    /// This license server holds no master secret: what was asked is the authority's (building
    /// EKBs, revoking), done by `treecast authority` (issue 29).
    AuthorityOnly(&'static str),
    /// The device's clock reads earlier than a time its license server signed: it was set back.
    ClockSetBack {
        /// The device's clock.
        clock: crate::time::UnixTime,
        /// The latest server-signed time the device has seen.
        trusted: crate::time::UnixTime,
    },
    /// The network service refused a request with an error that has no variant of its own
    /// here (see `docs/service.md` for the codes).
    Service {
        /// The HTTP status.
        status: u16,
        /// The service's error code.
        code: String,
        /// The service's message.
        message: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadSignature => f.write_str("a signature does not verify"),
            Self::BadCredential => f.write_str("the credential is not this user's"),
            Self::CertificateReplayed(id) => write!(f, "{id} has already been used"),
            Self::CertificateExpired => f.write_str("the copy certificate has expired"),
            Self::ClientLimit(user) => {
                write!(f, "{user} already has the maximum number of clients")
            }
            Self::ClientNotFound(id) => write!(f, "{id} is not registered"),
            Self::ClientRevoked(id) => write!(f, "{id} is revoked"),
            Self::ContentCorrupt => f.write_str("the content failed authentication"),
            Self::ContentNotFound(id) => write!(f, "{id} does not exist"),
            Self::Decode(e) => write!(f, "malformed input: {e}"),
            Self::DifferentUsers => f.write_str("source and destination belong to different users"),
            Self::Internal(what) => write!(f, "internal error (a bug in treecast): {what}"),
            Self::Io(e) => write!(f, "i/o error: {e}"),
            Self::KeyTree(e) => write!(f, "key tree: {e}"),
            Self::KeysMismatch { stored, given } => write!(
                f,
                "the registry belongs to other keys (key fingerprint {stored}), not to the key \
                 file and tree given (fingerprint {given}): check the key file and --scheme"
            ),
            Self::LicenseMoved(id) => write!(f, "{id} has been moved away"),
            Self::LicenseNotHeld(id) => write!(f, "the source client does not hold {id}"),
            Self::LicenseNotFound(id) => write!(f, "{id} does not exist"),
            Self::NoLicense(id) => write!(f, "no usable license for {id} on this client"),
            Self::NotForThisClient => f.write_str("addressed to another client"),
            Self::RequestReplayed => f.write_str("the request was already used"),
            Self::RequestStale => f.write_str("the request is too old or dated in the future"),
            Self::RightsDenied(id) => write!(f, "{id} does not grant that right"),
            Self::NotReleased => {
                f.write_str("the source client has not released this move (no valid release)")
            }
            Self::Tampered(what) => write!(
                f,
                "a {what} in the registry is not authenticated by this distributor"
            ),
            Self::StateTampered => {
                f.write_str("the saved client state is not sealed by this client's device")
            }
            Self::Storage(e) => write!(f, "registry storage: {e}"),
            Self::StaleEpoch { got, current } => {
                write!(f, "epoch {got} is not usable (current {current})")
            }
            Self::SameClient => f.write_str("source and destination are the same client"),
            Self::UnknownServer(id) => write!(f, "{id} is not a known license server"),
            Self::UnknownServerKey(id, key) => write!(
                f,
                "signed by {key} of {id}, which this list of its keys does not hold (newer, or \
                 retired)"
            ),
            Self::StaleServerKeys { server, got, held } => write!(
                f,
                "the list of {server}'s keys numbered {got} is not newer than the one held ({held})"
            ),
            Self::UserNotFound(id) => write!(f, "{id} does not exist"),
            Self::UnwrapFailed => f.write_str("a key did not unwrap"),
            Self::InvalidTerms(what) => write!(f, "invalid license terms: {what}"),
            Self::LicenseExpired(id) => write!(f, "{id} has expired"),
            Self::LicenseNotYetValid(id) => write!(f, "{id} does not play yet"),
            Self::NoCopyAvailable(id) => write!(f, "every copy of {id} is on loan"),
            Self::EkbNotPublished(epoch) => write!(
                f,
                "epoch {epoch} has no EKB in the registry yet: the authority publishes it \
                 (`treecast authority publish-ekb`)"
            ),
            Self::AuthorityOnly(what) => write!(
                f,
                "{what} is the authority's: this license server holds no master secret (run \
                 `treecast authority` with the full key file)"
            ),
            Self::ClockSetBack { clock, trusted } => write!(
                f,
                "the device clock ({}) is earlier than a time its server signed ({}): it was set \
                 back",
                clock.0, trusted.0
            ),
            Self::Service {
                status,
                code,
                message,
            } => write!(f, "the service answered {status} {code}: {message}"),
        }
    }
}

impl Error {
    /// A stable, machine-readable name of the error's kind (`snake_case`), as the network
    /// service reports it in `{"error": CODE}`.
    pub const fn code(&self) -> &'static str {
        match self {
            Self::BadSignature => "bad_signature",
            Self::BadCredential => "bad_credential",
            Self::CertificateReplayed(_) => "certificate_replayed",
            Self::CertificateExpired => "certificate_expired",
            Self::ClientLimit(_) => "client_limit",
            Self::ClientNotFound(_) => "client_not_found",
            Self::ClientRevoked(_) => "client_revoked",
            Self::ContentCorrupt => "content_corrupt",
            Self::ContentNotFound(_) => "content_not_found",
            Self::Decode(_) => "malformed",
            Self::DifferentUsers => "different_users",
            Self::Internal(_) => "internal",
            Self::Io(_) => "io",
            Self::KeyTree(_) => "key_tree",
            Self::KeysMismatch { .. } => "keys_mismatch",
            Self::LicenseMoved(_) => "license_moved",
            Self::LicenseNotHeld(_) => "license_not_held",
            Self::LicenseNotFound(_) => "license_not_found",
            Self::NoLicense(_) => "no_license",
            Self::NotForThisClient => "not_for_this_client",
            Self::RequestReplayed => "request_replayed",
            Self::RequestStale => "request_stale",
            Self::RightsDenied(_) => "rights_denied",
            Self::NotReleased => "not_released",
            Self::Tampered(_) => "tampered",
            Self::StateTampered => "state_tampered",
            Self::Storage(_) => "storage",
            Self::StaleEpoch { .. } => "stale_epoch",
            Self::SameClient => "same_client",
            Self::UnknownServer(_) => "unknown_server",
            Self::UnknownServerKey(..) => "unknown_server_key",
            Self::StaleServerKeys { .. } => "stale_server_keys",
            Self::UserNotFound(_) => "user_not_found",
            Self::UnwrapFailed => "unwrap_failed",
            Self::InvalidTerms(_) => "invalid_terms",
            Self::LicenseExpired(_) => "license_expired",
            Self::LicenseNotYetValid(_) => "license_not_yet_valid",
            Self::NoCopyAvailable(_) => "no_copy_available",
            Self::EkbNotPublished(_) => "ekb_not_published",
            Self::AuthorityOnly(_) => "authority_only",
            Self::ClockSetBack { .. } => "clock_set_back",
            Self::Service { .. } => "service",
        }
    }
}

impl core::error::Error for Error {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Decode(e) => Some(e),
            Self::KeyTree(e) => Some(e),
            _ => None,
        }
    }
}

impl From<DecodeError> for Error {
    fn from(e: DecodeError) -> Self {
        Self::Decode(e)
    }
}

impl From<treecast_keytree::Error> for Error {
    fn from(e: treecast_keytree::Error) -> Self {
        match e {
            treecast_keytree::Error::Decode(d) => Self::Decode(d),
            other => Self::KeyTree(other),
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e.to_string())
    }
}
