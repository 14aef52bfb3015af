//! Daily rollup benchmark behind `scripts/bench`: usage records rolled up
//! per second for a day with 10k and with 100k active accounts on the embedded
//! store, to show the cost grows with the day's records, not faster.
//!
//! Usage: rollup. Prints a Markdown table.

use std::sync::Arc;
use std::time::Instant;

use chrono::{Duration, TimeZone, Utc};
use kraftd_billing::config::Config;
use kraftd_billing::domain::account::{Account, AccountId, Membership, Role};
use kraftd_billing::domain::clock::ManualClock;
use kraftd_billing::domain::ports::{Store, UsageStore, UserStore};
use kraftd_billing::domain::subscription::Subscription;
use kraftd_billing::domain::usage::{Metric, UsageIncrement, UsageKey};
use kraftd_billing::domain::user::{Email, PersonName, User, UserId};
use kraftd_billing::payments::webhook::StripeWebhookVerifier;
use kraftd_billing::payments::PaymentsNotConfigured;
use kraftd_billing::server::{self, Adapters};
use kraftd_billing::store::SqliteStore;

async fn seed(store: &SqliteStore, users: usize, day: chrono::DateTime<Utc>) -> usize {
    let mut records = 0;
    for n in 0..users {
        let user = User::with_password(
            UserId(uuid::Uuid::new_v4()),
            Email::parse(&format!("u{n}@bench.io")).unwrap(),
            PersonName::parse("Bench").unwrap(),
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            day,
        );
        let account = Account {
            id: AccountId(uuid::Uuid::new_v4()),
            name: "Bench".into(),
            billing_email: user.email.clone(),
            created_at: day,
            subscription: Subscription::free(day),
            last_event_at: None,
            overrides: Vec::new(),
            enterprise_offer: None,
        };
        let owner = Membership {
            account_id: account.id,
            user_id: user.id,
            role: Role::Owner,
            joined_at: day,
        };
        store.register(&user, &account, &owner, &[]).await.unwrap();
        for (metric, amount) in [(Metric::ApiCalls, 40), (Metric::Documents, 3)] {
            store
                .increment_usage(&UsageIncrement {
                    account_id: account.id,
                    key: UsageKey::current(metric, day),
                    amount,
                    limit: None,
                    at: day,
                })
                .await
                .unwrap();
            records += 1;
        }
    }
    records
}

async fn measure(users: usize) -> (usize, f64) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("billing.sqlite3")).unwrap());
    let day = Utc.with_ymd_and_hms(2027, 1, 15, 12, 0, 0).unwrap();
    let records = seed(&store, users, day).await;
    let clock = Arc::new(ManualClock::new(day + Duration::days(1)));
    let data_dir = dir.path().to_string_lossy().into_owned();
    let vars = [
        ("JWT_SECRET", "bench-secret-0123456789abcdef0123456789"),
        ("DATA_DIR", data_dir.as_str()),
    ];
    let config = Config::from_lookup(|k| {
        vars.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    })
    .unwrap();
    let state = server::state(
        &config,
        Adapters {
            store: store.clone() as Arc<dyn Store>,
            payments: Arc::new(PaymentsNotConfigured),
            webhooks: Arc::new(StripeWebhookVerifier::new(vec![])),
            mailer: server::mailer(&config).unwrap(),
            clock,
        },
    )
    .unwrap();
    let start = Instant::now();
    let report = state.billing.roll_up_usage().await.unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(report.summaries, users);
    (records, records as f64 / secs)
}

#[tokio::main]
async fn main() {
    let (small_records, small) = measure(10_000).await;
    let (large_records, large) = measure(100_000).await;
    println!("| daily rollup (embedded store) | records | records/s | ratio to 10k users |");
    println!("|---|---:|---:|---:|");
    println!("| 10k active users | {small_records} | {small:.0} | 1.00 |");
    println!(
        "| 100k active users | {large_records} | {large:.0} | {:.2} |",
        large / small
    );
}
