//! `cost-tier`: a router that starts cheap and escalates on rejection, within the money left.
//!
//! The tier of the next attempt is
//! `max(start_tier, highest label_tiers[label]) (+1 for a large task) + rejected attempts`,
//! clamped to the highest tier configured. At that tier (or the nearest higher one that has
//! models, else the highest below) it picks the model with the lowest estimated cost for an
//! attempt of `expected_input_tokens` in and `expected_output_tokens` out. The attempt budget
//! is `min(attempt_budget, the smallest amount left among the money caps)` (a `call` cap is
//! left out: it bounds one model call, not an attempt); if the chosen
//! model's estimate exceeds it, the router steps down to the most capable model that fits, and
//! if none fits it picks the cheapest model and says the budget is below its estimate (the host
//! then refuses the attempt cleanly).
//!
//! Config (every field optional):
//!
//! | field | default | meaning |
//! |---|---|---|
//! | `start_tier` | 1 | tier of a first attempt |
//! | `label_tiers` | `{"architecture": 3, "security": 3, "refactor": 2}` | label → minimum tier (labels compare case-insensitively) |
//! | `large_body_chars` | 4000 | a body longer than this is +1 tier |
//! | `large_paths` | 5 | more paths than this is +1 tier |
//! | `attempt_budget` | 5000000 | µ$ cap of one attempt ($5; the money left at every level bounds it too) |
//! | `expected_input_tokens` | 200000 | for the cost estimate |
//! | `expected_output_tokens` | 20000 | for the cost estimate |

use std::collections::BTreeMap;

use gaffer_sdk::host;
use gaffer_sdk::types::{
    AttemptOutcome, BudgetLevel, MicroUsd, ModelInfo, Prices, RouteDecision, RouteRequest,
};
use serde::Deserialize;

/// The router. `<CostTier as gaffer_sdk::Router>::route(request)` reads its config from the
/// host; [`route_with`] takes it as an argument.
pub struct CostTier;

impl gaffer_sdk::Router for CostTier {
    fn route(request: RouteRequest) -> Result<RouteDecision, String> {
        let config: Config = host::config()?;
        config.validate()?;
        route_with(&config, &request)
    }
}

#[cfg(feature = "export")]
gaffer_sdk::export_router!(CostTier);

// A call allocates a few KiB in a fresh instance: bump allocation, no allocator set-up per call.
#[cfg(all(feature = "export", target_arch = "wasm32"))]
#[global_allocator]
static ALLOC: gaffer_sdk::alloc::BumpAlloc = gaffer_sdk::alloc::BumpAlloc::new();

/// The router's configuration (the `config` table of `[plugins.router]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Tier of a first attempt (1 is the cheapest).
    pub start_tier: u8,
    /// Label → minimum tier.
    pub label_tiers: BTreeMap<String, u8>,
    /// A body longer than this many characters makes the task one tier harder.
    pub large_body_chars: usize,
    /// More paths than this makes the task one tier harder.
    pub large_paths: usize,
    /// Money cap of one attempt, µ$.
    pub attempt_budget: MicroUsd,
    /// Uncached input tokens assumed for one attempt.
    pub expected_input_tokens: u64,
    /// Output tokens assumed for one attempt.
    pub expected_output_tokens: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            start_tier: 1,
            label_tiers: [("architecture", 3), ("security", 3), ("refactor", 2)]
                .into_iter()
                .map(|(label, tier)| (label.to_string(), tier))
                .collect(),
            large_body_chars: 4000,
            large_paths: 5,
            attempt_budget: 5_000_000,
            expected_input_tokens: 200_000,
            expected_output_tokens: 20_000,
        }
    }
}

impl Config {
    /// Reject values that parse but make no sense.
    pub fn validate(&self) -> Result<(), String> {
        if self.start_tier == 0 {
            return Err(
                "invalid config: `start_tier` must be at least 1 (tiers start at 1)".into(),
            );
        }
        if self.attempt_budget == 0 {
            return Err("invalid config: `attempt_budget` must be more than 0 µ$".into());
        }
        Ok(())
    }

    /// Estimated cost of one attempt with these prices: ceil(Σ tokens × price / 10⁶).
    pub fn estimate(&self, prices: &Prices) -> MicroUsd {
        let total = u128::from(self.expected_input_tokens) * u128::from(prices.input)
            + u128::from(self.expected_output_tokens) * u128::from(prices.output);
        u64::try_from(total.div_ceil(1_000_000)).unwrap_or(u64::MAX)
    }
}

