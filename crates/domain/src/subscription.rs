//! The subscription a user holds and the rules that decide which plan it
//! grants right now. Statuses are Stripe's, so webhook state maps 1:1.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::money::Currency;
use crate::plan::{BillingInterval, PlanId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    Active,
    Trialing,
    PastDue,
    Canceled,
    Incomplete,
    IncompleteExpired,
    Unpaid,
    Paused,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    pub plan_id: PlanId,
    pub status: SubscriptionStatus,
    pub billing_interval: BillingInterval,
    pub stripe_customer_id: Option<String>,
    pub stripe_subscription_id: Option<String>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub renewal_date: Option<DateTime<Utc>>,
    pub current_period_end: Option<DateTime<Utc>>,
    pub auto_renew: bool,
    pub cancel_at_period_end: bool,
    pub billing_email: Option<String>,
    pub last_payment_status: Option<String>,
    /// While past_due, the paid plan's limits hold until then (dunning grace).
    #[serde(default)]
    pub grace_until: Option<DateTime<Utc>>,
    /// The checkout a paid registration or upgrade is waiting on, so the
    /// user can resume it.
    #[serde(default)]
    pub checkout_session_id: Option<String>,
    #[serde(default)]
    pub checkout_started_at: Option<DateTime<Utc>>,
    /// When reconciliation last found nothing to repair; it looks again
    /// only after `RECHECK_AFTER`, so a stuck record is not re-read every run.
    #[serde(default)]
    pub reconciled_at: Option<DateTime<Utc>>,
    /// A downgrade that takes effect when the paid period ends.
    #[serde(default)]
    pub scheduled_change: Option<ScheduledChange>,
    #[serde(default)]
    pub trial_end: Option<DateTime<Utc>>,
    /// The subscription this one replaced (a lower plan, see `precedence`),
    /// written with the switch and cleared once Stripe has it cancelled:
    /// until then its cancellation is owed, whatever crashes in between.
    #[serde(default)]
    pub replaced_subscription_id: Option<String>,
    /// When the account's one trial began: set with the first trialing
    /// subscription written, and never cleared, so no checkout offers a
    /// second.
    #[serde(default)]
    pub trial_used_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScheduledChange {
    pub plan_id: PlanId,
    pub billing_interval: BillingInterval,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub effective_at: Option<DateTime<Utc>>,
}

/// How long a previewed plan change's price holds: a change made within it
/// prorates as of the preview, so it bills exactly what the user was shown.
pub const PRORATION_QUOTE_VALIDITY: Duration = Duration::minutes(10);

/// A proration date from a preview that is in the future or has expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the previewed price is older than 10 minutes or from the future: preview the change again"
)]
pub struct QuoteExpired;

/// The moment a plan change prorates from: the preview's, while it holds,
/// else now.
pub fn proration_date(
    quoted: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, QuoteExpired> {
    match quoted {
        None => Ok(now),
        Some(t) if t <= now && now - t <= PRORATION_QUOTE_VALIDITY => Ok(t),
        Some(_) => Err(QuoteExpired),
    }
}

/// Which way a plan change goes. Up the tiers, or monthly → annual within
/// one, bills now; the other way waits for the end of the paid period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeDirection {
    Up,
    Same,
    Down,
}

pub fn change_direction(
    from: (PlanId, BillingInterval),
    to: (PlanId, BillingInterval),
) -> ChangeDirection {
    let rank = |(p, i): (PlanId, BillingInterval)| (p, i == BillingInterval::Annual);
    match rank(to).cmp(&rank(from)) {
        std::cmp::Ordering::Greater => ChangeDirection::Up,
        std::cmp::Ordering::Equal => ChangeDirection::Same,
        std::cmp::Ordering::Less => ChangeDirection::Down,
    }
}

impl Subscription {
    /// Free is active the moment it is chosen, and never renews or ends.
    pub fn free(now: DateTime<Utc>) -> Self {
        Self {
            plan_id: PlanId::Free,
            status: SubscriptionStatus::Active,
            billing_interval: BillingInterval::Monthly,
            stripe_customer_id: None,
            stripe_subscription_id: None,
            start_date: Some(now),
            end_date: None,
            renewal_date: None,
            current_period_end: None,
            auto_renew: false,
            cancel_at_period_end: false,
            billing_email: None,
            last_payment_status: None,
            grace_until: None,
            checkout_session_id: None,
            checkout_started_at: None,
            reconciled_at: None,
            scheduled_change: None,
            trial_end: None,
            replaced_subscription_id: None,
            trial_used_at: None,
        }
    }

