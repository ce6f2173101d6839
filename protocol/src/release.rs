//! The release of a move: what the source gives the destination once it has deleted its copy.
//! A license that arrived by a move opens only with it ([`crate::license`]); a copy certificate
//! says which release it waits for ([`ReleaseKey::opens`]).

use treecast_keytree::DeviceKey;

use crate::Error;
use crate::ids::{CertificateId, ClientId, LicenseId};

treecast_keytree::secret_type!(
    /// What the source of a move gives the destination once it has deleted its copy: the key
    /// that, with the destination's device key, opens the license carried by the certificate.
    /// Derived from the source's device key, so that only the source device (and the authority)
    /// can compute it.
    ReleaseKey,
    16
);

impl ReleaseKey {
    /// The release of the move certified as `certificate`, from the source's device key:
    /// `HKDF-SHA-256(salt "treecast/v1/move-release", ikm = device key, info = certificate ID ‖
    /// source license ID ‖ destination client ID)`.
    ///
    /// # Errors
    /// [`Error::Internal`] if HKDF fails (it cannot for 16 bytes).
    pub fn derive(
        source_device_key: &DeviceKey,
        certificate: CertificateId,
        source_license: LicenseId,
        destination: ClientId,
    ) -> Result<Self, Error> {
        let key = crate::kdf::expand(
            b"treecast/v1/move-release",
            source_device_key.secret_bytes(),
            &[
                &certificate.0.to_be_bytes(),
                &source_license.0.to_be_bytes(),
                &destination.0.to_be_bytes(),
            ],
        )?;
        Ok(Self::from_bytes(*key))
    }

    /// The value a copy certificate carries to name this release: SHA-256 of
    /// `"treecast/v1/release-check\0" ‖ release`.
    pub(crate) fn check_value(&self) -> [u8; 32] {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(b"treecast/v1/release-check\0");
        h.update(self.secret_bytes());
        h.finalize().into()
    }
}
