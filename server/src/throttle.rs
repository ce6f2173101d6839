//! Failed authentication, throttled: a token bucket of allowed failures per client address and
//! per user, in a map of bounded size.
//!
//! A request is checked against its buckets *before* its token or credential is: once a
//! bucket is empty the request is answered 429 (with `Retry-After`) and its credential is not
//! looked at. Only failures take a token; a success takes none and resets nothing, so that one
//! caller's success does not lift another's throttle.
//!
//! The throttle is a second line: tokens and credentials are 256-bit secrets, which no rate of
//! guessing finds. So when its map is full, a key it does not remember is not throttled at all
//! (fail open), rather than throttled with every other new key in a shared bucket: a shared
//! bucket let anyone with many addresses keep it empty and lock out every new address, the
//! operator's included (`docs/design.md`).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often, at most, a full map is swept for buckets that refilled.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// A bucket of allowed failures: `tokens` of at most the burst, refilled continuously.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Buckets keyed by `K`, with at most `entries` of them. Beyond that, a key that finds no room
/// (once refilled buckets were swept) is not remembered, and not throttled: the memory stays
/// bounded, and no caller can make another key share its empty bucket.
#[derive(Debug)]
struct Buckets<K> {
    /// Failures allowed at once, and per minute (the refill).
    per_minute: u32,
    entries: usize,
    state: Mutex<State<K>>,
}

#[derive(Debug)]
struct State<K> {
    map: HashMap<K, Bucket>,
    swept: Option<Instant>,
}

impl<K: Hash + Eq + Copy> Buckets<K> {
    fn new(per_minute: u32, entries: usize) -> Self {
        Self {
            per_minute,
            entries: entries.max(1),
            state: Mutex::new(State {
                map: HashMap::new(),
                swept: None,
            }),
        }
    }

    fn burst(&self) -> f64 {
        f64::from(self.per_minute)
    }

    /// Refills `b` up to `now`.
    fn refill(&self, b: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(b.updated).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.burst() / 60.0).min(self.burst());
        b.updated = now;
    }

    /// How long until `key` may fail again; `None` when it may now.
    fn wait(&self, key: K, now: Instant) -> Option<Duration> {
        if self.per_minute == 0 {
            return None;
        }
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let bucket = state.map.get_mut(&key)?;
        self.refill(bucket, now);
        if bucket.tokens >= 1.0 {
            return None;
        }
        let seconds = (1.0 - bucket.tokens) * 60.0 / self.burst();
        Some(Duration::from_secs_f64(seconds))
    }

    /// Takes a token from `key`'s bucket (a failure); a new key finds a bucket only if the map
    /// has room, once refilled buckets were swept.
    fn fail(&self, key: K, now: Instant) {
        if self.per_minute == 0 {
            return;
        }
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let state = &mut *state;
        if !state.map.contains_key(&key) && state.map.len() >= self.entries {
            self.sweep(state, now);
        }
        if !state.map.contains_key(&key) && state.map.len() >= self.entries {
            return;
        }
        let bucket = state.map.entry(key).or_insert(Bucket {
            tokens: self.burst(),
            updated: now,
        });
        self.refill(bucket, now);
        bucket.tokens = (bucket.tokens - 1.0).max(0.0);
    }

    /// Forgets the buckets that refilled (they are as a new key's), at most once a second.
    fn sweep(&self, state: &mut State<K>, now: Instant) {
        if state
            .swept
            .is_some_and(|t| now.saturating_duration_since(t) < SWEEP_EVERY)
        {
            return;
        }
        state.swept = Some(now);
        let full = self.burst();
        let minute = self.burst() / 60.0;
        state.map.retain(|_, b| {
            let elapsed = now.saturating_duration_since(b.updated).as_secs_f64();
            b.tokens + elapsed * minute < full
        });
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .map
            .len()
    }
}

/// The address a client is throttled and its connections capped by: an IPv4 address, or an
/// IPv6 address's /56. A subscriber is usually delegated a /56 (RFC 6177 suggests it for
/// homes; many ISPs do), or a /64 out of one: by /64 one subscriber counted as up to 256
/// addresses, and 16 of its /64s filled the 1024 connections. A /48 still holds 256 of them:
/// beyond that, a distributed flood is the reverse proxy's to stop (`docs/service.md`).
pub(crate) fn address_key(ip: IpAddr) -> IpAddr {
    const PREFIX: u32 = 56;
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & (u128::MAX << (128 - PREFIX))).into()),
        },
    }
}

/// Who failed: the admin token is throttled by address, a user's credential by address and by
/// user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Subject {
    /// The admin token.
    Admin,
    /// A user's credential, presented for this user.
    User(u64),
}

