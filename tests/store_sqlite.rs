//! The store contract on the embedded SQLite store, file-backed as
//! `handler serve` uses it.

mod support;

use std::sync::Arc;

use kraftd_billing::domain::ports::Store;
use kraftd_billing::store::SqliteStore;

async fn sqlite_store() -> Arc<dyn Store> {
    // The directory is kept for the test's lifetime by leaking its guard;
    // the OS temp cleaner reclaims it.
    let dir = tempfile::tempdir().unwrap().keep();
    Arc::new(SqliteStore::open(&dir.join("billing.sqlite3")).unwrap())
}

store_contract_tests!(sqlite_store);

/// Each call opens the same file anew, as a restarted `handler serve` does.
async fn sqlite_opener() -> support::quota_contract::Opener {
    let path = tempfile::tempdir().unwrap().keep().join("billing.sqlite3");
    Box::new(move || {
        let path = path.clone();
        Box::pin(async move { Arc::new(SqliteStore::open(&path).unwrap()) as Arc<dyn Store> })
    })
}

quota_contract_tests!(sqlite_store, sqlite_opener);

#[tokio::test]
async fn reopening_the_file_keeps_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("billing.sqlite3");
    let (u, a) = {
        let s: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
        let (u, a, _) = support::store_contract::register(&s, "persist@mail.io").await;
        (u, a)
    };
    let s = SqliteStore::open(&path).unwrap();
    let found = kraftd_billing::domain::ports::UserStore::user_by_email(&s, &u.email)
        .await
        .unwrap();
    assert_eq!(found.unwrap().value, u);
    let account = kraftd_billing::domain::ports::AccountStore::account_by_id(&s, a.id)
        .await
        .unwrap();
    assert_eq!(account.unwrap().value, a);
}

#[tokio::test]
async fn a_store_opened_in_the_background_works_and_reports_a_bad_file_as_unavailable() {
    use kraftd_billing::domain::ports::{StoreError, UserStore};
    let dir = tempfile::tempdir().unwrap();
    let good: Arc<dyn Store> =
        Arc::new(SqliteStore::open_in_background(&dir.path().join("billing.sqlite3")).unwrap());
    let (u, _, _) = support::store_contract::register(&good, "late@mail.io").await;
    assert!(good.user_by_id(u.id).await.unwrap().is_some());

    // A directory where the database file should be: every call says why.
    let occupied = dir.path().join("occupied");
    std::fs::create_dir(&occupied).unwrap();
    let bad = SqliteStore::open_in_background(&occupied).unwrap();
    let err = bad.user_by_id(u.id).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn the_write_ahead_log_is_checkpointed_under_a_stream_of_increments() {
    use kraftd_billing::domain::account::AccountId;
    use kraftd_billing::domain::ports::UsageStore;
    use kraftd_billing::domain::usage::{Metric, UsageIncrement, UsageKey};
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("billing.sqlite3")).unwrap();
    let user = AccountId(uuid::Uuid::new_v4());
    let at = support::time("2026-05-10T12:00:00Z");
    for _ in 0..3000 {
        s.increment_usage(&UsageIncrement {
            account_id: user,
            key: UsageKey::current(Metric::ApiCalls, at),
            amount: 1,
            limit: Some(1_000_000),
            at,
        })
        .await
        .unwrap();
    }
    // SQLite checkpoints every 1000 pages (4 MiB); without checkpoints 3000
    // one-page commits would leave about 12 MiB of log.
    let wal = std::fs::metadata(dir.path().join("billing.sqlite3-wal"))
        .unwrap()
        .len();
    assert!(
        wal <= 5 * 1024 * 1024,
        "the WAL grew to {wal} bytes: checkpoints are not completing"
    );
}