/// Route with an explicit config (what [`CostTier`] does after reading the host's config).
pub fn route_with(config: &Config, request: &RouteRequest) -> Result<RouteDecision, String> {
    let models = &request.models;
    let Some(max_tier) = models.iter().map(|m| u32::from(m.tier)).max() else {
        return Err("no models to choose from: the request's `models` list is empty".into());
    };
    let task = &request.task;

    // The tier the task asks for, and how it was derived. The reason is built with `push_str`
    // and `push_num` rather than `write!`: in a plugin that runs in a fresh sandbox per call,
    // `core::fmt` was the largest part of the guest's own time.
    let mut why = String::with_capacity(64);
    let mut wanted = u32::from(config.start_tier);
    let label = strongest_label(config, &task.labels);
    match label {
        Some((name, tier)) if u32::from(tier) > wanted => {
            wanted = u32::from(tier);
            push_num(&mut why, tier);
            why.push_str(" for label `");
            why.push_str(name);
            why.push('`');
        }
        _ => {
            why.push_str("start ");
            push_num(&mut why, config.start_tier);
        }
    }
    let long_body = task.body.len() > config.large_body_chars
        && task.body.chars().count() > config.large_body_chars;
    let many_paths = task.paths.len() > config.large_paths;
    if long_body || many_paths {
        wanted += 1;
        why.push_str(" + 1 for size (");
        if long_body {
            why.push_str("body ");
            push_num(&mut why, task.body.chars().count());
            why.push_str(" chars > ");
            push_num(&mut why, config.large_body_chars);
        }
        if many_paths {
            if long_body {
                why.push_str(", ");
            }
            push_num(&mut why, task.paths.len());
            why.push_str(" paths > ");
            push_num(&mut why, config.large_paths);
        }
        why.push(')');
    }
    let rejections = request
        .history
        .iter()
        .filter(|a| a.outcome == AttemptOutcome::Rejected)
        .count();
    if rejections > 0 {
        wanted = wanted.saturating_add(u32::try_from(rejections).unwrap_or(u32::MAX));
        why.push_str(" + ");
        push_num(&mut why, rejections);
        why.push_str(if rejections == 1 {
            " rejection"
        } else {
            " rejections"
        });
    }
    let mut reason = String::with_capacity(256);
    reason.push_str("tier ");
    push_num(&mut reason, wanted);
    reason.push_str(" = ");
    reason.push_str(&why);

    let target = wanted.min(max_tier);
    if target < wanted {
        reason.push_str(", clamped to ");
        push_num(&mut reason, target);
        reason.push_str(" (the highest configured)");
    }
    let tier = if models.iter().any(|m| u32::from(m.tier) == target) {
        target
    } else {
        let higher = models
            .iter()
            .map(|m| u32::from(m.tier))
            .filter(|&t| t > target)
            .min();
        let lower = models
            .iter()
            .map(|m| u32::from(m.tier))
            .filter(|&t| t < target)
            .max();
        let tier = higher.or(lower).unwrap_or(max_tier);
        reason.push_str("; no model at tier ");
        push_num(&mut reason, target);
        reason.push_str(", using tier ");
        push_num(&mut reason, tier);
        tier
    };

    // The money the attempt may use.
    let tightest = request
        .budget
        .money
        .iter()
        .filter(|m| m.level != BudgetLevel::Call) // a per-call cap does not bound an attempt
        .min_by_key(|m| m.left);
    let budget = match tightest {
        Some(m) => config.attempt_budget.min(m.left),
        None => config.attempt_budget,
    };

    // The cheapest model at the tier, stepping down if it does not fit.
    let cheapest = |filter: &dyn Fn(&ModelInfo) -> bool| {
        models
            .iter()
            .filter(|m| filter(m))
            .map(|m| (m, config.estimate(&m.prices)))
            .min_by_key(|&(_, est)| est)
    };
    let (first, first_est) = cheapest(&|m| u32::from(m.tier) == tier)
        .ok_or_else(|| format!("no model at tier {tier}"))?;
    let model = if first_est <= budget {
        reason.push_str("; chose ");
        push_describe(&mut reason, first, first_est);
        first
    } else {
        let fitting = models
            .iter()
            .filter(|m| m.tier < first.tier)
            .map(|m| (m, config.estimate(&m.prices)))
            .filter(|&(_, est)| est <= budget)
            .fold(
                None::<(&ModelInfo, MicroUsd)>,
                |best, (m, est)| match best {
                    Some((b, b_est))
                        if (b.tier, std::cmp::Reverse(b_est))
                            >= (m.tier, std::cmp::Reverse(est)) =>
                    {
                        Some((b, b_est))
                    }
                    _ => Some((m, est)),
                },
            );
        match fitting {
            Some((m, est)) => {
                reason.push_str("; chose ");
                push_describe(&mut reason, m, est);
                reason.push_str(" instead of `");
                reason.push_str(&first.id);
                reason.push_str("` (est. ");
                push_usd(&mut reason, first_est, 3);
                reason.push_str("), which does not fit the attempt budget");
                m
            }
            None => {
                let (m, est) = cheapest(&|_| true).unwrap_or((first, first_est));
                reason.push_str("; chose ");
                push_describe(&mut reason, m, est);
                reason
                    .push_str(", the cheapest model, but the attempt budget is below its estimate");
                m
            }
        }
    };

    reason.push_str("; attempt budget ");
    push_usd(&mut reason, budget, 3);
    match tightest {
        Some(m) if m.left < config.attempt_budget => {
            reason.push_str(" (all the ");
            reason.push_str(level_name(m.level));
            reason.push_str(" has left)");
        }
        Some(m) => {
            reason.push_str(" (");
            reason.push_str(level_name(m.level));
            reason.push_str(" has ");
            push_usd(&mut reason, m.left, 3);
            reason.push_str(" left)");
        }
        None => reason.push_str(" (no money caps)"),
    }

    Ok(RouteDecision {
        model: model.id.clone(),
        attempt_budget: budget,
        reason,
    })
}

