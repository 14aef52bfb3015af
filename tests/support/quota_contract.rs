//! Exactly-once usage writes, reservations and gauges: the behaviour every
//! store must have. A backend's test file runs it with
//! `quota_contract_tests!(make_store, opener)`: `make_store().await` returns
//! a fresh, empty store; `opener().await` returns an `Opener` whose every
//! call opens a new store instance (a new process, as far as the store can
//! tell) over one and the same database.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use futures::future::BoxFuture;
use kraftd_billing::domain::account::AccountId;
use kraftd_billing::domain::lease::{
    next_target, LeaseOutcome, LeaseRequest, LeaseReturn, Spending, LEASE_TTL,
};
use kraftd_billing::domain::plan::Limit;
use kraftd_billing::domain::ports::Store;
use kraftd_billing::domain::quota::{
    CloseOutcome, CloseRefusal, Closing, Fingerprint, GaugeObservation, GaugeOutcome, Level,
    OperationId, OperationKind, OperationOutcome, Reservation, ReservationState, ReserveOutcome,
    ReserveRequest, UsageOperation,
};
use kraftd_billing::domain::usage::{Metric, UsageKey, UsageOutcome};

use super::time;

/// Opens a new store over the same database each time it is called.
pub type Opener = Box<dyn Fn() -> BoxFuture<'static, Arc<dyn Store>> + Send + Sync>;

#[macro_export]
macro_rules! quota_contract_tests {
    ($make:ident, $opener:ident) => {
        mod quota_contract {
            use $crate::support::quota_contract as q;
            macro_rules! case {
                ($name:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        q::$name(super::$make().await).await
                    }
                };
            }
            case!(a_named_usage_write_counts_once_and_a_reused_key_is_refused);
            case!(a_refused_write_records_nothing_and_may_be_retried);
            case!(operation_keys_are_per_account);
            case!(concurrent_reservations_hold_exactly_the_limit);
            case!(held_quota_counts_against_every_write);
            case!(a_commit_records_at_most_the_hold_and_replays);
            case!(an_expired_reservation_frees_its_quota_by_itself);
            case!(a_replayed_reservation_holds_once);
            case!(gauges_take_the_newest_observation);
            case!(racing_retries_of_one_key_count_once);
            case!(racing_leases_never_admit_more_than_the_limit);
            case!(a_lapsed_lease_holds_nothing_and_settles_nothing);
            case!(giving_a_lease_back_frees_exactly_its_unused_part);

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_dead_instance_loses_at_most_its_lease() {
                q::a_dead_instance_loses_at_most_its_lease(super::$opener().await).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn reservations_outlive_the_process_that_made_them() {
                q::reservations_outlive_the_process_that_made_them(super::$opener().await).await
            }
        }
    };
}

const NOON: &str = "2026-05-10T12:00:00Z";

fn account() -> AccountId {
    AccountId(uuid::Uuid::new_v4())
}

fn op(
    account: AccountId,
    key: &str,
    metric: Metric,
    amount: i64,
    limit: Limit,
    at: &str,
) -> UsageOperation {
    let at = time(at);
    UsageOperation {
        id: OperationId::of_key(account, OperationKind::Usage, key),
        fingerprint: Fingerprint(format!("{}:{amount}", metric.as_str())),
        account_id: account,
        key: UsageKey::current(metric, at),
        amount,
        limit,
        at,
    }
}

/// A reservation of `quantity` documents made at `at`, held for `ttl`.
pub fn reservation(
    account: AccountId,
    key: &str,
    quantity: i64,
    at: DateTime<Utc>,
    ttl: Duration,
) -> Reservation {
    let usage_key = UsageKey::current(Metric::Documents, at);
    Reservation {
        id: OperationId::of_key(account, OperationKind::Reservation, key),
        fingerprint: Fingerprint(format!("documents:{quantity}")),
        account_id: account,
        metric: usage_key.metric,
        window: usage_key.window,
        quantity,
        created_at: at,
        expires_at: at + ttl,
        state: ReservationState::Held,
    }
}

/// The request to hold `r` against `limit`, made when `r` was.
pub fn hold(r: Reservation, limit: u64) -> ReserveRequest {
    let at = r.created_at;
    ReserveRequest {
        reservation: r,
        limit: Some(limit),
        at,
    }
}

