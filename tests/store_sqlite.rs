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

#[tokio::test]
async fn reopening_the_file_keeps_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("billing.sqlite3");
    let u = support::store_contract::user("persist@mail.io");
    {
        let s = SqliteStore::open(&path).unwrap();
        kraftd_billing::domain::ports::UserStore::create_user(&s, &u)
            .await
            .unwrap();
    }
    let s = SqliteStore::open(&path).unwrap();
    let found = kraftd_billing::domain::ports::UserStore::user_by_email(&s, &u.email)
        .await
        .unwrap();
    assert_eq!(found.unwrap().value, u);
}

#[tokio::test]
async fn a_store_opened_in_the_background_works_and_reports_a_bad_file_as_unavailable() {
    use kraftd_billing::domain::ports::{StoreError, UserStore};
    let dir = tempfile::tempdir().unwrap();
    let good = SqliteStore::open_in_background(&dir.path().join("billing.sqlite3"));
    let u = support::store_contract::user("late@mail.io");
    good.create_user(&u).await.unwrap();
    assert!(good.user_by_id(u.id).await.unwrap().is_some());

    // A directory where the database file should be: every call says why.
    let bad = SqliteStore::open_in_background(dir.path());
    let err = bad.user_by_id(u.id).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn the_write_ahead_log_is_checkpointed_under_a_stream_of_increments() {
    use kraftd_billing::domain::ports::UsageStore;
    use kraftd_billing::domain::usage::{Metric, UsageIncrement, UsageKey};
    use kraftd_billing::domain::user::UserId;
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("billing.sqlite3")).unwrap();
    let user = UserId(uuid::Uuid::new_v4());
    let at = support::time("2026-05-10T12:00:00Z");
    for _ in 0..3000 {
        s.increment_usage(&UsageIncrement {
            user_id: user,
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
    use kraftd_billing::domain::ports::{Rollups, UsageStore};
    use kraftd_billing::domain::usage::{Metric, Period, UsageIncrement, UsageKey, Window};
    use kraftd_billing::domain::user::UserId;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("billing.sqlite3");
    let at = chrono::Utc.with_ymd_and_hms(2027, 3, 10, 12, 0, 0).unwrap();
    let (good, bad) = (UserId(uuid::Uuid::new_v4()), UserId(uuid::Uuid::new_v4()));
    {
        let s = SqliteStore::open(&path).unwrap();
        for user in [good, bad] {
            for (metric, amount) in [(Metric::ApiCalls, 3), (Metric::Exports, 4)] {
                let inc = UsageIncrement {
                    user_id: user,
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
                "UPDATE usage_records SET quantity = 9.3e18 WHERE user_id = ?1 AND metric = 'exports'",
                [bad.to_string()],
            )
            .unwrap();
        assert_eq!(changed, 1);
    }
    let s = SqliteStore::open(&path).unwrap();
    let day = Window::containing(Period::Day, at);
    let month = Window::containing(Period::Month, at);
    let mut summaries = s.roll_up_day(day, month, None, 10).await.unwrap();
    summaries.sort_by_key(|m| m.user_id != good);
    assert_eq!(summaries.len(), 2, "{summaries:?}");
    assert_eq!((summaries[0].user_id, summaries[0].exports), (good, 4));
    assert_eq!((summaries[1].user_id, summaries[1].api_calls), (bad, 3));
    assert_eq!(summaries[1].exports, 0, "the unreadable record is left out");
}
