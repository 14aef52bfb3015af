//! The Enterprise sales flow: support makes an account an offer (a price
//! sales negotiated, and limits), which the owner accepts through a
//! checkout or support attaches to the account's live subscription. The
//! offer is accepted when Stripe bills its price (`sync_subscription`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::domain::account::{Account, Action};
use crate::domain::audit::{fields, Actor, AuditAction, AuditEntry, Fields};
use crate::domain::offer::{EnterpriseOffer, OfferRefusal, OfferStatus};
use crate::domain::overrides;
use crate::domain::plan::PlanId;
use crate::domain::ports::{CheckoutSession, OfferCheckout, OfferPrice};
use crate::domain::subscription::RemoteSubscription;
use crate::domain::usage::Metric;

use super::{Acting, AppError, Billing, StateConflict};

/// What support asks for.
pub struct OfferInput {
    pub price: OfferPrice,
    pub limits: BTreeMap<Metric, u64>,
    pub reason: String,
    pub expires_at: Option<DateTime<Utc>>,
    /// Move the account's live subscription to the offer's price now,
    /// with no checkout.
    pub attach: bool,
}

impl Billing {
    /// Makes (or replaces) the account's offer; with `attach`, also moves
    /// its live subscription to the offer's price, prorated.
    pub async fn make_enterprise_offer(
        &self,
        actor: &Actor,
        account_id: &str,
        input: OfferInput,
    ) -> Result<Account, AppError> {
        let Actor::Admin { service, .. } = actor else {
            return Err(AppError::MissingScope("admin"));
        };
        let account = self.admin_account(account_id).await?.value;
        let now = self.clock.now();
        let reason = input.reason.trim();
        if reason.is_empty() || reason.chars().count() > overrides::MAX_REASON_CHARS {
            return Err(AppError::invalid(
                "reason",
                format!(
                    "must say why the offer is made, in 1 to {} characters",
                    overrides::MAX_REASON_CHARS
                ),
            ));
        }
        if input.expires_at.is_some_and(|end| end <= now) {
            return Err(AppError::invalid("expires_at", "must be in the future"));
        }
        if let OfferPrice::New { money, .. } = &input.price {
            if money.amount <= 0 {
                return Err(AppError::invalid("amount", "must be more than 0"));
            }
        }
        // Known before any price is made, so a refused attach makes nothing.
        let live = match input.attach {
            true => Some(
                self.live_subscription(&account)
                    .await?
                    .ok_or(AppError::State(StateConflict::NoPaidSubscription))?,
            ),
            false => None,
        };
        let offer_id = format!("offer_{}", uuid::Uuid::new_v4().simple());
        let price = self
            .payments
            .offer_price(&offer_id, &input.price)
            .await
            .map_err(|e| match (&input.price, e) {
                (OfferPrice::Existing(_), crate::domain::ports::PaymentsError::NotFound { .. }) => {
                    AppError::invalid("price_id", "is no price at Stripe")
                }
                (_, e) => AppError::Payments(e),
            })?;
        let interval = match (price.plan_id, price.interval, price.active) {
            (PlanId::Enterprise, Some(interval), true) => interval,
            (PlanId::Enterprise, _, true) => {
                return Err(AppError::invalid(
                    "price_id",
                    "must be a recurring price billed monthly or yearly",
                ))
            }
            (PlanId::Enterprise, _, false) => {
                return Err(AppError::invalid("price_id", "is archived at Stripe"))
            }
            (plan, _, _) => {
                return Err(AppError::invalid(
                    "price_id",
                    format!("sells the {plan} plan, not Enterprise"),
                ))
            }
        };
        let offer = EnterpriseOffer {
            id: offer_id.clone(),
            price_id: price.id.clone(),
            money: price.money,
            interval,
            limits: input.limits,
            reason: input.reason.trim().to_owned(),
            created_by: service.clone(),
            created_at: now,
            expires_at: input.expires_at,
            status: OfferStatus::Pending,
            accepted_at: None,
            subscription_id: None,
        };
        // Refused now if its limits could not become overrides, rather than
        // when Stripe has already billed the price.
        offer
            .limit_overrides(now)
            .map_err(|e| AppError::invalid("limits", e.to_string()))?;
        let mut entry = self.audit_entry(
            account.id,
            actor.clone(),
            AuditAction::EnterpriseOfferMade,
            account.enterprise_offer.as_ref().map(offer_fields),
            Some(offer_fields(&offer)),
        );
        entry.reason = Some(offer.reason.clone());
        let written = self
            .update_account_audited(
                account.id,
                |a| a.enterprise_offer = Some(offer.clone()),
                &[entry],
            )
            .await?
            .value;
        let Some(live) = live else {
            return Ok(written);
        };
        tracing::info!(account_id = %account.id, offer_id, subscription = %live.id,
            "attaching an Enterprise offer to the live subscription");
        // A pending downgrade would undo the contract at the period's end
        // (and Stripe refuses item changes under a schedule).
        if let Some(schedule) = &live.schedule_id {
            self.payments
                .release_schedule(schedule)
                .await
                .map_err(AppError::Payments)?;
        }
        self.payments
            .attach_price(account.id, &live, &price.id, &offer_id)
            .await
            .map_err(AppError::Payments)?;
        self.sync_subscription(account.id, &live.id, &format!("offer:{offer_id}"), actor)
            .await
    }

