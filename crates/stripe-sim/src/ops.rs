//! State changes shared by the HTTP API and the test controls, and the events
//! each one emits.

use serde_json::{Map, Value};

use crate::ctx::{add_interval, changed, not_found, Ctx};
use crate::errors::SimError;
use crate::objects::{self, random_id};
use crate::schedules::AtPeriodEnd;
use crate::state::{Customer, Invoice, Line, Phase, Price, Product, Subscription, TrialTerms};

impl Ctx<'_> {
    pub fn new_customer(
        &mut self,
        email: Option<String>,
        name: Option<String>,
        metadata: Map<String, Value>,
    ) -> String {
        let id = random_id("cus_", 14);
        let c = Customer {
            id: id.clone(),
            created: self.now,
            email,
            name,
            metadata,
            balance: 0,
        };
        self.st.customers.insert(id.clone(), c);
        id
    }

    pub fn new_product(
        &mut self,
        name: String,
        description: Option<String>,
        metadata: Map<String, Value>,
        active: bool,
    ) -> String {
        let id = random_id("prod_", 14);
        let p = Product {
            id: id.clone(),
            created: self.now,
            updated: self.now,
            name,
            description,
            metadata,
            active,
        };
        self.st.products.insert(id.clone(), p);
        self.st.product_order.push(id.clone());
        id
    }

    pub fn insert_price(&mut self, mut p: Price) -> String {
        p.id = random_id("price_", 24);
        p.created = self.now;
        let id = p.id.clone();
        self.st.prices.insert(id.clone(), p);
        self.st.price_order.push(id.clone());
        id
    }

    pub fn dashboard_price(
        &mut self,
        plan_id: &str,
        unit_amount: i64,
        interval: &str,
        currency: &str,
    ) -> String {
        let mut metadata = Map::new();
        metadata.insert("plan_id".into(), Value::String(plan_id.to_owned()));
        let product = self.new_product(format!("KRAFTD {plan_id} (sales)"), None, metadata, true);
        self.insert_price(Price {
            id: String::new(),
            created: 0,
            product,
            currency: currency.to_lowercase(),
            unit_amount,
            interval: Some(interval.to_owned()),
            lookup_key: None,
            metadata: Map::new(),
            active: true,
        })
    }

    fn price_amount(&self, price: &str) -> i64 {
        self.st
            .prices
            .get(price)
            .map(|p| p.unit_amount)
            .unwrap_or(0)
    }

    fn product_name(&self, price: &str) -> String {
        self.st
            .prices
            .get(price)
            .and_then(|p| self.st.products.get(&p.product))
            .map(|p| p.name.clone())
            .unwrap_or_else(|| "Subscription".into())
    }

    /// A finalized invoice for one subscription, open until paid.
    fn new_invoice(
        &mut self,
        sub: &str,
        reason: &str,
        lines: Vec<Line>,
        period: (i64, i64),
    ) -> String {
        let s = &self.st.subscriptions[sub];
        let amount: i64 = lines.iter().map(|l| l.amount).sum::<i64>().max(0);
        self.st.invoice_seq += 1;
        let id = random_id("in_", 24);
        let inv = Invoice {
            id: id.clone(),
            created: self.now,
            customer: s.customer.clone(),
            subscription: Some(sub.to_owned()),
            subscription_item: Some(s.item_id.clone()),
            status: "open".into(),
            billing_reason: reason.into(),
            amount_due: amount,
            amount_paid: 0,
            period_start: period.0,
            period_end: period.1,
            lines,
            number: Some(format!("SIM-{:06}", self.st.invoice_seq)),
            attempt_count: 0,
            finalized_at: Some(self.now),
            paid_at: None,
        };
        self.st.invoices.insert(id.clone(), inv);
        self.st.invoice_order.push(id.clone());
        if let Some(s) = self.st.subscriptions.get_mut(sub) {
            s.latest_invoice = Some(id.clone());
        }
        id
    }

    /// Tries to charge an open invoice; emits what Stripe would.
    fn collect(&mut self, invoice: &str) -> bool {
        let customer = self.st.invoices[invoice].customer.clone();
        let declined = self.st.declining.contains(&customer);
        let inv = self.st.invoices.get_mut(invoice).expect("invoice exists");
        inv.attempt_count += 1;
        if declined && inv.amount_due > 0 {
            let json = self.invoice_json(invoice);
            self.emit("invoice.payment_failed", json, None);
            return false;
        }
        inv.status = "paid".into();
        inv.amount_paid = inv.amount_due;
        inv.paid_at = Some(self.now);
        let json = self.invoice_json(invoice);
        self.emit("invoice.paid", json.clone(), None);
        self.emit("invoice.payment_succeeded", json, None);
        true
    }

    fn line(
        &self,
        amount: i64,
        description: String,
        price: &str,
        period: (i64, i64),
        proration: bool,
        quantity: i64,
    ) -> Line {
        Line {
            id: random_id("il_", 24),
            amount,
            description,
            price: price.to_owned(),
            quantity,
            period_start: period.0,
            period_end: period.1,
            proration,
        }
    }

    pub fn complete_checkout(&mut self, session_id: &str) -> Result<String, SimError> {
        let s = self
            .st
            .sessions
            .get(session_id)
            .ok_or_else(|| not_found("checkout.session", session_id))?;
        if s.status != "open" {
            return Err(SimError::InvalidState(format!(
                "checkout session {session_id} is {}",
                s.status
            )));
        }
        if s.mode != "subscription" {
            return Err(SimError::InvalidState(format!(
                "checkout session {session_id} is not in subscription mode"
            )));
        }
        let (price_id, quantity, sub_meta, customer, trial) = (
            s.price.clone(),
            s.quantity,
            s.subscription_metadata.clone(),
            s.customer.clone(),
            s.trial.clone(),
        );
        let customer = match customer {
            Some(c) => c,
            None => self.new_customer(None, None, Map::new()),
        };
        let (sub_id, invoice) =
            self.start_subscription_with(&customer, &price_id, quantity, sub_meta, trial)?;
        let s = self
            .st
            .sessions
            .get_mut(session_id)
            .expect("session exists");
        s.status = "complete".into();
        s.payment_status = "paid".into();
        s.subscription = Some(sub_id.clone());
        s.invoice = Some(invoice);
        s.customer = Some(customer);
        let session =
            objects::checkout_session(self.st, &self.st.sessions[session_id], self.base_url);
        self.emit("checkout.session.completed", session, None);
        Ok(sub_id)
    }

    /// A subscription charged at once for its first period: what a paid
    /// checkout makes, and what sales makes in the dashboard (or
    /// `POST /v1/subscriptions`). Returns it and its first invoice.
    pub fn start_subscription(
        &mut self,
        customer: &str,
        price_id: &str,
        quantity: i64,
        metadata: Map<String, Value>,
    ) -> Result<(String, String), SimError> {
        self.start_subscription_with(customer, price_id, quantity, metadata, None)
    }

    /// As `start_subscription`; with a trial, `trialing` until its end and
    /// its first invoice for nothing.
    pub fn start_subscription_with(
        &mut self,
        customer: &str,
        price_id: &str,
        quantity: i64,
        metadata: Map<String, Value>,
        trial: Option<TrialTerms>,
    ) -> Result<(String, String), SimError> {
        let price = self
            .st
            .prices
            .get(price_id)
            .ok_or_else(|| not_found("price", price_id))?;
        let interval = price.interval.clone().unwrap_or_else(|| "month".into());
        if !self.st.customers.contains_key(customer) {
            return Err(not_found("customer", customer));
        }
        // A trial charges nothing now, so nothing can be declined.
        if trial.is_none() && self.st.declining.contains(customer) {
            return Err(SimError::CardDeclined(customer.to_owned()));
        }
        let sub_id = random_id("sub_", 24);
        let trial_end = trial.as_ref().map(|t| self.now + t.days * 86_400);
        let period = (
            self.now,
            trial_end.unwrap_or_else(|| add_interval(self.now, &interval)),
        );
        self.st.subscriptions.insert(
            sub_id.clone(),
            Subscription {
                id: sub_id.clone(),
                created: self.now,
                customer: customer.to_owned(),
                item_id: random_id("si_", 14),
                item_created: self.now,
                price: price_id.to_owned(),
                quantity,
                metadata,
                status: if trial.is_some() {
                    "trialing"
                } else {
                    "active"
                }
                .into(),
                period_start: period.0,
                period_end: period.1,
                cancel_at_period_end: false,
                canceled_at: None,
                ended_at: None,
                latest_invoice: None,
                pending_proration: 0,
                schedule: None,
                trial_start: trial_end.map(|_| self.now),
                trial_end,
                trial,
            },
        );
        let (amount, desc) = match trial_end {
            Some(_) => (
                0,
                format!("Trial period for {}", self.product_name(price_id)),
            ),
            None => (
                self.price_amount(price_id) * quantity,
                format!(
                    "{quantity} × {} (at ${:.2} / {interval})",
                    self.product_name(price_id),
                    self.price_amount(price_id) as f64 / 100.0
                ),
            ),
        };
        let line = self.line(amount, desc, price_id, period, false, quantity);
        let invoice = self.new_invoice(&sub_id, "subscription_create", vec![line], period);
        let sub = self.sub_json(&sub_id);
        self.emit("customer.subscription.created", sub, None);
        let inv = self.invoice_json(&invoice);
        self.emit("invoice.finalized", inv, None);
        self.collect(&invoice);
        Ok((sub_id, invoice))
    }

    /// `DELETE /v1/subscriptions/{id}` with `prorate`: the unused part of
    /// the paid period goes to the customer's credit balance; with
    /// `invoice_now`, through a final invoice of that credit (nothing to
    /// pay, so paid at once), as Stripe issues it.
    pub fn cancel_with_credit(&mut self, id: &str, invoice_now: bool) -> Result<(), SimError> {
        let s = self.live_sub(id)?;
        let period = (s.period_end - s.period_start).max(1);
        let remaining = (s.period_end - self.now).clamp(0, period);
        // A trial's period was never charged: nothing to give back.
        let paid = match s.trial {
            Some(_) => 0,
            None => self.price_amount(&s.price) * s.quantity,
        };
        let credit = -((paid as f64) * (remaining as f64) / (period as f64)).round() as i64;
        let (price, quantity, customer) = (s.price.clone(), s.quantity, s.customer.clone());
        let unused = (self.now.max(s.period_start), s.period_end);
        self.cancel_now(id)?;
        if invoice_now && credit != 0 {
            let desc = format!("Unused time on {}", self.product_name(&price));
            let line = self.line(credit, desc, &price, unused, true, quantity);
            let invoice = self.new_invoice(id, "subscription_update", vec![line], unused);
            let inv = self.invoice_json(&invoice);
            self.emit("invoice.finalized", inv, None);
            self.collect(&invoice);
        }
        if let Some(c) = self.st.customers.get_mut(&customer) {
            c.balance += credit;
        }
        Ok(())
    }

    pub fn cancel_now(&mut self, id: &str) -> Result<(), SimError> {
        self.live_sub(id)?;
        self.cancel_schedule_of(id);
        let now = self.now;
        let s = self.st.subscriptions.get_mut(id).expect("checked");
        s.status = "canceled".into();
        s.canceled_at.get_or_insert(now);
        s.ended_at = Some(now);
        let json = self.sub_json(id);
        self.emit("customer.subscription.deleted", json, None);
        Ok(())
    }

    pub fn end_period(&mut self, id: &str) -> Result<(), SimError> {
        let s = self.live_sub(id)?;
        if s.cancel_at_period_end {
            return self.cancel_now(id);
        }
        let before = self.sub_json(id);
        if let Some(trial) = s.trial.clone() {
            // The trial ends: without a card, as its settings say; else
            // the first paid period begins and is charged below.
            if !trial.has_payment_method && trial.missing_payment_method == "cancel" {
                return self.cancel_now(id);
            }
            let s = self.st.subscriptions.get_mut(id).expect("checked");
            s.trial = None;
            s.status = "active".into();
        }
        let s = &self.st.subscriptions[id];
        let schedule = s.schedule.clone();
        let schedule_before = schedule.as_ref().map(|sc| self.schedule_json(sc));
        // The schedule switches the price before renewing, so the renewal
        // invoice and the new period follow the new phase.
        if self.schedule_at_period_end(id) == AtPeriodEnd::Cancel {
            return self.cancel_now(id);
        }
        let s = &self.st.subscriptions[id];
        let (price, quantity, old_end, pending) = (
            s.price.clone(),
            s.quantity,
            s.period_end,
            s.pending_proration,
        );
        let interval = self
            .st
            .prices
            .get(&price)
            .and_then(|p| p.interval.clone())
            .unwrap_or_else(|| "month".into());
        let period = (old_end, add_interval(old_end, &interval));
        let mut lines = Vec::new();
        if pending != 0 {
            let desc = format!("Prorations for changes to {}", self.product_name(&price));
            lines.push(self.line(
                pending,
                desc,
                &price,
                (s.period_start, old_end),
                true,
                quantity,
            ));
        }
        let amount = self.price_amount(&price) * quantity;
        lines.push(self.line(
            amount,
            format!("{quantity} × {}", self.product_name(&price)),
            &price,
            period,
            false,
            quantity,
        ));
        {
            let s = self.st.subscriptions.get_mut(id).expect("checked");
            s.period_start = period.0;
            s.period_end = period.1;
            s.pending_proration = 0;
        }
        let invoice = self.new_invoice(id, "subscription_cycle", lines, period);
        let inv = self.invoice_json(&invoice);
        self.emit("invoice.finalized", inv, None);
        if !self.collect(&invoice) {
            self.st.subscriptions.get_mut(id).expect("checked").status = "past_due".into();
        }
        if let (Some(sc), Some(prev)) = (schedule, schedule_before) {
            if self.st.schedules[&sc].status == "active" {
                let after = self.schedule_json(&sc);
                let diff = changed(&prev, &after);
                if !diff.is_empty() {
                    self.emit("subscription_schedule.updated", after, Some(diff));
                }
            }
        }
        self.emit_sub_updated(id, &before);
        Ok(())
    }

    pub fn retry_payment(&mut self, id: &str) -> Result<(), SimError> {
        let s = self
            .st
            .subscriptions
            .get(id)
            .ok_or_else(|| not_found("subscription", id))?;
        let open = self
            .st
            .invoice_order
            .iter()
            .rev()
            .find(|i| {
                let inv = &self.st.invoices[*i];
                inv.subscription.as_deref() == Some(id) && inv.status == "open"
            })
            .cloned()
            .ok_or_else(|| {
                SimError::InvalidState(format!("subscription {id} has no open invoice"))
            })?;
        let customer = s.customer.clone();
        let before = self.sub_json(id);
        if !self.collect(&open) {
            return Err(SimError::CardDeclined(customer));
        }
        let s = self.st.subscriptions.get_mut(id).expect("exists");
        if matches!(s.status.as_str(), "past_due" | "unpaid" | "incomplete") {
            s.status = "active".into();
        }
        self.emit_sub_updated(id, &before);
        Ok(())
    }

    pub fn set_subscription_status(&mut self, id: &str, status: &str) -> Result<(), SimError> {
        const KNOWN: [&str; 8] = [
            "active",
            "past_due",
            "unpaid",
            "canceled",
            "incomplete",
            "incomplete_expired",
            "trialing",
            "paused",
        ];
        if !KNOWN.contains(&status) {
            return Err(SimError::InvalidState(format!(
                "unknown subscription status {status}"
            )));
        }
        if status == "canceled" {
            return self.cancel_now(id);
        }
        let s = self
            .st
            .subscriptions
            .get(id)
            .ok_or_else(|| not_found("subscription", id))?;
        let old = s.status.clone();
        let before = self.sub_json(id);
        self.st.subscriptions.get_mut(id).expect("exists").status = status.to_owned();
        let after = self.sub_json(id);
        let prev = changed(&before, &after);
        let kind = match (old.as_str(), status) {
            (o, "paused") if o != "paused" => "customer.subscription.paused",
            ("paused", n) if n != "paused" => "customer.subscription.resumed",
            _ => "customer.subscription.updated",
        };
        self.emit(kind, after, Some(prev));
        Ok(())
    }

    /// Proration for moving a subscription to another price at `at` (now,
    /// or the request's `proration_date`), rounded to the cent over the
    /// seconds left in the period.
    pub fn proration(&self, s: &Subscription, new_price: &str, at: i64) -> i64 {
        let period = (s.period_end - s.period_start).max(1);
        let remaining = (s.period_end - at).clamp(0, period);
        let diff = (self.price_amount(new_price) - self.price_amount(&s.price)) * s.quantity;
        ((diff as f64) * (remaining as f64) / (period as f64)).round() as i64
    }

    /// The API's subscription update; `price`, `cancel_at_period_end` and
    /// a trialing subscription's `trial_end` are the tracked changes.
    pub fn update_subscription(&mut self, id: &str, u: Update<'_>) -> Result<(), SimError> {
        let Update {
            price,
            proration_behavior,
            proration_date,
            cancel_at_period_end,
            trial_end,
            metadata,
        } = u;
        let s = self.live_sub(id)?;
        let prorate_at = self.proration_date(s, proration_date)?;
        if let Some(t) = trial_end {
            self.check_trial_end(s, t)?;
        }
        if let (Some(true), Some(sc)) = (cancel_at_period_end, &s.schedule) {
            return Err(SimError::InvalidState(format!(
                "The subscription is managed by the subscription schedule `{sc}`, and updating any cancelation behavior directly is not allowed. Please update the schedule instead."
            )));
        }
        let before = self.sub_json(id);
        let now = self.now;
        let mut proration_invoice = None;
        if let Some(price) = price.filter(|p| *p != self.st.subscriptions[id].price) {
            let s = &self.st.subscriptions[id];
            let amount = self.proration(s, &price, prorate_at);
            let period = (now.max(s.period_start), s.period_end);
            let quantity = s.quantity;
            match proration_behavior {
                "always_invoice" if amount > 0 => {
                    let desc = format!(
                        "Remaining time on {} after the change",
                        self.product_name(&price)
                    );
                    let line = self.line(amount, desc, &price, period, true, quantity);
                    self.st.subscriptions.get_mut(id).expect("checked").price = price;
                    proration_invoice =
                        Some(self.new_invoice(id, "subscription_update", vec![line], period));
                }
                "create_prorations" => {
                    let s = self.st.subscriptions.get_mut(id).expect("checked");
                    s.pending_proration += amount;
                    s.price = price;
                }
                _ => self.st.subscriptions.get_mut(id).expect("checked").price = price,
            }
        }
        let s = self.st.subscriptions.get_mut(id).expect("checked");
        if let Some(cancel) = cancel_at_period_end {
            s.cancel_at_period_end = cancel;
            s.canceled_at = cancel.then_some(now);
        }
        // Stripe moves the billing cycle anchor to the trial's new end, so
        // the trial's period, and the first paid invoice, move with it.
        if let Some(t) = trial_end {
            s.trial_end = Some(t);
            s.period_end = t;
        }
        if let Some(meta) = metadata {
            for (k, v) in meta {
                if v.as_str() == Some("") {
                    s.metadata.remove(&k);
                } else {
                    s.metadata.insert(k, v);
                }
            }
        }
        let paid = match &proration_invoice {
            Some(inv) => {
                let json = self.invoice_json(inv);
                self.emit("invoice.finalized", json, None);
                self.collect(inv)
            }
            None => true,
        };
        if !paid {
            self.st.subscriptions.get_mut(id).expect("checked").status = "past_due".into();
        }
        self.emit_sub_updated(id, &before);
        Ok(())
    }
}

