use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An ISO 4217 currency code, lower-case as Stripe writes it. Any code is
/// held: Stripe decides which currencies it charges in, and an invoice in
/// one this build has never seen is still an invoice.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency([u8; 3]);

/// Not three ASCII letters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a currency code (three letters, ISO 4217)")]
pub struct InvalidCurrency(pub String);

/// Amounts in these are whole units in Stripe's API (its "zero-decimal"
/// list, https://docs.stripe.com/currencies#zero-decimal).
const ZERO_DECIMAL: [&str; 16] = [
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
    "xaf", "xof", "xpf",
];

/// Amounts in these are thousandths in Stripe's API.
const THREE_DECIMAL: [&str; 5] = ["bhd", "jod", "kwd", "omr", "tnd"];

/// Symbols only where one names a single currency to a reader; any other
/// currency is shown by its code, so no amount can be read as dollars when
/// it is not.
const SYMBOLS: [(&str, &str); 6] = [
    ("usd", "$"),
    ("eur", "€"),
    ("gbp", "£"),
    ("jpy", "¥"),
    ("inr", "₹"),
    ("krw", "₩"),
];

impl Currency {
    pub const USD: Currency = Currency(*b"usd");

    /// Three ASCII letters, either case.
    pub fn parse(code: &str) -> Result<Self, InvalidCurrency> {
        match code.as_bytes() {
            &[a, b, c] if [a, b, c].iter().all(u8::is_ascii_alphabetic) => Ok(Currency([
                a.to_ascii_lowercase(),
                b.to_ascii_lowercase(),
                c.to_ascii_lowercase(),
            ])),
            _ => Err(InvalidCurrency(code.to_owned())),
        }
    }

    /// `usd`.
    pub fn code(&self) -> &str {
        // Only `parse` and the constants make one: always ASCII letters.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }

    /// How many decimal digits the minor unit Stripe counts in has: 2 for
    /// most, 0 for JPY and the other zero-decimal currencies, 3 for KWD and
    /// its like. Stripe's, not ISO 4217's: Stripe keeps ISK (ISO: 0) two-decimal
    /// in its API ("100" is 1 króna), as it does HUF and TWD, whose charges
    /// are whole units but whose amounts still count hundredths.
    pub fn minor_digits(&self) -> u32 {
        let code = self.code();
        if ZERO_DECIMAL.contains(&code) {
            0
        } else if THREE_DECIMAL.contains(&code) {
            3
        } else {
            2
        }
    }

    fn symbol(&self) -> Option<&'static str> {
        SYMBOLS
            .iter()
            .find(|(code, _)| *code == self.code())
            .map(|(_, symbol)| *symbol)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({})", self.code())
    }
}

impl std::str::FromStr for Currency {
    type Err = InvalidCurrency;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = String::deserialize(d)?;
        Self::parse(&code).map_err(serde::de::Error::custom)
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Currency {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^[a-z]{3}$"))
            .description(Some(
                "ISO 4217 code, lower-case as Stripe writes it. The amount beside it counts \
                 the minor unit Stripe uses for it: hundredths for most, whole units for \
                 zero-decimal currencies such as jpy, thousandths for bhd, jod, kwd, omr, tnd.",
            ))
            .examples(["usd"])
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Currency {}

/// An amount in the currency's minor unit (cents). Never a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Money {
    /// Minor units (cents for USD, yen for JPY).
    pub amount: i64,
    pub currency: Currency,
}

impl Money {
    pub const fn usd_cents(amount: i64) -> Self {
        Self {
            amount,
            currency: Currency::USD,
        }
    }

    /// "99.00" for 9900 cents, "9900" for ¥9,900, "1.500" for 1500 fils:
    /// the minor units as a decimal string, for display. Never parsed back;
    /// amounts stay integers.
    pub fn decimal(&self) -> String {
        let (sign, whole, fraction) = self.parts();
        format!("{sign}{whole}{fraction}")
    }

    /// For people: "$99.00", "€1,234.50", "¥9,900", "-£5.00", and for a
    /// currency without a symbol of its own its upper-case code, "CHF 99.00",
    /// "KWD 1.500".
    pub fn display(&self) -> String {
        let (sign, whole, fraction) = self.parts();
        let grouped = group_thousands(&whole);
        match self.currency.symbol() {
            Some(symbol) => format!("{sign}{symbol}{grouped}{fraction}"),
            None => format!(
                "{sign}{} {grouped}{fraction}",
                self.currency.code().to_ascii_uppercase()
            ),
        }
    }

