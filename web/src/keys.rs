//! A web device's keys on a wire: what the page wraps with its non-extractable WebCrypto key
//! and keeps in IndexedDB beside the sealed state (`docs/web.md`, `docs/formats.md` "Web
//! device keys"): magic `TCWK`, version 1, the signing key's seed (32), then the registration
//! as `Registration::to_bytes` writes it (the device's key set, its certificate, the servers'
//! and the authority's keys) to the end.

use treecast_keytree::DecodeError;
use treecast_protocol::Error;
use treecast_protocol::SigningKey;
use treecast_protocol::registration::Registration;
use zeroize::Zeroizing;

const MAGIC: &[u8; 4] = b"TCWK";
const VERSION: u8 = 1;

/// The encoding of `seed` and `registration` (as `Registration::to_bytes` wrote it).
pub(crate) fn encode(seed: &[u8; 32], registration: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(5 + 32 + registration.len()));
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(seed);
    out.extend_from_slice(registration);
    out
}

/// The seed and registration of an encoding [`encode`] wrote.
///
/// # Errors
/// [`Error::Decode`] for anything else (the registration's own checks included).
pub(crate) fn decode(bytes: &[u8]) -> Result<(SigningKey, Registration), Error> {
    let (magic, rest) = bytes
        .split_at_checked(4)
        .ok_or(DecodeError::MissingData("web device keys' magic"))?;
    if magic != MAGIC {
        return Err(DecodeError::BadMagic.into());
    }
    let (&version, rest) = rest
        .split_first()
        .ok_or(DecodeError::MissingData("web device keys' version"))?;
    if version != VERSION {
        return Err(DecodeError::UnsupportedVersion(version).into());
    }
    let (seed, registration) = rest
        .split_at_checked(32)
        .ok_or(DecodeError::MissingData("web device keys' seed"))?;
    let mut array = Zeroizing::new([0u8; 32]);
    array.copy_from_slice(seed);
    Ok((
        SigningKey::from_bytes(&array),
        Registration::from_bytes(registration)?,
    ))
}
