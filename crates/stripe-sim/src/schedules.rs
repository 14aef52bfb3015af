//! Subscription schedules, the subset a service uses to change a price at the
//! period end: created from a subscription, phases replaced, released, and
//! advanced by end_period. Phase boundaries only take effect at period ends,
//! since the simulator moves subscriptions period by period.

use serde_json::Value;

use super::api::{bad_ref, err, missing, required, Answer};
use super::form::Form;
use super::objects::{self, random_id};
use super::ops::{add_interval, changed, Ctx};
use super::state::{Phase, Schedule};
use super::SimError;

/// What the schedule asks of the subscription whose period just ended.
#[derive(PartialEq)]
pub(crate) enum AtPeriodEnd {
    Renew,
    Cancel,
}

fn invalid(message: &str, param: Option<&str>) -> Answer {
    err(400, "invalid_request_error", None, message, param)
}

fn sim_error(e: SimError) -> Answer {
    invalid(&e.to_string(), None)
}

impl Ctx<'_> {
    pub fn schedule_json(&self, id: &str) -> Value {
        self.st
            .schedules
            .get(id)
            .map(|sc| objects::subscription_schedule(self.st, sc, self.now))
            .unwrap_or(Value::Null)
    }

    fn emit_schedule(&mut self, kind: &str, id: &str, before: Option<&Value>) {
        let after = self.schedule_json(id);
        let prev = before.map(|b| changed(b, &after));
        if prev.as_ref().is_some_and(|p| p.is_empty()) {
            return;
        }
        self.emit(kind, after, prev);
    }

    /// A schedule with one phase mirroring the subscription's current period.
    pub fn create_schedule(&mut self, sub_id: &str) -> Result<String, SimError> {
        let before = self.sub_json(sub_id);
        let s = self.live_sub(sub_id)?;
        if let Some(existing) = &s.schedule {
            return Err(SimError::InvalidState(format!(
                "You cannot migrate a subscription that is already attached to a schedule: `{existing}`."
            )));
        }
        let id = random_id("sub_sched_", 24);
        let sc = Schedule {
            id: id.clone(),
            created: self.now,
            customer: s.customer.clone(),
            subscription: sub_id.to_owned(),
            status: "active".into(),
            end_behavior: "release".into(),
            phases: vec![Phase {
                start: s.period_start,
                end: s.period_end,
                price: s.price.clone(),
                quantity: s.quantity,
            }],
            released_at: None,
            completed_at: None,
            canceled_at: None,
        };
        self.st.schedules.insert(id.clone(), sc);
        self.st
            .subscriptions
            .get_mut(sub_id)
            .expect("live")
            .schedule = Some(id.clone());
        self.emit_schedule("subscription_schedule.created", &id, None);
        self.emit_sub_updated(sub_id, &before);
        Ok(id)
    }

    /// The later of the clock and the subscription's period start (see
    /// objects::phase_at).
    fn schedule_time(&self, sc: &Schedule) -> i64 {
        self.st
            .subscriptions
            .get(&sc.subscription)
            .map_or(self.now, |s| self.now.max(s.period_start))
    }

    /// Ends the schedule's hold on its subscription with `status`.
    fn detach(&mut self, id: &str, status: &str) {
        let now = self.now;
        let sc = self.st.schedules.get_mut(id).expect("schedule exists");
        sc.status = status.to_owned();
        match status {
            "released" => sc.released_at = Some(now),
            "completed" => sc.completed_at = Some(now),
            _ => sc.canceled_at = Some(now),
        }
        let sub = sc.subscription.clone();
        if let Some(s) = self.st.subscriptions.get_mut(&sub) {
            s.schedule = None;
        }
    }

    pub fn release_schedule(&mut self, id: &str) -> Result<(), SimError> {
        let sc = self.active_schedule(id)?;
        let sub = sc.subscription.clone();
        let before = self.sub_json(&sub);
        self.detach(id, "released");
        self.emit_schedule("subscription_schedule.released", id, None);
        self.emit_sub_updated(&sub, &before);
        Ok(())
    }

    fn active_schedule(&self, id: &str) -> Result<&Schedule, SimError> {
        let sc = self
            .st
            .schedules
            .get(id)
            .ok_or_else(|| SimError::NotFound {
                kind: "subscription_schedule",
                id: id.to_owned(),
            })?;
        if sc.status != "active" {
            return Err(SimError::InvalidState(format!(
                "You cannot update a subscription schedule that is currently in the `{}` status. It must be in `not_started` or `active`.",
                sc.status
            )));
        }
        Ok(sc)
    }

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
            self.update_subscription(&sub, Some(ph.price), proration_behavior, None, None)?;
        }
        self.emit_schedule("subscription_schedule.updated", id, Some(&before));
        Ok(())
    }

    /// Called by end_period before renewing: moves the subscription into the
    /// phase that starts at the ending period's end, or applies end_behavior
    /// when the last phase is over.
    pub fn schedule_at_period_end(&mut self, sub_id: &str) -> AtPeriodEnd {
        let s = &self.st.subscriptions[sub_id];
        let Some(id) = s.schedule.clone() else {
            return AtPeriodEnd::Renew;
        };
        let old_end = s.period_end;
        let sc = &self.st.schedules[&id];
        if sc.status != "active" {
            return AtPeriodEnd::Renew;
        }
        if let Some(ph) = objects::phase_at(sc, old_end).cloned() {
            let s = self.st.subscriptions.get_mut(sub_id).expect("exists");
            s.price = ph.price;
            s.quantity = ph.quantity;
            return AtPeriodEnd::Renew;
        }
        if sc.phases.last().is_none_or(|p| old_end < p.end) {
            return AtPeriodEnd::Renew;
        }
        if sc.end_behavior == "cancel" {
            self.detach(&id, "completed");
            self.emit_schedule("subscription_schedule.completed", &id, None);
            AtPeriodEnd::Cancel
        } else {
            self.detach(&id, "released");
            self.emit_schedule("subscription_schedule.released", &id, None);
            AtPeriodEnd::Renew
        }
    }

    /// A canceled subscription takes its schedule with it.
    pub fn cancel_schedule_of(&mut self, sub_id: &str) {
        let Some(id) = self
            .st
            .subscriptions
            .get(sub_id)
            .and_then(|s| s.schedule.clone())
        else {
            return;
        };
        self.detach(&id, "canceled");
        self.emit_schedule("subscription_schedule.canceled", &id, None);
    }
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
