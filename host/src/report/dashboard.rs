//! `gaffer serve`: a local dashboard over the project's store, the place to watch a run from —
//! every task with its state, attempts, models, cost and how sure that cost is (sortable,
//! filterable, live), what is running with its spend against the attempt and task caps, spend
//! against every other cap, the report's charts, and a page per task with each attempt, why it
//! ended so, and every ledger row. No external resource (ECharts is inline): a small script
//! polls `/api/status`, `/api/tasks` and `/api/charts` and redraws the live parts, charts
//! included, without a reload.
//!
//! It has no authentication, so it listens on loopback by default and answers only requests
//! addressed to the address it listens on: a page elsewhere that points a name of its own at
//! 127.0.0.1 (DNS rebinding) gets 421, not the ledger.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};

use super::assets::echarts_script;
use super::html::{CapLines, chart_data, charts, esc};
use super::ledger_report::{
    CertaintySplit, History, Options, Spend, TaskLine, build, column_dollars, exact_dollars,
    rejection_cause,
};
use crate::ledger::{Caps, MicroUsd, format_dollars};
use crate::store::{
    CapLevel, ChangedFile, HostRecord, LedgerRow, RejectionCause, RowScope, Stage, StoreError,
    TaskRecord, TaskState,
};

/// What the dashboard reads.
pub use crate::store::Store as DashboardStore;

/// The dashboard's state: the store and the caps to show spend against.
pub struct Dashboard {
    /// The project's store, read on every request.
    pub store: Arc<dyn DashboardStore>,
    /// The caps spend is shown against.
    pub caps: Caps,
    /// The page's heading.
    pub title: String,
    /// The project's repository, for the diff summary of a task's merged work (`None`: the
    /// task page says there is none to read).
    pub repo: Option<PathBuf>,
}

/// Spend in one period (the day, the month, all time), settled and reserved apart.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CapSpend {
    /// Charged: settled calls.
    pub settled_micros: MicroUsd,
    /// Held now by open reservations (reserved, or on the wire), not charged yet.
    pub reserved_micros: MicroUsd,
    /// `settled_micros + reserved_micros`: what the cap counts against its limit.
    pub spent_micros: MicroUsd,
    pub cap_micros: Option<MicroUsd>,
    /// The cap less `spent_micros`.
    pub left_micros: Option<MicroUsd>,
}

impl CapSpend {
    fn new(settled: MicroUsd, reserved: MicroUsd, cap: Option<MicroUsd>) -> CapSpend {
        let spent = settled.saturating_add(reserved);
        CapSpend {
            settled_micros: settled,
            reserved_micros: reserved,
            spent_micros: spent,
            cap_micros: cap,
            left_micros: cap.map(|c| c.saturating_sub(spent)),
        }
    }
}

/// A running task.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunningTask {
    pub id: String,
    pub title: String,
    pub stage: Option<Stage>,
    /// The attempt running (the task's attempts started so far).
    pub attempt: u32,
    pub worker: Option<String>,
    /// Charged to the task so far, every attempt.
    pub settled_micros: MicroUsd,
    /// Held now by the task's open reservations.
    pub reserved_micros: MicroUsd,
    /// Charged to the running attempt so far.
    pub attempt_settled_micros: MicroUsd,
    /// Held now by the running attempt's open reservations.
    pub attempt_reserved_micros: MicroUsd,
}

/// The live figures `gaffer status` prints and the dashboard shows: tasks by state, spend
/// (settled and reserved apart) for the day, the month and all time against the caps, what is
/// running.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    /// Every state, in the order tasks move through them, with its count.
    pub tasks: BTreeMap<&'static str, usize>,
    /// `day`, `month` (the store's current UTC day and month) and `all` (all time, no cap).
    pub spend: BTreeMap<&'static str, CapSpend>,
    /// Settled in all time (charged; open reservations are in `spend.all.reserved_micros`).
    pub spent_all_time_micros: MicroUsd,
    pub per_task_cap_micros: Option<MicroUsd>,
    /// The cap on one attempt, which a running attempt's spend is shown against.
    pub per_attempt_cap_micros: Option<MicroUsd>,
    pub running: Vec<RunningTask>,
    /// The runs on this store, on every host: the live ones, then the last few that stopped.
    pub hosts: Vec<HostLine>,
}

/// One run on the store (a `gaffer run` process on some host) and what its workers hold.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HostLine {
    /// `host:pid` (`host~<pid namespace>:pid` inside a container).
    pub owner: String,
    pub run_id: String,
    pub workers: u32,
    /// Its workers' tasks now.
    pub busy: Vec<String>,
    /// `live`, `left` (stopped cleanly) or `lapsed` (its lease ran out: it died, or lost the
    /// database; its tasks and open rows are taken over by the others).
    pub state: &'static str,
    pub started_at: String,
    pub seen_at: String,
}

/// Runs that stopped shown after the live ones.
const STOPPED_HOSTS_SHOWN: usize = 5;

impl HostLine {
    fn from_record(h: HostRecord, tasks: &[TaskRecord]) -> HostLine {
        HostLine {
            busy: tasks
                .iter()
                .filter(|t| {
                    t.state == TaskState::Running && t.lease_owner.as_deref() == Some(&h.owner)
                })
                .map(|t| t.id.clone())
                .collect(),
            state: if h.live {
                "live"
            } else if h.left {
                "left"
            } else {
                "lapsed"
            },
            owner: h.owner,
            run_id: h.run_id,
            workers: h.workers,
            started_at: h.started_at,
            seen_at: h.seen_at,
        }
    }
}

/// The periods of [`Status::spend`], in the order they are shown.
pub const PERIODS: [&str; 3] = ["day", "month", "all"];

/// The states in the order tasks move through them.
pub const STATES: [TaskState; 7] = [
    TaskState::Queued,
    TaskState::Running,
    TaskState::RejectedRequeued,
    TaskState::Merged,
    TaskState::NeedsHuman,
    TaskState::BudgetExhausted,
    TaskState::Failed,
];

