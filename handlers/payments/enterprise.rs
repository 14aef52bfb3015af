//! The Enterprise sales flow on Stripe: an offer's price (one sales made,
//! or a new one on the Enterprise product) and its attachment to a live
//! subscription.

use std::collections::HashMap;
use std::str::FromStr;

use stripe_billing::subscription::{
    UpdateSubscription, UpdateSubscriptionItems, UpdateSubscriptionProrationBehavior,
};
use stripe_product::price::{
    CreatePrice, CreatePriceRecurring, CreatePriceRecurringInterval, RetrievePrice,
};
use stripe_shared::RecurringInterval;

use crate::domain::account::AccountId;
use crate::domain::plan::{BillingInterval, PlanId};
use crate::domain::ports::{OfferPrice, PaymentsError, SoldPrice};
use crate::domain::subscription::RemoteSubscription;

use super::stripe::{key, money, StripePayments};

impl StripePayments {
    pub(super) async fn enterprise_offer_price(
        &self,
        offer_id: &str,
        price: &OfferPrice,
    ) -> Result<SoldPrice, PaymentsError> {
        let price = match price {
            OfferPrice::Existing(id) => {
                self.send(None, "retrieve price", RetrievePrice::new(id.as_str()))
                    .await?
            }
            OfferPrice::New { money, interval } => {
                let products = self.active_products().await?;
                let plan = self.catalog().plan(PlanId::Enterprise);
                let (product, _) = self.plan_product(&products, plan).await?;
                let Ok(currency) = stripe_types::Currency::from_str(money.currency.code());
                let recurring = CreatePriceRecurring::new(match interval {
                    BillingInterval::Monthly => CreatePriceRecurringInterval::Month,
                    BillingInterval::Annual => CreatePriceRecurringInterval::Year,
                });
                // Keyed by the offer: a retry of the offer makes no second price.
                self.send(
                    Some(format!("kraftd:offer:{offer_id}:price")),
                    "create price",
                    CreatePrice::new(currency)
                        .product(product.as_str())
                        .unit_amount(money.amount)
                        .recurring(recurring)
                        .metadata(HashMap::from([
                            ("plan_id".to_owned(), PlanId::Enterprise.to_string()),
                            ("offer_id".to_owned(), offer_id.to_owned()),
                        ])),
                )
                .await?
            }
        };
        let interval = price
            .recurring
            .as_ref()
            .filter(|r| r.interval_count == 1)
            .and_then(|r| match r.interval {
                RecurringInterval::Month => Some(BillingInterval::Monthly),
                RecurringInterval::Year => Some(BillingInterval::Annual),
                _ => None,
            });
        let (plan_id, _) = self.plan_of(&price).await?;
        Ok(SoldPrice {
            id: price.id.to_string(),
            plan_id,
            interval,
            money: money(price.unit_amount.unwrap_or(0), &price.currency)?,
            active: price.active,
        })
    }

    pub(super) async fn attach_enterprise_price(
        &self,
        account_id: AccountId,
        current: &RemoteSubscription,
        price_id: &str,
        attempt: &str,
    ) -> Result<RemoteSubscription, PaymentsError> {
        let mut item = UpdateSubscriptionItems::new();
        item.id = Some(current.item_id.clone());
        item.price = Some(price_id.to_owned());
        // The negotiated contract starts now; what the rest of the period
        // owes (less Pro's unused time) goes onto the next invoice.
        let request = UpdateSubscription::new(current.id.as_str())
            .items(vec![item])
            .proration_behavior(UpdateSubscriptionProrationBehavior::CreateProrations);
        let sub = self
            .send(
                key(
                    account_id,
                    "attach-offer",
                    &format!("{}:{price_id}:{attempt}", current.id),
                ),
                "attach the offer's price",
                request,
            )
            .await?;
        self.remote(sub).await
    }
}