/// What `POST /v1/subscriptions/{id}` asks to change; `None` leaves it.
#[derive(Default)]
pub struct Update<'a> {
    pub price: Option<String>,
    pub proration_behavior: &'a str,
    pub proration_date: Option<i64>,
    pub cancel_at_period_end: Option<bool>,
    pub trial_end: Option<i64>,
    pub metadata: Option<Map<String, Value>>,
}

impl Ctx<'_> {
    /// Stripe's rules for a new `trial_end`: in the future and at most two
    /// years from the billing cycle anchor. Only a trialing subscription's
    /// trial is moved here; Stripe would start a new trial on an active
    /// one, which the service never asks for.
    fn check_trial_end(&self, s: &Subscription, t: i64) -> Result<(), SimError> {
        if s.status != "trialing" || s.trial.is_none() {
            return Err(SimError::InvalidState(
                "The simulator moves trial_end only on a trialing subscription.".into(),
            ));
        }
        if t <= self.now {
            return Err(SimError::InvalidState(
                "Invalid timestamp: must be an integer Unix timestamp in the future.".into(),
            ));
        }
        if t > s.period_start + 2 * 365 * 86_400 {
            return Err(SimError::InvalidState(
                "trial_end can be at most two years from billing_cycle_anchor.".into(),
            ));
        }
        Ok(())
    }

    /// What the next invoice would be for a price change now: the proration
    /// (never below zero) as one line.
    /// Stripe's rule for `proration_date`: within the current period, and
    /// not in the future; now when absent.
    fn proration_date(&self, s: &Subscription, asked: Option<i64>) -> Result<i64, SimError> {
        match asked {
            None => Ok(self.now),
            Some(t) if t >= s.period_start && t <= self.now && t <= s.period_end => Ok(t),
            Some(_) => Err(SimError::InvalidState(
                "proration_date must be within the current billing period and not in the future"
                    .into(),
            )),
        }
    }

    pub fn preview(
        &self,
        sub_id: &str,
        new_price: Option<&str>,
        proration_behavior: &str,
        proration_date: Option<i64>,
    ) -> Result<Invoice, SimError> {
        let s = self
            .st
            .subscriptions
            .get(sub_id)
            .ok_or_else(|| not_found("subscription", sub_id))?;
        let prorate_at = self.proration_date(s, proration_date)?;
        let (amount, price, period, desc, proration) = match new_price.filter(|p| *p != s.price) {
            Some(p) => {
                let amount = if proration_behavior == "none" {
                    0
                } else {
                    self.proration(s, p, prorate_at)
                };
                (
                    amount,
                    p.to_owned(),
                    (self.now.max(s.period_start), s.period_end),
                    format!(
                        "Remaining time on {} after the change",
                        self.product_name(p)
                    ),
                    true,
                )
            }
            None => {
                let interval = self
                    .st
                    .prices
                    .get(&s.price)
                    .and_then(|p| p.interval.clone())
                    .unwrap_or_else(|| "month".into());
                let amount = self.price_amount(&s.price) * s.quantity + s.pending_proration;
                (
                    amount,
                    s.price.clone(),
                    (s.period_end, add_interval(s.period_end, &interval)),
                    format!("{} × {}", s.quantity, self.product_name(&s.price)),
                    false,
                )
            }
        };
        Ok(Invoice {
            id: random_id("upcoming_in_", 24),
            created: self.now,
            customer: s.customer.clone(),
            subscription: Some(sub_id.to_owned()),
            subscription_item: Some(s.item_id.clone()),
            status: "draft".into(),
            billing_reason: if proration {
                "subscription_update".into()
            } else {
                "upcoming".into()
            },
            amount_due: amount.max(0),
            amount_paid: 0,
            period_start: period.0,
            period_end: period.1,
            lines: vec![self.line(amount, desc, &price, period, proration, s.quantity)],
            number: None,
            attempt_count: 0,
            finalized_at: None,
            paid_at: None,
        })
    }
}

