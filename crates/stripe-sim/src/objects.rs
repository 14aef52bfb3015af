//! Renders the tracked state onto Stripe's own example objects, so every
//! field the fake does not track still has the shape the typed client wants.

use std::sync::OnceLock;

use serde_json::{json, Map, Value};

use crate::state::{
    Customer, Invoice, Phase, PortalSession, Price, Product, Schedule, Session, State, Subscription,
};

static FIXTURES: OnceLock<Value> = OnceLock::new();

/// Stripe's example object of one type (`"customer"`, `"checkout.session"`...).
pub(crate) fn fixture(kind: &str) -> Value {
    let all = FIXTURES.get_or_init(|| {
        serde_json::from_str(include_str!("fixtures3.json")).expect("fixtures3.json is JSON")
    });
    all["resources"][kind].clone()
}

fn set(obj: &mut Value, fields: Value) {
    let (Value::Object(target), Value::Object(fields)) = (obj, fields) else {
        return;
    };
    for (k, v) in fields {
        target.insert(k, v);
    }
}

pub(crate) fn random_id(prefix: &str, len: usize) -> String {
    use rand::distributions::Alphanumeric;
    use rand::Rng;
    let tail: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect();
    format!("{prefix}{tail}")
}

/// A price's currency, which Stripe gives everything billed at it; "usd"
/// for a price it does not know.
fn currency_of(st: &State, price: &str) -> String {
    st.prices
        .get(price)
        .map_or_else(|| "usd".to_owned(), |p| p.currency.clone())
}

fn opt<T: Into<Value> + Clone>(v: &Option<T>) -> Value {
    v.clone().map(Into::into).unwrap_or(Value::Null)
}

pub(crate) fn customer(c: &Customer) -> Value {
    let mut o = fixture("customer");
    set(
        &mut o,
        json!({
            "id": c.id, "created": c.created, "email": opt(&c.email), "name": opt(&c.name),
            "metadata": c.metadata, "discount": null, "shipping": null, "currency": null,
            "balance": c.balance,
            "invoice_prefix": c.id.trim_start_matches("cus_").chars().take(8).collect::<String>().to_uppercase(),
        }),
    );
    o
}

pub(crate) fn product(p: &Product) -> Value {
    let mut o = fixture("product");
    set(
        &mut o,
        json!({
            "id": p.id, "created": p.created, "updated": p.updated, "name": p.name,
            "description": opt(&p.description), "metadata": p.metadata, "active": p.active,
            "default_price": null, "package_dimensions": null, "type": "service", "images": [],
        }),
    );
    o
}

/// `expand_product` embeds the product object instead of its id.
pub(crate) fn price(st: &State, p: &Price, expand_product: bool) -> Value {
    let mut o = fixture("price");
    let recurring = match &p.interval {
        Some(interval) => json!({
            "interval": interval, "interval_count": 1, "meter": null,
            "usage_type": "licensed", "trial_period_days": null,
        }),
        None => Value::Null,
    };
    let product_value = match (expand_product, st.products.get(&p.product)) {
        (true, Some(prod)) => product(prod),
        _ => Value::String(p.product.clone()),
    };
    set(
        &mut o,
        json!({
            "id": p.id, "created": p.created, "product": product_value, "currency": p.currency,
            "unit_amount": p.unit_amount, "unit_amount_decimal": p.unit_amount.to_string(),
            "recurring": recurring,
            "type": if p.interval.is_some() { "recurring" } else { "one_time" },
            "lookup_key": opt(&p.lookup_key), "metadata": p.metadata, "active": p.active,
            "custom_unit_amount": null, "transform_quantity": null, "nickname": null,
        }),
    );
    o
}

/// The legacy `plan` Stripe still mirrors from the price on subscription items.
fn plan(p: &Price) -> Value {
    let mut o = fixture("subscription_item")["plan"].clone();
    set(
        &mut o,
        json!({
            "id": p.id, "active": p.active, "amount": p.unit_amount,
            "amount_decimal": p.unit_amount.to_string(), "billing_scheme": "per_unit",
            "created": p.created, "currency": p.currency,
            "interval": p.interval.clone().unwrap_or_else(|| "month".into()),
            "interval_count": 1, "livemode": false, "metadata": p.metadata,
            "product": p.product, "transform_usage": null,
        }),
    );
    o
}

