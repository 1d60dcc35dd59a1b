//! Amounts: decimal strings checked against the currency's ISO 4217 minor unit, turned
//! into integer minor units for the policy, and shown to people with thousands separators.

use std::fmt::{self, Write as _};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// An amount as the agent sent it: a decimal string and an ISO 4217 code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Amount {
    /// `^[0-9]+(\.[0-9]+)?$`, at most the currency's minor digits.
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)?$")]
    pub value: String,
    /// ISO 4217 alphabetic code.
    #[schema(pattern = "^[A-Z]{3}$")]
    pub currency: String,
}

/// ISO 4217 active codes by number of minor digits (list of 2024). Codes not listed
/// under 0, 3 or 4 digits have 2.
const ZERO: &[&str] = &[
    "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF",
    "XPF",
];
const THREE: &[&str] = &["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"];
const FOUR: &[&str] = &["CLF", "UYW"];
const TWO: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BGN", "BMD", "BND",
    "BOB", "BOV", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF", "CHE", "CHF", "CHW", "CNY", "COP", "COU",
    "CRC", "CUP", "CVE", "CZK", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS",
    "GIP", "GMD", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IRR", "JMD", "KES", "KGS", "KHR",
    "KPW", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU",
    "MUR", "MVR", "MWK", "MXN", "MXV", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "PAB", "PEN", "PGK",
    "PHP", "PKR", "PLN", "QAR", "RON", "RSD", "RUB", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SOS",
    "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "USD",
    "USN", "UYU", "UZS", "VED", "VES", "WST", "XCD", "YER", "ZAR", "ZMW", "ZWG",
];

/// Minor digits of an ISO 4217 currency, `None` when the code is unknown.
///
/// ```
/// use agentsigna_core::money::minor_digits;
/// assert_eq!(minor_digits("USD"), Some(2));
/// assert_eq!(minor_digits("JPY"), Some(0));
/// assert_eq!(minor_digits("BHD"), Some(3));
/// assert_eq!(minor_digits("XYZ"), None);
/// ```
pub fn minor_digits(currency: &str) -> Option<u32> {
    if ZERO.contains(&currency) {
        Some(0)
    } else if THREE.contains(&currency) {
        Some(3)
    } else if FOUR.contains(&currency) {
        Some(4)
    } else if TWO.contains(&currency) {
        Some(2)
    } else {
        None
    }
}

impl Amount {
    /// Validates the amount and returns it in integer minor units.
    ///
    /// ```
    /// use agentsigna_core::money::Amount;
    /// let a = Amount { value: "12500.5".into(), currency: "USD".into() };
    /// assert_eq!(a.minor_units().unwrap(), 1_250_050);
    /// let bad = Amount { value: "1.234".into(), currency: "USD".into() };
    /// assert!(bad.minor_units().is_err());
    /// ```
    pub fn minor_units(&self) -> Result<i64> {
        let digits = minor_digits(&self.currency).ok_or_else(|| {
            Error::invalid("amount.currency", format!("unknown ISO 4217 currency {:?}", self.currency))
        })?;
        let bad = |why: &str| Error::invalid("amount.value", format!("{why} (got {:?})", self.value));
        let (int, frac) = match self.value.split_once('.') {
            Some((i, f)) => (i, f),
            None => (self.value.as_str(), ""),
        };
        if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("amount.value must be a non-negative decimal string like \"12500.00\""));
        }
        if self.value.contains('.') && (frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit())) {
            return Err(bad("amount.value must be a non-negative decimal string like \"12500.00\""));
        }
        let frac_len = u32::try_from(frac.len()).unwrap_or(u32::MAX);
        if frac_len > digits {
            return Err(bad(&format!("{} allows at most {digits} decimal places", self.currency)));
        }
        if int.len() > 18 {
            return Err(bad("amount.value is too large"));
        }
        let mut minor: i64 = 0;
        for b in int.bytes().chain(frac.bytes()) {
            minor = minor
                .checked_mul(10)
                .and_then(|m| m.checked_add(i64::from(b - b'0')))
                .ok_or_else(|| bad("amount.value is too large"))?;
        }
        for _ in frac_len..digits {
            minor = minor.checked_mul(10).ok_or_else(|| bad("amount.value is too large"))?;
        }
        // Ledger entries hold integers other JSON implementations represent exactly.
        if minor.unsigned_abs() > agentsigna_verify::ledger::MAX_SAFE_INTEGER {
            return Err(bad("amount.value is too large"));
        }
        Ok(minor)
    }
}

