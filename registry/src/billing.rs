//! Billing (claims 7 and 8): the ledger a registry keeps. A license and a copy certificate are
//! charged different amounts (the distributor's `Tariff` sets them).

use treecast_protocol::ids::{ContentId, UserId};
use treecast_protocol::time::UnixTime;

/// What a ledger entry charges for.
#[allow(
    clippy::exhaustive_enums,
    reason = "the distributor's tariff, another crate, prices every kind: a new one must be priced"
)]
#[derive(Clone, Copy, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub enum ChargeKind {
    /// A contents copy certificate (a move).
    Certificate,
    /// A license (a purchase, a rental, a subscription or a loan).
    License,
    /// A license's renewal (issue 27); its reference is the license.
    Renewal,
    /// A license's return (issue 27), at the price the tariff refunds nothing: 0; its
    /// reference is the license.
    Return,
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