    /// The owner takes up the account's offer: a checkout on its price.
    /// Paid, the webhook's sync moves the account to it (replacing a Pro
    /// subscription, credited) and marks the offer accepted.
    pub async fn accept_enterprise_offer(
        &self,
        acting: &Acting,
    ) -> Result<CheckoutSession, AppError> {
        acting.require(Action::AcceptEnterpriseOffer)?;
        let account = &acting.account.value;
        let offer = account
            .enterprise_offer
            .clone()
            .ok_or(AppError::OfferNotFound)?;
        offer
            .acceptable(self.clock.now())
            .map_err(|refusal| match refusal {
                OfferRefusal::Expired => AppError::State(StateConflict::OfferExpired),
                OfferRefusal::AlreadyAccepted => AppError::State(StateConflict::OfferAccepted),
            })?;
        self.begin_checkout(
            account.clone(),
            acting.account.etag.clone(),
            PlanId::Enterprise,
            offer.interval,
            &format!("offer:{}", offer.id),
            Some(OfferCheckout {
                offer_id: offer.id,
                price_id: offer.price_id,
            }),
        )
        .await
    }

    /// A pending offer whose price the synced subscription now bills is
    /// accepted in the same write, and its limits become the account's
    /// overrides: the audit entries of both, for that write. `actor` is
    /// what caused the sync (the webhook, support's attach).
    pub(super) fn settle_offer(
        &self,
        account: &mut Account,
        remote: &RemoteSubscription,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Vec<AuditEntry> {
        let Some(offer) = account.enterprise_offer.as_mut() else {
            return Vec::new();
        };
        if !offer.settle(remote, now) {
            return self.lapse_offer_limits(account, actor);
        }
        tracing::info!(account_id = %account.id, offer_id = %offer.id,
            subscription = %remote.id, "Enterprise offer accepted");
        let accepted = self.audit_entry(
            account.id,
            actor.clone(),
            AuditAction::EnterpriseOfferAccepted,
            None,
            Some(offer_fields(offer)),
        );
        let limits = offer.limit_overrides(now).unwrap_or_else(|e| {
            tracing::error!(account_id = %account.id, offer_id = %offer.id, error = %e,
                "an accepted offer's limits could not become overrides");
            Vec::new()
        });
        let mut entries = vec![accepted];
        for o in limits {
            let mut entry = self.audit_entry(
                account.id,
                o.actor.clone(),
                AuditAction::OverrideSet,
                None,
                Some(o.describe()),
            );
            entry.reason = Some(o.reason.clone());
            match overrides::add(&mut account.overrides, o, now) {
                Ok(()) => entries.push(entry),
                Err(e) => tracing::error!(account_id = %account.id, error = %e,
                    "an accepted offer's limit was not set"),
            }
        }
        entries
    }
}

impl Billing {
    /// Once the account has left the subscription that took its offer up,
    /// the negotiated limits go: removed in the sync's write, each with its
    /// audit entry.
    fn lapse_offer_limits(&self, account: &mut Account, actor: &Actor) -> Vec<AuditEntry> {
        let Some(offer) = &account.enterprise_offer else {
            return Vec::new();
        };
        if offer.status != OfferStatus::Accepted || offer.still_applies(&account.subscription) {
            return Vec::new();
        }
        let ids = offer.override_ids();
        let (lapsed, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut account.overrides)
            .into_iter()
            .partition(|o| ids.contains(&o.id));
        account.overrides = kept;
        lapsed
            .into_iter()
            .map(|o| {
                let mut entry = self.audit_entry(
                    account.id,
                    actor.clone(),
                    AuditAction::OverrideRemoved,
                    Some(o.describe()),
                    None,
                );
                entry.reason =
                    Some("the Enterprise subscription that took the offer up ended".into());
                entry
            })
            .collect()
    }
}

/// What the audit log keeps of an offer.
fn offer_fields(offer: &EnterpriseOffer) -> Fields {
    let mut f = fields([
        ("offer_id", offer.id.clone()),
        ("price_id", offer.price_id.clone()),
        ("price", offer.money.display()),
        ("interval", offer.interval.as_str().to_owned()),
    ]);
    for (metric, value) in &offer.limits {
        f.insert(format!("limit.{}", metric.as_str()), value.to_string());
    }
    f
}
