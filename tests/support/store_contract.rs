//! The behaviour every store must have, whatever its backend. A backend's
//! test file runs it with `store_contract_tests!(make_store)`, where
//! `make_store().await` returns a fresh, empty `Arc<dyn Store>`.

use std::sync::Arc;

use chrono::{Duration, Utc};
use kraftd_billing::domain::audit::{Actor, AuditAction, AuditEntry, AuditId};
use kraftd_billing::domain::money::Money;
use kraftd_billing::domain::ports::{Etag, OutboxState, SendResult, Store, StoreError, Uniqueness};
use std::collections::BTreeMap;

use kraftd_billing::domain::account::{
    AcceptOutcome, Account, AccountId, Invitation, InvitationId, InvitationOutcome, Membership,
    Role, Seats, INVITATION_VALIDITY,
};
use kraftd_billing::domain::plan::PlanId;
use kraftd_billing::domain::records::{
    EmailKind, EventKind, Invoice, OutboxMessage, Payment, PAYMENT_RETENTION_DAYS,
};
use kraftd_billing::domain::subscription::Subscription;
use kraftd_billing::domain::subscription::SubscriptionStatus;
use kraftd_billing::domain::usage::{
    Metric, Period, UsageIncrement, UsageKey, UsageOutcome, Window, USAGE_RETENTION_DAYS,
};
use kraftd_billing::domain::user::{
    Email, EmailVerification, ExternalIdentity, PersonName, User, UserId,
};

use super::time;

#[macro_export]
macro_rules! store_contract_tests {
    ($make:ident) => {
        mod store_contract {
            use $crate::support::store_contract as c;
            macro_rules! case {
                ($name:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        c::$name(super::$make().await).await
                    }
                };
            }
            case!(users_and_accounts_round_trip_by_id_email_and_customer);
            case!(emails_are_unique);
            case!(outside_identities_hold_no_email_and_users_change_by_version);
            case!(replace_refuses_a_stale_version);
            case!(stripe_customers_are_unique);
            case!(counters_admit_exactly_the_limit);
            case!(concurrent_increments_never_pass_the_limit);
            case!(unlimited_counters_still_count);
            case!(each_window_counts_apart);
            case!(gauges_move_both_ways_but_never_below_zero);
            case!(usage_is_kept_per_account);
            case!(payments_are_idempotent_scoped_and_newest_first);
            case!(invoices_upsert_and_never_move_between_accounts);
            case!(webhook_events_are_claimed_once);
            case!(retention_purges_only_what_expired);
            case!(outbox_writes_are_atomic_with_the_account_and_idempotent);
            case!(audit_entries_go_with_the_account_write_and_page_newest_first);
            case!(outbox_claims_are_exclusive_until_the_lease_ends);
            case!(unsettled_messages_are_the_unfinished_and_the_recently_failed);
            case!(an_accounts_events_are_claimed_in_order_and_others_are_not_held);
            case!(stale_subscriptions_are_listed_most_overdue_first);
            case!(rollups_recompute_pages_of_accounts_of_one_day);
            case!(invitations_hold_seats_and_are_accepted_once);
            case!(concurrent_invitations_never_pass_the_seat_limit);
            case!(members_are_removed_and_roles_change_but_never_the_owner_s);
            case!(ownership_moves_in_one_step);
            case!(an_account_over_its_seats_takes_no_one_in);
            case!(a_removed_or_demoted_admin_s_invitations_go_with_them);
            case!(imported_members_join_once_and_hold_seats);
            case!(each_member_change_writes_its_audit_entry_and_a_refused_one_none);
            case!(accounts_are_made_for_existing_users_once);
        }
    };
}

pub fn user(email: &str) -> User {
    User::with_password(
        UserId(uuid::Uuid::new_v4()),
        Email::parse(email).unwrap(),
        PersonName::parse("Contract Test").unwrap(),
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into(),
        Utc::now(),
    )
}

/// A user's own account, on Free.
pub fn account_of(user: &User) -> Account {
    Account {
        id: AccountId(uuid::Uuid::new_v4()),
        name: user.name.as_str().to_owned(),
        billing_email: user.email.clone(),
        created_at: user.created_at,
        subscription: Subscription::free(Utc::now()),
        last_event_at: None,
        overrides: Vec::new(),
        enterprise_offer: None,
    }
}

fn owner(user: &User, account: &Account) -> Membership {
    Membership {
        account_id: account.id,
        user_id: user.id,
        role: Role::Owner,
        // Whole milliseconds: what the stores keep of a membership's time.
        joined_at: time(NOON),
    }
}

/// Registers a user with their own account; returns both and the account's etag.
pub async fn register(s: &Arc<dyn Store>, email: &str) -> (User, Account, Etag) {
    let u = user(email);
    let a = account_of(&u);
    let etag = s.register(&u, &a, &owner(&u, &a), &[]).await.unwrap();
    (u, a, etag)
}

fn inc(
    account: AccountId,
    metric: Metric,
    amount: i64,
    limit: Option<u64>,
    at: &str,
) -> UsageIncrement {
    let at = time(at);
    UsageIncrement {
        account_id: account,
        key: UsageKey::current(metric, at),
        amount,
        limit,
        at,
    }
}

const NOON: &str = "2026-05-10T12:00:00Z";

pub async fn users_and_accounts_round_trip_by_id_email_and_customer(s: Arc<dyn Store>) {
    let u = user("round@trip.io");
    let mut a = account_of(&u);
    a.subscription.stripe_customer_id = Some("cus_round".into());
    s.register(&u, &a, &owner(&u, &a), &[]).await.unwrap();
    assert_eq!(s.user_by_id(u.id).await.unwrap().unwrap().value, u);
    assert_eq!(s.user_by_email(&u.email).await.unwrap().unwrap().value, u);
    assert_eq!(s.account_by_id(a.id).await.unwrap().unwrap().value, a);
    assert_eq!(
        s.account_by_stripe_customer("cus_round")
            .await
            .unwrap()
            .unwrap()
            .value,
        a
    );
    assert_eq!(s.memberships_of(u.id).await.unwrap(), [owner(&u, &a)]);
    assert_eq!(s.members(a.id).await.unwrap(), [owner(&u, &a)]);
    assert!(s
        .user_by_id(UserId(uuid::Uuid::new_v4()))
        .await
        .unwrap()
        .is_none());
    assert!(s
        .account_by_id(AccountId(uuid::Uuid::new_v4()))
        .await
        .unwrap()
        .is_none());
    assert!(s
        .user_by_email(&Email::parse("nobody@trip.io").unwrap())
        .await
        .unwrap()
        .is_none());
}

pub async fn emails_are_unique(s: Arc<dyn Store>) {
    register(&s, "same@mail.io").await;
    let u = user("same@mail.io");
    let a = account_of(&u);
    let again = s.register(&u, &a, &owner(&u, &a), &[]).await;
    assert!(
        matches!(again, Err(StoreError::Conflict(Uniqueness::Email))),
        "{again:?}"
    );
    // Nothing of the refused registration is left behind.
    assert!(s.account_by_id(a.id).await.unwrap().is_none());
    assert!(s.memberships_of(u.id).await.unwrap().is_empty());
}

