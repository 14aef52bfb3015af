//! What the fake remembers. Objects are kept as the few fields it tracks and
//! rendered onto Stripe's fixtures on the way out (see objects.rs).

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use serde_json::{Map, Value};

/// One request the API received, as `StripeSim::requests` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub idempotency_key: Option<String>,
    pub body: String,
}

pub(crate) type Metadata = Map<String, Value>;

pub(crate) struct Customer {
    pub id: String,
    pub created: i64,
    pub email: Option<String>,
    pub name: Option<String>,
    pub metadata: Metadata,
    /// Stripe's sign: negative is credit the customer's next invoices use.
    pub balance: i64,
}

pub(crate) struct Product {
    pub id: String,
    pub created: i64,
    pub updated: i64,
    pub name: String,
    pub description: Option<String>,
    pub metadata: Metadata,
    pub active: bool,
}

pub(crate) struct Price {
    pub id: String,
    pub created: i64,
    pub product: String,
    pub currency: String,
    pub unit_amount: i64,
    /// None for one-time prices.
    pub interval: Option<String>,
    pub lookup_key: Option<String>,
    pub metadata: Metadata,
    pub active: bool,
}

#[derive(Clone)]
pub(crate) struct Session {
    pub id: String,
    pub created: i64,
    pub expires_at: i64,
    pub mode: String,
    pub customer: Option<String>,
    pub price: String,
    pub quantity: i64,
    pub client_reference_id: Option<String>,
    pub metadata: Metadata,
    pub subscription_metadata: Metadata,
    pub success_url: Option<String>,
    pub cancel_url: Option<String>,
    pub allow_promotion_codes: Option<bool>,
    pub status: String,
    pub payment_status: String,
    pub subscription: Option<String>,
    pub invoice: Option<String>,
    /// `subscription_data.trial_period_days` and what the trial's end
    /// does without a payment method.
    pub trial: Option<TrialTerms>,
    /// `always` (the default) or `if_required`: no card asked when nothing
    /// is due now (a trial).
    pub payment_method_collection: String,
}

/// A trial a subscription starts with.
#[derive(Clone)]
pub(crate) struct TrialTerms {
    pub days: i64,
    /// `trial_settings.end_behavior.missing_payment_method`: `create_invoice`
    /// (Stripe's default), `cancel` or `pause`.
    pub missing_payment_method: String,
    /// Whether a card was collected at checkout.
    pub has_payment_method: bool,
}

pub(crate) struct Subscription {
    pub id: String,
    pub created: i64,
    pub customer: String,
    pub item_id: String,
    pub item_created: i64,
    pub price: String,
    pub quantity: i64,
    pub metadata: Metadata,
    pub status: String,
    pub period_start: i64,
    pub period_end: i64,
    pub cancel_at_period_end: bool,
    pub canceled_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub latest_invoice: Option<String>,
    /// Prorations from `create_prorations` changes, billed at the next renewal.
    pub pending_proration: i64,
    /// The schedule managing it while that schedule is active.
    pub schedule: Option<String>,
    pub trial_start: Option<i64>,
    pub trial_end: Option<i64>,
    /// The trial's terms while it runs.
    pub trial: Option<TrialTerms>,
}

/// One phase of a schedule: a single item, as the subscription has.
#[derive(Clone, PartialEq)]
pub(crate) struct Phase {
    pub start: i64,
    pub end: i64,
    pub price: String,
    pub quantity: i64,
}

pub(crate) struct Schedule {
    pub id: String,
    pub created: i64,
    pub customer: String,
    pub subscription: String,
    /// `active`, `released`, `completed` or `canceled`.
    pub status: String,
    /// `release` or `cancel`, applied when the last phase ends.
    pub end_behavior: String,
    pub phases: Vec<Phase>,
    pub released_at: Option<i64>,
    pub completed_at: Option<i64>,
    pub canceled_at: Option<i64>,
}

pub(crate) struct Line {
    pub id: String,
    pub amount: i64,
    pub description: String,
    pub price: String,
    pub quantity: i64,
    pub period_start: i64,
    pub period_end: i64,
    pub proration: bool,
}

pub(crate) struct Invoice {
    pub id: String,
    pub created: i64,
    pub customer: String,
    pub subscription: Option<String>,
    pub subscription_item: Option<String>,
    pub status: String,
    pub billing_reason: String,
    pub amount_due: i64,
    pub amount_paid: i64,
    pub period_start: i64,
    pub period_end: i64,
    pub lines: Vec<Line>,
    pub number: Option<String>,
    pub attempt_count: i64,
    pub finalized_at: Option<i64>,
    pub paid_at: Option<i64>,
}

pub(crate) struct PortalSession {
    pub id: String,
    pub created: i64,
    pub customer: String,
    pub return_url: Option<String>,
}

pub(crate) struct Fault {
    pub method: String,
    pub path_prefix: String,
    pub remaining: u32,
    pub kind: FaultKind,
}

#[derive(Clone, Copy)]
pub(crate) enum FaultKind {
    Fail(u16),
    Delay(Duration),
}

pub(crate) struct Replay {
    pub fingerprint: String,
    pub status: u16,
    pub body: String,
}

#[derive(Default)]
pub(crate) struct State {
    pub customers: HashMap<String, Customer>,
    pub products: HashMap<String, Product>,
    /// Creation order, for lists (several objects can share a second).
    pub product_order: Vec<String>,
    pub prices: HashMap<String, Price>,
    pub price_order: Vec<String>,
    pub sessions: HashMap<String, Session>,
    pub subscriptions: HashMap<String, Subscription>,
    pub schedules: HashMap<String, Schedule>,
    pub invoices: HashMap<String, Invoice>,
    pub invoice_order: Vec<String>,
    pub portal_sessions: HashMap<String, PortalSession>,
    pub declining: HashSet<String>,
    pub invoice_seq: u64,

    pub requests: Vec<RecordedRequest>,
    pub faults: Vec<Fault>,
    pub idempotency: HashMap<String, Replay>,

    pub webhook_url: Option<String>,
    pub hold: bool,
    pub held: VecDeque<Value>,
    pub events: Vec<Value>,
}

impl State {
    /// A delivery of `event_id` was answered 2xx: like Stripe, the event
    /// no longer counts as pending (`delivery_success=true`).
    pub fn mark_delivered(&mut self, event_id: &str) {
        if let Some(e) = self.events.iter_mut().rev().find(|e| e["id"] == event_id) {
            e["pending_webhooks"] = serde_json::json!(0);
        }
    }

    pub fn count(&self, object: &str) -> usize {
        match object {
            "customer" => self.customers.len(),
            "product" => self.products.len(),
            "price" => self.prices.len(),
            "checkout.session" => self.sessions.len(),
            "subscription" => self.subscriptions.len(),
            "subscription_schedule" => self.schedules.len(),
            "invoice" => self.invoices.len(),
            "billing_portal.session" => self.portal_sessions.len(),
            "event" => self.events.len(),
            _ => 0,
        }
    }

    /// The first matching fault, consumed by one.
    pub fn take_fault(&mut self, method: &str, path: &str) -> Option<FaultKind> {
        let i = self.faults.iter().position(|f| {
            f.remaining > 0
                && f.method.eq_ignore_ascii_case(method)
                && path.starts_with(&f.path_prefix)
        })?;
        let fault = &mut self.faults[i];
        fault.remaining -= 1;
        let kind = fault.kind;
        if fault.remaining == 0 {
            self.faults.remove(i);
        }
        Some(kind)
    }
}
