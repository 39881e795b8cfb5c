//! `gaffer report`: the economics of a ledger — each task end to end with every attempt and
//! the phases its tokens went to, per model, per label and per run, how sure each dollar is
//! (measured, estimated, overrun), the spend on work that never merged, why attempts were
//! rejected, what the verifier cost, the monthly projection and the comparison with a person.

use std::collections::{BTreeMap, BTreeSet};

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

use crate::ledger::{MicroUsd, decimal_dollars, format_dollars, format_dollars_fixed};
use crate::store::{
    AttemptOutcome, AttemptRecord, BacklogStore, Certainty, LedgerRow, LedgerStore, Phase,
    RejectionCause, Role, Stage, StoreError, TaskRecord, TaskState,
};

/// Finished tasks a projection needs at least; below, only the per-task figure is given.
pub const MIN_PROJECTION_TASKS: u32 = 20;
/// Days with spend a projection at the observed pace needs at least.
pub const MIN_PROJECTION_DAYS: u32 = 3;
/// Decimals of the dollar columns of the text and HTML tables (one width per column).
pub const COLUMN_DECIMALS: u32 = 4;

/// A dollar amount for a table column: rounded half up to [`COLUMN_DECIMALS`] places.
pub fn column_dollars(amount: MicroUsd) -> String {
    format_dollars_fixed(amount, COLUMN_DECIMALS)
}

/// A dollar amount to the micro-dollar, fixed width: for the certainty split, whose parts must
/// visibly add up to the total.
pub fn exact_dollars(amount: MicroUsd) -> String {
    format_dollars_fixed(amount, 6)
}

/// What reports and replays read from a store: every task, its finished attempts, the ledger,
/// and the reservations held now.
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
    /// Tries on the wire (one row each; a retried call counts once per try).
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

/// How sure the dollars of a task, attempt, model, label, run or the whole report are:
/// `measured_micros + estimated_micros + overrun_micros` is exactly the charged sum of the same
/// rows. With the counts of model calls and of their tries on the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CertaintySplit {
    /// From the provider's usage at the configured prices, within what was reserved.
    pub measured_micros: MicroUsd,
    /// The reservation charged because the usage is unknown: no usage reported, a reply cut off
    /// or unreadable, a timeout after the request left, or recovered after a crash.
    pub estimated_micros: MicroUsd,
    /// From the usage, but above what was reserved.
    pub overrun_micros: MicroUsd,
    /// Model calls (distinct call ids: a call's retries are one call).
    pub calls: u64,
    /// Tries on the wire (model-call rows that were sent; a reservation released before it was
    /// sent is none).
    pub tries: u64,
    /// Tries the provider certainly did not bill (no connection, or a refusal it does not
    /// bill), released: free.
    pub unbilled_tries: u64,
    /// Tries charged at their reservation because the call ended without usage (no usage
    /// reported, cut off, timed out); recovered tries are not counted here.
    pub usage_missing_tries: u64,
    /// Tries charged at their reservation by recovery after a crash.
    pub recovered_tries: u64,
    /// Tries charged above their reservation.
    pub overrun_tries: u64,
    #[serde(skip)]
    call_ids: BTreeSet<i64>,
}

impl CertaintySplit {
    /// Count one row: its charge under its certainty, and its call and try when it is a model
    /// call.
    pub fn add(&mut self, row: &LedgerRow) {
        let part = match row.certainty() {
            Some(Certainty::Measured) => &mut self.measured_micros,
            Some(Certainty::Overrun) => &mut self.overrun_micros,
            // An open or released row charges nothing; were one ever charged, its amount is
            // no measurement, and the parts must still add up to the total.
            Some(Certainty::Estimated) | None => &mut self.estimated_micros,
        };
        *part = part.saturating_add(row.charged);
        if let Some(call) = row.call_id
            && row.is_try()
        {
            self.tries += 1;
            self.unbilled_tries += u64::from(row.released_unbilled());
            if self.call_ids.insert(call) {
                self.calls += 1;
            }
            if row.certainty().is_some() {
                // Recovery flags its rows `usage-missing` too: counted once, as recovered.
                self.usage_missing_tries += u64::from(row.usage_missing && !row.recovered);
                self.recovered_tries += u64::from(row.recovered);
                self.overrun_tries += u64::from(row.certainty() == Some(Certainty::Overrun));
            }
        }
    }

    /// The sum of the three parts: the charged total of the rows counted.
    pub fn total(&self) -> MicroUsd {
        self.measured_micros
            .saturating_add(self.estimated_micros)
            .saturating_add(self.overrun_micros)
    }

