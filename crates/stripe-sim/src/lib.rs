//! A stateful, offline fake of the slice of Stripe's v1 API that KRAFTD
//! billing uses, for tests and local runs. It serves real HTTP on loopback so
//! the production async-stripe client talks to it unchanged, and sends signed
//! webhooks like Stripe does. Every object it answers is Stripe's own example
//! object (fixtures3.json) with the tracked fields overwritten.

mod answer;
mod api;
mod ctx;
mod errors;
mod events;
mod form;
mod inner;
mod objects;
mod ops;
mod pages;
mod schedule_api;
mod schedules;
mod state;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;

use kraftd_domain::clock::Clock;

use inner::Inner;
use state::{Fault, FaultKind};

pub use errors::SimError;
pub use state::RecordedRequest;

/// A subscription as the simulator holds it, for tests to look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimSubscription {
    pub id: String,
    pub status: String,
    pub price: String,
    pub created: i64,
    pub trial_end: Option<i64>,
    /// When the current period ends: a trial's end, or the next renewal.
    pub current_period_end: i64,
    /// Prorations of `create_prorations` changes, billed at the next renewal.
    pub pending_proration: i64,
}

pub struct SimOptions {
    pub webhook_secret: String,
    pub clock: Arc<dyn Clock>,
}

#[derive(Clone)]
pub struct StripeSim {
    inner: Arc<Inner>,
}