pub async fn outside_identities_hold_no_email_and_users_change_by_version(s: Arc<dyn Store>) {
    // A password user holds ceo@corp.io as a sign-in name...
    let (local, _, _) = register(&s, "ceo@corp.io").await;
    // ...and the identity provider's user with that email is another user,
    // registered without a conflict and never found by the email.
    let identity = ExternalIdentity {
        issuer: "https://id.kraftd.example".into(),
        subject: "00u1".into(),
    };
    let outside = User::of_identity(
        identity.clone(),
        Email::parse("ceo@corp.io").unwrap(),
        true,
        PersonName::parse("The CEO").unwrap(),
        Utc::now(),
    );
    let a = account_of(&outside);
    let welcome = OutboxMessage {
        id: format!("{}:welcome", a.id),
        account_id: a.id,
        to: Some(outside.email.clone()),
        kind: EmailKind::VerifyEmail.into(),
        data: BTreeMap::new(),
        body: None,
        created_at: time(NOON),
    };
    s.register(
        &outside,
        &a,
        &owner(&outside, &a),
        std::slice::from_ref(&welcome),
    )
    .await
    .unwrap();
    let found = s.user_by_email(&outside.email).await.unwrap().unwrap();
    assert_eq!(found.value.id, local.id);
    let stored = s
        .user_by_id(UserId::of_identity(&identity))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.value, outside);
    // The first messages were written with the account.
    assert_eq!(s.outbox_for_account(a.id).await.unwrap(), vec![welcome]);
    // Another user on the identity's id is a conflict on the id.
    let mut other = outside.clone();
    other.name = PersonName::parse("Someone Else").unwrap();
    let again = account_of(&other);
    let twice = s
        .register(&other, &again, &owner(&other, &again), &[])
        .await;
    assert!(
        matches!(twice, Err(StoreError::Conflict(Uniqueness::Id))),
        "{twice:?}"
    );

    // A user changes only from the version they read.
    let read = s.user_by_id(local.id).await.unwrap().unwrap();
    let mut pending = read.clone();
    pending.value.verification = Some(EmailVerification {
        token_hash: "ab".repeat(32),
        expires_at: time(NOON) + Duration::hours(48),
    });
    let etag = s.replace_user(&pending).await.unwrap();
    assert_ne!(etag, read.etag);
    let lost = s
        .replace_user(&kraftd_billing::domain::ports::Versioned {
            value: read.value.clone().verified(),
            etag: read.etag.clone(),
        })
        .await;
    assert!(matches!(lost, Err(StoreError::VersionConflict)), "{lost:?}");
    let now = s.user_by_id(local.id).await.unwrap().unwrap();
    assert_eq!(now.value, pending.value);
    assert_eq!(now.etag, etag);
    // The sign-in email still finds them after the change.
    assert_eq!(
        s.user_by_email(&local.email).await.unwrap().unwrap().value,
        pending.value
    );
}

pub async fn replace_refuses_a_stale_version(s: Arc<dyn Store>) {
    let (_, mut a, first) = register(&s, "versions@mail.io").await;
    a.subscription.auto_renew = true;
    let second = s.replace_account(&a, &first).await.unwrap();
    assert_ne!(first, second);
    // A writer still holding the first version must not overwrite the second.
    a.subscription.cancel_at_period_end = true;
    let lost = s.replace_account(&a, &first).await;
    assert!(matches!(lost, Err(StoreError::VersionConflict)), "{lost:?}");
    let stored = s.account_by_id(a.id).await.unwrap().unwrap();
    assert!(
        stored.value.subscription.auto_renew && !stored.value.subscription.cancel_at_period_end
    );
    assert_eq!(stored.etag, second);
    let ghost = account_of(&user("ghost@mail.io"));
    let missing = s.replace_account(&ghost, &Etag("1".into())).await;
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
}

pub async fn stripe_customers_are_unique(s: Arc<dyn Store>) {
    let u = user("a@cus.io");
    let mut a = account_of(&u);
    a.subscription.stripe_customer_id = Some("cus_1".into());
    s.register(&u, &a, &owner(&u, &a), &[]).await.unwrap();
    let (_, mut b, etag) = register(&s, "b@cus.io").await;
    b.subscription.stripe_customer_id = Some("cus_1".into());
    let clash = s.replace_account(&b, &etag).await;
    assert!(matches!(clash, Err(StoreError::Conflict(_))), "{clash:?}");
}

pub async fn counters_admit_exactly_the_limit(s: Arc<dyn Store>) {
    let u = AccountId(uuid::Uuid::new_v4());
    for n in 1..=5u64 {
        let out = s
            .increment_usage(&inc(u, Metric::Documents, 1, Some(5), NOON))
            .await
            .unwrap();
        assert_eq!(out, UsageOutcome::Admitted { total: n });
    }
    let out = s
        .increment_usage(&inc(u, Metric::Documents, 1, Some(5), NOON))
        .await
        .unwrap();
    assert_eq!(out, UsageOutcome::Denied { total: 5 });
    // A request larger than what is left is refused whole, never partly recorded.
    let v = AccountId(uuid::Uuid::new_v4());
    s.increment_usage(&inc(v, Metric::Documents, 3, Some(5), NOON))
        .await
        .unwrap();
    let out = s
        .increment_usage(&inc(v, Metric::Documents, 3, Some(5), NOON))
        .await
        .unwrap();
    assert_eq!(out, UsageOutcome::Denied { total: 3 });
    let out = s
        .increment_usage(&inc(
            AccountId(uuid::Uuid::new_v4()),
            Metric::Documents,
            6,
            Some(5),
            NOON,
        ))
        .await
        .unwrap();
    assert_eq!(out, UsageOutcome::Denied { total: 0 });
}

