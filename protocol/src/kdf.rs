//! HKDF-SHA-256, the one key-derivation function of the protocol. The device (its saved
//! state's seal) and the distributor (its vault) derive their own keys with it too.

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::Error;

/// `N` bytes of HKDF-SHA-256 output for `salt`, `ikm` and the concatenation of `info`.
///
/// # Errors
/// [`Error::Internal`] if HKDF refuses the length, which it never does for `N ≤ 8160`.
pub fn expand<const N: usize>(
    salt: &[u8],
    ikm: &[u8],
    info: &[&[u8]],
) -> Result<Zeroizing<[u8; N]>, Error> {
    let mut out = Zeroizing::new([0u8; N]);
    Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand_multi_info(info, out.as_mut_slice())
        .map_err(|_| Error::Internal("HKDF output length"))?;
    Ok(out)
}
