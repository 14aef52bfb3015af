//! Sign-in throttling, so that signing in cannot be used to take the
//! service down or to guess passwords: rate limits per client address and
//! per account (governor's GCRA, keyed), and the back-off after failed
//! logins (`domain::throttle::Backoff`) for one email from one client
//! address, plus one for the email from everywhere at `EMAIL_WIDE` times
//! the threshold: a guesser elsewhere does not lock the owner out, and
//! one with many addresses still backs off.
//!
//! All of it is in this instance's memory: limits are per instance, and a
//! scale-out multiplies them. Memory stays bounded: the limiters forget
//! idle keys when `sweep` runs (each minute, from the composition root);
//! past `max_keys` live keys a limiter stops adding keys: keys it holds
//! keep their own budgets, and new ones share one (a key's quota) until the
//! sweep makes room; the failure records (of each kind) are capped at
//! `max_keys` too, dropping the one whose wait ends first when full. Emails are held only as salted SHA-256
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
use governor::nanos::Nanos;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::state::{InMemoryState, NotKeyed, StateStore};
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
    /// accepting user for acceptance.
    pub per_account: Rate,
    pub backoff: Backoff,
    /// Live keys a limiter (and the failure records) may hold.
    pub max_keys: usize,
}

impl ThrottleSettings {
    /// Live keys per limiter before new keys share one budget: 100k keys is
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
    /// A login's email from one client address, for its back-off.
    LoginFrom,
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

/// The state of a keyed limiter, capped in keys: a key already held keeps
/// its own state whatever the count; past `max_keys`, only keys not held
/// yet draw on `overflow`, one key's budget shared by all of them. So a
/// flood of new keys (many addresses, junk emails) can exhaust only the
/// budget of new keys, never that of the ones already tracked.
struct CappedStore<K: Hash + Eq + Clone> {
    keys: DashMapStateStore<K>,
    overflow: InMemoryState,
    max_keys: usize,
}

impl<K: Hash + Eq + Clone> StateStore for CappedStore<K> {
    type Key = K;

    fn measure_and_replace<T, F, E>(&self, key: &K, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        // Racing inserts may pass the cap by a few keys: bounded all the same.
        if self.keys.len() >= self.max_keys && !self.keys.contains_key(key) {
            self.overflow.measure_and_replace(&NotKeyed::NonKey, f)
        } else {
            self.keys.measure_and_replace(key, f)
        }
    }
}

impl<K: Hash + Eq + Clone> ShrinkableKeyedStateStore<K> for CappedStore<K> {
    fn retain_recent(&self, drop_below: Nanos) {
        ShrinkableKeyedStateStore::retain_recent(&self.keys, drop_below);
    }

    fn shrink_to_fit(&self) {
        ShrinkableKeyedStateStore::shrink_to_fit(&self.keys);
    }

    fn len(&self) -> usize {
        self.keys.len()
    }

    fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

type KeyedLimiter<K> = RateLimiter<K, CappedStore<K>, ServiceClock, NoOpMiddleware<Duration>>;

/// A keyed limiter whose keys are capped (see `CappedStore`).
struct Keyed<K: Hash + Eq + Clone> {
    limiter: KeyedLimiter<K>,
    clock: ServiceClock,
}

impl<K: Hash + Eq + Clone> Keyed<K> {
    fn new(rate: Rate, max_keys: usize, clock: &ServiceClock) -> Self {
        let store = CappedStore {
            keys: DashMapStateStore::default(),
            overflow: InMemoryState::default(),
            max_keys,
        };
        Self {
            limiter: RateLimiter::new(rate.quota(), store, clock.clone()),
            clock: clock.clone(),
        }
    }

    fn check(&self, key: &K) -> Result<(), Limited> {
        self.limiter
            .check_key(key)
            .map_err(|n: NotUntil<Duration>| {
                Limited::after(n.wait_time_from(governor::clock::Clock::now(&self.clock)))
            })
    }

