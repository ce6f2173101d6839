//! The EKBs a distributor serves: built once per epoch however many callers ask at once
//! (single flight), kept in a bounded per-process cache, and read back from the registry when
//! the cache no longer holds them (`docs/design.md`, "EKB builds: single flight, bounded
//! cache").

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use treecast_keytree::{RevocationSet, SignedEkb, VerifiedEkbBuf};
use treecast_protocol::Error;
use treecast_registry::Registry;

use super::Distributor;

/// What a process's EKB cache holds and did, for operators' metrics.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
#[non_exhaustive]
pub struct EkbStats {
    /// EKBs this process built (each a cover computation, one wrap per subset and a signature:
    /// about 0.2 s and 40 MB at 1.7 M subsets).
    pub builds: u64,
    /// The time those builds took, in all.
    pub build_time: std::time::Duration,
    /// EKBs read back from the registry (built by another process, or evicted from the cache).
    pub stored_reads: u64,
    /// Epochs whose EKB the cache holds now.
    pub cached_epochs: usize,
    /// The bytes of those EKBs.
    pub cached_bytes: usize,
}

/// Whether EKB fetches are forbidden on this thread ([`Distributor::with_cached_ekbs_only`]),
/// and whether one was refused.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
enum Fetches {
    #[default]
    Allowed,
    Forbidden,
    Refused,
}

thread_local! {
    static FETCHES: Cell<Fetches> = const { Cell::new(Fetches::Allowed) };
}

/// Puts back the thread's previous [`Fetches`] when dropped (a panic included).
struct Restore(Fetches);

impl Drop for Restore {
    fn drop(&mut self) {
        FETCHES.with(|f| f.set(self.0));
    }
}

/// One cached EKB, with when it was last asked for (a tick of [`EkbCache::clock`]).
struct Entry {
    ekb: Arc<SignedEkb>,
    used: AtomicU64,
}

/// The cache of EKBs by epoch, with its byte count.
#[derive(Default)]
struct Cached {
    ekbs: BTreeMap<u64, Entry>,
    bytes: usize,
}

/// One epoch's fetch in flight: the EKB once its first caller got it.
type Slot = Arc<Mutex<Option<Arc<SignedEkb>>>>;

/// A distributor's EKBs: the bounded cache, the fetches in flight, and counters.
#[derive(Default)]
pub(super) struct EkbCache {
    cached: RwLock<Cached>,
    flights: Mutex<BTreeMap<u64, Slot>>,
    /// Held while an earlier epoch's EKB is read back from the registry and verified, so that
    /// requests for many old epochs at once hold one such EKB in flight, not one each.
    old_reads: Mutex<()>,
    /// Counts cache lookups and inserts: the recency of an entry.
    clock: AtomicU64,
    builds: AtomicU64,
    build_nanos: AtomicU64,
    stored_reads: AtomicU64,
}

impl EkbCache {
    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed).wrapping_add(1)
    }

    fn get(&self, epoch: u64) -> Result<Option<Arc<SignedEkb>>, Error> {
        let cached = self
            .cached
            .read()
            .map_err(|_| Error::Internal("EKB cache poisoned"))?;
        Ok(cached.ekbs.get(&epoch).map(|entry| {
            entry.used.store(self.tick(), Ordering::Relaxed);
            Arc::clone(&entry.ekb)
        }))
    }

    /// Caches `ekb`, then drops the least recently asked-for epochs until at most
    /// `max_epochs` (at least one) and `max_bytes` remain; the newest epoch, the current one,
    /// always stays. So an earlier epoch asked for again and again stays cached too, rather
    /// than being evicted as soon as it is read back (it was the oldest).
    fn insert(
        &self,
        epoch: u64,
        ekb: &Arc<SignedEkb>,
        max_epochs: usize,
        max_bytes: usize,
    ) -> Result<(), Error> {
        let mut c = self
            .cached
            .write()
            .map_err(|_| Error::Internal("EKB cache poisoned"))?;
        let entry = Entry {
            ekb: Arc::clone(ekb),
            used: AtomicU64::new(self.tick()),
        };
        if let Some(old) = c.ekbs.insert(epoch, entry) {
            c.bytes = c.bytes.saturating_sub(old.ekb.as_bytes().len());
        }
        c.bytes = c.bytes.saturating_add(ekb.as_bytes().len());
        while c.ekbs.len() > max_epochs.max(1) || (c.bytes > max_bytes && c.ekbs.len() > 1) {
            let newest = c.ekbs.last_key_value().map(|(e, _)| *e);
            let victim = c
                .ekbs
                .iter()
                .filter(|(e, _)| Some(**e) != newest)
                .min_by_key(|(_, entry)| entry.used.load(Ordering::Relaxed))
                .map(|(e, _)| *e);
            let Some(evicted) = victim.and_then(|e| c.ekbs.remove(&e)) else {
                break;
            };
            c.bytes = c.bytes.saturating_sub(evicted.ekb.as_bytes().len());
        }
        Ok(())
    }

    /// The slot of `epoch`'s fetch: the one in flight, or a new one.
    fn slot(&self, epoch: u64) -> Slot {
        let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(flights.entry(epoch).or_default())
    }

    /// Forgets `slot` once its fetch is over (its waiters hold it still).
    fn land(&self, epoch: u64, slot: &Slot) {
        let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
        if flights.get(&epoch).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            flights.remove(&epoch);
        }
    }
}

