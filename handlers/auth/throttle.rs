//! Sign-in throttling, so that signing in cannot be used to take the
//! service down or to guess passwords: rate limits per client address and
//! per account (governor's GCRA, keyed), and the back-off after failed
//! sign-ins for one email (`domain::throttle::Backoff`).
//!
//! All of it is in this instance's memory: limits are per instance, and a
//! scale-out multiplies them. Memory stays bounded: the limiters forget
//! idle keys when `sweep` runs (each minute, from the composition root);
//! past `max_keys` live keys a limiter stops adding keys and every caller
//! shares one budget (a key's quota) until the sweep makes room; the
//! failure records are capped at `max_keys` too, dropping the one whose
//! wait ends first when full. Emails are held only as salted SHA-256
//! hashes (the salt is random per process): memory holds no addresses.
//! Both rate limits and the back-off run on the service's clock, so tests
//! move time instead of sleeping.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{NotUntil, Quota, RateLimiter};
use sha2::{Digest, Sha256};

use crate::domain::clock::Clock;
use crate::domain::throttle::{Backoff, Failures};

/// A rate: so many a minute, with bursts of up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_minute: NonZeroU32,
    pub burst: NonZeroU32,
}

impl Rate {
    pub fn new(per_minute: u32, burst: u32) -> Option<Self> {
        Some(Self {
            per_minute: NonZeroU32::new(per_minute)?,
            burst: NonZeroU32::new(burst)?,
        })
    }

    fn quota(self) -> Quota {
        Quota::per_minute(self.per_minute).allow_burst(self.burst)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleSettings {
    /// Sign-in requests (login, registration, invitation acceptance) per client address.
    pub per_address: Rate,
    /// Attempts per account: per email for login and registration, per
    /// invited account for acceptance.
    pub per_account: Rate,
    pub backoff: Backoff,
    /// Live keys a limiter (and the failure records) may hold.
    pub max_keys: usize,
}

impl ThrottleSettings {
    /// Live keys per limiter before callers share one budget: 100k keys is
    /// a few MiB.
    pub const MAX_KEYS: usize = 100_000;
}

/// Refused for now: waiting this many whole seconds may let it through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many attempts; retry in {retry_after_seconds} s")]
pub struct Limited {
    pub retry_after_seconds: u64,
}

impl Limited {
    fn after(wait: Duration) -> Self {
        // Whole seconds, rounded up, and never 0: a retry at once would fail.
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Self {
            retry_after_seconds: secs.max(1),
        }
    }
}

/// What an account key is for: the same email has one budget for login
/// and another for registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Login,
    Registration,
    Acceptance,
    /// Following, or asking for, an email verification link.
    Verification,
}

/// An account as the throttle knows it: a salted hash, never the email.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AccountKey([u8; 32]);

/// The service's clock as governor reads it: time since the Unix epoch.
#[derive(Clone)]
struct ServiceClock(Arc<dyn Clock>);

impl governor::clock::Clock for ServiceClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        (self.0.now() - DateTime::<Utc>::UNIX_EPOCH)
            .to_std()
            .unwrap_or_default()
    }
}

type KeyedLimiter<K> = RateLimiter<K, DashMapStateStore<K>, ServiceClock, NoOpMiddleware<Duration>>;
type DirectLimiter = RateLimiter<NotKeyed, InMemoryState, ServiceClock, NoOpMiddleware<Duration>>;

/// A keyed limiter whose keys are capped: past `max_keys`, every caller
/// draws on `overflow`, one key's budget shared by all.
struct Keyed<K: Hash + Eq + Clone> {
    limiter: KeyedLimiter<K>,
    overflow: DirectLimiter,
    max_keys: usize,
    clock: ServiceClock,
}

impl<K: Hash + Eq + Clone> Keyed<K> {
    fn new(rate: Rate, max_keys: usize, clock: &ServiceClock) -> Self {
        Self {
            limiter: RateLimiter::dashmap_with_clock(rate.quota(), clock.clone()),
            overflow: RateLimiter::direct_with_clock(rate.quota(), clock.clone()),
            max_keys,
            clock: clock.clone(),
        }
    }

    fn check(&self, key: &K) -> Result<(), Limited> {
        let outcome = if self.limiter.len() >= self.max_keys {
            self.overflow.check()
        } else {
            self.limiter.check_key(key)
        };
        outcome.map_err(|n: NotUntil<Duration>| {
            Limited::after(n.wait_time_from(governor::clock::Clock::now(&self.clock)))
        })
    }

