//! What the router and verifier are told about a task: its earlier attempts with what each
//! cost (from the ledger), and the money left at every level.

use crate::ledger::Ledger;
use crate::plugin::types::{Attempt, BudgetView, MoneyLeft, Task};
use crate::store::{
    AttemptRecord, CapLevel, LedgerRow, MicroUsd, RowScope, StoreError, TaskRecord, TokenCounts,
};

/// The contract's view of a stored task.
pub fn contract_task(task: &TaskRecord) -> Task {
    Task {
        id: task.id.clone(),
        title: task.title.clone(),
        body: task.body.clone(),
        labels: task.labels.clone(),
        paths: task.paths.clone(),
    }
}

/// Charged µ$ and tokens of the rows of one attempt.
pub fn attempt_cost(rows: &[LedgerRow], attempt: u32) -> (MicroUsd, TokenCounts) {
    let mut cost = MicroUsd::ZERO;
    let mut tokens = TokenCounts::default();
    for row in rows.iter().filter(|r| r.scope.attempt == Some(attempt)) {
        cost = cost.saturating_add(row.charged);
        tokens.add(&row.tokens);
    }
    (cost, tokens)
}

/// The attempt history as the router and verifier see it.
pub fn history(attempts: &[AttemptRecord], rows: &[LedgerRow]) -> Vec<Attempt> {
    attempts
        .iter()
        .map(|a| {
            let (cost, tokens) = attempt_cost(rows, a.number);
            Attempt {
                number: a.number,
                model: a.model.clone(),
                outcome: a.outcome,
                reasons: a.reasons.clone(),
                cost,
                tokens,
            }
        })
        .collect()
}

/// Fuel each plugin has used in a task, from its rows (plugin runs carry their fuel, under the
/// plugin's name).
pub fn fuel_used(rows: &[LedgerRow]) -> std::collections::BTreeMap<String, u64> {
    let mut used = std::collections::BTreeMap::new();
    for row in rows.iter().filter(|r| r.fuel > 0) {
        let entry: &mut u64 = used.entry(row.scope.model.clone()).or_default();
        *entry = entry.saturating_add(row.fuel);
    }
    used
}

/// The money left at each capped level for a new attempt of `scope`'s task.
pub async fn budget_view(
    ledger: &Ledger,
    scope: &RowScope,
    fuel_left_task: u64,
    fuel_per_call: u64,
) -> Result<BudgetView, StoreError> {
    let caps = ledger.caps();
    let mut money = Vec::new();
    let levels = [
        (CapLevel::Call, caps.per_call),
        (CapLevel::Attempt, caps.per_attempt),
        (CapLevel::Task, caps.per_task),
        (CapLevel::Run, caps.per_run),
        (CapLevel::Day, caps.per_day),
        (CapLevel::Month, caps.per_month),
    ];
    for (level, cap) in levels {
        let Some(cap) = cap else { continue };
        // A new attempt and a new call have spent nothing yet.
        let spent = match level {
            CapLevel::Call | CapLevel::Attempt => MicroUsd::ZERO,
            _ => ledger.spent(level, scope).await?,
        };
        money.push(MoneyLeft {
            level,
            cap,
            spent,
            left: cap.saturating_sub(spent),
        });
    }
    Ok(BudgetView {
        money,
        fuel_left_task,
        fuel_per_call,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AttemptOutcome, Prices, Role, RowState, Stage};

    fn row(attempt: u32, charged: u64, input: u64, fuel: u64) -> LedgerRow {
        LedgerRow {
            id: 0,
            scope: RowScope {
                attempt: Some(attempt),
                model: if fuel > 0 {
                    "hook".into()
                } else {
                    "cheap".into()
                },
                ..RowScope::attempt("r", "T-1", attempt, Stage::Implement, Role::Agent)
            },
            state: RowState::Settled,
            reserved: MicroUsd(charged),
            charged: MicroUsd(charged),
            tokens: TokenCounts {
                input,
                output: 1,
                cache_read: 0,
                cache_write: 0,
            },
            prices: Prices::default(),
            fuel,
            wall_ms: 0,
            outcome: None,
            overrun: false,
            usage_missing: false,
            call_id: (fuel == 0).then_some(1),
            try_number: (fuel == 0).then_some(1),
            recovered: false,
            owner: String::new(),
            day: String::new(),
            month: String::new(),
        }
    }

    #[test]
    fn each_attempt_is_charged_its_own_rows() {
        let rows = [
            row(1, 100, 10, 0),
            row(2, 7, 3, 0),
            row(1, 50, 5, 0),
            row(1, 0, 0, 900),
            row(2, 0, 0, 100),
        ];
        let attempts = [AttemptRecord {
            task_id: "T-1".into(),
            number: 1,
            run_id: "r".into(),
            model: "cheap".into(),
            outcome: AttemptOutcome::Conflict,
            reasons: vec!["x".into()],
            turns: 2,
            tests_passed: Some(true),
            wall_ms: 0,
            rejected_by: None,
            changed: Vec::new(),
            implementer: None,
            agent_cost: None,
        }];
        let history = history(&attempts, &rows);
        assert_eq!(history[0].cost, MicroUsd(150));
        assert_eq!((history[0].tokens.input, history[0].tokens.output), (15, 3));
        assert_eq!(history[0].outcome, AttemptOutcome::Conflict);
        assert_eq!(fuel_used(&rows).get("hook"), Some(&1_000));
    }
}