impl StripeSim {
    /// Binds 127.0.0.1:0 and serves in a spawned tokio task.
    pub async fn start(opts: SimOptions) -> std::io::Result<StripeSim> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner::new(
            opts.clock,
            opts.webhook_secret,
            format!("http://{addr}"),
            tx,
        ));
        // Weakly: the simulator owns the sender, so a strong reference
        // would keep both alive for good.
        let weak = Arc::downgrade(&inner);
        let delivered = move |id: &str| {
            if let Some(inner) = weak.upgrade() {
                inner.lock().mark_delivered(id);
            }
        };
        tokio::spawn(events::delivery_worker(
            rx,
            delivered,
            inner.clock.clone(),
            inner.secret.clone(),
        ));
        let app = api::router(inner.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "stripe sim stopped serving");
            }
        });
        Ok(StripeSim { inner })
    }

    pub fn base_url(&self) -> String {
        self.inner.base_url.clone()
    }

    pub fn set_webhook_url(&self, url: Option<String>) {
        self.inner.lock().webhook_url = url;
    }

    /// Pays an open subscription-mode checkout session; returns the subscription id.
    pub async fn complete_checkout(&self, session_id: &str) -> Result<String, SimError> {
        let r = self.inner.with(|c| c.complete_checkout(session_id));
        self.inner.flush().await;
        r
    }

    /// A subscription made for the customer straight in Stripe, as sales
    /// would in the dashboard, its first period charged now. Returns its id.
    pub async fn create_subscription(
        &self,
        customer_id: &str,
        price_id: &str,
    ) -> Result<String, SimError> {
        let r = self.inner.with(|c| {
            c.start_subscription(customer_id, price_id, 1, Default::default())
                .map(|(id, _)| id)
        });
        self.inner.flush().await;
        r
    }

    /// Moves the subscription to its period end: cancels it or renews it.
    pub async fn end_period(&self, subscription_id: &str) -> Result<(), SimError> {
        let r = self.inner.with(|c| c.end_period(subscription_id));
        self.inner.flush().await;
        r
    }

    /// The customer's subscriptions, oldest first, whatever their status.
    pub fn subscriptions_of(&self, customer_id: &str) -> Vec<SimSubscription> {
        let st = self.inner.lock();
        let mut subs: Vec<SimSubscription> = st
            .subscriptions
            .values()
            .filter(|s| s.customer == customer_id)
            .map(|s| SimSubscription {
                id: s.id.clone(),
                status: s.status.clone(),
                price: s.price.clone(),
                created: s.created,
                trial_end: s.trial_end,
                current_period_end: s.period_end,
                pending_proration: s.pending_proration,
            })
            .collect();
        subs.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        subs
    }

    /// The subscription's active schedule, if any.
    pub fn schedule_of(&self, subscription_id: &str) -> Option<String> {
        let st = self.inner.lock();
        let id = st.subscriptions.get(subscription_id)?.schedule.clone()?;
        (st.schedules.get(&id)?.status == "active").then_some(id)
    }

    pub fn set_card_declines(&self, customer_id: &str, declines: bool) {
        let mut st = self.inner.lock();
        if declines {
            st.declining.insert(customer_id.to_owned());
        } else {
            st.declining.remove(customer_id);
        }
    }

    /// Pays the subscription's open invoice and makes it active again.
    pub async fn retry_payment(&self, subscription_id: &str) -> Result<(), SimError> {
        let r = self.inner.with(|c| c.retry_payment(subscription_id));
        self.inner.flush().await;
        r
    }

    pub async fn set_subscription_status(
        &self,
        subscription_id: &str,
        status: &str,
    ) -> Result<(), SimError> {
        let r = self
            .inner
            .with(|c| c.set_subscription_status(subscription_id, status));
        self.inner.flush().await;
        r
    }

    /// A product with metadata plan_id and a recurring price without lookup key,
    /// as sales would make in the dashboard. Returns the price id.
    pub fn create_dashboard_price(
        &self,
        plan_id: &str,
        unit_amount: i64,
        interval: &str,
    ) -> String {
        self.create_dashboard_price_in(plan_id, unit_amount, interval, "usd")
    }

    /// As `create_dashboard_price`, in another currency: `unit_amount` in
    /// the minor unit Stripe counts it in (yen for "jpy"). Everything billed
    /// at the price (its subscription, invoices, checkout) is in it.
    pub fn create_dashboard_price_in(
        &self,
        plan_id: &str,
        unit_amount: i64,
        interval: &str,
        currency: &str,
    ) -> String {
        self.inner
            .with(|c| c.dashboard_price(plan_id, unit_amount, interval, currency))
    }

    pub fn hold_webhooks(&self, hold: bool) {
        self.inner.lock().hold = hold;
    }

    pub fn held_events(&self) -> Vec<Value> {
        self.inner.lock().held.iter().cloned().collect()
    }

    pub fn clear_held(&self) {
        self.inner.lock().held.clear();
    }

    /// Every event emitted so far, oldest first, whether delivered or not.
    pub fn events(&self) -> Vec<Value> {
        self.inner.lock().events.clone()
    }

    /// Waits until the events emitted so far (e.g. by API calls, which deliver
    /// in the background like Stripe) have been delivered.
    pub async fn wait_for_webhooks(&self) {
        self.inner.flush().await;
    }

    /// POSTs one event as given, signed at the clock's now; 0 when there is no
    /// webhook URL or the receiver could not be reached.
    pub async fn deliver(&self, event: &Value) -> u16 {
        let url = self.inner.lock().webhook_url.clone();
        match url {
            Some(url) => {
                let status = events::post(
                    &url,
                    &event.to_string(),
                    &self.inner.clock,
                    &self.inner.secret,
                )
                .await;
                if let (200..=299, Some(id)) = (status, event["id"].as_str()) {
                    self.inner.lock().mark_delivered(id);
                }
                status
            }
            None => 0,
        }
    }

    pub fn fail_next(&self, method: &str, path_prefix: &str, status: u16, count: u32) {
        self.add_fault(method, path_prefix, FaultKind::Fail(status), count);
    }

    pub fn delay_next(&self, method: &str, path_prefix: &str, delay: Duration, count: u32) {
        self.add_fault(method, path_prefix, FaultKind::Delay(delay), count);
    }

    fn add_fault(&self, method: &str, path_prefix: &str, kind: FaultKind, count: u32) {
        if count == 0 {
            return;
        }
        self.inner.lock().faults.push(Fault {
            method: method.to_owned(),
            path_prefix: path_prefix.to_owned(),
            remaining: count,
            kind,
        });
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.inner.lock().requests.clone()
    }

    pub fn count(&self, object: &str) -> usize {
        self.inner.lock().count(object)
    }

    pub fn signature(&self, payload: &str, timestamp: i64) -> String {
        events::signature(&self.inner.secret, payload, timestamp)
    }
}