/// The failed-authentication throttle of a service.
#[derive(Debug)]
pub(crate) struct AuthThrottle {
    addresses: Buckets<IpAddr>,
    users: Buckets<u64>,
}

impl AuthThrottle {
    /// Allows `per_address` failures a minute from one address and `per_user` for one user
    /// (0: no limit), remembering at most `entries` addresses and `entries` users.
    pub(crate) fn new(per_address: u32, per_user: u32, entries: usize) -> Self {
        Self {
            addresses: Buckets::new(per_address, entries),
            users: Buckets::new(per_user, entries),
        }
    }

    /// How long `address` (when known) must wait before authenticating as `subject`; `None`
    /// when it may now.
    pub(crate) fn wait(&self, address: Option<IpAddr>, subject: Subject) -> Option<Duration> {
        let now = Instant::now();
        let by_address = address.and_then(|a| self.addresses.wait(address_key(a), now));
        let by_user = match subject {
            Subject::Admin => None,
            Subject::User(u) => self.users.wait(u, now),
        };
        by_address.max(by_user)
    }

    /// Records a failed authentication.
    pub(crate) fn fail(&self, address: Option<IpAddr>, subject: Subject) {
        let now = Instant::now();
        if let Some(a) = address {
            self.addresses.fail(address_key(a), now);
        }
        if let Subject::User(u) = subject {
            self.users.fail(u, now);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use super::*;

    #[test]
    fn a_bucket_refuses_after_its_burst_and_refills() {
        let b = Buckets::new(10, 100);
        let t = Instant::now();
        for _ in 0..10 {
            assert!(b.wait(1u8, t).is_none());
            b.fail(1, t);
        }
        let wait = b.wait(1, t).unwrap();
        assert!(wait <= Duration::from_secs(6) && wait > Duration::from_secs(5));
        assert!(b.wait(2, t).is_none(), "another key is not throttled");
        assert!(b.wait(1, t + Duration::from_secs(6)).is_none());
    }

    /// Review of issue 24, item 4: a full map used to put every new key in one shared bucket,
    /// which a flood of new keys kept empty. Now a new key is not throttled once the map is
    /// full, and the map stays bounded.
    #[test]
    fn the_map_stays_bounded_and_a_full_map_throttles_no_new_key() {
        let b = Buckets::new(3, 50);
        let t = Instant::now();
        for k in 0..10_000u32 {
            for _ in 0..3 {
                b.fail(k, t);
            }
        }
        assert_eq!(b.len(), 50);
        assert!(
            b.wait(0, t).is_some(),
            "a remembered key keeps its own bucket"
        );
        assert!(b.wait(99_999, t).is_none(), "a new key is not throttled");
        assert!(b.wait(9_999, t).is_none(), "nor is one that found no room");
        // A minute later everything refilled, and a sweep frees the map.
        let later = t + Duration::from_secs(61);
        b.fail(123_456, later);
        assert_eq!(b.len(), 1);
    }

    /// Review of issue 24, item 4: an attacker with more addresses than the throttle
    /// remembers, each failing, does not lock the operator out of a new address.
    #[test]
    fn a_full_map_does_not_throttle_a_new_addresss_admin() {
        let t = AuthThrottle::new(2, 2, 100);
        for i in 0..10_000u32 {
            let attacker = Some(IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i)));
            t.fail(attacker, Subject::Admin);
            t.fail(attacker, Subject::Admin);
        }
        let first = Some("10.0.0.0".parse().unwrap());
        assert!(
            t.wait(first, Subject::Admin).is_some(),
            "a remembered attacker"
        );
        let admin = Some("192.0.2.1".parse().unwrap());
        assert!(t.wait(admin, Subject::Admin).is_none());
    }

    #[test]
    fn ipv6_addresses_are_grouped_by_their_56_prefix() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:bb:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:300::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        assert_eq!(address_key(a), "2001:db8:1::".parse::<IpAddr>().unwrap());
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(address_key(mapped), "10.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn the_admin_is_throttled_by_address_only() {
        let t = AuthThrottle::new(2, 2, 10);
        let one = Some("10.0.0.1".parse().unwrap());
        let two = Some("10.0.0.2".parse().unwrap());
        t.fail(one, Subject::Admin);
        t.fail(one, Subject::Admin);
        assert!(t.wait(one, Subject::Admin).is_some());
        assert!(t.wait(two, Subject::Admin).is_none());
        t.fail(two, Subject::User(5));
        t.fail(None, Subject::User(5));
        assert!(t.wait(None, Subject::User(5)).is_some());
        assert!(t.wait(None, Subject::User(6)).is_none());
    }
}
