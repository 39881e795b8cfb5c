//! `gaffer report`: the economics of a ledger — each task end to end with every attempt and
//! the phases its tokens went to, per model and per label, the spend on work that never
//! merged, where agents fail, the monthly projection and the comparison with a person.

use std::collections::{BTreeMap, BTreeSet};

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

use crate::ledger::{MicroUsd, decimal_dollars, format_dollars};
use crate::store::{
    AttemptRecord, BacklogStore, LedgerRow, LedgerStore, Phase, Role, Stage, StoreError,
    TaskRecord, TaskState,
};

/// What reports and replays read from a store: every task, its finished attempts, the ledger.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub tasks: Vec<TaskRecord>,
    pub attempts: BTreeMap<String, Vec<AttemptRecord>>,
    pub rows: Vec<LedgerRow>,
}

impl History {
    /// Read it all.
    pub fn read<S: BacklogStore + LedgerStore + ?Sized>(store: &S) -> Result<History, StoreError> {
        let tasks = store.tasks()?;
        let mut attempts = BTreeMap::new();
        for t in &tasks {
            attempts.insert(t.id.clone(), store.attempts(&t.id)?);
        }
        Ok(History {
            tasks,
            attempts,
            rows: store.rows()?,
        })
    }

    /// The report over it.
    pub fn report(&self, options: &Options) -> Report {
        build(&self.tasks, &self.attempts, &self.rows, options)
    }
}

/// Which rows a report covers.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub run: Option<String>,
    /// First day included, `YYYY-MM-DD` (the store's UTC day).
    pub since: Option<String>,
    /// Last day included.
    pub until: Option<String>,
}

impl Filter {
    fn keeps(&self, row: &LedgerRow) -> bool {
        self.run.as_ref().is_none_or(|r| &row.scope.run_id == r)
            && self
                .since
                .as_ref()
                .is_none_or(|d| row.day.as_str() >= d.as_str())
            && self
                .until
                .as_ref()
                .is_none_or(|d| row.day.as_str() <= d.as_str())
    }
}

/// What a person doing the work would cost.
#[derive(Debug, Clone, Default)]
pub struct HumanRates {
    /// Dollars an hour, in µ$.
    pub hourly: MicroUsd,
    pub hours_per_task: f64,
    /// Hours for tasks with a label (the largest of a task's labels wins).
    pub hours_per_label: BTreeMap<String, f64>,
}

impl HumanRates {
    fn hours(&self, labels: &[String]) -> f64 {
        labels
            .iter()
            .filter_map(|l| self.hours_per_label.get(l))
            .copied()
            .fold(None, |acc: Option<f64>, h| {
                Some(acc.map_or(h, |a| a.max(h)))
            })
            .unwrap_or(self.hours_per_task)
    }
}

/// Tokens and dollars of one phase (or, outside the agent, one stage).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Spend {
    pub calls: u64,
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    pub cost_micros: MicroUsd,
}

impl Spend {
    fn add(&mut self, row: &LedgerRow) {
        self.calls += 1;
        self.input += row.tokens.input;
        self.output += row.tokens.output;
        self.cache_read += row.tokens.cache_read;
        self.cache_write += row.tokens.cache_write;
        self.cost_micros = self.cost_micros.saturating_add(row.charged);
    }
}

/// One attempt in a report.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AttemptLine {
    pub number: u32,
    pub model: String,
    /// `approved`, `rejected`, ... or `interrupted` (a crash or stop; no verdict).
    pub outcome: String,
    /// Keyed by phase (`read-task`, `explore`, `implement`, `iterate`) for the agent's calls,
    /// by stage (`verify`, `route`, `check`) for the plugins' own model calls.
    pub phases: BTreeMap<String, Spend>,
    pub cost_micros: MicroUsd,
    pub fuel: u64,
    pub wall_ms: u64,
    pub turns: u32,
    pub tests_passed: Option<bool>,
}

/// One task end to end.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TaskLine {
    pub id: String,
    pub title: String,
    pub labels: Vec<String>,
    pub state: TaskState,
    pub attempts: Vec<AttemptLine>,
    /// Every µ$ of its rows: all attempts, all roles.
    pub cost_micros: MicroUsd,
    pub fuel: u64,
    pub wall_ms: u64,
    pub turns: u32,
    pub test_failures: u32,
}