    /// A paid plan an existing customer holds at Stripe, as an import file
    /// states it: the plan and the customer are recorded and granted, with
    /// no subscription id. Stripe stays the truth: the first event about
    /// the customer (any subscription or invoice webhook, at the latest the
    /// next renewal) re-reads their subscription and replaces this.
    pub fn imported(plan_id: PlanId, customer_id: String, now: DateTime<Utc>) -> Self {
        Self {
            plan_id,
            stripe_customer_id: Some(customer_id),
            auto_renew: plan_id.is_paid(),
            ..Self::free(now)
        }
    }

    /// A paid plan chosen but not yet paid for: grants nothing until Stripe
    /// says the checkout completed.
    pub fn awaiting_payment(plan_id: PlanId, interval: BillingInterval) -> Self {
        Self {
            plan_id,
            status: SubscriptionStatus::Incomplete,
            billing_interval: interval,
            auto_renew: true,
            start_date: None,
            ..Self::free(DateTime::<Utc>::MIN_UTC)
        }
    }

    /// The plan whose limits apply at `now`. A paid plan grants its limits
    /// while active, trialing or within the dunning grace of past_due, and a
    /// canceled one until the period it was paid for ends; otherwise Free.
    pub fn effective_plan(&self, now: DateTime<Utc>) -> PlanId {
        use SubscriptionStatus::*;
        let paid_through = self.current_period_end.is_some_and(|end| now < end);
        let grants = match self.status {
            Active | Trialing => true,
            PastDue => self.grace_until.is_none_or(|g| now < g),
            Canceled => paid_through,
            Incomplete | IncompleteExpired | Unpaid | Paused => false,
        };
        if grants {
            self.plan_id
        } else {
            PlanId::Free
        }
    }
}

/// How long a checkout may stay unpaid before reconciliation asks Stripe.
pub const CHECKOUT_STALE_AFTER: Duration = Duration::hours(1);
/// Stripe renews at the period end; give it this long before asking.
pub const RENEWAL_STALE_AFTER: Duration = Duration::hours(1);
/// How often a record reconciliation could not repair is looked at again.
pub const RECHECK_AFTER: Duration = Duration::hours(6);

impl Subscription {
    /// When this subscription starts to look stale if no webhook has
    /// changed it: an unpaid checkout after an hour, a period end passed
    /// without renewal, a dunning grace run out. `None`: nothing to watch.
    /// Reconciliation re-reads from Stripe whatever is past this time.
    pub fn stale_after(&self) -> Option<DateTime<Utc>> {
        use SubscriptionStatus::*;
        let renewal = self.current_period_end.map(|end| end + RENEWAL_STALE_AFTER);
        // A pending checkout, whether it opened the account or an upgrade.
        let checkout = self
            .checkout_started_at
            .filter(|_| self.checkout_session_id.is_some())
            .map(|t| t + CHECKOUT_STALE_AFTER);
        let subscription = match self.status {
            PastDue => match (renewal, self.grace_until) {
                (Some(r), Some(g)) => Some(r.min(g)),
                (r, g) => r.or(g),
            },
            Active | Trialing | Canceled | Unpaid | Paused
                if self.stripe_subscription_id.is_some() =>
            {
                renewal
            }
            _ => None,
        };
        // A replaced subscription still to cancel is owed at once.
        let replaced = self
            .replaced_subscription_id
            .as_ref()
            .map(|_| self.start_date.unwrap_or(DateTime::UNIX_EPOCH));
        let due = [checkout, subscription, replaced]
            .into_iter()
            .flatten()
            .min()?;
        Some(match self.reconciled_at {
            Some(checked) if checked >= due => checked + RECHECK_AFTER,
            _ => due,
        })
    }
}