pub async fn concurrent_increments_never_pass_the_limit(s: Arc<dyn Store>) {
    let u = AccountId(uuid::Uuid::new_v4());
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                s.increment_usage(&inc(u, Metric::ApiCalls, 1, Some(37), NOON))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut admitted = 0;
    for t in tasks {
        if matches!(t.await.unwrap(), UsageOutcome::Admitted { .. }) {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 37);
    let key = UsageKey::current(Metric::ApiCalls, time(NOON));
    assert_eq!(s.usage(u, &[key]).await.unwrap(), vec![37]);
}

pub async fn unlimited_counters_still_count(s: Arc<dyn Store>) {
    let u = AccountId(uuid::Uuid::new_v4());
    for _ in 0..3 {
        s.increment_usage(&inc(u, Metric::Documents, 1_000_000, None, NOON))
            .await
            .unwrap();
    }
    let key = UsageKey::current(Metric::Documents, time(NOON));
    assert_eq!(s.usage(u, &[key]).await.unwrap(), vec![3_000_000]);
}

pub async fn each_window_counts_apart(s: Arc<dyn Store>) {
    let u = AccountId(uuid::Uuid::new_v4());
    let late = "2026-05-31T23:59:59.999Z";
    let next = "2026-06-01T00:00:00Z";
    assert!(matches!(
        s.increment_usage(&inc(u, Metric::ApiCalls, 2, Some(2), late))
            .await
            .unwrap(),
        UsageOutcome::Admitted { total: 2 }
    ));
    assert!(matches!(
        s.increment_usage(&inc(u, Metric::ApiCalls, 1, Some(2), late))
            .await
            .unwrap(),
        UsageOutcome::Denied { .. }
    ));
    assert_eq!(
        s.increment_usage(&inc(u, Metric::ApiCalls, 1, Some(2), next))
            .await
            .unwrap(),
        UsageOutcome::Admitted { total: 1 }
    );
    s.increment_usage(&inc(u, Metric::Documents, 4, None, late))
        .await
        .unwrap();
    s.increment_usage(&inc(u, Metric::Documents, 1, None, next))
        .await
        .unwrap();
    let keys = [
        UsageKey::current(Metric::ApiCalls, time(late)),
        UsageKey::current(Metric::ApiCalls, time(next)),
        UsageKey::current(Metric::Documents, time(late)),
        UsageKey::current(Metric::Documents, time(next)),
    ];
    assert_eq!(s.usage(u, &keys).await.unwrap(), vec![2, 1, 4, 1]);
}

pub async fn gauges_move_both_ways_but_never_below_zero(s: Arc<dyn Store>) {
    let u = AccountId(uuid::Uuid::new_v4());
    let g = |amount, limit| inc(u, Metric::StorageMb, amount, limit, NOON);
    assert_eq!(
        s.increment_usage(&g(-1, Some(10))).await.unwrap(),
        UsageOutcome::Denied { total: 0 }
    );
    assert_eq!(
        s.increment_usage(&g(8, Some(10))).await.unwrap(),
        UsageOutcome::Admitted { total: 8 }
    );
    assert_eq!(
        s.increment_usage(&g(3, Some(10))).await.unwrap(),
        UsageOutcome::Denied { total: 8 }
    );
    assert_eq!(
        s.increment_usage(&g(-5, Some(10))).await.unwrap(),
        UsageOutcome::Admitted { total: 3 }
    );
    assert_eq!(
        s.increment_usage(&g(-4, Some(10))).await.unwrap(),
        UsageOutcome::Denied { total: 3 }
    );
    // A gauge is a level, not a window: a month later it still stands.
    let later = inc(u, Metric::StorageMb, 0, Some(10), "2026-09-01T00:00:00Z");
    assert_eq!(
        s.increment_usage(&later).await.unwrap(),
        UsageOutcome::Admitted { total: 3 }
    );
}

pub async fn usage_is_kept_per_account(s: Arc<dyn Store>) {
    let (a, b) = (
        AccountId(uuid::Uuid::new_v4()),
        AccountId(uuid::Uuid::new_v4()),
    );
    s.increment_usage(&inc(a, Metric::Documents, 5, Some(5), NOON))
        .await
        .unwrap();
    assert_eq!(
        s.increment_usage(&inc(b, Metric::Documents, 5, Some(5), NOON))
            .await
            .unwrap(),
        UsageOutcome::Admitted { total: 5 }
    );
    let key = UsageKey::current(Metric::Documents, time(NOON));
    assert_eq!(s.usage(a, &[key]).await.unwrap(), vec![5]);
    assert_eq!(
        s.usage(AccountId(uuid::Uuid::new_v4()), &[key])
            .await
            .unwrap(),
        vec![0]
    );
}

fn payment(id: &str, account: AccountId, at: &str) -> Payment {
    Payment {
        id: id.into(),
        account_id: account,
        amount: Money::usd_cents(9_900),
        status: "succeeded".into(),
        description: "Professional, monthly".into(),
        stripe_invoice_id: Some(format!("in_{id}")),
        receipt_url: None,
        created_at: time(at),
    }
}

pub async fn payments_are_idempotent_scoped_and_newest_first(s: Arc<dyn Store>) {
    let (a, b) = (
        AccountId(uuid::Uuid::new_v4()),
        AccountId(uuid::Uuid::new_v4()),
    );
    let now = time("2026-06-01T00:00:00Z");
    s.record_payment(&payment("pi_1", a, "2026-03-01T00:00:00Z"))
        .await
        .unwrap();
    s.record_payment(&payment("pi_1", a, "2026-03-01T00:00:00Z"))
        .await
        .unwrap();
    s.record_payment(&payment("pi_2", a, "2026-04-01T00:00:00Z"))
        .await
        .unwrap();
    s.record_payment(&payment("pi_3", b, "2026-04-01T00:00:00Z"))
        .await
        .unwrap();
    let ids: Vec<String> = s
        .payments(a, now)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(ids, ["pi_2", "pi_1"]);
    assert_eq!(s.payments(b, now).await.unwrap().len(), 1);
    assert_eq!(
        s.payments(a, now).await.unwrap()[0].amount,
        Money::usd_cents(9_900)
    );
}

fn invoice(id: &str, account: AccountId, status: &str) -> Invoice {
    Invoice {
        id: id.into(),
        account_id: account,
        number: Some("KR-0001".into()),
        amount_due: Money::usd_cents(9_900),
        amount_paid: Money::usd_cents(0),
        status: status.into(),
        period_start: None,
        period_end: None,
        hosted_invoice_url: None,
        pdf_url: None,
        created_at: time("2026-05-01T00:00:00Z"),
    }
}

pub async fn invoices_upsert_and_never_move_between_accounts(s: Arc<dyn Store>) {
    let (a, b) = (
        AccountId(uuid::Uuid::new_v4()),
        AccountId(uuid::Uuid::new_v4()),
    );
    let now = time(NOON);
    s.upsert_invoice(&invoice("in_1", a, "open")).await.unwrap();
    s.upsert_invoice(&invoice("in_1", a, "paid")).await.unwrap();
    let mine = s.invoices(a, now).await.unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].status, "paid");
    let stolen = s.upsert_invoice(&invoice("in_1", b, "void")).await;
    assert!(matches!(stolen, Err(StoreError::Conflict(_))), "{stolen:?}");
    assert!(s.invoices(b, now).await.unwrap().is_empty());
    assert_eq!(s.invoices(a, now).await.unwrap()[0].status, "paid");
}

pub async fn webhook_events_are_claimed_once(s: Arc<dyn Store>) {
    let now = time(NOON);
    assert!(!s.event_seen("evt_1").await.unwrap());
    assert!(s.claim_event("evt_1", now).await.unwrap());
    assert!(s.event_seen("evt_1").await.unwrap());
    assert!(!s.claim_event("evt_1", now).await.unwrap());
    let racers: Vec<_> = (0..20)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.claim_event("evt_race", now).await.unwrap() })
        })
        .collect();
    let mut winners = 0;
    for r in racers {
        winners += r.await.unwrap() as u32;
    }
    assert_eq!(winners, 1);
}

