//! What a content packaged with Common Encryption (issue 30, `docs/cenc.md`) takes from
//! treecast: its AES-128 key, derived from the content key (so that a license carries the
//! content key as for any content, and only a device that opens the license can hand the
//! browser the key), and its key ID, which names the content.
//!
//! ```
//! use treecast_protocol::ContentId;
//! use treecast_protocol::cenc;
//! let kid = cenc::key_id(ContentId(42));
//! assert_eq!(&kid[..8], b"treecast");
//! assert_eq!(cenc::content_of(&kid), Some(ContentId(42)));
//! ```

use zeroize::Zeroizing;

use crate::Error;
use crate::content::ContentKey;
use crate::ids::ContentId;
use crate::kdf;

/// The key ID of `content`: `treecast` then its ID (8 bytes, big-endian).
pub fn key_id(content: ContentId) -> [u8; 16] {
    let mut kid = [0u8; 16];
    let (prefix, id) = kid.split_at_mut(8);
    prefix.copy_from_slice(KID_PREFIX);
    id.copy_from_slice(&content.0.to_be_bytes());
    kid
}

/// The content a key ID of [`key_id`] names.
pub fn content_of(kid: &[u8; 16]) -> Option<ContentId> {
    let (prefix, id) = kid.split_at(8);
    (prefix == KID_PREFIX)
        .then(|| id.try_into().ok().map(u64::from_be_bytes).map(ContentId))
        .flatten()
}

treecast_keytree::secret_type!(
    /// The AES-128 key of a content's samples in Common Encryption: what a browser's ClearKey
    /// module is given. One content's, derived from its content key ([`key`]).
    SampleKey,
    16
);

/// The AES-128 key that encrypts `content`'s samples:
/// `HKDF-SHA-256(salt "treecast/v1/cenc-key", ikm = the content key, info = content ID)`.
///
/// # Errors
/// [`Error::Internal`] never in practice (HKDF gives 16 bytes).
pub fn key(content_key: &ContentKey, content: ContentId) -> Result<SampleKey, Error> {
    let bytes: Zeroizing<[u8; 16]> = kdf::expand::<16>(
        b"treecast/v1/cenc-key",
        content_key.secret_bytes(),
        &[&content.0.to_be_bytes()],
    )?;
    Ok(SampleKey::from_bytes(*bytes))
}

const KID_PREFIX: &[u8; 8] = b"treecast";