/// A subscription as the payment provider reports it right now. Webhooks
/// only say "something changed"; this is what gets applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSubscription {
    pub id: String,
    pub customer_id: String,
    pub status: SubscriptionStatus,
    pub plan_id: PlanId,
    pub interval: BillingInterval,
    /// The one subscription item; plan changes move it to another price.
    pub item_id: String,
    pub price_id: String,
    pub current_period_start: Option<DateTime<Utc>>,
    pub current_period_end: Option<DateTime<Utc>>,
    pub cancel_at_period_end: bool,
    pub ended_at: Option<DateTime<Utc>>,
    /// The subscription schedule that will change it at the period end.
    pub schedule_id: Option<String>,
    pub trial_end: Option<DateTime<Utc>>,
    /// What it bills in (its price's currency).
    pub currency: Currency,
}

impl RemoteSubscription {
    /// Active or trialing: paid for (or free to try), nothing overdue.
    pub fn is_in_good_standing(&self) -> bool {
        matches!(
            self.status,
            SubscriptionStatus::Active | SubscriptionStatus::Trialing
        )
    }

    /// Whether it grants its plan at all: in good standing or past due (the
    /// dunning grace); unpaid, paused or incomplete ones grant nothing.
    pub fn grants(&self) -> bool {
        self.is_in_good_standing() || self.status == SubscriptionStatus::PastDue
    }

    /// Whether ending it now credits its unused time: only when its period
    /// was paid for. A past-due or unpaid one's open invoice was never
    /// collected, so crediting the rest of its period would give money away.
    pub fn credits_unused_time(&self) -> bool {
        self.is_in_good_standing()
    }

    /// Over for good: nothing will bill or grant again.
    pub fn has_ended(&self) -> bool {
        matches!(
            self.status,
            SubscriptionStatus::Canceled | SubscriptionStatus::IncompleteExpired
        )
    }
}

/// Which of two live subscriptions of one account stays, `precedence`'s answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precedence {
    /// The account's own stays; the other (a second checkout, or a plan no
    /// higher) is cancelled, credited for what it was paid.
    KeepCurrent,
    /// The other sells a higher plan (sales sold Enterprise to a Pro
    /// customer) or the account's own has ended: the account moves to it, and
    /// its own is cancelled, credited for the unused time.
    Replace,
    /// The other sells a higher plan but grants nothing yet (its first
    /// payment is pending): neither is touched until it does, or expires.
    Wait,
}

/// The rule for a customer with two live subscriptions: the higher plan
/// wins; on equal plans the account's own (`current`) does, so a double
/// checkout leaves the first. Intervals do not count: a plan is not higher
/// for being billed yearly.
pub fn precedence(current: &RemoteSubscription, other: &RemoteSubscription) -> Precedence {
    if current.has_ended() {
        return Precedence::Replace;
    }
    if other.has_ended() {
        return Precedence::KeepCurrent;
    }
    let higher = other.plan_id > current.plan_id;
    match (current.grants(), other.is_in_good_standing()) {
        (_, true) if higher => Precedence::Replace,
        // One in good standing wins over one that grants nothing (unpaid,
        // paused, incomplete), whatever its plan.
        (false, true) => Precedence::Replace,
        (_, false) if higher => Precedence::Wait,
        _ => Precedence::KeepCurrent,
    }
}

/// What changed when the provider's view was applied; each may deserve an email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    Activated { plan: PlanId },
    PlanChanged { from: PlanId, to: PlanId },
    CancellationScheduled { ends_at: Option<DateTime<Utc>> },
    CancellationWithdrawn,
    Ended { plan: PlanId },
    PaymentFailed { grace_until: DateTime<Utc> },
    PaymentRecovered,
}

impl Subscription {
    fn is_live_paid(&self) -> bool {
        self.stripe_subscription_id.is_some()
            && !matches!(
                self.status,
                SubscriptionStatus::Canceled | SubscriptionStatus::IncompleteExpired
            )
    }