impl Status {
    /// Read the figures from the store: the caps' totals (which count open reservations) less
    /// the open reservations of the period are what was settled in it.
    pub fn read(store: &dyn DashboardStore, caps: &Caps) -> Result<Status, StoreError> {
        let tasks = store.tasks()?;
        let open = store.open_rows()?;
        // The store's clock, which dated the rows and keys the day and month totals.
        let (today, this_month) = store.today()?;
        // Day and month totals do not depend on the run.
        let scope = RowScope::of_run("");
        let mut spend = BTreeMap::new();
        for (name, level, cap) in [
            ("day", CapLevel::Day, caps.per_day),
            ("month", CapLevel::Month, caps.per_month),
        ] {
            let counted = store.spent(level, &scope)?;
            let reserved: MicroUsd = open
                .iter()
                .filter(|r| match level {
                    CapLevel::Day => r.day == today,
                    _ => r.month == this_month,
                })
                .map(|r| r.open_reservation())
                .sum();
            spend.insert(
                name,
                CapSpend::new(counted.saturating_sub(reserved), reserved, cap),
            );
        }
        let settled_all: MicroUsd = store.rows()?.iter().map(|r| r.charged).sum();
        let reserved_all: MicroUsd = open.iter().map(|r| r.open_reservation()).sum();
        spend.insert("all", CapSpend::new(settled_all, reserved_all, None));
        let mut running = Vec::new();
        for t in tasks.iter().filter(|t| t.state == TaskState::Running) {
            let rows = store.task_rows(&t.id)?;
            let this_attempt = |r: &&LedgerRow| r.scope.attempt == Some(t.attempts);
            running.push(RunningTask {
                id: t.id.clone(),
                title: t.title.clone(),
                stage: t.stage,
                attempt: t.attempts,
                worker: t.lease_owner.clone(),
                settled_micros: rows.iter().map(|r| r.charged).sum(),
                reserved_micros: rows.iter().map(|r| r.open_reservation()).sum(),
                attempt_settled_micros: rows.iter().filter(this_attempt).map(|r| r.charged).sum(),
                attempt_reserved_micros: rows
                    .iter()
                    .filter(this_attempt)
                    .map(|r| r.open_reservation())
                    .sum(),
            });
        }
        let mut stopped = 0;
        let hosts = store
            .hosts()?
            .into_iter()
            .filter(|h| {
                h.live || {
                    stopped += 1;
                    stopped <= STOPPED_HOSTS_SHOWN
                }
            })
            .map(|h| HostLine::from_record(h, &tasks))
            .collect();
        Ok(Status {
            tasks: STATES
                .iter()
                .map(|s| (s.name(), tasks.iter().filter(|t| t.state == *s).count()))
                .collect(),
            spend,
            spent_all_time_micros: settled_all,
            per_task_cap_micros: caps.per_task,
            per_attempt_cap_micros: caps.per_attempt,
            running,
            hosts,
        })
    }
}

/// One task in the dashboard's table (`/api/tasks`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct TaskRow {
    pub id: String,
    pub title: String,
    pub labels: Vec<String>,
    pub state: TaskState,
    /// The stage of a running task.
    pub stage: Option<Stage>,
    /// Attempts started so far (a running one included).
    pub attempts: u32,
    /// The models its attempts used, in the order first used.
    pub models: Vec<String>,
    /// Every µ$ charged to it, all attempts and roles.
    pub cost_micros: MicroUsd,
    /// How sure `cost_micros` is.
    pub certainty: CertaintySplit,
    /// Held now by its open reservations (not in `cost_micros`).
    pub reserved_micros: MicroUsd,
    /// Why it is in its state (the last verdict, the cap that stopped it, ...).
    pub reason: Option<String>,
}

/// One attempt on a task's page.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AttemptView {
    pub number: u32,
    pub run: String,
    pub model: String,
    /// `approved`, `rejected`, ..., `running` (the attempt under way) or `interrupted`.
    pub outcome: String,
    /// What rejected it, when it was rejected.
    pub rejected_by: Option<RejectionCause>,
    /// The verifier's findings, the hooks' denials, the failing tests, the cap.
    pub reasons: Vec<String>,
    /// Tokens and dollars by phase (agent calls) or stage (plugins' own model calls).
    pub phases: BTreeMap<String, Spend>,
    pub cost_micros: MicroUsd,
    pub certainty: CertaintySplit,
    /// Held now by its open reservations.
    pub reserved_micros: MicroUsd,
    pub verifier_micros: MicroUsd,
    pub tests_passed: Option<bool>,
    pub turns: u32,
    pub wall_ms: u64,
    /// The files its change touched, as the pipeline recorded them when it diffed the attempt
    /// (empty: no change, not diffed yet, or recorded before gaffer kept them).
    pub changed: Vec<ChangedFile>,
    /// The external agent that implemented it; `None` for the built-in loop.
    pub implementer: Option<String>,
    /// The ledger's figure for the agent's own calls.
    pub agent_calls_micros: MicroUsd,
    /// The agent's own figure for them, when it gave one.
    pub agent_figure_micros: Option<MicroUsd>,
}

/// One ledger row on a task's page: one try of one model call, or one plugin run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RowView {
    pub id: i64,
    /// The call it is a try of; `None` for a plugin run.
    pub call_id: Option<i64>,
    /// Which try of its call (1 for the first).
    pub try_number: Option<u32>,
    pub attempt: Option<u32>,
    pub run: String,
    pub stage: Stage,
    pub phase: Option<&'static str>,
    pub role: &'static str,
    /// Model key, or plugin name for a plugin run.
    pub model: String,
    /// `reserved`, `sent`, `settled` or `released`.
    pub state: &'static str,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub reserved_micros: MicroUsd,
    pub charged_micros: MicroUsd,
    /// `measured`, `estimated`, `overrun`; `open` while its reservation is held; `not billed`
    /// for a try the provider certainly did not bill, `released` for a reservation given back
    /// before it was sent; `plugin run` for a plugin's row (fuel and time, no money).
    pub certainty: &'static str,
    /// What the provider answered or the plugin decided.
    pub outcome: Option<String>,
    pub fuel: u64,
    pub wall_ms: u64,
}

impl RowView {
    fn of(r: &LedgerRow) -> RowView {
        RowView {
            id: r.id,
            call_id: r.call_id,
            try_number: r.try_number,
            attempt: r.scope.attempt,
            run: r.scope.run_id.clone(),
            stage: r.scope.stage,
            phase: r.scope.phase.map(|p| p.name()),
            role: r.scope.role.name(),
            model: r.scope.model.clone(),
            state: r.state.name(),
            input_tokens: r.tokens.input,
            output_tokens: r.tokens.output,
            cache_read_tokens: r.tokens.cache_read,
            cache_write_tokens: r.tokens.cache_write,
            reserved_micros: r.reserved,
            charged_micros: r.charged,
            certainty: match r.certainty() {
                _ if !r.is_model_call() => "plugin run",
                Some(c) => c.name(),
                None if r.released_unbilled() => "not billed",
                None if r.open_reservation().is_zero() => "released",
                None => "open",
            },
            outcome: r.outcome.clone(),
            fuel: r.fuel,
            wall_ms: r.wall_ms,
        }
    }
}

/// One commit of a task's work, with its size.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CommitStat {
    pub commit: String,
    pub subject: String,
    pub files: u64,
    pub insertions: u64,
    pub deletions: u64,
}

/// What the repository keeps of a task's work: the commits on its local branches whose subject
/// is the task's (`T-n: title`, as the pipeline writes it), merged or parked on
/// `gaffer/merged/<task>`. Each attempt's own changed files (rejected ones too) are on its
/// [`AttemptView`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct DiffSummary {
    pub commits: Vec<CommitStat>,
    /// Where the summary comes from, or why there is none.
    pub note: String,
}

