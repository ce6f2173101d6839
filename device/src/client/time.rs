//! Time on a device (issue 27): licenses with terms play only inside their dates and window,
//! a clock set back is refused, and a loan or a rental is returned early.
//!
//! A device's clock is the user's to set. The device therefore keeps a floor on time, sealed
//! with the rest of its saved state: the latest time a license server signed that it has seen
//! (the issue times of its licenses, those of the licenses it moved out, those of the
//! certificates it used) or that its own clock read when it played a license with terms. It
//! refuses to play a license with terms while its clock reads earlier. A license is expired
//! once the clock (never earlier than that floor) reaches its end. What it does not stop: a
//! device kept with its clock frozen before a license's end keeps playing it, and a device
//! restored from an older state gets its older floor and windows back (`docs/threat-model.md`).

use std::io::Write;

use treecast_protocol::Error;
use treecast_protocol::content::ContentHeader;
use treecast_protocol::giveback::ReturnReceipt;
use treecast_protocol::ids::{ContentId, LicenseId};
use treecast_protocol::terms::{Offer, Terms};
use treecast_protocol::time::UnixTime;

use super::Device;

impl Device {
    /// Plays `content` at `now` (the device's clock), as [`Device::play`] does, for any license:
    /// one with terms plays only from its start until its end, and within its playback window
    /// once played; its first play starts the window (keep the state afterwards: the window is
    /// part of it). A perpetual license plays whatever the time.
    ///
    /// # Errors
    /// As [`Device::play`]; [`Error::ClockSetBack`] when `now` is earlier than the latest time
    /// a server signed that this device has seen (a license with terms only);
    /// [`Error::LicenseNotYetValid`] before the license's start; [`Error::LicenseExpired`] at
    /// or after its end (or its window's).
    pub fn play_at(
        &mut self,
        content: ContentId,
        now: UnixTime,
        output: impl Write,
    ) -> Result<ContentHeader, Error> {
        let Some(timed) = self.state.timed(content) else {
            return self.decrypt(content, output);
        };
        let id = self.license_id(content).ok_or(Error::NoLicense(content))?;
        let trusted = self.state.trusted_time();
        if now < trusted {
            return Err(Error::ClockSetBack {
                clock: now,
                trusted,
            });
        }
        let terms = timed.terms;
        if let Some(first) = timed.first_play
            && now < first
        {
            return Err(Error::ClockSetBack {
                clock: now,
                trusted: first,
            });
        }
        // The clock read `now` when asked to play: a floor from now on, whether it plays or
        // not. Set back below it, the device plays no license with terms (a clock set forward
        // keeps them locked until time catches up).
        self.state.trust(now);
        if now < terms.not_before() {
            return Err(Error::LicenseNotYetValid(id));
        }
        if !terms.allows_play_at(now, timed.first_play) {
            return Err(Error::LicenseExpired(id));
        }
        let header = self.decrypt(content, output)?;
        if timed.first_play.is_none() && terms.play_window() > 0 {
            // Kept until no renewal can make the license play again.
            self.state
                .start_window(timed.license, now, terms.renew_until());
        }
        Ok(header)
    }

    /// The latest time a license server signed that this device has seen (0 before any).
    pub fn trusted_time(&self) -> UnixTime {
        self.state.trusted_time()
    }

    /// The terms of `content`'s license and its first play, when the license has terms.
    pub fn license_terms(&self, content: ContentId) -> Option<(Terms, Option<UnixTime>)> {
        self.state.timed(content).map(|t| (t.terms, t.first_play))
    }
}

impl Device {
    /// Returns a loan or a rental early (issue 27): deletes the license first (its content
    /// stays), remembers it so that it is never acquired again, and gives the receipt that
    /// proves the deletion, derived from the device key, for
    /// [`Client::return_request`](super::Client::return_request). Asked again for a license it
    /// returned, it gives the same receipt and changes nothing (a device that lost the answer
    /// sends the request again).
    ///
    /// # Errors
    /// [`Error::NoLicense`] when it holds no license for `content` and returned none;
    /// [`Error::InvalidTerms`] for a license that is not a loan or a rental.
    pub fn return_license(
        &mut self,
        content: ContentId,
    ) -> Result<(LicenseId, ReturnReceipt), Error> {
        let Some(timed) = self.state.timed(content) else {
            return Err(match self.license_id(content) {
                Some(_) => Error::InvalidTerms("only a loan or a rental is returned"),
                None => Error::NoLicense(content),
            });
        };
        if !matches!(timed.terms.offer(), Offer::Loan | Offer::Rental) {
            return Err(Error::InvalidTerms("only a loan or a rental is returned"));
        }
        let receipt =
            ReturnReceipt::derive(self.device_keys.device_key(), timed.license, self.state.id)?;
        // Deleted before the receipt leaves the device.
        self.state.keep_time_of(content);
        self.state.moves_mut().timed.remove(&content);
        self.state.stores_mut().licenses.remove(&content);
        let moves = self.state.moves_mut();
        moves.releases.remove(&content);
        moves.moved_out.insert(timed.license, ());
        Ok((timed.license, receipt))
    }

    /// The receipt of a license this device returned (or moved out) already, to send its
    /// return request again; `None` for a license it never gave up.
    pub fn return_receipt(&self, license: LicenseId) -> Option<ReturnReceipt> {
        if !self.state.moves().moved_out.contains_key(&license) {
            return None;
        }
        ReturnReceipt::derive(self.device_keys.device_key(), license, self.state.id).ok()
    }
}
