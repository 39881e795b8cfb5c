//! A gaffer router: start with the cheapest model of the lowest tier, go one tier up for
//! every rejected attempt, and cap the attempt at the money that is left.
//!
//! Config (the `config` table of `[plugins.router]` in gaffer.toml):
//!
//! | field | default | meaning |
//! |---|---|---|
//! | `attempt_budget` | 5000000 | µ$ cap of one attempt ($5); the money left bounds it too |

/// What wit-bindgen makes of `wit/`: `Guest` (the trait the plugin implements), the world's
/// own types (`RouteRequest`, ...), the other types under `gaffer::plugin::types`, the host
/// functions under `gaffer::plugin::host`, and `export!`.
mod bindings {
    // The generated glue passes a record's fields one by one.
    #![allow(clippy::too_many_arguments)]
    wit_bindgen::generate!({ path: "wit", world: "router" });
}

use bindings::gaffer::plugin::host::{self, LogLevel};
use bindings::gaffer::plugin::types::{AttemptOutcome, BudgetLevel, ModelInfo};
use bindings::{Guest, RouteDecision, RouteRequest};

/// Money cap of one attempt when the config gives none: $5 in micro-dollars.
const DEFAULT_ATTEMPT_BUDGET: u64 = 5_000_000;

struct Plugin;

impl Guest for Plugin {
    fn route(request: RouteRequest) -> Result<RouteDecision, String> {
        let attempt_budget = attempt_budget_from_config(&host::config())?;

        // The tiers on offer, lowest first; one step up per rejected attempt, up to the top.
        let mut tiers: Vec<u8> = request.models.iter().map(|m| m.tier).collect();
        tiers.sort_unstable();
        tiers.dedup();
        let Some(&top) = tiers.last() else {
            return Err("no models to choose from: the request's `models` list is empty".into());
        };
        let rejected = request
            .history
            .iter()
            .filter(|a| a.outcome == AttemptOutcome::Rejected)
            .count();
        let tier = tiers.get(rejected).copied().unwrap_or(top);

        // The cheapest model of that tier (by input + output price; ties by key).
        let model = request
            .models
            .iter()
            .filter(|m| m.tier == tier)
            .min_by(|a, b| price(a).cmp(&price(b)).then_with(|| a.id.cmp(&b.id)))
            .ok_or("no model at the chosen tier")?;

        // Never plan to spend more than the smallest amount left. A `call` cap bounds one
        // model call, not a whole attempt, so it is left out.
        let left = request
            .budget
            .money
            .iter()
            .filter(|m| m.level != BudgetLevel::Call)
            .map(|m| m.left)
            .min();
        let budget = left.map_or(attempt_budget, |left| left.min(attempt_budget));

        let reason = format!(
            "tier {tier} after {rejected} rejected attempt(s): `{}` is the cheapest model there; \
             attempt budget {budget} µ$",
            model.id
        );
        host::log(
            LogLevel::Info,
            "routed",
            &[
                ("model".to_string(), model.id.clone()),
                ("attempt_budget".to_string(), budget.to_string()),
            ],
        );
        Ok(RouteDecision {
            model: model.id.clone(),
            attempt_budget: budget,
            reason,
        })
    }
}

/// What one million tokens in and one million out cost with this model, in µ$.
fn price(model: &ModelInfo) -> u64 {
    model.prices.input.saturating_add(model.prices.output)
}

/// `attempt_budget` from the config JSON (an object, `{}` when gaffer.toml gives none).
fn attempt_budget_from_config(text: &str) -> Result<u64, String> {
    let config: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("invalid config: {e}"))?;
    match config.get("attempt_budget") {
        None => Ok(DEFAULT_ATTEMPT_BUDGET),
        Some(value) => value.as_u64().ok_or_else(|| {
            format!("invalid config: `attempt_budget` must be a whole number of µ$, not {value}")
        }),
    }
}

bindings::export!(Plugin with_types_in bindings);
