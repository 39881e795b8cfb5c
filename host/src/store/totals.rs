//! The cap totals both backends keep: one running total per cap scope (an attempt, a task, a
//! run, a day, a month, a model in a month), adjusted in the same transaction as the rows they
//! total, so that checking a cap is one lookup, not a sum over a month of rows.

use super::{CapLevel, RowScope};

/// The key of the cap-total row a cap at `level` reads for a call in `scope`, on `day` and in
/// `month` (the store's clock at reservation); `None` when the cap does not apply (an attempt
/// cap for a call outside any task). `Call` has no total: it bounds the call alone.
pub(crate) fn total_key(
    level: CapLevel,
    scope: &RowScope,
    day: &str,
    month: &str,
) -> Option<String> {
    match level {
        CapLevel::Call => None,
        CapLevel::Attempt => match (&scope.task_id, scope.attempt) {
            (Some(task), Some(attempt)) => Some(format!("{task}#{attempt}")),
            _ => None,
        },
        CapLevel::Task => scope.task_id.clone(),
        CapLevel::Run => Some(scope.run_id.clone()),
        CapLevel::Day => Some(day.to_string()),
        CapLevel::Month => Some(month.to_string()),
        CapLevel::Model => Some(format!("{month}|{}", scope.model)),
    }
}

/// The levels that keep totals.
pub(crate) const TOTALLED: [CapLevel; 6] = [
    CapLevel::Attempt,
    CapLevel::Task,
    CapLevel::Run,
    CapLevel::Day,
    CapLevel::Month,
    CapLevel::Model,
];