/// A model's or a label's figures.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct GroupLine {
    pub name: String,
    pub attempts: u32,
    pub approved: u32,
    pub acceptance_rate: f64,
    pub cost_micros: MicroUsd,
    pub merged_tasks: u32,
    pub cost_per_merged_micros: Option<MicroUsd>,
}

/// The monthly projection.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Projection {
    /// `observed` (the ledger's pace) or `given` (`--tasks-per-month`).
    pub basis: String,
    pub tasks_per_month: f64,
    pub cost_per_task_micros: MicroUsd,
    pub monthly_micros: MicroUsd,
    /// p5 and p95 of the monthly cost (bootstrap over the observed tasks' costs, seeded).
    pub monthly_p5_micros: MicroUsd,
    pub monthly_p95_micros: MicroUsd,
}

/// The comparison with a person.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HumanComparison {
    pub hourly_micros: MicroUsd,
    /// A person's cost for the merged tasks.
    pub merged_tasks_micros: MicroUsd,
    /// gaffer's whole spend (failed work included) for the same period.
    pub agents_micros: MicroUsd,
    pub monthly_micros: MicroUsd,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Report {
    pub tasks: Vec<TaskLine>,
    pub models: Vec<GroupLine>,
    pub labels: Vec<GroupLine>,
    pub total_micros: MicroUsd,
    pub merged: u32,
    /// Spent on attempts that did not merge.
    pub unmerged_micros: MicroUsd,
    pub unmerged_share: f64,
    /// The costliest tasks (up to five), and the labels they share.
    pub hardest: Vec<String>,
    pub hardest_labels: Vec<String>,
    pub projection: Option<Projection>,
    pub human: Option<HumanComparison>,
    /// Spend per day, for the chart.
    pub days: Vec<(String, MicroUsd)>,
}

/// Options of a report.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub filter: Filter,
    pub tasks_per_month: Option<f64>,
    pub human: Option<HumanRates>,
    pub seed: u64,
}

fn group<'a>(map: &'a mut BTreeMap<String, GroupLine>, name: &str) -> &'a mut GroupLine {
    map.entry(name.to_string()).or_insert_with(|| GroupLine {
        name: name.to_string(),
        ..GroupLine::default()
    })
}

