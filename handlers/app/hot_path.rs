//! What a service request costs before its usage write: the verified
//! service keys and the accounts it names are kept a few seconds in
//! memory, and unnamed API calls are admitted from this instance's quota
//! leases (`domain::lease`), so most calls touch no store at all.
//!
//! Bounds: a revoked service key is refused within `CREDENTIAL_TTL`, a
//! plan change binds service routes within `ACCOUNT_TTL`; a refusal at the
//! limit is remembered (by the limit it met, so an override or upgrade
//! binds at once) for `REFUSAL_TTL` while quota is held that may come back,
//! else for `REFUSAL_IDLE_TTL` (only an operator's credit frees quota
//! then), so a refused call costs no more than an admitted one.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use tokio::sync::Mutex as Flight;

use crate::domain::account::AccountId;
use crate::domain::lease::{
    next_target, LeaseOutcome, LeaseRequest, LeaseReturn, Spending, LEASE_MARGIN,
};
use crate::domain::plan::Limit;
use crate::domain::ports::{StoreError, UsageStore};
use crate::domain::quota::OperationId;
use crate::domain::usage::UsageKey;

/// How long a verified service key is trusted without reading it again:
/// a revocation takes effect within this.
pub const CREDENTIAL_TTL: Duration = Duration::seconds(5);
/// How long a service route reuses the account it read: a plan change
/// binds within this.
pub const ACCOUNT_TTL: Duration = Duration::seconds(5);
/// How long a refusal is remembered while quota is held that may come
/// back (another instance's lease, a reservation).
pub const REFUSAL_TTL: Duration = Duration::seconds(1);
/// How long a refusal is remembered when nothing is held: only a credit
/// (`POST /api/admin/accounts/{id}/credits`) frees quota then, and it binds
/// every instance within this.
pub const REFUSAL_IDLE_TTL: Duration = Duration::seconds(60);
/// The most entries a cache keeps: past it, the expired ones go, and if
/// none had, all of them (a burst of strangers costs reads, not memory).
const MAX_ENTRIES: usize = 10_000;

/// A small map whose entries are trusted for `ttl` by the service's clock.
pub struct TtlCache<K, V> {
    ttl: Duration,
    entries: Mutex<HashMap<K, (V, DateTime<Utc>)>>,
}

impl<K: Eq + Hash, V: Clone> TtlCache<K, V> {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<K, (V, DateTime<Utc>)>> {
        // A panic while holding it left a map, not a broken invariant.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, key: &K, now: DateTime<Utc>) -> Option<V> {
        let entries = self.entries();
        let (value, at) = entries.get(key)?;
        (now >= *at && now < *at + self.ttl).then(|| value.clone())
    }

    /// Keeps `value`, read at `now`, unless what the cache holds was put
    /// later (a write this instance made while the read was under way):
    /// an older read never replaces a newer copy.
    pub fn put(&self, key: K, value: V, now: DateTime<Utc>) {
        let mut entries = self.entries();
        if entries.get(&key).is_some_and(|(_, at)| *at > now) {
            return;
        }
        if entries.len() >= MAX_ENTRIES {
            let ttl = self.ttl;
            entries.retain(|_, (_, at)| now < *at + ttl);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(key, (value, now));
    }
}

/// What admitting an unnamed API call answered: the counter as this
/// instance knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admitted { used: u64, held: u64 },
    Refused { used: u64, held: u64 },
}

/// A refusal remembered: any call of more than `left` under `limit` is
/// refused until `until`.
#[derive(Debug, Clone, Copy)]
struct Refusal {
    limit: Limit,
    left: i64,
    until: DateTime<Utc>,
    used: u64,
    held: u64,
}

/// One counter's lease on this instance.
#[derive(Default)]
struct Slot {
    spending: Option<Spending>,
    /// The last lease's quantity and what it admitted: the next one's size.
    last: Option<(i64, i64)>,
    refusal: Option<Refusal>,
}

type SlotKey = (AccountId, Option<DateTime<Utc>>);

/// This instance's leases, one per account and window.
#[derive(Default)]
pub struct Leases {
    /// A slot is locked while its lease is taken, so one request takes it
    /// and the others admit from it.
    slots: Mutex<HashMap<SlotKey, Arc<Flight<Slot>>>>,
}