    /// The sign, the whole units' digits and the fraction with its point
    /// (empty for a zero-decimal currency).
    fn parts(&self) -> (&'static str, String, String) {
        let sign = if self.amount < 0 { "-" } else { "" };
        let abs = self.amount.unsigned_abs();
        let digits = self.currency.minor_digits();
        let unit = 10u64.pow(digits);
        let fraction = if digits == 0 {
            String::new()
        } else {
            format!(".{:0width$}", abs % unit, width = digits as usize)
        };
        (sign, (abs / unit).to_string(), fraction)
    }
}

fn group_thousands(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn money(amount: i64, currency: &str) -> Money {
        Money {
            amount,
            currency: Currency::parse(currency).unwrap(),
        }
    }

    #[test]
    fn decimals_are_exact_in_the_currencys_minor_unit() {
        assert_eq!(Money::usd_cents(9_900).decimal(), "99.00");
        assert_eq!(Money::usd_cents(99_000).decimal(), "990.00");
        assert_eq!(Money::usd_cents(5).decimal(), "0.05");
        assert_eq!(Money::usd_cents(-1_234).decimal(), "-12.34");
        assert_eq!(money(9_900, "jpy").decimal(), "9900");
        assert_eq!(money(1_500, "kwd").decimal(), "1.500");
        assert_eq!(money(5, "bhd").decimal(), "0.005");
    }

    #[test]
    fn amounts_show_a_symbol_or_the_code() {
        assert_eq!(Money::usd_cents(9_900).display(), "$99.00");
        assert_eq!(Money::usd_cents(118_800).display(), "$1,188.00");
        assert_eq!(Money::usd_cents(0).display(), "$0.00");
        assert_eq!(money(9_900, "eur").display(), "€99.00");
        assert_eq!(money(123_456_789, "gbp").display(), "£1,234,567.89");
        assert_eq!(money(9_900, "jpy").display(), "¥9,900");
        assert_eq!(money(100, "jpy").display(), "¥100");
        assert_eq!(money(1_500, "kwd").display(), "KWD 1.500");
        assert_eq!(money(1_234_567, "omr").display(), "OMR 1,234.567");
        assert_eq!(money(9_900, "chf").display(), "CHF 99.00");
        assert_eq!(money(50_000, "krw").display(), "₩50,000");
    }

    #[test]
    fn negative_amounts_put_the_sign_first() {
        assert_eq!(Money::usd_cents(-1_234).display(), "-$12.34");
        assert_eq!(money(-500, "jpy").display(), "-¥500");
        assert_eq!(money(-1_000_000, "cad").display(), "-CAD 10,000.00");
        assert_eq!(
            Money::usd_cents(i64::MIN).display(),
            "-$92,233,720,368,547,758.08"
        );
    }

    #[test]
    fn minor_units_follow_stripe_not_iso() {
        for zero in ["jpy", "krw", "vnd", "clp", "ugx", "xof"] {
            assert_eq!(Currency::parse(zero).unwrap().minor_digits(), 0, "{zero}");
        }
        for three in ["bhd", "jod", "kwd", "omr", "tnd"] {
            assert_eq!(Currency::parse(three).unwrap().minor_digits(), 3, "{three}");
        }
        // ISO 4217 gives ISK no minor unit; Stripe's amounts count hundredths.
        for two in ["usd", "eur", "isk", "huf", "twd"] {
            assert_eq!(Currency::parse(two).unwrap().minor_digits(), 2, "{two}");
        }
        assert_eq!(money(50_000, "isk").display(), "ISK 500.00");
    }

    #[test]
    fn codes_are_three_letters_held_lower_case() {
        assert_eq!(
            Currency::parse("EUR").unwrap(),
            Currency::parse("eur").unwrap()
        );
        assert_eq!(Currency::parse("Usd").unwrap(), Currency::USD);
        for bad in ["", "us", "usdd", "u$d", "12a", "éur"] {
            assert!(Currency::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn json_is_the_lower_case_code_as_stored_before() {
        let m: Money = serde_json::from_str(r#"{"amount":9900,"currency":"usd"}"#).unwrap();
        assert_eq!(m, Money::usd_cents(9_900));
        let m: Money = serde_json::from_str(r#"{"amount":9900,"currency":"JPY"}"#).unwrap();
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"amount":9900,"currency":"jpy"}"#
        );
        assert!(serde_json::from_str::<Money>(r#"{"amount":1,"currency":"dollars"}"#).is_err());
    }
}
