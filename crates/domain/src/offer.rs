//! Enterprise offers: a price sales negotiated with one account, made by
//! support through the admin API and held on the account until its owner
//! accepts it (a checkout on the offer's price) or support attaches it to
//! the account's live subscription. Stripe's state settles it: the offer is
//! accepted when a live subscription of the account bills its price.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::audit::Actor;
use crate::money::Money;
use crate::overrides::{Override, OverrideError, OverrideId, OverrideKind};
use crate::plan::BillingInterval;
use crate::subscription::RemoteSubscription;
use crate::usage::Metric;

/// The namespace of the name-based ids of an offer's limit overrides.
const OVERRIDE_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6b72_6166_7464_2d6f_6666_6572_2d6c_696d);

fn override_id(offer_id: &str, metric: Metric) -> OverrideId {
    let name = format!("{offer_id}:{}", metric.as_str());
    OverrideId(uuid::Uuid::new_v5(&OVERRIDE_NAMESPACE, name.as_bytes()))
}

/// Where an offer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OfferStatus {
    /// Waiting for the owner's checkout or support's attach.
    Pending,
    /// A live subscription of the account bills the offer's price.
    Accepted,
}

/// A negotiated Enterprise price for one account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnterpriseOffer {
    pub id: String,
    /// The Stripe price the offer sells: recurring, on the Enterprise plan.
    pub price_id: String,
    /// What the price bills each interval.
    #[serde(flatten)]
    pub money: Money,
    pub interval: BillingInterval,
    /// The negotiated limits, replacing the plan's for these metrics once
    /// the offer is accepted.
    #[serde(default)]
    pub limits: BTreeMap<Metric, u64>,
    /// Why the offer was made (the deal, the ticket).
    pub reason: String,
    /// The service credential that made it.
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    /// After this it can no longer be accepted; `None`: until replaced.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    pub status: OfferStatus,
    #[serde(default)]
    pub accepted_at: Option<DateTime<Utc>>,
    /// The subscription that took it up.
    #[serde(default)]
    pub subscription_id: Option<String>,
}

/// Why an offer cannot be taken up now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OfferRefusal {
    #[error("the offer expired: ask for a new one")]
    Expired,
    #[error("the offer was accepted already")]
    AlreadyAccepted,
}

impl EnterpriseOffer {
    /// Whether the owner may pay for it, or support attach it, at `now`.
    pub fn acceptable(&self, now: DateTime<Utc>) -> Result<(), OfferRefusal> {
        match self.status {
            OfferStatus::Accepted => Err(OfferRefusal::AlreadyAccepted),
            OfferStatus::Pending if self.expires_at.is_some_and(|end| now >= end) => {
                Err(OfferRefusal::Expired)
            }
            OfferStatus::Pending => Ok(()),
        }
    }

    /// The offer after Stripe's view of the account's subscription: a
    /// pending offer whose price a live subscription now bills is accepted
    /// (written with that subscription). An expiry does not undo a payment
    /// made before it, nor one Stripe reports late: whatever Stripe bills is
    /// the truth.
    pub fn settle(&mut self, remote: &RemoteSubscription, now: DateTime<Utc>) -> bool {
        let takes_it = self.status == OfferStatus::Pending
            && remote.price_id == self.price_id
            && remote.grants();
        if takes_it {
            self.status = OfferStatus::Accepted;
            self.accepted_at = Some(now);
            self.subscription_id = Some(remote.id.clone());
        }
        takes_it
    }

    /// Whether the negotiated limits still apply to an account whose
    /// subscription is `subscription`: only while it is the Enterprise
    /// subscription that took the offer up. Once the account leaves it (a
    /// cancellation, a move to another plan), the limits go with it.
    pub fn still_applies(&self, subscription: &crate::subscription::Subscription) -> bool {
        self.status == OfferStatus::Accepted
            && subscription.plan_id == crate::plan::PlanId::Enterprise
            && subscription.stripe_subscription_id.is_some()
            && subscription.stripe_subscription_id == self.subscription_id
    }