    fn sweep(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

pub struct Throttle {
    by_address: Keyed<IpAddr>,
    by_account: Keyed<AccountKey>,
    failures: Mutex<HashMap<AccountKey, Failures>>,
    backoff: Backoff,
    max_keys: usize,
    salt: [u8; 32],
    clock: Arc<dyn Clock>,
}

impl Throttle {
    pub fn new(settings: &ThrottleSettings, clock: Arc<dyn Clock>) -> Self {
        let governed = ServiceClock(clock.clone());
        let max_keys = settings.max_keys.max(1);
        Self {
            by_address: Keyed::new(settings.per_address, max_keys, &governed),
            by_account: Keyed::new(settings.per_account, max_keys, &governed),
            failures: Mutex::new(HashMap::new()),
            backoff: settings.backoff,
            max_keys,
            salt: rand::random(),
            clock,
        }
    }

    /// The key of an email as typed: trimmed and lowercased, so case and
    /// spaces do not make a fresh budget; unparsable text is keyed the same way.
    pub fn email_key(&self, purpose: Purpose, email: &str) -> AccountKey {
        self.key(purpose, email.trim().to_lowercase().as_bytes())
    }

    /// The key of an account by its id.
    pub fn id_key(&self, purpose: Purpose, id: &[u8]) -> AccountKey {
        self.key(purpose, id)
    }

    fn key(&self, purpose: Purpose, value: &[u8]) -> AccountKey {
        let tag: &[u8] = match purpose {
            Purpose::Login => b"login",
            Purpose::Registration => b"registration",
            Purpose::Acceptance => b"acceptance",
            Purpose::Verification => b"verification",
        };
        let mut h = Sha256::new();
        h.update(self.salt);
        h.update(tag);
        h.update([0]);
        h.update(value);
        AccountKey(h.finalize().into())
    }

    /// One sign-in request from a client address. IPv6 addresses count by
    /// their /64, the block one subscriber gets.
    pub fn admit_address(&self, address: IpAddr) -> Result<(), Limited> {
        self.by_address.check(&address_key(address))
    }

    /// One attempt on an account.
    pub fn admit_account(&self, key: &AccountKey) -> Result<(), Limited> {
        self.by_account.check(key)
    }

    /// Whether a login for this email may go ahead: its rate, then the
    /// back-off its failures impose. Checked before the store and the hash.
    pub fn admit_login(&self, key: &AccountKey) -> Result<(), Limited> {
        self.admit_account(key)?;
        let now = self.clock.now();
        let failures = self.failures.lock().expect("throttle lock");
        match self.backoff.refusal(failures.get(key), now) {
            Some(wait) => Err(Limited::after(wait.to_std().unwrap_or_default())),
            None => Ok(()),
        }
    }

    /// A login for this email failed (wrong password or no such user alike).
    pub fn login_failed(&self, key: &AccountKey) {
        let now = self.clock.now();
        let mut failures = self.failures.lock().expect("throttle lock");
        if !failures.contains_key(key) && failures.len() >= self.max_keys {
            failures.retain(|_, f| !self.backoff.forgotten(f, now));
            if failures.len() >= self.max_keys {
                // Drop the record whose wait ends first: the least protection lost.
                let first = failures
                    .iter()
                    .min_by_key(|(_, f)| self.backoff.blocked_until(f).unwrap_or(f.last))
                    .map(|(k, _)| *k);
                if let Some(k) = first {
                    failures.remove(&k);
                }
            }
        }
        let before = failures.get(key).copied();
        failures.insert(*key, self.backoff.failed(before, now));
    }

    /// A login for this email succeeded: its failures are forgotten.
    pub fn login_succeeded(&self, key: &AccountKey) {
        self.failures.lock().expect("throttle lock").remove(key);
    }

    /// Forgets what no longer limits anyone and returns the memory.
    pub fn sweep(&self) {
        self.by_address.sweep();
        self.by_account.sweep();
        let now = self.clock.now();
        let mut failures = self.failures.lock().expect("throttle lock");
        failures.retain(|_, f| !self.backoff.forgotten(f, now));
        failures.shrink_to_fit();
    }

    /// Live keys: (addresses, accounts, failure records).
    pub fn sizes(&self) -> (usize, usize, usize) {
        (
            self.by_address.limiter.len(),
            self.by_account.limiter.len(),
            self.failures.lock().expect("throttle lock").len(),
        )
    }
}

/// The key of a client address: IPv4 as it is (also when mapped into
/// IPv6), IPv6 by its /64.
fn address_key(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::clock::ManualClock;

    fn settings(max_keys: usize) -> ThrottleSettings {
        ThrottleSettings {
            per_address: Rate::new(60, 2).unwrap(),
            per_account: Rate::new(60, 3).unwrap(),
            backoff: Backoff::standard(),
            max_keys,
        }
    }

    fn at(clock: &ManualClock, ms: i64) {
        let t0 = DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z").unwrap();
        clock.set(t0.with_timezone(&Utc) + chrono::Duration::milliseconds(ms));
    }

    fn throttle(max_keys: usize) -> (Throttle, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(Utc::now()));
        at(&clock, 0);
        (Throttle::new(&settings(max_keys), clock.clone()), clock)
    }

    #[test]
    fn a_burst_then_one_a_second_with_the_wait_rounded_up() {
        let (t, clock) = throttle(100);
        let a: IpAddr = "203.0.113.7".parse().unwrap();
        assert_eq!(t.admit_address(a), Ok(()));
        assert_eq!(t.admit_address(a), Ok(()));
        assert_eq!(
            t.admit_address(a),
            Err(Limited {
                retry_after_seconds: 1
            })
        );
        assert_eq!(t.admit_address("203.0.113.8".parse().unwrap()), Ok(()));
        at(&clock, 400);
        assert_eq!(
            t.admit_address(a),
            Err(Limited {
                retry_after_seconds: 1
            }),
            "0.6 s is rounded up"
        );
        at(&clock, 1000);
        assert_eq!(t.admit_address(a), Ok(()));
    }

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        let (t, _) = throttle(100);
        t.admit_address("2001:db8:1:2::1".parse().unwrap()).unwrap();
        t.admit_address("2001:db8:1:2:ffff::9".parse().unwrap())
            .unwrap();
        assert!(t.admit_address("2001:db8:1:2::3".parse().unwrap()).is_err());
        assert!(t.admit_address("2001:db8:1:3::1".parse().unwrap()).is_ok());
        t.admit_address("198.51.100.1".parse().unwrap()).unwrap();
        t.admit_address("::ffff:198.51.100.1".parse().unwrap())
            .unwrap();
        assert!(t.admit_address("198.51.100.1".parse().unwrap()).is_err());
    }

