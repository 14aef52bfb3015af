//! Subscription schedules, the subset a service uses to change a price at the
//! period end: created from a subscription, released, and advanced by
//! end_period (replacing phases applies a subscription change, so that lives
//! with the subscription changes in ops.rs; the routes are in schedule_api.rs).
//! Phase boundaries only take effect at period ends, since the simulator
//! moves subscriptions period by period.

use serde_json::Value;

use crate::ctx::{changed, Ctx};
use crate::errors::SimError;
use crate::objects::{self, random_id};
use crate::state::{Phase, Schedule};

/// What the schedule asks of the subscription whose period just ended.
#[derive(PartialEq)]
pub(crate) enum AtPeriodEnd {
    Renew,
    Cancel,
}

impl Ctx<'_> {
    pub fn schedule_json(&self, id: &str) -> Value {
        self.st
            .schedules
            .get(id)
            .map(|sc| objects::subscription_schedule(self.st, sc, self.now))
            .unwrap_or(Value::Null)
    }

    pub fn emit_schedule(&mut self, kind: &str, id: &str, before: Option<&Value>) {
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
    pub fn schedule_time(&self, sc: &Schedule) -> i64 {
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

    pub fn active_schedule(&self, id: &str) -> Result<&Schedule, SimError> {
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
