//! License supply and copy-certificate supply (claims 1–4, 13), and answering the same signed
//! request again when a client lost the answer.
//!
//! Every answer is rebuilt from registry rows only (Ed25519 signatures and the key wrapping are
//! deterministic), so a retried request (the same bytes: the same [`RequestTag`]) gets the very
//! bytes the first answer had, and a different request that reuses a nonce is refused.

use std::sync::LazyLock;

use ed25519_dalek::SigningKey;
use treecast_keytree::LeafIndex;
use treecast_protocol::Error;
use treecast_protocol::certificate::{
    CopyCertificate, CopyCertificateTbs, LicenseRequestTbs, MoveRequestTbs, ReleaseKey,
};
use treecast_protocol::content::ContentKey;
use treecast_protocol::ids::{CertificateId, LicenseId};
use treecast_protocol::license::{License, LicenseTbs, Rights};
use treecast_protocol::sign::{Signable, Signed, Unverified};
use treecast_protocol::terms::Offer;
use treecast_registry::billing::{Charge, ChargeKind};
use treecast_registry::{
    CertificateRecord, ClientRecord, LicenseRecord, LicenseState, LoanLimit, MoveIntent, MoveRows,
    Registry, RequestTag,
};

use super::{Distributor, client_key};

/// The public key a request of a client that does not exist is verified under, as the bytes a
/// client row keeps (decoded per request, as a row's key is). Any valid key would do: the
/// answer is [`Error::BadSignature`] whatever the verification gives.
static UNKNOWN_CLIENT_KEY: LazyLock<[u8; 32]> = LazyLock::new(|| {
    SigningKey::from_bytes(&[0x5a; 32])
        .verifying_key()
        .to_bytes()
});

impl<R: Registry> Distributor<R> {
    /// Answers a signed license request (claim 1, license supply) with a license that allows
    /// playing and moving: see [`Distributor::supply_license_with_rights`].
    ///
    /// # Errors
    /// As [`Distributor::supply_license_with_rights`].
    pub fn supply_license(&self, request: &[u8]) -> Result<License, Error> {
        self.supply_license_with_rights(request, Rights::PLAY_AND_MOVE)
    }

    /// Answers a signed license request (claim 1, license supply): checks the client's
    /// signature, its registry row and the request's freshness, issues a license with `rights`
    /// bound to the client and the current epoch, signed by the client's license server, and
    /// bills it. A license without [`Rights::MOVE`] cannot be moved, one without
    /// [`Rights::PLAY`] does not play.
    ///
    /// The same request sent again (the same bytes) is answered with the same license and
    /// billed once, even after the freshness window while the store keeps its record (a device
    /// that lost the answer); another request with a used nonce is refused.
    ///
    /// # Errors
    /// [`Error::Decode`], [`Error::BadSignature`] (for a client that does not exist too),
    /// [`Error::Tampered`], [`Error::RequestStale`], [`Error::ClientRevoked`],
    /// [`Error::ContentNotFound`], [`Error::RequestReplayed`].
    pub fn supply_license_with_rights(
        &self,
        request: &[u8],
        rights: Rights,
    ) -> Result<License, Error> {
        let bytes = request;
        let request = Unverified::<LicenseRequestTbs>::from_bytes(bytes)?;
        let (client_id, content_id) = {
            let t = request.unverified();
            (t.client_id, t.content_id)
        };
        // One read of the store for the three (one round trip on PostgreSQL); the checks come
        // in the order of the other requests.
        let (client, content, epoch) = self.registry.supply_reads(client_id, content_id)?;
        let (client, request) = self.authenticate(client, request)?;
        let t = request.tbs();
        let (tag, recorded) = self.tag_or_recorded(client.id, t.nonce, t.created_at, bytes)?;
        let content = content.ok_or(Error::ContentNotFound(t.content_id))?;
        self.server(client.server)?;
        // The epoch whose EKB is built and stored: a device can always fetch its license's.
        let (epoch, _) = self.ekb_of(epoch)?;
        let content_key = self.vault.open(&content)?;
        if recorded {
            return self.license_again(&client, tag, &content_key);
        }
        let now = self.clock.now();
        // The offer the client signed for: its price and its terms (issue 27).
        let (price, terms) = match self.tariff.sale(t.offer, content.id, now) {
            Ok(sale) => sale,
            // A request recorded before the tariff stopped selling the offer is still answered
            // from what it produced.
            Err(e) => {
                return self
                    .license_again(&client, tag, &content_key)
                    .map_err(|_| e);
            }
        };
        // A playback window starts on the device, where the server cannot see it; a license
        // with one is not movable, so that a move cannot start its window again (issue 27).
        let rights = match terms {
            Some(t) if t.play_window() > 0 => Rights(rights.0 & !Rights::MOVE.0),
            _ => rights,
        };
        let charge = Charge::new(ChargeKind::License, price, now);
        let mut license = None;
        // A loan counts against the content's copies, inside the registry's change.
        let loans = terms
            .filter(|t| t.offer() == Offer::Loan)
            .and_then(|_| self.tariff.loan_copies(content.id))
            .map(|copies| LoanLimit::new(copies, now));
        let issued =
            self.registry
                .add_license(client.id, content.id, tag, charge, loans, &mut |id| {
                    let record = self.vault.tag_license(
                        LicenseRecord::new(
                            id,
                            content.id,
                            client.id,
                            client.user,
                            epoch,
                            None,
                            now,
                        )
                        .with_rights(rights)
                        .with_terms(terms),
                    );
                    license = Some(self.sign_license(&record, &client, None, &content_key)?);
                    Ok(record)
                });
        match issued {
            Ok(_) => license.ok_or(Error::Internal("license not built")),
            Err(Error::RequestReplayed) => self.license_again(&client, tag, &content_key),
            Err(e) => Err(e),
        }
    }

