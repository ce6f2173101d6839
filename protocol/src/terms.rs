//! Time in a license (issue 27): the offer it was sold under, the dates it plays between, a
//! playback window that starts at its first play, and how far a renewal may take it.
//!
//! A perpetual purchase has no terms and keeps the first license format; a license with
//! [`Terms`] is encoded in the second (`docs/formats.md`, "License"). The server signs the
//! terms with the rest of the license, so a device enforces what the distributor sold.
//!
//! ```
//! use treecast_protocol::UnixTime;
//! use treecast_protocol::terms::{Offer, Terms};
//! # fn main() -> Result<(), treecast_protocol::Error> {
//! // A 30-day rental that plays for 48 hours once started.
//! let start = UnixTime(1_800_000_000);
//! let rental = Terms::new(Offer::Rental, start, start.plus(30 * 86_400), 48 * 3_600, start.plus(30 * 86_400))?;
//! assert_eq!(rental.end(None), start.plus(30 * 86_400));
//! // Started on day 1, it ends 48 hours later.
//! let first_play = start.plus(86_400);
//! assert_eq!(rental.end(Some(first_play)), first_play.plus(48 * 3_600));
//! assert!(rental.allows_play_at(first_play.plus(3_600), Some(first_play)));
//! assert!(!rental.allows_play_at(first_play.plus(49 * 3_600), Some(first_play)));
//! # Ok(()) }
//! ```

use treecast_keytree::DecodeError;
use treecast_keytree::codec::Reader;

use crate::Error;
use crate::time::UnixTime;

/// The offer a license was sold under; each has its price in the distributor's tariff.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
#[non_exhaustive]
pub enum Offer {
    /// Bought: perpetual unless its terms say otherwise.
    Purchase,
    /// Rented for a time, usually with a playback window.
    Rental,
    /// Part of a subscription, extended period by period.
    Subscription,
    /// Lent, counted against the content's copies (the tariff's loan limit) until it ends or
    /// is returned.
    Loan,
}

impl Offer {
    /// Every offer, in wire order.
    pub const ALL: [Self; 4] = [Self::Purchase, Self::Rental, Self::Subscription, Self::Loan];

    /// The offer's byte on the wire.
    pub const fn code(self) -> u8 {
        match self {
            Self::Purchase => 0,
            Self::Rental => 1,
            Self::Subscription => 2,
            Self::Loan => 3,
        }
    }

    /// The offer of a wire byte.
    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Self::Purchase),
            1 => Some(Self::Rental),
            2 => Some(Self::Subscription),
            3 => Some(Self::Loan),
            _ => None,
        }
    }

    /// Its name: `purchase`, `rental`, `subscription` or `loan`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Purchase => "purchase",
            Self::Rental => "rental",
            Self::Subscription => "subscription",
            Self::Loan => "loan",
        }
    }
}

impl core::fmt::Display for Offer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

impl core::str::FromStr for Offer {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::ALL
            .into_iter()
            .find(|o| o.name() == s)
            .ok_or(Error::InvalidTerms("unknown offer"))
    }
}

/// The time-bounded rights of a license. Checked on construction and on decoding: it starts
/// before it ends, and a renewal never ends before the license does.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub struct Terms {
    offer: Offer,
    not_before: UnixTime,
    not_after: UnixTime,
    play_window: u32,
    renew_until: UnixTime,
}

impl Terms {
    /// Terms under `offer` that play from `not_before` until `not_after`, for at most
    /// `play_window` seconds after the first play (0: no window), and that renewals may extend
    /// up to `renew_until` (equal to `not_after`: not renewable).
    ///
    /// # Errors
    /// [`Error::InvalidTerms`] when `not_before` is not before `not_after`, or `renew_until`
    /// is before `not_after`.
    pub fn new(
        offer: Offer,
        not_before: UnixTime,
        not_after: UnixTime,
        play_window: u32,
        renew_until: UnixTime,
    ) -> Result<Self, Error> {
        let terms = Self {
            offer,
            not_before,
            not_after,
            play_window,
            renew_until,
        };
        terms
            .check()
            .map_err(|_| Error::InvalidTerms("dates out of order"))?;
        Ok(terms)
    }

    fn check(&self) -> Result<(), DecodeError> {
        if self.not_before >= self.not_after {
            return Err(DecodeError::InvalidValue("license dates"));
        }
        if self.renew_until < self.not_after {
            return Err(DecodeError::InvalidValue("license renewal limit"));
        }
        Ok(())
    }

    /// The offer.
    pub const fn offer(&self) -> Offer {
        self.offer
    }