/// The schedule update the API makes: it sits above the schedules (schedules.rs)
/// because a changed current phase is a subscription change made here.
impl Ctx<'_> {
    /// Replaces phases and/or end_behavior; a changed current phase applies to
    /// the subscription now, as in Stripe.
    pub fn update_schedule(
        &mut self,
        id: &str,
        phases: Option<Vec<Phase>>,
        end_behavior: Option<String>,
        proration_behavior: &str,
    ) -> Result<(), SimError> {
        self.active_schedule(id)?;
        let before = self.schedule_json(id);
        let sc = self.st.schedules.get_mut(id).expect("checked");
        if let Some(p) = phases {
            sc.phases = p;
        }
        if let Some(e) = end_behavior {
            sc.end_behavior = e;
        }
        let sc = &self.st.schedules[id];
        let sub = sc.subscription.clone();
        let current = objects::phase_at(sc, self.schedule_time(sc)).cloned();
        if let Some(ph) = current.filter(|ph| ph.price != self.st.subscriptions[&sub].price) {
            self.update_subscription(
                &sub,
                Update {
                    price: Some(ph.price),
                    proration_behavior,
                    ..Update::default()
                },
            )?;
        }
        self.emit_schedule("subscription_schedule.updated", id, Some(&before));
        Ok(())
    }
}
