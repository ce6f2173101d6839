//! Renewals (issue 27): a licensed device's signed request extends a license with terms, billed
//! by the tariff, for the device that holds the license only.

use treecast_protocol::Error;
use treecast_protocol::certificate::ReleaseKey;
use treecast_protocol::ids::LicenseId;
use treecast_protocol::license::License;
use treecast_protocol::renewal::{RenewFrom, RenewalRequestIn};
use treecast_protocol::terms::Terms;
use treecast_protocol::time::UnixTime;
use treecast_registry::billing::{Charge, ChargeKind};
use treecast_registry::{ClientRecord, LicenseRecord, Registry, RequestTag, check_held};

use super::Distributor;
use crate::billing::OfferTerms;

impl<R: Registry> Distributor<R> {
    /// Answers a signed renewal request: checks the device's signature and the request's
    /// freshness, then, in one registry change, checks that the device holds the license
    /// ([`check_held`]), extends its terms by the offer's duration from its end or from now
    /// (the request says which), never beyond its renewal limit, and bills the offer's renewal
    /// price. The answer is the license signed again with its new end, issued now; the device
    /// acquires it as any license, and a window it started stays started.
    ///
    /// The same request sent again is answered with the license as it stands, billed once.
    ///
    /// # Errors
    /// [`Error::Decode`], [`Error::BadSignature`] (for a client that does not exist too),
    /// [`Error::RequestStale`], [`Error::RequestReplayed`], [`Error::ClientRevoked`],
    /// [`Error::Tampered`]; [`Error::LicenseNotFound`] for a missing license or another user's,
    /// [`Error::LicenseNotHeld`] for another device's, [`Error::LicenseMoved`] for one moved
    /// away; [`Error::InvalidTerms`] for a perpetual license, an offer no longer sold, or a
    /// license at its renewal limit; [`Error::LicenseExpired`] for an ended license whose offer
    /// is not renewed once ended.
    pub fn renew_license(&self, request: &[u8]) -> Result<License, Error> {
        let bytes = request;
        let request = RenewalRequestIn::from_bytes(bytes)?;
        let row = self.registry.client(request.unverified().client_id)?;
        let (client, request) = self.authenticate(row, request)?;
        let t = request.tbs();
        let (tag, recorded) = self.tag_or_recorded(client.id, t.nonce, t.created_at, bytes)?;
        if recorded {
            return self.renewal_again(&client, tag, t.license_id);
        }
        // Checked before the change for the price; checked again inside it.
        let stored = self.registry.license(t.license_id)?;
        check_held(t.license_id, stored.as_ref(), client.id, client.user)?;
        let stored = self
            .vault
            .check_license(stored.ok_or(Error::LicenseNotFound(t.license_id))?)?;
        let offer = stored
            .terms
            .ok_or(Error::InvalidTerms(
                "a perpetual license has nothing to renew",
            ))?
            .offer();
        let (_, sold) = self.tariff.offer(offer).ok_or(Error::InvalidTerms(
            "the distributor no longer sells this offer",
        ))?;
        let now = self.clock.now();
        let charge = Charge::new(ChargeKind::Renewal, sold.renewal_price, now);
        let renewed = self.registry.change_license(
            t.license_id,
            client.id,
            tag,
            Some(charge),
            &mut |current| {
                let current = self.vault.check_license(current.clone())?;
                let terms = current.terms.ok_or(Error::InvalidTerms(
                    "a perpetual license has nothing to renew",
                ))?;
                let terms = extended(current.id, terms, t.from, now, &sold)?;
                let mut renewed = current;
                renewed.terms = Some(terms);
                renewed.issued_at = now;
                Ok(self.vault.tag_license(renewed))
            },
        );
        match renewed {
            Ok((record, _)) => self.sign_renewed(&record, &client),
            // The same request again within the window (a device that lost the answer): a
            // store may refuse the extension (at its limit now) before it finds the request
            // used.
            Err(e) => self
                .renewal_again(&client, tag, t.license_id)
                .map_err(|_| e),
        }
    }

    /// The license a recorded renewal request was for, signed as it stands;
    /// [`Error::RequestReplayed`] when the recorded request is another one.
    fn renewal_again(
        &self,
        client: &ClientRecord,
        tag: RequestTag,
        license: LicenseId,
    ) -> Result<License, Error> {
        self.registry
            .used_request(client.id, tag.nonce)?
            .filter(|u| u.digest == tag.digest && u.answer == license.0)
            .ok_or(Error::RequestReplayed)?;
        let stored = self.registry.license(license)?;
        check_held(license, stored.as_ref(), client.id, client.user)?;
        let record = self
            .vault
            .check_license(stored.ok_or(Error::LicenseNotFound(license))?)?;
        self.sign_renewed(&record, client)
    }

    /// `record` signed for its holder, bound to its move's release if it arrived by one.
    fn sign_renewed(
        &self,
        record: &LicenseRecord,
        holder: &ClientRecord,
    ) -> Result<License, Error> {
        let content = self
            .registry
            .content(record.content)?
            .ok_or(Error::ContentNotFound(record.content))?;
        let content_key = self.vault.open(&content)?;
        let release = self.release_of(record)?;
        self.sign_license(record, holder, release.as_ref(), &content_key)
    }

    /// The release a moved-in license is bound to (`None` for a bought one): derived again from
    /// its certificate's history entry and the source's device key.
    fn release_of(&self, record: &LicenseRecord) -> Result<Option<ReleaseKey>, Error> {
        let Some(certificate) = record.origin else {
            return Ok(None);
        };
        let history = self
            .registry
            .user_rows(record.user)?
            .and_then(|rows| rows.history.into_iter().find(|h| h.id == certificate))
            .filter(|h| h.destination_license == record.id && h.destination == record.client)
            .ok_or(Error::Tampered("history entry"))?;
        let source = self.trusted_client(history.source)?;
        Ok(Some(ReleaseKey::derive(
            &self.keys.device_key(source.leaf)?,
            certificate,
            history.source_license,
            record.client,
        )?))
    }
}

/// `terms` renewed at `now` under `sold`, from their end or from now: extended by the offer's
/// duration, stopped at the renewal limit.
fn extended(
    license: LicenseId,
    terms: Terms,
    from: RenewFrom,
    now: UnixTime,
    sold: &OfferTerms,
) -> Result<Terms, Error> {
    if now >= terms.not_after() && !sold.renew_expired {
        return Err(Error::LicenseExpired(license));
    }
    let base = match from {
        RenewFrom::Now => now.max(terms.not_before()),
        _ => terms.not_after(),
    };
    let end = base.plus(sold.duration).min(terms.renew_until());
    if end <= terms.not_after() {
        return Err(Error::InvalidTerms(
            "nothing to extend: the renewal limit is reached, or a renewal from now ends no later",
        ));
    }
    if end <= now {
        return Err(Error::InvalidTerms(
            "the renewed license would have ended already",
        ));
    }
    terms.extended_to(end)
}