/// A task's page (`/tasks/<id>`) and its JSON twin (`/api/tasks/<id>`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct TaskDetail {
    pub id: String,
    pub title: String,
    pub body: String,
    pub labels: Vec<String>,
    pub paths: Vec<String>,
    pub source: Option<String>,
    pub state: TaskState,
    pub stage: Option<Stage>,
    /// Attempts started so far.
    pub attempts_started: u32,
    pub reason: Option<String>,
    pub worker: Option<String>,
    /// Charged to it, all attempts and roles.
    pub cost_micros: MicroUsd,
    pub certainty: CertaintySplit,
    /// Held now by its open reservations.
    pub reserved_micros: MicroUsd,
    pub per_attempt_cap_micros: Option<MicroUsd>,
    pub per_task_cap_micros: Option<MicroUsd>,
    pub attempts: Vec<AttemptView>,
    /// Every row of the task, oldest first.
    pub rows: Vec<RowView>,
    pub diff: DiffSummary,
}

/// What a request for a page or its data can fail with.
#[derive(Debug)]
pub enum DashboardError {
    /// No task has this id.
    NoSuchTask(String),
    /// The store failed.
    Store(String),
}

impl From<StoreError> for DashboardError {
    fn from(e: StoreError) -> Self {
        DashboardError::Store(e.to_string())
    }
}

/// Characters of a task id kept as they are in a URL path; every other byte is %-encoded.
fn url_path_segment(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn usd(amount: MicroUsd) -> String {
    column_dollars(amount)
}

fn cap_text(cap: Option<MicroUsd>) -> String {
    cap.map(usd).unwrap_or_else(|| "no cap".into())
}

/// The distinct values of a sequence, in the order first seen.
fn distinct<'a>(items: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    items
        .filter(|m| !m.is_empty() && seen.insert(*m))
        .map(str::to_string)
        .collect()
}

impl Dashboard {
    /// The live figures.
    pub fn status(&self) -> Result<Status, String> {
        Status::read(self.store.as_ref(), &self.caps).map_err(|e| e.to_string())
    }

    fn report(&self) -> Result<super::ledger_report::Report, String> {
        let history = History::read(self.store.as_ref()).map_err(|e| e.to_string())?;
        Ok(history.report(&Options::default()))
    }

    fn cap_lines(&self) -> CapLines {
        CapLines {
            per_day: self.caps.per_day,
            per_month: self.caps.per_month,
        }
    }

    /// The charts' data (`/api/charts`), for the page's script to redraw them with.
    pub fn charts(&self) -> Result<serde_json::Value, String> {
        Ok(chart_data(&self.report()?, self.cap_lines()))
    }

    /// Every task, in the order added, from the report's lines and the backlog.
    pub fn tasks(&self) -> Result<Vec<TaskRow>, String> {
        let history = History::read(self.store.as_ref()).map_err(|e| e.to_string())?;
        let report = history.report(&Options::default());
        Ok(task_rows(&history, &report.tasks))
    }

    /// One task end to end; `NoSuchTask` when no task has `id`.
    pub fn task(&self, id: &str) -> Result<TaskDetail, DashboardError> {
        let Some(task) = self.store.task(id)? else {
            return Err(DashboardError::NoSuchTask(id.to_string()));
        };
        let records = self.store.attempts(id)?;
        let rows = self.store.task_rows(id)?;
        let report = build(
            std::slice::from_ref(&task),
            &BTreeMap::from([(task.id.clone(), records.clone())]),
            &rows,
            &Options::default(),
        );
        let line = report.tasks.into_iter().next();
        let mut attempts = Vec::new();
        for a in line.as_ref().map(|l| l.attempts.as_slice()).unwrap_or(&[]) {
            let record = records.iter().find(|r| r.number == a.number);
            let running =
                record.is_none() && task.state == TaskState::Running && a.number == task.attempts;
            attempts.push(AttemptView {
                number: a.number,
                run: a.run.clone(),
                model: a.model.clone(),
                outcome: if running {
                    "running".to_string()
                } else {
                    a.outcome.clone()
                },
                rejected_by: record.and_then(rejection_cause),
                reasons: record.map(|r| r.reasons.clone()).unwrap_or_default(),
                changed: record.map(|r| r.changed.clone()).unwrap_or_default(),
                phases: a.phases.clone(),
                cost_micros: a.cost_micros,
                certainty: a.certainty.clone(),
                reserved_micros: rows
                    .iter()
                    .filter(|r| r.scope.attempt == Some(a.number))
                    .map(|r| r.open_reservation())
                    .sum(),
                verifier_micros: a.verifier_micros,
                tests_passed: a.tests_passed,
                turns: a.turns,
                wall_ms: a.wall_ms,
                implementer: a.implementer.clone(),
                agent_calls_micros: a.agent_calls_micros,
                agent_figure_micros: a.agent_figure_micros,
            });
        }
        let diff = self.diff_summary(&task.id);
        Ok(TaskDetail {
            cost_micros: line.as_ref().map_or(MicroUsd::ZERO, |l| l.cost_micros),
            certainty: line.map(|l| l.certainty).unwrap_or_default(),
            reserved_micros: rows.iter().map(|r| r.open_reservation()).sum(),
            per_attempt_cap_micros: self.caps.per_attempt,
            per_task_cap_micros: self.caps.per_task,
            attempts,
            rows: rows.iter().map(RowView::of).collect(),
            diff,
            id: task.id,
            title: task.title,
            body: task.body,
            labels: task.labels,
            paths: task.paths,
            source: task.source,
            state: task.state,
            stage: task.stage,
            attempts_started: task.attempts,
            reason: task.reason,
            worker: task.lease_owner,
        })
    }

