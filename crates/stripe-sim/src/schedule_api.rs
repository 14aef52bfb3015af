//! The subscription schedule routes (`/v1/subscription_schedules...`):
//! parameters checked and parsed into phases, answered as Stripe does.

use serde_json::Value;

use crate::answer::{bad_ref, err, missing, required, Answer};
use crate::ctx::{add_interval, Ctx};
use crate::errors::SimError;
use crate::form::Form;
use crate::objects;
use crate::state::Phase;

fn invalid(message: &str, param: Option<&str>) -> Answer {
    err(400, "invalid_request_error", None, message, param)
}

fn sim_error(e: SimError) -> Answer {
    invalid(&e.to_string(), None)
}

pub(crate) fn create(c: &mut Ctx<'_>, f: &Form) -> Answer {
    let Some(sub) = f.str("from_subscription") else {
        let msg = "The simulator creates schedules from_subscription only.";
        return invalid(msg, Some("from_subscription"));
    };
    if !c.st.subscriptions.contains_key(&sub) {
        return bad_ref("subscription", &sub, "from_subscription");
    }
    match c.create_schedule(&sub) {
        Ok(id) => (200, c.schedule_json(&id)),
        Err(e) => sim_error(e),
    }
}

pub(crate) fn update(c: &mut Ctx<'_>, id: &str, f: &Form) -> Answer {
    if !c.st.schedules.contains_key(id) {
        return missing("subscription_schedule", id);
    }
    let end_behavior = f.str("end_behavior");
    if let Some(e) = end_behavior
        .as_ref()
        .filter(|e| !matches!(e.as_str(), "release" | "cancel"))
    {
        let msg = format!("Invalid end_behavior: {e}. The simulator supports release and cancel.");
        return invalid(&msg, Some("end_behavior"));
    }
    let phases = match f.get("phases") {
        Some(_) => match parse_phases(c, id, f) {
            Ok(p) => Some(p),
            Err(a) => return a,
        },
        None => None,
    };
    let behavior = f
        .str("proration_behavior")
        .unwrap_or_else(|| "create_prorations".into());
    match c.update_schedule(id, phases, end_behavior, &behavior) {
        Ok(()) => (200, c.schedule_json(id)),
        Err(e) => sim_error(e),
    }
}

pub(crate) fn release(c: &mut Ctx<'_>, id: &str) -> Answer {
    if !c.st.schedules.contains_key(id) {
        return missing("subscription_schedule", id);
    }
    match c.release_schedule(id) {
        Ok(()) => (200, c.schedule_json(id)),
        Err(e) => sim_error(e),
    }
}

/// A timestamp parameter that may also be `now`.
fn time(c: &Ctx<'_>, f: &Form, path: &str) -> Option<i64> {
    match f.str(path)?.as_str() {
        "now" => Some(c.now),
        t => t.parse().ok(),
    }
}

fn times(from: i64, interval: &str, count: i64) -> i64 {
    (0..count.max(1)).fold(from, |t, _| add_interval(t, interval))
}

/// Phases as sent, each starting where the previous one ends. A phase without
/// end_date, duration or iterations lasts one interval of its price.
fn parse_phases(c: &Ctx<'_>, id: &str, f: &Form) -> Result<Vec<Phase>, Answer> {
    let count = match f.get("phases") {
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    };
    if count == 0 {
        return Err(required("phases[0][items]"));
    }
    let sc = &c.st.schedules[id];
    let mut phases: Vec<Phase> = Vec::new();
    for i in 0..count {
        let p = |rest: &str| format!("phases.{i}.{rest}");
        let param = |rest: &str| format!("phases[{i}][{}]", rest.replace('.', "]["));
        if f.get(&p("items.1")).is_some() {
            let msg = "The simulator supports one item per phase.";
            return Err(invalid(msg, Some(&param("items"))));
        }
        let Some(price) = f.str(&p("items.0.price")) else {
            return Err(required(&param("items.0.price")));
        };
        let Some(interval) = c.st.prices.get(&price).map(|pr| pr.interval.clone()) else {
            return Err(bad_ref("price", &price, &param("items.0.price")));
        };
        let Some(interval) = interval else {
            let msg = "Schedule phases need recurring prices.";
            return Err(invalid(msg, Some(&param("items.0.price"))));
        };
        let start = match (phases.last(), time(c, f, &p("start_date"))) {
            (Some(prev), Some(t)) if t != prev.end => {
                let msg = "A phase must start when the previous phase ends.";
                return Err(invalid(msg, Some(&param("start_date"))));
            }
            (Some(prev), _) => prev.end,
            (None, Some(t)) => t,
            // Stripe requires it; keeping the current phase's start is the
            // forgiving reading.
            (None, None) => objects::phase_at(sc, c.schedule_time(sc))
                .or(sc.phases.first())
                .map_or(c.now, |ph| ph.start),
        };
        let end = if let Some(t) = time(c, f, &p("end_date")) {
            t
        } else if let Some(unit) = f.str(&p("duration.interval")) {
            times(
                start,
                &unit,
                f.int(&p("duration.interval_count")).unwrap_or(1),
            )
        } else {
            times(start, &interval, f.int(&p("iterations")).unwrap_or(1))
        };
        if end <= start {
            let msg = "A phase must end after it starts.";
            return Err(invalid(msg, Some(&param("end_date"))));
        }
        phases.push(Phase {
            start,
            end,
            price,
            quantity: f.int(&p("items.0.quantity")).unwrap_or(1),
        });
    }
    Ok(phases)
}