/// Build the report.
pub fn build(
    tasks: &[TaskRecord],
    attempts: &BTreeMap<String, Vec<AttemptRecord>>,
    rows: &[LedgerRow],
    options: &Options,
) -> Report {
    let rows: Vec<&LedgerRow> = rows.iter().filter(|r| options.filter.keeps(r)).collect();
    let filtered = options.filter.run.is_some()
        || options.filter.since.is_some()
        || options.filter.until.is_some();
    let with_rows: BTreeSet<&str> = rows
        .iter()
        .filter_map(|r| r.scope.task_id.as_deref())
        .collect();
    let mut lines = Vec::new();
    let mut models: BTreeMap<String, GroupLine> = BTreeMap::new();
    let mut labels: BTreeMap<String, GroupLine> = BTreeMap::new();
    let mut unmerged = MicroUsd::ZERO;
    for task in tasks {
        if filtered && !with_rows.contains(task.id.as_str()) {
            continue;
        }
        let task_rows: Vec<&&LedgerRow> = rows
            .iter()
            .filter(|r| r.scope.task_id.as_deref() == Some(task.id.as_str()))
            .collect();
        let recorded = attempts.get(&task.id).cloned().unwrap_or_default();
        let numbers: BTreeSet<u32> = task_rows
            .iter()
            .filter_map(|r| r.scope.attempt)
            .chain(recorded.iter().map(|a| a.number))
            .collect();
        let mut line = TaskLine {
            id: task.id.clone(),
            title: task.title.clone(),
            labels: task.labels.clone(),
            state: task.state,
            attempts: Vec::new(),
            cost_micros: MicroUsd::ZERO,
            fuel: 0,
            wall_ms: 0,
            turns: 0,
            test_failures: 0,
        };
        for number in numbers {
            let record = recorded.iter().find(|a| a.number == number);
            let mut attempt = AttemptLine {
                number,
                model: record.map(|a| a.model.clone()).unwrap_or_default(),
                outcome: record.map_or_else(
                    || "interrupted".to_string(),
                    |a| a.outcome.name().to_string(),
                ),
                phases: BTreeMap::new(),
                cost_micros: MicroUsd::ZERO,
                fuel: 0,
                wall_ms: record.map_or(0, |a| a.wall_ms),
                turns: record.map_or(0, |a| a.turns),
                tests_passed: record.and_then(|a| a.tests_passed),
            };
            for row in task_rows.iter().filter(|r| r.scope.attempt == Some(number)) {
                attempt.cost_micros = attempt.cost_micros.saturating_add(row.charged);
                attempt.fuel = attempt.fuel.saturating_add(row.fuel);
                // A plugin run reserves nothing and costs nothing; a model call always reserves.
                if !row.reserved.is_zero() || !row.charged.is_zero() {
                    let key = row.scope.phase.map_or(row.scope.stage.name(), |p| p.name());
                    attempt.phases.entry(key.to_string()).or_default().add(row);
                    if attempt.model.is_empty() && row.scope.role == Role::Agent {
                        attempt.model = row.scope.model.clone();
                    }
                }
            }
            if attempt.outcome != "approved" {
                unmerged = unmerged.saturating_add(attempt.cost_micros);
            }
            line.cost_micros = line.cost_micros.saturating_add(attempt.cost_micros);
            line.fuel = line.fuel.saturating_add(attempt.fuel);
            line.wall_ms = line.wall_ms.saturating_add(attempt.wall_ms);
            line.turns += attempt.turns;
            if attempt.tests_passed == Some(false) {
                line.test_failures += 1;
            }
            let approved = u32::from(attempt.outcome == "approved");
            let g = group(&mut models, &attempt.model);
            g.attempts += 1;
            g.approved += approved;
            g.cost_micros = g.cost_micros.saturating_add(attempt.cost_micros);
            g.merged_tasks += approved;
            for label in &task.labels {
                let g = group(&mut labels, label);
                g.attempts += 1;
                g.approved += approved;
                g.cost_micros = g.cost_micros.saturating_add(attempt.cost_micros);
            }
            line.attempts.push(attempt);
        }
        // Rows of no attempt (none today) still count toward the task.
        let outside: MicroUsd = task_rows
            .iter()
            .filter(|r| r.scope.attempt.is_none())
            .map(|r| r.charged)
            .sum();
        line.cost_micros = line.cost_micros.saturating_add(outside);
        if task.state == TaskState::Merged {
            for label in &task.labels {
                group(&mut labels, label).merged_tasks += 1;
            }
        }
        lines.push(line);
    }
    for g in models.values_mut().chain(labels.values_mut()) {
        g.acceptance_rate = if g.attempts == 0 {
            0.0
        } else {
            f64::from(g.approved) / f64::from(g.attempts)
        };
        g.cost_per_merged_micros =
            (g.merged_tasks > 0).then(|| g.cost_micros.per(u64::from(g.merged_tasks)));
    }
    let total: MicroUsd = rows.iter().map(|r| r.charged).sum();
    let merged = lines
        .iter()
        .filter(|t| t.state == TaskState::Merged)
        .count() as u32;
    let mut by_cost: Vec<&TaskLine> = lines.iter().collect();
    by_cost.sort_by(|a, b| {
        b.cost_micros
            .cmp(&a.cost_micros)
            .then(b.attempts.len().cmp(&a.attempts.len()))
    });
    let hardest_lines: Vec<&TaskLine> = by_cost
        .into_iter()
        .filter(|t| t.attempts.len() > 1 || t.state != TaskState::Merged)
        .take(5)
        .collect();
    let mut label_counts: BTreeMap<&str, usize> = BTreeMap::new();
    for t in &hardest_lines {
        for l in &t.labels {
            *label_counts.entry(l).or_default() += 1;
        }
    }
    let hardest_labels: Vec<String> = label_counts
        .into_iter()
        .filter(|(_, n)| *n >= 2)
        .map(|(l, _)| l.to_string())
        .collect();
    let hardest: Vec<String> = hardest_lines.iter().map(|t| t.id.clone()).collect();
    let mut days: BTreeMap<String, MicroUsd> = BTreeMap::new();
    for r in &rows {
        *days.entry(r.day.clone()).or_default() += r.charged;
    }
    let projection = project(&lines, &days, options);
    let human = options
        .human
        .as_ref()
        .filter(|h| !h.hourly.is_zero())
        .map(|h| {
            let person = |t: &TaskLine| MicroUsd::from_f64(h.hours(&t.labels) * h.hourly.as_f64());
            let merged_tasks_micros = lines
                .iter()
                .filter(|t| t.state == TaskState::Merged)
                .map(person)
                .sum();
            let per_task = if lines.is_empty() {
                0.0
            } else {
                lines.iter().map(person).sum::<MicroUsd>().as_f64() / lines.len() as f64
            };
            HumanComparison {
                hourly_micros: h.hourly,
                merged_tasks_micros,
                agents_micros: total,
                monthly_micros: projection.as_ref().map_or(MicroUsd::ZERO, |p| {
                    MicroUsd::from_f64(p.tasks_per_month * per_task)
                }),
            }
        });
    Report {
        tasks: lines,
        models: models.into_values().collect(),
        labels: labels.into_values().collect(),
        total_micros: total,
        merged,
        unmerged_micros: unmerged,
        unmerged_share: if total.is_zero() {
            0.0
        } else {
            unmerged.as_f64() / total.as_f64()
        },
        hardest,
        hardest_labels,
        projection,
        human,
        days: days.into_iter().collect(),
    }
}