async fn level(s: &Arc<dyn Store>, account: AccountId, at: DateTime<Utc>) -> Level {
    s.levels(account, &[UsageKey::current(Metric::Documents, at)], at)
        .await
        .unwrap()[0]
}

pub async fn a_named_usage_write_counts_once_and_a_reused_key_is_refused(s: Arc<dyn Store>) {
    let a = account();
    let first = op(a, "k1", Metric::Documents, 3, Some(5), NOON);
    assert_eq!(
        s.record_operation(&first).await.unwrap(),
        OperationOutcome::Decided(UsageOutcome::Admitted { total: 3 }, 0)
    );
    for _ in 0..3 {
        assert_eq!(
            s.record_operation(&first).await.unwrap(),
            OperationOutcome::Replayed { total: 3 },
            "the same request again is the same answer"
        );
    }
    let mut other = first.clone();
    other.fingerprint = Fingerprint("documents:2".into());
    other.amount = 2;
    assert_eq!(
        s.record_operation(&other).await.unwrap(),
        OperationOutcome::KeyReused
    );
    assert_eq!(level(&s, a, time(NOON)).await, Level { used: 3, held: 0 });
    // A different key counts.
    assert_eq!(
        s.record_operation(&op(a, "k2", Metric::Documents, 2, Some(5), NOON))
            .await
            .unwrap(),
        OperationOutcome::Decided(UsageOutcome::Admitted { total: 5 }, 0)
    );
}

pub async fn a_refused_write_records_nothing_and_may_be_retried(s: Arc<dyn Store>) {
    let a = account();
    s.record_operation(&op(a, "fill", Metric::Documents, 4, Some(5), NOON))
        .await
        .unwrap();
    let big = op(a, "big", Metric::Documents, 2, Some(5), NOON);
    assert_eq!(
        s.record_operation(&big).await.unwrap(),
        OperationOutcome::Decided(UsageOutcome::Denied { total: 4 }, 0)
    );
    // After an upgrade (a higher limit), the same key is decided afresh.
    let mut upgraded = big.clone();
    upgraded.limit = Some(10);
    assert_eq!(
        s.record_operation(&upgraded).await.unwrap(),
        OperationOutcome::Decided(UsageOutcome::Admitted { total: 6 }, 0)
    );
}

pub async fn operation_keys_are_per_account(s: Arc<dyn Store>) {
    let (a, b) = (account(), account());
    for who in [a, b] {
        assert_eq!(
            s.record_operation(&op(who, "same-key", Metric::ApiCalls, 1, None, NOON))
                .await
                .unwrap(),
            OperationOutcome::Decided(UsageOutcome::Admitted { total: 1 }, 0)
        );
    }
}

async fn reserve_many(
    s: &Arc<dyn Store>,
    a: AccountId,
    prefix: &str,
    n: usize,
    limit: u64,
) -> Vec<Reservation> {
    let at = time(NOON);
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let s = s.clone();
            let r = reservation(a, &format!("{prefix}-{i}"), 1, at, Duration::minutes(15));
            tokio::spawn(async move {
                match s.reserve(&hold(r.clone(), limit)).await.unwrap() {
                    ReserveOutcome::Held { .. } => Some(r),
                    ReserveOutcome::Denied { .. } => None,
                    other => panic!("a fresh key answered {other:?}"),
                }
            })
        })
        .collect();
    let mut held = Vec::new();
    for t in tasks {
        held.extend(t.await.unwrap());
    }
    held
}

pub async fn concurrent_reservations_hold_exactly_the_limit(s: Arc<dyn Store>) {
    let a = account();
    let at = time(NOON);
    let held = reserve_many(&s, a, "burst", 200, 50).await;
    assert_eq!(held.len(), 50, "200 racing reservations of 1 against 50");
    assert_eq!(level(&s, a, at).await, Level { used: 0, held: 50 });
    for r in &held[..10] {
        assert!(matches!(
            s.close_reservation(a, r.id, Closing::Release, at)
                .await
                .unwrap(),
            CloseOutcome::Closed(..)
        ));
    }
    let more = reserve_many(&s, a, "after-release", 100, 50).await;
    assert_eq!(more.len(), 10, "releasing 10 lets exactly 10 more in");
    assert_eq!(level(&s, a, at).await, Level { used: 0, held: 50 });
}

