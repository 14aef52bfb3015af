//! Quota leases: how an instance admits unnamed API calls without a store
//! write per call and still never admits more than the limit.
//!
//! An instance takes a *lease*, a block of what is left of a counter's
//! limit, in one conditional write that puts it on the counter as a hold
//! (so `quota::fits` counts it against everyone else, and an expired lease
//! counts for nothing without anyone releasing it, as a reservation's
//! hold). It admits from the block in memory and gives the lease back
//! (what it admitted is recorded, the rest freed) when the block is spent,
//! before the hold lapses, or at shutdown. The sum of live leases and of
//! what was used never passes the limit, so near it blocks shrink to one.
//! A lease given back after its hold lapsed records nothing: a crashed or
//! stalled instance loses (leaves uncounted) at most what it admitted from
//! its lease, and never lets anyone admit past the limit.

use chrono::{DateTime, Duration, Utc};

use crate::account::AccountId;
use crate::plan::Limit;
use crate::quota::{fits, Hold, OperationId};
use crate::usage::UsageKey;

/// How long a lease's hold lasts on the counter.
pub const LEASE_TTL: Duration = Duration::seconds(30);
/// An instance stops admitting from a lease this long before its hold
/// lapses and gives the rest back: the give-back in flight, and clocks of
/// two instances that disagree by less than this, never meet a lapsed
/// lease still in use.
pub const LEASE_MARGIN: Duration = Duration::seconds(10);
/// The first block an instance asks for.
pub const FIRST_LEASE: i64 = 16;
/// The largest block: what an instance can leave uncounted if it dies.
pub const MAX_LEASE: i64 = 1000;
/// A lease takes at most this fraction of what is left, so near the limit
/// every instance still finds some, and blocks shrink down to one.
pub const LEASE_SHARE: i64 = 8;

/// A block of quota one instance admits from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub id: OperationId,
    pub account_id: AccountId,
    pub key: UsageKey,
    pub quantity: i64,
    pub expires_at: DateTime<Utc>,
}

impl Lease {
    pub fn hold(&self) -> Hold {
        Hold {
            id: self.id,
            quantity: self.quantity,
            expires_at: self.expires_at,
        }
    }

    /// Until when it may be admitted from: the margin before its hold
    /// lapses, and never past its window.
    pub fn admits_until(&self) -> DateTime<Utc> {
        let end = self.expires_at - LEASE_MARGIN;
        match self.key.window {
            Some(w) if w.end < end => w.end,
            _ => end,
        }
    }
}

/// How much of a lease the store grants: at least `wanted` (the request
/// at hand) or nothing, up to `target` (what the instance's rate asks
/// for, at most `MAX_LEASE`), at most a share of what is left under the
/// limit after `used` and the live holds.
pub fn grant(used: i64, held: i64, limit: Limit, wanted: i64, target: i64) -> i64 {
    if wanted < 1 {
        return 0;
    }
    let want = target.clamp(wanted, MAX_LEASE.max(wanted));
    let size = match limit {
        None => want,
        Some(l) => {
            let left = i64::try_from(l)
                .unwrap_or(i64::MAX)
                .saturating_sub(used.saturating_add(held))
                .max(0);
            want.min((left / LEASE_SHARE).max(wanted)).min(left)
        }
    };
    if size >= wanted && fits(used, held, size, limit) {
        size
    } else {
        0
    }
}

/// What the next lease asks for, from the last one (its quantity and
/// what was admitted from it): twice as much when it was spent, else what
/// it admitted in its time (the observed rate).
pub fn next_target(last: Option<(i64, i64)>) -> i64 {
    match last {
        None => FIRST_LEASE,
        Some((quantity, admitted)) if admitted >= quantity => quantity.saturating_mul(2),
        Some((_, admitted)) => admitted,
    }
    .clamp(FIRST_LEASE, MAX_LEASE)
}

/// What giving a lease back records on the counter: what was admitted
/// from it while its hold is live; nothing once it lapsed (its quota went
/// back to everyone, and may have been admitted again).
pub fn settle(hold_live: bool, admitted: i64) -> i64 {
    if hold_live {
        admitted.max(0)
    } else {
        0
    }
}

/// A lease as its instance spends it, with the counter as the lease's
/// write left it: `used` then, and `held` with this lease in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spending {
    pub lease: Lease,
    pub admitted: i64,
    pub used_at_take: u64,
    pub held_at_take: u64,
}

impl Spending {
    pub fn new(lease: Lease, used: u64, held: u64) -> Self {
        Self {
            lease,
            admitted: 0,
            used_at_take: used,
            held_at_take: held,
        }
    }

    /// Admits `amount` from the block if it is left and the lease still
    /// admits at `now`.
    pub fn admit(&mut self, amount: i64, now: DateTime<Utc>) -> bool {
        if amount < 1 || now >= self.lease.admits_until() || self.unused() < amount {
            return false;
        }
        self.admitted += amount;
        true
    }

    pub fn unused(&self) -> i64 {
        self.lease.quantity - self.admitted
    }