impl Leases {
    fn slot(&self, account: AccountId, key: &UsageKey) -> Arc<Flight<Slot>> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots
            .entry((account, key.window.map(|w| w.start)))
            .or_default()
            .clone()
    }

    /// Admits `amount` calls from this instance's lease, taking a new one
    /// (and giving the last back in the same write) when it is spent.
    pub async fn admit(
        &self,
        store: &dyn UsageStore,
        account: AccountId,
        key: UsageKey,
        amount: i64,
        limit: Limit,
        now: DateTime<Utc>,
    ) -> Result<Admission, StoreError> {
        let slot = self.slot(account, &key);
        let mut slot = slot.lock().await;
        if let Some(r) = slot.refusal {
            if r.limit == limit && now < r.until && amount > r.left {
                return Ok(Admission::Refused {
                    used: r.used,
                    held: r.held,
                });
            }
        }
        if let Some(spending) = slot.spending.as_mut() {
            if spending.admit(amount, now) {
                let (used, held) = spending.level();
                return Ok(Admission::Admitted { used, held });
            }
        }
        let last = slot.spending;
        let request = LeaseRequest {
            id: OperationId(uuid::Uuid::new_v4()),
            account_id: account,
            key,
            limit,
            wanted: amount,
            target: next_target(last.map(|s| (s.lease.quantity, s.admitted)).or(slot.last)),
            at: now,
            returning: last.map(|s| LeaseReturn {
                id: s.lease.id,
                admitted: s.admitted,
            }),
        };
        // On an error the last lease stays to be given back again: if
        // this write landed after all, its hold is gone and it counts once.
        // It admits nothing more, though: calls admitted from a hold that
        // is gone would be counted by no one.
        let outcome = match store.take_lease(&request).await {
            Ok(outcome) => outcome,
            Err(e) => {
                if let Some(s) = slot.spending.as_mut() {
                    s.lease.quantity = s.admitted;
                }
                return Err(e);
            }
        };
        if let Some(s) = slot.spending.take() {
            slot.last = Some((s.lease.quantity, s.admitted));
        }
        match outcome {
            LeaseOutcome::Granted { lease, used, held } => {
                let mut spending = Spending::new(lease, used, held);
                let admitted = spending.admit(amount, now);
                slot.spending = Some(spending);
                slot.refusal = None;
                let (used, held) = spending.level();
                Ok(if admitted {
                    Admission::Admitted { used, held }
                } else {
                    Admission::Refused { used, held }
                })
            }
            LeaseOutcome::Denied { used, held } => {
                let left = limit.map_or(i64::MAX, |l| {
                    i64::try_from(l.saturating_sub(used.saturating_add(held))).unwrap_or(i64::MAX)
                });
                // With nothing held, only an operator's credit frees quota
                // before the window ends (a new limit keys a new memory).
                let until = match (held, key.window) {
                    (0, Some(w)) => w.end.min(now + REFUSAL_IDLE_TTL),
                    _ => now + REFUSAL_TTL,
                };
                slot.refusal = Some(Refusal {
                    limit,
                    left,
                    until,
                    used,
                    held,
                });
                Ok(Admission::Refused { used, held })
            }
        }
    }

    /// Gives back the leases that stop admitting by `now + LEASE_MARGIN /
    /// 2` (all of them when `all`, at shutdown): their calls are recorded
    /// before the hold lapses. Forgets counters with nothing left to say.
    pub async fn give_back(&self, store: &dyn UsageStore, now: DateTime<Utc>, all: bool) {
        let slots: Vec<(SlotKey, Arc<Flight<Slot>>)> = {
            let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots.iter().map(|(k, v)| (*k, v.clone())).collect()
        };
        let soon = now + LEASE_MARGIN / 2;
        for ((account, _), slot) in slots {
            let mut slot = slot.lock().await;
            let Some(s) = slot.spending else {
                continue;
            };
            if !all && s.lease.admits_until() > soon {
                continue;
            }
            let ret = LeaseReturn {
                id: s.lease.id,
                admitted: s.admitted,
            };
            match store.return_lease(account, &s.lease.key, &ret, now).await {
                Ok(_) => {
                    slot.spending = None;
                    slot.last = Some((s.lease.quantity, s.admitted));
                }
                Err(e) => {
                    tracing::warn!(account_id = %account, error = %e, "quota lease not given back; it lapses by itself")
                }
            }
        }
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        // Only slots no request holds (clones are made under this lock):
        // a lease taken into a forgotten slot would never be given back.
        slots.retain(|_, slot| {
            Arc::strong_count(slot) > 1
                || match slot.try_lock() {
                    Ok(s) => s.spending.is_some() || s.refusal.is_some_and(|r| now < r.until),
                    Err(_) => true,
                }
        });
    }
}
