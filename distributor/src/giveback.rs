//! Returns (issue 27): a device gives a loan or a rental back early, with the receipt that
//! proves it deleted the license.

use treecast_protocol::Error;
use treecast_protocol::giveback::{ReturnReceipt, ReturnRequestIn};
use treecast_protocol::ids::LicenseId;
use treecast_protocol::terms::Offer;
use treecast_registry::billing::{Charge, ChargeKind};
use treecast_registry::{ClientRecord, LicenseState, Registry, RequestTag};

use super::Distributor;

impl<R: Registry> Distributor<R> {
    /// Answers a signed return request: checks the device's signature and the request's
    /// freshness, that the device holds the license
    /// ([`check_held`](treecast_registry::check_held)), that it is a loan or a
    /// rental, and that the request carries the receipt only the device's key yields (the
    /// device deleted the license before making it: `Device::return_license` in
    /// `treecast-device`); then marks the license returned and records the return in the
    /// ledger (at 0: nothing is refunded), in one registry change. The same request sent again
    /// is answered again.
    ///
    /// # Errors
    /// [`Error::Decode`], [`Error::BadSignature`] (for a client that does not exist too),
    /// [`Error::RequestStale`], [`Error::RequestReplayed`], [`Error::ClientRevoked`],
    /// [`Error::Tampered`]; [`Error::LicenseNotFound`], [`Error::LicenseNotHeld`],
    /// [`Error::LicenseMoved`] (moved away or returned already) as for a renewal;
    /// [`Error::InvalidTerms`] for a license that is not a loan or a rental;
    /// [`Error::NotReleased`] for a receipt that is not the device's.
    pub fn return_license(&self, request: &[u8]) -> Result<(), Error> {
        let bytes = request;
        let request = ReturnRequestIn::from_bytes(bytes)?;
        let row = self.registry.client(request.unverified().client_id)?;
        let (client, request) = self.authenticate(row, request)?;
        let t = request.tbs();
        let (tag, recorded) = self.tag_or_recorded(client.id, t.nonce, t.created_at, bytes)?;
        if recorded {
            return self.returned_again(&client, tag, t.license_id);
        }
        let expected =
            ReturnReceipt::derive(&self.keys.device_key(client.leaf)?, t.license_id, client.id)?;
        if !t.receipt.matches(&expected) {
            return Err(Error::NotReleased);
        }
        // The return is an event of the ledger, at 0: nothing is refunded.
        let event = Charge::new(ChargeKind::Return, 0, self.clock.now());
        let returned = self.registry.change_license(
            t.license_id,
            client.id,
            tag,
            Some(event),
            &mut |current| {
                let current = self.vault.check_license(current.clone())?;
                let returnable = current
                    .terms
                    .is_some_and(|terms| matches!(terms.offer(), Offer::Loan | Offer::Rental));
                if !returnable {
                    return Err(Error::InvalidTerms("only a loan or a rental is returned"));
                }
                let mut returned = current;
                returned.state = LicenseState::Returned;
                Ok(self.vault.tag_license(returned))
            },
        );
        match returned {
            Ok(_) => Ok(()),
            // The same request again within the window (a device that lost the answer): a
            // store may find it returned before it finds the request used.
            Err(e) => self
                .returned_again(&client, tag, t.license_id)
                .map_err(|_| e),
        }
    }

    /// Whether a recorded return request is this one, for this license, and the license is
    /// returned; [`Error::RequestReplayed`] otherwise.
    fn returned_again(
        &self,
        client: &ClientRecord,
        tag: RequestTag,
        license: LicenseId,
    ) -> Result<(), Error> {
        self.registry
            .used_request(client.id, tag.nonce)?
            .filter(|u| u.digest == tag.digest && u.answer == license.0)
            .ok_or(Error::RequestReplayed)?;
        let stored = self
            .registry
            .license(license)?
            .filter(|l| l.client == client.id && l.state == LicenseState::Returned)
            .ok_or(Error::RequestReplayed)?;
        self.vault.check_license(stored)?;
        Ok(())
    }
}
