//! The subscription a user holds and the rules that decide which plan it
//! grants right now. Statuses are Stripe's, so webhook state maps 1:1.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::plan::{BillingInterval, PlanId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
    /// while active, trialing or in the dunning grace of past_due, and a
    /// canceled one until the period it was paid for ends; otherwise Free.
    pub fn effective_plan(&self, now: DateTime<Utc>) -> PlanId {
        use SubscriptionStatus::*;
        let paid_through = self.current_period_end.is_some_and(|end| now < end);
        let grants = match self.status {
            Active | Trialing | PastDue => true,
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

#[cfg(test)]
mod tests {
    use super::*;
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
}