    /// The license a recorded request produced, signed again; [`Error::RequestReplayed`] when
    /// the recorded request is another one with the same nonce.
    fn license_again(
        &self,
        client: &ClientRecord,
        tag: RequestTag,
        content_key: &ContentKey,
    ) -> Result<License, Error> {
        let used = self
            .registry
            .used_request(client.id, tag.nonce)?
            .filter(|u| u.digest == tag.digest)
            .ok_or(Error::RequestReplayed)?;
        let id = LicenseId(used.answer);
        let record = self
            .registry
            .license(id)?
            .ok_or(Error::LicenseNotFound(id))?;
        let record = self.vault.check_license(record)?;
        if record.client != client.id || record.origin.is_some() {
            return Err(Error::RequestReplayed);
        }
        if record.state != LicenseState::Active {
            return Err(Error::LicenseMoved(record.id));
        }
        self.sign_license(&record, client, None, content_key)
    }

    /// Answers a signed move request (claims 1–4, 13): checks the source's signature and the
    /// request's freshness, then, in one registry change, checks claim 4 and the move right on
    /// rows this distributor tagged, records the request, marks the source license moved,
    /// issues the destination's license, records the certificate issue and bills it.
    ///
    /// The certificate is signed by the destination's license server and carries the
    /// destination's license (claim 2), whose content key is also bound to a release that only
    /// the source device can compute ([`ReleaseKey`]). The source's `Device::move_out`
    /// (`treecast-device`) deletes its copy before it returns that release,
    /// so a certificate diverted straight to the destination is useless to it.
    ///
    /// The same request sent again (a source that lost the answer) is answered with the same
    /// certificate and billed once, so the move can still complete, even after the freshness
    /// window while the store keeps the request's record.
    ///
    /// # Errors
    /// [`Error::Decode`], [`Error::BadSignature`] (for a source that does not exist too),
    /// [`Error::RequestStale`], [`Error::RequestReplayed`], [`Error::Tampered`], and every
    /// refusal of [`check_move`](treecast_registry::check_move): another user's license or
    /// destination is refused as a missing one.
    pub fn supply_certificate(&self, request: &[u8]) -> Result<CopyCertificate, Error> {
        let bytes = request;
        let request = Unverified::<MoveRequestTbs>::from_bytes(bytes)?;
        let source = self.registry.client(request.unverified().source)?;
        let (source, request) = self.authenticate(source, request)?;
        let t = request.tbs();
        let (tag, recorded) = self.tag_or_recorded(source.id, t.nonce, t.created_at, bytes)?;
        if t.source == t.destination {
            return Err(Error::SameClient);
        }
        // Another user's license is answered as a missing one (`check_move` does the same
        // inside the change): the request proves who sends it, not what others own.
        let license = self
            .registry
            .license(t.license_id)?
            .filter(|l| l.user == source.user)
            .ok_or(Error::LicenseNotFound(t.license_id))?;
        let content = self
            .registry
            .content(license.content)?
            .ok_or(Error::ContentNotFound(license.content))?;
        let content_key = self.vault.open(&content)?;
        if recorded {
            return self.certificate_again(&source, tag, &content_key);
        }
        let (epoch, _) = self.current_ekb()?;
        let now = self.clock.now();
        let expires = now.plus(self.config.certificate_validity);
        let charge = Charge::new(
            ChargeKind::Certificate,
            self.tariff.price(ChargeKind::Certificate, content.id),
            now,
        );
        let mut certificate = None;
        let intent = MoveIntent::new(t.license_id, t.source, t.destination, tag);
        let committed =
            self.registry
                .commit_move(&intent, charge, &mut |ctx, certificate_id, license_id| {
                    // The rows the checks ran on must be ours.
                    let source = self.vault.check_client(ctx.source.clone())?;
                    let dest = self.vault.check_client(ctx.destination.clone())?;
                    let mut moved = self.vault.check_license(ctx.license.clone())?;
                    if moved.content != content.id {
                        return Err(Error::Internal("license changed content during the move"));
                    }
                    let record = self.vault.tag_license(
                        LicenseRecord::new(
                            license_id,
                            content.id,
                            dest.id,
                            dest.user,
                            epoch,
                            Some(certificate_id),
                            now,
                        )
                        .with_rights(moved.rights)
                        // A move never extends the license's time (issue 27).
                        .with_terms(moved.terms),
                    );
                    let history = CertificateRecord {
                        id: certificate_id,
                        user: dest.user,
                        content: content.id,
                        source: source.id,
                        source_license: moved.id,
                        destination: dest.id,
                        destination_license: license_id,
                        server: dest.server,
                        issued_at: now,
                        expires_at: expires,
                    };
                    certificate = Some(self.sign_certificate(
                        &history,
                        source.leaf,
                        &dest,
                        &record,
                        &content_key,
                    )?);
                    moved.state = LicenseState::Moved;
                    Ok(MoveRows::new(
                        self.vault.tag_license(moved),
                        record,
                        history,
                    ))
                });
        match committed {
            Ok(_) => certificate.ok_or(Error::Internal("certificate not built")),
            // The license is moved (or the nonce used) already: by this very request?
            Err(e @ (Error::RequestReplayed | Error::LicenseMoved(_))) => {
                match self.certificate_again(&source, tag, &content_key) {
                    Err(Error::RequestReplayed) if matches!(e, Error::LicenseMoved(_)) => Err(e),
                    again => again,
                }
            }
            Err(e) => Err(e),
        }
    }