    /// The license plays from this time.
    pub const fn not_before(&self) -> UnixTime {
        self.not_before
    }

    /// The license plays until this time (exclusive).
    pub const fn not_after(&self) -> UnixTime {
        self.not_after
    }

    /// Seconds the license plays after its first play; 0 for no such window.
    pub const fn play_window(&self) -> u32 {
        self.play_window
    }

    /// The latest end a renewal may give; equal to [`not_after`](Self::not_after) when the
    /// license cannot be renewed.
    pub const fn renew_until(&self) -> UnixTime {
        self.renew_until
    }

    /// Whether a renewal may extend the license at all.
    pub fn renewable(&self) -> bool {
        self.renew_until > self.not_after
    }

    /// When the license stops playing, given the time of its first play (if it was played).
    pub fn end(&self, first_play: Option<UnixTime>) -> UnixTime {
        match first_play {
            Some(at) if self.play_window > 0 => {
                self.not_after.min(at.plus(u64::from(self.play_window)))
            }
            _ => self.not_after,
        }
    }

    /// Whether the license plays at `now`, given its first play.
    pub fn allows_play_at(&self, now: UnixTime, first_play: Option<UnixTime>) -> bool {
        self.not_before <= now && now < self.end(first_play)
    }

    /// The same terms ending at `not_after` instead (a renewal). The window and the renewal
    /// limit are kept.
    ///
    /// # Errors
    /// [`Error::InvalidTerms`] when `not_after` is beyond the renewal limit or not after the
    /// start.
    pub fn extended_to(&self, not_after: UnixTime) -> Result<Self, Error> {
        if not_after > self.renew_until {
            return Err(Error::InvalidTerms("renewal beyond the license's limit"));
        }
        Self::new(
            self.offer,
            self.not_before,
            not_after,
            self.play_window,
            self.renew_until,
        )
    }

    /// The encoded length.
    pub const ENCODED_LEN: usize = 1 + 8 + 8 + 4 + 8;

