//! The HTTP face: Stripe's v1 routes under one handler (so recording, auth,
//! faults and idempotency apply uniformly), plus the simulator's pages.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State as AxState;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use axum::routing::{any, get, post};
use axum::Router;
use serde_json::{json, Map, Value};

use crate::answer::{bad_ref, err, missing, required, Answer};
use crate::ctx::Ctx;
use crate::form::{self, Form};
use crate::inner::Inner;
use crate::objects::{self, random_id};
use crate::ops::Update;
use crate::pages;
use crate::schedule_api;
use crate::state::{FaultKind, PortalSession, Price, RecordedRequest, Replay, Session, TrialTerms};

pub(crate) fn router(inner: Arc<Inner>) -> Router {
    Router::new()
        .route("/v1/{*rest}", any(v1))
        .route("/sim/checkout/{id}", get(pages::checkout))
        .route("/sim/checkout/{id}/pay", post(pages::pay))
        .route("/sim/portal/{id}", get(pages::portal))
        .route("/sim/invoices/{id}", get(pages::invoice))
        .route("/sim/invoices/{id}/pdf", get(pages::invoice_pdf))
        .with_state(inner)
}

fn respond(status: u16, body: String, extra: &[(&str, &str)]) -> Response {
    let mut r = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .header("request-id", random_id("req_", 14))
        .header("stripe-version", stripe_shared::version::VERSION.as_str());
    for (k, v) in extra {
        r = r.header(*k, *v);
    }
    r.body(Body::from(body)).expect("valid response")
}

async fn v1(
    AxState(inner): AxState<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let body = String::from_utf8_lossy(&body).into_owned();
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let fault = {
        let mut st = inner.lock();
        st.requests.push(RecordedRequest {
            method: method.to_string(),
            path: path.clone(),
            idempotency_key: key.clone(),
            body: body.clone(),
        });
        st.take_fault(method.as_str(), &path)
    };
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !bearer.is_some_and(|k| k.starts_with("sk_") || k.starts_with("rk_")) {
        let (s, v) = err(
            401,
            "invalid_request_error",
            None,
            "Invalid API Key provided. Send `Authorization: Bearer sk_...`.",
            None,
        );
        return respond(s, v.to_string(), &[]);
    }
    match fault {
        Some(FaultKind::Fail(status)) => {
            let (kind, code) = if status == 429 {
                ("invalid_request_error", Some("rate_limit"))
            } else {
                ("api_error", None)
            };
            let (s, v) = err(
                status,
                kind,
                code,
                "Simulated failure (fail_next); the request was not applied.",
                None,
            );
            return respond(s, v.to_string(), &[("stripe-should-retry", "true")]);
        }
        Some(FaultKind::Delay(d)) => tokio::time::sleep(d).await,
        None => {}
    }
    let input = if method == Method::GET {
        uri.query().unwrap_or("").to_owned()
    } else {
        body.clone()
    };
    let f = Form(form::parse(&input));
    // Stripe compares parameters, not bytes: the same map encoded in
    // another order (Rust's HashMap) is the same request.
    let fingerprint = format!("{method} {path}\n{}", f.0);
    let idempotent = method == Method::POST && key.is_some();
    let mut st = inner.lock();
    if idempotent {
        if let Some(prev) = st.idempotency.get(key.as_deref().unwrap_or_default()) {
            if prev.fingerprint == fingerprint {
                return respond(
                    prev.status,
                    prev.body.clone(),
                    &[("idempotent-replayed", "true")],
                );
            }
            let msg = "Keys for idempotent requests can only be used with the same parameters they were first used with.";
            let (s, v) = err(400, "idempotency_error", None, msg, None);
            return respond(s, v.to_string(), &[]);
        }
    }
    let mut ctx = Ctx {
        st: &mut st,
        now: inner.now(),
        base_url: &inner.base_url,
        deliveries: &inner.deliveries,
    };
    let segs: Vec<&str> = path.trim_start_matches("/v1/").split('/').collect();
    let (status, value) = dispatch(&mut ctx, &method, &segs, &f);
    let text = value.to_string();
    if idempotent && (200..300).contains(&status) {
        let replay = Replay {
            fingerprint,
            status,
            body: text.clone(),
        };
        st.idempotency.insert(key.unwrap_or_default(), replay);
    }
    respond(status, text, &[])
}