pub(crate) fn checkout_session(st: &State, s: &Session, base_url: &str) -> Value {
    let mut o = fixture("checkout.session");
    let amount = st.prices.get(&s.price).map(|p| p.unit_amount * s.quantity);
    let complete = s.status == "complete";
    let customer_details = match (
        complete,
        s.customer.as_ref().and_then(|c| st.customers.get(c)),
    ) {
        (true, Some(c)) => {
            let mut d = fixture("checkout.session")["customer_details"].clone();
            set(
                &mut d,
                json!({ "email": opt(&c.email), "name": opt(&c.name) }),
            );
            d
        }
        _ => Value::Null,
    };
    set(
        &mut o,
        json!({
            "id": s.id, "created": s.created, "expires_at": s.expires_at, "mode": s.mode,
            "customer": opt(&s.customer), "client_reference_id": opt(&s.client_reference_id),
            "metadata": s.metadata, "success_url": opt(&s.success_url),
            "cancel_url": opt(&s.cancel_url), "allow_promotion_codes": opt(&s.allow_promotion_codes),
            "status": s.status, "payment_status": s.payment_status,
            "payment_method_collection": s.payment_method_collection,
            "subscription": opt(&s.subscription), "invoice": opt(&s.invoice),
            "url": if complete { Value::Null } else { json!(format!("{base_url}/sim/checkout/{}", s.id)) },
            "amount_subtotal": opt(&amount), "amount_total": opt(&amount), "currency": currency_of(st, &s.price),
            "customer_details": customer_details, "payment_intent": null,
            "after_expiration": null, "shipping_cost": null, "shipping_address_collection": null,
            "collected_information": null, "currency_conversion": null, "invoice_creation": null,
            "total_details": { "amount_discount": 0, "amount_shipping": 0, "amount_tax": 0 },
            "custom_text": {
                "after_submit": null, "shipping_address": null, "submit": null,
                "terms_of_service_acceptance": null,
            },
        }),
    );
    o
}

pub(crate) fn subscription(st: &State, s: &Subscription) -> Value {
    let mut o = fixture("subscription");
    let mut item = fixture("subscription_item");
    if let Some(p) = st.prices.get(&s.price) {
        set(
            &mut item,
            json!({ "price": price(st, p, false), "plan": plan(p) }),
        );
    }
    set(
        &mut item,
        json!({
            "id": s.item_id, "created": s.item_created, "quantity": s.quantity,
            "subscription": s.id, "current_period_start": s.period_start,
            "current_period_end": s.period_end, "billing_thresholds": null, "metadata": {},
        }),
    );
    set(
        &mut o,
        json!({
            "id": s.id, "created": s.created, "start_date": s.created,
            "billing_cycle_anchor": s.period_start, "billing_cycle_anchor_config": null,
            "customer": s.customer, "currency": currency_of(st, &s.price), "status": s.status, "metadata": s.metadata,
            "cancel_at_period_end": s.cancel_at_period_end,
            "cancel_at": if s.cancel_at_period_end { json!(s.period_end) } else { Value::Null },
            "canceled_at": opt(&s.canceled_at), "ended_at": opt(&s.ended_at),
            "latest_invoice": opt(&s.latest_invoice), "schedule": opt(&s.schedule),
            "items": {
                "object": "list", "data": [item], "has_more": false,
                "url": format!("/v1/subscription_items?subscription={}", s.id),
            },
            "trial_start": opt(&s.trial_start), "trial_end": opt(&s.trial_end),
            "trial_settings": {
                "end_behavior": {
                    "missing_payment_method": s.trial.as_ref()
                        .map_or("create_invoice", |t| t.missing_payment_method.as_str()),
                },
            },
            "next_pending_invoice_item_invoice": null,
            "pending_update": null, "pending_invoice_item_interval": null,
            "pause_collection": if s.status == "paused" {
                json!({ "behavior": "void", "resumes_at": null })
            } else { Value::Null },
            "transfer_data": null, "billing_thresholds": null, "billing_schedules": [],
            "managed_payments": null,
            "billing_mode": { "type": "classic" },
        }),
    );
    o
}

