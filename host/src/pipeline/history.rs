//! What the router and verifier are told about a task: its earlier attempts with what each
//! cost (from the ledger), and the money left at every level.

use crate::ledger::Ledger;
use crate::plugin::types::{
    Attempt, AttemptOutcome, BudgetLevel, BudgetView, MoneyLeft, Task, TokenUsage,
};
use crate::store::{AttemptRecord, CapLevel, LedgerRow, RowScope, StoreError, TaskRecord};

/// The contract's view of a stored task.
pub fn wit_task(task: &TaskRecord) -> Task {
    Task {
        id: task.id.clone(),
        title: task.title.clone(),
        body: task.body.clone(),
        labels: task.labels.clone(),
        paths: task.paths.clone(),
    }
}

/// The contract's outcome of a stored attempt outcome.
fn outcome(name: &str) -> AttemptOutcome {
    match name {
        "approved" => AttemptOutcome::Approved,
        "needs-human" => AttemptOutcome::NeedsHuman,
        "budget-exhausted" => AttemptOutcome::BudgetExhausted,
        "failed" => AttemptOutcome::Failed,
        // A merge conflict is a rejection of this attempt's change.
        _ => AttemptOutcome::Rejected,
    }
}

/// Charged µ$ and tokens of the rows of one attempt.
pub fn attempt_cost(rows: &[LedgerRow], attempt: u32) -> (u64, TokenUsage) {
    let mut cost = 0u64;
    let mut tokens = TokenUsage {
        input: 0,
        output: 0,
        cache_read: 0,
        cache_write: 0,
    };
    for row in rows.iter().filter(|r| r.scope.attempt == Some(attempt)) {
        cost = cost.saturating_add(row.charged);
        tokens.input += row.tokens.input;
        tokens.output += row.tokens.output;
        tokens.cache_read += row.tokens.cache_read;
        tokens.cache_write += row.tokens.cache_write;
    }
    (cost, tokens)
}

/// The attempt history as the contract has it.
pub fn wit_history(attempts: &[AttemptRecord], rows: &[LedgerRow]) -> Vec<Attempt> {
    attempts
        .iter()
        .map(|a| {
            let (cost, tokens) = attempt_cost(rows, a.number);
            Attempt {
                number: a.number,
                model: a.model.clone(),
                outcome: outcome(&a.outcome),
                reasons: a.reasons.clone(),
                cost,
                tokens,
            }
        })
        .collect()
}

/// The money left at each capped level for a new attempt of `scope`'s task.
pub fn budget_view(
    ledger: &Ledger,
    scope: &RowScope,
    fuel_left_task: u64,
    fuel_per_call: u64,
) -> Result<BudgetView, StoreError> {
    let caps = ledger.caps();
    let mut money = Vec::new();
    let levels = [
        (BudgetLevel::Call, CapLevel::Call, caps.per_call),
        (BudgetLevel::Attempt, CapLevel::Attempt, caps.per_attempt),
        (BudgetLevel::Task, CapLevel::Task, caps.per_task),
        (BudgetLevel::Run, CapLevel::Run, caps.per_run),
        (BudgetLevel::Day, CapLevel::Day, caps.per_day),
        (BudgetLevel::Month, CapLevel::Month, caps.per_month),
    ];
    for (wit_level, level, cap) in levels {
        let Some(cap) = cap else { continue };
        // A new attempt and a new call have spent nothing yet.
        let spent = match level {
            CapLevel::Call | CapLevel::Attempt => 0,
            _ => ledger.store().spent(level, scope)?,
        };
        money.push(MoneyLeft {
            level: wit_level,
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
    use crate::store::{PriceColumns, TokenColumns};

    fn row(attempt: u32, charged: u64, input: u64) -> LedgerRow {
        LedgerRow {
            id: 0,
            scope: RowScope {
                attempt: Some(attempt),
                ..RowScope::default()
            },
            state: "settled".into(),
            reserved: charged,
            charged,
            tokens: TokenColumns {
                input,
                output: 1,
                cache_read: 0,
                cache_write: 0,
            },
            prices: PriceColumns::default(),
            fuel: 0,
            wall_ms: 0,
            outcome: None,
            overrun: false,
            usage_missing: false,
            recovered: false,
            owner: String::new(),
            day: String::new(),
            month: String::new(),
        }
    }

    #[test]
    fn each_attempt_is_charged_its_own_rows() {
        let rows = [row(1, 100, 10), row(2, 7, 3), row(1, 50, 5)];
        let attempts = [AttemptRecord {
            task_id: "T-1".into(),
            number: 1,
            run_id: "r".into(),
            model: "cheap".into(),
            outcome: "conflict".into(),
            reasons: vec!["x".into()],
            turns: 2,
            tests_passed: Some(true),
            wall_ms: 0,
        }];
        let history = wit_history(&attempts, &rows);
        assert_eq!(history[0].cost, 150);
        assert_eq!((history[0].tokens.input, history[0].tokens.output), (15, 2));
        assert_eq!(history[0].outcome, AttemptOutcome::Rejected);
    }
}
