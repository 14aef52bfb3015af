//! The daily usage rollup through its timer function: monthly summaries
//! across a month end, catch-up after missed runs, idempotence, and quota
//! warnings once per threshold.

mod support;

use kraftd_billing::domain::records::EmailKind;
use kraftd_billing::domain::usage::{Period, Window};
use serde_json::json;
use support::{time, TestApp};

async fn run(app: &TestApp) -> String {
    app.timer("DailyUsageRollup").await
}

/// Signs in at the clock's time (tokens expire within the hour) and consumes.
async fn docs(app: &TestApp, email: &str, n: i64) {
    let token = app.login(email).await;
    let r = app
        .consume(&token, json!({"metric": "documents", "quantity": n}))
        .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn usage_rolls_up_by_month_catches_up_missed_days_and_warns_once() {
    let app = TestApp::spawn_with(&[("FREE_PLAN_DOCS_LIMIT", "10")]).await;
    const EMAIL: &str = "roll@example.com";
    app.free_user(EMAIL).await;
    let user = app.account(EMAIL).await;

    app.at("2027-01-30T09:00:00Z");
    docs(&app, EMAIL, 5).await;
    app.at("2027-01-31T12:00:00Z");
    // The first run rolls yesterday (January 30).
    assert_eq!(
        run(&app).await,
        "rolled up 1 days: 1 monthly summaries, 0 quota warnings"
    );
    docs(&app, EMAIL, 3).await; // 8 of 10: 80%
    app.at("2027-01-31T23:59:59.999Z");
    // The gateway reports the day's last API call.
    let call = json!({"metric": "api_calls", "quantity": 1});
    let r = app.report(&user.id.to_string(), "last-call", call).await;
    assert_eq!(r.status(), 200);
    app.at("2027-02-01T00:00:00Z");
    docs(&app, EMAIL, 2).await;

    // The runs of Feb 1 and 2 were missed; Feb 3 catches up Jan 31, Feb 1 and Feb 2.
    app.at("2027-02-03T00:30:00Z");
    let log = run(&app).await;
    assert!(
        log.starts_with("rolled up 3 days: 2 monthly summaries"),
        "{log}"
    );
    let january = Window::containing(Period::Month, time("2027-01-15T00:00:00Z"));
    let february = Window::containing(Period::Month, time("2027-02-15T00:00:00Z"));
    let jan = app
        .store
        .monthly_summary(user.id, january)
        .await
        .unwrap()
        .unwrap();
    let feb = app
        .store
        .monthly_summary(user.id, february)
        .await
        .unwrap()
        .unwrap();
    // January: documents on the 30th and 31st, and the API call reported
    // at 23:59:59.999; reporting usage is not an API call itself.
    assert_eq!((jan.documents, jan.api_calls), (8, 1));
    assert_eq!((feb.documents, feb.api_calls), (2, 0));

    // Nothing is rolled twice, and the warning is not repeated.
    assert_eq!(
        run(&app).await,
        "rolled up 0 days: 0 monthly summaries, 0 quota warnings"
    );
    let warnings: Vec<_> = app.emails(user.id, Some(EmailKind::QuotaWarning)).await;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].data["percent"], "80");
    assert_eq!(warnings[0].data["used"], "8");

    // The cursor stands at the last finished day.
    assert_eq!(
        app.store.rollup_cursor().await.unwrap(),
        Some("2027-02-02".parse().unwrap())
    );
}

#[tokio::test]
async fn reaching_the_limit_warns_at_100_percent_once_per_month() {
    let app = TestApp::spawn_with(&[("FREE_PLAN_DOCS_LIMIT", "10")]).await;
    const EMAIL: &str = "full@example.com";
    app.free_user(EMAIL).await;
    let user = app.account(EMAIL).await;
    app.at("2027-03-10T10:00:00Z");
    docs(&app, EMAIL, 10).await;
    app.at("2027-03-11T10:00:00Z");
    run(&app).await;
    app.get_as(&app.login(EMAIL).await, "/api/usage").await;
    app.at("2027-03-12T10:00:00Z");
    run(&app).await;
    let mut percents: Vec<String> = app
        .emails(user.id, Some(EmailKind::QuotaWarning))
        .await
        .into_iter()
        .map(|m| m.data["percent"].clone())
        .collect();
    percents.sort();
    assert_eq!(percents, ["100", "80"]);
}