    /// The commits of the task's work on the repository's local branches, with `git log
    /// --shortstat` (one git process; nothing when there is no repository).
    fn diff_summary(&self, id: &str) -> DiffSummary {
        let none = |note: &str| DiffSummary {
            commits: Vec::new(),
            note: note.to_string(),
        };
        let Some(repo) = &self.repo else {
            return none("no repository to read the task's commits from");
        };
        let prefix = format!("{id}: ");
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(repo)
            .args([
                "log",
                "--branches",
                "--no-merges",
                "--fixed-strings",
                "--shortstat",
                "--format=%x1e%H%x1f%s",
            ])
            .arg(format!("--grep={prefix}"))
            .stdin(std::process::Stdio::null())
            .output();
        let out = match out {
            Ok(o) if o.status.success() => o,
            Ok(o) => {
                return none(&format!(
                    "git log failed: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ));
            }
            Err(e) => return none(&format!("git does not run: {e}")),
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let mut commits = Vec::new();
        for entry in text.split('\u{1e}').filter(|e| !e.trim().is_empty()) {
            let (head, stat) = entry.split_once('\n').unwrap_or((entry, ""));
            let Some((commit, subject)) = head.split_once('\u{1f}') else {
                continue;
            };
            if !subject.starts_with(&prefix) {
                continue;
            }
            let number = |word: &str| {
                stat.split(',')
                    .find(|part| part.contains(word))
                    .and_then(|part| part.split_whitespace().next())
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            commits.push(CommitStat {
                commit: commit.to_string(),
                subject: subject.to_string(),
                files: number("changed"),
                insertions: number("insertion"),
                deletions: number("deletion"),
            });
        }
        let note = if commits.is_empty() {
            "no commit of this task on the repository's branches: it has not merged (each \
             attempt's changed files are listed with the attempt)"
        } else {
            "commits on the repository's branches whose subject is the task's, from git log \
             --shortstat (each attempt's changed files, rejected ones too, are listed with it)"
        };
        DiffSummary {
            commits,
            note: note.to_string(),
        }
    }

    /// The dashboard page: the live figures (in the HTML as loaded, then redrawn by the script),
    /// every task, what is running, then the charts.
    pub fn page(&self) -> Result<String, String> {
        let status = self.status()?;
        let history = History::read(self.store.as_ref()).map_err(|e| e.to_string())?;
        let report = history.report(&Options::default());
        let tasks = task_rows(&history, &report.tasks);
        let caps = self.cap_lines();
        let mut states = String::new();
        for state in STATES {
            let name = state.name();
            states.push_str(&format!(
                "<tr><td>{name}</td><td class=\"num\" data-state=\"{name}\">{}</td></tr>",
                status.tasks.get(name).copied().unwrap_or(0)
            ));
        }
        let mut spend = String::new();
        for level in PERIODS {
            let Some(cap) = status.spend.get(level) else {
                continue;
            };
            spend.push_str(&format!(
                "<tr><td>{level}</td><td class=\"num\" data-settled=\"{level}\">{}</td><td class=\"num\" data-reserved=\"{level}\">{}</td><td class=\"num\" data-spent=\"{level}\">{}</td><td class=\"num\">{}</td></tr>",
                usd(cap.settled_micros),
                usd(cap.reserved_micros),
                usd(cap.spent_micros),
                cap_text(cap.cap_micros),
            ));
        }
        let mut running = String::new();
        for t in &status.running {
            running.push_str(&running_row(
                t,
                status.per_attempt_cap_micros,
                status.per_task_cap_micros,
            ));
        }
        if status.running.is_empty() {
            running.push_str(NOTHING_RUNNING);
        }
        let mut hosts = String::new();
        for h in &status.hosts {
            hosts.push_str(&host_row(h));
        }
        if status.hosts.is_empty() {
            hosts.push_str(NO_HOSTS);
        }
        let mut task_table = String::new();
        for t in &tasks {
            task_table.push_str(&task_row(t));
        }
        let mut state_options = String::new();
        for state in STATES {
            state_options.push_str(&format!("<option>{}</option>", state.name()));
        }
        let mut label_options = String::new();
        let labels: BTreeSet<&str> = tasks
            .iter()
            .flat_map(|t| t.labels.iter().map(String::as_str))
            .collect();
        for label in labels {
            label_options.push_str(&format!("<option>{}</option>", esc(label)));
        }
        let total = status.spent_all_time_micros;
        Ok(format!(
            r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>{STYLE}</style>
{echarts}</head>
<body><h1>{title}</h1>
<p>Spent in all: <b id="total" data-micros="{total}">{total_usd}</b> · updated <span id="updated">at load</span></p>
<table id="backlog"><tr><th>backlog</th><th>tasks</th></tr>{states}</table>
<table id="spend"><tr><th>spend</th><th>settled</th><th>reserved now</th><th>counted by the cap</th><th>cap</th></tr>{spend}</table>
<h2>Hosts</h2>
<table id="hosts"><thead><tr><th>run</th><th>state</th><th>workers</th><th>working on</th><th>last seen</th></tr></thead><tbody>{hosts}</tbody></table>
<h2>Running</h2>
<table id="running"><thead><tr><th>task</th><th>stage</th><th>attempt</th><th>this attempt: settled + reserved now</th><th>of the attempt cap ({attempt_cap})</th><th>the task: settled + reserved now</th><th>of the task cap ({task_cap})</th></tr></thead><tbody>{running}</tbody></table>
<h2>Tasks</h2>
<p class="filters"><label>state <select id="state-filter"><option value="">all</option>{state_options}</select></label>
<label>label <select id="label-filter"><option value="">all</option>{label_options}</select></label>
<span id="shown">{shown} of {shown} tasks</span> · click a column to sort</p>
<table id="tasks"><thead><tr><th data-sort="id">task</th><th data-sort="title">title</th><th data-sort="labels">labels</th><th data-sort="state">state</th><th data-sort="attempts">attempts</th><th data-sort="models">models</th><th data-sort="cost_micros" class="num">cost</th><th data-sort="measured_micros" class="num">measured</th><th data-sort="estimated_micros" class="num">estimated</th><th data-sort="overrun_micros" class="num">overrun</th><th data-sort="reason">why</th></tr></thead><tbody>{task_table}</tbody></table>
<h2>Charts</h2>
<div id="charts">{charts}</div>
<script>{SCRIPT}</script>
</body></html>
"#,
            title = esc(&self.title),
            total_usd = format_dollars(total),
            total = total.get(),
            attempt_cap = cap_text(status.per_attempt_cap_micros),
            task_cap = cap_text(status.per_task_cap_micros),
            shown = tasks.len(),
            charts = charts(&report, caps),
            echarts = echarts_script(),
        ))
    }

    /// A task's page.
    pub fn task_page(&self, id: &str) -> Result<String, DashboardError> {
        let t = self.task(id)?;
        Ok(render_task_page(&self.title, &t))
    }
}

/// The table's rows from the report's lines and the backlog (stage, attempts started, reason).
fn task_rows(history: &History, lines: &[TaskLine]) -> Vec<TaskRow> {
    let by_id: BTreeMap<&str, &TaskLine> = lines.iter().map(|l| (l.id.as_str(), l)).collect();
    history
        .tasks
        .iter()
        .map(|t| {
            let line = by_id.get(t.id.as_str());
            TaskRow {
                id: t.id.clone(),
                title: t.title.clone(),
                labels: t.labels.clone(),
                state: t.state,
                stage: t.stage,
                attempts: t.attempts,
                models: line
                    .map(|l| distinct(l.attempts.iter().map(|a| a.model.as_str())))
                    .unwrap_or_default(),
                cost_micros: line.map_or(MicroUsd::ZERO, |l| l.cost_micros),
                certainty: line.map(|l| l.certainty.clone()).unwrap_or_default(),
                reserved_micros: history
                    .rows
                    .iter()
                    .filter(|r| r.scope.task_id.as_deref() == Some(t.id.as_str()))
                    .map(|r| r.open_reservation())
                    .sum(),
                reason: t.reason.clone(),
            }
        })
        .collect()
}

const NOTHING_RUNNING: &str = "<tr class=\"none\"><td colspan=\"7\">nothing running</td></tr>";

/// `settled + reserved` of `cap`, as a bar (the script draws the same).
fn gauge(settled: MicroUsd, reserved: MicroUsd, cap: Option<MicroUsd>) -> String {
    let spent = settled.saturating_add(reserved);
    let Some(cap) = cap.filter(|c| !c.is_zero()) else {
        return format!("{} (no cap)", usd(spent));
    };
    let pct = |m: MicroUsd| (m.get() as f64 / cap.get() as f64 * 100.0).min(100.0);
    format!(
        "<span class=\"gauge\"><span class=\"settled\" style=\"width:{:.1}%\"></span><span class=\"reserved\" style=\"width:{:.1}%\"></span></span> {:.0}%",
        pct(settled),
        pct(reserved).min(100.0 - pct(settled)),
        spent.get() as f64 / cap.get() as f64 * 100.0
    )
}

/// The hosts table's row when no run has registered.
const NO_HOSTS: &str = "<tr class=\"none\"><td colspan=\"5\">no run has started</td></tr>";

fn host_row(h: &HostLine) -> String {
    format!(
        "<tr data-host=\"{owner}\"><td>{owner} <small>{run}</small></td><td class=\"state\">{state}</td><td class=\"num\">{busy}/{workers}</td><td>{tasks}</td><td>{seen}</td></tr>",
        owner = esc(&h.owner),
        run = esc(&h.run_id),
        state = h.state,
        busy = h.busy.len(),
        workers = h.workers,
        tasks = esc(&h.busy.join(", ")),
        seen = esc(&h.seen_at),
    )
}

fn running_row(
    t: &RunningTask,
    attempt_cap: Option<MicroUsd>,
    task_cap: Option<MicroUsd>,
) -> String {
    format!(
        "<tr data-task=\"{id}\"><td><a href=\"/tasks/{href}\">{id}</a> {title}</td><td>{stage}</td><td class=\"num\">{attempt}</td><td class=\"num\">{a_settled} + {a_reserved}</td><td>{a_gauge}</td><td class=\"num\">{settled} + {reserved}</td><td>{t_gauge}</td></tr>",
        id = esc(&t.id),
        href = url_path_segment(&t.id),
        title = esc(&t.title),
        stage = t.stage.map_or("", |s| s.name()),
        attempt = t.attempt,
        a_settled = usd(t.attempt_settled_micros),
        a_reserved = usd(t.attempt_reserved_micros),
        a_gauge = gauge(
            t.attempt_settled_micros,
            t.attempt_reserved_micros,
            attempt_cap
        ),
        settled = usd(t.settled_micros),
        reserved = usd(t.reserved_micros),
        t_gauge = gauge(t.settled_micros, t.reserved_micros, task_cap),
    )
}

fn task_row(t: &TaskRow) -> String {
    format!(
        "<tr data-task=\"{id}\" data-state=\"{state}\"><td><a href=\"/tasks/{href}\">{id}</a></td><td>{title}</td><td>{labels}</td><td class=\"state\">{state}{stage}</td><td class=\"num\">{attempts}</td><td>{models}</td><td class=\"num\">{cost}</td><td class=\"num\">{measured}</td><td class=\"num\">{estimated}</td><td class=\"num\">{overrun}</td><td>{reason}</td></tr>",
        id = esc(&t.id),
        href = url_path_segment(&t.id),
        title = esc(&t.title),
        labels = esc(&t.labels.join(", ")),
        state = t.state.name(),
        stage = t
            .stage
            .map_or(String::new(), |s| format!(" ({})", s.name())),
        attempts = t.attempts,
        models = esc(&t.models.join(", ")),
        cost = usd(t.cost_micros),
        measured = usd(t.certainty.measured_micros),
        estimated = usd(t.certainty.estimated_micros),
        overrun = usd(t.certainty.overrun_micros),
        reason = esc(t.reason.as_deref().unwrap_or("")),
    )
}

fn render_task_page(dashboard_title: &str, t: &TaskDetail) -> String {
    let id = esc(&t.id);
    let mut attempts = String::new();
    for a in &t.attempts {
        let mut phases = String::new();
        for (name, s) in &a.phases {
            phases.push_str(&format!(
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                esc(name),
                s.calls,
                s.input,
                s.output,
                s.cache_read,
                usd(s.cost_micros)
            ));
        }
        let reasons = if a.reasons.is_empty() {
            "<li class=\"none\">no reason recorded</li>".to_string()
        } else {
            a.reasons
                .iter()
                .map(|r| format!("<li>{}</li>", esc(r)))
                .collect()
        };
        let changed = if a.changed.is_empty() {
            "<p class=\"changed none\">no changed files recorded</p>".to_string()
        } else {
            let rows: String = a
                .changed
                .iter()
                .map(|f| {
                    format!(
                        "<tr><td>{}</td><td>{}</td><td class=\"num\">+{}</td><td class=\"num\">-{}</td></tr>",
                        esc(&f.path),
                        esc(&f.status),
                        f.added,
                        f.removed
                    )
                })
                .collect();
            format!(
                "<table class=\"changed\"><tr><th>changed file</th><th>how</th><th>added</th><th>removed</th></tr>{rows}</table>"
            )
        };
        attempts.push_str(&format!(
            r#"<section class="attempt" data-attempt="{n}"><h3>Attempt {n} · <span class="outcome">{outcome}</span>{cause}</h3>
<p>model <b>{model}</b> · run {run} · {turns} turns · tests {tests} · cost <b class="cost">{cost}</b> ({certainty}){reserved}</p>{agent}
<ul class="reasons">{reasons}</ul>
<table class="phases"><tr><th>phase</th><th>tries</th><th>input</th><th>output</th><th>cache read</th><th>cost</th></tr>{phases}</table>
{changed}</section>
"#,
            n = a.number,
            outcome = esc(&a.outcome),
            cause = a.rejected_by.map_or(String::new(), |c| format!(
                " · rejected by <span class=\"rejected-by\">{}</span>",
                c.name()
            )),
            model = esc(&a.model),
            run = esc(&a.run),
            turns = a.turns,
            tests = match a.tests_passed {
                Some(true) => "passed",
                Some(false) => "failed",
                None => "not run",
            },
            cost = exact_dollars(a.cost_micros),
            certainty = esc(&a.certainty.describe()),
            reserved = if a.reserved_micros.is_zero() {
                String::new()
            } else {
                format!(" · reserved now {}", exact_dollars(a.reserved_micros))
            },
            agent = a.implementer.as_ref().map_or(String::new(), |name| {
                let own = a
                    .agent_figure_micros
                    .map_or_else(|| "none".to_string(), exact_dollars);
                format!(
                    "\n<p class=\"agent\">implemented by <b>{}</b> · its calls {} in the ledger · its own figure {own}</p>",
                    esc(name),
                    exact_dollars(a.agent_calls_micros)
                )
            }),
        ));
    }
    if t.attempts.is_empty() {
        attempts.push_str("<p class=\"none\">No attempt yet.</p>");
    }
    let mut rows = String::new();
    for r in &t.rows {
        let opt = |v: Option<String>| v.unwrap_or_default();
        rows.push_str(&format!(
            "<tr data-row=\"{id}\"><td class=\"num\">{id}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td></tr>",
            opt(r.call_id.map(|c| c.to_string())),
            opt(r.try_number.map(|n| n.to_string())),
            opt(r.attempt.map(|n| n.to_string())),
            r.stage.name(),
            r.phase.unwrap_or(""),
            r.role,
            esc(&r.model),
            r.input_tokens,
            r.output_tokens,
            r.cache_read_tokens,
            exact_dollars(r.reserved_micros),
            exact_dollars(r.charged_micros),
            r.certainty,
            esc(r.outcome.as_deref().unwrap_or("")),
            id = r.id,
        ));
    }
    if t.rows.is_empty() {
        rows.push_str("<tr class=\"none\"><td colspan=\"15\">no ledger row</td></tr>");
    }
    let mut commits = String::new();
    for c in &t.diff.commits {
        commits.push_str(&format!(
            "<tr><td><code>{}</code></td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">+{}</td><td class=\"num\">−{}</td></tr>",
            esc(c.commit.get(..10).unwrap_or(&c.commit)),
            esc(&c.subject),
            c.files,
            c.insertions,
            c.deletions
        ));
    }
    let commits = if commits.is_empty() {
        String::new()
    } else {
        format!(
            "<table id=\"commits\"><tr><th>commit</th><th>subject</th><th>files</th><th>added</th><th>removed</th></tr>{commits}</table>"
        )
    };
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{id} · {dashboard}</title>
<style>{STYLE}</style></head>
<body><p><a href="/">← {dashboard}</a></p>
<h1><span id="task-id">{id}</span>: {title}</h1>
<p>state <b id="state">{state}</b>{stage} · {started} attempt(s) started · labels {labels} · source {source}</p>
<p id="reason">{reason}</p>
<p>Cost <b id="cost">{cost}</b>: <span id="certainty">{certainty}</span>{reserved} · caps: {attempt_cap} an attempt, {task_cap} the task</p>
<details><summary>The task as given</summary><pre>{body}</pre></details>
<h2>Attempts</h2>
{attempts}
<h2>Ledger rows</h2>
<p>Each try of each model call is a row (call id: the row id of the call's first try); a plugin run is a row with no call.</p>
<table id="rows"><tr><th>row</th><th>call</th><th>try</th><th>attempt</th><th>stage</th><th>phase</th><th>role</th><th>model</th><th>input</th><th>output</th><th>cache read</th><th>reserved</th><th>charged</th><th>certainty</th><th>outcome</th></tr>{rows}</table>
<h2>Diff</h2>
<p id="diff-note">{diff_note}</p>
{commits}
<p><a href="/api/tasks/{href}">this page as JSON</a></p>
</body></html>
"#,
        dashboard = esc(dashboard_title),
        title = esc(&t.title),
        state = t.state.name(),
        stage = t
            .stage
            .map_or(String::new(), |s| format!(" (stage {})", s.name())),
        started = t.attempts_started,
        labels = if t.labels.is_empty() {
            "none".to_string()
        } else {
            esc(&t.labels.join(", "))
        },
        source = esc(t.source.as_deref().unwrap_or("none")),
        reason = esc(t.reason.as_deref().unwrap_or("")),
        cost = exact_dollars(t.cost_micros),
        certainty = esc(&t.certainty.describe()),
        reserved = if t.reserved_micros.is_zero() {
            String::new()
        } else {
            format!(" · reserved now {}", exact_dollars(t.reserved_micros))
        },
        attempt_cap = cap_text(t.per_attempt_cap_micros),
        task_cap = cap_text(t.per_task_cap_micros),
        body = esc(&t.body),
        diff_note = esc(&t.diff.note),
        href = url_path_segment(&t.id),
    )
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2rem;color:#222}\
table{border-collapse:collapse;margin:.5rem 2rem .5rem 0;display:inline-table;vertical-align:top}\
td,th{border-bottom:1px solid #ddd;padding:.25rem .6rem;text-align:left}.num{text-align:right}\
th[data-sort]{cursor:pointer;user-select:none}th[aria-sort=ascending]::after{content:' ▲'}th[aria-sort=descending]::after{content:' ▼'}\
tr[data-state=running] td.state{color:#1f6fb2;font-weight:600}tr[data-state=merged] td.state{color:#2e7d32}\
tr[data-state=failed] td.state,tr[data-state=budget-exhausted] td.state,tr[data-state=needs-human] td.state{color:#c0392b}\
.gauge{display:inline-block;width:8rem;height:.7rem;background:#eee;vertical-align:middle;overflow:hidden}\
.gauge span{display:inline-block;height:100%}.gauge .settled{background:#3a7ca5}.gauge .reserved{background:#f0ad4e}\
.none{color:#777}.filters label{margin-right:1rem}section.attempt{border-left:3px solid #ddd;padding-left:1rem;margin:1rem 0}\
figure{display:inline-block;margin:1rem}figcaption{font-weight:600}pre,.reasons li{white-space:pre-wrap}";

/// The page's script: redraws the live figures, what is running and the task table from
/// `/api/status` and `/api/tasks` every second, and the charts from `/api/charts` every five;
/// sorts and filters the table. Every value goes
/// into the page as text, never as markup.
const SCRIPT: &str = r#"
document.body.dataset.loadId=String(Math.random()).slice(2);
function usd(m){var w=Math.floor(m/1e6),f=String(m%1e6).padStart(6,'0').replace(/0+$/,'');while(f.length<2)f+='0';return '$'+w+'.'+f;}
function col(m){var t=Math.floor(m/100)+(m%100>=50?1:0);return '$'+Math.floor(t/1e4)+'.'+String(t%1e4).padStart(4,'0');}
var tasks=null,sortKey='id',sortDir=1,refreshes=0;
function cell(row,text,cls){var c=row.insertCell();c.textContent=text;if(cls)c.className=cls;return c;}
function link(row,id){var c=row.insertCell(),a=document.createElement('a');a.href='/tasks/'+encodeURIComponent(id);a.textContent=id;c.appendChild(a);return c;}
function gauge(c,settled,reserved,cap){
  if(cap==null||cap===0){c.textContent=col(settled+reserved)+' (no cap)';return;}
  var g=document.createElement('span');g.className='gauge';
  var s=Math.min(100,settled/cap*100),r=Math.min(100-s,reserved/cap*100);
  for(var [k,w] of [['settled',s],['reserved',r]]){var p=document.createElement('span');p.className=k;p.style.width=w.toFixed(1)+'%';g.appendChild(p);}
  c.appendChild(g);c.appendChild(document.createTextNode(' '+Math.round((settled+reserved)/cap*100)+'%'));
}
function idOrder(id){var m=/^T-(\d+)$/.exec(id);return m?[0,Number(m[1])]:[1,id];}
function value(t,k){
  switch(k){
    case 'id':return idOrder(t.id);
    case 'labels':return t.labels.join(', ');
    case 'models':return t.models.join(', ');
    case 'measured_micros':case 'estimated_micros':case 'overrun_micros':return t.certainty[k];
    case 'reason':return t.reason||'';
    default:return t[k];
  }
}
function cmp(a,b){
  if(Array.isArray(a))return cmp(a[0],b[0])||cmp(a[1],b[1]);
  if(typeof a==='number'&&typeof b==='number')return a-b;
  return String(a).localeCompare(String(b));
}
function drawTasks(){
  if(!tasks)return;
  var state=document.getElementById('state-filter').value,label=document.getElementById('label-filter').value;
  var shown=tasks.filter(function(t){return (!state||t.state===state)&&(!label||t.labels.indexOf(label)>=0);});
  shown.sort(function(a,b){return sortDir*cmp(value(a,sortKey),value(b,sortKey));});
  var body=document.querySelector('#tasks tbody');
  while(body.rows.length)body.deleteRow(0);
  for(var t of shown){
    var r=body.insertRow();r.dataset.task=t.id;r.dataset.state=t.state;
    link(r,t.id);cell(r,t.title);cell(r,t.labels.join(', '));
    cell(r,t.state+(t.stage?' ('+t.stage+')':''),'state');cell(r,t.attempts,'num');cell(r,t.models.join(', '));
    cell(r,col(t.cost_micros),'num');cell(r,col(t.certainty.measured_micros),'num');
    cell(r,col(t.certainty.estimated_micros),'num');cell(r,col(t.certainty.overrun_micros),'num');cell(r,t.reason||'');
  }
  document.getElementById('shown').textContent=shown.length+' of '+tasks.length+' tasks';
  var labels=document.getElementById('label-filter'),have=new Set([].map.call(labels.options,function(o){return o.value;}));
  for(var t of tasks)for(var l of t.labels)if(!have.has(l)){var o=document.createElement('option');o.value=l;o.textContent=l;labels.appendChild(o);have.add(l);}
  for(var th of document.querySelectorAll('#tasks th[data-sort]')){if(th.dataset.sort===sortKey)th.setAttribute('aria-sort',sortDir>0?'ascending':'descending');else th.removeAttribute('aria-sort');}
}
for(var th of document.querySelectorAll('#tasks th[data-sort]')){
  th.addEventListener('click',function(e){var k=e.currentTarget.dataset.sort;if(k===sortKey)sortDir=-sortDir;else{sortKey=k;sortDir=1;}drawTasks();});
}
document.getElementById('state-filter').addEventListener('change',drawTasks);
document.getElementById('label-filter').addEventListener('change',drawTasks);
async function refresh(){
  try{
    var [s,list]=await Promise.all([fetch('/api/status').then(function(r){return r.json();}),fetch('/api/tasks').then(function(r){return r.json();})]);
    for(var [state,n] of Object.entries(s.tasks)){var c=document.querySelector('#backlog [data-state="'+state+'"]');if(c)c.textContent=n;}
    for(var [level,cap] of Object.entries(s.spend)){for(var [k,v] of [['settled',cap.settled_micros],['reserved',cap.reserved_micros],['spent',cap.spent_micros]]){var c=document.querySelector('[data-'+k+'="'+level+'"]');if(c)c.textContent=col(v);}}
    var t=document.getElementById('total');t.textContent=usd(s.spent_all_time_micros);t.dataset.micros=s.spent_all_time_micros;
    var body=document.querySelector('#running tbody');while(body.rows.length)body.deleteRow(0);
    for(var task of s.running){
      var row=body.insertRow();row.dataset.task=task.id;var c=link(row,task.id);c.appendChild(document.createTextNode(' '+task.title));
      cell(row,task.stage||'');cell(row,task.attempt,'num');
      cell(row,col(task.attempt_settled_micros)+' + '+col(task.attempt_reserved_micros),'num');gauge(row.insertCell(),task.attempt_settled_micros,task.attempt_reserved_micros,s.per_attempt_cap_micros);
      cell(row,col(task.settled_micros)+' + '+col(task.reserved_micros),'num');gauge(row.insertCell(),task.settled_micros,task.reserved_micros,s.per_task_cap_micros);
    }
    if(!s.running.length){var r=body.insertRow();r.className='none';var c=cell(r,'nothing running');c.colSpan=7;}
    var hb=document.querySelector('#hosts tbody');while(hb.rows.length)hb.deleteRow(0);
    for(var h of s.hosts){
      var row=hb.insertRow();row.dataset.host=h.owner;cell(row,h.owner+' '+h.run_id);cell(row,h.state,'state');
      cell(row,h.busy.length+'/'+h.workers,'num');cell(row,h.busy.join(', '));cell(row,h.seen_at);
    }
    if(!s.hosts.length){var r=hb.insertRow();r.className='none';var c=cell(r,'no run has started');c.colSpan=5;}
    tasks=list;drawTasks();
    refreshes++;document.body.dataset.refreshes=refreshes;
    if(refreshes%5===0&&typeof gafferCharts==='function'){
      var data=await fetch('/api/charts').then(function(r){return r.json();});
      gafferCharts(document.querySelector('#charts .gaffer-charts'),data);
      document.body.dataset.chartsDrawn=Number(document.body.dataset.chartsDrawn||0)+1;
    }
    document.getElementById('updated').textContent=new Date().toISOString();
    document.body.dataset.live='yes';
  }catch(e){document.getElementById('updated').textContent='(the server is not answering)';}
}
refresh();setInterval(refresh,1000);
"#;

fn failure(message: String) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, message).into_response()
}

async fn blocking<T: Send + 'static>(
    d: Arc<Dashboard>,
    f: impl FnOnce(&Dashboard) -> T + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(move || f(&d))
        .await
        .map_err(|e| format!("the dashboard's worker failed: {e}"))
}

async fn page(State(d): State<Arc<Dashboard>>) -> Response {
    match blocking(d, |d| d.page()).await.and_then(|r| r) {
        Ok(html) => Html(html).into_response(),
        Err(e) => failure(e),
    }
}

async fn status(State(d): State<Arc<Dashboard>>) -> Response {
    match blocking(d, |d| d.status()).await.and_then(|r| r) {
        Ok(v) => Json(v).into_response(),
        Err(e) => failure(e),
    }
}

async fn tasks(State(d): State<Arc<Dashboard>>) -> Response {
    match blocking(d, |d| d.tasks()).await.and_then(|r| r) {
        Ok(v) => Json(v).into_response(),
        Err(e) => failure(e),
    }
}

fn no_such_task(id: &str) -> String {
    format!("No task has the id “{id}”. The dashboard at / lists every task; ids look like T-1.")
}

async fn task_page(State(d): State<Arc<Dashboard>>, Path(id): Path<String>) -> Response {
    let answer = blocking(d.clone(), move |d| d.task_page(&id).map_err(|e| (e, id))).await;
    match answer {
        Ok(Ok(html)) => Html(html).into_response(),
        Ok(Err((DashboardError::NoSuchTask(_), id))) => (
            StatusCode::NOT_FOUND,
            Html(format!(
                "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>No such task</title><style>{STYLE}</style></head><body><p><a href=\"/\">← {}</a></p><h1>No such task</h1><p id=\"error\">{}</p></body></html>",
                esc(&d.title),
                esc(&no_such_task(&id))
            )),
        )
            .into_response(),
        Ok(Err((DashboardError::Store(e), _))) | Err(e) => failure(e),
    }
}

async fn task_json(State(d): State<Arc<Dashboard>>, Path(id): Path<String>) -> Response {
    let answer = blocking(d, move |d| d.task(&id).map_err(|e| (e, id))).await;
    match answer {
        Ok(Ok(t)) => Json(t).into_response(),
        Ok(Err((DashboardError::NoSuchTask(_), id))) => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({ "error": no_such_task(&id) })),
        )
            .into_response(),
        Ok(Err((DashboardError::Store(e), _))) | Err(e) => failure(e),
    }
}

async fn chart_json(State(d): State<Arc<Dashboard>>) -> Response {
    match blocking(d, |d| d.charts()).await.and_then(|r| r) {
        Ok(v) => Json(v).into_response(),
        Err(e) => failure(e),
    }
}

async fn report(State(d): State<Arc<Dashboard>>) -> Response {
    match blocking(d, |d| d.report()).await.and_then(|r| r) {
        Ok(r) => Json(r).into_response(),
        Err(e) => failure(e),
    }
}

async fn report_csv(State(d): State<Arc<Dashboard>>) -> Response {
    match blocking(d, |d| d.report()).await.and_then(|r| r) {
        Ok(r) => (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            super::ledger_report::render_csv(&r),
        )
            .into_response(),
        Err(e) => failure(e),
    }
}

/// The `Host` values the dashboard answers: its own address, and for a loopback address the
/// names of loopback (`127.0.0.1:<port>`, `localhost:<port>`, `[::1]:<port>`). Anything else —
/// a name of a page elsewhere pointed at this machine (DNS rebinding) — is refused.
#[derive(Debug, Clone)]
pub struct AllowedHosts {
    address: SocketAddr,
    names: Vec<String>,
}

impl AllowedHosts {
    /// The hosts a server bound to `address` answers.
    pub fn for_address(address: SocketAddr) -> AllowedHosts {
        let port = address.port();
        let mut names = vec![address.to_string()];
        if address.ip().is_loopback() || address.ip().is_unspecified() {
            for name in [
                format!("127.0.0.1:{port}"),
                format!("localhost:{port}"),
                format!("[::1]:{port}"),
            ] {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        AllowedHosts { address, names }
    }

    /// Whether a request addressed to `host` (its `Host` header) is answered. Bound to an
    /// unspecified address (`0.0.0.0`, `[::]`: any interface, by the user's choice), any IP
    /// literal with the port is, as no name of a rebinding page can be one.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.trim().to_ascii_lowercase();
        if self.names.contains(&host) {
            return true;
        }
        self.address.ip().is_unspecified()
            && host
                .parse::<SocketAddr>()
                .is_ok_and(|a| a.port() == self.address.port())
    }

    /// The message a refused request gets.
    pub fn refusal(&self, host: Option<&str>) -> String {
        let host = host.map_or("no Host header".to_string(), |h| format!("Host `{h}`"));
        format!(
            "gaffer serve answers only requests addressed to {}; this one came with {host}. \
             A page on another site that points its own name at this machine (DNS rebinding) is \
             refused; open the dashboard at http://{}/ instead.\n",
            self.names.join(", "),
            self.names.first().map_or("127.0.0.1", String::as_str),
        )
    }
}

async fn check_host(
    State(allowed): State<Arc<AllowedHosts>>,
    request: Request,
    next: Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| request.uri().authority().map(|a| a.to_string()));
    match &host {
        Some(h) if allowed.allows(h) => next.run(request).await,
        _ => (
            StatusCode::MISDIRECTED_REQUEST,
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            allowed.refusal(host.as_deref()),
        )
            .into_response(),
    }
}

/// The dashboard's routes, answering only requests addressed to `allowed`.
pub fn router(dashboard: Dashboard, allowed: AllowedHosts) -> axum::Router {
    axum::Router::new()
        .route("/", axum::routing::get(page))
        .route("/api/status", axum::routing::get(status))
        .route("/api/tasks", axum::routing::get(tasks))
        .route("/api/tasks/{id}", axum::routing::get(task_json))
        .route("/tasks/{id}", axum::routing::get(task_page))
        .route("/api/charts", axum::routing::get(chart_json))
        .route("/api/report", axum::routing::get(report))
        .route("/api/report.csv", axum::routing::get(report_csv))
        .with_state(Arc::new(dashboard))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(allowed),
            check_host,
        ))
}

/// Serve the dashboard on `listener` until the process ends, answering only requests
/// addressed to the address it listens on.
pub async fn serve(dashboard: Dashboard, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    let allowed = AllowedHosts::for_address(listener.local_addr()?);
    axum::serve(listener, router(dashboard, allowed)).await
}

/// Bind `address`; say so when it is not loopback (the dashboard has no authentication).
pub async fn bind(address: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    if !address.ip().is_loopback() {
        tracing::warn!(%address, "the dashboard has no authentication and listens beyond this machine");
    }
    tokio::net::TcpListener::bind(address).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_answers_its_own_names_and_nothing_else() {
        let allowed = AllowedHosts::for_address("127.0.0.1:7420".parse().unwrap());
        for ok in [
            "127.0.0.1:7420",
            "localhost:7420",
            "LOCALHOST:7420",
            "[::1]:7420",
        ] {
            assert!(allowed.allows(ok), "{ok}");
        }
        for refused in [
            "evil.example",
            "evil.example:7420",
            "127.0.0.1:7421",
            "localhost",
            "10.0.0.1:7420",
            "",
        ] {
            assert!(!allowed.allows(refused), "{refused}");
        }
    }

    #[test]
    fn any_interface_answers_ip_literals_on_its_port_but_no_name() {
        let allowed = AllowedHosts::for_address("0.0.0.0:8000".parse().unwrap());
        assert!(allowed.allows("192.168.1.5:8000"));
        assert!(allowed.allows("localhost:8000"));
        assert!(!allowed.allows("192.168.1.5:8001"));
        assert!(!allowed.allows("rebind.evil.example:8000"));
    }

    #[test]
    fn ids_are_escaped_for_markup_and_for_links() {
        assert_eq!(esc("<b a=\"'\">&"), "&lt;b a=&quot;&#39;&quot;&gt;&amp;");
        assert_eq!(url_path_segment("T-1"), "T-1");
        assert_eq!(url_path_segment("a/b <c>"), "a%2Fb%20%3Cc%3E");
    }
}
