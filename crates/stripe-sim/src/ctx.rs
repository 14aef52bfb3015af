//! The context every state change runs in (the state under the lock, the
//! clock's now, where events go), with the helpers both the subscription
//! operations (ops.rs) and the schedules (schedules.rs) build on.

use chrono::{DateTime, Months, Utc};
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use crate::errors::SimError;
use crate::events::Delivery;
use crate::objects;
use crate::state::{State, Subscription};

pub(crate) struct Ctx<'a> {
    pub st: &'a mut State,
    pub now: i64,
    pub base_url: &'a str,
    pub deliveries: &'a mpsc::UnboundedSender<Delivery>,
}

/// `from` plus one billing interval, calendar-aware like Stripe.
pub(crate) fn add_interval(from: i64, interval: &str) -> i64 {
    let t = DateTime::<Utc>::from_timestamp(from, 0).unwrap_or_default();
    let next = match interval {
        "year" => t.checked_add_months(Months::new(12)),
        "week" => Some(t + chrono::Duration::weeks(1)),
        "day" => Some(t + chrono::Duration::days(1)),
        _ => t.checked_add_months(Months::new(1)),
    };
    next.unwrap_or(t).timestamp()
}

/// Top-level fields of `before` that differ in `after`, as Stripe reports them
/// in `data.previous_attributes`.
pub(crate) fn changed(before: &Value, after: &Value) -> Map<String, Value> {
    let (Value::Object(b), Value::Object(a)) = (before, after) else {
        return Map::new();
    };
    b.iter()
        .filter(|(k, v)| a.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

pub(crate) fn not_found(kind: &'static str, id: &str) -> SimError {
    SimError::NotFound {
        kind,
        id: id.to_owned(),
    }
}

impl Ctx<'_> {
    pub fn emit(&mut self, kind: &str, object: Value, previous: Option<Map<String, Value>>) {
        let mut event = objects::event(kind, object, previous, self.now);
        if !self.st.hold && self.st.webhook_url.is_none() {
            // No endpoint to deliver to: nothing is pending, as in Stripe.
            event["pending_webhooks"] = serde_json::json!(0);
        }
        self.st.events.push(event.clone());
        if self.st.hold {
            self.st.held.push_back(event);
        } else if let Some(url) = self.st.webhook_url.clone() {
            let _ = self.deliveries.send(Delivery::Event { url, event });
        }
    }

    pub fn sub_json(&self, id: &str) -> Value {
        self.st
            .subscriptions
            .get(id)
            .map(|s| objects::subscription(self.st, s))
            .unwrap_or(Value::Null)
    }

    pub fn invoice_json(&self, id: &str) -> Value {
        self.st
            .invoices
            .get(id)
            .map(|i| objects::invoice(self.st, i, self.base_url))
            .unwrap_or(Value::Null)
    }

    pub fn emit_sub_updated(&mut self, id: &str, before: &Value) {
        let after = self.sub_json(id);
        let prev = changed(before, &after);
        if !prev.is_empty() {
            self.emit("customer.subscription.updated", after, Some(prev));
        }
    }

    pub fn live_sub(&self, id: &str) -> Result<&Subscription, SimError> {
        let s = self
            .st
            .subscriptions
            .get(id)
            .ok_or_else(|| not_found("subscription", id))?;
        if s.status == "canceled" || s.status == "incomplete_expired" {
            return Err(SimError::InvalidState(format!(
                "subscription {id} is {}",
                s.status
            )));
        }
        Ok(s)
    }
}
