//! plugins/cost-tier's routing decision (`route_with` there, default config), on plain serde
//! types: the request and the decision travel as JSON, as an Extism plug-in takes and returns
//! them. The WIT records of `gaffer:plugin` with the same field names. Kept line for line with
//! plugins/cost-tier/src/lib.rs so that both sides of the comparison do the same work; the host
//! bench checks that the decision (model, budget and reason string) is the one gaffer's plugin
//! makes.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

pub type MicroUsd = u64;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub title: String,
    pub body: String,
    pub labels: Vec<String>,
    pub paths: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttemptOutcome {
    Approved,
    Rejected,
    Failed,
    NeedsHuman,
    BudgetExhausted,
    Conflict,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub number: u32,
    pub model: String,
    pub outcome: AttemptOutcome,
    pub reasons: Vec<String>,
    pub cost: MicroUsd,
    pub tokens: TokenUsage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prices {
    pub input: MicroUsd,
    pub output: MicroUsd,
    pub cache_read: MicroUsd,
    pub cache_write: MicroUsd,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub id: String,
    pub provider: String,
    pub tier: u8,
    pub prices: Prices,
    pub context_window: u32,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BudgetLevel {
    Call,
    Attempt,
    Task,
    Run,
    Day,
    Month,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoneyLeft {
    pub level: BudgetLevel,
    pub cap: MicroUsd,
    pub spent: MicroUsd,
    pub left: MicroUsd,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetView {
    pub money: Vec<MoneyLeft>,
    pub fuel_left_task: u64,
    pub fuel_per_call: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteRequest {
    pub task: Task,
    pub history: Vec<Attempt>,
    pub models: Vec<ModelInfo>,
    pub budget: BudgetView,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteDecision {
    pub model: String,
    pub attempt_budget: MicroUsd,
    pub reason: String,
}

/// The router's configuration, as in plugins/cost-tier.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub start_tier: u8,
    pub label_tiers: BTreeMap<String, u8>,
    pub large_body_chars: usize,
    pub large_paths: usize,
    pub attempt_budget: MicroUsd,
    pub expected_input_tokens: u64,
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
    /// The config from its JSON text ("" or absent is the defaults), checked as cost-tier
    /// checks it.
    pub fn parse(json: Option<&str>) -> Result<Config, String> {
        let text = json
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .unwrap_or("{}");
        let config: Config =
            serde_json::from_str(text).map_err(|e| format!("invalid config: {e}"))?;
        if config.start_tier == 0 {
            return Err(
                "invalid config: `start_tier` must be at least 1 (tiers start at 1)".into(),
            );
        }
        if config.attempt_budget == 0 {
            return Err("invalid config: `attempt_budget` must be more than 0 µ$".into());
        }
        Ok(config)
    }

    pub fn estimate(&self, prices: &Prices) -> MicroUsd {
        let total = u128::from(self.expected_input_tokens) * u128::from(prices.input)
            + u128::from(self.expected_output_tokens) * u128::from(prices.output);
        u64::try_from(total.div_ceil(1_000_000)).unwrap_or(u64::MAX)
    }
}

/// plugins/cost-tier's `route_with`.
pub fn route_with(config: &Config, request: &RouteRequest) -> Result<RouteDecision, String> {
    let models = &request.models;
    let Some(max_tier) = models.iter().map(|m| u32::from(m.tier)).max() else {
        return Err("no models to choose from: the request's `models` list is empty".into());
    };
    let task = &request.task;

    let mut why = String::with_capacity(64);
    let mut wanted = u32::from(config.start_tier);
    let label = strongest_label(config, &task.labels);
    match label {
        Some((name, tier)) if u32::from(tier) > wanted => {
            wanted = u32::from(tier);
            let _ = write!(why, "{tier} for label `{name}`");
        }
        _ => {
            let _ = write!(why, "start {}", config.start_tier);
        }
    }
    let long_body = task.body.len() > config.large_body_chars
        && task.body.chars().count() > config.large_body_chars;
    let many_paths = task.paths.len() > config.large_paths;
    if long_body || many_paths {
        wanted += 1;
        why.push_str(" + 1 for size (");
        if long_body {
            let _ = write!(
                why,
                "body {} chars > {}",
                task.body.chars().count(),
                config.large_body_chars
            );
        }
        if many_paths {
            if long_body {
                why.push_str(", ");
            }
            let _ = write!(why, "{} paths > {}", task.paths.len(), config.large_paths);
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
        let plural = if rejections == 1 { "" } else { "s" };
        let _ = write!(why, " + {rejections} rejection{plural}");
    }
    let mut reason = String::with_capacity(256);
    let _ = write!(reason, "tier {wanted} = {why}");

    let target = wanted.min(max_tier);
    if target < wanted {
        let _ = write!(reason, ", clamped to {target} (the highest configured)");
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
        let _ = write!(reason, "; no model at tier {target}, using tier {tier}");
        tier
    };

    let tightest = request
        .budget
        .money
        .iter()
        .filter(|m| m.level != BudgetLevel::Call)
        .min_by_key(|m| m.left);
    let budget = match tightest {
        Some(m) => config.attempt_budget.min(m.left),
        None => config.attempt_budget,
    };

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
        let _ = write!(reason, "; chose {}", describe(first, first_est));
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
                let _ = write!(
                    reason,
                    "; chose {} instead of `{}` (est. {}), which does not fit the attempt budget",
                    describe(m, est),
                    first.id,
                    usd(first_est, 3)
                );
                m
            }
            None => {
                let (m, est) = cheapest(&|_| true).unwrap_or((first, first_est));
                let _ = write!(
                    reason,
                    "; chose {}, the cheapest model, but the attempt budget is below its estimate",
                    describe(m, est)
                );
                m
            }
        }
    };

    let _ = write!(reason, "; attempt budget {}", usd(budget, 3));
    match tightest {
        Some(m) if m.left < config.attempt_budget => {
            let _ = write!(reason, " (all the {} has left)", level_name(m.level));
        }
        Some(m) => {
            let _ = write!(
                reason,
                " ({} has {} left)",
                level_name(m.level),
                usd(m.left, 3)
            );
        }
        None => reason.push_str(" (no money caps)"),
    }

    Ok(RouteDecision {
        model: model.id.clone(),
        attempt_budget: budget,
        reason,
    })
}

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

fn describe(model: &ModelInfo, est: MicroUsd) -> String {
    format!(
        "`{}` (est. {} at {}/{} per Mtok)",
        model.id,
        usd(est, 3),
        usd(model.prices.input, 2),
        usd(model.prices.output, 2)
    )
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

fn usd(micro: MicroUsd, min_decimals: usize) -> String {
    let whole = micro / 1_000_000;
    let frac = format!("{:06}", micro % 1_000_000);
    let keep = frac.trim_end_matches('0').len().max(min_decimals.min(6));
    if keep == 0 {
        format!("${whole}")
    } else {
        format!("${whole}.{}", &frac[..keep])
    }
}
