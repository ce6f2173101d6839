//! Returns (issue 27): a device gives a loan or a rental back before its end.
//!
//! The device deletes the license first, then proves it with a *receipt* that only its device
//! key yields (as a move's release proves the source deleted its copy), inside a request it
//! signs. The server checks the receipt against the device key it derives, marks the license
//! returned, and the device refuses the same license ever after.

use subtle::ConstantTimeEq;
use treecast_keytree::codec::Reader;
use treecast_keytree::{DecodeError, DeviceKey};

use crate::Error;
use crate::ids::{ClientId, LicenseId};
use crate::sign::{self, Signable, Signed, Unverified};
use crate::time::UnixTime;

/// What a device gives for a license it deleted to return it:
/// `HKDF-SHA-256(salt "treecast/v1/return-receipt", ikm = device key, info = license ID ‖ client
/// ID)`, 16 bytes. Only the device (and the authority) can compute it.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ReturnReceipt([u8; 16]);

impl ReturnReceipt {
    /// The receipt for returning `license` held by `client`, from the client's device key.
    ///
    /// # Errors
    /// [`Error::Internal`] if HKDF fails (it cannot for 16 bytes).
    pub fn derive(
        device_key: &DeviceKey,
        license: LicenseId,
        client: ClientId,
    ) -> Result<Self, Error> {
        let key = crate::kdf::expand(
            b"treecast/v1/return-receipt",
            device_key.secret_bytes(),
            &[&license.0.to_be_bytes(), &client.0.to_be_bytes()],
        )?;
        Ok(Self(*key))
    }

    /// Whether this receipt is `expected` (constant time).
    pub fn matches(&self, expected: &Self) -> bool {
        bool::from(self.0.ct_eq(&expected.0))
    }

    /// The receipt's bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

/// A device's request to return one of its licenses, signed by the device, with the receipt
/// that proves it deleted the license.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct ReturnRequestTbs {
    /// The license returned.
    pub license_id: LicenseId,
    /// The client that held it (and signs).
    pub client_id: ClientId,
    /// A number the client never reuses.
    pub nonce: u64,
    /// When it was made.
    pub created_at: UnixTime,
    /// The proof that the device deleted the license.
    pub receipt: ReturnReceipt,
}

impl ReturnRequestTbs {
    /// A request by `client_id` to return `license_id`, with its `receipt`.
    pub const fn new(
        license_id: LicenseId,
        client_id: ClientId,
        nonce: u64,
        created_at: UnixTime,
        receipt: ReturnReceipt,
    ) -> Self {
        Self {
            license_id,
            client_id,
            nonce,
            created_at,
            receipt,
        }
    }
}

impl sign::sealed::Sealed for ReturnRequestTbs {}

impl Signable for ReturnRequestTbs {
    const LABEL: &'static [u8] = b"treecast/v1/return-request\0";
    const MAX_LEN: usize = 5 + 8 * 4 + 16 + sign::SIGNATURE_LEN;

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"TCRT");
        out.push(1);
        out.extend_from_slice(&self.license_id.0.to_be_bytes());
        out.extend_from_slice(&self.client_id.0.to_be_bytes());
        out.extend_from_slice(&self.nonce.to_be_bytes());
        out.extend_from_slice(&self.created_at.0.to_be_bytes());
        out.extend_from_slice(&self.receipt.0);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        sign::read_start(r, *b"TCRT", 1)?;
        Ok(Self {
            license_id: LicenseId(r.u64("license id")?),
            client_id: ClientId(r.u64("client id")?),
            nonce: r.u64("nonce")?,
            created_at: UnixTime(r.u64("created at")?),
            receipt: ReturnReceipt(r.array("receipt")?),
        })
    }
}

/// A signed return request.
pub type ReturnRequest = Signed<ReturnRequestTbs>;

/// A decoded return request whose signature has not been checked.
pub type ReturnRequestIn = Unverified<ReturnRequestTbs>;

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use ed25519_dalek::SigningKey;

    use super::*;

    #[test]
    fn a_return_request_round_trips_and_its_receipt_is_the_device_keys() {
        let device = DeviceKey::from_bytes([4; 16]);
        let receipt = ReturnReceipt::derive(&device, LicenseId(5), ClientId(6)).unwrap();
        let other =
            ReturnReceipt::derive(&DeviceKey::from_bytes([5; 16]), LicenseId(5), ClientId(6))
                .unwrap();
        assert!(receipt.matches(&receipt.clone()) && !receipt.matches(&other));
        let key = SigningKey::from_bytes(&[3; 32]);
        let signed =
            ReturnRequestTbs::new(LicenseId(5), ClientId(6), 7, UnixTime(8), receipt).sign(&key);
        assert_eq!(signed.as_bytes().len(), ReturnRequestTbs::MAX_LEN);
        let back = ReturnRequestIn::from_bytes(signed.as_bytes())
            .unwrap()
            .verify(&key.verifying_key())
            .unwrap();
        assert_eq!(back.tbs(), signed.tbs());
    }
}