pub async fn held_quota_counts_against_every_write(s: Arc<dyn Store>) {
    let a = account();
    let at = time(NOON);
    let r = reservation(a, "doc", 3, at, Duration::minutes(15));
    assert_eq!(
        s.reserve(&hold(r.clone(), 5)).await.unwrap(),
        ReserveOutcome::Held { used: 0, held: 3 }
    );
    assert_eq!(
        s.record_operation(&op(a, "w", Metric::Documents, 3, Some(5), NOON))
            .await
            .unwrap(),
        OperationOutcome::Decided(UsageOutcome::Denied { total: 3 }, 3)
    );
    assert_eq!(
        s.reserve(&hold(
            reservation(a, "doc2", 3, at, Duration::minutes(15)),
            5
        ))
        .await
        .unwrap(),
        ReserveOutcome::Denied { used: 0, held: 3 }
    );
    s.close_reservation(a, r.id, Closing::Commit(1), at)
        .await
        .unwrap();
    assert_eq!(
        s.record_operation(&op(a, "w", Metric::Documents, 3, Some(5), NOON))
            .await
            .unwrap(),
        OperationOutcome::Decided(UsageOutcome::Admitted { total: 4 }, 0),
        "the two units the commit did not use went back"
    );
}

pub async fn a_commit_records_at_most_the_hold_and_replays(s: Arc<dyn Store>) {
    let a = account();
    let at = time(NOON);
    let r = reservation(a, "doc", 3, at, Duration::minutes(15));
    s.reserve(&hold(r.clone(), 10)).await.unwrap();
    assert_eq!(
        s.close_reservation(a, r.id, Closing::Commit(4), at)
            .await
            .unwrap(),
        CloseOutcome::Refused(CloseRefusal::BeyondHold { held: 3 })
    );
    let CloseOutcome::Closed(done, total) = s
        .close_reservation(a, r.id, Closing::Commit(2), at)
        .await
        .unwrap()
    else {
        panic!("a live hold commits");
    };
    assert_eq!(done.state, ReservationState::Committed { quantity: 2 });
    assert_eq!(total, Some(2), "the counter's total right after the commit");
    assert_eq!(
        s.close_reservation(a, r.id, Closing::Commit(2), at)
            .await
            .unwrap(),
        CloseOutcome::Closed(done.clone(), None),
        "a retried commit is the same answer and records nothing"
    );
    assert!(matches!(
        s.close_reservation(a, r.id, Closing::Release, at)
            .await
            .unwrap(),
        CloseOutcome::Refused(CloseRefusal::AlreadyClosed(_))
    ));
    assert_eq!(level(&s, a, at).await, Level { used: 2, held: 0 });
    assert_eq!(s.reservation(a, r.id).await.unwrap(), Some(done));
    assert_eq!(
        s.close_reservation(account(), r.id, Closing::Release, at)
            .await
            .unwrap(),
        CloseOutcome::NotFound,
        "another account's reservation is not found"
    );
}

pub async fn an_expired_reservation_frees_its_quota_by_itself(s: Arc<dyn Store>) {
    let a = account();
    let at = time(NOON);
    let r = reservation(a, "slow", 5, at, Duration::minutes(1));
    s.reserve(&hold(r.clone(), 5)).await.unwrap();
    let before = at + Duration::seconds(59);
    let mut late = reservation(a, "next", 5, before, Duration::minutes(15));
    assert!(matches!(
        s.reserve(&hold(late.clone(), 5)).await.unwrap(),
        ReserveOutcome::Denied { held: 5, .. }
    ));
    let expiry = at + Duration::minutes(1);
    late.created_at = expiry;
    late.expires_at = expiry + Duration::minutes(15);
    late.id = OperationId::of_key(a, OperationKind::Reservation, "next-2");
    assert_eq!(
        s.reserve(&hold(late, 5)).await.unwrap(),
        ReserveOutcome::Held { used: 0, held: 5 },
        "at its expiry the hold is gone"
    );
    assert_eq!(
        s.close_reservation(a, r.id, Closing::Commit(5), expiry)
            .await
            .unwrap(),
        CloseOutcome::Refused(CloseRefusal::Expired)
    );
}

