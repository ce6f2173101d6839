//! A user's credential: the secret a user shows to register a device and to read their own
//! rows over the network service (`docs/design.md`, "User credentials").
//!
//! It is derived, not stored: `BLAKE3-keyed(K, user ID)` (then `BLAKE3-keyed(K, user ID ‖
//! epoch)` once the user's credential epoch is above 0: a rotation, issue 29) with
//! `K = BLAKE3-keyed(BLAKE3-derive_key("treecast/v1 user credentials", distributor secret),
//! registry ID)`. Every process holding the distributor's key file checks it with one read of
//! the user's epoch, and a registry backup reveals none. The registry's random ID
//! (`treecast-registry`'s `RegistryId`, made with the store) binds it to one registry: a fresh
//! registry started with the same key file gives its user 1 another credential than the old
//! one's user 1 (issue 24).

use core::fmt;

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::Error;

/// The length of a credential.
pub const CREDENTIAL_LEN: usize = 32;

/// A user's credential. Not `Copy`, zeroized on drop, redacted in `Debug`, compared in constant
/// time.
#[derive(Clone)]
pub struct UserCredential(Zeroizing<[u8; CREDENTIAL_LEN]>);

impl UserCredential {
    /// A credential from its bytes (the distributor derives them: `treecast-distributor`'s
    /// vault).
    pub fn from_bytes(bytes: [u8; CREDENTIAL_LEN]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Reads a credential from its 64 hexadecimal digits (as [`UserCredential::to_hex`]
    /// writes it), surrounding whitespace ignored.
    ///
    /// # Errors
    /// [`Error::BadCredential`] when it is not 64 hexadecimal digits.
    pub fn from_hex(text: &str) -> Result<Self, Error> {
        let mut out = Zeroizing::new([0u8; CREDENTIAL_LEN]);
        hex::decode_to_slice(text.trim(), out.as_mut_slice()).map_err(|_| Error::BadCredential)?;
        Ok(Self(out))
    }

    /// The credential as 64 lowercase hexadecimal digits, zeroized on drop.
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(self.0.as_slice()))
    }

    /// The credential's bytes.
    pub fn as_bytes(&self) -> &[u8; CREDENTIAL_LEN] {
        &self.0
    }
}

impl PartialEq for UserCredential {
    /// Constant time.
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&*other.0).into()
    }
}

impl Eq for UserCredential {}

impl fmt::Debug for UserCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UserCredential(<redacted>)")
    }
}