/// The label with the highest configured tier (first one on a tie), case-insensitively.
fn strongest_label<'a>(config: &'a Config, labels: &[String]) -> Option<(&'a str, u8)> {
    let mut best: Option<(&str, u8)> = None;
    for label in labels {
        for (name, &tier) in &config.label_tiers {
            if name.eq_ignore_ascii_case(label) && best.is_none_or(|(_, t)| tier > t) {
                best = Some((name.as_str(), tier));
            }
        }
    }
    best
}

/// Append "`id` (est. $x at $in/$out per Mtok)".
fn push_describe(out: &mut String, model: &ModelInfo, est: MicroUsd) {
    out.push('`');
    out.push_str(&model.id);
    out.push_str("` (est. ");
    push_usd(out, est, 3);
    out.push_str(" at ");
    push_usd(out, model.prices.input, 2);
    out.push('/');
    push_usd(out, model.prices.output, 2);
    out.push_str(" per Mtok)");
}

/// Append a number in decimal without `core::fmt` (see the reason in [`route_with`]).
fn push_num(out: &mut String, n: impl TryInto<u64>) {
    let mut n: u64 = n.try_into().unwrap_or(u64::MAX);
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[start..] {
        out.push(char::from(d));
    }
}

fn level_name(level: BudgetLevel) -> &'static str {
    match level {
        BudgetLevel::Call => "call",
        BudgetLevel::Attempt => "attempt",
        BudgetLevel::Task => "task",
        BudgetLevel::Run => "run",
        BudgetLevel::Day => "day",
        BudgetLevel::Month => "month",
    }
}

/// Dollars from µ$ with integer arithmetic: at least `min_decimals` decimals, more when the
/// amount needs them (`usd(450_000, 3)` = "$0.450", `usd(75_000, 2)` = "$0.075").
pub fn usd(micro: MicroUsd, min_decimals: usize) -> String {
    let mut out = String::with_capacity(24);
    push_usd(&mut out, micro, min_decimals);
    out
}

