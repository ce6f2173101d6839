//! The registry's checks of licenses with time (issue 27): a content's loan limit, and what a
//! renewal or a return may find and change.

use treecast_protocol::Error;
use treecast_protocol::ids::{ClientId, LicenseId, UserId};
use treecast_protocol::terms::{Offer, Terms};
use treecast_protocol::time::UnixTime;

use crate::{LicenseRecord, LicenseState};

/// A content's limit of concurrent loans (issue 27), checked inside the change that issues a
/// loan: the loans of the content that are active (not moved away, not returned) and not
/// ended at `now` must be fewer than `copies`.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct LoanLimit {
    /// The content's copies.
    pub copies: u32,
    /// The time of the loan.
    pub now: UnixTime,
}

impl LoanLimit {
    /// At most `copies` concurrent loans, counted at `now`.
    pub const fn new(copies: u32, now: UnixTime) -> Self {
        Self { copies, now }
    }

    /// Whether `terms` are a loan that still counts at the limit's time.
    pub fn counts(&self, terms: &Terms) -> bool {
        terms.offer() == Offer::Loan && terms.not_after() > self.now
    }
}

/// The checks of a renewal or a return (issue 27) on the license row `license` as stored, for
/// `client` of `user`: the license must be this client's and active. Another user's license is answered as
/// missing (no oracle, as for the other requests); another device of the same user, or the
/// device the license moved away from, is refused.
///
/// # Errors
/// [`Error::LicenseNotFound`] for a missing license or another user's; [`Error::LicenseNotHeld`]
/// for a license another client of the user holds; [`Error::LicenseMoved`] for one moved away.
pub fn check_held(
    id: LicenseId,
    license: Option<&LicenseRecord>,
    client: ClientId,
    user: UserId,
) -> Result<(), Error> {
    let license = license
        .filter(|l| l.user == user)
        .ok_or(Error::LicenseNotFound(id))?;
    if license.client != client {
        return Err(Error::LicenseNotHeld(id));
    }
    if license.state != LicenseState::Active {
        return Err(Error::LicenseMoved(id));
    }
    Ok(())
}

/// Whether `changed` is `current` renewed (only its terms, issue time and tag changed, and it
/// has terms) or returned (only its state, to returned, and tag changed).
pub(crate) fn allowed_change(current: &LicenseRecord, changed: &LicenseRecord) -> bool {
    let renewed = LicenseRecord {
        terms: current.terms,
        issued_at: current.issued_at,
        tag: current.tag,
        ..changed.clone()
    } == *current
        && changed.terms.is_some();
    let returned = LicenseRecord {
        state: current.state,
        tag: current.tag,
        ..changed.clone()
    } == *current
        && changed.state == LicenseState::Returned;
    renewed || returned
}