    #[test]
    fn emails_are_keyed_normalised_salted_and_per_purpose() {
        let (t, _) = throttle(100);
        let k = t.email_key(Purpose::Login, " Ada@Example.com ");
        assert_eq!(k, t.email_key(Purpose::Login, "ada@example.com"));
        assert_ne!(k, t.email_key(Purpose::Registration, "ada@example.com"));
        let (other, _) = throttle(100);
        assert_ne!(k, other.email_key(Purpose::Login, "ada@example.com"));
    }

    #[test]
    fn past_the_key_cap_everyone_shares_one_budget_until_the_sweep() {
        let (t, clock) = throttle(3);
        for n in 1..=3u8 {
            t.admit_address(IpAddr::from([192, 0, 2, n])).unwrap();
        }
        assert_eq!(t.sizes().0, 3);
        // Full: a new address draws on the shared budget (burst 2).
        t.admit_address(IpAddr::from([192, 0, 2, 10])).unwrap();
        t.admit_address(IpAddr::from([192, 0, 2, 11])).unwrap();
        assert!(t.admit_address(IpAddr::from([192, 0, 2, 12])).is_err());
        assert_eq!(t.sizes().0, 3, "no key was added past the cap");
        at(&clock, 60_000);
        t.sweep();
        assert_eq!(t.sizes().0, 0, "idle keys are forgotten");
        t.admit_address(IpAddr::from([192, 0, 2, 12])).unwrap();
    }

    #[test]
    fn failures_back_off_and_success_resets() {
        let (t, clock) = throttle(100);
        let k = t.email_key(Purpose::Login, "ada@example.com");
        let mut ms = 0;
        for _ in 0..5 {
            t.admit_login(&k).unwrap();
            t.login_failed(&k);
            ms += 1000; // stay within the per-account rate
            at(&clock, ms);
        }
        // The fifth failure was a second ago: its 1 s wait is over.
        t.admit_login(&k).unwrap();
        t.login_failed(&k);
        assert_eq!(
            t.admit_login(&k),
            Err(Limited {
                retry_after_seconds: 2
            })
        );
        at(&clock, ms + 2000);
        t.admit_login(&k).unwrap();
        t.login_succeeded(&k);
        t.login_failed(&k);
        at(&clock, ms + 3000);
        assert_eq!(t.admit_login(&k), Ok(()), "a success starts over");
    }

    #[test]
    fn failure_records_stay_within_the_cap() {
        let (t, clock) = throttle(2);
        let keys: Vec<AccountKey> = (0..3)
            .map(|n| t.email_key(Purpose::Login, &format!("u{n}@example.com")))
            .collect();
        for _ in 0..5 {
            t.login_failed(&keys[0]);
        }
        at(&clock, 10);
        t.login_failed(&keys[1]);
        t.login_failed(&keys[2]);
        assert_eq!(t.sizes().2, 2);
        assert!(
            t.admit_login(&keys[0]).is_err(),
            "the record that still blocks is kept"
        );
        at(&clock, 2 * 3600 * 1000);
        t.sweep();
        assert_eq!(t.sizes().2, 0);
    }
}