fn dispatch(c: &mut Ctx<'_>, method: &Method, segs: &[&str], f: &Form) -> Answer {
    match (method.as_str(), segs) {
        ("POST", ["customers"]) => {
            let id = c.new_customer(
                f.str("email"),
                f.str("name"),
                f.metadata("metadata").unwrap_or_default(),
            );
            (200, objects::customer(&c.st.customers[&id]))
        }
        ("GET", ["customers", id]) => match c.st.customers.get(*id) {
            Some(cu) => (200, objects::customer(cu)),
            None => missing("customer", id),
        },
        ("POST", ["products"]) => {
            let Some(name) = f.str("name") else {
                return required("name");
            };
            let id = c.new_product(
                name,
                f.str("description"),
                f.metadata("metadata").unwrap_or_default(),
                f.bool("active").unwrap_or(true),
            );
            (200, objects::product(&c.st.products[&id]))
        }
        ("GET", ["products"]) => list_products(c, f),
        ("GET", ["products", id]) => match c.st.products.get(*id) {
            Some(p) => (200, objects::product(p)),
            None => missing("product", id),
        },
        ("POST", ["products", id]) => {
            let now = c.now;
            let Some(p) = c.st.products.get_mut(*id) else {
                return missing("product", id);
            };
            if let Some(n) = f.str("name") {
                p.name = n;
            }
            if let Some(d) = f.str("description") {
                p.description = (!d.is_empty()).then_some(d);
            }
            if let Some(a) = f.bool("active") {
                p.active = a;
            }
            merge(&mut p.metadata, f.metadata("metadata"));
            p.updated = now;
            (200, objects::product(p))
        }
        ("POST", ["prices"]) => create_price(c, f),
        ("GET", ["prices"]) => list_prices(c, f),
        ("GET", ["prices", id]) => match c.st.prices.get(*id) {
            Some(p) => (200, objects::price(c.st, p, false)),
            None => missing("price", id),
        },
        ("POST", ["prices", id]) => update_price(c, id, f),
        ("POST", ["checkout", "sessions"]) => create_session(c, f),
        ("POST", ["checkout", "sessions", id, "expire"]) => match c.st.sessions.get_mut(*id) {
            Some(s) if s.status == "open" => {
                s.status = "expired".into();
                let s = c.st.sessions[*id].clone();
                (200, objects::checkout_session(c.st, &s, c.base_url))
            }
            Some(_) => err(
                400,
                "invalid_request_error",
                None,
                "Only open sessions can be expired.",
                None,
            ),
            None => missing("checkout.session", id),
        },
        ("GET", ["checkout", "sessions", id]) => match c.st.sessions.get(*id) {
            Some(s) => (200, objects::checkout_session(c.st, s, c.base_url)),
            None => missing("checkout.session", id),
        },
        ("GET", ["subscriptions", id]) => match c.st.subscriptions.contains_key(*id) {
            true => (200, c.sub_json(id)),
            false => missing("subscription", id),
        },
        ("POST", ["subscriptions"]) => create_subscription(c, f),
        ("POST", ["subscriptions", id]) => update_subscription(c, id, f),
        ("DELETE", ["subscriptions", id]) => {
            if !c.st.subscriptions.contains_key(*id) {
                return missing("subscription", id);
            }
            let cancelled = if f.bool("prorate") == Some(true) {
                c.cancel_with_credit(id, f.bool("invoice_now") == Some(true))
            } else {
                c.cancel_now(id)
            };
            match cancelled {
                Ok(()) => (200, c.sub_json(id)),
                Err(e) => err(400, "invalid_request_error", None, &e.to_string(), None),
            }
        }
        ("POST", ["subscription_schedules"]) => schedule_api::create(c, f),
        ("GET", ["subscription_schedules", id]) => match c.st.schedules.contains_key(*id) {
            true => (200, c.schedule_json(id)),
            false => missing("subscription_schedule", id),
        },
        ("POST", ["subscription_schedules", id]) => schedule_api::update(c, id, f),
        ("POST", ["subscription_schedules", id, "release"]) => schedule_api::release(c, id),
        ("POST", ["invoices", "create_preview"]) => preview(c, f),
        ("GET", ["invoices"]) => list_invoices(c, f),
        ("GET", ["invoices", id]) => match c.st.invoices.contains_key(*id) {
            true => (200, c.invoice_json(id)),
            false => missing("invoice", id),
        },
        ("GET", ["events"]) => list_events(c, f),
        ("POST", ["billing_portal", "sessions"]) => {
            let Some(customer) = f.str("customer") else {
                return required("customer");
            };
            if !c.st.customers.contains_key(&customer) {
                return bad_ref("customer", &customer, "customer");
            }
            let p = PortalSession {
                id: random_id("bps_", 24),
                created: c.now,
                customer,
                return_url: f.str("return_url"),
            };
            let v = objects::portal_session(&p, c.base_url);
            c.st.portal_sessions.insert(p.id.clone(), p);
            (200, v)
        }
        _ => err(
            404,
            "invalid_request_error",
            None,
            &format!(
                "Unrecognized request URL ({method} /v1/{}).",
                segs.join("/")
            ),
            None,
        ),
    }
}