/// A record the rollup cannot read (a quantity that overflowed into a float
/// in an older build) is logged and left out; every other user's month is
/// still summed, so nobody's quota warning is lost to it.
#[tokio::test]
async fn the_rollup_skips_an_unreadable_record_and_sums_the_rest() {
    use chrono::TimeZone;
    use kraftd_billing::domain::account::AccountId;
    use kraftd_billing::domain::ports::{Rollups, UsageStore};
    use kraftd_billing::domain::usage::{Metric, Period, UsageIncrement, UsageKey, Window};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("billing.sqlite3");
    let at = chrono::Utc.with_ymd_and_hms(2027, 3, 10, 12, 0, 0).unwrap();
    let (good, bad) = (
        AccountId(uuid::Uuid::new_v4()),
        AccountId(uuid::Uuid::new_v4()),
    );
    {
        let s = SqliteStore::open(&path).unwrap();
        for user in [good, bad] {
            for (metric, amount) in [(Metric::ApiCalls, 3), (Metric::Exports, 4)] {
                let inc = UsageIncrement {
                    account_id: user,
                    key: UsageKey::current(metric, at),
                    amount,
                    limit: None,
                    at,
                };
                s.increment_usage(&inc).await.unwrap();
            }
        }
    }
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        let changed = c
            .execute(
                "UPDATE usage_records SET quantity = 9.3e18 WHERE account_id = ?1 AND metric = 'exports'",
                [bad.to_string()],
            )
            .unwrap();
        assert_eq!(changed, 1);
    }
    let s = SqliteStore::open(&path).unwrap();
    let day = Window::containing(Period::Day, at);
    let month = Window::containing(Period::Month, at);
    let mut summaries = s.roll_up_day(day, month, None, 10).await.unwrap();
    summaries.sort_by_key(|m| m.account_id != good);
    assert_eq!(summaries.len(), 2, "{summaries:?}");
    assert_eq!((summaries[0].account_id, summaries[0].exports), (good, 4));
    assert_eq!((summaries[1].account_id, summaries[1].api_calls), (bad, 3));
    assert_eq!(summaries[1].exports, 0, "the unreadable record is left out");
}