/// What one fetch of an epoch's EKB gave.
enum Fetched {
    /// The EKB.
    Ekb(Arc<SignedEkb>),
    /// None: the epoch moved on to this one before its EKB was built.
    Newer(u64),
}

impl<R: Registry> Distributor<R> {
    /// The EKB of the current epoch: from this process's cache, or the registry, or built
    /// (and stored in the registry, so that every process serves the same one). Callers that
    /// ask at once for an epoch not yet built wait for one build.
    ///
    /// # Errors
    /// [`Error::Storage`], [`Error::Tampered`] for a stored EKB the authority did not sign, or
    /// a key-tree error.
    pub fn current_ekb(&self) -> Result<(u64, Arc<SignedEkb>), Error> {
        self.ekb_of(self.registry.epoch()?)
    }

    /// The current epoch's EKB if this process's cache holds it, reading nothing but the
    /// epoch: what a server can answer without building, or reading an EKB from the registry.
    ///
    /// # Errors
    /// [`Error::Storage`] when the epoch cannot be read.
    pub fn cached_current_ekb(&self) -> Result<Option<(u64, Arc<SignedEkb>)>, Error> {
        let epoch = self.registry.epoch()?;
        Ok(self.ekbs.get(epoch)?.map(|ekb| (epoch, ekb)))
    }

    /// The EKB of `epoch` if this process's cache holds it; reads nothing else.
    ///
    /// # Errors
    /// [`Error::Internal`] when the cache's lock is poisoned.
    pub fn cached_ekb(&self, epoch: u64) -> Result<Option<Arc<SignedEkb>>, Error> {
        self.ekbs.get(epoch)
    }

    /// Runs `f` with this thread barred from reading an EKB from the registry or building one:
    /// `None` when `f` needed an EKB this process's cache does not hold (the refused fetch
    /// failed `f` with [`Error::Internal`] before anything was written; run `f` again where
    /// blocking is fine). For a server that runs a supply on its reactor when the current
    /// epoch's EKB is cached: a revocation between that check and the supply would otherwise
    /// build the new EKB (0.2 s at 1.7 M subsets) on the reactor.
    pub fn with_cached_ekbs_only<T>(&self, f: impl FnOnce() -> T) -> Option<T> {
        let _restore = Restore(FETCHES.with(|fetches| fetches.replace(Fetches::Forbidden)));
        let done = f();
        (FETCHES.with(Cell::get) != Fetches::Refused).then_some(done)
    }

    /// What the EKB cache holds and did.
    pub fn ekb_stats(&self) -> EkbStats {
        let (cached_epochs, cached_bytes) = self
            .ekbs
            .cached
            .read()
            .map(|c| (c.ekbs.len(), c.bytes))
            .unwrap_or_default();
        EkbStats {
            builds: self.ekbs.builds.load(Ordering::Relaxed),
            build_time: std::time::Duration::from_nanos(
                self.ekbs.build_nanos.load(Ordering::Relaxed),
            ),
            stored_reads: self.ekbs.stored_reads.load(Ordering::Relaxed),
            cached_epochs,
            cached_bytes,
        }
    }

    /// The EKB of `epoch`, read as the current one: from the cache, from the registry, or
    /// built and stored. When the epoch moved on before its EKB was built, the newest epoch's
    /// is returned, with that epoch.
    pub(crate) fn ekb_of(&self, epoch: u64) -> Result<(u64, Arc<SignedEkb>), Error> {
        let mut epoch = epoch;
        loop {
            if let Some(ekb) = self.ekbs.get(epoch)? {
                return Ok((epoch, ekb));
            }
            if FETCHES.with(Cell::get) != Fetches::Allowed {
                FETCHES.with(|f| f.set(Fetches::Refused));
                return Err(Error::Internal(
                    "an EKB fetch where only cached EKBs may be used",
                ));
            }
            match self.one_fetch(epoch, || self.stored_or_built(epoch))? {
                Fetched::Ekb(ekb) => return Ok((epoch, ekb)),
                Fetched::Newer(newer) => epoch = newer,
            }
        }
    }