fn merge(target: &mut Map<String, Value>, update: Option<Map<String, Value>>) {
    for (k, v) in update.unwrap_or_default() {
        if v.as_str() == Some("") {
            target.remove(&k);
        } else {
            target.insert(k, v);
        }
    }
}

/// Newest first, `limit` (default 10) after `starting_after`, as Stripe pages.
fn page(ids: Vec<String>, f: &Form, url: &str, render: impl Fn(&str) -> Value) -> Answer {
    let limit = f.int("limit").unwrap_or(10).clamp(1, 100) as usize;
    let start = match f.str("starting_after") {
        Some(after) => ids
            .iter()
            .position(|i| *i == after)
            .map(|p| p + 1)
            .unwrap_or(ids.len()),
        None => 0,
    };
    let rest = &ids[start.min(ids.len())..];
    let data: Vec<Value> = rest.iter().take(limit).map(|i| render(i)).collect();
    (
        200,
        json!({ "object": "list", "url": url, "has_more": rest.len() > limit, "data": data }),
    )
}

fn list_products(c: &Ctx<'_>, f: &Form) -> Answer {
    let active = f.bool("active");
    let ids =
        c.st.product_order
            .iter()
            .rev()
            .filter(|i| active.is_none_or(|a| c.st.products[*i].active == a))
            .cloned()
            .collect();
    page(ids, f, "/v1/products", |i| {
        objects::product(&c.st.products[i])
    })
}

fn list_prices(c: &Ctx<'_>, f: &Form) -> Answer {
    let keys = f.list("lookup_keys");
    let active = f.bool("active");
    let product = f.str("product");
    let expand = f.list("expand").iter().any(|e| e == "data.product");
    let ids =
        c.st.price_order
            .iter()
            .rev()
            .filter(|i| {
                let p = &c.st.prices[*i];
                (keys.is_empty() || p.lookup_key.as_ref().is_some_and(|k| keys.contains(k)))
                    && active.is_none_or(|a| p.active == a)
                    && product.as_ref().is_none_or(|pr| p.product == *pr)
            })
            .cloned()
            .collect();
    page(ids, f, "/v1/prices", |i| {
        objects::price(c.st, &c.st.prices[i], expand)
    })
}

