//! Money as integer micro-dollars, parsed from decimal text without floats.
//!
//! One dollar is 1 000 000 µ$. Prices are µ$ per million tokens. Everything gaffer adds, caps or
//! compares is a `u64` of micro-dollars; text (gaffer.toml, price files) is converted exactly.

use crate::config::{Dollars, Invalid};
pub use crate::store::MicroUsd;
use crate::store::units::MICROS_PER_DOLLAR;

/// A decimal text that is not an amount gaffer can hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error(
        "`{text}` is not a decimal number (expected digits, an optional `.` and fraction, an optional exponent)"
    )]
    NotDecimal { text: String },
    #[error("`{text}` is negative; amounts of money cannot be")]
    Negative { text: String },
    #[error("`{text}` is more precise than {unit}")]
    TooPrecise { text: String, unit: &'static str },
    #[error("`{text}` is too large")]
    TooLarge { text: String },
}

/// How to treat digits below the unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rounding {
    /// Refuse them (budgets: a cap is what the user wrote, to the micro-dollar).
    Exact,
    /// Round up (prices from outside: never count a call as cheaper than it is).
    Up,
}

/// Parse a non-negative decimal (`2`, `0.5`, `3.75e-6`, `+1E2`) and return it × 10^`scale`
/// as an integer. `unit` names the unit in errors.
pub fn parse_scaled(
    text: &str,
    scale: u32,
    rounding: Rounding,
    unit: &'static str,
) -> Result<u64, AmountError> {
    let original = text;
    let not_decimal = || AmountError::NotDecimal {
        text: original.to_string(),
    };
    let text = text.trim();
    let text = match text.strip_prefix('-') {
        Some(rest) if rest.chars().any(|c| c.is_ascii_digit() && c != '0') => {
            return Err(AmountError::Negative {
                text: original.to_string(),
            });
        }
        Some(rest) => rest,
        None => text.strip_prefix('+').unwrap_or(text),
    };
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(i) => {
            let exp: i64 = text[i + 1..].parse().map_err(|_| not_decimal())?;
            (&text[..i], exp)
        }
        None => (text, 0),
    };
    let (whole, fraction) = match mantissa.split_once('.') {
        Some((w, f)) => (w, f),
        None => (mantissa, ""),
    };
    if (whole.is_empty() && fraction.is_empty())
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(not_decimal());
    }
    // value = digits × 10^(exponent + scale - fraction_len)
    let digits: String = format!("{whole}{fraction}");
    let digits = digits.trim_start_matches('0');
    let shift = exponent + i64::from(scale) - fraction.len() as i64;
    let too_large = || AmountError::TooLarge {
        text: original.to_string(),
    };
    if digits.is_empty() {
        return Ok(0);
    }
    if shift >= 0 {
        if digits.len() as i64 + shift > 20 {
            return Err(too_large());
        }
        let mut value: u128 = digits.parse().map_err(|_| too_large())?;
        for _ in 0..shift {
            value = value.checked_mul(10).ok_or_else(too_large)?;
        }
        u64::try_from(value).map_err(|_| too_large())
    } else {
        let cut = usize::try_from(-shift).unwrap_or(usize::MAX);
        let (kept, dropped) = if cut >= digits.len() {
            ("", digits)
        } else {
            digits.split_at(digits.len() - cut)
        };
        let has_remainder = dropped.bytes().any(|b| b != b'0');
        if has_remainder && rounding == Rounding::Exact {
            return Err(AmountError::TooPrecise {
                text: original.to_string(),
                unit,
            });
        }
        if kept.len() > 20 {
            return Err(too_large());
        }
        let kept: u128 = if kept.is_empty() {
            0
        } else {
            kept.parse().map_err(|_| too_large())?
        };
        let value = kept + u128::from(has_remainder);
        u64::try_from(value).map_err(|_| too_large())
    }
}

/// Dollars written in configuration (`per_task = 2.00`) to micro-dollars, exactly.
pub fn parse_dollars(text: &str) -> Result<MicroUsd, AmountError> {
    parse_scaled(text, 6, Rounding::Exact, "a micro-dollar").map(MicroUsd)
}

/// Dollars per million tokens (`3.00`) to µ$ per million tokens, exactly.
pub fn parse_price_per_million(text: &str) -> Result<MicroUsd, AmountError> {
    parse_scaled(
        text,
        6,
        Rounding::Exact,
        "a micro-dollar per million tokens",
    )
    .map(MicroUsd)
}

/// Dollars per token, as LiteLLM's price files write them (`3e-06`), to µ$ per million tokens,
/// rounded up below that unit.
pub fn parse_price_per_token(text: &str) -> Result<MicroUsd, AmountError> {
    parse_scaled(text, 12, Rounding::Up, "a micro-dollar per million tokens").map(MicroUsd)
}

/// `$1.234567`, trimmed to at least two decimals: how amounts are shown to people.
pub fn format_dollars(amount: MicroUsd) -> String {
    let micros = amount.get();
    let mut digits = format!("{:06}", micros % MICROS_PER_DOLLAR);
    while digits.len() > 2 && digits.ends_with('0') {
        digits.pop();
    }
    format!("${}.{digits}", micros / MICROS_PER_DOLLAR)
}

