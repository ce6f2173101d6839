//! Billing (claims 7 and 8): the distributor's prices. A license and a copy certificate are
//! charged different amounts; the registry records each charge (`treecast-registry`'s
//! `billing` module).

use std::collections::HashMap;

use treecast_protocol::Error;
use treecast_protocol::ids::ContentId;
use treecast_protocol::terms::{Offer, Terms};
use treecast_protocol::time::UnixTime;
use treecast_registry::billing::ChargeKind;

/// Prices in the smallest currency unit: a default for each kind, and overrides per content.
///
/// ```
/// use treecast_distributor::Tariff;
/// use treecast_protocol::ContentId;
/// use treecast_registry::billing::ChargeKind;
/// let tariff = Tariff::new(499, 99).with_content_prices(ContentId(7), 999, 199);
/// assert_eq!(tariff.price(ChargeKind::License, ContentId(1)), 499);
/// assert_eq!(tariff.price(ChargeKind::Certificate, ContentId(7)), 199);
/// ```
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Tariff {
    license: u64,
    certificate: u64,
    per_content: HashMap<ContentId, (u64, u64)>,
    offers: HashMap<Offer, (u64, OfferTerms)>,
    loan_copies: Option<u32>,
    content_loan_copies: HashMap<ContentId, u32>,
}

/// What a license sold under an offer other than a purchase gets (issue 27): how long it plays
/// from its sale, how long once first played, and how far renewals may take it.
///
/// ```
/// use treecast_distributor::{OfferTerms, Tariff};
/// use treecast_protocol::{ContentId, Offer, UnixTime};
/// // Rentals at 3.99: 30 days to start, 48 hours once started, renewable by 7 days in all.
/// let rental = OfferTerms {
///     duration: 30 * 86_400,
///     play_window: 48 * 3_600,
///     renewable_for: 7 * 86_400,
///     renewal_price: 99,
///     renew_expired: false,
/// };
/// let tariff = Tariff::default().with_offer(Offer::Rental, 399, rental)?;
/// let (price, terms) = tariff.sale(Offer::Rental, ContentId(1), UnixTime(1_000))?;
/// assert_eq!(price, 399);
/// let terms = terms.unwrap();
/// assert_eq!(terms.not_after(), UnixTime(1_000 + 30 * 86_400));
/// assert!(tariff.sale(Offer::Loan, ContentId(1), UnixTime(1_000)).is_err());
/// # Ok::<(), treecast_protocol::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct OfferTerms {
    /// Seconds the license plays after its sale (at least 1).
    pub duration: u64,
    /// Seconds it plays once first played; 0 for no such window.
    pub play_window: u32,
    /// Seconds renewals may add beyond the first end, in all; 0 for none. Each renewal adds
    /// up to `duration`.
    pub renewable_for: u64,
    /// The price of a renewal.
    pub renewal_price: u64,
    /// Whether a license that has ended may still be renewed (up to its renewal limit).
    pub renew_expired: bool,
}

impl Tariff {
    /// A tariff charging `license` for each license and `certificate` for each copy certificate.
    pub fn new(license: u64, certificate: u64) -> Self {
        Self {
            license,
            certificate,
            per_content: HashMap::new(),
            offers: HashMap::new(),
            loan_copies: None,
            content_loan_copies: HashMap::new(),
        }
    }

    /// Lends every content to at most `copies` devices at once (a library's copies; issue
    /// 27). Without it loans are unlimited.
    #[must_use]
    pub fn with_loan_copies(mut self, copies: u32) -> Self {
        self.loan_copies = Some(copies);
        self
    }

    /// Lends `content` to at most `copies` devices at once, whatever the default.
    #[must_use]
    pub fn with_content_loan_copies(mut self, content: ContentId, copies: u32) -> Self {
        self.content_loan_copies.insert(content, copies);
        self
    }

    /// How many devices may borrow `content` at once; `None` for no limit.
    pub fn loan_copies(&self, content: ContentId) -> Option<u32> {
        self.content_loan_copies
            .get(&content)
            .copied()
            .or(self.loan_copies)
    }

    /// Sells `offer` (not a purchase, which is the license price and perpetual) at `price`
    /// with `terms`.
    ///
    /// # Errors
    /// [`Error::InvalidTerms`] for [`Offer::Purchase`] or a zero duration.
    pub fn with_offer(
        mut self,
        offer: Offer,
        price: u64,
        terms: OfferTerms,
    ) -> Result<Self, Error> {
        if offer == Offer::Purchase {
            return Err(Error::InvalidTerms(
                "a purchase is priced by the license price",
            ));
        }
        if terms.duration == 0 {
            return Err(Error::InvalidTerms(
                "an offer's duration must be at least 1 s",
            ));
        }
        self.offers.insert(offer, (price, terms));
        Ok(self)
    }

    /// The offers on sale besides a purchase, with their prices and terms.
    pub fn offers(&self) -> impl Iterator<Item = (Offer, u64, OfferTerms)> + '_ {
        Offer::ALL
            .into_iter()
            .filter_map(|o| self.offers.get(&o).map(|&(p, t)| (o, p, t)))
    }

    /// What `offer` is sold with, if this tariff sells it (never for a purchase).
    pub fn offer(&self, offer: Offer) -> Option<(u64, OfferTerms)> {
        self.offers.get(&offer).copied()
    }

    /// The price of `offer` for `content` sold at `now`, and the license's terms (`None` for a
    /// purchase).
    ///
    /// # Errors
    /// [`Error::InvalidTerms`] for an offer this tariff does not sell.
    pub fn sale(
        &self,
        offer: Offer,
        content: ContentId,
        now: UnixTime,
    ) -> Result<(u64, Option<Terms>), Error> {
        if offer == Offer::Purchase {
            return Ok((self.price(ChargeKind::License, content), None));
        }
        let &(price, t) = self.offers.get(&offer).ok_or(Error::InvalidTerms(
            "the distributor does not sell this offer",
        ))?;
        let end = now.plus(t.duration);
        let terms = Terms::new(offer, now, end, t.play_window, end.plus(t.renewable_for))?;
        Ok((price, Some(terms)))
    }

    /// Overrides both prices for one content.
    #[must_use]
    pub fn with_content_prices(
        mut self,
        content: ContentId,
        license: u64,
        certificate: u64,
    ) -> Self {
        self.per_content.insert(content, (license, certificate));
        self
    }

    /// The price of `kind` for `content`: a purchase's license, or a move's certificate. A
    /// renewal is priced by its offer ([`OfferTerms::renewal_price`]); 0 here.
    pub fn price(&self, kind: ChargeKind, content: ContentId) -> u64 {
        let (license, certificate) = self
            .per_content
            .get(&content)
            .copied()
            .unwrap_or((self.license, self.certificate));
        match kind {
            ChargeKind::License => license,
            ChargeKind::Certificate => certificate,
            ChargeKind::Renewal | ChargeKind::Return => 0,
        }
    }
}

impl Default for Tariff {
    /// 4.99 for a license, 0.99 for a move (in cents).
    fn default() -> Self {
        Self::new(499, 99)
    }
}