/// A store of the one-user era (schema v5: the user held the subscription,
/// everything was keyed by the user) opened by this build: each user owns an
/// account with their id, subscription and Stripe customer, and keeps their
/// usage, invoices, payments and emails. Opening it again changes nothing.
#[tokio::test]
async fn a_one_user_store_migrates_to_accounts_and_keeps_everything() {
    use kraftd_billing::domain::account::{AccountId, Role};
    use kraftd_billing::domain::plan::PlanId;
    use kraftd_billing::domain::ports::{
        AccountStore, LedgerStore, MemberStore, Outbox, UsageStore, UserStore,
    };
    use kraftd_billing::domain::subscription::{Subscription, SubscriptionStatus};
    use kraftd_billing::domain::usage::{Metric, UsageKey};
    use serde_json::json;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("billing.sqlite3");
    let at = support::time("2026-11-20T12:00:00Z");
    let user_id = uuid::Uuid::new_v4();
    let subscription = Subscription {
        plan_id: PlanId::Pro,
        status: SubscriptionStatus::Active,
        stripe_customer_id: Some("cus_old".into()),
        stripe_subscription_id: Some("sub_old".into()),
        current_period_end: Some(at + chrono::Duration::days(20)),
        ..Subscription::free(at)
    };
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(include_str!("fixtures/sqlite-v5-schema.sql"))
            .unwrap();
        let user = json!({
            "id": user_id, "email": "old@era.io", "name": "Old Timer",
            "password_hash": "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
            "created_at": "2026-01-01T00:00:00Z", "subscription": subscription,
        });
        c.execute(
            "INSERT INTO users (id, email, stripe_customer_id, version, doc, watch_at)
             VALUES (?1, 'old@era.io', 'cus_old', 3, ?2, NULL)",
            rusqlite::params![user_id.to_string(), user.to_string()],
        )
        .unwrap();
        let day = UsageKey::current(Metric::Documents, at).window.unwrap();
        c.execute(
            "INSERT INTO usage_records (user_id, metric, window_start, window_end, quantity, expires_at, updated_at)
             VALUES (?1, 'documents', ?2, ?3, 42, NULL, ?2)",
            rusqlite::params![
                user_id.to_string(),
                day.start.timestamp_millis(),
                day.end.timestamp_millis()
            ],
        )
        .unwrap();
        let money = json!({"amount": 9900, "currency": "usd"});
        let invoice = json!({
            "id": "in_old", "user_id": user_id, "number": "A-1", "amount_due": money,
            "amount_paid": money, "status": "paid", "period_start": null, "period_end": null,
            "hosted_invoice_url": null, "pdf_url": null, "created_at": "2026-11-20T12:00:00Z",
        });
        let payment = json!({
            "id": "pi_old", "user_id": user_id, "amount": money, "status": "succeeded",
            "description": "Invoice A-1", "stripe_invoice_id": "in_old", "receipt_url": null,
            "created_at": "2026-11-20T12:00:00Z",
        });
        let far = (at + chrono::Duration::days(3000)).timestamp_millis();
        for (table, id, doc) in [
            ("invoices", "in_old", invoice),
            ("payments", "pi_old", payment),
        ] {
            c.execute(
                &format!("INSERT INTO {table} (id, user_id, created_at, expires_at, doc) VALUES (?1, ?2, ?3, ?4, ?5)"),
                rusqlite::params![id, user_id.to_string(), at.timestamp_millis(), far, doc.to_string()],
            )
            .unwrap();
        }
        let message = json!({
            "id": "m_old", "user_id": user_id, "kind": "payment_receipt",
            "data": {"plan": "Professional"}, "created_at": "2026-11-20T12:00:00Z",
        });
        c.execute(
            "INSERT INTO outbox (id, user_id, created_at, doc) VALUES ('m_old', ?1, ?2, ?3)",
            rusqlite::params![
                user_id.to_string(),
                at.timestamp_millis(),
                message.to_string()
            ],
        )
        .unwrap();
    }

    for _ in 0..2 {
        let s = SqliteStore::open(&path).unwrap();
        let email = kraftd_billing::domain::user::Email::parse("old@era.io").unwrap();
        let user = s.user_by_email(&email).await.unwrap().unwrap().value;
        assert_eq!((user.id.0, user.name.as_str()), (user_id, "Old Timer"));
        let account_id = AccountId(user_id);
        let account = s.account_by_id(account_id).await.unwrap().unwrap().value;
        assert_eq!(account.subscription, subscription);
        assert_eq!(account.billing_email, email);
        let by_customer = s.account_by_stripe_customer("cus_old").await.unwrap();
        assert_eq!(by_customer.unwrap().value.id, account_id);
        let members = s.members(account_id).await.unwrap();
        assert_eq!(members.len(), 1);
        assert_eq!(
            (members[0].user_id, members[0].role),
            (user.id, Role::Owner)
        );
        let key = UsageKey::current(Metric::Documents, at);
        assert_eq!(s.usage(account_id, &[key]).await.unwrap(), [42]);
        let invoices = s.invoices(account_id, at).await.unwrap();
        assert_eq!((invoices.len(), invoices[0].account_id), (1, account_id));
        assert_eq!(s.payments(account_id, at).await.unwrap()[0].id, "pi_old");
        let outbox = s.outbox_for_account(account_id).await.unwrap();
        assert_eq!((outbox.len(), outbox[0].account_id), (1, account_id));
    }
}

