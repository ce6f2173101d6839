//! Where an authority's signing key is (issue 29): derived from the master secret into this
//! process's memory, or held outside it (a PKCS#11 token) behind [`ExternalSigner`].

use std::sync::Arc;

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

use crate::error::Error;

/// A signing key that signs outside this process's memory (a key in a token), for the
/// authority's EKBs, MKBs and tracing evidence ([`crate::Authority::with_signer`]).
pub trait ExternalSigner: Send + Sync {
    /// Its public key.
    fn verifying_key(&self) -> VerifyingKey;

    /// A pure Ed25519 signature of `message`.
    ///
    /// # Errors
    /// [`Error::Signer`] saying why the key did not sign.
    fn sign(&self, message: &[u8]) -> Result<[u8; 64], Error>;
}

/// The authority's signing key.
#[derive(Clone)]
#[allow(clippy::large_enum_variant, reason = "one an authority")]
pub(crate) enum Signer {
    /// Derived from the master secret, in memory (zeroized on drop).
    Derived(SigningKey),
    /// Outside this process.
    External(Arc<dyn ExternalSigner>),
}

impl Signer {
    pub(crate) fn verifying_key(&self) -> VerifyingKey {
        match self {
            Self::Derived(key) => key.verifying_key(),
            Self::External(signer) => signer.verifying_key(),
        }
    }

    pub(crate) fn sign(&self, message: &[u8]) -> Result<Signature, Error> {
        match self {
            Self::Derived(key) => Ok(key.sign(message)),
            Self::External(signer) => Ok(Signature::from_bytes(&signer.sign(message)?)),
        }
    }
}
