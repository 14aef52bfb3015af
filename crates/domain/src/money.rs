use serde::{Deserialize, Serialize};

/// ISO 4217 currency, lower-case as Stripe writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Currency {
    Usd,
}

/// An amount in the currency's minor unit (cents). Never a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

/// "99.00" for 9900: minor units as a decimal string, for display. Never
/// parsed back; amounts stay integers.
pub fn format_decimal(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_exact() {
        assert_eq!(format_decimal(9_900), "99.00");
        assert_eq!(format_decimal(99_000), "990.00");
        assert_eq!(format_decimal(5), "0.05");
        assert_eq!(format_decimal(-1_234), "-12.34");
    }
}