    /// The ids `limit_overrides` gives the negotiated limits.
    pub fn override_ids(&self) -> Vec<OverrideId> {
        self.limits
            .keys()
            .map(|metric| override_id(&self.id, *metric))
            .collect()
    }

    /// The account overrides the negotiated limits become once the offer
    /// is accepted: one per limit, named by the offer and the metric, set
    /// by whoever made the offer, with its reason and no expiry. Checked
    /// when the offer is made, so the acceptance, which Stripe has already
    /// billed, never fails here.
    pub fn limit_overrides(&self, now: DateTime<Utc>) -> Result<Vec<Override>, OverrideError> {
        self.limits
            .iter()
            .map(|(&metric, &value)| {
                Override::new(
                    override_id(&self.id, metric),
                    OverrideKind::Limit { metric, value },
                    &self.reason,
                    Actor::Admin {
                        service: self.created_by.clone(),
                        person: None,
                    },
                    now,
                    None,
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;
    use crate::plan::PlanId;
    use crate::subscription::SubscriptionStatus;
    use chrono::Duration;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn offer(expires_at: Option<DateTime<Utc>>) -> EnterpriseOffer {
        EnterpriseOffer {
            id: "offer_1".into(),
            price_id: "price_ent".into(),
            money: Money::usd_cents(250_000),
            interval: BillingInterval::Monthly,
            limits: BTreeMap::from([(Metric::Documents, 50_000)]),
            reason: "deal 42".into(),
            created_by: "back-office".into(),
            created_at: at("2026-01-01T00:00:00Z"),
            expires_at,
            status: OfferStatus::Pending,
            accepted_at: None,
            subscription_id: None,
        }
    }

    fn remote(price: &str, status: SubscriptionStatus) -> RemoteSubscription {
        RemoteSubscription {
            id: "sub_1".into(),
            customer_id: "cus_1".into(),
            status,
            plan_id: PlanId::Enterprise,
            interval: BillingInterval::Monthly,
            item_id: "si_1".into(),
            price_id: price.into(),
            current_period_start: None,
            current_period_end: None,
            cancel_at_period_end: false,
            ended_at: None,
            schedule_id: None,
            trial_end: None,
            currency: Currency::parse("usd").unwrap(),
        }
    }

    #[test]
    fn an_offer_is_acceptable_until_it_expires_and_only_once() {
        let end = at("2026-01-15T00:00:00Z");
        let o = offer(Some(end));
        assert_eq!(o.acceptable(end - Duration::seconds(1)), Ok(()));
        assert_eq!(o.acceptable(end), Err(OfferRefusal::Expired));
        assert_eq!(offer(None).acceptable(end + Duration::days(999)), Ok(()));
        let mut taken = offer(None);
        assert!(taken.settle(&remote("price_ent", SubscriptionStatus::Active), end));
        assert_eq!(taken.acceptable(end), Err(OfferRefusal::AlreadyAccepted));
    }

    #[test]
    fn only_a_subscription_granting_the_offers_price_accepts_it() {
        let now = at("2026-01-02T00:00:00Z");
        let mut o = offer(None);
        assert!(!o.settle(&remote("price_pro", SubscriptionStatus::Active), now));
        assert!(!o.settle(&remote("price_ent", SubscriptionStatus::Incomplete), now));
        assert_eq!(o.status, OfferStatus::Pending);
        assert!(o.settle(&remote("price_ent", SubscriptionStatus::Active), now));
        assert_eq!(
            (o.status, o.accepted_at, o.subscription_id.as_deref()),
            (OfferStatus::Accepted, Some(now), Some("sub_1"))
        );
        // A later sync changes nothing.
        assert!(!o.settle(&remote("price_ent", SubscriptionStatus::Active), now));
    }
}