    fn sweep(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

/// How many times as many failures an email may have from everywhere as
/// from one address before every login for it backs off.
pub const EMAIL_WIDE: u32 = 10;

/// The keys of one login: the email, and the email from one client address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginKeys {
    pub email: AccountKey,
    pub pair: AccountKey,
}

/// Failed logins: per (email, client address), and per email.
#[derive(Default)]
struct FailureRecords {
    from: HashMap<AccountKey, Failures>,
    wide: HashMap<AccountKey, Failures>,
}

/// How many times the per-address budget an IPv6 /48 has, all its /64s
/// together: a site commonly gets a /48, so one holder of many /64s does
/// not get a fresh budget with each.
pub const PER_48: u32 = 16;

pub struct Throttle {
    by_address: Keyed<IpAddr>,
    by_block: Keyed<IpAddr>,
    by_account: Keyed<AccountKey>,
    failures: Mutex<FailureRecords>,
    backoff: Backoff,
    /// The back-off for an email's failures from everywhere.
    email_wide: Backoff,
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
            by_block: Keyed::new(
                Rate {
                    per_minute: settings
                        .per_address
                        .per_minute
                        .saturating_mul(NonZeroU32::new(PER_48).expect("PER_48 is not 0")),
                    burst: settings
                        .per_address
                        .burst
                        .saturating_mul(NonZeroU32::new(PER_48).expect("PER_48 is not 0")),
                },
                max_keys,
                &governed,
            ),
            by_account: Keyed::new(settings.per_account, max_keys, &governed),
            failures: Mutex::default(),
            backoff: settings.backoff,
            email_wide: Backoff {
                free_failures: settings.backoff.free_failures.saturating_mul(EMAIL_WIDE),
                ..settings.backoff
            },
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
            Purpose::LoginFrom => b"login from",
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
    /// their /64, the block one subscriber gets, and by their /48 too, at
    /// `PER_48` times the budget.
    pub fn admit_address(&self, address: IpAddr) -> Result<(), Limited> {
        self.by_address.check(&address_key(address))?;
        match address.to_canonical() {
            IpAddr::V6(v6) => {
                let s = v6.segments();
                let block = Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0);
                self.by_block.check(&IpAddr::V6(block))
            }
            IpAddr::V4(_) => Ok(()),
        }
    }

    /// One attempt on an account.
    pub fn admit_account(&self, key: &AccountKey) -> Result<(), Limited> {
        self.by_account.check(key)
    }

    /// The keys of a login for `email` from `address`.
    pub fn login_keys(&self, email: &str, address: IpAddr) -> LoginKeys {
        let email = email.trim().to_lowercase();
        let mut pair = email.clone().into_bytes();
        pair.push(0);
        pair.extend_from_slice(address_key(address).to_string().as_bytes());
        LoginKeys {
            email: self.key(Purpose::Login, email.as_bytes()),
            pair: self.key(Purpose::LoginFrom, &pair),
        }
    }

    /// Whether a login may go ahead: the email's rate, then the back-off
    /// of its failures from this address, then that of its failures from
    /// everywhere (`EMAIL_WIDE` times as many free). Checked before the
    /// store and the hash. Failures from other addresses do not hold this
    /// one back until they are that many.
    pub fn admit_login(&self, keys: &LoginKeys) -> Result<(), Limited> {
        self.admit_account(&keys.email)?;
        let now = self.clock.now();
        let failures = self.failures.lock().expect("throttle lock");
        let here = self.backoff.refusal(failures.from.get(&keys.pair), now);
        let everywhere = self.email_wide.refusal(failures.wide.get(&keys.email), now);
        match here.max(everywhere) {
            Some(wait) => Err(Limited::after(wait.to_std().unwrap_or_default())),
            None => Ok(()),
        }
    }

    /// A login failed (wrong password or no such user alike).
    pub fn login_failed(&self, keys: &LoginKeys) {
        let now = self.clock.now();
        let mut failures = self.failures.lock().expect("throttle lock");
        let records = &mut *failures;
        record(
            &mut records.from,
            &self.backoff,
            keys.pair,
            self.max_keys,
            now,
        );
        record(
            &mut records.wide,
            &self.email_wide,
            keys.email,
            self.max_keys,
            now,
        );
    }

    /// A login succeeded: its failures from this address are forgotten.
    /// The email-wide record is not: it decays on its own, so a success
    /// does not restart a distributed guesser's count.
    pub fn login_succeeded(&self, keys: &LoginKeys) {
        self.failures
            .lock()
            .expect("throttle lock")
            .from
            .remove(&keys.pair);
    }

    /// Forgets what no longer limits anyone and returns the memory.
    pub fn sweep(&self) {
        self.by_address.sweep();
        self.by_block.sweep();
        self.by_account.sweep();
        let now = self.clock.now();
        let mut failures = self.failures.lock().expect("throttle lock");
        failures.from.retain(|_, f| !self.backoff.forgotten(f, now));
        failures.from.shrink_to_fit();
        failures
            .wide
            .retain(|_, f| !self.email_wide.forgotten(f, now));
        failures.wide.shrink_to_fit();
    }