    /// `measured $x + estimated $y + overrun $z · n calls, m tries`, to the micro-dollar.
    pub fn describe(&self) -> String {
        format!(
            "measured {} + estimated {} + overrun {} · {} calls, {} tries",
            exact_dollars(self.measured_micros),
            exact_dollars(self.estimated_micros),
            exact_dollars(self.overrun_micros),
            self.calls,
            self.tries
        )
    }
}

/// Why a finished attempt was rejected; `None` when it was not (approved, parked for a
/// person, out of budget, failed). The cause the pipeline recorded, or for an attempt recorded
/// before it did (schema 7), the cause its reasons show.
pub fn rejection_cause(attempt: &AttemptRecord) -> Option<RejectionCause> {
    match attempt.outcome {
        AttemptOutcome::Rejected | AttemptOutcome::Conflict => {}
        _ => return None,
    }
    Some(attempt.rejected_by.unwrap_or_else(|| legacy_cause(attempt)))
}

/// The cause of an attempt recorded before the pipeline kept one, from its reasons as the
/// pipeline then wrote them: the verifier's findings each `verifier: ...`, a hook's
/// `<hook>: ...`, the merge's failing tests, an attempt that changed nothing.
fn legacy_cause(attempt: &AttemptRecord) -> RejectionCause {
    if attempt.outcome == AttemptOutcome::Conflict {
        return RejectionCause::Other;
    }
    let from_verifier = |r: &String| r.starts_with("verifier: ");
    let merged_tests =
        |r: &String| r.contains("moved while the attempt ran") && r.contains("tests fail");
    let nothing = |r: &String| r.starts_with("the attempt changed nothing");
    let reasons = &attempt.reasons;
    if reasons.iter().any(merged_tests) {
        RejectionCause::Tests
    } else if reasons.is_empty() || reasons.iter().any(nothing) {
        RejectionCause::Other
    } else if reasons.iter().all(from_verifier) {
        if attempt.tests_passed == Some(false) {
            RejectionCause::Tests
        } else {
            RejectionCause::Verifier
        }
    } else {
        RejectionCause::Hooks
    }
}

/// Rejected attempts counted by what rejected them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Rejections {
    pub tests: u32,
    pub hooks: u32,
    pub verifier: u32,
    pub other: u32,
}

impl Rejections {
    fn count(&mut self, cause: RejectionCause) {
        match cause {
            RejectionCause::Tests => self.tests += 1,
            RejectionCause::Hooks => self.hooks += 1,
            RejectionCause::Verifier => self.verifier += 1,
            RejectionCause::Other => self.other += 1,
        }
    }

    fn add(&mut self, other: &Rejections) {
        self.tests += other.tests;
        self.hooks += other.hooks;
        self.verifier += other.verifier;
        self.other += other.other;
    }

    /// All rejected attempts.
    pub fn total(&self) -> u32 {
        self.tests + self.hooks + self.verifier + self.other
    }
}

/// One attempt in a report.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AttemptLine {
    pub number: u32,
    /// The run the attempt belongs to.
    pub run: String,
    pub model: String,
    /// `approved`, `rejected`, ... or `interrupted` (a crash or stop; no verdict).
    pub outcome: String,
    /// What rejected it (`tests`, `hooks`, `verifier`, `other`), when it was rejected.
    pub rejected_by: Option<RejectionCause>,
    /// Keyed by phase (`read-task`, `explore`, `implement`, `iterate`) for the agent's calls,
    /// by stage (`verify`, `route`, `check`) for the plugins' own model calls.
    pub phases: BTreeMap<String, Spend>,
    pub cost_micros: MicroUsd,
    /// How sure `cost_micros` is, and its calls and tries.
    pub certainty: CertaintySplit,
    /// What the verifier's own model calls cost (part of `cost_micros`).
    pub verifier_micros: MicroUsd,
    pub fuel: u64,
    pub wall_ms: u64,
    pub turns: u32,
    pub tests_passed: Option<bool>,
    /// The external agent that implemented it (`claude-code`); `None`: the built-in loop.
    pub implementer: Option<String>,
    /// What the ledger booked for the agent's own model calls in the attempt (the implement
    /// stage; the verifier's and the plugins' calls are not the agent's).
    pub agent_calls_micros: MicroUsd,
    /// The agent's own figure for the same calls (Claude Code's `total_cost_usd`), beside
    /// the ledger's; `None` when it gave none.
    pub agent_figure_micros: Option<MicroUsd>,
}