/// The month at the observed pace (finished tasks per day over the days with spend) or at the
/// given volume; the spread comes from resampling the observed tasks' costs.
fn project(
    lines: &[TaskLine],
    days: &BTreeMap<String, MicroUsd>,
    options: &Options,
) -> Option<Projection> {
    let costs: Vec<MicroUsd> = lines
        .iter()
        .filter(|t| !matches!(t.state, TaskState::Queued | TaskState::Running))
        .map(|t| t.cost_micros)
        .collect();
    if costs.is_empty() {
        return None;
    }
    let (basis, per_month) = match options.tasks_per_month {
        Some(n) => ("given", n),
        None => {
            let span = days.len().max(1) as f64;
            ("observed", costs.len() as f64 / span * 30.0)
        }
    };
    let mean = costs.iter().sum::<MicroUsd>().as_f64() / costs.len() as f64;
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let mut means: Vec<f64> = (0..2000)
        .map(|_| {
            let sum: MicroUsd = (0..costs.len())
                .map(|_| costs[(rng.next_u64() % costs.len() as u64) as usize])
                .sum();
            sum.as_f64() / costs.len() as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((means.len() - 1) as f64 * q).round() as usize];
    Some(Projection {
        basis: basis.to_string(),
        tasks_per_month: per_month,
        cost_per_task_micros: MicroUsd::from_f64(mean),
        monthly_micros: MicroUsd::from_f64(mean * per_month),
        monthly_p5_micros: MicroUsd::from_f64(at(0.05) * per_month),
        monthly_p95_micros: MicroUsd::from_f64(at(0.95) * per_month),
    })
}

/// Where an attempt's money went, in the order work happens: the agent's phases, then the
/// plugins' own model calls by stage.
pub fn spend_keys() -> impl Iterator<Item = &'static str> {
    Phase::ALL
        .iter()
        .map(|p| p.name())
        .chain([Stage::Check, Stage::Verify, Stage::Route].map(Stage::name))
}

/// The position of a phase or stage among [`spend_keys`] (unknown ones last).
pub fn phase_order(name: &str) -> usize {
    spend_keys().position(|p| p == name).unwrap_or(usize::MAX)
}