    /// The EKB of an epoch: the current one, or an earlier one from this process's cache or
    /// the registry (every epoch a license was issued in is there). Callers of one epoch wait
    /// for one read; earlier epochs are read back one at a time, so that requests for many of
    /// them hold one EKB in flight (up to 40 MB), and an epoch read back stays cached while it
    /// is asked for.
    ///
    /// # Errors
    /// [`Error::StaleEpoch`] for an epoch whose EKB was never built (a future epoch, say).
    pub fn ekb(&self, epoch: u64) -> Result<Arc<SignedEkb>, Error> {
        if let Some(ekb) = self.ekbs.get(epoch)? {
            return Ok(ekb);
        }
        let current = self.registry.epoch()?;
        if epoch == current {
            let (got, ekb) = self.ekb_of(current)?;
            if got == epoch {
                return Ok(ekb);
            }
        }
        let stale = Error::StaleEpoch {
            got: epoch,
            current,
        };
        let fetched = self.one_fetch(epoch, || {
            let _one = self
                .ekbs
                .old_reads
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            self.stored_ekb(epoch)?.map(Fetched::Ekb).ok_or(stale)
        })?;
        match fetched {
            Fetched::Ekb(ekb) => Ok(ekb),
            Fetched::Newer(_) => Err(Error::Internal("an earlier epoch's EKB moved on")),
        }
    }

    /// Runs `fetch` for `epoch`, unless a fetch of that epoch is in flight: then waits for it
    /// and takes its EKB (or, if it failed, fetches in turn).
    fn one_fetch(
        &self,
        epoch: u64,
        fetch: impl FnOnce() -> Result<Fetched, Error>,
    ) -> Result<Fetched, Error> {
        let slot = self.ekbs.slot(epoch);
        let mut done = slot.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(ekb) = done.as_ref() {
            return Ok(Fetched::Ekb(Arc::clone(ekb)));
        }
        // A fetch that ended before this one found its slot left its EKB in the cache.
        let fetched = match self.ekbs.get(epoch)? {
            Some(ekb) => Ok(Fetched::Ekb(ekb)),
            None => fetch(),
        };
        if let Ok(Fetched::Ekb(ekb)) = &fetched {
            *done = Some(Arc::clone(ekb));
        }
        self.ekbs.land(epoch, &slot);
        fetched
    }

    /// `epoch`'s EKB from the registry, or built and stored when `epoch` is still the current
    /// one; the newer epoch when it is not.
    fn stored_or_built(&self, epoch: u64) -> Result<Fetched, Error> {
        if let Some(ekb) = self.stored_ekb(epoch)? {
            return Ok(Fetched::Ekb(ekb));
        }
        // The revoked leaves of exactly this epoch: a revocation commits its leaf and the new
        // epoch together, so an epoch unchanged across the read means the set is its own.
        let (now, revoked) = loop {
            let now = self.registry.epoch()?;
            let revoked = self.registry.revoked_leaves()?;
            if self.registry.epoch()? == now {
                break (now, revoked);
            }
        };
        if now != epoch {
            return Ok(Fetched::Newer(now));
        }
        let Some(authority) = self.keys.full() else {
            // A license server of a delegated subtree: the authority publishes EKBs.
            return Err(Error::EkbNotPublished(epoch));
        };
        let revoked = RevocationSet::from_leaves(authority.config().height, revoked)?;
        self.ekbs.builds.fetch_add(1, Ordering::Relaxed);
        let started = std::time::Instant::now();
        let built = authority.build_ekb(&authority.epoch_key(epoch), &revoked, epoch)?;
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.ekbs.build_nanos.fetch_add(nanos, Ordering::Relaxed);
        let stored = self.registry.keep_ekb(epoch, built.as_bytes())?;
        if stored == built.as_bytes() {
            // Ours: built and signed here, not outside bytes.
            let ekb = Arc::new(built);
            self.cache(epoch, &ekb)?;
            return Ok(Fetched::Ekb(ekb));
        }
        // Another process stored its build first: serve that one, as every process does.
        self.cache_ekb(epoch, stored).map(Fetched::Ekb)
    }

    /// An EKB stored in the registry, verified (a stored EKB is outside bytes) and cached.
    fn stored_ekb(&self, epoch: u64) -> Result<Option<Arc<SignedEkb>>, Error> {
        let Some(bytes) = self.registry.stored_ekb(epoch)? else {
            return Ok(None);
        };
        self.ekbs.stored_reads.fetch_add(1, Ordering::Relaxed);
        self.cache_ekb(epoch, bytes).map(Some)
    }

    /// Verifies an EKB read back from the registry and caches it.
    fn cache_ekb(&self, epoch: u64, bytes: Vec<u8>) -> Result<Arc<SignedEkb>, Error> {
        let verified = VerifiedEkbBuf::verify(bytes, &self.keys.verifying_key())
            .map_err(|_| Error::Tampered("stored EKB"))?;
        if verified.header().epoch != epoch || verified.header().config != *self.keys.config() {
            return Err(Error::Tampered("stored EKB"));
        }
        let ekb = Arc::new(SignedEkb::from(verified));
        self.cache(epoch, &ekb)?;
        Ok(ekb)
    }

    fn cache(&self, epoch: u64, ekb: &Arc<SignedEkb>) -> Result<(), Error> {
        self.ekbs.insert(
            epoch,
            ekb,
            self.config.ekb_cache_epochs,
            self.config.ekb_cache_bytes,
        )
    }
}

#[cfg(test)]
mod tests;
