//! What a model call costs: usage in four disjoint counts × prices, rounded up once; and the
//! worst case reserved before the call is sent.

use std::time::Duration;

use crate::store::{MicroUsd, Prices, TokenCounts};

/// Tokens in the unit prices are quoted for.
const TOKENS_PER_PRICE_UNIT: u128 = 1_000_000;

impl Prices {
    /// The highest price an input token can cost: cache writes usually cost more than plain
    /// input, so the worst case of an input token is the largest of the three.
    pub fn highest_input(&self) -> MicroUsd {
        self.input.max(self.cache_write).max(self.cache_read)
    }

    /// The cost of `usage`: ceil(Σ count × price / 10⁶), in one rounding, so that the sum of
    /// many calls is never below what they cost.
    pub fn cost(&self, usage: &TokenCounts) -> MicroUsd {
        let sum = u128::from(usage.input) * u128::from(self.input.get())
            + u128::from(usage.cache_read) * u128::from(self.cache_read.get())
            + u128::from(usage.cache_write) * u128::from(self.cache_write.get())
            + u128::from(usage.output) * u128::from(self.output.get());
        saturate(sum.div_ceil(TOKENS_PER_PRICE_UNIT))
    }

    /// The most a call can cost: every input token at the highest input-side price plus
    /// `max_output_tokens` at the output price.
    pub fn worst_case(&self, max_input_tokens: u64, max_output_tokens: u64) -> MicroUsd {
        let sum = u128::from(max_input_tokens) * u128::from(self.highest_input().get())
            + u128::from(max_output_tokens) * u128::from(self.output.get());
        saturate(sum.div_ceil(TOKENS_PER_PRICE_UNIT))
    }
}

fn saturate(value: u128) -> MicroUsd {
    MicroUsd(u64::try_from(value).unwrap_or(u64::MAX))
}

/// A local model's price: the power it draws and what electricity costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Electricity {
    /// Watts drawn while the model answers.
    pub watts: u64,
    /// µ$ per kilowatt-hour.
    pub micro_usd_per_kwh: MicroUsd,
}

/// Milliwatt-seconds... one kWh is 3.6 × 10⁶ joules = 3.6 × 10⁹ watt-milliseconds.
const WATT_MILLIS_PER_KWH: u128 = 3_600_000_000;

impl Electricity {
    /// What running for `wall` costs, rounded up: watts × seconds × price per kWh.
    pub fn cost(&self, wall: Duration) -> MicroUsd {
        let watt_millis = u128::from(self.watts) * wall.as_millis();
        saturate(
            (watt_millis * u128::from(self.micro_usd_per_kwh.get())).div_ceil(WATT_MILLIS_PER_KWH),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Claude-Sonnet-like prices: $3 in, $15 out, $0.30 cache read, $3.75 cache write per Mtok.
    const SONNET: Prices = Prices {
        input: MicroUsd(3_000_000),
        output: MicroUsd(15_000_000),
        cache_read: MicroUsd(300_000),
        cache_write: MicroUsd(3_750_000),
    };

    #[test]
    fn cost_is_the_rounded_up_sum() {
        let usage = TokenCounts {
            input: 1_000,
            cache_read: 10_000,
            cache_write: 2_000,
            output: 500,
        };
        // By hand, in µ$·tokens: 1000×3e6 + 10000×3e5 + 2000×3.75e6 + 500×15e6
        //   = 3e9 + 3e9 + 7.5e9 + 7.5e9 = 21e9 → 21e9 / 1e6 = 21 000 µ$ ($0.021).
        assert_eq!(SONNET.cost(&usage), MicroUsd(21_000));
        // One output token: 15e6 / 1e6 = 15 µ$; one cache-read token: 0.3 µ$ → rounds up to 1.
        assert_eq!(
            SONNET.cost(&TokenCounts {
                output: 1,
                ..TokenCounts::default()
            }),
            MicroUsd(15)
        );
        assert_eq!(
            SONNET.cost(&TokenCounts {
                cache_read: 1,
                ..TokenCounts::default()
            }),
            MicroUsd(1)
        );
        assert_eq!(SONNET.cost(&TokenCounts::default()), MicroUsd::ZERO);
    }

    #[test]
    fn worst_case_takes_the_dearest_input_price() {
        // 10 000 input tokens at the cache-write price (3.75 $/Mtok) + 1 000 output at 15 $/Mtok
        //   = 37.5e9 + 15e9 = 52.5e9 µ$·tok / 1e6 = 52 500 µ$.
        assert_eq!(SONNET.worst_case(10_000, 1_000), MicroUsd(52_500));
        // No usage mix of those limits can cost more.
        for (input, read, write, output) in [
            (10_000, 0, 0, 1_000),
            (0, 0, 10_000, 1_000),
            (3_000, 3_000, 4_000, 1_000),
        ] {
            let usage = TokenCounts {
                input,
                cache_read: read,
                cache_write: write,
                output,
            };
            assert!(SONNET.cost(&usage) <= SONNET.worst_case(10_000, 1_000));
        }
    }

    #[test]
    fn huge_counts_saturate_instead_of_wrapping() {
        let usage = TokenCounts {
            input: u64::MAX,
            output: u64::MAX,
            ..TokenCounts::default()
        };
        assert_eq!(SONNET.cost(&usage), MicroUsd::MAX);
    }

    #[test]
    fn electricity_is_watts_times_time_times_price() {
        // 350 W for 60 s at $0.30/kWh: 350 × 60 / 3.6e6 kWh = 0.0058333 kWh × $0.30
        //   = $0.00175 = 1 750 µ$.
        let gpu = Electricity {
            watts: 350,
            micro_usd_per_kwh: MicroUsd(300_000),
        };
        assert_eq!(gpu.cost(Duration::from_secs(60)), MicroUsd(1_750));
        // 1 ms at 350 W: 0.35 W·s → 0.35/3.6e6 × 0.3 $ = 2.9e-8 $ → rounds up to 1 µ$.
        assert_eq!(gpu.cost(Duration::from_millis(1)), MicroUsd(1));
        assert_eq!(gpu.cost(Duration::ZERO), MicroUsd::ZERO);
    }
}