/// An external agent's attempts: the ledger's figure for its calls beside its own.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct AgentLine {
    pub implementer: String,
    pub attempts: u32,
    /// Attempts for which the agent gave its own figure.
    pub with_figure: u32,
    /// The ledger's figure for the agent's calls in the attempts with a figure.
    pub ledger_micros: MicroUsd,
    /// The agent's own figure for them.
    pub figure_micros: MicroUsd,
    /// The ledger's figure for the agent's calls in all its attempts.
    pub ledger_all_micros: MicroUsd,
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
    /// How sure `cost_micros` is, and its calls and tries.
    pub certainty: CertaintySplit,
    /// What the verifier's own model calls cost (part of `cost_micros`).
    pub verifier_micros: MicroUsd,
    pub fuel: u64,
    pub wall_ms: u64,
    pub turns: u32,
    /// Attempts whose tests failed (whatever then rejected them).
    pub test_failures: u32,
    /// Rejected attempts by what rejected them.
    pub rejections: Rejections,
}

/// A model's, a label's or a run's figures.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct GroupLine {
    pub name: String,
    pub attempts: u32,
    pub approved: u32,
    pub acceptance_rate: f64,
    pub cost_micros: MicroUsd,
    /// How sure `cost_micros` is, and its calls and tries.
    pub certainty: CertaintySplit,
    pub merged_tasks: u32,
    /// `cost_micros` over `merged_tasks`, rounded half up.
    pub cost_per_merged_micros: Option<MicroUsd>,
}

/// One run's spend.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct RunLine {
    pub run: String,
    /// First and last day with rows of the run.
    pub first_day: String,
    pub last_day: String,
    /// Tasks with rows in the run.
    pub tasks: u32,
    /// Every µ$ of the run's rows.
    pub cost_micros: MicroUsd,
    /// How sure `cost_micros` is, and its calls and tries.
    pub certainty: CertaintySplit,
}

/// The monthly projection, with what it rests on.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Projection {
    /// `observed` (the ledger's pace) or `given` (`--tasks-per-month`).
    pub basis: String,
    /// Finished tasks (not queued or running) the per-task cost is the mean of.
    pub finished_tasks: u32,
    /// Days with spend the observed pace is measured over.
    pub days: u32,
    /// Too few tasks (under [`MIN_PROJECTION_TASKS`]) or, at the observed pace, too few days
    /// (under [`MIN_PROJECTION_DAYS`]) to project a month: only the per-task figure is given.
    pub thin: bool,
    /// Tasks a month (absent when the observed pace is too thin to project).
    pub tasks_per_month: Option<f64>,
    pub cost_per_task_micros: MicroUsd,
    pub monthly_micros: Option<MicroUsd>,
    /// p5 and p95 of the monthly cost (bootstrap over the observed tasks' costs, seeded).
    pub monthly_p5_micros: Option<MicroUsd>,
    pub monthly_p95_micros: Option<MicroUsd>,
}