/// Stripe's event list: `delivery_success=false` are the events some
/// endpoint has not yet answered 2xx (failed, or still retrying),
/// `created[gte|gt|lte|lt]`, `type` or `types[]`.
fn list_events(c: &Ctx<'_>, f: &Form) -> Answer {
    let delivered = f.bool("delivery_success");
    let types = f.list("types");
    let kind = f.str("type");
    let created = |e: &Value| e["created"].as_i64().unwrap_or(0);
    let bound = |op: &str| f.int(&format!("created.{op}"));
    let in_range = |t: i64| {
        bound("gte").is_none_or(|b| t >= b)
            && bound("gt").is_none_or(|b| t > b)
            && bound("lte").is_none_or(|b| t <= b)
            && bound("lt").is_none_or(|b| t < b)
            && f.int("created").is_none_or(|b| t == b)
    };
    let ids =
        c.st.events
            .iter()
            .rev()
            .filter(|e| {
                let pending = e["pending_webhooks"].as_i64().unwrap_or(0) > 0;
                let t = e["type"].as_str().unwrap_or_default();
                delivered.is_none_or(|d| d != pending)
                    && (types.is_empty() || types.iter().any(|k| k == t))
                    && kind.as_ref().is_none_or(|k| k == t)
                    && in_range(created(e))
            })
            .filter_map(|e| e["id"].as_str().map(str::to_owned))
            .collect();
    page(ids, f, "/v1/events", |i| {
        c.st.events
            .iter()
            .find(|e| e["id"] == i)
            .cloned()
            .unwrap_or(Value::Null)
    })
}

fn list_invoices(c: &Ctx<'_>, f: &Form) -> Answer {
    let customer = f.str("customer");
    let sub = f.str("subscription");
    let ids =
        c.st.invoice_order
            .iter()
            .rev()
            .filter(|i| {
                let inv = &c.st.invoices[*i];
                customer.as_ref().is_none_or(|cu| inv.customer == *cu)
                    && sub
                        .as_ref()
                        .is_none_or(|s| inv.subscription.as_ref() == Some(s))
            })
            .cloned()
            .collect();
    page(ids, f, "/v1/invoices", |i| c.invoice_json(i))
}

/// Moves a lookup key to `to` when `transfer` is set; otherwise a key in use is an error.
fn claim_lookup_key(
    c: &mut Ctx<'_>,
    key: &str,
    to: Option<&str>,
    transfer: bool,
) -> Result<(), Answer> {
    let holder =
        c.st.prices
            .values()
            .find(|p| p.lookup_key.as_deref() == Some(key) && Some(p.id.as_str()) != to)
            .map(|p| p.id.clone());
    match holder {
        Some(h) if transfer => {
            c.st.prices.get_mut(&h).expect("found").lookup_key = None;
            Ok(())
        }
        Some(h) => {
            let msg = format!("A price (`{h}`) already uses that lookup key. Pass transfer_lookup_key=true to move it.");
            Err(err(
                400,
                "invalid_request_error",
                Some("lookup_key_already_exists"),
                &msg,
                Some("lookup_key"),
            ))
        }
        None => Ok(()),
    }
}

fn create_price(c: &mut Ctx<'_>, f: &Form) -> Answer {
    let Some(currency) = f.str("currency") else {
        return required("currency");
    };
    let Some(unit_amount) = f.int("unit_amount") else {
        return required("unit_amount");
    };
    let product = match (f.str("product"), f.str("product_data.name")) {
        (Some(p), _) if c.st.products.contains_key(&p) => p,
        (Some(p), _) => return bad_ref("product", &p, "product"),
        (None, Some(name)) => c.new_product(name, None, Map::new(), true),
        (None, None) => return required("product"),
    };
    let lookup_key = f.str("lookup_key").filter(|k| !k.is_empty());
    if let Some(k) = &lookup_key {
        if let Err(e) = claim_lookup_key(c, k, None, f.bool("transfer_lookup_key").unwrap_or(false))
        {
            return e;
        }
    }
    let id = c.insert_price(Price {
        id: String::new(),
        created: 0,
        product,
        currency: currency.to_lowercase(),
        unit_amount,
        interval: f.str("recurring.interval"),
        lookup_key,
        metadata: f.metadata("metadata").unwrap_or_default(),
        active: f.bool("active").unwrap_or(true),
    });
    (200, objects::price(c.st, &c.st.prices[&id], false))
}

