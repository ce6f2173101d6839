//! Billing (claims 7 and 8): a license and a copy certificate are charged different amounts.

use std::collections::HashMap;

use crate::ids::{ContentId, UserId};
use crate::time::UnixTime;

/// What a ledger entry charges for.
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
#[non_exhaustive]
pub enum ChargeKind {
    /// A contents copy certificate (a move).
    Certificate,
    /// A license (a purchase).
    License,
}

/// Prices in the smallest currency unit: a default for each kind, and overrides per content.
///
/// ```
/// use treecast_license::{ChargeKind, ContentId, Tariff};
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

/// A charge to record with the operation that incurs it.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct Charge {
    /// What it is for.
    pub kind: ChargeKind,
    /// The amount.
    pub amount: u64,
    /// When.
    pub at: UnixTime,
}

impl Charge {
    /// A charge of `amount` for `kind` at `at`.
    pub const fn new(kind: ChargeKind, amount: u64, at: UnixTime) -> Self {
        Self { kind, amount, at }
    }
}

/// One billed event.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct LedgerEntry {
    /// Who pays.
    pub user: UserId,
    /// For what.
    pub kind: ChargeKind,
    /// The content concerned.
    pub content: ContentId,
    /// The license or certificate ID.
    pub reference: u64,
    /// How much.
    pub amount: u64,
    /// When.
    pub at: UnixTime,
}

impl LedgerEntry {
    /// The entry for `charge` on `user`'s account.
    pub const fn new(user: UserId, content: ContentId, reference: u64, charge: Charge) -> Self {
        Self {
            user,
            kind: charge.kind,
            content,
            reference,
            amount: charge.amount,
            at: charge.at,
        }
    }
}