/// The comparison with a person, like for like: a person is paid only for the tasks that
/// merged, the agents' whole spend (failed work included) is set against it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HumanComparison {
    pub hourly_micros: MicroUsd,
    /// Tasks merged, the only ones a person's cost is counted for.
    pub merged_tasks: u32,
    /// A person's cost for the merged tasks.
    pub merged_tasks_micros: MicroUsd,
    /// gaffer's whole spend (failed work included) for the same period.
    pub agents_micros: MicroUsd,
    /// Per merged task: a person's cost, and the agents' whole spend shared over them.
    pub person_per_merged_micros: Option<MicroUsd>,
    pub agents_per_merged_micros: Option<MicroUsd>,
    /// Merged tasks a month: the projection's tasks a month at the observed merge rate
    /// (absent without a projection that is not thin).
    pub merged_per_month: Option<f64>,
    /// A person's monthly cost for `merged_per_month` tasks.
    pub monthly_micros: Option<MicroUsd>,
    /// The agents' monthly cost for the same merged tasks, at their spend per merged task.
    pub agents_monthly_micros: Option<MicroUsd>,
    /// The basis in words.
    pub basis: String,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Report {
    pub tasks: Vec<TaskLine>,
    /// By the model each attempt was routed to (all the attempt's rows).
    pub models: Vec<GroupLine>,
    pub labels: Vec<GroupLine>,
    pub runs: Vec<RunLine>,
    /// External agents: the ledger beside each agent's own figure.
    pub agents: Vec<AgentLine>,
    /// Every µ$ charged in the rows covered.
    pub total_micros: MicroUsd,
    /// How sure `total_micros` is: its parts add up to it exactly.
    pub certainty: CertaintySplit,
    /// Reservations held now by the rows covered (reserved or on the wire): not charged yet,
    /// so in no figure above.
    pub open_reserved_micros: MicroUsd,
    /// What the verifier's own model calls cost (part of `total_micros`).
    pub verifier_micros: MicroUsd,
    pub merged: u32,
    /// Spent on attempts that did not merge.
    pub unmerged_micros: MicroUsd,
    pub unmerged_share: f64,
    /// Rejected attempts by what rejected them.
    pub rejections: Rejections,
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
            certainty: CertaintySplit::default(),
            verifier_micros: MicroUsd::ZERO,
            fuel: 0,
            wall_ms: 0,
            turns: 0,
            test_failures: 0,
            rejections: Rejections::default(),
        };
        for number in numbers {
            let record = recorded.iter().find(|a| a.number == number);
            let attempt_rows: Vec<&LedgerRow> = task_rows
                .iter()
                .filter(|r| r.scope.attempt == Some(number))
                .map(|r| **r)
                .collect();
            let mut attempt = AttemptLine {
                number,
                run: record.map_or_else(
                    || {
                        attempt_rows
                            .first()
                            .map(|r| r.scope.run_id.clone())
                            .unwrap_or_default()
                    },
                    |a| a.run_id.clone(),
                ),
                model: record.map(|a| a.model.clone()).unwrap_or_default(),
                outcome: record.map_or_else(
                    || "interrupted".to_string(),
                    |a| a.outcome.name().to_string(),
                ),
                rejected_by: record.and_then(rejection_cause),
                phases: BTreeMap::new(),
                cost_micros: MicroUsd::ZERO,
                certainty: CertaintySplit::default(),
                verifier_micros: MicroUsd::ZERO,
                fuel: 0,
                wall_ms: record.map_or(0, |a| a.wall_ms),
                turns: record.map_or(0, |a| a.turns),
                tests_passed: record.and_then(|a| a.tests_passed),
                implementer: record.and_then(|a| a.implementer.clone()),
                agent_calls_micros: MicroUsd::ZERO,
                agent_figure_micros: record.and_then(|a| a.agent_cost),
            };
            for row in &attempt_rows {
                attempt.cost_micros = attempt.cost_micros.saturating_add(row.charged);
                if row.scope.role == Role::Agent && row.scope.stage == Stage::Implement {
                    attempt.agent_calls_micros =
                        attempt.agent_calls_micros.saturating_add(row.charged);
                }
                attempt.certainty.add(row);
                line.certainty.add(row);
                if row.scope.role == Role::Verifier {
                    attempt.verifier_micros = attempt.verifier_micros.saturating_add(row.charged);
                }
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
            line.verifier_micros = line.verifier_micros.saturating_add(attempt.verifier_micros);
            line.fuel = line.fuel.saturating_add(attempt.fuel);
            line.wall_ms = line.wall_ms.saturating_add(attempt.wall_ms);
            line.turns += attempt.turns;
            if attempt.tests_passed == Some(false) {
                line.test_failures += 1;
            }
            if let Some(cause) = attempt.rejected_by {
                line.rejections.count(cause);
            }
            let approved = u32::from(attempt.outcome == "approved");
            let g = group(&mut models, &attempt.model);
            g.attempts += 1;
            g.approved += approved;
            g.cost_micros = g.cost_micros.saturating_add(attempt.cost_micros);
            g.merged_tasks += approved;
            for row in &attempt_rows {
                g.certainty.add(row);
            }
            for label in &task.labels {
                let g = group(&mut labels, label);
                g.attempts += 1;
                g.approved += approved;
                g.cost_micros = g.cost_micros.saturating_add(attempt.cost_micros);
                for row in &attempt_rows {
                    g.certainty.add(row);
                }
            }
            line.attempts.push(attempt);
        }
        // Rows of no attempt (none today) still count toward the task.
        for row in task_rows.iter().filter(|r| r.scope.attempt.is_none()) {
            line.cost_micros = line.cost_micros.saturating_add(row.charged);
            line.certainty.add(row);
            if row.scope.role == Role::Verifier {
                line.verifier_micros = line.verifier_micros.saturating_add(row.charged);
            }
        }
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
    let mut certainty = CertaintySplit::default();
    let mut runs: BTreeMap<String, (RunLine, BTreeSet<&str>)> = BTreeMap::new();
    for r in &rows {
        certainty.add(r);
        let (run, run_tasks) = runs.entry(r.scope.run_id.clone()).or_insert_with(|| {
            (
                RunLine {
                    run: r.scope.run_id.clone(),
                    first_day: r.day.clone(),
                    last_day: r.day.clone(),
                    ..RunLine::default()
                },
                BTreeSet::new(),
            )
        });
        if r.day < run.first_day {
            run.first_day = r.day.clone();
        }
        if r.day > run.last_day {
            run.last_day = r.day.clone();
        }
        run.cost_micros = run.cost_micros.saturating_add(r.charged);
        run.certainty.add(r);
        if let Some(task) = r.scope.task_id.as_deref() {
            run_tasks.insert(task);
        }
    }
    let mut runs: Vec<RunLine> = runs
        .into_values()
        .map(|(mut run, run_tasks)| {
            run.tasks = run_tasks.len() as u32;
            run
        })
        .collect();
    runs.sort_by(|a, b| (&a.first_day, &a.run).cmp(&(&b.first_day, &b.run)));
    let mut agents: BTreeMap<String, AgentLine> = BTreeMap::new();
    for a in lines.iter().flat_map(|t| &t.attempts) {
        let Some(name) = &a.implementer else {
            continue;
        };
        let line = agents.entry(name.clone()).or_insert_with(|| AgentLine {
            implementer: name.clone(),
            ..AgentLine::default()
        });
        line.attempts += 1;
        line.ledger_all_micros = line.ledger_all_micros.saturating_add(a.agent_calls_micros);
        if let Some(figure) = a.agent_figure_micros {
            line.with_figure += 1;
            line.ledger_micros = line.ledger_micros.saturating_add(a.agent_calls_micros);
            line.figure_micros = line.figure_micros.saturating_add(figure);
        }
    }
    let open_reserved: MicroUsd = rows.iter().map(|r| r.open_reservation()).sum();
    let verifier: MicroUsd = rows
        .iter()
        .filter(|r| r.scope.role == Role::Verifier)
        .map(|r| r.charged)
        .sum();
    let mut rejections = Rejections::default();
    for l in &lines {
        rejections.add(&l.rejections);
    }
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
        .map(|h| compare_with_person(h, &lines, total, projection.as_ref()));
    Report {
        tasks: lines,
        models: models.into_values().collect(),
        labels: labels.into_values().collect(),
        runs,
        agents: agents.into_values().collect(),
        total_micros: total,
        certainty,
        open_reserved_micros: open_reserved,
        verifier_micros: verifier,
        merged,
        unmerged_micros: unmerged,
        unmerged_share: if total.is_zero() {
            0.0
        } else {
            unmerged.as_f64() / total.as_f64()
        },
        rejections,
        hardest,
        hardest_labels,
        projection,
        human,
        days: days.into_iter().collect(),
    }
}

