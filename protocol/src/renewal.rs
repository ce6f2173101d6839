//! Renewals (issue 27): the licensed device asks its server to extend a license with terms.
//!
//! The request is signed by the device that holds the license, and names the license: the
//! server renews it only for the client its registry says holds it, so no other device, and no
//! device the license moved away from, can renew it. The answer is the same license signed
//! again with its new end (and the renewal's time as its issue time).
//!
//! Both of Readium LCP's semantics are offered: [`RenewFrom::End`] extends from the license's
//! current end, [`RenewFrom::Now`] from the time of the renewal; either stops at the license's
//! renewal limit.

use treecast_keytree::DecodeError;
use treecast_keytree::codec::Reader;

use crate::ids::{ClientId, LicenseId};
use crate::sign::{self, Signable, Signed, Unverified};
use crate::time::UnixTime;

/// Where a renewal's extension starts.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
#[non_exhaustive]
pub enum RenewFrom {
    /// From the license's current end (a subscription's next period).
    End,
    /// From the time of the renewal (a loan renewed for another period from today).
    Now,
}

impl RenewFrom {
    const fn code(self) -> u8 {
        match self {
            Self::End => 0,
            Self::Now => 1,
        }
    }

    const fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Self::End),
            1 => Some(Self::Now),
            _ => None,
        }
    }
}

/// A device's request to renew one of its licenses, signed by the device.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct RenewalRequestTbs {
    /// The license to renew.
    pub license_id: LicenseId,
    /// The client that holds it (and signs).
    pub client_id: ClientId,
    /// A number the client never reuses.
    pub nonce: u64,
    /// When it was made.
    pub created_at: UnixTime,
    /// Where the extension starts.
    pub from: RenewFrom,
}

impl RenewalRequestTbs {
    /// A request by `client_id` to renew `license_id`, extending from `from`.
    pub const fn new(
        license_id: LicenseId,
        client_id: ClientId,
        nonce: u64,
        created_at: UnixTime,
        from: RenewFrom,
    ) -> Self {
        Self {
            license_id,
            client_id,
            nonce,
            created_at,
            from,
        }
    }
}

impl sign::sealed::Sealed for RenewalRequestTbs {}

impl Signable for RenewalRequestTbs {
    const LABEL: &'static [u8] = b"treecast/v1/renewal-request\0";
    const MAX_LEN: usize = 5 + 8 * 4 + 1 + sign::SIGNATURE_LEN;

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"TCRR");
        out.push(1);
        out.extend_from_slice(&self.license_id.0.to_be_bytes());
        out.extend_from_slice(&self.client_id.0.to_be_bytes());
        out.extend_from_slice(&self.nonce.to_be_bytes());
        out.extend_from_slice(&self.created_at.0.to_be_bytes());
        out.push(self.from.code());
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        sign::read_start(r, *b"TCRR", 1)?;
        Ok(Self {
            license_id: LicenseId(r.u64("license id")?),
            client_id: ClientId(r.u64("client id")?),
            nonce: r.u64("nonce")?,
            created_at: UnixTime(r.u64("created at")?),
            from: RenewFrom::from_code(r.u8("renew from")?)
                .ok_or(DecodeError::InvalidValue("renew from"))?,
        })
    }
}

/// A signed renewal request.
pub type RenewalRequest = Signed<RenewalRequestTbs>;

/// A decoded renewal request whose signature has not been checked.
pub type RenewalRequestIn = Unverified<RenewalRequestTbs>;

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use ed25519_dalek::SigningKey;

    use super::*;

    #[test]
    fn a_renewal_request_round_trips_and_a_bad_mode_is_refused() {
        let key = SigningKey::from_bytes(&[3; 32]);
        for from in [RenewFrom::End, RenewFrom::Now] {
            let signed =
                RenewalRequestTbs::new(LicenseId(5), ClientId(6), 7, UnixTime(8), from).sign(&key);
            assert_eq!(signed.as_bytes().len(), RenewalRequestTbs::MAX_LEN);
            let back = RenewalRequestIn::from_bytes(signed.as_bytes())
                .unwrap()
                .verify(&key.verifying_key())
                .unwrap();
            assert_eq!(back.tbs(), signed.tbs());
            let mut bad = signed.as_bytes().to_vec();
            bad[37] = 2;
            assert!(RenewalRequestIn::from_bytes(&bad).is_err());
        }
    }
}