/// For people: the value with its integer digits grouped by thousands, then the currency
/// (omitted when empty).
///
/// ```
/// use agentsigna_core::money::Amount;
/// let a = Amount { value: "40000.00".into(), currency: "USD".into() };
/// assert_eq!(a.to_string(), "40,000.00 USD");
/// ```
impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", Grouped(&self.value))?;
        if !self.currency.is_empty() {
            write!(f, " {}", self.currency)?;
        }
        Ok(())
    }
}

/// A decimal number for people, its integer digits grouped by thousands with `,`; what
/// follows the first `.` is kept as it is. The one thousands-separator formatter: amounts
/// ([`Amount`]'s `Display`) and counts (`Grouped(&n.to_string())`) both use it.
///
/// ```
/// use agentsigna_core::money::Grouped;
/// assert_eq!(Grouped("1234567").to_string(), "1,234,567");
/// assert_eq!(Grouped("40000.005").to_string(), "40,000.005");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grouped<'a>(pub &'a str);

impl fmt::Display for Grouped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (int, frac) = match self.0.split_once('.') {
            Some((int, frac)) => (int, Some(frac)),
            None => (self.0, None),
        };
        let len = int.chars().count();
        for (i, c) in int.chars().enumerate() {
            if i > 0 && (len - i) % 3 == 0 {
                f.write_char(',')?;
            }
            f.write_char(c)?;
        }
        if let Some(frac) = frac {
            write!(f, ".{frac}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn units(v: &str, c: &str) -> Result<i64> {
        Amount { value: v.into(), currency: c.into() }.minor_units()
    }

    #[test]
    fn amounts() {
        assert_eq!(units("0", "USD").unwrap(), 0);
        assert_eq!(units("12500.00", "USD").unwrap(), 1_250_000);
        assert_eq!(units("12500", "USD").unwrap(), 1_250_000);
        assert_eq!(units("500", "JPY").unwrap(), 500);
        assert_eq!(units("1.005", "BHD").unwrap(), 1005);
        for bad in ["-1", "1.", ".5", "1e3", " 1", "1,00", "", "0x10", "1.001", "+1", "99999999999999999999"] {
            assert!(units(bad, "USD").is_err(), "{bad}");
        }
        assert!(units("1.5", "JPY").is_err());
        let err = units("1", "usd").unwrap_err();
        assert!(matches!(err, Error::Invalid { field: Some(ref f), .. } if f == "amount.currency"));
    }

    #[test]
    fn amounts_are_shown_with_thousands_separators() {
        let shown = |v: &str, c: &str| Amount { value: v.into(), currency: c.into() }.to_string();
        assert_eq!(shown("40000.00", "USD"), "40,000.00 USD");
        assert_eq!(shown("1234567", "JPY"), "1,234,567 JPY");
        assert_eq!(shown("999.5", ""), "999.5");
        assert_eq!(shown("0.01", "USD"), "0.01 USD");
        assert_eq!(shown("100000", "BHD"), "100,000 BHD");
    }

    #[test]
    fn digits_are_grouped_by_thousands() {
        for (n, shown) in [(0u64, "0"), (999, "999"), (1000, "1,000"), (12345, "12,345"), (1234567, "1,234,567")] {
            assert_eq!(Grouped(&n.to_string()).to_string(), shown);
        }
        assert_eq!(Grouped(&u64::MAX.to_string()).to_string(), "18,446,744,073,709,551,615");
        assert_eq!(Grouped("").to_string(), "");
        assert_eq!(Grouped("123456.7890").to_string(), "123,456.7890");
        assert_eq!(Grouped("1.").to_string(), "1.");
    }
}
