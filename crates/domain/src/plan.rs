//! The plan catalog, defined once. Prices are integer cents; limits are typed
//! (`None` = unlimited).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::money::Money;

/// Plan identity and tier at once. The declaration order is the upgrade
/// order (free < pro < enterprise); `Ord` derives from it and every
/// "upgrade to" hint uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
#[cfg_attr(
    feature = "openapi",
    schema(description = "A plan, which is also its tier: free < pro < enterprise.")
)]
pub enum PlanId {
    Free,
    Pro,
    Enterprise,
}

impl PlanId {
    pub const ALL: [PlanId; 3] = [PlanId::Free, PlanId::Pro, PlanId::Enterprise];

    pub fn as_str(self) -> &'static str {
        match self {
            PlanId::Free => "free",
            PlanId::Pro => "pro",
            PlanId::Enterprise => "enterprise",
        }
    }

    /// The next tier up, for upgrade hints; `None` at the top.
    pub fn next_tier(self) -> Option<PlanId> {
        Self::ALL.into_iter().find(|p| *p > self)
    }

    pub fn is_paid(self) -> bool {
        self != PlanId::Free
    }
}

impl fmt::Display for PlanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PlanId {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Self::ALL.into_iter().find(|p| p.as_str() == s).ok_or(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum BillingInterval {
    #[default]
    Monthly,
    Annual,
}

impl BillingInterval {
    /// As the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            BillingInterval::Monthly => "monthly",
            BillingInterval::Annual => "annual",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    Pdf,
    Excel,
    Json,
    Csv,
    Xml,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Feature {
    AiFeatures,
}

impl Feature {
    pub fn as_str(self) -> &'static str {
        match self {
            Feature::AiFeatures => "ai_features",
        }
    }
}

/// `None` means unlimited.
pub type Limit = Option<u64>;

/// A plan's limits; `null` means unlimited.
// The schema attributes spell out the `Limit` alias, which the OpenAPI
// derive cannot see through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Limits {
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u64>, required = true))]
    pub documents_per_month: Limit,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u64>, required = true))]
    pub api_calls_per_day: Limit,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u64>, required = true))]
    pub team_members: Limit,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u64>, required = true))]
    pub storage_mb: Limit,
    pub export_formats: Vec<ExportFormat>,
    pub ai_features: bool,
    pub priority_support: bool,
    pub sso: bool,
    pub custom_integrations: bool,
}

impl Limits {
    pub fn allows_feature(&self, feature: Feature) -> bool {
        match feature {
            Feature::AiFeatures => self.ai_features,
        }
    }

    pub fn allows_export(&self, format: ExportFormat) -> bool {
        self.export_formats.contains(&format)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Price {
    pub interval: BillingInterval,
    #[serde(flatten)]
    pub money: Money,
    /// Stripe lookup key; prices are found by it, never by hard-coded ids.
    pub lookup_key: &'static str,
}

/// A plan's free trial, offered on an account's first subscription only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Trial {
    pub days: u32,
    /// Whether checkout asks for a card before the trial; without one the
    /// subscription is cancelled when the trial ends.
    pub card_required: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Plan {
    pub id: PlanId,
    pub name: &'static str,
    pub tier: PlanId,
    pub description: &'static str,
    /// Empty for custom-priced plans (see `contact_sales`).
    pub prices: Vec<Price>,
    pub contact_sales: bool,
    /// `null`: no trial.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub trial: Option<Trial>,
    pub features: Vec<&'static str>,
    pub limits: Limits,
}

impl Plan {
    pub fn price(&self, interval: BillingInterval) -> Option<&Price> {
        self.prices.iter().find(|p| p.interval == interval)
    }
}

/// Operator overrides of the catalog's limits (the seed's environment names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitOverrides {
    pub free_documents_per_month: Option<u64>,
    pub pro_documents_per_month: Option<u64>,
    pub free_api_calls_per_day: Option<u64>,
    pub pro_api_calls_per_day: Option<u64>,
}

/// Pro's trial unless the operator sets another (`PRO_TRIAL_DAYS`).
pub const PRO_TRIAL_DAYS: u32 = 14;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    plans: Vec<Plan>,
}

const ALL_FORMATS: [ExportFormat; 5] = [
    ExportFormat::Pdf,
    ExportFormat::Excel,
    ExportFormat::Json,
    ExportFormat::Csv,
    ExportFormat::Xml,
];

