//! Shared test support: a real server on 127.0.0.1:0 with its own SQLite
//! file and a clock the test controls, plus small request helpers.
#![allow(dead_code)]

pub mod binary;
pub mod cosmos_memory;
pub mod cosmos_server;
pub mod jwks;
pub mod quota_contract;
pub mod store_contract;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kraftd_billing::app::Billing;
use kraftd_billing::config::Config;
use kraftd_billing::domain::clock::ManualClock;
use kraftd_billing::domain::ports::{Payments, Store};
use kraftd_billing::domain::records::{EmailKind, OutboxMessage};
use kraftd_billing::domain::secret::Secret;
use kraftd_billing::payments::stripe::{StripePayments, StripeSettings};
use kraftd_billing::payments::webhook::StripeWebhookVerifier;
use kraftd_billing::payments::PaymentsNotConfigured;
use kraftd_billing::server::{self, Adapters};
use kraftd_billing::store::SqliteStore;
use kraftd_billing::stripe_sim::{SimOptions, SimSubscription, StripeSim};
use serde_json::{json, Value};

pub const SECRET: &str = "test-secret-0123456789abcdef0123456789";
pub const PASSWORD: &str = "correct horse 9";

pub const WEBHOOK_SECRET: &str = "whsec_test_0123456789";

pub struct TestApp {
    pub base: String,
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub store: Arc<dyn Store>,
    pub clock: Arc<ManualClock>,
    /// The use-cases the router serves, for what no route reaches (yet).
    pub billing: Arc<Billing>,
    /// The Stripe double, for apps started with `spawn_with_stripe`.
    pub sim: Option<StripeSim>,
    /// A service key with every scope, as KRAFTD's services hold one.
    pub service_key: String,
    _dir: tempfile::TempDir,
}

/// Sign-in limits lifted: the suite registers and signs in hundreds of
/// users from 127.0.0.1 in one app. tests/throttle.rs sets its own.
pub const GENEROUS_LIMITS: &[(&str, &str)] = &[
    ("SIGN_IN_PER_ADDRESS_PER_MINUTE", "1000000"),
    ("SIGN_IN_PER_ADDRESS_BURST", "1000000"),
    ("SIGN_IN_PER_ACCOUNT_PER_MINUTE", "1000000"),
    ("SIGN_IN_PER_ACCOUNT_BURST", "1000000"),
];