/// A file from before the usage summaries (v3: no `usage_summaries`,
/// `rollup_state` or outbox backoff yet) goes through every step to v6.
#[tokio::test]
async fn a_version_3_file_migrates_through_every_step() {
    use kraftd_billing::domain::account::AccountId;
    use kraftd_billing::domain::ports::{AccountStore, UserStore};
    let v5 = include_str!("fixtures/sqlite-v5-schema.sql");
    let summaries = v5
        .find("CREATE TABLE IF NOT EXISTS usage_summaries")
        .unwrap();
    let day_index = v5.find("CREATE INDEX IF NOT EXISTS usage_by_day").unwrap();
    let v3 = format!("{}{}", &v5[..summaries], &v5[day_index..])
        .replace(",\n    not_before INTEGER", "")
        .replace("PRAGMA user_version = 5;", "PRAGMA user_version = 3;");
    assert!(!v3.contains("usage_summaries") && !v3.contains("not_before"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("billing.sqlite3");
    let user_id = uuid::Uuid::new_v4();
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(&v3).unwrap();
        let doc = serde_json::json!({
            "id": user_id, "email": "v3@era.io", "name": "Early",
            "password_hash": "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
            "created_at": "2026-01-01T00:00:00Z",
            "subscription": kraftd_billing::domain::subscription::Subscription::free(
                support::time("2026-01-01T00:00:00Z")
            ),
        });
        c.execute(
            "INSERT INTO users (id, email, stripe_customer_id, version, doc, watch_at) VALUES (?1, 'v3@era.io', NULL, 7, ?2, NULL)",
            rusqlite::params![user_id.to_string(), doc.to_string()],
        )
        .unwrap();
    }
    let s = SqliteStore::open(&path).unwrap();
    let email = kraftd_billing::domain::user::Email::parse("v3@era.io").unwrap();
    assert!(s.user_by_email(&email).await.unwrap().is_some());
    let account = s.account_by_id(AccountId(user_id)).await.unwrap().unwrap();
    // The account goes on from the user's version (etags feed idempotency keys).
    assert_eq!(account.etag.0, "7");
}

/// A file of version 6 (every user's email unique) opened by this build:
/// its password users keep their sign-in email, and a user of the identity
/// provider may now share an email with one of them.
#[tokio::test]
async fn a_version_6_file_keeps_its_users_and_their_sign_in() {
    use kraftd_billing::domain::ports::UserStore;
    use kraftd_billing::domain::user::{Email, ExternalIdentity, PersonName, User};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("billing.sqlite3");
    let ada = support::store_contract::user("ada@v6.io");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(include_str!("fixtures/sqlite-v6-schema.sql"))
            .unwrap();
        // The document as version 6 wrote it: no verification fields yet.
        let mut doc = serde_json::to_value(&ada).unwrap();
        for field in ["email_verified", "verification", "identity"] {
            doc.as_object_mut().unwrap().remove(field);
        }
        c.execute(
            "INSERT INTO users (id, email, version, doc) VALUES (?1, 'ada@v6.io', 4, ?2)",
            rusqlite::params![ada.id.to_string(), doc.to_string()],
        )
        .unwrap();
    }
    for _ in 0..2 {
        let s = SqliteStore::open(&path).unwrap();
        let email = Email::parse("ada@v6.io").unwrap();
        let found = s.user_by_email(&email).await.unwrap().unwrap();
        assert_eq!(found.value, ada);
        assert!(!found.value.email_verified);
        assert_eq!(found.etag.0, "4");
    }
    let s: Arc<dyn kraftd_billing::domain::ports::Store> =
        Arc::new(SqliteStore::open(&path).unwrap());
    let outside = User::of_identity(
        ExternalIdentity {
            issuer: "https://id.example".into(),
            subject: "ada".into(),
        },
        Email::parse("ada@v6.io").unwrap(),
        false,
        PersonName::parse("Ada").unwrap(),
        chrono::Utc::now(),
    );
    let account = support::store_contract::account_of(&outside);
    let owner = kraftd_billing::domain::account::Membership {
        account_id: account.id,
        user_id: outside.id,
        role: kraftd_billing::domain::account::Role::Owner,
        joined_at: chrono::Utc::now(),
    };
    s.register(&outside, &account, &owner, &[]).await.unwrap();
    let email = Email::parse("ada@v6.io").unwrap();
    assert_eq!(
        s.user_by_email(&email).await.unwrap().unwrap().value.id,
        ada.id
    );
}