pub async fn a_replayed_reservation_holds_once(s: Arc<dyn Store>) {
    let a = account();
    let at = time(NOON);
    let r = reservation(a, "doc", 2, at, Duration::minutes(15));
    assert_eq!(
        s.reserve(&hold(r.clone(), 5)).await.unwrap(),
        ReserveOutcome::Held { used: 0, held: 2 }
    );
    assert_eq!(
        s.reserve(&hold(r.clone(), 5)).await.unwrap(),
        ReserveOutcome::Replayed(r.clone())
    );
    let mut other = r.clone();
    other.quantity = 3;
    other.fingerprint = Fingerprint("documents:3".into());
    assert_eq!(
        s.reserve(&hold(other, 5)).await.unwrap(),
        ReserveOutcome::KeyReused
    );
    assert_eq!(level(&s, a, at).await, Level { used: 0, held: 2 });
}

pub async fn gauges_take_the_newest_observation(s: Arc<dyn Store>) {
    let a = account();
    let at = time(NOON);
    let key = UsageKey::current(Metric::StorageMb, at);
    let observe = |value: i64, secs: i64| GaugeObservation {
        account_id: a,
        key,
        value,
        observed_at: at + Duration::seconds(secs),
        at,
    };
    assert_eq!(
        s.set_gauge(&observe(10, 2)).await.unwrap(),
        GaugeOutcome::Set
    );
    assert_eq!(
        s.set_gauge(&observe(20, 1)).await.unwrap(),
        GaugeOutcome::Stale {
            value: 10,
            observed_at: at + Duration::seconds(2)
        },
        "an older observation never overwrites a newer one"
    );
    assert_eq!(
        s.set_gauge(&observe(30, 2)).await.unwrap(),
        GaugeOutcome::Stale {
            value: 10,
            observed_at: at + Duration::seconds(2)
        }
    );
    assert_eq!(
        s.set_gauge(&observe(0, 3)).await.unwrap(),
        GaugeOutcome::Set
    );
    assert_eq!(
        s.set_gauge(&observe(700, 4)).await.unwrap(),
        GaugeOutcome::Set
    );
    assert_eq!(
        s.levels(a, &[key], at).await.unwrap(),
        vec![Level { used: 700, held: 0 }],
        "a level past the limit is kept as observed"
    );
    // A reservation that would grow a gauge past its limit is refused.
    let mut grow = reservation(a, "upload", 1, at, Duration::minutes(15));
    grow.metric = Metric::StorageMb;
    grow.window = None;
    assert_eq!(
        s.reserve(&hold(grow, 500)).await.unwrap(),
        ReserveOutcome::Denied { used: 700, held: 0 }
    );
}

pub async fn reservations_outlive_the_process_that_made_them(open: Opener) {
    let a = account();
    let at = time(NOON);
    let r = reservation(a, "crash", 4, at, Duration::minutes(15));
    {
        let first = open().await;
        first.reserve(&hold(r.clone(), 5)).await.unwrap();
        // The process dies here, between reserve and commit.
    }
    let second = open().await;
    assert_eq!(
        level(&second, a, at).await,
        Level { used: 0, held: 4 },
        "the hold survives its process"
    );
    assert!(matches!(
        second
            .reserve(&hold(
                reservation(a, "other", 2, at, Duration::minutes(15)),
                5
            ))
            .await
            .unwrap(),
        ReserveOutcome::Denied { .. }
    ));
    assert_eq!(
        second.reserve(&hold(r.clone(), 5)).await.unwrap(),
        ReserveOutcome::Replayed(r.clone()),
        "the retried reserve finds the hold the dead process made"
    );
    assert!(matches!(
        second
            .close_reservation(a, r.id, Closing::Commit(4), at)
            .await
            .unwrap(),
        CloseOutcome::Closed(..)
    ));
    drop(second);
    let third = open().await;
    assert_eq!(level(&third, a, at).await, Level { used: 4, held: 0 });
}

