//! Billing (claims 7 and 8): the distributor's prices. A license and a copy certificate are
//! charged different amounts; the registry records each charge (`treecast-registry`'s
//! `billing` module).

use std::collections::HashMap;

use treecast_protocol::ids::ContentId;
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
}

impl Tariff {
    /// A tariff charging `license` for each license and `certificate` for each copy certificate.
    pub fn new(license: u64, certificate: u64) -> Self {
        Self {
            license,
            certificate,
            per_content: HashMap::new(),
        }
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

    /// The price of `kind` for `content`.
    pub fn price(&self, kind: ChargeKind, content: ContentId) -> u64 {
        let (license, certificate) = self
            .per_content
            .get(&content)
            .copied()
            .unwrap_or((self.license, self.certificate));
        match kind {
            ChargeKind::License => license,
            ChargeKind::Certificate => certificate,
        }
    }
}

impl Default for Tariff {
    /// 4.99 for a license, 0.99 for a move (in cents).
    fn default() -> Self {
        Self::new(499, 99)
    }
}
