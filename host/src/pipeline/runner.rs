//! `gaffer run`: workers claim tasks under leases and take each through one attempt — route →
//! implement → check → verify → merge — until the backlog is empty, a cap stops the run, or a
//! signal asks it to stop. A crashed run loses nothing: the next start requeues its tasks,
//! settles its ledger and removes its worktrees.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::history::{budget_view, wit_history, wit_task};
use super::hooks::{PluginHooks, describe};
use super::progress::{Event, Progress};
use super::settings::PipelineSettings;
use crate::agent::command::{CommandOutput, run_command};
use crate::agent::session::{Agent, AgentEnd, millis_since, task_prompt};
use crate::agent::workspace::Workspace;
use crate::gateway::metered::{CallTag, Gateway};
use crate::git::{GitError, MergeOutcome, Repo, Worktree};
use crate::ledger::{BudgetExhausted, Ledger, MicroUsd, format_dollars};
use crate::plugin::types::{
    Finding, ModelInfo, RouteDecision, RouteRequest, Task, TestResult, Verdict, VerifyRequest,
};
use crate::plugin::{ActivePlugins, CallContext, PluginSet, TaskFuel};
use crate::store::sqlite::owner_is_alive;
use crate::store::{
    AttemptRecord, BacklogStore, CapLevel, RowScope, StoreError, TaskRecord, TaskState,
};

/// Why a run could not start; names the problem and changes nothing.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(
        "target branch `{branch}` does not exist in {repo}; set [project] target_branch in gaffer.toml"
    )]
    NoTargetBranch { branch: String, repo: PathBuf },
    #[error(
        "the target branch `{branch}` is checked out in {repo} with uncommitted changes ({files}); \
         commit or stash them, or pass --allow-dirty (approved work then waits on gaffer/merged/<task>)"
    )]
    DirtyTarget {
        branch: String,
        repo: PathBuf,
        files: String,
    },
    #[error(
        "the test command `{command}` cannot run here: `{program}` is not found (set [project] test_command in gaffer.toml)"
    )]
    TestCommandMissing { command: String, program: String },
    #[error("no models are configured ([models] in gaffer.toml)")]
    NoModels,
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a run did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RunSummary {
    pub run_id: String,
    /// Attempts finished, in order.
    pub attempts: Vec<AttemptSummary>,
    /// Why the run stopped early, when it did (a cap, a signal, a plugin).
    pub stopped: Option<String>,
    /// Charged to this run, in µ$.
    pub spent: MicroUsd,
    /// What recovery at start did.
    pub recovered: Vec<String>,
}

/// One finished attempt.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AttemptSummary {
    pub task: String,
    pub attempt: u32,
    pub model: Option<String>,
    pub state: TaskState,
    pub outcome: String,
    pub reason: String,
    /// Charged to this attempt, in µ$.
    pub cost: MicroUsd,
}

/// The collaborators of a run.
pub struct Pipeline {
    pub repo: Arc<Repo>,
    pub backlog: Arc<dyn BacklogStore>,
    pub ledger: Arc<Ledger>,
    pub gateway: Arc<Gateway>,
    pub plugins: Arc<PluginSet>,
    /// What the router is told about each model (`id` is the model key).
    pub models: Vec<ModelInfo>,
    pub settings: PipelineSettings,
    pub run_id: String,
    /// `host:pid`, the lease owner.
    pub owner: String,
    pub progress: Arc<dyn Progress>,
    /// Set to stop claiming and park the current steps (the first signal).
    pub stop: Arc<AtomicBool>,
    stop_reason: Arc<Mutex<Option<String>>>,
    claimed: AtomicU32,
    fuel: Mutex<HashMap<String, Arc<TaskFuel>>>,
    attempts: Mutex<Vec<AttemptSummary>>,
}

/// How an attempt ended, before it is written down.
struct Ending {
    state: TaskState,
    outcome: &'static str,
    reasons: Vec<String>,
    reason: String,
    model: Option<String>,
    turns: u32,
    tests_passed: Option<bool>,
    /// Put the task back as it was (a stop, a run-wide cap): no attempt is recorded.
    park: bool,
}