fn update_price(c: &mut Ctx<'_>, id: &str, f: &Form) -> Answer {
    if !c.st.prices.contains_key(id) {
        return missing("price", id);
    }
    let key = f.str("lookup_key");
    if let Some(k) = key.as_ref().filter(|k| !k.is_empty()) {
        if let Err(e) = claim_lookup_key(
            c,
            k,
            Some(id),
            f.bool("transfer_lookup_key").unwrap_or(false),
        ) {
            return e;
        }
    }
    let p = c.st.prices.get_mut(id).expect("checked");
    if let Some(k) = key {
        p.lookup_key = (!k.is_empty()).then_some(k);
    }
    if let Some(a) = f.bool("active") {
        p.active = a;
    }
    merge(&mut p.metadata, f.metadata("metadata"));
    (200, objects::price(c.st, &c.st.prices[id], false))
}

/// A subscription made straight in Stripe (sales in the dashboard), one
/// item, charged now.
fn create_subscription(c: &mut Ctx<'_>, f: &Form) -> Answer {
    let Some(customer) = f.str("customer") else {
        return required("customer");
    };
    if !c.st.customers.contains_key(&customer) {
        return bad_ref("customer", &customer, "customer");
    }
    let Some(price) = f.str("items.0.price") else {
        return required("items[0][price]");
    };
    if c.st.prices.get(&price).is_none_or(|p| p.interval.is_none()) {
        return bad_ref("price", &price, "items[0][price]");
    }
    let quantity = f.int("items.0.quantity").unwrap_or(1);
    let metadata = f.metadata("metadata").unwrap_or_default();
    match c.start_subscription(&customer, &price, quantity, metadata) {
        Ok((id, _)) => (200, c.sub_json(&id)),
        Err(e @ crate::errors::SimError::CardDeclined(_)) => err(
            402,
            "card_error",
            Some("card_declined"),
            &e.to_string(),
            None,
        ),
        Err(e) => err(400, "invalid_request_error", None, &e.to_string(), None),
    }
}

fn create_session(c: &mut Ctx<'_>, f: &Form) -> Answer {
    let Some(mode) = f.str("mode") else {
        return required("mode");
    };
    let Some(price) = f.str("line_items.0.price") else {
        return required("line_items[0][price]");
    };
    if !c.st.prices.contains_key(&price) {
        return bad_ref("price", &price, "line_items[0][price]");
    }
    if mode == "subscription" && c.st.prices[&price].interval.is_none() {
        let msg = "You must specify at least one recurring price in `subscription` mode.";
        return err(400, "invalid_request_error", None, msg, Some("line_items"));
    }
    let customer = f.str("customer");
    if let Some(cu) = customer
        .as_ref()
        .filter(|cu| !c.st.customers.contains_key(*cu))
    {
        return bad_ref("customer", cu, "customer");
    }
    let payment_method_collection = f
        .str("payment_method_collection")
        .unwrap_or_else(|| "always".into());
    if !matches!(payment_method_collection.as_str(), "always" | "if_required") {
        return err(
            400,
            "invalid_request_error",
            None,
            "Invalid payment_method_collection.",
            Some("payment_method_collection"),
        );
    }
    let trial = match f.get("subscription_data.trial_period_days") {
        None => None,
        Some(_) => match f.int("subscription_data.trial_period_days") {
            Some(days) if (1..=730).contains(&days) && mode == "subscription" => {
                Some(TrialTerms {
                    days,
                    missing_payment_method: f
                        .str("subscription_data.trial_settings.end_behavior.missing_payment_method")
                        .unwrap_or_else(|| "create_invoice".into()),
                    // Nothing is due at a trial's checkout: with
                    // `if_required` no card is asked for.
                    has_payment_method: payment_method_collection == "always",
                })
            }
            _ => {
                let msg = "subscription_data[trial_period_days] must be from 1 to 730, in subscription mode.";
                return err(
                    400,
                    "invalid_request_error",
                    None,
                    msg,
                    Some("subscription_data[trial_period_days]"),
                );
            }
        },
    };
    let s = Session {
        id: random_id("cs_test_", 58),
        created: c.now,
        expires_at: c.now + 24 * 3600,
        mode,
        customer,
        price,
        quantity: f.int("line_items.0.quantity").unwrap_or(1),
        client_reference_id: f.str("client_reference_id"),
        metadata: f.metadata("metadata").unwrap_or_default(),
        subscription_metadata: f.metadata("subscription_data.metadata").unwrap_or_default(),
        success_url: f.str("success_url"),
        cancel_url: f.str("cancel_url"),
        allow_promotion_codes: f.bool("allow_promotion_codes"),
        status: "open".into(),
        payment_status: "unpaid".into(),
        subscription: None,
        invoice: None,
        trial,
        payment_method_collection,
    };
    let v = objects::checkout_session(c.st, &s, c.base_url);
    c.st.sessions.insert(s.id.clone(), s);
    (200, v)
}