/// `$1.2346`: dollars rounded half up to `decimals` places (at most six), every amount of a
/// column with the same number of places so that they line up and compare at a glance.
pub fn format_dollars_fixed(amount: MicroUsd, decimals: u32) -> String {
    let decimals = decimals.min(6);
    let unit = 10u64.pow(6 - decimals);
    let rounded = (amount.get() / unit).saturating_add(u64::from(
        amount.get() % unit >= unit.div_ceil(2) && unit > 1,
    ));
    let scale = 10u64.pow(decimals);
    if decimals == 0 {
        return format!("${rounded}");
    }
    format!(
        "${}.{:0width$}",
        rounded / scale,
        rounded % scale,
        width = decimals as usize
    )
}

/// `1.234567`: dollars with all six decimals, for machine-readable output (CSV).
pub fn decimal_dollars(amount: MicroUsd) -> String {
    amount.decimal()
}

/// A dollar amount of `gaffer.toml` (the key names it in the refusal), exactly, in µ$.
pub fn dollars_at(key: &str, value: &Dollars) -> Result<MicroUsd, Invalid> {
    parse_dollars(&value.text()).map_err(|e| Invalid::new(key, e.to_string()))
}

/// A price of `gaffer.toml` in dollars per million tokens, exactly, in µ$ per million tokens.
pub fn price_at(key: &str, value: &Dollars) -> Result<MicroUsd, Invalid> {
    parse_price_per_million(&value.text()).map_err(|e| Invalid::new(key, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_parse_exactly() {
        assert_eq!(parse_dollars("2.00"), Ok(MicroUsd(2_000_000)));
        assert_eq!(parse_dollars("0.000001"), Ok(MicroUsd(1)));
        assert_eq!(parse_dollars("20"), Ok(MicroUsd(20_000_000)));
        assert_eq!(parse_dollars(" 1e2 "), Ok(MicroUsd(100_000_000)));
        assert_eq!(parse_dollars("0"), Ok(MicroUsd(0)));
        assert_eq!(parse_dollars(".5"), Ok(MicroUsd(500_000)));
        assert_eq!(parse_dollars("-0"), Ok(MicroUsd(0)));
    }

    #[test]
    fn dollars_refuse_what_they_cannot_hold() {
        assert!(matches!(
            parse_dollars("0.0000001"),
            Err(AmountError::TooPrecise { .. })
        ));
        assert!(matches!(
            parse_dollars("-1"),
            Err(AmountError::Negative { .. })
        ));
        assert!(matches!(
            parse_dollars("abc"),
            Err(AmountError::NotDecimal { .. })
        ));
        assert!(matches!(
            parse_dollars("1.2.3"),
            Err(AmountError::NotDecimal { .. })
        ));
        assert!(matches!(
            parse_dollars(""),
            Err(AmountError::NotDecimal { .. })
        ));
        assert!(matches!(
            parse_dollars("1e30"),
            Err(AmountError::TooLarge { .. })
        ));
        let text = parse_dollars("0.0000001").unwrap_err().to_string();
        assert_eq!(text, "`0.0000001` is more precise than a micro-dollar");
    }

    #[test]
    fn per_token_prices_become_micro_dollars_per_million() {
        // $3 per million tokens = 3e-06 $/token = 3 000 000 µ$/Mtok.
        assert_eq!(parse_price_per_token("3e-06"), Ok(MicroUsd(3_000_000)));
        assert_eq!(parse_price_per_token("1.25e-07"), Ok(MicroUsd(125_000)));
        assert_eq!(parse_price_per_token("0.000015"), Ok(MicroUsd(15_000_000)));
        // 1e-13 $/token is 0.1 µ$/Mtok: rounded up, never down to free.
        assert_eq!(parse_price_per_token("1e-13"), Ok(MicroUsd(1)));
        assert_eq!(parse_price_per_token("0"), Ok(MicroUsd(0)));
    }

    #[test]
    fn dollars_format_for_people() {
        assert_eq!(format_dollars(MicroUsd(2_000_000)), "$2.00");
        assert_eq!(format_dollars(MicroUsd(1_650_000)), "$1.65");
        assert_eq!(format_dollars(MicroUsd(150)), "$0.00015");
        assert_eq!(format_dollars(MicroUsd(0)), "$0.00");
    }

    #[test]
    fn column_dollars_round_half_up_to_one_width() {
        // $140.19155 → $140.1916 (the fifth decimal 5 rounds up), $0.1758, $0.022 → $0.0220.
        assert_eq!(format_dollars_fixed(MicroUsd(140_191_550), 4), "$140.1916");
        assert_eq!(format_dollars_fixed(MicroUsd(175_800), 4), "$0.1758");
        assert_eq!(format_dollars_fixed(MicroUsd(22_000), 4), "$0.0220");
        assert_eq!(format_dollars_fixed(MicroUsd(49), 4), "$0.0000");
        assert_eq!(format_dollars_fixed(MicroUsd(50), 4), "$0.0001");
        assert_eq!(format_dollars_fixed(MicroUsd(1_994_999), 2), "$1.99");
        assert_eq!(format_dollars_fixed(MicroUsd(1_995_000), 2), "$2.00");
        assert_eq!(format_dollars_fixed(MicroUsd(1_234_567), 6), "$1.234567");
        assert_eq!(format_dollars_fixed(MicroUsd(2_500_000), 0), "$3");
    }
}