/// The phase in effect at `at`: the simulator's time for a schedule is the
/// later of the clock and its subscription's period start, since end_period
/// moves periods without moving the clock.
pub(crate) fn phase_at(sc: &Schedule, at: i64) -> Option<&Phase> {
    sc.phases.iter().find(|p| p.start <= at && at < p.end)
}

pub(crate) fn subscription_schedule(st: &State, sc: &Schedule, now: i64) -> Value {
    let mut o = fixture("subscription_schedule");
    let phase_fixture = fixture("subscription_schedule")["phases"][0].clone();
    let item_fixture = phase_fixture["items"][0].clone();
    let phases: Vec<Value> = sc
        .phases
        .iter()
        .map(|ph| {
            let mut item = item_fixture.clone();
            let plan_value = match st.prices.get(&ph.price) {
                Some(p) => plan(p),
                None => json!(ph.price),
            };
            set(
                &mut item,
                json!({
                    "price": ph.price, "plan": plan_value, "quantity": ph.quantity,
                    "billing_thresholds": null, "discounts": [], "tax_rates": [], "metadata": {},
                }),
            );
            let mut phase = phase_fixture.clone();
            set(
                &mut phase,
                json!({
                    "start_date": ph.start, "end_date": ph.end, "items": [item],
                    "currency": currency_of(st, &ph.price), "transfer_data": null, "billing_thresholds": null,
                    "invoice_settings": null, "metadata": {}, "trial_end": null,
                }),
            );
            phase
        })
        .collect();
    let active = sc.status == "active";
    let at = st
        .subscriptions
        .get(&sc.subscription)
        .map_or(now, |s| now.max(s.period_start));
    let current = match phase_at(sc, at).filter(|_| active) {
        Some(p) => json!({ "start_date": p.start, "end_date": p.end }),
        None => Value::Null,
    };
    let mut defaults = fixture("subscription_schedule")["default_settings"].clone();
    set(
        &mut defaults,
        json!({ "transfer_data": null, "billing_thresholds": null }),
    );
    set(
        &mut o,
        json!({
            "id": sc.id, "created": sc.created, "customer": sc.customer, "status": sc.status,
            "end_behavior": sc.end_behavior, "phases": phases, "current_phase": current,
            // Stripe detaches a released schedule from its subscription.
            "subscription": if sc.status == "released" { Value::Null } else { json!(sc.subscription) },
            "released_subscription": if sc.status == "released" { json!(sc.subscription) } else { Value::Null },
            "released_at": opt(&sc.released_at), "completed_at": opt(&sc.completed_at),
            "canceled_at": opt(&sc.canceled_at), "default_settings": defaults,
            "metadata": {}, "application": null, "test_clock": null, "livemode": false,
            "billing_mode": { "type": "classic" }, "customer_account": null,
        }),
    );
    o
}

