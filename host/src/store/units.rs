//! The units the store keeps and every room shares: money in micro-dollars, token counts, and
//! prices per million tokens. One type each, so an amount of money cannot be mistaken for a
//! count of tokens or of instructions.

use std::iter::Sum;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

/// Micro-dollars in one dollar.
pub const MICROS_PER_DOLLAR: u64 = 1_000_000;

/// An amount of money in micro-dollars (1 USD = 1 000 000 µ$). Every amount gaffer adds, caps,
/// stores or hands to a plugin is one of these; the arithmetic saturates instead of wrapping.
/// It has no `Display` on purpose: text says which form it wants (`ledger::format_dollars` for
/// people, [`MicroUsd::decimal`] for CSV, [`MicroUsd::get`] for a count of micro-dollars).
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct MicroUsd(pub u64);

impl MicroUsd {
    pub const ZERO: MicroUsd = MicroUsd(0);
    pub const MAX: MicroUsd = MicroUsd(u64::MAX);

    /// Whole dollars.
    pub const fn dollars(dollars: u64) -> MicroUsd {
        MicroUsd(dollars.saturating_mul(MICROS_PER_DOLLAR))
    }

    /// The amount as a plain count of micro-dollars.
    pub const fn get(self) -> u64 {
        self.0
    }

    pub const fn saturating_add(self, other: MicroUsd) -> MicroUsd {
        MicroUsd(self.0.saturating_add(other.0))
    }

    pub const fn saturating_sub(self, other: MicroUsd) -> MicroUsd {
        MicroUsd(self.0.saturating_sub(other.0))
    }

    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// `1.234567`: dollars with all six decimals, for machine-readable output (CSV).
    pub fn decimal(self) -> String {
        format!(
            "{}.{:06}",
            self.0 / MICROS_PER_DOLLAR,
            self.0 % MICROS_PER_DOLLAR
        )
    }

    /// Micro-dollars as a float, for averages, shares and projections (never for sums or
    /// caps).
    pub fn as_f64(self) -> f64 {
        self.0 as f64
    }

    /// A float of micro-dollars (a mean, a projection), rounded to the nearest micro-dollar;
    /// negative or not a number is zero.
    pub fn from_f64(micros: f64) -> MicroUsd {
        if micros.is_nan() || micros <= 0.0 {
            MicroUsd::ZERO
        } else {
            // `as` saturates at u64::MAX.
            MicroUsd(micros.round() as u64)
        }
    }

    /// An equal share of `n`, rounded half up to the micro-dollar; the whole amount when `n` is
    /// zero.
    pub fn per(self, n: u64) -> MicroUsd {
        let n = n.max(1);
        // Rounded half up, not truncated: $0.999999 over 2 tasks is $0.500000 a task.
        MicroUsd(self.0 / n + u64::from(self.0 % n >= n.div_ceil(2) && n > 1))
    }
}

/// Saturating, like every sum of money in gaffer.
impl std::ops::Add for MicroUsd {
    type Output = MicroUsd;
    fn add(self, other: MicroUsd) -> MicroUsd {
        self.saturating_add(other)
    }
}

/// Saturating, like every sum of money in gaffer.
impl std::ops::AddAssign for MicroUsd {
    fn add_assign(&mut self, other: MicroUsd) {
        *self = self.saturating_add(other);
    }
}

impl Sum for MicroUsd {
    fn sum<I: Iterator<Item = MicroUsd>>(iter: I) -> MicroUsd {
        iter.fold(MicroUsd::ZERO, MicroUsd::saturating_add)
    }
}

impl<'a> Sum<&'a MicroUsd> for MicroUsd {
    fn sum<I: Iterator<Item = &'a MicroUsd>>(iter: I) -> MicroUsd {
        iter.copied().sum()
    }
}

/// The plugin contract's `micro-usd` is a plain `u64`.
impl From<MicroUsd> for u64 {
    fn from(amount: MicroUsd) -> u64 {
        amount.0
    }
}

impl From<u64> for MicroUsd {
    fn from(micros: u64) -> MicroUsd {
        MicroUsd(micros)
    }
}

impl ToSql for MicroUsd {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        let value = i64::try_from(self.0).map_err(|_| {
            rusqlite::Error::ToSqlConversionFailure(
                format!("{} µ$ is beyond what the store can hold", self.0).into(),
            )
        })?;
        Ok(ToSqlOutput::from(value))
    }
}

impl FromSql for MicroUsd {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let value = value.as_i64()?;
        u64::try_from(value)
            .map(MicroUsd)
            .map_err(|_| FromSqlError::OutOfRange(value))
    }
}

/// Tokens of one call (or a sum of calls) in four disjoint counts. The gateway normalises each
/// provider's usage into this shape (OpenAI's `prompt_tokens` contains its cached tokens;
/// Anthropic's `input_tokens` excludes the cache), so nothing past it sees a wire format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenCounts {
    /// Input tokens neither read from nor written to a cache.
    pub input: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read: u64,
    /// Input tokens written to the prompt cache.
    pub cache_write: u64,
    /// Output tokens, reasoning included.
    pub output: u64,
}

impl TokenCounts {
    /// All input tokens, cached or not.
    pub fn total_input(&self) -> u64 {
        self.input
            .saturating_add(self.cache_read)
            .saturating_add(self.cache_write)
    }

    /// Add another call's counts.
    pub fn add(&mut self, other: &TokenCounts) {
        self.input = self.input.saturating_add(other.input);
        self.cache_read = self.cache_read.saturating_add(other.cache_read);
        self.cache_write = self.cache_write.saturating_add(other.cache_write);
        self.output = self.output.saturating_add(other.output);
    }
}

/// A model's prices in µ$ per million tokens (what each of the four counts costs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Prices {
    pub input: MicroUsd,
    pub output: MicroUsd,
    pub cache_read: MicroUsd,
    pub cache_write: MicroUsd,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_as_decimals_for_machines() {
        assert_eq!(MicroUsd(1_234_567).decimal(), "1.234567");
        assert_eq!(MicroUsd(5).decimal(), "0.000005");
    }

    #[test]
    fn sums_saturate_and_amounts_outside_sqlite_are_refused() {
        assert_eq!(
            [MicroUsd::MAX, MicroUsd(1)].iter().sum::<MicroUsd>(),
            MicroUsd::MAX
        );
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        assert!(
            conn.query_row("SELECT ?1", [MicroUsd(u64::MAX)], |r| r.get::<_, i64>(0))
                .is_err()
        );
        assert!(
            conn.query_row("SELECT -1", [], |r| r.get::<_, MicroUsd>(0))
                .is_err()
        );
        let back: MicroUsd = conn
            .query_row("SELECT ?1", [MicroUsd(42)], |r| r.get(0))
            .unwrap();
        assert_eq!(back, MicroUsd(42));
    }
}