/// The report as terminal tables.
pub fn render_text(r: &Report) -> String {
    let mut s = String::new();
    s.push_str("tasks\n");
    s.push_str(&format!(
        "  {:<8} {:<18} {:>8} {:>12} {:>6} {:>6}  title\n",
        "task", "state", "attempts", "cost", "turns", "fails"
    ));
    for t in &r.tasks {
        s.push_str(&format!(
            "  {:<8} {:<18} {:>8} {:>12} {:>6} {:>6}  {}\n",
            t.id,
            t.state.to_string(),
            t.attempts.len(),
            format_dollars(t.cost_micros),
            t.turns,
            t.test_failures,
            t.title
        ));
        for a in &t.attempts {
            let mut phases: Vec<(&String, &Spend)> = a.phases.iter().collect();
            phases.sort_by_key(|(p, _)| phase_order(p));
            let phases: Vec<String> = phases
                .iter()
                .map(|(p, sp)| format!("{p} {}", format_dollars(sp.cost_micros)))
                .collect();
            s.push_str(&format!(
                "      attempt {} {:<12} {:<12} {:>12}  fuel {}  {} ms  {}\n",
                a.number,
                a.model,
                a.outcome,
                format_dollars(a.cost_micros),
                a.fuel,
                a.wall_ms,
                phases.join(", ")
            ));
        }
    }
    for (title, groups) in [("models", &r.models), ("labels", &r.labels)] {
        s.push_str(&format!(
            "\n{title}\n  {:<24} {:>8} {:>9} {:>12} {:>7} {:>16}\n",
            "", "attempts", "accepted", "cost", "merged", "per merged task"
        ));
        for g in groups {
            s.push_str(&format!(
                "  {:<24} {:>8} {:>8.0}% {:>12} {:>7} {:>16}\n",
                g.name,
                g.attempts,
                g.acceptance_rate * 100.0,
                format_dollars(g.cost_micros),
                g.merged_tasks,
                g.cost_per_merged_micros
                    .map(format_dollars)
                    .unwrap_or_else(|| "-".into())
            ));
        }
    }
    s.push_str(&format!(
        "\ntotal {} · {} merged · {} ({:.1}%) on attempts that did not merge\n",
        format_dollars(r.total_micros),
        r.merged,
        format_dollars(r.unmerged_micros),
        r.unmerged_share * 100.0
    ));
    if !r.hardest.is_empty() {
        s.push_str(&format!(
            "where agents fail (most dollars, most attempts): {}{}\n",
            r.hardest.join(", "),
            if r.hardest_labels.is_empty() {
                String::new()
            } else {
                format!(" — shared labels: {}", r.hardest_labels.join(", "))
            }
        ));
    }
    if let Some(p) = &r.projection {
        s.push_str(&format!(
            "month at {} tasks ({}): {} (p5 {} – p95 {}), {} a task\n",
            p.tasks_per_month.round(),
            p.basis,
            format_dollars(p.monthly_micros),
            format_dollars(p.monthly_p5_micros),
            format_dollars(p.monthly_p95_micros),
            format_dollars(p.cost_per_task_micros)
        ));
    }
    if let Some(h) = &r.human {
        s.push_str(&format!(
            "a person at {}/h: {} for the merged tasks, against {} spent by agents; {} a month\n",
            format_dollars(h.hourly_micros),
            format_dollars(h.merged_tasks_micros),
            format_dollars(h.agents_micros),
            format_dollars(h.monthly_micros)
        ));
    }
    s
}

/// One CSV row per attempt, with its phases' costs as columns (dollars with six decimals).
pub fn render_csv(r: &Report) -> String {
    let mut header: Vec<String> = [
        "task",
        "title",
        "labels",
        "state",
        "attempt",
        "model",
        "outcome",
        "cost_usd",
        "input",
        "output",
        "cache_read",
        "cache_write",
        "fuel",
        "wall_ms",
        "turns",
        "tests_passed",
    ]
    .map(String::from)
    .to_vec();
    header.extend(spend_keys().map(|p| format!("{p}_usd")));
    let mut out = csv::Writer::from_writer(Vec::new());
    // Writing to memory cannot fail; a failure would only lose the row, never panic.
    let _ = out.write_record(&header);
    for t in &r.tasks {
        for a in &t.attempts {
            let tokens = a.phases.values().fold(Spend::default(), |mut acc, p| {
                acc.input += p.input;
                acc.output += p.output;
                acc.cache_read += p.cache_read;
                acc.cache_write += p.cache_write;
                acc
            });
            let mut record: Vec<String> = vec![
                t.id.clone(),
                t.title.clone(),
                t.labels.join(";"),
                t.state.to_string(),
                a.number.to_string(),
                a.model.clone(),
                a.outcome.clone(),
                decimal_dollars(a.cost_micros),
                tokens.input.to_string(),
                tokens.output.to_string(),
                tokens.cache_read.to_string(),
                tokens.cache_write.to_string(),
                a.fuel.to_string(),
                a.wall_ms.to_string(),
                a.turns.to_string(),
                a.tests_passed.map(|p| p.to_string()).unwrap_or_default(),
            ];
            record.extend(spend_keys().map(|p| {
                decimal_dollars(a.phases.get(p).map_or(MicroUsd::ZERO, |sp| sp.cost_micros))
            }));
            let _ = out.write_record(&record);
        }
    }
    String::from_utf8(out.into_inner().unwrap_or_default()).unwrap_or_default()
}