    /// Live keys: (addresses, accounts, failure records of both kinds).
    pub fn sizes(&self) -> (usize, usize, usize) {
        let failures = self.failures.lock().expect("throttle lock");
        (
            self.by_address.limiter.len(),
            self.by_account.limiter.len(),
            failures.from.len() + failures.wide.len(),
        )
    }
}

/// One more failure for `key` under `rule`, the records capped at `max_keys`.
/// When full: forgets what is forgotten, else the record whose wait ends
/// first (the least protection lost). That scans up to `max_keys` records
/// under the lock, but only when full, and a scan frees every forgotten
/// record at once; the sweep each minute keeps it rare.
fn record(
    records: &mut HashMap<AccountKey, Failures>,
    rule: &Backoff,
    key: AccountKey,
    max_keys: usize,
    now: DateTime<Utc>,
) {
    if !records.contains_key(&key) && records.len() >= max_keys {
        records.retain(|_, f| !rule.forgotten(f, now));
        if records.len() >= max_keys {
            let first = records
                .iter()
                .min_by_key(|(_, f)| rule.blocked_until(f).unwrap_or(f.last))
                .map(|(k, _)| *k);
            if let Some(k) = first {
                records.remove(&k);
            }
        }
    }
    let before = records.get(&key).copied();
    records.insert(key, rule.failed(before, now));
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
    fn the_64s_of_one_48_share_a_larger_budget() {
        let (t, _) = throttle(1000);
        // Burst 2 per /64, 32 per /48.
        for n in 0..16u16 {
            let a = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 7, n, 0, 0, 0, 1));
            t.admit_address(a).unwrap();
            t.admit_address(a).unwrap();
        }
        let same_48 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 7, 99, 0, 0, 0, 1));
        assert!(t.admit_address(same_48).is_err());
        let other_48 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 8, 99, 0, 0, 0, 1));
        assert_eq!(t.admit_address(other_48), Ok(()));
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
    fn past_the_key_cap_only_new_keys_share_one_budget_until_the_sweep() {
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
        // An address already tracked keeps its own budget (one left).
        t.admit_address(IpAddr::from([192, 0, 2, 1])).unwrap();
        assert!(t.admit_address(IpAddr::from([192, 0, 2, 1])).is_err());
        at(&clock, 60_000);
        t.sweep();
        assert_eq!(t.sizes().0, 0, "idle keys are forgotten");
        t.admit_address(IpAddr::from([192, 0, 2, 12])).unwrap();
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn failures_back_off_and_success_resets() {
        let (t, clock) = throttle(100);
        let k = t.login_keys("ada@example.com", ip("192.0.2.1"));
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
    fn failures_from_one_address_do_not_hold_back_another_until_ten_times_as_many() {
        let clock = Arc::new(ManualClock::new(Utc::now()));
        at(&clock, 0);
        let roomy = ThrottleSettings {
            per_account: Rate::new(600, 100).unwrap(),
            ..settings(1000)
        };
        let t = Throttle::new(&roomy, clock.clone());
        let attacker = t.login_keys(" ADA@example.com", ip("2001:db8:1:2::1"));
        let victim = t.login_keys("ada@example.com", ip("192.0.2.1"));
        assert_eq!(attacker.email, victim.email);
        assert_ne!(attacker.pair, victim.pair);
        let mut ms = 0;
        for _ in 0..6 {
            t.login_failed(&attacker);
        }
        assert!(t.admit_login(&attacker).is_err(), "the guesser backs off");
        assert_eq!(t.admit_login(&victim), Ok(()), "the owner does not");
        // The same /64 is the same address.
        assert!(t
            .admit_login(&t.login_keys("ada@example.com", ip("2001:db8:1:2::9")))
            .is_err());
        // Failures from many addresses: past 10 x 5 everyone waits.
        for n in 0..43u8 {
            ms += 10;
            at(&clock, ms);
            t.login_failed(&t.login_keys("ada@example.com", IpAddr::from([198, 51, 100, n])));
        }
        assert_eq!(t.admit_login(&victim), Ok(()), "49 failures in all");
        t.login_failed(&t.login_keys("ada@example.com", ip("203.0.113.1")));
        assert_eq!(
            t.admit_login(&victim),
            Err(Limited {
                retry_after_seconds: 1
            }),
            "the fiftieth backs off every address"
        );
        // A success from one address does not reset the email-wide count.
        at(&clock, ms + 1000);
        t.login_succeeded(&victim);
        t.login_failed(&t.login_keys("ada@example.com", ip("203.0.113.2")));
        assert!(t.admit_login(&victim).is_err());
        let other = t.login_keys("grace@example.com", ip("2001:db8:1:2::1"));
        assert_eq!(
            t.admit_login(&other),
            Ok(()),
            "another email is not held back"
        );
    }

    #[test]
    fn failure_records_stay_within_the_cap() {
        let (t, clock) = throttle(2);
        let keys: Vec<LoginKeys> = (0..3)
            .map(|n| t.login_keys(&format!("u{n}@example.com"), ip("192.0.2.1")))
            .collect();
        for _ in 0..5 {
            t.login_failed(&keys[0]);
        }
        at(&clock, 10);
        t.login_failed(&keys[1]);
        t.login_failed(&keys[2]);
        assert_eq!(t.sizes().2, 4, "two of each kind");
        assert!(
            t.admit_login(&keys[0]).is_err(),
            "the record that still blocks is kept"
        );
        at(&clock, 2 * 3600 * 1000);
        t.sweep();
        assert_eq!(t.sizes().2, 0);
    }
}
