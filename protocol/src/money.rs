//! Money is an integer count of micro-units. Floats never touch an amount:
//! rounding errors in a ledger are bugs that compound.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An amount in micro-units of the marketplace token (1 token = 1,000,000).
///
/// Serialized as a bare JSON integer so no client can lose precision to a
/// float parser (all amounts stay far below 2^53).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Micros(pub i64);

impl Micros {
    pub const ZERO: Micros = Micros(0);
    pub const PER_TOKEN: i64 = 1_000_000;

    pub fn from_tokens(tokens: i64) -> Option<Micros> {
        tokens.checked_mul(Self::PER_TOKEN).map(Micros)
    }

    pub fn checked_add(self, other: Micros) -> Option<Micros> {
        self.0.checked_add(other.0).map(Micros)
    }

    pub fn checked_sub(self, other: Micros) -> Option<Micros> {
        self.0.checked_sub(other.0).map(Micros)
    }

    pub fn checked_mul(self, n: i64) -> Option<Micros> {
        self.0.checked_mul(n).map(Micros)
    }

    pub fn is_negative(self) -> bool {
        self.0 < 0
    }
}

impl fmt::Display for Micros {
    /// Renders as a decimal token amount, e.g. `12.500000`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let per = Self::PER_TOKEN as u64;
        write!(f, "{sign}{}.{:06}", abs / per, abs % per)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a token amount: {0:?} (expected e.g. 12 or 0.25, at most 6 decimals)")]
pub struct ParseMicrosError(String);

impl FromStr for Micros {
    type Err = ParseMicrosError;

    /// Parses a decimal token amount ("1.5" is 1,500,000 micros) without
    /// going through a float.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseMicrosError(s.to_owned());
        let t = s.trim();
        let (neg, t) = match t.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, t),
        };
        let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
        if whole.is_empty() && frac.is_empty() {
            return Err(err());
        }
        if !whole.chars().all(|c| c.is_ascii_digit())
            || !frac.chars().all(|c| c.is_ascii_digit())
            || frac.len() > 6
        {
            return Err(err());
        }
        let whole: i64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| err())?
        };
        let frac_micros: i64 = format!("{frac:0<6}").parse().map_err(|_| err())?;
        let v = whole
            .checked_mul(Self::PER_TOKEN)
            .and_then(|w| w.checked_add(frac_micros))
            .ok_or_else(err)?;
        Ok(Micros(if neg { -v } else { v }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        for (text, micros) in [
            ("0", 0),
            ("1", 1_000_000),
            ("0.000001", 1),
            ("12.5", 12_500_000),
            ("-3.25", -3_250_000),
            (".5", 500_000),
        ] {
            let parsed: Micros = text.parse().unwrap();
            assert_eq!(parsed, Micros(micros), "{text}");
            let shown = parsed.to_string();
            assert_eq!(shown.parse::<Micros>().unwrap(), parsed);
        }
        assert_eq!(Micros(12_500_000).to_string(), "12.500000");
        assert_eq!(Micros(-1).to_string(), "-0.000001");
    }

    #[test]
    fn parse_refuses_what_is_not_an_amount() {
        for bad in [
            "",
            "-",
            ".",
            "1.0000001",
            "1e6",
            "abc",
            "1.2.3",
            "99999999999999999999",
        ] {
            assert!(bad.parse::<Micros>().is_err(), "{bad:?} should be refused");
        }
    }
}