fn finished(t: &TaskLine) -> bool {
    !matches!(t.state, TaskState::Queued | TaskState::Running)
}

/// A person's cost for the merged tasks against the agents' whole spend; per merged task on
/// both sides; a month of merged tasks on the same basis.
fn compare_with_person(
    h: &HumanRates,
    lines: &[TaskLine],
    total: MicroUsd,
    projection: Option<&Projection>,
) -> HumanComparison {
    let person = |t: &TaskLine| MicroUsd::from_f64(h.hours(&t.labels) * h.hourly.as_f64());
    let merged_lines: Vec<&TaskLine> = lines
        .iter()
        .filter(|t| t.state == TaskState::Merged)
        .collect();
    let merged = merged_lines.len() as u32;
    let merged_tasks_micros: MicroUsd = merged_lines.iter().map(|t| person(t)).sum();
    let person_per_merged = (merged > 0).then(|| merged_tasks_micros.per(u64::from(merged)));
    let agents_per_merged = (merged > 0).then(|| total.per(u64::from(merged)));
    // The projection's volume is of finished tasks; a person is paid for the share that merged.
    let merged_per_month = projection
        .filter(|p| !p.thin && p.finished_tasks > 0)
        .and_then(|p| p.tasks_per_month)
        .map(|per_month| {
            let finished_merged = lines
                .iter()
                .filter(|t| finished(t) && t.state == TaskState::Merged)
                .count() as f64;
            let finished_all = lines.iter().filter(|t| finished(t)).count().max(1) as f64;
            per_month * finished_merged / finished_all
        });
    let monthly = |per: Option<MicroUsd>| {
        merged_per_month
            .zip(per)
            .map(|(n, per)| MicroUsd::from_f64(n * per.as_f64()))
    };
    HumanComparison {
        hourly_micros: h.hourly,
        merged_tasks: merged,
        merged_tasks_micros,
        agents_micros: total,
        person_per_merged_micros: person_per_merged,
        agents_per_merged_micros: agents_per_merged,
        merged_per_month,
        monthly_micros: monthly(person_per_merged),
        agents_monthly_micros: monthly(agents_per_merged),
        basis: format!(
            "a person's hours for the {merged} merged tasks only, against the agents' whole \
             spend (failed and unfinished work included); per merged task and per month on \
             the same basis"
        ),
    }
}