impl Ending {
    fn new(state: TaskState, outcome: &'static str, reason: impl Into<String>) -> Ending {
        let reason = reason.into();
        Ending {
            state,
            outcome,
            reasons: vec![reason.clone()],
            reason,
            model: None,
            turns: 0,
            tests_passed: None,
            park: false,
        }
    }

    fn parked(reason: impl Into<String>) -> Ending {
        Ending {
            park: true,
            ..Ending::new(TaskState::Queued, "parked", reason)
        }
    }
}

/// The run-wide cap levels: reaching one stops the whole run.
fn stops_the_run(level: CapLevel) -> bool {
    matches!(
        level,
        CapLevel::Run | CapLevel::Day | CapLevel::Month | CapLevel::Model
    )
}

impl Pipeline {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        repo: Arc<Repo>,
        backlog: Arc<dyn BacklogStore>,
        ledger: Arc<Ledger>,
        gateway: Arc<Gateway>,
        plugins: Arc<PluginSet>,
        models: Vec<ModelInfo>,
        settings: PipelineSettings,
        run_id: String,
        owner: String,
        progress: Arc<dyn Progress>,
    ) -> Pipeline {
        Pipeline {
            repo,
            backlog,
            ledger,
            gateway,
            plugins,
            models,
            settings,
            run_id,
            owner,
            progress,
            stop: Arc::new(AtomicBool::new(false)),
            stop_reason: Arc::new(Mutex::new(None)),
            claimed: AtomicU32::new(0),
            fuel: Mutex::new(HashMap::new()),
            attempts: Mutex::new(Vec::new()),
        }
    }

    /// Ask the run to stop: no new claims, current steps park at their next boundary.
    pub fn request_stop(&self, reason: impl Into<String>) {
        if let Ok(mut slot) = self.stop_reason.lock() {
            slot.get_or_insert_with(|| reason.into());
        }
        self.stop.store(true, Ordering::SeqCst);
    }

    fn stop_reason(&self) -> Option<String> {
        self.stop_reason.lock().ok().and_then(|s| s.clone())
    }

    /// Check that the run can start; changes nothing.
    pub async fn preflight(&self) -> Result<(), RunError> {
        if self.models.is_empty() {
            return Err(RunError::NoModels);
        }
        let branch = &self.settings.target_branch;
        match self.repo.branch_tip(branch) {
            Ok(_) => {}
            Err(GitError::NoSuchBranch { .. }) => {
                return Err(RunError::NoTargetBranch {
                    branch: branch.clone(),
                    repo: self.repo.root().to_path_buf(),
                });
            }
            Err(other) => return Err(other.into()),
        }
        if !self.settings.allow_dirty
            && self.repo.checked_out_branch()?.as_deref() == Some(branch.as_str())
        {
            let changes = self.repo.uncommitted_changes()?;
            if !changes.is_empty() {
                return Err(RunError::DirtyTarget {
                    branch: branch.clone(),
                    repo: self.repo.root().to_path_buf(),
                    files: changes.join(", "),
                });
            }
        }
        if let Some(command) = &self.settings.test_command {
            let program = command.split_whitespace().next().unwrap_or("").to_string();
            let probe = format!("command -v {}", shell_quote(&program));
            let found = run_command(self.repo.root(), &probe, &self.settings.test_limits)
                .await
                .map(|out| out.exit_code == Some(0))
                .unwrap_or(false);
            if !found {
                return Err(RunError::TestCommandMissing {
                    command: command.clone(),
                    program,
                });
            }
        }
        Ok(())
    }

    /// After a crash: settle the ledger of dead processes, requeue their tasks, remove their
    /// worktrees. Returns what it did, as sentences.
    pub fn recover(&self) -> Result<Vec<String>, RunError> {
        let mut done = Vec::new();
        let alive = owner_is_alive;
        let recovery = self.ledger.store().recover(&alive)?;
        if recovery.released + recovery.charged > 0 {
            done.push(format!(
                "ledger: released {} unsent reservation(s); charged {} sent call(s) at their reservation ({})",
                recovery.released,
                recovery.charged,
                format_dollars(recovery.charged_micros)
            ));
        }
        let orphans = self.backlog.requeue_orphans(&alive)?;
        if !orphans.is_empty() {
            done.push(format!(
                "requeued {} task(s) of stopped workers: {}",
                orphans.len(),
                orphans.join(", ")
            ));
        }
        let expired = self.backlog.expire()?;
        if expired > 0 {
            done.push(format!("requeued {expired} task(s) whose lease expired"));
        }
        // Keep only the worktrees of tasks another live process is working on.
        let running: Vec<String> = self
            .backlog
            .tasks()?
            .into_iter()
            .filter(|t| t.state == TaskState::Running)
            .map(|t| t.id)
            .collect();
        let keep = |name: &str| {
            running.iter().any(|id| {
                name.strip_prefix(id.as_str())
                    .is_some_and(|r| r.starts_with("-a"))
            })
        };
        if self.settings.worktrees_dir.is_dir() {
            let removed = self
                .repo
                .remove_stale_worktrees(&self.settings.worktrees_dir, &keep)?;
            if !removed.is_empty() {
                done.push(format!(
                    "removed {} stale worktree(s): {}",
                    removed.len(),
                    removed.join(", ")
                ));
            }
        }
        for line in &done {
            self.progress.event(Event::Note(line.clone()));
        }
        Ok(done)
    }

    /// Run until the backlog is empty (or forever with `watch`), a cap or a signal stops it,
    /// or `max_tasks` were claimed.
    pub async fn run(self: &Arc<Self>) -> Result<RunSummary, RunError> {
        self.preflight().await?;
        let recovered = self.recover()?;
        let mut workers = Vec::new();
        for worker in 0..self.settings.workers {
            let this = Arc::clone(self);
            workers.push(tokio::spawn(async move { this.worker(worker).await }));
        }
        for handle in workers {
            if let Err(error) = handle.await {
                tracing::error!(%error, "a worker panicked");
            }
        }
        let spent = self
            .ledger
            .store()
            .spent(
                CapLevel::Run,
                &RowScope {
                    run_id: self.run_id.clone(),
                    ..RowScope::default()
                },
            )
            .unwrap_or(0);
        self.progress.finish();
        Ok(RunSummary {
            run_id: self.run_id.clone(),
            attempts: self.attempts.lock().map(|a| a.clone()).unwrap_or_default(),
            stopped: self.stop_reason(),
            spent,
            recovered,
        })
    }

    async fn worker(&self, worker: usize) {
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            if let Some(max) = self.settings.max_tasks
                && self.claimed.load(Ordering::SeqCst) >= max
            {
                return;
            }
            let claimed = match self.backlog.claim(&self.owner, self.settings.lease) {
                Ok(claimed) => claimed,
                Err(error) => {
                    self.request_stop(format!("the backlog cannot be read: {error}"));
                    return;
                }
            };
            let Some(task) = claimed else {
                if !self.settings.watch {
                    return;
                }
                self.progress.event(Event::Idle { worker });
                tokio::time::sleep(self.settings.poll).await;
                continue;
            };
            let n = self.claimed.fetch_add(1, Ordering::SeqCst) + 1;
            if let Some(max) = self.settings.max_tasks
                && n > max
            {
                // Claimed one too many at the same moment as another worker: give it back.
                let _ = self.backlog.finish(
                    &task.id,
                    &self.owner,
                    TaskState::Queued,
                    "--max-tasks reached; requeued",
                );
                return;
            }
            self.attempt(worker, task).await;
        }
    }

    fn stage(&self, worker: usize, task: &TaskRecord, stage: &'static str, model: Option<&str>) {
        if let Err(error) = self.backlog.set_stage(&task.id, &self.owner, stage) {
            tracing::warn!(task = %task.id, %error, "cannot record the stage");
        }
        self.progress.event(Event::Stage {
            worker,
            task: task.id.clone(),
            attempt: task.attempts,
            stage,
            model: model.map(str::to_string),
        });
    }

    fn task_fuel(&self, task: &str) -> Arc<TaskFuel> {
        match self.fuel.lock() {
            Ok(mut map) => Arc::clone(map.entry(task.to_string()).or_default()),
            Err(_) => Arc::new(TaskFuel::new()),
        }
    }

    /// One attempt at a claimed task, written down at the end whatever happens.
    async fn attempt(&self, worker: usize, task: TaskRecord) {
        let started = Instant::now();
        let number = task.attempts;
        // Keep the lease alive while the attempt runs.
        let lost = Arc::new(AtomicBool::new(false));
        let heartbeat = {
            let backlog = Arc::clone(&self.backlog);
            let (id, owner, lease) = (task.id.clone(), self.owner.clone(), self.settings.lease);
            let lost = Arc::clone(&lost);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(lease / 3).await;
                    if let Err(error) = backlog.heartbeat(&id, &owner, lease) {
                        tracing::warn!(task = %id, %error, "the lease is lost");
                        lost.store(true, Ordering::SeqCst);
                        return;
                    }
                }
            })
        };
        let mut worktree = None;
        let ending = self.steps(worker, &task, &mut worktree).await;
        if let Some(worktree) = worktree
            && let Err(error) = worktree.remove(&self.repo)
        {
            tracing::warn!(task = %task.id, %error, "cannot remove the worktree; the next start will");
        }
        heartbeat.abort();
        if lost.load(Ordering::SeqCst) {
            self.progress.event(Event::Note(format!(
                "{}: the lease was lost; another worker has it",
                task.id
            )));
            return;
        }
        let cost = self
            .ledger
            .store()
            .task_rows(&task.id)
            .map(|rows| super::history::attempt_cost(&rows, number).0)
            .unwrap_or(0);
        let written = if ending.park {
            self.backlog
                .finish(&task.id, &self.owner, TaskState::Queued, &ending.reason)
        } else {
            let record = AttemptRecord {
                task_id: task.id.clone(),
                number,
                run_id: self.run_id.clone(),
                model: ending.model.clone().unwrap_or_default(),
                outcome: ending.outcome.to_string(),
                reasons: ending.reasons.clone(),
                turns: ending.turns,
                tests_passed: ending.tests_passed,
                wall_ms: millis_since(started),
            };
            self.backlog
                .finish_attempt(&record, &self.owner, ending.state, &ending.reason)
        };
        if let Err(error) = written {
            tracing::error!(task = %task.id, %error, "cannot record the end of the attempt");
        }
        let summary = AttemptSummary {
            task: task.id.clone(),
            attempt: number,
            model: ending.model.clone(),
            state: ending.state,
            outcome: ending.outcome.to_string(),
            reason: ending.reason.clone(),
            cost,
        };
        if let Ok(mut all) = self.attempts.lock() {
            all.push(summary);
        }
        self.progress.event(Event::Done {
            worker,
            task: task.id.clone(),
            attempt: number,
            state: ending.state,
            reason: ending.reason,
            cost,
        });
    }

    /// A budget refusal as the attempt's end: a run-wide cap stops the run and parks the task.
    fn budget_ending(&self, exhausted: &BudgetExhausted) -> Ending {
        let message = exhausted.to_string();
        if stops_the_run(exhausted.level) {
            self.request_stop(format!("stopped: {message}"));
            Ending::parked(format!("requeued: the run stopped ({message})"))
        } else if exhausted.level == CapLevel::Task {
            Ending::new(TaskState::BudgetExhausted, "budget-exhausted", message)
        } else {
            // The attempt's (or a call's) cap: the next attempt may be routed differently.
            Ending::new(TaskState::RejectedRequeued, "budget-exhausted", message)
        }
    }

    /// Route, implement, check, verify, merge.
    async fn steps(
        &self,
        worker: usize,
        task: &TaskRecord,
        worktree_slot: &mut Option<Worktree>,
    ) -> Ending {
        let number = task.attempts;
        let wit = wit_task(task);
        let plugins: Arc<ActivePlugins> = self.plugins.current();
        let ctx = CallContext {
            task_id: task.id.clone(),
            attempt: number,
            worktree: None,
            fuel: self.task_fuel(&task.id),
        };
        let attempts = match self.backlog.attempts(&task.id) {
            Ok(a) => a,
            Err(e) => return Ending::parked(format!("requeued: the store failed: {e}")),
        };
        if attempts.len() >= self.settings.max_attempts as usize {
            return Ending::new(
                TaskState::NeedsHuman,
                "needs-human",
                format!(
                    "reached the maximum of {} attempts",
                    self.settings.max_attempts
                ),
            );
        }
        let rows = self.ledger.store().task_rows(&task.id).unwrap_or_default();
        let history = wit_history(&attempts, &rows);
        let scope = RowScope {
            run_id: self.run_id.clone(),
            task_id: Some(task.id.clone()),
            attempt: Some(number),
            stage: "implement".into(),
            phase: None,
            role: "agent".into(),
            model: String::new(),
        };

        // Route.
        self.stage(worker, task, "route", None);
        let decision = match self
            .route(&plugins, &ctx, &wit, history.clone(), &scope)
            .await
        {
            Ok(d) => d,
            Err(ending) => return ending,
        };
        let model = decision.model.clone();
        let with_model = |mut e: Ending| {
            e.model = Some(model.clone());
            e
        };

        // Implement, in a fresh worktree.
        self.stage(worker, task, "implement", Some(&model));
        let dir = self
            .settings
            .worktrees_dir
            .join(format!("{}-a{number}", task.id));
        let branch = format!("gaffer/{}/a{number}", task.id);
        let worktree = match self
            .repo
            .add_worktree(&dir, &branch, &self.settings.target_branch)
        {
            Ok(w) => w,
            Err(e) => {
                return with_model(Ending::new(
                    TaskState::Failed,
                    "failed",
                    format!("git: {e}"),
                ));
            }
        };
        let worktree = worktree_slot.insert(worktree);
        let workspace = match Workspace::open(&worktree.path) {
            Ok(w) => w,
            Err(e) => {
                return with_model(Ending::new(TaskState::Failed, "failed", e.to_string()));
            }
        };
        let ctx = ctx.with_worktree(worktree.path.clone());
        let hooks = PluginHooks {
            hooks: plugins.hooks.clone(),
            task: wit.clone(),
            ctx: ctx.clone(),
            stop: Arc::clone(&self.stop),
            stop_reason: Arc::clone(&self.stop_reason),
        };
        let earlier: Vec<String> = attempts
            .iter()
            .flat_map(|a| {
                a.reasons
                    .iter()
                    .map(move |r| format!("attempt {} ({}): {r}", a.number, a.model))
            })
            .collect();
        let agent = Agent {
            gateway: &self.gateway,
            workspace: &workspace,
            hooks: &hooks,
            settings: &self.settings.agent,
            tag: CallTag {
                scope: scope.clone(),
                attempt_cap: Some(decision.attempt_budget),
            },
            model: model.clone(),
            stop: Arc::clone(&self.stop),
        };
        let prompt = task_prompt(&wit, &earlier, self.settings.test_command.as_deref());
        let report = agent.run(prompt).await;
        let turns = report.turns;
        let with_turns = |mut e: Ending| {
            e.model = Some(model.clone());
            e.turns = turns;
            e
        };
        match &report.end {
            AgentEnd::Finished { .. } | AgentEnd::TurnLimit | AgentEnd::ContextFull => {}
            AgentEnd::Budget(exhausted) => return with_turns(self.budget_ending(exhausted)),
            AgentEnd::Stopped => {
                let why = self
                    .stop_reason()
                    .unwrap_or_else(|| "the run stopped".into());
                return with_turns(Ending::parked(format!("requeued: {why}")));
            }
            AgentEnd::Provider(error) => {
                self.request_stop(format!("stopped: the provider failed: {error}"));
                return with_turns(Ending::parked(format!(
                    "requeued: the provider failed: {error}"
                )));
            }
        }

        // Check: the project's tests, then the rules on the whole change.
        self.stage(worker, task, "check", Some(&model));
        let tests = match &self.settings.test_command {
            Some(command) => {
                match run_command(&worktree.path, command, &self.settings.test_limits).await {
                    Ok(out) if out.exit_code == Some(127) => {
                        return with_turns(Ending::new(
                            TaskState::Failed,
                            "failed",
                            format!(
                                "the test command `{command}` was not found (exit 127): {}",
                                tail(&out.output, 400)
                            ),
                        ));
                    }
                    Ok(out) => test_result(command, &out),
                    Err(e) => {
                        return with_turns(Ending::new(TaskState::Failed, "failed", e.to_string()));
                    }
                }
            }
            None => TestResult {
                command: String::new(),
                ran: false,
                passed: false,
                exit_code: None,
                output_tail: String::new(),
                duration_ms: 0,
            },
        };
        let diff = match worktree.diff() {
            Ok(d) => d,
            Err(e) => {
                return with_turns(Ending::new(
                    TaskState::Failed,
                    "failed",
                    format!("git: {e}"),
                ));
            }
        };
        let tests_ending = |e: Ending| {
            let mut e = with_turns(e);
            e.tests_passed = tests.ran.then_some(tests.passed);
            e
        };
        if diff.files.is_empty() {
            let why = match &report.end {
                AgentEnd::TurnLimit => format!(
                    "the attempt changed nothing in its {} turns",
                    self.settings.agent.max_turns
                ),
                AgentEnd::ContextFull => {
                    "the attempt changed nothing before its context window filled".to_string()
                }
                _ => "the attempt changed nothing".to_string(),
            };
            return self.rejected(
                tests_ending(Ending::new(TaskState::RejectedRequeued, "rejected", why)),
                attempts.len(),
            );
        }
        let denials = match hooks.on_diff(&diff).await {
            Ok(d) => d,
            Err(stop) => return tests_ending(Ending::parked(format!("requeued: {stop}"))),
        };
        if !denials.is_empty() {
            let mut ending = tests_ending(Ending::new(
                TaskState::RejectedRequeued,
                "rejected",
                format!("the change breaks the team's rules: {}", denials.join("; ")),
            ));
            ending.reasons = denials;
            return self.rejected(ending, attempts.len());
        }

        // Verify.
        self.stage(worker, task, "verify", Some(&model));
        let cost_so_far = self
            .ledger
            .store()
            .spent(CapLevel::Task, &scope)
            .unwrap_or(0);
        let verdict = match &plugins.verifier {
            Some(verifier) => {
                let request = VerifyRequest {
                    task: wit.clone(),
                    attempt: number,
                    model: model.clone(),
                    diff: diff.clone(),
                    tests: tests.clone(),
                    cost_so_far,
                    history,
                };
                match verifier.verify(&ctx, &request).await {
                    Ok(called) => called.decision,
                    Err(error) => {
                        self.request_stop(format!("stopped: {error}"));
                        return tests_ending(Ending::parked(format!("requeued: {error}")));
                    }
                }
            }
            // Without a verifier, passing tests are the bar.
            None if tests.ran && !tests.passed => Verdict::Reject(vec![Finding {
                message: format!("the tests failed: {}", tail(&tests.output_tail, 600)),
                path: None,
                line: None,
            }]),
            None => Verdict::Approve,
        };
        match verdict {
            Verdict::Approve => {}
            Verdict::Reject(findings) => {
                let reasons = describe("verifier", &findings);
                let mut ending = tests_ending(Ending::new(
                    TaskState::RejectedRequeued,
                    "rejected",
                    format!("rejected: {}", reasons.join("; ")),
                ));
                ending.reasons = reasons;
                return self.rejected(ending, attempts.len());
            }
            Verdict::NeedsHuman(reason) => {
                return tests_ending(Ending::new(TaskState::NeedsHuman, "needs-human", reason));
            }
        }

        // Merge.
        self.stage(worker, task, "merge", Some(&model));
        let message = format!(
            "{}: {}\n\nImplemented by gaffer (attempt {number}, model {model}).",
            task.id, task.title
        );
        if let Err(e) = worktree.commit(&message) {
            return tests_ending(Ending::new(
                TaskState::Failed,
                "failed",
                format!("git: {e}"),
            ));
        }
        let merged = self
            .repo
            .merge(worktree, &self.settings.target_branch, &task.id, &message);
        let mut ending = match merged {
            Ok(MergeOutcome::Merged { commit, how, .. }) => Ending::new(
                TaskState::Merged,
                "approved",
                format!(
                    "merged into {} ({how:?}, {})",
                    self.settings.target_branch,
                    short(&commit)
                ),
            ),
            Ok(MergeOutcome::Parked { reason, .. }) => {
                Ending::new(TaskState::Merged, "approved", reason)
            }
            Ok(MergeOutcome::Conflict { reason }) => {
                return self.rejected(
                    tests_ending(Ending::new(TaskState::RejectedRequeued, "conflict", reason)),
                    attempts.len(),
                );
            }
            Err(e) => Ending::new(TaskState::Failed, "failed", format!("git: {e}")),
        };
        ending = tests_ending(ending);
        ending
    }

    /// A rejection requeues the task, unless it was the last attempt allowed.
    fn rejected(&self, mut ending: Ending, earlier: usize) -> Ending {
        if earlier + 1 >= self.settings.max_attempts as usize {
            ending.state = TaskState::NeedsHuman;
            ending.reason = format!(
                "{} (the last of {} attempts)",
                ending.reason, self.settings.max_attempts
            );
        }
        ending
    }

    /// Ask the router (or, without one, take the cheapest tier and escalate one tier per
    /// rejection).
    async fn route(
        &self,
        plugins: &ActivePlugins,
        ctx: &CallContext,
        task: &Task,
        history: Vec<crate::plugin::types::Attempt>,
        scope: &RowScope,
    ) -> Result<RouteDecision, Ending> {
        let (fuel_left, fuel_per_call) = match &plugins.router {
            Some(router) => {
                let limits = &router.spec().limits;
                (
                    limits
                        .fuel_per_task
                        .saturating_sub(ctx.fuel.used(router.name())),
                    limits.fuel_per_call,
                )
            }
            None => (0, 0),
        };
        let budget = budget_view(&self.ledger, scope, fuel_left, fuel_per_call)
            .map_err(|e| Ending::parked(format!("requeued: the store failed: {e}")))?;
        if let Some(task_left) = budget
            .money
            .iter()
            .find(|m| m.level == crate::plugin::types::BudgetLevel::Task)
            && task_left.left == 0
        {
            return Err(Ending::new(
                TaskState::BudgetExhausted,
                "budget-exhausted",
                format!(
                    "budget exhausted: the task cap of {} is spent",
                    format_dollars(task_left.cap)
                ),
            ));
        }
        let Some(router) = &plugins.router else {
            let mut models = self.models.clone();
            models.sort_by_key(|m| m.tier);
            let rejections = history
                .iter()
                .filter(|a| a.outcome == crate::plugin::types::AttemptOutcome::Rejected)
                .count();
            let pick = &models[rejections.min(models.len() - 1)];
            let left = budget
                .money
                .iter()
                .map(|m| m.left)
                .min()
                .unwrap_or(u64::MAX);
            return Ok(RouteDecision {
                model: pick.id.clone(),
                attempt_budget: left,
                reason: format!(
                    "no router configured: tier {} after {rejections} rejection(s)",
                    pick.tier
                ),
            });
        };
        let request = RouteRequest {
            task: task.clone(),
            history,
            models: self.models.clone(),
            budget,
        };
        match router.route(ctx, &request).await {
            Ok(called) => Ok(called.decision),
            Err(error) => {
                self.request_stop(format!("stopped: {error}"));
                Err(Ending::parked(format!("requeued: {error}")))
            }
        }
    }
}

fn short(commit: &str) -> &str {
    commit.get(..10).unwrap_or(commit)
}

/// The last `n` bytes of a text, on a character boundary.
fn tail(text: &str, n: usize) -> &str {
    if text.len() <= n {
        return text;
    }
    let mut start = text.len() - n;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// A command's outcome as the contract's test result.
fn test_result(command: &str, out: &CommandOutput) -> TestResult {
    TestResult {
        command: command.to_string(),
        ran: true,
        passed: out.exit_code == Some(0) && !out.timed_out,
        exit_code: out.exit_code,
        output_tail: tail(&out.output, 4000).to_string(),
        duration_ms: u64::try_from(out.duration.as_millis()).unwrap_or(u64::MAX),
    }
}