pub async fn retention_purges_only_what_expired(s: Arc<dyn Store>) {
    let u = AccountId(uuid::Uuid::new_v4());
    let paid_at = "2019-01-01T00:00:00Z";
    s.record_payment(&payment("pi_old", u, paid_at))
        .await
        .unwrap();
    let used_at = "2026-01-15T00:00:00Z";
    s.increment_usage(&inc(u, Metric::Documents, 1, None, used_at))
        .await
        .unwrap();
    s.increment_usage(&inc(u, Metric::StorageMb, 5, None, used_at))
        .await
        .unwrap();

    let payment_expiry = time(paid_at) + Duration::days(PAYMENT_RETENTION_DAYS);
    // Kept for seven years, to the millisecond.
    s.purge_expired(payment_expiry - Duration::milliseconds(1))
        .await
        .unwrap();
    assert_eq!(
        s.payments(u, payment_expiry - Duration::milliseconds(1))
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(s.payments(u, payment_expiry).await.unwrap().is_empty());

    // January's document count lives until 90 days after January ends.
    let usage_expiry = time("2026-02-01T00:00:00Z") + Duration::days(USAGE_RETENTION_DAYS);
    let docs = UsageKey::current(Metric::Documents, time(used_at));
    let storage = UsageKey::current(Metric::StorageMb, time(used_at));
    s.purge_expired(usage_expiry - Duration::milliseconds(1))
        .await
        .unwrap();
    assert_eq!(s.usage(u, &[docs, storage]).await.unwrap(), vec![1, 5]);
    let purged = s.purge_expired(usage_expiry).await.unwrap();
    assert!(purged >= 1);
    assert_eq!(
        s.usage(u, &[docs, storage]).await.unwrap(),
        vec![0, 5],
        "gauges never expire"
    );
}

fn message(account: AccountId, id: &str) -> OutboxMessage {
    OutboxMessage {
        id: id.into(),
        account_id: account,
        to: None,
        kind: EmailKind::SubscriptionConfirmed.into(),
        data: BTreeMap::from([("plan".to_owned(), "Professional".to_owned())]),
        body: None,
        created_at: time(NOON),
    }
}

pub async fn outbox_writes_are_atomic_with_the_account_and_idempotent(s: Arc<dyn Store>) {
    let (_, mut u, first) = register(&s, "outbox@mail.io").await;
    u.subscription.auto_renew = true;
    let second = s
        .replace_account_and_enqueue(&u, &first, &[message(u.id, "m1")], &[])
        .await
        .unwrap();
    // A stale writer changes nothing, and enqueues nothing either.
    u.subscription.cancel_at_period_end = true;
    let lost = s
        .replace_account_and_enqueue(&u, &first, &[message(u.id, "m2")], &[])
        .await;
    assert!(matches!(lost, Err(StoreError::VersionConflict)), "{lost:?}");
    s.replace_account_and_enqueue(
        &u,
        &second,
        &[message(u.id, "m1"), message(u.id, "m3")],
        &[],
    )
    .await
    .unwrap();
    s.enqueue(&[message(u.id, "m3"), message(u.id, "m4")])
        .await
        .unwrap();
    let ids: Vec<String> = s
        .outbox_for_account(u.id)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(ids, ["m1", "m3", "m4"]);
    assert!(s
        .outbox_for_account(AccountId(uuid::Uuid::new_v4()))
        .await
        .unwrap()
        .is_empty());
}

/// What billing's health reads: unfinished messages, whatever their age,
/// and those given up on since a time; never the sent ones.
pub async fn unsettled_messages_are_the_unfinished_and_the_recently_failed(s: Arc<dyn Store>) {
    let a = AccountId(uuid::Uuid::new_v4());
    let now = time(NOON);
    let lease = Duration::minutes(5);
    let ids = ["h-failed", "h-pending", "h-sending", "h-sent"];
    s.enqueue(&ids.map(|id| message(a, id))).await.unwrap();
    for id in ["h-failed", "h-sending", "h-sent"] {
        assert!(s.claim_outbox(a, id, now, lease).await.unwrap().is_some());
    }
    let gave_up = SendResult::GaveUp {
        error: "smtp 550".into(),
    };
    s.finish_outbox(a, "h-failed", &gave_up, now).await.unwrap();
    s.finish_outbox(a, "h-sent", &SendResult::Sent, now)
        .await
        .unwrap();
    let unsettled = |since| {
        let s = s.clone();
        async move {
            s.unsettled_outbox(since)
                .await
                .unwrap()
                .into_iter()
                .filter(|(_, m)| m.account_id == a)
                .map(|(standing, m)| (m.id, standing.state))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        unsettled(now).await,
        [
            ("h-failed".to_owned(), OutboxState::Failed),
            ("h-pending".to_owned(), OutboxState::Pending),
            ("h-sending".to_owned(), OutboxState::Sending),
        ]
    );
    // A failure written before `since` is no longer news; unfinished ones are.
    assert_eq!(
        unsettled(now + Duration::milliseconds(1)).await,
        [
            ("h-pending".to_owned(), OutboxState::Pending),
            ("h-sending".to_owned(), OutboxState::Sending),
        ]
    );
}

fn audit(account: AccountId, n: u128, at: &str) -> AuditEntry {
    AuditEntry {
        id: AuditId(uuid::Uuid::from_u128(n)),
        account_id: account,
        at: time(at),
        actor: Actor::System,
        action: AuditAction::OverrideSet,
        reason: Some(format!("entry {n}")),
        before: None,
        after: Some(BTreeMap::from([("n".to_owned(), n.to_string())])),
    }
}

pub async fn audit_entries_go_with_the_account_write_and_page_newest_first(s: Arc<dyn Store>) {
    let (_, mut a, first) = register(&s, "audit@mail.io").await;
    let (_, other, _) = register(&s, "other-audit@mail.io").await;
    a.subscription.auto_renew = true;
    let second = s
        .replace_account_and_enqueue(&a, &first, &[], &[audit(a.id, 1, "2026-01-01T00:00:00Z")])
        .await
        .unwrap();
    // A stale write leaves no entry.
    let lost = s
        .replace_account_and_enqueue(&a, &first, &[], &[audit(a.id, 2, "2026-01-02T00:00:00Z")])
        .await;
    assert!(matches!(lost, Err(StoreError::VersionConflict)), "{lost:?}");
    // Entry 1 again is kept once; 3 and 4 are new, 4 older than 3.
    s.replace_account_and_enqueue(
        &a,
        &second,
        &[],
        &[
            audit(a.id, 1, "2026-01-01T00:00:00Z"),
            audit(a.id, 3, "2026-01-03T00:00:00Z"),
        ],
    )
    .await
    .unwrap();
    s.append_audit(&[
        audit(a.id, 4, "2026-01-02T12:00:00Z"),
        audit(a.id, 3, "2026-01-03T00:00:00Z"),
        audit(other.id, 5, "2026-01-05T00:00:00Z"),
    ])
    .await
    .unwrap();
    let ids = |entries: Vec<AuditEntry>| -> Vec<u128> {
        entries.into_iter().map(|e| e.id.0.as_u128()).collect()
    };
    assert_eq!(ids(s.audit_log(a.id, None, 10).await.unwrap()), [3, 4, 1]);
    assert_eq!(ids(s.audit_log(a.id, None, 2).await.unwrap()), [3, 4]);
    let after = Some(AuditId(uuid::Uuid::from_u128(4)));
    assert_eq!(ids(s.audit_log(a.id, after, 2).await.unwrap()), [1]);
    let full = s.audit_log(a.id, None, 1).await.unwrap();
    assert_eq!(full[0], audit(a.id, 3, "2026-01-03T00:00:00Z"));
    // Another account's entry is no cursor here.
    let foreign = Some(AuditId(uuid::Uuid::from_u128(5)));
    assert!(matches!(
        s.audit_log(a.id, foreign, 2).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(ids(s.audit_log(other.id, None, 10).await.unwrap()), [5]);
}

pub async fn outbox_claims_are_exclusive_until_the_lease_ends(s: Arc<dyn Store>) {
    let u = AccountId(uuid::Uuid::new_v4());
    let now = time(NOON);
    let lease = Duration::minutes(5);
    s.enqueue(&[message(u, "c1"), message(u, "c2")])
        .await
        .unwrap();
    let pending: Vec<String> = s
        .pending_outbox(now, lease, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(pending, ["c1", "c2"]);

    // Two senders race for one message: exactly one gets it.
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.claim_outbox(u, "c1", now, lease).await.unwrap() })
        })
        .collect();
    let mut winners = 0;
    for r in racers {
        winners += r.await.unwrap().is_some() as u32;
    }
    assert_eq!(winners, 1);
    assert_eq!(
        s.outbox_status(u, "c1").await.unwrap(),
        Some((OutboxState::Sending, 1))
    );
    // Another user's id never reaches this user's message.
    assert!(s
        .claim_outbox(AccountId(uuid::Uuid::new_v4()), "c2", now, lease)
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        s.outbox_status(AccountId(uuid::Uuid::new_v4()), "c2")
            .await
            .unwrap(),
        None
    );

    // A sender that crashed loses its claim when the lease ends.
    let later = now + lease;
    assert!(s
        .claim_outbox(u, "c1", now + Duration::minutes(1), lease)
        .await
        .unwrap()
        .is_none());
    let pending: Vec<String> = s
        .pending_outbox(later, lease, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(pending, ["c1", "c2"]);
    assert!(s
        .claim_outbox(u, "c1", later, lease)
        .await
        .unwrap()
        .is_some());
    let retry_at = later + chrono::Duration::minutes(5);
    let retry = SendResult::Retry {
        error: "smtp 451".into(),
        retry_at,
    };
    s.finish_outbox(u, "c1", &retry, later).await.unwrap();
    assert_eq!(
        s.outbox_status(u, "c1").await.unwrap(),
        Some((OutboxState::Pending, 2))
    );
    // A failed send waits its backoff: neither claimed nor listed before.
    let just_before = retry_at - chrono::Duration::milliseconds(1);
    assert!(s
        .claim_outbox(u, "c1", just_before, lease)
        .await
        .unwrap()
        .is_none());
    let due = |at| {
        let s = s.clone();
        async move {
            s.pending_outbox(at, lease, 10)
                .await
                .unwrap()
                .into_iter()
                .map(|m| m.id)
                .any(|id| id == "c1")
        }
    };
    assert!(!due(just_before).await);
    assert!(due(retry_at).await);
    assert!(s
        .claim_outbox(u, "c1", retry_at, lease)
        .await
        .unwrap()
        .is_some());
    s.finish_outbox(u, "c1", &SendResult::Sent, retry_at)
        .await
        .unwrap();
    assert_eq!(
        s.outbox_status(u, "c1").await.unwrap(),
        Some((OutboxState::Sent, 3))
    );
    // Sent is final: no claim, and not pending.
    assert!(s
        .claim_outbox(u, "c1", later + lease, lease)
        .await
        .unwrap()
        .is_none());
    let pending: Vec<String> = s
        .pending_outbox(later + lease, lease, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(pending, ["c2"]);
}

fn event(account: AccountId, id: &str, second: i64) -> OutboxMessage {
    OutboxMessage {
        id: id.into(),
        account_id: account,
        to: None,
        kind: EventKind::MemberAdded.into(),
        data: BTreeMap::new(),
        body: Some(format!(
            r#"{{"type":"member.added","data":{{"n":"{id}"}}}}"#
        )),
        created_at: time(NOON) + Duration::seconds(second),
    }
}

pub async fn an_accounts_events_are_claimed_in_order_and_others_are_not_held(s: Arc<dyn Store>) {
    let (a, b) = (
        AccountId(uuid::Uuid::new_v4()),
        AccountId(uuid::Uuid::new_v4()),
    );
    let lease = Duration::minutes(5);
    let now = time(NOON) + Duration::minutes(1);
    let mut mail = message(a, "a-mail");
    mail.created_at = time(NOON) + Duration::seconds(3);
    let written = [
        event(a, "a-e1", 0),
        event(a, "a-e2", 1),
        event(b, "b-e1", 2),
        mail,
    ];
    s.enqueue(&written).await.unwrap();
    // Events read back whole: kind and body.
    let stored = s.outbox_for_account(a).await.unwrap();
    assert_eq!(
        stored,
        [&written[0], &written[1], &written[3]].map(Clone::clone)
    );

    let ids = |m: Vec<OutboxMessage>| m.into_iter().map(|m| m.id).collect::<Vec<_>>();
    let pending = |at| {
        let s = s.clone();
        async move { ids(s.pending_outbox(at, lease, 10).await.unwrap()) }
    };
    // The second event of `a` waits for the first; `b` and the email do not.
    assert_eq!(pending(now).await, ["a-e1", "b-e1", "a-mail"]);
    assert_eq!(
        ids(s.due_outbox_for_account(a, now, lease).await.unwrap()),
        ["a-e1", "a-mail"]
    );
    assert!(s
        .claim_outbox(a, "a-e2", now, lease)
        .await
        .unwrap()
        .is_none());
    assert!(s
        .claim_outbox(b, "b-e1", now, lease)
        .await
        .unwrap()
        .is_some());

    // Being sent, the first still holds the second.
    assert!(s
        .claim_outbox(a, "a-e1", now, lease)
        .await
        .unwrap()
        .is_some());
    assert!(s
        .claim_outbox(a, "a-e2", now, lease)
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        ids(s.due_outbox_for_account(a, now, lease).await.unwrap()),
        ["a-mail"]
    );

    // Failed and waiting for its retry, too.
    let retry_at = now + Duration::minutes(1);
    let retry = SendResult::Retry {
        error: "500".into(),
        retry_at,
    };
    s.finish_outbox(a, "a-e1", &retry, now).await.unwrap();
    assert!(s
        .claim_outbox(a, "a-e2", retry_at, lease)
        .await
        .unwrap()
        .is_none());
    assert_eq!(pending(retry_at).await, ["a-e1", "a-mail"]);

    // Sent, it lets the second go.
    assert!(s
        .claim_outbox(a, "a-e1", retry_at, lease)
        .await
        .unwrap()
        .is_some());
    s.finish_outbox(a, "a-e1", &SendResult::Sent, retry_at)
        .await
        .unwrap();
    assert_eq!(
        ids(s.due_outbox_for_account(a, retry_at, lease).await.unwrap()),
        ["a-e2", "a-mail"]
    );
    let second = s.claim_outbox(a, "a-e2", retry_at, lease).await.unwrap();
    assert_eq!(second.as_ref(), Some(&written[1]));
    assert_eq!(
        s.outbox_status(a, "a-e1").await.unwrap(),
        Some((OutboxState::Sent, 2))
    );
}

pub async fn stale_subscriptions_are_listed_most_overdue_first(s: Arc<dyn Store>) {
    let now = time(NOON);
    let mut overdue = account_of(&user("overdue@mail.io"));
    overdue.subscription.plan_id = PlanId::Pro;
    overdue.subscription.stripe_subscription_id = Some("sub_a".into());
    overdue.subscription.current_period_end = Some(now - Duration::days(2));
    let mut later = account_of(&user("later@mail.io"));
    later.subscription = overdue.subscription.clone();
    later.subscription.current_period_end = Some(now + Duration::days(2));
    let mut checkout = account_of(&user("checkout@mail.io"));
    checkout.subscription.status = SubscriptionStatus::Incomplete;
    checkout.subscription.checkout_session_id = Some("cs_1".into());
    checkout.subscription.checkout_started_at = Some(now - Duration::hours(3));
    for (n, a) in [&overdue, &later, &checkout].into_iter().enumerate() {
        let u = user(&format!("owner{n}@mail.io"));
        s.register(&u, a, &owner(&u, a), &[]).await.unwrap();
    }
    register(&s, "free@mail.io").await;
    assert_eq!(
        s.stale_subscriptions(now, 10).await.unwrap(),
        vec![overdue.id, checkout.id]
    );
    assert_eq!(
        s.stale_subscriptions(now, 1).await.unwrap(),
        vec![overdue.id]
    );
    // Repaired (renewed), it drops off the list.
    let etag = s.account_by_id(overdue.id).await.unwrap().unwrap().etag;
    overdue.subscription.current_period_end = Some(now + Duration::days(28));
    s.replace_account(&overdue, &etag).await.unwrap();
    assert_eq!(
        s.stale_subscriptions(now, 10).await.unwrap(),
        vec![checkout.id]
    );
}

pub async fn rollups_recompute_pages_of_accounts_of_one_day(s: Arc<dyn Store>) {
    let day = "2026-05-10T12:00:00Z";
    let accounts: Vec<AccountId> = (0..5).map(|_| AccountId(uuid::Uuid::new_v4())).collect();
    for (n, u) in accounts.iter().enumerate() {
        s.increment_usage(&inc(*u, Metric::ApiCalls, n as i64 + 1, None, day))
            .await
            .unwrap();
        s.increment_usage(&inc(*u, Metric::Documents, 2, None, day))
            .await
            .unwrap();
        // Usage of another day of the month counts in the month too.
        s.increment_usage(&inc(*u, Metric::ApiCalls, 10, None, "2026-05-01T00:00:00Z"))
            .await
            .unwrap();
    }
    // Someone with usage only on another day is not in this day's pages.
    s.increment_usage(&inc(
        AccountId(uuid::Uuid::new_v4()),
        Metric::ApiCalls,
        1,
        None,
        "2026-05-11T00:00:00Z",
    ))
    .await
    .unwrap();
    let day_w = Window::containing(Period::Day, time(day));
    let month = Window::containing(Period::Month, time(day));
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = s.roll_up_day(day_w, month, after, 2).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.account_id);
        seen.extend(page);
    }
    assert_eq!(seen.len(), 5);
    for summary in &seen {
        let n = accounts
            .iter()
            .position(|u| *u == summary.account_id)
            .unwrap() as u64;
        assert_eq!((summary.api_calls, summary.documents), (n + 1 + 10, 2));
        assert_eq!(
            s.monthly_summary(summary.account_id, month)
                .await
                .unwrap()
                .as_ref(),
            Some(summary)
        );
    }
    // Recomputed, not added: a second run gives the same numbers.
    let again = s.roll_up_day(day_w, month, None, 10).await.unwrap();
    let mut first: Vec<_> = seen
        .iter()
        .map(|x| (x.account_id.to_string(), x.api_calls))
        .collect();
    let mut second: Vec<_> = again
        .iter()
        .map(|x| (x.account_id.to_string(), x.api_calls))
        .collect();
    first.sort();
    second.sort();
    assert_eq!(first, second);
    assert_eq!(s.rollup_cursor().await.unwrap(), None);
    s.set_rollup_cursor("2026-05-10".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(
        s.rollup_cursor().await.unwrap(),
        Some("2026-05-10".parse().unwrap())
    );
}

fn invitation(account: &Account, by: &User, email: &str, now: chrono::DateTime<Utc>) -> Invitation {
    let id = uuid::Uuid::new_v4();
    Invitation {
        id: InvitationId(id),
        account_id: account.id,
        email: Email::parse(email).unwrap(),
        role: Role::Member,
        invited_by: by.id,
        token_hash: format!("{:064x}", id.as_u128()),
        created_at: now,
        expires_at: now + INVITATION_VALIDITY,
    }
}

fn invitation_email(account: &Account, inv: &Invitation) -> OutboxMessage {
    OutboxMessage {
        id: format!("{}:invitation:{}", account.id, inv.id),
        account_id: account.id,
        to: Some(inv.email.clone()),
        kind: EmailKind::Invitation.into(),
        data: BTreeMap::new(),
        body: None,
        created_at: inv.created_at,
    }
}

pub async fn invitations_hold_seats_and_are_accepted_once(s: Arc<dyn Store>) {
    let now = time(NOON);
    let (owner_user, account, _) = register(&s, "owner@team.io").await;
    let inv = invitation(&account, &owner_user, "new@team.io", now);
    let created = s
        .invite(&inv, Some(3), now, &[invitation_email(&account, &inv)], &[])
        .await
        .unwrap();
    assert_eq!(created, InvitationOutcome::Created);
    // The invitation and its email are written together.
    assert_eq!(s.outbox_for_account(account.id).await.unwrap().len(), 1);
    assert_eq!(
        s.invitations(account.id, now).await.unwrap(),
        std::slice::from_ref(&inv)
    );
    assert_eq!(
        s.seats(account.id, now).await.unwrap(),
        Seats {
            members: 1,
            pending_invitations: 1
        }
    );
    // The same address again, or a member's, is refused.
    let again = invitation(&account, &owner_user, "new@team.io", now);
    assert_eq!(
        s.invite(&again, Some(3), now, &[], &[]).await.unwrap(),
        InvitationOutcome::AlreadyInvited
    );
    let owner_again = invitation(&account, &owner_user, "owner@team.io", now);
    assert_eq!(
        s.invite(&owner_again, Some(3), now, &[], &[])
            .await
            .unwrap(),
        InvitationOutcome::AlreadyInvited
    );
    // A wrong token, or the right one for another account, finds nothing.
    let (joiner, other, _) = register(&s, "new@team.io").await;
    let wrong = s
        .accept_invitation(account.id, &"0".repeat(64), joiner.id, None, now, &[], &[])
        .await
        .unwrap();
    assert_eq!(wrong, AcceptOutcome::Gone);
    let elsewhere = s
        .accept_invitation(other.id, &inv.token_hash, joiner.id, None, now, &[], &[])
        .await
        .unwrap();
    assert_eq!(elsewhere, AcceptOutcome::Gone);
    let joined = s
        .accept_invitation(account.id, &inv.token_hash, joiner.id, None, now, &[], &[])
        .await
        .unwrap();
    let AcceptOutcome::Joined(m, _) = joined else {
        panic!("{joined:?}")
    };
    assert_eq!(
        (m.account_id, m.user_id, m.role),
        (account.id, joiner.id, Role::Member)
    );
    assert_eq!(s.membership(account.id, joiner.id).await.unwrap(), Some(m));
    // Single use: the invitation is gone, and its seat is now a member's.
    let twice = s
        .accept_invitation(account.id, &inv.token_hash, joiner.id, None, now, &[], &[])
        .await
        .unwrap();
    assert_eq!(twice, AcceptOutcome::Gone);
    assert!(s.invitations(account.id, now).await.unwrap().is_empty());
    assert_eq!(
        s.seats(account.id, now).await.unwrap(),
        Seats {
            members: 2,
            pending_invitations: 0
        }
    );
    let mine: Vec<AccountId> = s
        .memberships_of(joiner.id)
        .await
        .unwrap()
        .iter()
        .map(|m| m.account_id)
        .collect();
    assert_eq!(mine.len(), 2);
    assert!(mine.contains(&account.id) && mine.contains(&other.id));

    // Expired: no seat, and cannot be accepted; withdrawn: gone.
    let old = invitation(&account, &owner_user, "late@team.io", now);
    s.invite(&old, Some(3), now, &[], &[]).await.unwrap();
    let later = now + INVITATION_VALIDITY;
    assert_eq!(
        s.seats(account.id, later)
            .await
            .unwrap()
            .pending_invitations,
        0
    );
    let (late, _, _) = register(&s, "late@team.io").await;
    let expired = s
        .accept_invitation(account.id, &old.token_hash, late.id, None, later, &[], &[])
        .await
        .unwrap();
    assert_eq!(expired, AcceptOutcome::Gone);
    let gone = invitation(&account, &owner_user, "gone@team.io", now);
    s.invite(&gone, Some(3), now, &[], &[]).await.unwrap();
    // Another account cannot withdraw it; its own can, once.
    assert!(!s.withdraw_invitation(other.id, gone.id, &[]).await.unwrap());
    assert!(s
        .withdraw_invitation(account.id, gone.id, &[])
        .await
        .unwrap());
    assert!(!s
        .withdraw_invitation(account.id, gone.id, &[])
        .await
        .unwrap());
}

pub async fn concurrent_invitations_never_pass_the_seat_limit(s: Arc<dyn Store>) {
    let now = time(NOON);
    let (owner_user, account, _) = register(&s, "boss@seats.io").await;
    // Pro: 10 seats, 1 taken by the owner; 30 invitations race for 9.
    let tasks: Vec<_> = (0..30)
        .map(|n| {
            let (s, account, owner_user) = (s.clone(), account.clone(), owner_user.clone());
            tokio::spawn(async move {
                let inv = invitation(&account, &owner_user, &format!("p{n}@seats.io"), now);
                let email = invitation_email(&account, &inv);
                s.invite(&inv, Some(10), now, &[email], &[]).await.unwrap()
            })
        })
        .collect();
    let mut created = 0;
    for t in tasks {
        match t.await.unwrap() {
            InvitationOutcome::Created => created += 1,
            InvitationOutcome::SeatsFull(seats) => assert_eq!(seats.used(), 10),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(created, 9);
    assert_eq!(s.seats(account.id, now).await.unwrap().used(), 10);
    assert_eq!(s.invitations(account.id, now).await.unwrap().len(), 9);
    // Only the admitted invitations' emails were enqueued.
    assert_eq!(s.outbox_for_account(account.id).await.unwrap().len(), 9);
}

pub async fn members_are_removed_and_roles_change_but_never_the_owner_s(s: Arc<dyn Store>) {
    let now = time(NOON);
    let (boss, account, _) = register(&s, "boss@roles.io").await;
    let (worker, _, _) = register(&s, "worker@roles.io").await;
    let inv = invitation(&account, &boss, "worker@roles.io", now);
    s.invite(&inv, None, now, &[], &[]).await.unwrap();
    s.accept_invitation(account.id, &inv.token_hash, worker.id, None, now, &[], &[])
        .await
        .unwrap();
    assert!(s
        .set_role(account.id, worker.id, Role::Admin, &[])
        .await
        .unwrap());
    assert_eq!(
        s.membership(account.id, worker.id)
            .await
            .unwrap()
            .unwrap()
            .role,
        Role::Admin
    );
    // The owner's role is not set, nor is anyone made owner this way.
    assert!(!s
        .set_role(account.id, boss.id, Role::Member, &[])
        .await
        .unwrap());
    assert!(!s
        .set_role(account.id, worker.id, Role::Owner, &[])
        .await
        .unwrap());
    assert!(!s
        .remove_member(account.id, boss.id, &[], &[])
        .await
        .unwrap());
    let bye = OutboxMessage {
        id: "bye".into(),
        account_id: account.id,
        to: Some(worker.email.clone()),
        kind: EmailKind::MemberRemoved.into(),
        data: BTreeMap::new(),
        body: None,
        created_at: now,
    };
    assert!(s
        .remove_member(account.id, worker.id, &[bye], &[])
        .await
        .unwrap());
    assert!(s.membership(account.id, worker.id).await.unwrap().is_none());
    assert!(!s
        .remove_member(account.id, worker.id, &[], &[])
        .await
        .unwrap());
    let ids: Vec<String> = s
        .outbox_for_account(account.id)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(ids, ["bye"]);
    assert_eq!(s.members(account.id).await.unwrap().len(), 1);
    // Their own account is untouched.
    assert_eq!(s.memberships_of(worker.id).await.unwrap().len(), 1);
}

pub async fn ownership_moves_in_one_step(s: Arc<dyn Store>) {
    let now = time(NOON);
    let (boss, account, _) = register(&s, "boss@own.io").await;
    let (heir, _, _) = register(&s, "heir@own.io").await;
    let (stranger, _, _) = register(&s, "stranger@own.io").await;
    let inv = invitation(&account, &boss, "heir@own.io", now);
    s.invite(&inv, None, now, &[], &[]).await.unwrap();
    s.accept_invitation(account.id, &inv.token_hash, heir.id, None, now, &[], &[])
        .await
        .unwrap();
    // Only to a member, and only from the owner.
    assert!(!s
        .transfer_ownership(account.id, boss.id, stranger.id, &[])
        .await
        .unwrap());
    assert!(!s
        .transfer_ownership(account.id, heir.id, boss.id, &[])
        .await
        .unwrap());
    assert!(s
        .transfer_ownership(account.id, boss.id, heir.id, &[])
        .await
        .unwrap());
    let roles: Vec<(UserId, Role)> = s
        .members(account.id)
        .await
        .unwrap()
        .iter()
        .map(|m| (m.user_id, m.role))
        .collect();
    assert!(roles.contains(&(heir.id, Role::Owner)));
    assert!(roles.contains(&(boss.id, Role::Admin)));
    assert_eq!(roles.iter().filter(|(_, r)| *r == Role::Owner).count(), 1);
}

pub async fn an_account_over_its_seats_takes_no_one_in(s: Arc<dyn Store>) {
    let now = time(NOON);
    let (boss, account, _) = register(&s, "boss@over.io").await;
    let inv = invitation(&account, &boss, "late@over.io", now);
    s.invite(&inv, Some(10), now, &[], &[]).await.unwrap();
    // Written by an instance whose clock runs ahead: it still holds a seat.
    let ahead = invitation(&account, &boss, "ahead@over.io", now + Duration::minutes(2));
    s.invite(&ahead, Some(10), now, &[], &[]).await.unwrap();
    assert_eq!(s.seats(account.id, now).await.unwrap().used(), 3);
    // The plan lost seats since (a downgrade, a lapse): two seats, three held.
    let (late, _, _) = register(&s, "late@over.io").await;
    let refused = s
        .accept_invitation(account.id, &inv.token_hash, late.id, Some(2), now, &[], &[])
        .await
        .unwrap();
    assert_eq!(
        refused,
        AcceptOutcome::SeatsFull(Seats {
            members: 1,
            pending_invitations: 2
        })
    );
    // Nothing was written, and the invitation is still there to accept later.
    assert!(s.membership(account.id, late.id).await.unwrap().is_none());
    let joined = s
        .accept_invitation(account.id, &inv.token_hash, late.id, Some(3), now, &[], &[])
        .await
        .unwrap();
    assert!(matches!(joined, AcceptOutcome::Joined(..)), "{joined:?}");
}

pub async fn a_removed_or_demoted_admin_s_invitations_go_with_them(s: Arc<dyn Store>) {
    let now = time(NOON);
    let (boss, account, _) = register(&s, "boss@gone.io").await;
    let mut admins = Vec::new();
    for name in ["first", "second"] {
        let email = format!("{name}@gone.io");
        let (admin, _, _) = register(&s, &email).await;
        let mut inv = invitation(&account, &boss, &email, now);
        inv.role = Role::Admin;
        s.invite(&inv, None, now, &[], &[]).await.unwrap();
        s.accept_invitation(account.id, &inv.token_hash, admin.id, None, now, &[], &[])
            .await
            .unwrap();
        // Each admin invites a second address of their own.
        let own = invitation(&account, &admin, &format!("{name}.alt@gone.io"), now);
        s.invite(&own, None, now, &[], &[]).await.unwrap();
        let kept = invitation(&account, &boss, &format!("{name}.boss@gone.io"), now);
        s.invite(&kept, None, now, &[], &[]).await.unwrap();
        admins.push((admin, own));
    }
    let (removed, removed_link) = &admins[0];
    let (demoted, demoted_link) = &admins[1];
    assert!(s
        .remove_member(account.id, removed.id, &[], &[])
        .await
        .unwrap());
    assert!(s
        .set_role(account.id, demoted.id, Role::Member, &[])
        .await
        .unwrap());
    let pending: Vec<InvitationId> = s
        .invitations(account.id, now)
        .await
        .unwrap()
        .iter()
        .map(|i| i.id)
        .collect();
    assert!(!pending.contains(&removed_link.id) && !pending.contains(&demoted_link.id));
    // The owner's invitations stay.
    assert_eq!(pending.len(), 2);
    let back = s
        .accept_invitation(
            account.id,
            &removed_link.token_hash,
            removed.id,
            None,
            now,
            &[],
            &[],
        )
        .await
        .unwrap();
    assert_eq!(back, AcceptOutcome::Gone);
}

/// A user of the identity provider, as an import makes them.
fn outside_user(subject: &str) -> User {
    User::of_identity(
        ExternalIdentity {
            issuer: "https://id.example".into(),
            subject: subject.into(),
        },
        Email::parse(&format!("{subject}@corp.io")).unwrap(),
        true,
        PersonName::parse("Imported").unwrap(),
        time(NOON),
    )
}

pub async fn imported_members_join_once_and_hold_seats(s: Arc<dyn Store>) {
    let now = time(NOON);
    let (boss, account, _) = register(&s, "boss@import.io").await;
    let member = outside_user("m1");
    // A user who belongs to no account yet; made once.
    assert!(s.add_user(&member).await.unwrap());
    assert!(!s.add_user(&member).await.unwrap());
    assert_eq!(
        s.user_by_id(member.id).await.unwrap().unwrap().value,
        member
    );
    assert!(s.memberships_of(member.id).await.unwrap().is_empty());

    let joins = Membership {
        account_id: account.id,
        user_id: member.id,
        role: Role::Admin,
        joined_at: now,
    };
    assert!(s.add_member(&joins, &[]).await.unwrap());
    // Once: a second add leaves them as they are.
    let demoted = Membership {
        role: Role::Member,
        ..joins.clone()
    };
    assert!(!s.add_member(&demoted, &[]).await.unwrap());
    assert_eq!(
        s.membership(account.id, member.id).await.unwrap(),
        Some(joins.clone())
    );
    assert_eq!(
        s.memberships_of(member.id).await.unwrap(),
        std::slice::from_ref(&joins)
    );
    // Whatever the plan's seats: and the seats count them, so an
    // invitation against two seats finds none free.
    let other = outside_user("m2");
    s.add_user(&other).await.unwrap();
    let third = Membership {
        user_id: other.id,
        role: Role::Member,
        ..joins.clone()
    };
    assert!(s.add_member(&third, &[]).await.unwrap());
    assert_eq!(s.seats(account.id, now).await.unwrap().members, 3);
    let inv = invitation(&account, &boss, "more@import.io", now);
    assert_eq!(
        s.invite(&inv, Some(3), now, &[], &[]).await.unwrap(),
        InvitationOutcome::SeatsFull(Seats {
            members: 3,
            pending_invitations: 0
        })
    );
    // No account, no member; an owner comes with the account only.
    let nowhere = Membership {
        account_id: AccountId(uuid::Uuid::new_v4()),
        ..joins.clone()
    };
    assert!(matches!(
        s.add_member(&nowhere, &[]).await,
        Err(StoreError::NotFound)
    ));
    let owner = Membership {
        role: Role::Owner,
        user_id: other.id,
        ..joins
    };
    assert!(s.add_member(&owner, &[]).await.is_err());
    assert_eq!(
        s.membership(account.id, boss.id)
            .await
            .unwrap()
            .unwrap()
            .role,
        Role::Owner
    );
}

/// Entry `n` of a member change by `by`, `n` seconds after noon.
fn member_audit(account: AccountId, by: &User, n: u128, action: AuditAction) -> AuditEntry {
    AuditEntry {
        id: AuditId(uuid::Uuid::from_u128(n)),
        account_id: account,
        at: time(NOON) + Duration::seconds(n as i64),
        actor: Actor::User { user_id: by.id },
        action,
        reason: None,
        before: None,
        after: Some(BTreeMap::from([("n".to_owned(), n.to_string())])),
    }
}

pub async fn each_member_change_writes_its_audit_entry_and_a_refused_one_none(s: Arc<dyn Store>) {
    use AuditAction::*;
    let now = time(NOON);
    let (boss, account, _) = register(&s, "boss@audit-team.io").await;
    let (ada, _, _) = register(&s, "ada@audit-team.io").await;
    let (bob, _, _) = register(&s, "bob@audit-team.io").await;
    let id = account.id;
    let e = |n: u128, by: &User, action| [member_audit(id, by, n, action)];
    let log = || {
        let s = s.clone();
        async move {
            s.audit_log(id, None, 100)
                .await
                .unwrap()
                .iter()
                .map(|e| e.id.0.as_u128())
                .collect::<Vec<_>>()
        }
    };

    let inv = invitation(&account, &boss, "ada@audit-team.io", now);
    let sent = e(1, &boss, InvitationSent);
    assert_eq!(
        s.invite(&inv, Some(2), now, &[], &sent).await.unwrap(),
        InvitationOutcome::Created
    );
    assert_eq!(log().await, [1]);
    // Refused: invited already; no seat free (the owner and Ada's).
    let again = invitation(&account, &boss, "ada@audit-team.io", now);
    assert_eq!(
        s.invite(&again, Some(2), now, &[], &e(100, &boss, InvitationSent))
            .await
            .unwrap(),
        InvitationOutcome::AlreadyInvited
    );
    let full = invitation(&account, &boss, "full@audit-team.io", now);
    assert!(matches!(
        s.invite(&full, Some(2), now, &[], &e(101, &boss, InvitationSent))
            .await
            .unwrap(),
        InvitationOutcome::SeatsFull(_)
    ));
    assert_eq!(log().await, [1]);

    // Refused: no such token; too few seats since.
    let (wrong, small) = (e(102, &ada, MemberAdded), e(103, &ada, MemberAdded));
    assert_eq!(
        s.accept_invitation(id, &"0".repeat(64), ada.id, None, now, &[], &wrong)
            .await
            .unwrap(),
        AcceptOutcome::Gone
    );
    assert!(matches!(
        s.accept_invitation(id, &inv.token_hash, ada.id, Some(1), now, &[], &small)
            .await
            .unwrap(),
        AcceptOutcome::SeatsFull(_)
    ));
    assert_eq!(log().await, [1]);
    let joined = e(2, &ada, MemberAdded);
    assert!(matches!(
        s.accept_invitation(id, &inv.token_hash, ada.id, Some(2), now, &[], &joined)
            .await
            .unwrap(),
        AcceptOutcome::Joined(..)
    ));
    assert_eq!(
        s.accept_invitation(
            id,
            &inv.token_hash,
            ada.id,
            None,
            now,
            &[],
            &e(104, &ada, MemberAdded)
        )
        .await
        .unwrap(),
        AcceptOutcome::Gone
    );
    assert_eq!(log().await, [2, 1]);

    let role = |n| e(n, &boss, MemberRoleChanged);
    assert!(s.set_role(id, ada.id, Role::Admin, &role(3)).await.unwrap());
    // Her role already, the owner's, a stranger's: nothing changes.
    assert!(s
        .set_role(id, ada.id, Role::Admin, &role(105))
        .await
        .unwrap());
    assert!(!s
        .set_role(id, boss.id, Role::Member, &role(106))
        .await
        .unwrap());
    assert!(!s
        .set_role(id, bob.id, Role::Member, &role(107))
        .await
        .unwrap());
    assert_eq!(log().await, [3, 2, 1]);

    let moved = |n| e(n, &boss, OwnershipTransferred);
    assert!(!s
        .transfer_ownership(id, boss.id, bob.id, &moved(108))
        .await
        .unwrap());
    assert!(s
        .transfer_ownership(id, boss.id, ada.id, &moved(4))
        .await
        .unwrap());
    assert_eq!(log().await, [4, 3, 2, 1]);

    let later = invitation(&account, &ada, "later@audit-team.io", now);
    s.invite(&later, None, now, &[], &e(5, &ada, InvitationSent))
        .await
        .unwrap();
    let withdrawn = |n| e(n, &ada, InvitationWithdrawn);
    assert!(s
        .withdraw_invitation(id, later.id, &withdrawn(6))
        .await
        .unwrap());
    assert!(!s
        .withdraw_invitation(id, later.id, &withdrawn(109))
        .await
        .unwrap());
    assert_eq!(log().await, [6, 5, 4, 3, 2, 1]);

    let removed = |n| e(n, &ada, MemberRemoved);
    // Ada owns it now: she cannot be removed; Bob is no member.
    assert!(!s
        .remove_member(id, ada.id, &[], &removed(110))
        .await
        .unwrap());
    assert!(!s
        .remove_member(id, bob.id, &[], &removed(111))
        .await
        .unwrap());
    assert!(s
        .remove_member(id, boss.id, &[], &removed(7))
        .await
        .unwrap());
    assert_eq!(log().await, [7, 6, 5, 4, 3, 2, 1]);

    let bob_joins = Membership {
        account_id: id,
        user_id: bob.id,
        role: Role::Member,
        joined_at: now,
    };
    let imported = |n| {
        [AuditEntry {
            actor: Actor::System,
            ..member_audit(id, &bob, n, MemberAdded)
        }]
    };
    assert!(s.add_member(&bob_joins, &imported(8)).await.unwrap());
    assert!(!s.add_member(&bob_joins, &imported(112)).await.unwrap());
    let entries = s.audit_log(id, None, 100).await.unwrap();
    assert_eq!(
        entries.iter().map(|e| e.id.0.as_u128()).collect::<Vec<_>>(),
        [8, 7, 6, 5, 4, 3, 2, 1]
    );
    assert_eq!(entries[0], imported(8)[0]);
    assert_eq!(entries[6], joined[0]);
}

pub async fn accounts_are_made_for_existing_users_once(s: Arc<dyn Store>) {
    let ceo = outside_user("ceo");
    s.add_user(&ceo).await.unwrap();
    let mut account = account_of(&ceo);
    account.id = AccountId::of_import_key("org-1");
    account.subscription = Subscription::imported(PlanId::Pro, "cus_org1".into(), time(NOON));
    let owns = owner(&ceo, &account);
    assert!(s.create_account(&account, &owns).await.unwrap());
    assert!(!s.create_account(&account, &owns).await.unwrap());
    let found = s.account_by_id(account.id).await.unwrap().unwrap().value;
    assert_eq!(found, account);
    assert_eq!(
        s.account_by_stripe_customer("cus_org1")
            .await
            .unwrap()
            .unwrap()
            .value
            .id,
        account.id
    );
    assert_eq!(s.memberships_of(ceo.id).await.unwrap(), [owns]);

    // A Stripe customer is one account's: the second account is not made.
    let cfo = outside_user("cfo");
    s.add_user(&cfo).await.unwrap();
    let mut second = account_of(&cfo);
    second.subscription = account.subscription.clone();
    let clash = s.create_account(&second, &owner(&cfo, &second)).await;
    assert!(
        matches!(clash, Err(StoreError::Conflict(Uniqueness::StripeCustomer))),
        "{clash:?}"
    );
    assert!(s.account_by_id(second.id).await.unwrap().is_none());
    assert!(s.memberships_of(cfo.id).await.unwrap().is_empty());
}