/// The month at the observed pace (finished tasks per day over the days with spend) or at the
/// given volume; the spread comes from resampling the observed tasks' costs. Too few finished
/// tasks or days: the per-task figure only, marked thin.
fn project(
    lines: &[TaskLine],
    days: &BTreeMap<String, MicroUsd>,
    options: &Options,
) -> Option<Projection> {
    let costs: Vec<MicroUsd> = lines
        .iter()
        .filter(|t| finished(t))
        .map(|t| t.cost_micros)
        .collect();
    if costs.is_empty() {
        return None;
    }
    let finished_tasks = costs.len() as u32;
    let span = days.len() as u32;
    let (basis, per_month, thin) = match options.tasks_per_month {
        Some(n) => ("given", n, finished_tasks < MIN_PROJECTION_TASKS),
        None => (
            "observed",
            f64::from(finished_tasks) / f64::from(span.max(1)) * 30.0,
            finished_tasks < MIN_PROJECTION_TASKS || span < MIN_PROJECTION_DAYS,
        ),
    };
    let cost_per_task = costs.iter().sum::<MicroUsd>().per(costs.len() as u64);
    let mut projection = Projection {
        basis: basis.to_string(),
        finished_tasks,
        days: span,
        thin,
        tasks_per_month: (!thin || options.tasks_per_month.is_some()).then_some(per_month),
        cost_per_task_micros: cost_per_task,
        monthly_micros: None,
        monthly_p5_micros: None,
        monthly_p95_micros: None,
    };
    if thin {
        return Some(projection);
    }
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
    projection.monthly_micros = Some(MicroUsd::from_f64(cost_per_task.as_f64() * per_month));
    projection.monthly_p5_micros = Some(MicroUsd::from_f64(at(0.05) * per_month));
    projection.monthly_p95_micros = Some(MicroUsd::from_f64(at(0.95) * per_month));
    Some(projection)
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

/// The projection in one sentence, with what it rests on; a thin one gives the per-task figure
/// only and says why.
pub fn describe_projection(p: &Projection) -> String {
    let basis = format!(
        "{} finished task{} over {} day{} with spend",
        p.finished_tasks,
        if p.finished_tasks == 1 { "" } else { "s" },
        p.days,
        if p.days == 1 { "" } else { "s" }
    );
    let per_task = column_dollars(p.cost_per_task_micros);
    match (p.tasks_per_month, p.monthly_micros) {
        (Some(n), Some(monthly)) if !p.thin => format!(
            "month at {} tasks ({}, from {basis}): {} (p5 {} – p95 {}), {per_task} a finished task",
            n.round(),
            p.basis,
            column_dollars(monthly),
            p.monthly_p5_micros
                .map(column_dollars)
                .unwrap_or_else(|| "-".into()),
            p.monthly_p95_micros
                .map(column_dollars)
                .unwrap_or_else(|| "-".into()),
        ),
        _ => format!(
            "no monthly projection: {basis} is too thin a basis (it needs {MIN_PROJECTION_TASKS} \
             finished tasks{}); {per_task} a finished task",
            if p.basis == "observed" {
                format!(" and {MIN_PROJECTION_DAYS} days")
            } else {
                String::new()
            }
        ),
    }
}

/// The comparison with a person in sentences: the totals, per merged task, the month, the
/// basis.
pub fn describe_human(h: &HumanComparison) -> Vec<String> {
    let mut out = vec![format!(
        "a person at {}/h: {} for the {} merged tasks, against {} spent by agents",
        format_dollars(h.hourly_micros),
        column_dollars(h.merged_tasks_micros),
        h.merged_tasks,
        column_dollars(h.agents_micros),
    )];
    if let (Some(person), Some(agents)) = (h.person_per_merged_micros, h.agents_per_merged_micros) {
        out.push(format!(
            "per merged task: a person {}, the agents {}",
            column_dollars(person),
            column_dollars(agents)
        ));
    }
    match (
        h.merged_per_month,
        h.monthly_micros,
        h.agents_monthly_micros,
    ) {
        (Some(n), Some(person), Some(agents)) => out.push(format!(
            "a month at {} merged tasks: a person {}, the agents {}",
            n.round(),
            column_dollars(person),
            column_dollars(agents)
        )),
        _ => out.push("no monthly comparison: no projection to rest it on".to_string()),
    }
    out.push(format!("basis: {}", h.basis));
    out
}

/// The report as terminal tables. Dollar columns have four decimals; the certainty lines are
/// to the micro-dollar, so that their parts visibly add up.
/// An external agent's attempt: the ledger's figure for its calls beside its own.
pub fn describe_agent_figure(agent: &str, a: &AttemptLine) -> String {
    match a.agent_figure_micros {
        Some(figure) => format!(
            "by {agent}: its calls {} in the ledger, {} by its own figure",
            exact_dollars(a.agent_calls_micros),
            exact_dollars(figure)
        ),
        None => format!(
            "by {agent}: its calls {} in the ledger; it gave no figure of its own",
            exact_dollars(a.agent_calls_micros)
        ),
    }
}

/// The external agents' section of the text report (empty when none implemented).
fn agents_text(r: &Report) -> String {
    if r.agents.is_empty() {
        return String::new();
    }
    let mut s = format!(
        "\nexternal agents (the ledger's figure for their calls beside their own)\n  {:<14} {:>8} {:>14} {:>14} {:>14}\n",
        "agent", "attempts", "ledger", "own figure", "difference"
    );
    for g in &r.agents {
        let difference = i128::from(g.figure_micros.get()) - i128::from(g.ledger_micros.get());
        s.push_str(&format!(
            "  {:<14} {:>8} {:>14} {:>14} {:>11} µ$\n",
            g.implementer,
            g.attempts,
            exact_dollars(g.ledger_micros),
            exact_dollars(g.figure_micros),
            difference
        ));
        if g.with_figure < g.attempts {
            s.push_str(&format!(
                "    {} of {} attempts gave no figure; the ledger has {} for all of them\n",
                g.attempts - g.with_figure,
                g.attempts,
                exact_dollars(g.ledger_all_micros)
            ));
        }
    }
    s
}

pub fn render_text(r: &Report) -> String {
    let mut s = String::new();
    s.push_str(
        "tasks (rejected t/h/v: attempts rejected by failing tests / the hooks / the verifier)\n",
    );
    s.push_str(&format!(
        "  {:<8} {:<18} {:>8} {:>12} {:>12} {:>6} {:>14}  title\n",
        "task", "state", "attempts", "cost", "verifier", "turns", "rejected t/h/v"
    ));
    for t in &r.tasks {
        s.push_str(&format!(
            "  {:<8} {:<18} {:>8} {:>12} {:>12} {:>6} {:>14}  {}\n",
            t.id,
            t.state.to_string(),
            t.attempts.len(),
            column_dollars(t.cost_micros),
            column_dollars(t.verifier_micros),
            t.turns,
            format!(
                "{}/{}/{}",
                t.rejections.tests, t.rejections.hooks, t.rejections.verifier
            ),
            t.title
        ));
        s.push_str(&format!(
            "      how sure: {} = {}\n",
            t.certainty.describe(),
            exact_dollars(t.cost_micros)
        ));
        for a in &t.attempts {
            let mut phases: Vec<(&String, &Spend)> = a.phases.iter().collect();
            phases.sort_by_key(|(p, _)| phase_order(p));
            let phases: Vec<String> = phases
                .iter()
                .map(|(p, sp)| format!("{p} {}", column_dollars(sp.cost_micros)))
                .collect();
            let outcome = match a.rejected_by {
                Some(cause) => format!("{} ({})", a.outcome, cause.name()),
                None => a.outcome.clone(),
            };
            s.push_str(&format!(
                "      attempt {} {:<12} {:<20} {:>12}  fuel {}  {} ms  {}\n",
                a.number,
                a.model,
                outcome,
                column_dollars(a.cost_micros),
                a.fuel,
                a.wall_ms,
                phases.join(", ")
            ));
            if let Some(agent) = &a.implementer {
                s.push_str(&format!("        {}\n", describe_agent_figure(agent, a)));
            }
        }
    }
    s.push_str(&agents_text(r));
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
                column_dollars(g.cost_micros),
                g.merged_tasks,
                g.cost_per_merged_micros
                    .map(column_dollars)
                    .unwrap_or_else(|| "-".into())
            ));
            s.push_str(&format!("      how sure: {}\n", g.certainty.describe()));
        }
    }
    if !r.runs.is_empty() {
        s.push_str(&format!(
            "\nruns\n  {:<36} {:<23} {:>6} {:>12}\n",
            "run", "days", "tasks", "cost"
        ));
        for run in &r.runs {
            let days = if run.first_day == run.last_day {
                run.first_day.clone()
            } else {
                format!("{} – {}", run.first_day, run.last_day)
            };
            s.push_str(&format!(
                "  {:<36} {:<23} {:>6} {:>12}\n      how sure: {}\n",
                run.run,
                days,
                run.tasks,
                column_dollars(run.cost_micros),
                run.certainty.describe()
            ));
        }
    }
    let c = &r.certainty;
    s.push_str(&format!(
        "\ntotal {} · {} merged · {} ({:.1}%) on attempts that did not merge\n",
        column_dollars(r.total_micros),
        r.merged,
        column_dollars(r.unmerged_micros),
        r.unmerged_share * 100.0
    ));
    s.push_str(&format!(
        "how sure: measured {} + estimated {} + overrun {} = {} (the ledger, to the µ$)\n",
        exact_dollars(c.measured_micros),
        exact_dollars(c.estimated_micros),
        exact_dollars(c.overrun_micros),
        exact_dollars(r.total_micros),
    ));
    s.push_str(&format!(
        "  {} calls in {} tries; estimated tries: {} without usage, {} recovered after a crash; \
         overrun tries: {}; free tries (not billed): {}\n",
        c.calls,
        c.tries,
        c.usage_missing_tries,
        c.recovered_tries,
        c.overrun_tries,
        c.unbilled_tries
    ));
    if !r.open_reserved_micros.is_zero() {
        s.push_str(&format!(
            "  held now in open reservations, not charged: {}\n",
            exact_dollars(r.open_reserved_micros)
        ));
    }
    s.push_str(&format!(
        "verifier: {} of the total (its own model calls)\n",
        column_dollars(r.verifier_micros)
    ));
    s.push_str(&format!(
        "rejected attempts: {} by tests, {} by hooks, {} by the verifier, {} other\n",
        r.rejections.tests, r.rejections.hooks, r.rejections.verifier, r.rejections.other
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
        s.push_str(&describe_projection(p));
        s.push('\n');
    }
    if let Some(h) = &r.human {
        for line in describe_human(h) {
            s.push_str(&line);
            s.push('\n');
        }
    }
    s
}

