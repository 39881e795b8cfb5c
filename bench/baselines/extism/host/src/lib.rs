//! What the Extism baseline bench shares: the request and decision types (the guest's own
//! source), the sample request (host/src/plugin/samples.rs's `route_request()`, field for
//! field), the decision gaffer's cost-tier plugin makes for it, and the limits gaffer ships.

#[path = "../../guest/src/cost_tier.rs"]
pub mod cost_tier;

use std::time::Duration;

use cost_tier::{
    BudgetLevel, BudgetView, ModelInfo, MoneyLeft, Prices, RouteDecision, RouteRequest, Task,
};

/// gaffer's default fuel per plugin call (host/src/plugin/spec.rs `DEFAULT_FUEL_PER_CALL`).
pub const FUEL_PER_CALL: u64 = 1_000_000_000;
/// gaffer's default deadline of a plugin call (host/src/plugin/spec.rs `DEFAULT_DEADLINE_MS`).
pub const DEADLINE: Duration = Duration::from_millis(2_000);
/// gaffer's default memory limit of a plugin, in 64 KiB wasm pages (128 MiB).
pub const MAX_PAGES: u32 = 128 * 16;

fn model(id: &str, tier: u8, input: u64, output: u64) -> ModelInfo {
    ModelInfo {
        id: id.to_string(),
        provider: "sample".to_string(),
        tier,
        prices: Prices {
            input,
            output,
            cache_read: input / 10,
            cache_write: input + input / 4,
        },
        context_window: 200_000,
        tags: vec![],
    }
}

/// `gaffer::plugin::samples::route_request()`.
pub fn route_request() -> RouteRequest {
    RouteRequest {
        task: Task {
            id: "T-1".to_string(),
            title: "Fix off-by-one in pagination".to_string(),
            body: "The last page of `list_users` drops one item when the total is a multiple of \
                   the page size. See src/api/users.rs."
                .to_string(),
            labels: vec!["bug".to_string()],
            paths: vec!["src/api/users.rs".to_string()],
        },
        history: vec![],
        models: vec![
            model("cheap", 1, 1_000_000, 5_000_000),
            model("mid", 2, 3_000_000, 15_000_000),
            model("strong", 3, 15_000_000, 75_000_000),
        ],
        budget: BudgetView {
            money: vec![
                MoneyLeft {
                    level: BudgetLevel::Task,
                    cap: 2_000_000,
                    spent: 350_000,
                    left: 1_650_000,
                },
                MoneyLeft {
                    level: BudgetLevel::Run,
                    cap: 20_000_000,
                    spent: 4_200_000,
                    left: 15_800_000,
                },
            ],
            fuel_left_task: 50_000_000_000,
            fuel_per_call: 1_000_000_000,
        },
    }
}

/// The decision plugins/cost-tier makes for [`route_request`] with its default config.
pub fn expected_decision() -> RouteDecision {
    RouteDecision {
        model: "cheap".to_string(),
        attempt_budget: 1_650_000,
        reason: "tier 1 = start 1; chose `cheap` (est. $0.300 at $1.00/$5.00 per Mtok); \
                 attempt budget $1.650 (all the task has left)"
            .to_string(),
    }
}
