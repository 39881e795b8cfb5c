//! `cascade`: a router that tries a fixed list of models in order — the first attempt gets the
//! first model, each attempt after a rejection the next one, and once the list is used up the
//! last model keeps the task. The policy `gaffer replay --search` finds and writes out.
//!
//! Only rejected and budget-exhausted attempts move down the list: an attempt that failed
//! outside the model (`failed`) is retried on the same model.
//!
//! Config:
//!
//! | field | default | meaning |
//! |---|---|---|
//! | `models` | (required) | model keys in order, e.g. `["cheap", "strong"]` |
//! | `attempt_budget` | 5000000 | µ$ cap of one attempt (the money left at every level bounds it too) |

use gaffer_sdk::host;
use gaffer_sdk::types::{AttemptOutcome, BudgetLevel, MicroUsd, RouteDecision, RouteRequest};
use serde::Deserialize;

/// The router.
pub struct Cascade;

impl gaffer_sdk::Router for Cascade {
    fn route(request: RouteRequest) -> Result<RouteDecision, String> {
        let config: Config = host::config()?;
        route_with(&config, &request)
    }
}

gaffer_sdk::export_router!(Cascade);

/// The router's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Model keys, cheapest first.
    pub models: Vec<String>,
    /// Money cap of one attempt, µ$.
    #[serde(default = "default_attempt_budget")]
    pub attempt_budget: MicroUsd,
}

fn default_attempt_budget() -> MicroUsd {
    5_000_000
}

/// No config at all: no models (refused at the first call, naming the field).
impl Default for Config {
    fn default() -> Self {
        Config {
            models: Vec::new(),
            attempt_budget: default_attempt_budget(),
        }
    }
}

/// Route with an explicit configuration.
pub fn route_with(config: &Config, request: &RouteRequest) -> Result<RouteDecision, String> {
    if config.models.is_empty() {
        return Err("config `models` is empty: name the cascade's models in order".to_string());
    }
    for model in &config.models {
        if !request.models.iter().any(|m| &m.id == model) {
            return Err(format!(
                "config names model `{model}`, which is not configured (known: {})",
                request
                    .models
                    .iter()
                    .map(|m| m.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    let moved_on = request
        .history
        .iter()
        .filter(|a| {
            matches!(
                a.outcome,
                AttemptOutcome::Rejected | AttemptOutcome::BudgetExhausted
            )
        })
        .count();
    let step = moved_on.min(config.models.len() - 1);
    let model = config.models[step].clone();
    let left = request
        .budget
        .money
        .iter()
        .filter(|m| m.level != BudgetLevel::Call)
        .map(|m| m.left)
        .min()
        .unwrap_or(MicroUsd::MAX);
    let reason = if moved_on >= config.models.len() {
        format!(
            "cascade step {} of {} (the list is used up: staying on the last model)",
            step + 1,
            config.models.len()
        )
    } else {
        format!("cascade step {} of {}", step + 1, config.models.len())
    };
    Ok(RouteDecision {
        model,
        attempt_budget: config.attempt_budget.min(left),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use gaffer_sdk::types::{Attempt, BudgetView, ModelInfo, Prices, Task, TokenUsage};

    fn model(id: &str) -> ModelInfo {
        ModelInfo {
            id: id.into(),
            provider: "p".into(),
            tier: 1,
            prices: Prices {
                input: 1,
                output: 1,
                cache_read: 1,
                cache_write: 1,
            },
            context_window: 1000,
            tags: vec![],
        }
    }

    fn request(outcomes: &[AttemptOutcome]) -> RouteRequest {
        RouteRequest {
            task: Task {
                id: "T-1".into(),
                title: "t".into(),
                body: String::new(),
                labels: vec![],
                paths: vec![],
            },
            history: outcomes
                .iter()
                .enumerate()
                .map(|(i, o)| Attempt {
                    number: i as u32 + 1,
                    model: "a".into(),
                    outcome: *o,
                    reasons: vec![],
                    cost: 0,
                    tokens: TokenUsage {
                        input: 0,
                        output: 0,
                        cache_read: 0,
                        cache_write: 0,
                    },
                })
                .collect(),
            models: vec![model("a"), model("b")],
            budget: BudgetView {
                money: vec![],
                fuel_left_task: 0,
                fuel_per_call: 0,
            },
        }
    }

    fn config() -> Config {
        serde_json::from_str(r#"{"models": ["a", "b"]}"#).unwrap()
    }

    #[test]
    fn each_rejection_moves_one_step_down_and_the_last_model_stays() {
        use AttemptOutcome::*;
        let pick = |h: &[AttemptOutcome]| route_with(&config(), &request(h)).unwrap().model;
        assert_eq!(pick(&[]), "a");
        assert_eq!(pick(&[Rejected]), "b");
        assert_eq!(pick(&[Failed]), "a");
        assert_eq!(pick(&[Rejected, Rejected, Rejected]), "b");
    }

    #[test]
    fn unknown_models_and_an_empty_list_are_refused() {
        let bad: Config = serde_json::from_str(r#"{"models": ["a", "zzz"]}"#).unwrap();
        let err = route_with(&bad, &request(&[])).unwrap_err();
        assert!(err.contains("`zzz`") && err.contains("a, b"), "{err}");
        let empty: Config = serde_json::from_str(r#"{"models": []}"#).unwrap();
        assert!(route_with(&empty, &request(&[])).is_err());
    }
}