    /// Used and held as this instance knows them: what it admitted moves
    /// from held to used, so `used + held` stays what the store saw.
    pub fn level(&self) -> (u64, u64) {
        let admitted = self.admitted.max(0) as u64;
        (
            self.used_at_take.saturating_add(admitted),
            self.held_at_take.saturating_sub(admitted),
        )
    }
}

/// Take a lease, giving the last one of the same counter back in the same
/// write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRequest {
    /// The new lease's id: fresh per request.
    pub id: OperationId,
    pub account_id: AccountId,
    pub key: UsageKey,
    pub limit: Limit,
    /// The request at hand: a lease of less is no use.
    pub wanted: i64,
    /// What the instance's rate asks for (`next_target`).
    pub target: i64,
    pub at: DateTime<Utc>,
    pub returning: Option<LeaseReturn>,
}

impl LeaseRequest {
    pub fn lease(&self, quantity: i64) -> Lease {
        Lease {
            id: self.id,
            account_id: self.account_id,
            key: self.key,
            quantity,
            expires_at: self.at + LEASE_TTL,
        }
    }
}

/// A lease given back, with what was admitted from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseReturn {
    pub id: OperationId,
    pub admitted: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseOutcome {
    /// The counter after the write: `held` includes the new lease.
    Granted { lease: Lease, used: u64, held: u64 },
    /// Nothing left for the request: no lease (a lease given back with it
    /// was still settled).
    Denied { used: u64, held: u64 },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::Metric;
    use uuid::Uuid;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn lease(quantity: i64, at: DateTime<Utc>) -> Lease {
        LeaseRequest {
            id: OperationId(Uuid::from_u128(9)),
            account_id: AccountId(Uuid::from_u128(1)),
            key: UsageKey::current(Metric::ApiCalls, at),
            limit: Some(100),
            wanted: 1,
            target: quantity,
            at,
            returning: None,
        }
        .lease(quantity)
    }

    #[test]
    fn far_from_the_limit_a_lease_is_what_the_rate_asks() {
        assert_eq!(grant(0, 0, Some(50_000), 1, 16), 16);
        assert_eq!(grant(0, 0, Some(50_000), 1, 5_000), MAX_LEASE);
        assert_eq!(grant(0, 0, None, 1, 64), 64);
        assert_eq!(grant(0, 0, Some(50_000), 3, 1), 3, "never less than wanted");
    }

    #[test]
    fn near_the_limit_blocks_shrink_to_one_and_never_pass_it() {
        assert_eq!(
            grant(900, 20, Some(1000), 1, 64),
            10,
            "a share of the 80 left"
        );
        assert_eq!(grant(990, 5, Some(1000), 1, 64), 1);
        assert_eq!(grant(999, 0, Some(1000), 1, 64), 1);
        assert_eq!(grant(999, 1, Some(1000), 1, 64), 0, "live holds count");
        assert_eq!(
            grant(998, 0, Some(1000), 3, 64),
            0,
            "less than wanted is none"
        );
        assert_eq!(grant(1200, 0, Some(1000), 1, 64), 0);
        assert_eq!(
            grant(i64::MAX, 0, None, 1, 64),
            0,
            "an overflow fits nothing"
        );
        // Whatever the inputs, used + held + grant stays within the limit.
        for used in 0..=100 {
            for held in 0..=100 - used {
                for wanted in 1..4 {
                    let g = grant(used, held, Some(100), wanted, 50);
                    assert!(used + held + g <= 100);
                    assert!(g == 0 || g >= wanted);
                    assert_eq!(g == 0, used + held + wanted > 100);
                }
            }
        }
    }

    #[test]
    fn the_next_block_grows_with_the_rate() {
        assert_eq!(next_target(None), FIRST_LEASE);
        assert_eq!(next_target(Some((16, 16))), 32, "spent: twice");
        assert_eq!(next_target(Some((800, 800))), MAX_LEASE);
        assert_eq!(next_target(Some((64, 40))), 40, "aged: what it admitted");
        assert_eq!(next_target(Some((64, 0))), FIRST_LEASE);
    }

    #[test]
    fn a_lapsed_lease_settles_nothing() {
        assert_eq!(settle(true, 7), 7);
        assert_eq!(settle(false, 7), 0);
    }

    #[test]
    fn a_lease_admits_its_block_until_the_margin_before_it_lapses() {
        let at = t("2026-03-05T12:00:00Z");
        let mut s = Spending::new(lease(3, at), 10, 5);
        assert!(s.admit(2, at));
        assert!(!s.admit(2, at), "only one is left");
        assert!(!s.admit(1, s.lease.admits_until()), "half-open");
        assert!(s.admit(1, s.lease.admits_until() - Duration::seconds(1)));
        assert!(!s.admit(1, at), "spent");
        assert_eq!(s.unused(), 0);
        assert_eq!(s.level(), (13, 2));
        assert_eq!(s.lease.admits_until(), s.lease.expires_at - LEASE_MARGIN);
    }

    #[test]
    fn a_lease_admits_nothing_past_its_window() {
        let at = t("2026-03-05T23:59:50Z");
        let l = lease(3, at);
        assert_eq!(l.admits_until(), t("2026-03-06T00:00:00Z"));
    }
}