pub fn config(vars: &[(&str, &str)]) -> Config {
    // Paid checkouts charge at once unless a test asks for Pro's trial
    // (tests/enterprise.rs), so the payment suites see money move.
    let mut map: HashMap<String, String> = HashMap::from([
        ("JWT_SECRET".into(), SECRET.into()),
        ("PRO_TRIAL_DAYS".into(), "0".into()),
    ]);
    for (k, v) in GENEROUS_LIMITS {
        map.insert(k.to_string(), v.to_string());
    }
    for (k, v) in vars {
        map.insert(k.to_string(), v.to_string());
    }
    Config::from_lookup(|k| map.get(k).cloned()).expect("test configuration is valid")
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    pub async fn spawn_with(vars: &[(&str, &str)]) -> Self {
        Self::start(vars, false).await
    }

    /// An app whose payments go to a Stripe double on loopback, with the
    /// catalog synced and signed webhooks flowing back to the app.
    pub async fn spawn_with_stripe(vars: &[(&str, &str)]) -> Self {
        Self::start(vars, true).await
    }

    /// An app with the Stripe double on a store of the test's choosing.
    pub async fn spawn_on(store: Arc<dyn Store>, vars: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, store, vars, true).await
    }

    async fn start(vars: &[(&str, &str)], stripe: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("billing.sqlite3")).unwrap());
        Self::start_in(dir, store, vars, stripe).await
    }

    async fn start_in(
        dir: tempfile::TempDir,
        store: Arc<dyn Store>,
        vars: &[(&str, &str)],
        stripe: bool,
    ) -> Self {
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let data_dir = dir.path().to_string_lossy().into_owned();
        let mut vars = vars.to_vec();
        vars.push(("DATA_DIR", &data_dir));
        let config = config(&vars);
        let (payments, sim): (Arc<dyn Payments>, _) = if stripe {
            let sim = StripeSim::start(SimOptions {
                webhook_secret: WEBHOOK_SECRET.into(),
                clock: clock.clone(),
            })
            .await
            .unwrap();
            let settings = StripeSettings {
                secret_key: Secret::from("sk_test_kraftd"),
                api_base: Some(sim.base_url()),
                checkout_success_url: config.checkout_success_url.clone(),
                checkout_cancel_url: config.checkout_cancel_url.clone(),
                timeout: Duration::from_millis(1500),
                backoff: Duration::from_millis(20),
            };
            let payments = StripePayments::new(settings, server::catalog(&config)).unwrap();
            payments.sync_catalog().await.unwrap();
            (Arc::new(payments), Some(sim))
        } else {
            (Arc::new(PaymentsNotConfigured), None)
        };
        let state = server::state(
            &config,
            Adapters {
                store: store.clone(),
                payments,
                webhooks: Arc::new(StripeWebhookVerifier::new(vec![Secret::from(
                    WEBHOOK_SECRET,
                )])),
                mailer: server::mailer(&config).unwrap(),
                clock: clock.clone(),
            },
        )
        .unwrap();
        let billing = state.billing.clone();
        let router = kraftd_billing::http::router(state, &config.cors_origins);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // With each connection's peer, as `handler serve` does.
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });
        if let Some(sim) = &sim {
            sim.set_webhook_url(Some(format!("http://{addr}/api/webhooks/stripe")));
        }
        let service_key = kraftd_billing::app::service_keys::issue(
            store.as_ref(),
            "test-harness",
            kraftd_billing::domain::service::Scope::ALL.to_vec(),
            Utc::now(),
        )
        .await
        .unwrap()
        .secret;
        Self {
            base: format!("http://{addr}"),
            addr,
            client: reqwest::Client::new(),
            store,
            clock,
            billing,
            sim,
            service_key,
            _dir: dir,
        }
    }

    /// Where the file mailer (no SMTP_URL) writes its .eml files.
    pub fn mail_dir(&self) -> std::path::PathBuf {
        self._dir.path().join("mail")
    }

    /// Runs the `SweepOutbox` timer function as the host does; its log line.
    pub async fn sweep_outbox(&self) -> String {
        self.timer("SweepOutbox").await
    }

    /// Runs a timer function as the host does; its log line.
    pub async fn timer(&self, function: &str) -> String {
        self.timer_logs(function).await.swap_remove(0)
    }

    /// Runs a timer function as the host does; every line it logged.
    pub async fn timer_logs(&self, function: &str) -> Vec<String> {
        let r = self
            .client
            .post(self.url(&format!("/{function}")))
            .json(&json!({"Data": {"timer": {"Schedule": {"AdjustForDST": true}, "ScheduleStatus": null, "IsPastDue": false}}, "Metadata": {}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        serde_json::from_value(body["Logs"].clone()).unwrap()
    }

    pub fn sim(&self) -> &StripeSim {
        self.sim.as_ref().expect("started with spawn_with_stripe")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn clock_now(&self) -> DateTime<Utc> {
        use kraftd_billing::domain::clock::Clock;
        self.clock.now()
    }

    pub fn at(&self, t: &str) {
        self.clock.set(time(t));
    }

    pub async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn register(&self, email: &str, plan: &str) -> reqwest::Response {
        self.post(
            "/api/auth/register/with-plan",
            json!({"email": email, "password": PASSWORD, "name": "Test User", "plan_id": plan}),
        )
        .await
    }

    /// Registers on Pro and completes its checkout at the simulator (a
    /// trial when `PRO_TRIAL_DAYS` offers one); returns the owner's token.
    pub async fn checked_out_pro(&self, email: &str) -> String {
        let r = self.register(email, "pro").await;
        assert_eq!(r.status(), 201, "registration of {email} failed");
        let checkout: Value = r.json().await.unwrap();
        self.sim()
            .complete_checkout(checkout["session_id"].as_str().unwrap())
            .await
            .unwrap();
        self.login(email).await
    }

    /// The subscriptions of the user's account's Stripe customer at the
    /// simulator, oldest first.
    pub async fn stripe_subscriptions(&self, email: &str) -> Vec<SimSubscription> {
        let customer = self
            .account(email)
            .await
            .subscription
            .stripe_customer_id
            .expect("a Stripe customer");
        self.sim().subscriptions_of(&customer)
    }

    /// The account's audit log as operators read it, newest first.
    pub async fn admin_audit(&self, account: &str) -> Vec<Value> {
        let r = self
            .service(
                reqwest::Method::GET,
                &format!("/api/admin/accounts/{account}/audit?limit=100"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        body["entries"].as_array().unwrap().clone()
    }

    /// Registers a Free user and returns its access token.
    pub async fn free_user(&self, email: &str) -> String {
        let r = self.register(email, "free").await;
        assert_eq!(r.status(), 201, "registration of {email} failed");
        let body: Value = r.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// A signed-in GET that must succeed: its JSON body.
    pub async fn get_json(&self, token: &str, path: &str) -> Value {
        let r = self.get_as(token, path).await;
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.unwrap()
    }

    pub async fn get_as(&self, token: &str, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// The account a user's token acts on by default: the one they own.
    pub async fn own_account_id(&self, token: &str) -> String {
        let list = self.get_json(token, "/api/accounts").await;
        list["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["role"] == "owner")
            .expect("the user owns an account")["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// KRAFTD's document service reporting usage on the account `token`'s
    /// user owns, under a new Idempotency-Key.
    pub async fn consume(&self, token: &str, body: Value) -> reqwest::Response {
        let account = self.own_account_id(token).await;
        self.report(&account, &uuid::Uuid::new_v4().to_string(), body)
            .await
    }

    /// `POST /api/accounts/<account>/usage` with the service key.
    pub async fn report(&self, account: &str, key: &str, body: Value) -> reqwest::Response {
        self.service(
            reqwest::Method::POST,
            &format!("/api/accounts/{account}/usage"),
        )
        .header("Idempotency-Key", key)
        .json(&body)
        .send()
        .await
        .unwrap()
    }

    /// Where a metric of the account stands, as its service entitlements say.
    pub async fn standing(&self, account: &str, metric: &str) -> Value {
        let r = self
            .service(
                reqwest::Method::GET,
                &format!("/api/accounts/{account}/entitlements"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        body["usage"][metric].clone()
    }

    /// A request to a service route with the harness's service key.
    pub fn service(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(&self.service_key)
    }
}

/// The files of a mail directory (the file mailer's, a Maildir), sorted.
pub fn files(dir: &std::path::Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| std::fs::read_to_string(e.path()).unwrap())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// A mail file with its quoted-printable parts read back, so a test can
/// look for what a reader sees ("¥", not "=C2=A5").
pub fn quoted_printable(mail: &str) -> String {
    let joined = mail.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'=', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn time(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// Asserts the service's error shape and returns the `error` object.
pub async fn error_of(r: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(r.status().as_u16(), status, "unexpected status");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"),
        "errors are JSON"
    );
    let body: Value = r.json().await.unwrap();
    let error = body["error"].clone();
    assert_eq!(error["code"], code, "body: {body}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "every error has a message: {body}"
    );
    error
}

impl TestApp {
    pub async fn post_as(&self, token: &str, path: &str, body: Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// The account the user with this email owns, as stored now.
    pub async fn account(&self, email: &str) -> kraftd_billing::domain::account::Account {
        let email = kraftd_billing::domain::user::Email::parse(email).unwrap();
        let user = self
            .store
            .user_by_email(&email)
            .await
            .unwrap()
            .expect("user exists")
            .value;
        let owned = self
            .store
            .memberships_of(user.id)
            .await
            .unwrap()
            .into_iter()
            .find(|m| m.role == kraftd_billing::domain::account::Role::Owner)
            .expect("the user owns an account");
        self.store
            .account_by_id(owned.account_id)
            .await
            .unwrap()
            .expect("account exists")
            .value
    }

    /// The kinds of the account's recorded emails, oldest first.
    pub async fn email_kinds(
        &self,
        account_id: kraftd_billing::domain::account::AccountId,
    ) -> Vec<EmailKind> {
        self.emails(account_id, None)
            .await
            .into_iter()
            .filter_map(|m| m.kind.email())
            .collect()
    }

    /// The account's recorded emails, of one kind or all, oldest first.
    pub async fn emails(
        &self,
        account_id: kraftd_billing::domain::account::AccountId,
        kind: Option<EmailKind>,
    ) -> Vec<OutboxMessage> {
        let all = self.store.outbox_for_account(account_id).await.unwrap();
        all.into_iter()
            .filter(|m| m.kind.email().is_some_and(|e| kind.is_none_or(|k| e == k)))
            .collect()
    }

    /// The token of the verification link mailed to `email`'s password
    /// user that is the one outstanding (the newest), as the outbox holds it.
    pub async fn verification_token(&self, email: &str) -> String {
        use sha2::Digest;
        let user = self.user_by_email(email).await;
        let outstanding = user.verification.expect("a verification link outstanding");
        let account = kraftd_billing::domain::account::AccountId::own_account_of(user.id);
        let sent = self.emails(account, Some(EmailKind::VerifyEmail)).await;
        sent.iter()
            .map(|m| {
                let url = &m.data["verify_url"];
                assert!(url.contains("/verify-email/"), "{url}");
                url.rsplit('/').next().unwrap().to_owned()
            })
            .find(|token| hex::encode(sha2::Sha256::digest(token)) == outstanding.token_hash)
            .expect("the outstanding link was mailed")
    }

    /// Follows the verification link mailed to `email`.
    pub async fn verify_email(&self, email: &str) {
        let token = self.verification_token(email).await;
        let r = self
            .post("/api/auth/verify-email", json!({ "token": token }))
            .await;
        assert_eq!(r.status(), 200, "verification of {email} failed");
    }

    pub async fn user_by_email(&self, email: &str) -> kraftd_billing::domain::user::User {
        let email = kraftd_billing::domain::user::Email::parse(email).unwrap();
        self.store
            .user_by_email(&email)
            .await
            .unwrap()
            .expect("user exists")
            .value
    }

    /// Registers on Pro, monthly, and pays at the Stripe double's checkout;
    /// its webhooks have been applied when this returns.
    pub async fn subscribe_to_pro(&self, email: &str) {
        let r = self.register(email, "pro").await;
        assert_eq!(r.status(), 201, "paid registration of {email} failed");
        let body: Value = r.json().await.unwrap();
        self.sim()
            .complete_checkout(body["session_id"].as_str().unwrap())
            .await
            .unwrap();
    }

    pub async fn login(&self, email: &str) -> String {
        let r: Value = self
            .post(
                "/api/auth/login",
                json!({"email": email, "password": PASSWORD}),
            )
            .await
            .json()
            .await
            .unwrap();
        r["access_token"]
            .as_str()
            .expect("login succeeds")
            .to_owned()
    }
}