    /// Appends the encoding: offer, not-before, not-after, window, renewal limit (big-endian).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.offer.code());
        out.extend_from_slice(&self.not_before.0.to_be_bytes());
        out.extend_from_slice(&self.not_after.0.to_be_bytes());
        out.extend_from_slice(&self.play_window.to_be_bytes());
        out.extend_from_slice(&self.renew_until.0.to_be_bytes());
    }

    /// Reads an encoding and checks it.
    ///
    /// # Errors
    /// A [`DecodeError`] for missing bytes, an unknown offer or inconsistent dates.
    pub fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let offer = Offer::from_code(r.u8("offer")?).ok_or(DecodeError::InvalidValue("offer"))?;
        let terms = Self {
            offer,
            not_before: UnixTime(r.u64("not before")?),
            not_after: UnixTime(r.u64("not after")?),
            play_window: r.u32("play window")?,
            renew_until: UnixTime(r.u64("renew until")?),
        };
        terms.check()?;
        Ok(terms)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    const T0: UnixTime = UnixTime(1_800_000_000);

    #[test]
    fn terms_round_trip_and_bad_ones_are_refused() {
        let terms = Terms::new(Offer::Loan, T0, T0.plus(100), 10, T0.plus(1_000)).unwrap();
        let mut out = Vec::new();
        terms.encode(&mut out);
        assert_eq!(out.len(), Terms::ENCODED_LEN);
        assert_eq!(Terms::read(&mut Reader::new(&out)).unwrap(), terms);
        // An unknown offer, dates out of order, a renewal limit before the end.
        let mut bad = out.clone();
        bad[0] = 9;
        assert!(Terms::read(&mut Reader::new(&bad)).is_err());
        assert!(Terms::new(Offer::Rental, T0, T0, 0, T0).is_err());
        assert!(Terms::new(Offer::Rental, T0, T0.plus(5), 0, T0.plus(4)).is_err());
        for offer in Offer::ALL {
            assert_eq!(offer.name().parse::<Offer>().unwrap(), offer);
            assert_eq!(Offer::from_code(offer.code()), Some(offer));
        }
        assert!("gift".parse::<Offer>().is_err());
    }

    #[test]
    fn the_window_and_the_dates_bound_play_and_a_renewal_its_limit() {
        let terms = Terms::new(Offer::Rental, T0, T0.plus(1_000), 100, T0.plus(5_000)).unwrap();
        assert!(!terms.allows_play_at(UnixTime(T0.0 - 1), None));
        assert!(terms.allows_play_at(T0, None));
        assert!(!terms.allows_play_at(T0.plus(1_000), None));
        // The window starts at the first play and never outlasts the end.
        assert!(terms.allows_play_at(T0.plus(150), Some(T0.plus(60))));
        assert!(!terms.allows_play_at(T0.plus(160), Some(T0.plus(60))));
        assert_eq!(terms.end(Some(T0.plus(950))), T0.plus(1_000));
        assert!(terms.renewable());
        let renewed = terms.extended_to(T0.plus(5_000)).unwrap();
        assert_eq!(renewed.not_after(), T0.plus(5_000));
        assert!(terms.extended_to(T0.plus(5_001)).is_err());
        let fixed = Terms::new(Offer::Rental, T0, T0.plus(10), 0, T0.plus(10)).unwrap();
        assert!(!fixed.renewable());
    }

    /// A license with terms is the second format, round trip; a perpetual one keeps the
    /// first, byte for byte in length; a certificate carrying a timed license is version 3,
    /// and a request under an offer version 2 while a purchase stays version 1.
    #[test]
    fn timed_licenses_certificates_and_requests_have_their_own_versions() {
        use ed25519_dalek::SigningKey;

        use crate::certificate::{CopyCertificateIn, CopyCertificateTbs, LicenseRequestTbs};
        use crate::ids::{CertificateId, ClientId, ContentId, LicenseId, ServerId, UserId};
        use crate::license::{self, LicenseIn, LicenseTbs, Rights};
        use crate::release::ReleaseKey;
        use crate::sign::Signable;

        let key = SigningKey::from_bytes(&[5; 32]);
        let terms = Terms::new(Offer::Subscription, T0, T0.plus(30), 0, T0.plus(90)).unwrap();
        let tbs = |terms| LicenseTbs {
            license_id: LicenseId(1),
            content_id: ContentId(2),
            client_id: ClientId(3),
            user_id: UserId(4),
            server_id: ServerId(1),
            epoch: 6,
            rights: Rights::PLAY_AND_MOVE,
            issued_at: T0,
            terms,
            wrapped_key: [7; license::WRAPPED_LEN],
        };
        let timed = tbs(Some(terms)).sign(&key);
        let perpetual = tbs(None).sign(&key);
        assert_eq!(timed.as_bytes().len(), license::ENCODED_LEN_TIMED);
        assert_eq!(timed.as_bytes()[4], license::VERSION_TIMED);
        assert_eq!(perpetual.as_bytes().len(), license::ENCODED_LEN);
        assert_eq!(perpetual.as_bytes()[4], license::VERSION);
        for signed in [&timed, &perpetual] {
            let back = LicenseIn::from_bytes(signed.as_bytes())
                .unwrap()
                .verify(&key.verifying_key())
                .unwrap();
            assert_eq!(back.tbs(), signed.tbs());
        }
        // A first-version license with terms bytes appended does not decode.
        let mut forged = perpetual.as_bytes().to_vec();
        forged[4] = license::VERSION_TIMED;
        assert!(LicenseIn::from_bytes(&forged).is_err());

        let release = ReleaseKey::from_bytes([8; 16]);
        for (license, version) in [
            (&timed, crate::certificate::COPY_CERTIFICATE_VERSION_TIMED),
            (&perpetual, crate::certificate::COPY_CERTIFICATE_VERSION),
        ] {
            let cert = CopyCertificateTbs::new(
                CertificateId(9),
                UserId(4),
                ClientId(10),
                LicenseId(11),
                ClientId(3),
                T0,
                T0.plus(60),
                &release,
                license,
            )
            .sign(&key);
            assert_eq!(cert.as_bytes()[4], version);
            let back = CopyCertificateIn::from_bytes(cert.as_bytes()).unwrap();
            let carried = back.unverified().license().unwrap();
            assert_eq!(carried.unverified(), license.tbs());
            // The version must match the license it carries.
            let mut swapped = cert.as_bytes().to_vec();
            swapped[4] ^= 1;
            assert!(CopyCertificateIn::from_bytes(&swapped).is_err());
        }

        let request = LicenseRequestTbs::new(ClientId(3), ContentId(2), 1, T0);
        let mut out = Vec::new();
        request.encode(&mut out);
        assert_eq!((out[4], out.len()), (1, 37));
        let rental = request.clone().with_offer(Offer::Rental);
        out.clear();
        rental.encode(&mut out);
        assert_eq!((out[4], out.len()), (2, 38));
        let back = LicenseRequestTbs::read(&mut Reader::new(&out)).unwrap();
        assert_eq!(back, rental);
        // A second-version request naming a purchase is not canonical: refused.
        let last = out.len() - 1;
        out[last] = Offer::Purchase.code();
        assert!(LicenseRequestTbs::read(&mut Reader::new(&out)).is_err());
    }
}
