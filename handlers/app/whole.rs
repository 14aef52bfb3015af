//! Whole numbers from JSON. JSON Schema counts `3.0` as an integer, so a
//! request the schema calls valid may write a quantity that way; serde's
//! `i64` refuses it. These accept any number without a fractional part
//! that fits, and refuse the rest as serde would.

use serde::de::{Deserializer, Error, Unexpected};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(untagged)]
enum Number {
    Int(i64),
    Float(f64),
}

fn whole<E: Error>(n: Number) -> Result<i64, E> {
    match n {
        Number::Int(i) => Ok(i),
        // Beyond ±2^63 an f64 no longer casts exactly: refused.
        Number::Float(f) if f.fract() == 0.0 && f.abs() < 9.223_372_036_854_775e18 => Ok(f as i64),
        Number::Float(f) => Err(E::invalid_type(Unexpected::Float(f), &"a whole number")),
    }
}

pub fn number<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    whole(Number::deserialize(d).map_err(|_| D::Error::custom("expected a whole number"))?)
}

pub fn optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Option::<Number>::deserialize(d)
        .map_err(|_| D::Error::custom("expected a whole number or null"))?
    {
        Some(n) => whole(n).map(Some),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Q {
        #[serde(deserialize_with = "super::number")]
        n: i64,
    }

    fn parse(json: &str) -> Option<i64> {
        serde_json::from_str::<Q>(json).ok().map(|q| q.n)
    }

    #[test]
    fn whole_numbers_are_taken_however_written_and_fractions_refused() {
        assert_eq!(parse(r#"{"n": 47}"#), Some(47));
        assert_eq!(parse(r#"{"n": 47.0}"#), Some(47));
        assert_eq!(parse(r#"{"n": -5632.0}"#), Some(-5632));
        assert_eq!(parse(r#"{"n": 4.7e1}"#), Some(47));
        assert_eq!(parse(r#"{"n": 47.5}"#), None);
        assert_eq!(parse(r#"{"n": 1e300}"#), None);
        assert_eq!(parse(r#"{"n": "47"}"#), None);
    }
}