fn update_subscription(c: &mut Ctx<'_>, id: &str, f: &Form) -> Answer {
    let Some(sub) = c.st.subscriptions.get(id) else {
        return missing("subscription", id);
    };
    if f.get("items.1").is_some() {
        return err(
            400,
            "invalid_request_error",
            None,
            "The simulator supports one subscription item.",
            Some("items"),
        );
    }
    if let Some(item) = f.str("items.0.id").filter(|i| *i != sub.item_id) {
        return bad_ref("subscription_item", &item, "items[0][id]");
    }
    let price = f.str("items.0.price");
    if let Some(p) = price.as_ref().filter(|p| !c.st.prices.contains_key(*p)) {
        return bad_ref("price", p, "items[0][price]");
    }
    let behavior = f
        .str("proration_behavior")
        .unwrap_or_else(|| "create_prorations".into());
    if !matches!(
        behavior.as_str(),
        "create_prorations" | "always_invoice" | "none"
    ) {
        return err(
            400,
            "invalid_request_error",
            None,
            "Invalid proration_behavior.",
            Some("proration_behavior"),
        );
    }
    let trial_end = match f.str("trial_end") {
        None => None,
        Some(t) => match t.parse::<i64>() {
            Ok(t) => Some(t),
            Err(_) if t == "now" => {
                return err(
                    400,
                    "invalid_request_error",
                    None,
                    "The simulator does not support ending a trial with `now`.",
                    Some("trial_end"),
                )
            }
            Err(_) => {
                return err(
                    400,
                    "invalid_request_error",
                    None,
                    "Invalid timestamp: must be an integer Unix timestamp in the future.",
                    Some("trial_end"),
                )
            }
        },
    };
    match c.update_subscription(
        id,
        Update {
            price,
            proration_behavior: &behavior,
            proration_date: f.int("proration_date"),
            cancel_at_period_end: f.bool("cancel_at_period_end"),
            trial_end,
            metadata: f.metadata("metadata"),
        },
    ) {
        Ok(()) => (200, c.sub_json(id)),
        Err(e) => err(400, "invalid_request_error", None, &e.to_string(), None),
    }
}

fn preview(c: &mut Ctx<'_>, f: &Form) -> Answer {
    let Some(sub) = f.str("subscription") else {
        return required("subscription");
    };
    if !c.st.subscriptions.contains_key(&sub) {
        return bad_ref("subscription", &sub, "subscription");
    }
    let price = f.str("subscription_details.items.0.price");
    if let Some(p) = price.as_ref().filter(|p| !c.st.prices.contains_key(*p)) {
        return bad_ref("price", p, "subscription_details[items][0][price]");
    }
    let behavior = f
        .str("subscription_details.proration_behavior")
        .unwrap_or_else(|| "create_prorations".into());
    let proration_date = f.int("subscription_details.proration_date");
    match c.preview(&sub, price.as_deref(), &behavior, proration_date) {
        Ok(inv) => (200, objects::invoice(c.st, &inv, c.base_url)),
        Err(e) => err(400, "invalid_request_error", None, &e.to_string(), None),
    }
}
