use serde::{Deserialize, Serialize};

/// ISO 4217 currency, lower-case as Stripe writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Currency {
    Usd,
}

/// An amount in the currency's minor unit (cents). Never a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    /// Minor units (cents for USD).
    pub amount: i64,
    pub currency: Currency,
}

impl Money {
    pub const fn usd_cents(amount: i64) -> Self {
        Self {
            amount,
            currency: Currency::Usd,
        }
    }
}