    /// The subscription after taking the provider's state as the truth, and
    /// what that changed. `None` when the remote one is not this user's
    /// current subscription (a late event about a subscription that was
    /// replaced), so it must not overwrite anything.
    pub fn apply_remote(
        &self,
        remote: &RemoteSubscription,
        now: DateTime<Utc>,
        grace: Duration,
    ) -> Option<(Subscription, Vec<Transition>)> {
        let ours = self.stripe_subscription_id.as_deref() == Some(remote.id.as_str());
        if !ours && (remote.has_ended() || self.is_live_paid()) {
            return None;
        }
        Some(self.take(remote, ours, now, grace))
    }

    /// The account moved to `other`, a second live subscription that won
    /// over its own (`Precedence::Replace`): the same write as a change of
    /// plan, with the replaced subscription's cancellation owed.
    pub fn replaced_by(
        &self,
        other: &RemoteSubscription,
        now: DateTime<Utc>,
        grace: Duration,
    ) -> (Subscription, Vec<Transition>) {
        let (mut next, transitions) = self.take(other, false, now, grace);
        if let Some(old) = self
            .stripe_subscription_id
            .as_ref()
            .filter(|id| **id != other.id)
        {
            next.replaced_subscription_id = Some(old.clone());
        }
        (next, transitions)
    }

    fn take(
        &self,
        remote: &RemoteSubscription,
        ours: bool,
        now: DateTime<Utc>,
        grace: Duration,
    ) -> (Subscription, Vec<Transition>) {
        let mut next = self.clone();
        next.stripe_customer_id = Some(remote.customer_id.clone());
        next.checkout_session_id = None;
        next.checkout_started_at = None;
        next.reconciled_at = None;
        if remote.has_ended() {
            next.plan_id = PlanId::Free;
            next.status = SubscriptionStatus::Active;
            next.billing_interval = BillingInterval::Monthly;
            next.stripe_subscription_id = None;
            next.current_period_end = None;
            next.renewal_date = None;
            next.end_date = remote.ended_at.or(Some(now));
            next.auto_renew = false;
            next.cancel_at_period_end = false;
            next.grace_until = None;
            next.scheduled_change = None;
        } else {
            next.plan_id = remote.plan_id;
            next.status = remote.status;
            next.billing_interval = remote.interval;
            next.stripe_subscription_id = Some(remote.id.clone());
            if !ours || next.start_date.is_none() {
                next.start_date = remote.current_period_start.or(Some(now));
            }
            next.current_period_end = remote.current_period_end;
            next.trial_end = remote.trial_end;
            if remote.trial_end.is_some() {
                next.trial_used_at.get_or_insert(now);
            }
            next.cancel_at_period_end = remote.cancel_at_period_end;
            next.auto_renew = !remote.cancel_at_period_end;
            next.renewal_date = (!remote.cancel_at_period_end)
                .then_some(remote.current_period_end)
                .flatten();
            next.end_date = remote
                .cancel_at_period_end
                .then_some(remote.current_period_end)
                .flatten();
            // A scheduled change is pending while Stripe holds its schedule
            // and has not yet moved the subscription to it.
            let target = next
                .scheduled_change
                .as_ref()
                .map(|c| (c.plan_id, c.billing_interval));
            if remote.schedule_id.is_none() || target == Some((remote.plan_id, remote.interval)) {
                next.scheduled_change = None;
            }
            next.grace_until = match remote.status {
                SubscriptionStatus::PastDue => self
                    .grace_until
                    .filter(|_| self.status == SubscriptionStatus::PastDue)
                    .or(Some(now + grace)),
                _ => None,
            };
            match (self.status, remote.status) {
                (SubscriptionStatus::PastDue, SubscriptionStatus::Active) => {
                    next.last_payment_status = Some("succeeded".into())
                }
                (_, SubscriptionStatus::PastDue) => {
                    next.last_payment_status = Some("failed".into())
                }
                _ => {}
            }
        }
        let transitions = self.transitions_to(&next);
        (next, transitions)
    }