    /// The certificate a recorded move request produced, signed again;
    /// [`Error::RequestReplayed`] when no such request, or another one, was recorded.
    fn certificate_again(
        &self,
        source: &ClientRecord,
        tag: RequestTag,
        content_key: &ContentKey,
    ) -> Result<CopyCertificate, Error> {
        let used = self
            .registry
            .used_request(source.id, tag.nonce)?
            .filter(|u| u.digest == tag.digest)
            .ok_or(Error::RequestReplayed)?;
        let id = CertificateId(used.answer);
        let history = self
            .registry
            .user_rows(source.user)?
            .and_then(|rows| rows.history.into_iter().find(|h| h.id == id))
            .filter(|h| h.source == source.id)
            .ok_or(Error::RequestReplayed)?;
        let dest = self.trusted_client(history.destination)?;
        let license = self
            .registry
            .license(history.destination_license)?
            .ok_or(Error::LicenseNotFound(history.destination_license))?;
        let license = self.vault.check_license(license)?;
        if license.origin != Some(id) || license.client != dest.id {
            return Err(Error::Tampered("history entry"));
        }
        if license.state != LicenseState::Active {
            return Err(Error::LicenseMoved(license.id));
        }
        self.sign_certificate(&history, source.leaf, &dest, &license, content_key)
    }

    /// The request's client, with the request verified under its key. Every failure before the
    /// signature is verified is [`Error::BadSignature`], and costs one verification: for a
    /// client that does not exist, the request is verified under a fixed key, so that neither
    /// the answer nor its time tells who is registered (`docs/threat-model.md`). A revoked
    /// client is told so only after its signature verified ([`Error::ClientRevoked`]).
    pub(crate) fn authenticate<T: Signable>(
        &self,
        row: Option<ClientRecord>,
        request: Unverified<T>,
    ) -> Result<(ClientRecord, Signed<T>), Error> {
        let Some(row) = row else {
            // The result is ignored: the answer is the same either way.
            let _ = request.verify(&client_key(&UNKNOWN_CLIENT_KEY)?);
            return Err(Error::BadSignature);
        };
        let client = self.vault.check_client(row)?;
        let request = request.verify(&client_key(&client.public_key)?)?;
        Ok((client, request))
    }

    /// The license of `record`, held by `holder`, signed by its server; bound to `release` when
    /// it arrives by a move.
    pub(crate) fn sign_license(
        &self,
        record: &LicenseRecord,
        holder: &ClientRecord,
        release: Option<&ReleaseKey>,
        content_key: &ContentKey,
    ) -> Result<License, Error> {
        let server = self.server(holder.server)?;
        let epoch_key = self.epoch_key(record.epoch)?;
        server.sign(LicenseTbs::new(
            record.id,
            record.content,
            holder.id,
            holder.user,
            holder.server,
            (record.epoch, &epoch_key),
            (record.rights, record.issued_at, record.terms),
            (&self.keys.device_key(holder.leaf)?, release),
            content_key,
        )?)
    }

    /// The copy certificate of `history`: signed with the key of the destination's license
    /// server (claim 3), carrying the destination's license (claim 2) bound to the release
    /// only the source (at `source_leaf`) can compute.
    fn sign_certificate(
        &self,
        history: &CertificateRecord,
        source_leaf: LeafIndex,
        dest: &ClientRecord,
        license: &LicenseRecord,
        content_key: &ContentKey,
    ) -> Result<CopyCertificate, Error> {
        let release = ReleaseKey::derive(
            &self.keys.device_key(source_leaf)?,
            history.id,
            history.source_license,
            dest.id,
        )?;
        let new_license = self.sign_license(license, dest, Some(&release), content_key)?;
        let server = self.server(dest.server)?;
        server.sign(CopyCertificateTbs::new(
            history.id,
            dest.user,
            history.source,
            history.source_license,
            dest.id,
            history.issued_at,
            history.expires_at,
            &release,
            &new_license,
        ))
    }
}
