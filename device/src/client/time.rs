//! Time on a device (issue 27): licenses with terms play only inside their dates and window,
//! and a clock set back is refused.
//!
//! A device's clock is the user's to set. The device therefore keeps the latest time a license
//! server signed that it has seen (the issue times of its licenses, those of the licenses it
//! moved out, and those of the certificates it used), sealed with the rest of its saved state,
//! and refuses to play a license with terms while its clock reads earlier. A license is expired
//! once the clock (never earlier than that trusted time) reaches its end. What it does not stop:
//! a device kept offline with its clock frozen before a license's end keeps playing it until its
//! clock moves (`docs/threat-model.md`).

use std::io::Write;

use treecast_protocol::Error;
use treecast_protocol::content::ContentHeader;
use treecast_protocol::ids::ContentId;
use treecast_protocol::terms::Terms;
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
        if now < terms.not_before() {
            return Err(Error::LicenseNotYetValid(id));
        }
        if !terms.allows_play_at(now, timed.first_play) {
            return Err(Error::LicenseExpired(id));
        }
        let header = self.decrypt(content, output)?;
        if timed.first_play.is_none() && terms.play_window() > 0 {
            self.state
                .start_window(timed.license, now, terms.not_after());
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