pub async fn racing_retries_of_one_key_count_once(s: Arc<dyn Store>) {
    let a = account();
    let at = time(NOON);
    let write = op(a, "twin", Metric::Documents, 2, Some(50), NOON);
    let r = reservation(a, "twin-hold", 3, at, Duration::minutes(15));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (s, write, r) = (s.clone(), write.clone(), r.clone());
            tokio::spawn(async move {
                (
                    s.record_operation(&write).await.unwrap(),
                    s.reserve(&hold(r, 50)).await.unwrap(),
                )
            })
        })
        .collect();
    let (mut decided, mut held) = (0, 0);
    for t in tasks {
        let (written, reserved) = t.await.unwrap();
        match written {
            OperationOutcome::Decided(UsageOutcome::Admitted { total: 2 }, _) => decided += 1,
            OperationOutcome::Replayed { total: 2 } => {}
            other => panic!("a twin answered {other:?}"),
        }
        match reserved {
            ReserveOutcome::Held { .. } => held += 1,
            ReserveOutcome::Replayed(_) => {}
            other => panic!("a twin reservation answered {other:?}"),
        }
    }
    assert_eq!(
        (decided, held),
        (1, 1),
        "one of the twins decides, the rest replay"
    );
    assert_eq!(level(&s, a, at).await, Level { used: 2, held: 3 });
}

fn lease_request(
    a: AccountId,
    at: DateTime<Utc>,
    limit: Limit,
    target: i64,
    returning: Option<LeaseReturn>,
) -> LeaseRequest {
    LeaseRequest {
        id: OperationId(uuid::Uuid::new_v4()),
        account_id: a,
        key: UsageKey::current(Metric::ApiCalls, at),
        limit,
        wanted: 1,
        target,
        at,
        returning,
    }
}

async fn api_level(s: &Arc<dyn Store>, account: AccountId, at: DateTime<Utc>) -> Level {
    s.levels(account, &[UsageKey::current(Metric::ApiCalls, at)], at)
        .await
        .unwrap()[0]
}

fn granted(outcome: LeaseOutcome) -> Spending {
    match outcome {
        LeaseOutcome::Granted { lease, used, held } => Spending::new(lease, used, held),
        LeaseOutcome::Denied { used, held } => panic!("denied at {used} used, {held} held"),
    }
}

/// One instance's admissions: leases taken and spent one call at a time,
/// each given back with the next, until none is granted. What it admitted.
async fn spend_leases(s: Arc<dyn Store>, a: AccountId, limit: u64) -> i64 {
    let at = time(NOON);
    let mut admitted = 0;
    let mut last: Option<Spending> = None;
    loop {
        let returning = last.map(|l| LeaseReturn {
            id: l.lease.id,
            admitted: l.admitted,
        });
        let target = next_target(last.map(|l| (l.lease.quantity, l.admitted)));
        let req = lease_request(a, at, Some(limit), target, returning);
        match s.take_lease(&req).await.unwrap() {
            LeaseOutcome::Granted { lease, used, held } => {
                assert!(
                    used + held <= limit,
                    "{used} used + {held} held past {limit}"
                );
                let mut spending = Spending::new(lease, used, held);
                while spending.admit(1, at) {
                    admitted += 1;
                }
                last = Some(spending);
            }
            LeaseOutcome::Denied { .. } => return admitted,
        }
    }
}

pub async fn racing_leases_never_admit_more_than_the_limit(s: Arc<dyn Store>) {
    let a = account();
    let at = time(NOON);
    let limit = 300;
    let instances: Vec<_> = (0..4)
        .map(|_| tokio::spawn(spend_leases(s.clone(), a, limit)))
        .collect();
    let mut admitted = 0;
    for i in instances {
        admitted += i.await.unwrap();
    }
    assert_eq!(
        admitted, limit as i64,
        "four instances admit exactly the limit"
    );
    assert_eq!(
        api_level(&s, a, at).await,
        Level {
            used: limit,
            held: 0
        },
        "every admitted call is recorded once, every lease given back"
    );
    let named = op(a, "after", Metric::ApiCalls, 1, Some(limit), NOON);
    assert!(matches!(
        s.record_operation(&named).await.unwrap(),
        OperationOutcome::Decided(UsageOutcome::Denied { .. }, _)
    ));
}