/// One CSV row per attempt, with its phases' costs as columns, how sure its cost is, what the
/// verifier cost and what rejected it (dollars with six decimals). Its run, model and task
/// columns give every grouping of the report.
pub fn render_csv(r: &Report) -> String {
    let mut header: Vec<String> = [
        "task",
        "title",
        "labels",
        "state",
        "run",
        "attempt",
        "model",
        "outcome",
        "rejected_by",
        "cost_usd",
        "measured_usd",
        "estimated_usd",
        "overrun_usd",
        "verifier_usd",
        "calls",
        "tries",
        "usage_missing_tries",
        "recovered_tries",
        "overrun_tries",
        "unbilled_tries",
        "input",
        "output",
        "cache_read",
        "cache_write",
        "fuel",
        "wall_ms",
        "turns",
        "tests_passed",
        "implementer",
        "agent_calls_usd",
        "agent_figure_usd",
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
            let c = &a.certainty;
            let mut record: Vec<String> = vec![
                t.id.clone(),
                t.title.clone(),
                t.labels.join(";"),
                t.state.to_string(),
                a.run.clone(),
                a.number.to_string(),
                a.model.clone(),
                a.outcome.clone(),
                a.rejected_by
                    .map(|c| c.name().to_string())
                    .unwrap_or_default(),
                decimal_dollars(a.cost_micros),
                decimal_dollars(c.measured_micros),
                decimal_dollars(c.estimated_micros),
                decimal_dollars(c.overrun_micros),
                decimal_dollars(a.verifier_micros),
                c.calls.to_string(),
                c.tries.to_string(),
                c.usage_missing_tries.to_string(),
                c.recovered_tries.to_string(),
                c.overrun_tries.to_string(),
                c.unbilled_tries.to_string(),
                tokens.input.to_string(),
                tokens.output.to_string(),
                tokens.cache_read.to_string(),
                tokens.cache_write.to_string(),
                a.fuel.to_string(),
                a.wall_ms.to_string(),
                a.turns.to_string(),
                a.tests_passed.map(|p| p.to_string()).unwrap_or_default(),
                a.implementer.clone().unwrap_or_default(),
                decimal_dollars(a.agent_calls_micros),
                a.agent_figure_micros
                    .map(decimal_dollars)
                    .unwrap_or_default(),
            ];
            record.extend(spend_keys().map(|p| {
                decimal_dollars(a.phases.get(p).map_or(MicroUsd::ZERO, |sp| sp.cost_micros))
            }));
            let _ = out.write_record(&record);
        }
    }
    String::from_utf8(out.into_inner().unwrap_or_default()).unwrap_or_default()
}