    fn transitions_to(&self, next: &Subscription) -> Vec<Transition> {
        use SubscriptionStatus::*;
        let mut out = Vec::new();
        let was_paid = self.is_live_paid() && matches!(self.status, Active | Trialing | PastDue);
        let is_paid = next.is_live_paid() && matches!(next.status, Active | Trialing | PastDue);
        match (was_paid, is_paid) {
            (false, true) => out.push(Transition::Activated { plan: next.plan_id }),
            (true, false) if next.stripe_subscription_id.is_none() => {
                out.push(Transition::Ended { plan: self.plan_id })
            }
            (true, true)
                if self.plan_id != next.plan_id
                    || self.billing_interval != next.billing_interval =>
            {
                out.push(Transition::PlanChanged {
                    from: self.plan_id,
                    to: next.plan_id,
                })
            }
            _ => {}
        }
        if is_paid && next.cancel_at_period_end && !self.cancel_at_period_end {
            out.push(Transition::CancellationScheduled {
                ends_at: next.current_period_end,
            });
        }
        if is_paid && self.cancel_at_period_end && !next.cancel_at_period_end {
            out.push(Transition::CancellationWithdrawn);
        }
        if next.status == PastDue && self.status != PastDue {
            if let Some(g) = next.grace_until {
                out.push(Transition::PaymentFailed { grace_until: g });
            }
        }
        if self.status == PastDue && next.status == Active {
            out.push(Transition::PaymentRecovered);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_previewed_proration_date_holds_ten_minutes() {
        let now = Utc::now();
        assert_eq!(proration_date(None, now), Ok(now));
        let quoted = now - Duration::minutes(9);
        assert_eq!(proration_date(Some(quoted), now), Ok(quoted));
        assert_eq!(
            proration_date(Some(now - Duration::minutes(11)), now),
            Err(QuoteExpired)
        );
        assert_eq!(
            proration_date(Some(now + Duration::seconds(1)), now),
            Err(QuoteExpired)
        );
    }
    use chrono::Duration;

    #[test]
    fn unpaid_checkout_grants_free_limits() {
        let s = Subscription::awaiting_payment(PlanId::Pro, BillingInterval::Annual);
        assert_eq!(s.effective_plan(Utc::now()), PlanId::Free);
    }

    #[test]
    fn canceled_plan_holds_until_period_end_exclusive() {
        let end = Utc::now();
        let s = Subscription {
            plan_id: PlanId::Pro,
            status: SubscriptionStatus::Canceled,
            current_period_end: Some(end),
            ..Subscription::free(end)
        };
        assert_eq!(
            s.effective_plan(end - Duration::milliseconds(1)),
            PlanId::Pro
        );
        assert_eq!(s.effective_plan(end), PlanId::Free);
    }

    fn remote(status: SubscriptionStatus, plan: PlanId, end: DateTime<Utc>) -> RemoteSubscription {
        RemoteSubscription {
            id: "sub_1".into(),
            customer_id: "cus_1".into(),
            status,
            plan_id: plan,
            interval: BillingInterval::Monthly,
            item_id: "si_1".into(),
            price_id: "price_1".into(),
            current_period_start: Some(end - Duration::days(30)),
            current_period_end: Some(end),
            cancel_at_period_end: false,
            ended_at: None,
            schedule_id: None,
            trial_end: None,
            currency: Currency::USD,
        }
    }

    #[test]
    fn checkout_activates_with_stripes_period_end_as_renewal() {
        let now = Utc::now();
        let end = now + Duration::days(30);
        let start = Subscription::awaiting_payment(PlanId::Pro, BillingInterval::Monthly);
        let (s, t) = start
            .apply_remote(
                &remote(SubscriptionStatus::Active, PlanId::Pro, end),
                now,
                Duration::days(7),
            )
            .unwrap();
        assert_eq!(s.effective_plan(now), PlanId::Pro);
        assert_eq!(s.renewal_date, Some(end));
        assert_eq!(t, vec![Transition::Activated { plan: PlanId::Pro }]);
    }

    #[test]
    fn a_trialing_subscription_uses_up_the_accounts_trial_for_good() {
        let now = Utc::now();
        let end = now + Duration::days(14);
        let trialing = RemoteSubscription {
            trial_end: Some(end),
            ..remote(SubscriptionStatus::Trialing, PlanId::Pro, end)
        };
        let start = Subscription::awaiting_payment(PlanId::Pro, BillingInterval::Monthly);
        let (s, _) = start
            .apply_remote(&trialing, now, Duration::days(7))
            .unwrap();
        assert_eq!(s.trial_used_at, Some(now));
        assert_eq!(s.effective_plan(now), PlanId::Pro);
        // Ended, then a paid subscription without a trial: still used.
        let later = end + Duration::days(1);
        let ended = RemoteSubscription {
            ended_at: Some(end),
            ..remote(SubscriptionStatus::Canceled, PlanId::Pro, end)
        };
        let (s, _) = s.apply_remote(&ended, later, Duration::days(7)).unwrap();
        let paid = RemoteSubscription {
            id: "sub_2".into(),
            ..remote(
                SubscriptionStatus::Active,
                PlanId::Pro,
                later + Duration::days(30),
            )
        };
        let (s, _) = s.apply_remote(&paid, later, Duration::days(7)).unwrap();
        assert_eq!(s.trial_used_at, Some(now));
    }

    #[test]
    fn past_due_keeps_the_plan_for_the_grace_period_only() {
        let now = Utc::now();
        let end = now + Duration::days(30);
        let active = Subscription::awaiting_payment(PlanId::Pro, BillingInterval::Monthly)
            .apply_remote(
                &remote(SubscriptionStatus::Active, PlanId::Pro, end),
                now,
                Duration::days(7),
            )
            .unwrap()
            .0;
        let (due, t) = active
            .apply_remote(
                &remote(SubscriptionStatus::PastDue, PlanId::Pro, end),
                now,
                Duration::days(7),
            )
            .unwrap();
        assert!(matches!(t.as_slice(), [Transition::PaymentFailed { .. }]));
        assert_eq!(
            due.effective_plan(now + Duration::days(7) - Duration::seconds(1)),
            PlanId::Pro
        );
        assert_eq!(due.effective_plan(now + Duration::days(7)), PlanId::Free);
        // A second failure notice does not extend the grace.
        let later = now + Duration::days(3);
        let (again, _) = due
            .apply_remote(
                &remote(SubscriptionStatus::PastDue, PlanId::Pro, end),
                later,
                Duration::days(7),
            )
            .unwrap();
        assert_eq!(again.grace_until, due.grace_until);
        let (back, t) = again
            .apply_remote(
                &remote(SubscriptionStatus::Active, PlanId::Pro, end),
                later,
                Duration::days(7),
            )
            .unwrap();
        assert_eq!(back.effective_plan(now + Duration::days(20)), PlanId::Pro);
        assert_eq!(t, vec![Transition::PaymentRecovered]);
    }

    #[test]
    fn a_late_event_about_an_ended_old_subscription_changes_nothing() {
        let now = Utc::now();
        let end = now + Duration::days(30);
        let current = Subscription::awaiting_payment(PlanId::Pro, BillingInterval::Monthly)
            .apply_remote(
                &remote(SubscriptionStatus::Active, PlanId::Pro, end),
                now,
                Duration::days(7),
            )
            .unwrap()
            .0;
        let mut old = remote(SubscriptionStatus::Canceled, PlanId::Pro, end);
        old.id = "sub_old".into();
        assert!(current.apply_remote(&old, now, Duration::days(7)).is_none());
    }

    #[test]
    fn deletion_drops_to_free_and_keeps_the_customer() {
        let now = Utc::now();
        let end = now + Duration::days(30);
        let mut r = remote(SubscriptionStatus::Active, PlanId::Pro, end);
        r.cancel_at_period_end = true;
        let (scheduled, t) = Subscription::awaiting_payment(PlanId::Pro, BillingInterval::Monthly)
            .apply_remote(&r, now, Duration::days(7))
            .unwrap();
        assert_eq!(scheduled.effective_plan(now), PlanId::Pro);
        assert_eq!(scheduled.end_date, Some(end));
        assert!(t.contains(&Transition::CancellationScheduled { ends_at: Some(end) }));
        r.status = SubscriptionStatus::Canceled;
        r.ended_at = Some(end);
        let (ended, t) = scheduled.apply_remote(&r, end, Duration::days(7)).unwrap();
        assert_eq!(ended.plan_id, PlanId::Free);
        assert_eq!(ended.stripe_customer_id.as_deref(), Some("cus_1"));
        assert_eq!(t, vec![Transition::Ended { plan: PlanId::Pro }]);
    }

    #[test]
    fn staleness_follows_what_stripe_should_have_said() {
        let now = Utc::now();
        assert_eq!(Subscription::free(now).stale_after(), None);
        let mut waiting = Subscription::awaiting_payment(PlanId::Pro, BillingInterval::Monthly);
        assert_eq!(waiting.stale_after(), None, "no checkout yet");
        waiting.checkout_session_id = Some("cs_1".into());
        waiting.checkout_started_at = Some(now);
        assert_eq!(waiting.stale_after(), Some(now + CHECKOUT_STALE_AFTER));
        let end = now + Duration::days(30);
        let (active, _) = waiting
            .apply_remote(
                &remote(SubscriptionStatus::Active, PlanId::Pro, end),
                now,
                Duration::days(7),
            )
            .unwrap();
        assert_eq!(active.stale_after(), Some(end + RENEWAL_STALE_AFTER));
        let (mut due, _) = active
            .apply_remote(
                &remote(SubscriptionStatus::PastDue, PlanId::Pro, end),
                now,
                Duration::days(7),
            )
            .unwrap();
        assert_eq!(due.stale_after(), Some(now + Duration::days(7)));
        // Looked at and left as it was: next look in six hours, not every run.
        let checked = now + Duration::days(8);
        due.reconciled_at = Some(checked);
        assert_eq!(due.stale_after(), Some(checked + RECHECK_AFTER));
        // An upgrade checkout from Free is watched too.
        let mut upgrading = Subscription::free(now);
        upgrading.checkout_session_id = Some("cs_2".into());
        upgrading.checkout_started_at = Some(now);
        assert_eq!(upgrading.stale_after(), Some(now + CHECKOUT_STALE_AFTER));
    }

    #[test]
    fn directions_rank_tier_then_interval() {
        use BillingInterval::{Annual, Monthly};
        assert_eq!(
            change_direction((PlanId::Pro, Monthly), (PlanId::Pro, Annual)),
            ChangeDirection::Up
        );
        assert_eq!(
            change_direction((PlanId::Pro, Annual), (PlanId::Pro, Monthly)),
            ChangeDirection::Down
        );
        assert_eq!(
            change_direction((PlanId::Pro, Annual), (PlanId::Enterprise, Monthly)),
            ChangeDirection::Up
        );
        assert_eq!(
            change_direction((PlanId::Pro, Annual), (PlanId::Pro, Annual)),
            ChangeDirection::Same
        );
    }

    #[test]
    fn a_scheduled_change_lasts_until_stripe_applies_or_drops_it() {
        let now = Utc::now();
        let end = now + Duration::days(300);
        let mut r = remote(SubscriptionStatus::Active, PlanId::Pro, end);
        r.interval = BillingInterval::Annual;
        r.schedule_id = Some("sub_sched_1".into());
        let (mut s, _) = Subscription::awaiting_payment(PlanId::Pro, BillingInterval::Annual)
            .apply_remote(&r, now, Duration::days(7))
            .unwrap();
        s.scheduled_change = Some(ScheduledChange {
            plan_id: PlanId::Pro,
            billing_interval: BillingInterval::Monthly,
            effective_at: Some(end),
        });
        let (kept, _) = s.apply_remote(&r, now, Duration::days(7)).unwrap();
        assert!(kept.scheduled_change.is_some());
        r.interval = BillingInterval::Monthly;
        let (applied, t) = kept.apply_remote(&r, end, Duration::days(7)).unwrap();
        assert_eq!(applied.scheduled_change, None);
        assert!(matches!(t.as_slice(), [Transition::PlanChanged { .. }]));
        r.interval = BillingInterval::Annual;
        r.schedule_id = None;
        let (released, _) = kept.apply_remote(&r, now, Duration::days(7)).unwrap();
        assert_eq!(released.scheduled_change, None);
    }

    fn live(id: &str, plan: PlanId, status: SubscriptionStatus) -> RemoteSubscription {
        let mut r = remote(status, plan, Utc::now() + Duration::days(30));
        r.id = id.into();
        r
    }

    #[test]
    fn only_a_period_in_good_standing_is_credited_when_it_ends() {
        use SubscriptionStatus::{Active, PastDue, Trialing, Unpaid};
        let credits = |status| live("sub", PlanId::Pro, status).credits_unused_time();
        assert!(credits(Active) && credits(Trialing));
        assert!(!credits(PastDue), "its open invoice was never collected");
        assert!(!credits(Unpaid));
    }

    #[test]
    fn the_higher_plan_wins_and_equal_plans_keep_the_accounts_own() {
        use PlanId::{Enterprise, Pro};
        use SubscriptionStatus::{Active, Canceled, Incomplete, PastDue, Trialing};
        let pro = live("sub_pro", Pro, Active);
        for (current, other, expected) in [
            (
                &pro,
                live("sub_ent", Enterprise, Active),
                Precedence::Replace,
            ),
            (
                &pro,
                live("sub_ent", Enterprise, Trialing),
                Precedence::Replace,
            ),
            (&pro, live("sub_pro2", Pro, Active), Precedence::KeepCurrent),
            (
                &live("sub_ent", Enterprise, Active),
                pro.clone(),
                Precedence::KeepCurrent,
            ),
            (
                &live("sub_ent", Enterprise, PastDue),
                pro.clone(),
                Precedence::KeepCurrent,
            ),
            // Unpaid yet: replacing a paying Pro by it would grant nothing.
            (
                &pro,
                live("sub_ent", Enterprise, Incomplete),
                Precedence::Wait,
            ),
            // The account's own grants nothing: the one paid for wins.
            (
                &live("sub_ent", Enterprise, SubscriptionStatus::Unpaid),
                pro.clone(),
                Precedence::Replace,
            ),
            (
                &live("sub_pro", Pro, SubscriptionStatus::Paused),
                live("sub_pro2", Pro, Active),
                Precedence::Replace,
            ),
            // The account's own is over: whatever is live is the account's now.
            (
                &live("sub_old", Pro, Canceled),
                live("sub_pro2", Pro, Active),
                Precedence::Replace,
            ),
        ] {
            assert_eq!(
                precedence(current, &other),
                expected,
                "{:?} {:?} against {:?} {:?}",
                current.plan_id,
                current.status,
                other.plan_id,
                other.status
            );
        }
        let mut annual = live("sub_pro2", Pro, Active);
        annual.interval = BillingInterval::Annual;
        assert_eq!(
            precedence(&pro, &annual),
            Precedence::KeepCurrent,
            "a plan is not higher for being billed yearly"
        );
    }

    #[test]
    fn a_replacement_is_a_plan_change_that_owes_the_old_ones_cancellation() {
        let now = Utc::now();
        let grace = Duration::days(7);
        let on_pro = Subscription::awaiting_payment(PlanId::Pro, BillingInterval::Monthly)
            .apply_remote(
                &live("sub_pro", PlanId::Pro, SubscriptionStatus::Active),
                now,
                grace,
            )
            .unwrap()
            .0;
        assert_eq!(
            on_pro.stale_after(),
            on_pro.current_period_end.map(|e| e + RENEWAL_STALE_AFTER)
        );
        let enterprise = live("sub_ent", PlanId::Enterprise, SubscriptionStatus::Active);
        assert!(
            on_pro.apply_remote(&enterprise, now, grace).is_none(),
            "a second subscription is never taken silently"
        );
        let (switched, t) = on_pro.replaced_by(&enterprise, now, grace);
        assert_eq!(switched.stripe_subscription_id.as_deref(), Some("sub_ent"));
        assert_eq!(switched.effective_plan(now), PlanId::Enterprise);
        assert_eq!(
            switched.replaced_subscription_id.as_deref(),
            Some("sub_pro")
        );
        assert_eq!(
            t,
            vec![Transition::PlanChanged {
                from: PlanId::Pro,
                to: PlanId::Enterprise
            }]
        );
        assert!(
            switched.stale_after().is_some_and(|due| due <= Utc::now()),
            "an owed cancellation is due for reconciliation at once"
        );
        // The replaced one's deletion, whenever it arrives, is about the past.
        let mut deleted = live("sub_pro", PlanId::Pro, SubscriptionStatus::Canceled);
        deleted.ended_at = Some(now);
        assert!(switched.apply_remote(&deleted, now, grace).is_none());
    }
}