pub async fn a_lapsed_lease_holds_nothing_and_settles_nothing(s: Arc<dyn Store>) {
    let a = account();
    let at = time(NOON);
    let key = UsageKey::current(Metric::ApiCalls, at);
    let mut first = granted(
        s.take_lease(&lease_request(a, at, Some(10), 10, None))
            .await
            .unwrap(),
    );
    assert_eq!(
        first.lease.quantity, 1,
        "a share of what is left, at least one"
    );
    assert!(first.admit(1, at));
    let named = op(a, "while-held", Metric::ApiCalls, 10, Some(10), NOON);
    assert!(
        matches!(
            s.record_operation(&named).await.unwrap(),
            OperationOutcome::Decided(UsageOutcome::Denied { .. }, _)
        ),
        "a live lease counts against a named write"
    );
    let later = at + LEASE_TTL;
    assert_eq!(
        api_level(&s, a, later).await,
        Level { used: 0, held: 0 },
        "a lapsed lease holds nothing, with no one giving it back"
    );
    let ret = LeaseReturn {
        id: first.lease.id,
        admitted: first.admitted,
    };
    assert!(!s.return_lease(a, &key, &ret, later).await.unwrap());
    let second = granted(
        s.take_lease(&lease_request(a, later, Some(10), 10, Some(ret)))
            .await
            .unwrap(),
    );
    assert_eq!(
        (second.used_at_take, second.held_at_take),
        (0, second.lease.quantity as u64),
        "the lapsed lease's calls are not counted when it comes back late"
    );
}

pub async fn giving_a_lease_back_frees_exactly_its_unused_part(s: Arc<dyn Store>) {
    let a = account();
    let at = time(NOON);
    let key = UsageKey::current(Metric::ApiCalls, at);
    let mut l = granted(
        s.take_lease(&lease_request(a, at, Some(1000), 50, None))
            .await
            .unwrap(),
    );
    assert_eq!(l.lease.quantity, 50);
    assert_eq!(api_level(&s, a, at).await, Level { used: 0, held: 50 });
    for _ in 0..20 {
        assert!(l.admit(1, at));
    }
    let ret = LeaseReturn {
        id: l.lease.id,
        admitted: l.admitted,
    };
    assert!(s.return_lease(a, &key, &ret, at).await.unwrap());
    assert_eq!(api_level(&s, a, at).await, Level { used: 20, held: 0 });
    assert!(
        !s.return_lease(a, &key, &ret, at).await.unwrap(),
        "given back twice, counted once"
    );
    // Given back with the next lease, in one write.
    let mut next = granted(
        s.take_lease(&lease_request(a, at, Some(1000), 16, None))
            .await
            .unwrap(),
    );
    assert!(next.admit(3, at));
    let ret = LeaseReturn {
        id: next.lease.id,
        admitted: next.admitted,
    };
    let third = granted(
        s.take_lease(&lease_request(a, at, Some(1000), 16, Some(ret)))
            .await
            .unwrap(),
    );
    assert_eq!((third.used_at_take, third.held_at_take), (23, 16));
    assert_eq!(api_level(&s, a, at).await, Level { used: 23, held: 16 });
}

pub async fn a_dead_instance_loses_at_most_its_lease(open: Opener) {
    let a = account();
    let at = time(NOON);
    let limit = 40;
    let lost = {
        let first = open().await;
        let mut l = granted(
            first
                .take_lease(&lease_request(a, at, Some(limit), 16, None))
                .await
                .unwrap(),
        );
        assert!(l.admit(2, at));
        l.lease.quantity
        // The instance dies here, its lease neither spent nor given back.
    };
    let second = open().await;
    let before_lapse = spend_leases(second.clone(), a, limit).await;
    assert_eq!(
        before_lapse,
        limit as i64 - lost,
        "the dead instance's lease still holds its block, and nothing more"
    );
    let later = at + LEASE_TTL;
    assert_eq!(
        api_level(&second, a, later).await,
        Level {
            used: limit - lost as u64,
            held: 0
        }
    );
    let mut after = 0;
    let mut last: Option<LeaseReturn> = None;
    while let LeaseOutcome::Granted { lease, .. } = second
        .take_lease(&lease_request(a, later, Some(limit), 16, last))
        .await
        .unwrap()
    {
        after += lease.quantity;
        last = Some(LeaseReturn {
            id: lease.id,
            admitted: lease.quantity,
        });
    }
    assert_eq!(
        after, lost,
        "once it lapsed, its block is admitted again: the 2 calls it admitted go uncounted, none past the limit"
    );
    assert_eq!(
        api_level(&second, a, later).await,
        Level {
            used: limit,
            held: 0
        }
    );
}
