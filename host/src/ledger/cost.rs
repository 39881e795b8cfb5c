//! What a model call costs: usage in four disjoint counts × prices, rounded up once; and the
//! worst case reserved before the call is sent.

use std::time::Duration;

use super::money::MicroUsd;

/// Tokens of one call in four disjoint counts. The gateway normalises each provider's usage
/// into this shape (OpenAI's `prompt_tokens` contains its cached tokens; Anthropic's
/// `input_tokens` excludes the cache), so the ledger never sees a wire format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    /// Input tokens neither read from nor written to a cache.
    pub input: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read: u64,
    /// Input tokens written to the prompt cache.
    pub cache_write: u64,
    /// Output tokens, reasoning included.
    pub output: u64,
}

impl Usage {
    /// All input tokens, cached or not.
    pub fn total_input(&self) -> u64 {
        self.input
            .saturating_add(self.cache_read)
            .saturating_add(self.cache_write)
    }
}

/// Prices of a model in µ$ per million tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Prices {
    pub input: MicroUsd,
    pub output: MicroUsd,
    pub cache_read: MicroUsd,
    pub cache_write: MicroUsd,
}

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
    pub fn cost(&self, usage: &Usage) -> MicroUsd {
        let sum = u128::from(usage.input) * u128::from(self.input)
            + u128::from(usage.cache_read) * u128::from(self.cache_read)
            + u128::from(usage.cache_write) * u128::from(self.cache_write)
            + u128::from(usage.output) * u128::from(self.output);
        saturate(sum.div_ceil(TOKENS_PER_PRICE_UNIT))
    }

    /// The most a call can cost: every input token at the highest input-side price plus
    /// `max_output_tokens` at the output price.
    pub fn worst_case(&self, max_input_tokens: u64, max_output_tokens: u64) -> MicroUsd {
        let sum = u128::from(max_input_tokens) * u128::from(self.highest_input())
            + u128::from(max_output_tokens) * u128::from(self.output);
        saturate(sum.div_ceil(TOKENS_PER_PRICE_UNIT))
    }
}

fn saturate(value: u128) -> MicroUsd {
    u64::try_from(value).unwrap_or(u64::MAX)
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
        saturate((watt_millis * u128::from(self.micro_usd_per_kwh)).div_ceil(WATT_MILLIS_PER_KWH))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Claude-Sonnet-like prices: $3 in, $15 out, $0.30 cache read, $3.75 cache write per Mtok.
    const SONNET: Prices = Prices {
        input: 3_000_000,
        output: 15_000_000,
        cache_read: 300_000,
        cache_write: 3_750_000,
    };

    #[test]
    fn cost_is_the_rounded_up_sum() {
        let usage = Usage {
            input: 1_000,
            cache_read: 10_000,
            cache_write: 2_000,
            output: 500,
        };
        // By hand, in µ$·tokens: 1000×3e6 + 10000×3e5 + 2000×3.75e6 + 500×15e6
        //   = 3e9 + 3e9 + 7.5e9 + 7.5e9 = 21e9 → 21e9 / 1e6 = 21 000 µ$ ($0.021).
        assert_eq!(SONNET.cost(&usage), 21_000);
        // One output token: 15e6 / 1e6 = 15 µ$; one cache-read token: 0.3 µ$ → rounds up to 1.
        assert_eq!(
            SONNET.cost(&Usage {
                output: 1,
                ..Usage::default()
            }),
            15
        );
        assert_eq!(
            SONNET.cost(&Usage {
                cache_read: 1,
                ..Usage::default()
            }),
            1
        );
        assert_eq!(SONNET.cost(&Usage::default()), 0);
    }

    #[test]
    fn worst_case_takes_the_dearest_input_price() {
        // 10 000 input tokens at the cache-write price (3.75 $/Mtok) + 1 000 output at 15 $/Mtok
        //   = 37.5e9 + 15e9 = 52.5e9 µ$·tok / 1e6 = 52 500 µ$.
        assert_eq!(SONNET.worst_case(10_000, 1_000), 52_500);
        // No usage mix of those limits can cost more.
        for (input, read, write, output) in [
            (10_000, 0, 0, 1_000),
            (0, 0, 10_000, 1_000),
            (3_000, 3_000, 4_000, 1_000),
        ] {
            let usage = Usage {
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
        let usage = Usage {
            input: u64::MAX,
            output: u64::MAX,
            ..Usage::default()
        };
        assert_eq!(SONNET.cost(&usage), u64::MAX);
    }

    #[test]
    fn electricity_is_watts_times_time_times_price() {
        // 350 W for 60 s at $0.30/kWh: 350 × 60 / 3.6e6 kWh = 0.0058333 kWh × $0.30
        //   = $0.00175 = 1 750 µ$.
        let gpu = Electricity {
            watts: 350,
            micro_usd_per_kwh: 300_000,
        };
        assert_eq!(gpu.cost(Duration::from_secs(60)), 1_750);
        // 1 ms at 350 W: 0.35 W·s → 0.35/3.6e6 × 0.3 $ = 2.9e-8 $ → rounds up to 1 µ$.
        assert_eq!(gpu.cost(Duration::from_millis(1)), 1);
        assert_eq!(gpu.cost(Duration::ZERO), 0);
    }
}
