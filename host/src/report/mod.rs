//! Economics from the ledger: what each task cost end to end (failed attempts and verifier
//! cycles included), where the tokens went by phase, and how much went on work that never
//! merged. `replay` runs routing policies over recorded outcomes.

pub mod replay;

use std::collections::BTreeMap;

use crate::ledger::{MicroUsd, format_dollars};
use crate::store::{AttemptRecord, LedgerRow, TaskRecord, TaskState};

/// One task's cost end to end.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TaskCost {
    pub id: String,
    pub title: String,
    pub state: TaskState,
    /// Attempts finished, with their model and outcome.
    pub attempts: Vec<(u32, String, String)>,
    /// Every µ$ charged to the task: model calls of every role, every attempt.
    pub cost: MicroUsd,
    /// Of which on attempts that did not end approved.
    pub wasted: MicroUsd,
    pub model_calls: u64,
    pub plugin_runs: u64,
    pub fuel: u64,
}

/// Tokens and dollars of one phase of the agent's work (or one role outside it).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PhaseCost {
    pub calls: u64,
    pub input: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    pub output: u64,
    pub cost: MicroUsd,
}

/// The economics of a set of tasks.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Economics {
    pub tasks: Vec<TaskCost>,
    /// By phase (`read-task`, `explore`, `implement`, `iterate`) for the agent, by role
    /// (`verify`, `route`, ...) for the plugins' own model calls.
    pub phases: BTreeMap<String, PhaseCost>,
    /// By model key.
    pub models: BTreeMap<String, PhaseCost>,
    pub total: MicroUsd,
    /// Spent on attempts that were not approved.
    pub wasted: MicroUsd,
    pub merged: usize,
}

impl Economics {
    /// Cost per merged task, everything included (`None` before the first merge).
    pub fn per_merged_task(&self) -> Option<MicroUsd> {
        (self.merged > 0).then(|| self.total / self.merged as u64)
    }

    /// The share of spend on work that never merged, in percent.
    pub fn wasted_percent(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.wasted as f64 * 100.0 / self.total as f64
        }
    }
}

fn add(entry: &mut PhaseCost, row: &LedgerRow) {
    entry.calls += 1;
    entry.input += row.tokens.input;
    entry.cache_read += row.tokens.cache_read;
    entry.cache_write += row.tokens.cache_write;
    entry.output += row.tokens.output;
    entry.cost = entry.cost.saturating_add(row.charged);
}

/// The economics of `tasks` from their ledger rows and attempts. Rows of other tasks (or of no
/// task) are left out.
pub fn economics(
    tasks: &[TaskRecord],
    rows: &[LedgerRow],
    attempts: &BTreeMap<String, Vec<AttemptRecord>>,
) -> Economics {
    let mut out = Economics::default();
    for task in tasks {
        let task_rows: Vec<&LedgerRow> = rows
            .iter()
            .filter(|r| r.scope.task_id.as_deref() == Some(task.id.as_str()))
            .collect();
        let history = attempts.get(&task.id).cloned().unwrap_or_default();
        let approved: Vec<u32> = history
            .iter()
            .filter(|a| a.outcome == "approved")
            .map(|a| a.number)
            .collect();
        let mut cost = TaskCost {
            id: task.id.clone(),
            title: task.title.clone(),
            state: task.state,
            attempts: history
                .iter()
                .map(|a| (a.number, a.model.clone(), a.outcome.clone()))
                .collect(),
            cost: 0,
            wasted: 0,
            model_calls: 0,
            plugin_runs: 0,
            fuel: 0,
        };
        for row in task_rows {
            cost.cost = cost.cost.saturating_add(row.charged);
            if !row.scope.attempt.is_some_and(|n| approved.contains(&n)) {
                cost.wasted = cost.wasted.saturating_add(row.charged);
            }
            cost.fuel = cost.fuel.saturating_add(row.fuel);
            // A plugin run reserves nothing and costs nothing; a model call always reserves.
            if row.reserved == 0 && row.charged == 0 {
                cost.plugin_runs += 1;
                continue;
            }
            cost.model_calls += 1;
            let phase = row
                .scope
                .phase
                .clone()
                .unwrap_or_else(|| row.scope.stage.clone());
            add(out.phases.entry(phase).or_default(), row);
            add(out.models.entry(row.scope.model.clone()).or_default(), row);
        }
        out.total = out.total.saturating_add(cost.cost);
        out.wasted = out.wasted.saturating_add(cost.wasted);
        if task.state == TaskState::Merged {
            out.merged += 1;
        }
        out.tasks.push(cost);
    }
    out
}

/// The economics as terminal text.
pub fn render_text(e: &Economics) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "{:<6} {:<40} {:<18} {:>12} {:>12}  attempts\n",
        "task", "title", "state", "cost", "not merged"
    ));
    for t in &e.tasks {
        let attempts: Vec<String> = t
            .attempts
            .iter()
            .map(|(n, model, outcome)| format!("{n}:{model}={outcome}"))
            .collect();
        let title: String = t.title.chars().take(40).collect();
        s.push_str(&format!(
            "{:<6} {:<40} {:<18} {:>12} {:>12}  {}\n",
            t.id,
            title,
            t.state.to_string(),
            format_dollars(t.cost),
            format_dollars(t.wasted),
            attempts.join(" ")
        ));
    }
    s.push_str("\nwhere the tokens went\n");
    s.push_str(&format!(
        "  {:<12} {:>6} {:>10} {:>11} {:>11} {:>9} {:>12}\n",
        "phase", "calls", "input", "cache read", "cache write", "output", "cost"
    ));
    // The agent's phases in the order work happens, then the other stages.
    let order = ["read-task", "explore", "implement", "iterate"];
    let mut phases: Vec<(&String, &PhaseCost)> = e.phases.iter().collect();
    phases.sort_by_key(|(name, _)| order.iter().position(|o| o == name).unwrap_or(order.len()));
    for (name, p) in phases {
        s.push_str(&format!(
            "  {:<12} {:>6} {:>10} {:>11} {:>11} {:>9} {:>12}\n",
            name,
            p.calls,
            p.input,
            p.cache_read,
            p.cache_write,
            p.output,
            format_dollars(p.cost)
        ));
    }
    s.push_str("by model\n");
    for (name, p) in &e.models {
        s.push_str(&format!(
            "  {:<12} {:>6} calls {:>12}\n",
            name,
            p.calls,
            format_dollars(p.cost)
        ));
    }
    s.push_str(&format!(
        "\ntotal {} for {} merged task(s); {} per merged task; {} ({:.1}%) on attempts that did not merge\n",
        format_dollars(e.total),
        e.merged,
        e.per_merged_task()
            .map(format_dollars)
            .unwrap_or_else(|| "-".into()),
        format_dollars(e.wasted),
        e.wasted_percent()
    ));
    s
}
