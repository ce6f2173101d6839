//! A license's status document (issue 27), after Readium LCP's: its state, its dates, and the
//! events of its history (issue, renewals, moves, return) with the devices involved.

use treecast_protocol::Error;
use treecast_protocol::ids::{ClientId, ContentId, LicenseId, UserId};
use treecast_protocol::terms::Terms;
use treecast_protocol::time::UnixTime;
use treecast_registry::Registry;
use treecast_registry::billing::ChargeKind;

use super::{Distributor, LicenseStatus};

/// A license's status document.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct StatusDocument {
    /// The license.
    pub license: LicenseId,
    /// Its content.
    pub content: ContentId,
    /// The device that holds (or held) it.
    pub client: ClientId,
    /// Its state now.
    pub status: LicenseStatus,
    /// When it was issued (or last renewed).
    pub issued_at: UnixTime,
    /// Its terms, for a license with time.
    pub terms: Option<Terms>,
    /// What happened to it, in order.
    pub events: Vec<StatusEvent>,
}

/// One event of a license's history.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub struct StatusEvent {
    /// `register` (issued), `renew`, `move` (moved away) or `return`, as LCP names them.
    pub kind: &'static str,
    /// When.
    pub at: UnixTime,
    /// The device: the holder, or for a move the destination.
    pub device: ClientId,
}

impl<R: Registry> Distributor<R> {
    /// `user`'s license `license` as a status document: its state
    /// ([`Distributor::license_state`]), dates, and the events the registry keeps (its ledger
    /// entries and its moves). Another user's license is [`Error::LicenseNotFound`], as a
    /// missing one is.
    ///
    /// # Errors
    /// As [`Distributor::license_state`].
    pub fn status_document(
        &self,
        user: UserId,
        license: LicenseId,
    ) -> Result<StatusDocument, Error> {
        let (record, status) = self.license_state(user, license)?;
        let rows = self
            .registry
            .user_rows(user)?
            .ok_or(Error::LicenseNotFound(license))?;
        let mut events: Vec<StatusEvent> = rows
            .ledger
            .iter()
            .filter(|e| e.reference == license.0)
            .filter_map(|e| {
                let kind = match e.kind {
                    ChargeKind::License => "register",
                    ChargeKind::Renewal => "renew",
                    ChargeKind::Return => "return",
                    ChargeKind::Certificate => return None,
                };
                Some(StatusEvent {
                    kind,
                    at: e.at,
                    device: record.client,
                })
            })
            .collect();
        // A license that arrived by a move was issued by its certificate (billed as one).
        if let Some(origin) = record.origin
            && let Some(h) = rows.history.iter().find(|h| h.id == origin)
        {
            events.push(StatusEvent {
                kind: "register",
                at: h.issued_at,
                device: record.client,
            });
        }
        for h in rows.history.iter().filter(|h| h.source_license == license) {
            events.push(StatusEvent {
                kind: "move",
                at: h.issued_at,
                device: h.destination,
            });
        }
        events.sort_by_key(|e| e.at);
        Ok(StatusDocument {
            license,
            content: record.content,
            client: record.client,
            status,
            issued_at: record.issued_at,
            terms: record.terms,
            events,
        })
    }
}