/// Append [`usd`]`(micro, min_decimals)` to `out`.
fn push_usd(out: &mut String, micro: MicroUsd, min_decimals: usize) {
    out.push('$');
    push_num(out, micro / 1_000_000);
    let mut frac = [b'0'; 6];
    let mut rest = micro % 1_000_000;
    for digit in frac.iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    let significant = frac.iter().rposition(|&d| d != b'0').map_or(0, |i| i + 1);
    let keep = significant.max(min_decimals.min(6));
    if keep > 0 {
        out.push('.');
        for &d in &frac[..keep] {
            out.push(char::from(d));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gaffer_sdk::Router;
    use gaffer_sdk::testing::MockHost;
    use gaffer_sdk::types::{Attempt, BudgetView, MoneyLeft, Task, TokenUsage};
    use serde_json::json;

    fn model(id: &str, tier: u8, input: u64, output: u64) -> ModelInfo {
        ModelInfo {
            id: id.into(),
            provider: "p".into(),
            tier,
            prices: Prices {
                input,
                output,
                cache_read: input / 10,
                cache_write: input * 5 / 4,
            },
            context_window: 200_000,
            tags: vec![],
        }
    }

    /// cheap: est $0.050; mid: $0.300; big: $1.500.
    fn models() -> Vec<ModelInfo> {
        vec![
            model("big", 3, 5_000_000, 25_000_000),
            model("mid-pricey", 2, 2_000_000, 10_000_000),
            model("mid", 2, 1_000_000, 5_000_000),
            model("cheap", 1, 150_000, 1_000_000),
        ]
    }

    fn money(level: BudgetLevel, cap: u64, left: u64) -> MoneyLeft {
        MoneyLeft {
            level,
            cap,
            spent: cap - left,
            left,
        }
    }

    fn attempt(number: u32, outcome: AttemptOutcome) -> Attempt {
        Attempt {
            number,
            model: "cheap".into(),
            outcome,
            reasons: vec!["tests failed".into()],
            cost: 10_000,
            tokens: TokenUsage {
                input: 1,
                output: 1,
                cache_read: 0,
                cache_write: 0,
            },
        }
    }

    fn request(labels: &[&str], history: Vec<Attempt>, money: Vec<MoneyLeft>) -> RouteRequest {
        RouteRequest {
            task: Task {
                id: "T-1".into(),
                title: "Fix the parser".into(),
                body: "It breaks on empty input.".into(),
                labels: labels.iter().map(|l| l.to_string()).collect(),
                paths: vec!["src/parse.rs".into()],
            },
            history,
            models: models(),
            budget: BudgetView {
                money,
                fuel_left_task: 1_000_000_000,
                fuel_per_call: 50_000_000,
            },
        }
    }

    fn route(config: serde_json::Value, req: RouteRequest) -> Result<RouteDecision, String> {
        let _host = MockHost::new().config(config).install();
        CostTier::route(req)
    }

    #[test]
    fn first_attempt_is_cheap() {
        let d = route(
            json!({}),
            request(
                &["bug"],
                vec![],
                vec![money(BudgetLevel::Task, 2_000_000, 1_200_000)],
            ),
        )
        .unwrap();
        assert_eq!(d.model, "cheap");
        assert_eq!(d.attempt_budget, 1_200_000);
        assert_eq!(
            d.reason,
            "tier 1 = start 1; chose `cheap` (est. $0.050 at $0.15/$1.00 per Mtok); \
             attempt budget $1.200 (all the task has left)"
        );
    }

    #[test]
    fn label_raises_the_tier_and_rejections_escalate() {
        let req = request(
            &["Refactor"],
            vec![
                attempt(1, AttemptOutcome::Rejected),
                attempt(2, AttemptOutcome::Failed),
            ],
            vec![money(BudgetLevel::Task, 5_000_000, 3_000_000)],
        );
        let d = route(json!({ "attempt_budget": 2_000_000 }), req).unwrap();
        assert_eq!(d.model, "big");
        assert_eq!(d.attempt_budget, 2_000_000);
        assert_eq!(
            d.reason,
            "tier 3 = 2 for label `refactor` + 1 rejection; \
             chose `big` (est. $1.500 at $5.00/$25.00 per Mtok); \
             attempt budget $2.000 (task has $3.000 left)"
        );
    }

    #[test]
    fn picks_the_cheapest_model_of_the_tier() {
        let req = request(&["refactor"], vec![], vec![]);
        let d = route(json!({}), req).unwrap();
        assert_eq!(d.model, "mid");
        assert_eq!(
            d.reason,
            "tier 2 = 2 for label `refactor`; chose `mid` (est. $0.300 at $1.00/$5.00 per Mtok); \
             attempt budget $5.000 (no money caps)"
        );
    }

    #[test]
    fn approved_needs_human_and_failed_attempts_do_not_escalate() {
        let history = vec![
            attempt(1, AttemptOutcome::Failed),
            attempt(2, AttemptOutcome::NeedsHuman),
            attempt(3, AttemptOutcome::BudgetExhausted),
        ];
        let d = route(json!({}), request(&[], history, vec![])).unwrap();
        assert_eq!(d.model, "cheap");
    }

    #[test]
    fn escalation_is_clamped_to_the_highest_tier() {
        let history = (1..=4)
            .map(|n| attempt(n, AttemptOutcome::Rejected))
            .collect();
        let d = route(
            json!({ "attempt_budget": 5_000_000 }),
            request(&[], history, vec![]),
        )
        .unwrap();
        assert_eq!(d.model, "big");
        assert!(
            d.reason
                .starts_with("tier 5 = start 1 + 4 rejections, clamped to 3 (the highest configured); chose `big`"),
            "{}",
            d.reason
        );
    }

    #[test]
    fn a_large_task_is_one_tier_up() {
        let mut req = request(&[], vec![], vec![]);
        req.task.body = "é".repeat(4001);
        let d = route(json!({}), req.clone()).unwrap();
        assert_eq!(d.model, "mid");
        assert!(
            d.reason
                .starts_with("tier 2 = start 1 + 1 for size (body 4001 chars > 4000); "),
            "{}",
            d.reason
        );

        // Exactly at the limit in characters (but more bytes) is not large.
        req.task.body = "é".repeat(4000);
        assert_eq!(route(json!({}), req.clone()).unwrap().model, "cheap");

        req.task.paths = (0..6).map(|i| format!("src/{i}.rs")).collect();
        let d = route(json!({ "large_paths": 5 }), req).unwrap();
        assert!(
            d.reason
                .starts_with("tier 2 = start 1 + 1 for size (6 paths > 5); "),
            "{}",
            d.reason
        );
    }

    #[test]
    fn a_missing_tier_uses_the_nearest_higher_one() {
        let mut req = request(&[], vec![attempt(1, AttemptOutcome::Rejected)], vec![]);
        req.models.retain(|m| m.tier != 2);
        let d = route(json!({ "attempt_budget": 5_000_000 }), req).unwrap();
        assert_eq!(d.model, "big");
        assert!(
            d.reason.starts_with(
                "tier 2 = start 1 + 1 rejection; no model at tier 2, using tier 3; chose `big`"
            ),
            "{}",
            d.reason
        );

        // Below every configured tier: the lowest one.
        let mut req = request(&[], vec![], vec![]);
        req.models.retain(|m| m.tier == 3);
        let d = route(json!({ "attempt_budget": 5_000_000 }), req).unwrap();
        assert_eq!(d.model, "big");
        assert!(
            d.reason.contains("no model at tier 1, using tier 3"),
            "{}",
            d.reason
        );
    }

    #[test]
    fn the_tightest_cap_bounds_the_attempt_budget() {
        let req = request(
            &[],
            vec![],
            vec![
                money(BudgetLevel::Call, 100_000, 10_000), // a per-call cap does not bound an attempt
                money(BudgetLevel::Task, 2_000_000, 300_000),
                money(BudgetLevel::Day, 50_000_000, 40_000_000),
            ],
        );
        let d = route(json!({}), req).unwrap();
        assert_eq!(d.attempt_budget, 300_000);
        assert!(
            d.reason
                .ends_with("; attempt budget $0.300 (all the task has left)"),
            "{}",
            d.reason
        );
    }

    #[test]
    fn steps_down_to_the_most_capable_model_that_fits() {
        let history = vec![
            attempt(1, AttemptOutcome::Rejected),
            attempt(2, AttemptOutcome::Rejected),
        ];
        let req = request(
            &[],
            history,
            vec![money(BudgetLevel::Run, 10_000_000, 400_000)],
        );
        let d = route(json!({ "attempt_budget": 1_000_000 }), req).unwrap();
        assert_eq!(d.model, "mid");
        assert_eq!(d.attempt_budget, 400_000);
        assert_eq!(
            d.reason,
            "tier 3 = start 1 + 2 rejections; chose `mid` (est. $0.300 at $1.00/$5.00 per Mtok) \
             instead of `big` (est. $1.500), which does not fit the attempt budget; \
             attempt budget $0.400 (all the run has left)"
        );
    }

    #[test]
    fn when_nothing_fits_it_picks_the_cheapest_and_says_so() {
        let req = request(
            &["security"],
            vec![],
            vec![money(BudgetLevel::Task, 2_000_000, 20_000)],
        );
        let d = route(json!({}), req).unwrap();
        assert_eq!(d.model, "cheap");
        assert_eq!(d.attempt_budget, 20_000);
        assert_eq!(
            d.reason,
            "tier 3 = 3 for label `security`; chose `cheap` (est. $0.050 at $0.15/$1.00 per Mtok), \
             the cheapest model, but the attempt budget is below its estimate; \
             attempt budget $0.020 (all the task has left)"
        );
    }

    #[test]
    fn custom_label_tiers_and_start_tier() {
        let cfg = json!({ "start_tier": 2, "label_tiers": { "docs": 1, "perf": 3 } });
        assert_eq!(
            route(cfg.clone(), request(&["docs"], vec![], vec![]))
                .unwrap()
                .model,
            "mid"
        );
        let d = route(
            json!({ "start_tier": 2, "label_tiers": { "perf": 3 }, "attempt_budget": 9_000_000 }),
            request(&["docs", "perf"], vec![], vec![]),
        )
        .unwrap();
        assert_eq!(d.model, "big");
        // The defaults are replaced, not merged.
        assert_eq!(
            route(cfg, request(&["security"], vec![], vec![]))
                .unwrap()
                .model,
            "mid"
        );
    }

    #[test]
    fn no_models_is_an_error() {
        let mut req = request(&[], vec![], vec![]);
        req.models.clear();
        assert_eq!(
            route(json!({}), req),
            Err("no models to choose from: the request's `models` list is empty".into())
        );
    }

    #[test]
    fn invalid_config_names_the_field() {
        let req = request(&[], vec![], vec![]);
        let err = route(json!({ "start_tier": "high" }), req.clone()).unwrap_err();
        assert!(
            err.starts_with("invalid config: `start_tier`: invalid type: string"),
            "{err}"
        );
        let err = route(json!({ "label_tiers": { "x": 256 } }), req.clone()).unwrap_err();
        assert!(err.starts_with("invalid config: `label_tiers.x`:"), "{err}");
        let err = route(json!({ "start_tier": 0 }), req.clone()).unwrap_err();
        assert_eq!(
            err,
            "invalid config: `start_tier` must be at least 1 (tiers start at 1)"
        );
        let err = route(json!({ "atempt_budget": 1 }), req.clone()).unwrap_err();
        assert!(err.contains("unknown field `atempt_budget`"), "{err}");
        let err = route(json!({ "attempt_budget": 0 }), req).unwrap_err();
        assert!(err.contains("`attempt_budget`"), "{err}");
    }

    #[test]
    fn works_without_a_host_mock() {
        // Natively, without a mock, the config is "{}": the defaults.
        let d = CostTier::route(request(&[], vec![], vec![])).unwrap();
        assert_eq!(d.model, "cheap");
    }

    #[test]
    fn estimates_round_up() {
        let config = Config {
            expected_input_tokens: 1,
            expected_output_tokens: 1,
            ..Config::default()
        };
        let prices = Prices {
            input: 1,
            output: 1,
            cache_read: 0,
            cache_write: 0,
        };
        assert_eq!(config.estimate(&prices), 1);
        let huge = Config {
            expected_input_tokens: u64::MAX,
            ..Config::default()
        };
        let p = Prices {
            input: u64::MAX,
            ..prices
        };
        assert_eq!(huge.estimate(&p), u64::MAX);
    }

    #[test]
    fn dollars_are_formatted_exactly() {
        assert_eq!(usd(0, 3), "$0.000");
        assert_eq!(usd(450_000, 3), "$0.450");
        assert_eq!(usd(1_200_000, 3), "$1.200");
        assert_eq!(usd(1_000_000, 2), "$1.00");
        assert_eq!(usd(75_000, 2), "$0.075");
        assert_eq!(usd(1_234_567, 3), "$1.234567");
        assert_eq!(usd(15_000_000, 0), "$15");
        assert_eq!(usd(u64::MAX, 2), "$18446744073709.551615");
    }
}