impl Catalog {
    /// KRAFTD's plans. The only place prices and limits are written down.
    pub fn standard() -> Self {
        let free = Plan {
            id: PlanId::Free,
            name: "Free",
            tier: PlanId::Free,
            description: "Evaluate KRAFTD on real documents, free forever.",
            prices: vec![Price {
                interval: BillingInterval::Monthly,
                money: Money::usd_cents(0),
                lookup_key: "free_monthly",
            }],
            contact_sales: false,
            trial: None,
            features: vec![
                "50 documents a month",
                "1,000 API calls a day",
                "PDF export",
                "5 GB storage",
                "Community support",
            ],
            limits: Limits {
                documents_per_month: Some(50),
                api_calls_per_day: Some(1_000),
                team_members: Some(1),
                storage_mb: Some(5 * 1024),
                export_formats: vec![ExportFormat::Pdf],
                ai_features: false,
                priority_support: false,
                sso: false,
                custom_integrations: false,
            },
        };
        let pro = Plan {
            id: PlanId::Pro,
            name: "Professional",
            tier: PlanId::Pro,
            description: "For growing teams that process documents every day.",
            prices: vec![
                Price {
                    interval: BillingInterval::Monthly,
                    money: Money::usd_cents(9_900),
                    lookup_key: "pro_monthly",
                },
                Price {
                    interval: BillingInterval::Annual,
                    money: Money::usd_cents(99_000),
                    lookup_key: "pro_annual",
                },
            ],
            contact_sales: false,
            trial: Some(Trial {
                days: PRO_TRIAL_DAYS,
                card_required: false,
            }),
            features: vec![
                "1,000 documents a month",
                "50,000 API calls a day",
                "AI extraction",
                "PDF, Excel, JSON and CSV export",
                "Up to 10 team members",
                "100 GB storage",
                "Priority support",
            ],
            limits: Limits {
                documents_per_month: Some(1_000),
                api_calls_per_day: Some(50_000),
                team_members: Some(10),
                storage_mb: Some(100 * 1024),
                export_formats: vec![
                    ExportFormat::Pdf,
                    ExportFormat::Excel,
                    ExportFormat::Json,
                    ExportFormat::Csv,
                ],
                ai_features: true,
                priority_support: true,
                sso: false,
                custom_integrations: false,
            },
        };
        let enterprise = Plan {
            id: PlanId::Enterprise,
            name: "Enterprise",
            tier: PlanId::Enterprise,
            description: "Unlimited processing, SSO and custom integrations. Contact sales.",
            prices: vec![],
            contact_sales: true,
            trial: None,
            features: vec![
                "Unlimited documents and API calls",
                "AI extraction",
                "Every export format, including XML",
                "Unlimited team members and storage",
                "Single sign-on",
                "Custom integrations",
                "Priority support",
            ],
            limits: Limits {
                documents_per_month: None,
                api_calls_per_day: None,
                team_members: None,
                storage_mb: None,
                export_formats: ALL_FORMATS.to_vec(),
                ai_features: true,
                priority_support: true,
                sso: true,
                custom_integrations: true,
            },
        };
        Self {
            plans: vec![free, pro, enterprise],
        }
    }

    pub fn with_overrides(mut self, o: &LimitOverrides) -> Self {
        for plan in &mut self.plans {
            let (docs, api) = match plan.id {
                PlanId::Free => (o.free_documents_per_month, o.free_api_calls_per_day),
                PlanId::Pro => (o.pro_documents_per_month, o.pro_api_calls_per_day),
                PlanId::Enterprise => (None, None),
            };
            if docs.is_some() {
                plan.limits.documents_per_month = docs;
            }
            if api.is_some() {
                plan.limits.api_calls_per_day = api;
            }
        }
        self
    }

    /// The plan's trial lasts `days`; 0: the plan has none.
    pub fn with_trial_days(mut self, plan: PlanId, days: u32) -> Self {
        for p in self.plans.iter_mut().filter(|p| p.id == plan) {
            let card_required = p.trial.is_some_and(|t| t.card_required);
            p.trial = (days > 0).then_some(Trial {
                days,
                card_required,
            });
        }
        self
    }

    pub fn plans(&self) -> &[Plan] {
        &self.plans
    }

    pub fn plan(&self, id: PlanId) -> &Plan {
        self.plans
            .iter()
            .find(|p| p.id == id)
            .expect("the catalog holds every PlanId")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrade_order_is_free_pro_enterprise() {
        assert_eq!(PlanId::Free.next_tier(), Some(PlanId::Pro));
        assert_eq!(PlanId::Pro.next_tier(), Some(PlanId::Enterprise));
        assert_eq!(PlanId::Enterprise.next_tier(), None);
    }

    #[test]
    fn catalog_has_every_plan_once_with_integer_prices() {
        let c = Catalog::standard();
        for id in PlanId::ALL {
            assert_eq!(c.plans().iter().filter(|p| p.id == id).count(), 1);
        }
        let pro = c.plan(PlanId::Pro);
        assert_eq!(
            pro.price(BillingInterval::Monthly).unwrap().money.amount,
            9_900
        );
        assert_eq!(
            pro.price(BillingInterval::Annual).unwrap().money.amount,
            99_000
        );
        assert!(c.plan(PlanId::Enterprise).prices.is_empty());
    }

    #[test]
    fn pro_offers_a_trial_without_a_card_that_the_operator_can_change_or_drop() {
        let c = Catalog::standard();
        assert_eq!(
            c.plan(PlanId::Pro).trial,
            Some(Trial {
                days: 14,
                card_required: false
            })
        );
        assert_eq!(c.plan(PlanId::Free).trial, None);
        let c = c.with_trial_days(PlanId::Pro, 30);
        assert_eq!(c.plan(PlanId::Pro).trial.map(|t| t.days), Some(30));
        assert_eq!(
            c.with_trial_days(PlanId::Pro, 0).plan(PlanId::Pro).trial,
            None
        );
    }

    #[test]
    fn overrides_touch_only_what_they_name() {
        let o = LimitOverrides {
            free_documents_per_month: Some(3),
            ..Default::default()
        };
        let c = Catalog::standard().with_overrides(&o);
        assert_eq!(c.plan(PlanId::Free).limits.documents_per_month, Some(3));
        assert_eq!(c.plan(PlanId::Free).limits.api_calls_per_day, Some(1_000));
        assert_eq!(c.plan(PlanId::Pro).limits.documents_per_month, Some(1_000));
    }
}
