//! GTIN-13 (EAN-13) product codes with a validated mod-10 check digit.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::error::Error;

/// A GTIN-13 whose check digit has been verified.
///
/// The check digit is the last of the 13 digits: weight the first 12 digits
/// alternately 1 and 3 (from the left), sum them, and the check digit is
/// `(10 - sum % 10) % 10`.
///
/// ```
/// use fieldsync_core::Gtin13;
/// assert!(Gtin13::parse("4006381333931").is_ok());
/// assert!(Gtin13::parse("4006381333932").is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(try_from = "String", into = "String")]
pub struct Gtin13(String);

impl Gtin13 {
    /// Parses and validates a GTIN-13 string (exactly 13 ASCII digits, valid check digit).
    pub fn parse(code: &str) -> Result<Self, Error> {
        let code = code.trim();
        if code.len() != 13 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::InvalidGtin {
                gtin: code.chars().take(20).collect(),
                reason: "a GTIN-13 has exactly 13 digits".into(),
            });
        }
        let digits: Vec<u32> = code.bytes().map(|b| u32::from(b - b'0')).collect();
        let expected = check_digit(&digits[..12]);
        if digits[12] != expected {
            return Err(Error::InvalidGtin {
                gtin: code.to_string(),
                reason: format!("check digit is {} but should be {expected}", digits[12]),
            });
        }
        Ok(Self(code.to_string()))
    }

    /// Builds a valid GTIN-13 from its first 12 digits by appending the check digit.
    pub fn from_prefix(first_12: u64) -> Self {
        let s = format!("{:012}", first_12 % 1_000_000_000_000);
        let digits: Vec<u32> = s.bytes().map(|b| u32::from(b - b'0')).collect();
        Self(format!("{s}{}", check_digit(&digits)))
    }

    /// The 13 digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn check_digit(first_12: &[u32]) -> u32 {
    let sum: u32 = first_12
        .iter()
        .enumerate()
        .map(|(i, d)| if i % 2 == 0 { *d } else { d * 3 })
        .sum();
    (10 - sum % 10) % 10
}

impl TryFrom<String> for Gtin13 {
    type Error = Error;
    fn try_from(value: String) -> Result<Self, Error> {
        Self::parse(&value)
    }
}

impl From<Gtin13> for String {
    fn from(g: Gtin13) -> Self {
        g.0
    }
}

impl fmt::Display for Gtin13 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_known_valid_codes() {
        for code in [
            "4006381333931",
            "5901234123457",
            "0000000000000",
            "9780306406157",
        ] {
            assert!(Gtin13::parse(code).is_ok(), "{code}");
        }
    }

    #[test]
    fn rejects_wrong_check_digit_length_and_letters() {
        let err = Gtin13::parse("4006381333932").unwrap_err();
        assert!(
            err.to_string().contains("check digit is 2 but should be 1"),
            "{err}"
        );
        assert!(Gtin13::parse("400638133393").is_err());
        assert!(Gtin13::parse("40063813339311").is_err());
        assert!(Gtin13::parse("40063813339a1").is_err());
    }

    #[test]
    fn from_prefix_always_validates() {
        for p in [0u64, 1, 400638133393, 999_999_999_999, 123_456_789_012] {
            let g = Gtin13::from_prefix(p);
            assert_eq!(Gtin13::parse(g.as_str()).unwrap(), g);
        }
    }

    #[test]
    fn serde_validates() {
        assert!(serde_json::from_str::<Gtin13>("\"4006381333931\"").is_ok());
        assert!(serde_json::from_str::<Gtin13>("\"4006381333930\"").is_err());
    }
}