pub(crate) fn invoice(st: &State, i: &Invoice, base_url: &str) -> Value {
    let mut o = fixture("invoice");
    let line_fixture = fixture("invoice")["lines"]["data"][0].clone();
    let lines: Vec<Value> = i
        .lines
        .iter()
        .map(|l| {
            let mut line = line_fixture.clone();
            let product = st.prices.get(&l.price).map(|p| p.product.clone()).unwrap_or_default();
            set(
                &mut line,
                json!({
                    "id": l.id, "invoice": i.id, "amount": l.amount,
                    "subtotal": l.amount, "currency": currency_of(st, &l.price), "description": l.description,
                    "quantity": l.quantity, "period": { "start": l.period_start, "end": l.period_end },
                    "subscription": opt(&i.subscription), "metadata": {},
                    "parent": {
                        "type": "subscription_item_details",
                        "invoice_item_details": null,
                        "subscription_item_details": {
                            "invoice_item": null, "proration": l.proration,
                            "proration_details": { "credited_items": null },
                            "subscription": opt(&i.subscription),
                            "subscription_item": opt(&i.subscription_item),
                        },
                    },
                    "pricing": {
                        "type": "price_details", "unit_amount_decimal": l.amount.to_string(),
                        "price_details": { "price": l.price, "product": product },
                    },
                    "pretax_credit_amounts": [], "taxes": [],
                }),
            );
            line
        })
        .collect();
    let customer = st.customers.get(&i.customer);
    let parent = match &i.subscription {
        Some(sub) => json!({
            "type": "subscription_details", "quote_details": null,
            "subscription_details": { "metadata": st.subscriptions.get(sub).map(|s| Value::Object(s.metadata.clone())).unwrap_or(json!({})), "subscription": sub },
        }),
        None => Value::Null,
    };
    let paid = i.status == "paid";
    // Below zero for a credit (a cancellation with proration), where
    // amount_due stays at zero.
    let total: i64 = i.lines.iter().map(|l| l.amount).sum();
    set(
        &mut o,
        json!({
            "id": i.id, "created": i.created, "customer": i.customer,
            "customer_email": opt(&customer.and_then(|c| c.email.clone())),
            "customer_name": opt(&customer.and_then(|c| c.name.clone())),
            "customer_shipping": null, "shipping_cost": null, "shipping_details": null,
        }),
    );
    set(
        &mut o,
        json!({
            "status": i.status, "billing_reason": i.billing_reason,
            "amount_due": i.amount_due, "amount_paid": i.amount_paid,
            "amount_remaining": i.amount_due - i.amount_paid, "amount_overpaid": 0,
            "subtotal": total, "subtotal_excluding_tax": total,
            "total": total, "total_excluding_tax": total,
            "currency": i.lines.first().map_or_else(|| "usd".to_owned(), |l| currency_of(st, &l.price)),
            "period_start": i.period_start, "period_end": i.period_end,
            "number": opt(&i.number), "attempt_count": i.attempt_count,
            "attempted": i.attempt_count > 0, "auto_advance": !paid && i.status != "draft",
            "due_date": null, "effective_at": opt(&i.finalized_at),
            "next_payment_attempt": null, "from_invoice": null, "last_finalization_error": null,
            "webhooks_delivered_at": opt(&i.finalized_at),
            "hosted_invoice_url": if i.status == "draft" { Value::Null } else { json!(format!("{base_url}/sim/invoices/{}", i.id)) },
            "invoice_pdf": if i.status == "draft" { Value::Null } else { json!(format!("{base_url}/sim/invoices/{}/pdf", i.id)) },
            "status_transitions": {
                "finalized_at": opt(&i.finalized_at), "marked_uncollectible_at": null,
                "paid_at": opt(&i.paid_at), "voided_at": null,
            },
        }),
    );
    set(
        &mut o,
        json!({
            "subscription": null, "parent": parent,
            "lines": {
                "object": "list", "data": lines, "has_more": false,
                "url": format!("/v1/invoices/{}/lines", i.id),
            },
        }),
    );
    o
}

pub(crate) fn portal_session(p: &PortalSession, base_url: &str) -> Value {
    let mut o = fixture("billing_portal.session");
    set(
        &mut o,
        json!({
            "id": p.id, "created": p.created, "customer": p.customer, "livemode": false,
            "return_url": opt(&p.return_url), "flow": null,
            "url": format!("{base_url}/sim/portal/{}", p.id),
        }),
    );
    o
}

/// An event envelope around a snapshot taken now.
pub(crate) fn event(
    kind: &str,
    object: Value,
    previous: Option<Map<String, Value>>,
    created: i64,
) -> Value {
    let mut o = fixture("event");
    let mut data = json!({ "object": object });
    if let Some(prev) = previous {
        data["previous_attributes"] = Value::Object(prev);
    }
    set(
        &mut o,
        json!({
            "id": random_id("evt_", 24), "type": kind, "created": created, "data": data,
            "api_version": stripe_shared::version::VERSION.as_str(), "livemode": false,
            "pending_webhooks": 1, "request": { "id": null, "idempotency_key": null },
        }),
    );
    o
}

/// Stripe's error body.
pub(crate) fn error(kind: &str, code: Option<&str>, message: &str, param: Option<&str>) -> Value {
    let mut e = json!({ "type": kind, "message": message });
    if let Some(code) = code {
        e["code"] = json!(code);
    }
    if let Some(param) = param {
        e["param"] = json!(param);
    }
    json!({ "error": e })
}
