//! `handler stripe sync-catalog`: makes a Stripe account sell the plan
//! catalog. One product per paid plan (found by metadata `plan_id`), one
//! price per interval (found by lookup key). Idempotent: a second run finds
//! everything in place and changes nothing. A changed amount makes a new
//! price that takes over the lookup key (as does a changed currency), and the old one is archived, so
//! existing subscriptions keep their price until they change plan.

use std::collections::HashMap;
use std::str::FromStr;

use stripe_product::price::{
    CreatePrice, CreatePriceRecurring, CreatePriceRecurringInterval, ListPrice, UpdatePrice,
};
use stripe_product::product::{CreateProduct, ListProduct};
use stripe_shared::{Product, RecurringInterval};

use crate::domain::plan::{BillingInterval, Plan};
use crate::domain::ports::PaymentsError;

use super::stripe::StripePayments;

/// One line per thing created or changed; empty when all was in place.
pub type SyncReport = Vec<String>;

impl StripePayments {
    pub async fn sync_catalog(&self) -> Result<SyncReport, PaymentsError> {
        let mut report = Vec::new();
        let products = self.active_products().await?;
        for plan in self.catalog().plans() {
            let sold: Vec<_> = plan.prices.iter().filter(|p| p.money.amount > 0).collect();
            if sold.is_empty() {
                continue;
            }
            let (product_id, created) = self.plan_product(&products, plan).await?;
            if created {
                report.push(format!("created product {product_id} for plan {}", plan.id));
            }
            let keys: Vec<String> = sold.iter().map(|p| p.lookup_key.to_owned()).collect();
            let existing = self
                .send(
                    None,
                    "list prices",
                    ListPrice::new().lookup_keys(keys).active(true),
                )
                .await?;
            for price in sold {
                let interval = match price.interval {
                    BillingInterval::Monthly => (
                        RecurringInterval::Month,
                        CreatePriceRecurringInterval::Month,
                    ),
                    BillingInterval::Annual => {
                        (RecurringInterval::Year, CreatePriceRecurringInterval::Year)
                    }
                };
                let current = existing
                    .data
                    .iter()
                    .find(|p| p.lookup_key.as_deref() == Some(price.lookup_key));
                let Ok(currency) = stripe_types::Currency::from_str(price.money.currency.code());
                let in_place = current.is_some_and(|p| {
                    p.unit_amount == Some(price.money.amount)
                        && p.currency == currency
                        && p.recurring.as_ref().map(|r| &r.interval) == Some(&interval.0)
                        && p.product.id().as_str() == product_id
                });
                if in_place {
                    continue;
                }
                let created = self
                    .send(
                        Some(format!(
                            "kraftd:catalog:price:{}:{}:{}:{}",
                            price.lookup_key, price.money.amount, price.money.currency, product_id
                        )),
                        "create price",
                        CreatePrice::new(currency.clone())
                            .product(product_id.as_str())
                            .unit_amount(price.money.amount)
                            .recurring(CreatePriceRecurring::new(interval.1))
                            .lookup_key(price.lookup_key)
                            .transfer_lookup_key(true)
                            .metadata(HashMap::from([("plan_id".to_owned(), plan.id.to_string())])),
                    )
                    .await?;
                report.push(format!(
                    "created price {} ({})",
                    created.id, price.lookup_key
                ));
                if let Some(old) = current {
                    self.send(
                        Some(format!("kraftd:catalog:archive:{}", old.id)),
                        "archive price",
                        UpdatePrice::new(old.id.as_str()).active(false),
                    )
                    .await?;
                    report.push(format!("archived price {}", old.id));
                }
            }
        }
        self.forget_prices().await;
        Ok(report)
    }

    /// The account's active products (the first 100: plans are few).
    pub(super) async fn active_products(&self) -> Result<Vec<Product>, PaymentsError> {
        let listed = self
            .send(
                None,
                "list products",
                ListProduct::new().active(true).limit(100),
            )
            .await?;
        Ok(listed.data)
    }

    /// The plan's product among `listed` (by metadata `plan_id`), else a
    /// new one, made once whoever asks (`true`: made now).
    pub(super) async fn plan_product(
        &self,
        listed: &[Product],
        plan: &Plan,
    ) -> Result<(String, bool), PaymentsError> {
        let found = listed
            .iter()
            .find(|p| p.metadata.get("plan_id").map(String::as_str) == Some(plan.id.as_str()));
        if let Some(p) = found {
            return Ok((p.id.to_string(), false));
        }
        let created = self
            .send(
                Some(format!("kraftd:catalog:product:{}", plan.id)),
                "create product",
                CreateProduct::new(format!("KRAFTD {}", plan.name))
                    .description(plan.description)
                    .metadata(HashMap::from([("plan_id".to_owned(), plan.id.to_string())])),
            )
            .await?;
        Ok((created.id.to_string(), true))
    }
}
