//! One attempt's stages, one function each: route → implement → check → verify → merge. Each
//! returns what the next needs, or the [`Ending`] that ends the attempt there.

use std::sync::Arc;

use super::history::{budget_view, contract_task, fuel_used, history};
use super::hooks::PluginHooks;
use super::runner::Pipeline;
use super::stop::StopReason;
use crate::agent::external::ExternalAgent;
use crate::agent::session::{Agent, AgentEnd, AgentReport, task_prompt};
use crate::agent::workspace::Workspace;
use crate::gateway::metered::CallTag;
use crate::git::{Candidate, MergeKind, MergeOutcome, Worktree};
use crate::ledger::{BudgetExhausted, format_dollars};
use crate::plugin::chain::describe;
use crate::plugin::types::{
    Attempt, Diff, FileStatus, Finding, RouteDecision, RouteRequest, Task, TestResult, Verdict,
    VerifyRequest,
};
use crate::plugin::{ActivePlugins, CallContext, CallError, TaskFuel};
use crate::sandbox::{CommandOutput, Mount, run_command};
use crate::store::{
    AttemptOutcome, AttemptRecord, CapLevel, ChangedFile, MicroUsd, RejectionCause, Role, RowScope,
    Stage, TaskRecord, TaskState,
};

/// How an attempt ended, before it is written down.
#[derive(Debug, Clone)]
pub(super) struct Ending {
    pub(super) state: TaskState,
    /// `None`: the attempt is parked (a stop, a run-wide cap): the task goes back to the queue
    /// as it was and no attempt is recorded.
    pub(super) outcome: Option<AttemptOutcome>,
    pub(super) reasons: Vec<String>,
    pub(super) reason: String,
    pub(super) model: Option<String>,
    pub(super) turns: u32,
    pub(super) tests_passed: Option<bool>,
    /// What rejected the attempt, when it was rejected.
    pub(super) rejected_by: Option<RejectionCause>,
    /// The files its change touched, once it was diffed.
    pub(super) changed: Vec<ChangedFile>,
    /// The external agent that implemented it (`None`: the built-in loop).
    pub(super) implementer: Option<String>,
    /// That agent's own figure for its cost, beside the ledger's.
    pub(super) agent_cost: Option<crate::ledger::MicroUsd>,
}

impl Ending {
    pub(super) fn new(
        state: TaskState,
        outcome: AttemptOutcome,
        reason: impl Into<String>,
    ) -> Ending {
        let reason = reason.into();
        Ending {
            state,
            outcome: Some(outcome),
            reasons: vec![reason.clone()],
            reason,
            model: None,
            turns: 0,
            tests_passed: None,
            rejected_by: None,
            changed: Vec::new(),
            implementer: None,
            agent_cost: None,
        }
    }

    pub(super) fn parked(reason: impl Into<String>) -> Ending {
        let reason = reason.into();
        Ending {
            state: TaskState::Queued,
            outcome: None,
            reasons: vec![reason.clone()],
            reason,
            model: None,
            turns: 0,
            tests_passed: None,
            rejected_by: None,
            changed: Vec::new(),
            implementer: None,
            agent_cost: None,
        }
    }

    fn failed(reason: impl Into<String>) -> Ending {
        Ending::new(TaskState::Failed, AttemptOutcome::Failed, reason)
    }

    fn with_reasons(mut self, reasons: Vec<String>) -> Ending {
        self.reasons = reasons;
        self
    }

    /// Say what rejected the attempt.
    fn rejected_by(mut self, cause: RejectionCause) -> Ending {
        self.rejected_by = Some(cause);
        self
    }

    /// What the attempt got to before it ended: its model, turns and test result.
    fn traced(mut self, trace: &Trace) -> Ending {
        self.model = self.model.or_else(|| trace.model.clone());
        self.turns = trace.turns;
        self.tests_passed = self.tests_passed.or(trace.tests_passed);
        if self.changed.is_empty() {
            self.changed.clone_from(&trace.changed);
        }
        self.implementer = self.implementer.or_else(|| trace.implementer.clone());
        self.agent_cost = self.agent_cost.or(trace.agent_cost);
        self
    }
}

/// The files a diff touches, as the attempt's record keeps them.
fn changed_files(diff: &Diff) -> Vec<ChangedFile> {
    diff.files
        .iter()
        .map(|f| ChangedFile {
            path: f.path.clone(),
            status: match f.status {
                FileStatus::Added => "added",
                FileStatus::Modified => "modified",
                FileStatus::Deleted => "deleted",
                FileStatus::Renamed => "renamed",
            }
            .to_string(),
            added: f.added,
            removed: f.removed,
        })
        .collect()
}

/// What an attempt has done so far, for its ending.
#[derive(Debug, Default)]
struct Trace {
    model: Option<String>,
    turns: u32,
    tests_passed: Option<bool>,
    changed: Vec<ChangedFile>,
    implementer: Option<String>,
    agent_cost: Option<crate::ledger::MicroUsd>,
}

/// What every stage of one attempt knows.
struct AttemptContext<'a> {
    task: &'a TaskRecord,
    number: u32,
    contract: Task,
    plugins: Arc<ActivePlugins>,
    ctx: CallContext,
    earlier: Vec<AttemptRecord>,
    history: Vec<Attempt>,
    /// The scope of the agent's model calls.
    scope: RowScope,
}

/// What implementing left behind.
struct Implemented {
    worktree: Worktree,
    report: AgentReport,
}

/// What checking found.
struct Checked {
    tests: TestResult,
    diff: Diff,
}

/// Bytes of one ignored file the `on-diff` hooks are shown; a bigger one needs a person.
const IGNORED_CONTENT_CAP: u64 = 64 * 1024;

impl Pipeline {
    /// Route, implement, check, verify, merge.
    pub(super) async fn steps(
        &self,
        worker: usize,
        task: &TaskRecord,
        worktree_slot: &mut Option<Worktree>,
    ) -> Ending {
        let mut trace = Trace::default();
        let ending = match self.stages(worker, task, worktree_slot, &mut trace).await {
            Ok(ending) | Err(ending) => ending,
        };
        ending.traced(&trace)
    }

    async fn stages(
        &self,
        worker: usize,
        task: &TaskRecord,
        worktree_slot: &mut Option<Worktree>,
        trace: &mut Trace,
    ) -> Result<Ending, Ending> {
        let attempt = self.prepare(task).await?;
        self.enter(worker, task, Stage::Route, None).await;
        let decision = self.route(&attempt).await?;
        trace.model = Some(decision.model.clone());
        self.enter(worker, task, Stage::Implement, Some(&decision.model))
            .await;
        let implemented = self
            .implement(&attempt, &decision, worktree_slot, trace)
            .await?;
        self.enter(worker, task, Stage::Check, Some(&decision.model))
            .await;
        let checked = self.check(&attempt, &decision, &implemented, trace).await?;
        self.enter(worker, task, Stage::Verify, Some(&decision.model))
            .await;
        self.verify(&attempt, &decision, &checked).await?;
        self.enter(worker, task, Stage::Merge, Some(&decision.model))
            .await;
        self.merge(&attempt, &decision, &implemented, worktree_slot)
            .await
    }

    /// The attempt's history, its plugins (as in force now) and its fuel account, which starts
    /// from what the task's plugins used in earlier attempts and runs (the ledger has it).
    async fn prepare<'a>(&self, task: &'a TaskRecord) -> Result<AttemptContext<'a>, Ending> {
        let number = task.attempts;
        let earlier = self
            .backlog
            .attempts(&task.id)
            .await
            .map_err(Pipeline::store_failed)?;
        if earlier.len() >= self.settings.max_attempts as usize {
            return Err(Ending::new(
                TaskState::NeedsHuman,
                AttemptOutcome::NeedsHuman,
                format!(
                    "reached the maximum of {} attempts",
                    self.settings.max_attempts
                ),
            ));
        }
        let rows = self
            .ledger
            .task_rows(&task.id)
            .await
            .map_err(Pipeline::store_failed)?;
        let ctx = CallContext {
            fuel: Arc::new(TaskFuel::with_used(fuel_used(&rows))),
            ..CallContext::new(task.id.clone(), number)
        };
        Ok(AttemptContext {
            task,
            number,
            contract: contract_task(task),
            plugins: self.plugins.current(),
            ctx,
            history: history(&earlier, &rows),
            earlier,
            scope: RowScope::attempt(
                &self.run_id,
                &task.id,
                number,
                Stage::Implement,
                Role::Agent,
            ),
        })
    }

    /// A plugin call that produced no decision: out of the task's fuel, the task is spent
    /// (budget-exhausted); any other such fault stops the run.
    fn plugin_failed(&self, error: CallError) -> Ending {
        match error {
            CallError::TaskFuelExhausted { .. } => Ending::new(
                TaskState::BudgetExhausted,
                AttemptOutcome::BudgetExhausted,
                format!("budget exhausted: {error}"),
            ),
            other => {
                self.stop.request(StopReason::Plugin {
                    message: other.to_string(),
                });
                Ending::parked(format!("requeued: {other}"))
            }
        }
    }

    /// A budget refusal as the attempt's end: a run-wide cap stops the run and parks the task.
    fn budget_ending(&self, exhausted: &BudgetExhausted) -> Ending {
        let message = exhausted.to_string();
        match exhausted.level {
            CapLevel::Run | CapLevel::Day | CapLevel::Month | CapLevel::Model => {
                self.stop.request(StopReason::Cap {
                    level: exhausted.level,
                    message: message.clone(),
                });
                Ending::parked(format!("requeued: the run stopped ({message})"))
            }
            CapLevel::Task => Ending::new(
                TaskState::BudgetExhausted,
                AttemptOutcome::BudgetExhausted,
                message,
            ),
            // The attempt's (or a call's) cap: the next attempt may be routed differently.
            CapLevel::Attempt | CapLevel::Call => Ending::new(
                TaskState::RejectedRequeued,
                AttemptOutcome::BudgetExhausted,
                message,
            ),
        }
    }

    /// A rejection requeues the task, unless it was the last attempt allowed.
    fn rejected(&self, attempt: &AttemptContext<'_>, mut ending: Ending) -> Ending {
        if attempt.earlier.len() + 1 >= self.settings.max_attempts as usize {
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
    async fn route(&self, attempt: &AttemptContext<'_>) -> Result<RouteDecision, Ending> {
        let (fuel_left, fuel_per_call) = match &attempt.plugins.router {
            Some(router) => {
                let limits = &router.spec().limits;
                (
                    limits
                        .fuel_per_task
                        .saturating_sub(attempt.ctx.fuel.used(router.name())),
                    limits.fuel_per_call,
                )
            }
            None => (0, 0),
        };
        let budget = budget_view(&self.ledger, &attempt.scope, fuel_left, fuel_per_call)
            .await
            .map_err(Pipeline::store_failed)?;
        if let Some(task_left) = budget.money.iter().find(|m| m.level == CapLevel::Task)
            && task_left.left.is_zero()
        {
            return Err(Ending::new(
                TaskState::BudgetExhausted,
                AttemptOutcome::BudgetExhausted,
                format!(
                    "budget exhausted: the task cap of {} is spent",
                    format_dollars(task_left.cap)
                ),
            ));
        }
        let Some(router) = &attempt.plugins.router else {
            let mut models = self.models.clone();
            models.sort_by_key(|m| m.tier);
            let rejections = attempt
                .history
                .iter()
                .filter(|a| {
                    matches!(
                        a.outcome,
                        AttemptOutcome::Rejected | AttemptOutcome::Conflict
                    )
                })
                .count();
            let pick = &models[rejections.min(models.len() - 1)];
            return Ok(RouteDecision {
                model: pick.id.clone(),
                attempt_budget: budget.least_left(),
                reason: format!(
                    "no router configured: tier {} after {rejections} rejection(s)",
                    pick.tier
                ),
            });
        };
        let request = RouteRequest {
            task: attempt.contract.clone(),
            history: attempt.history.clone(),
            models: self.models.clone(),
            budget,
        };
        match router.route(&attempt.ctx, &request).await {
            Ok(called) => Ok(called.decision),
            Err(error) => Err(self.plugin_failed(error)),
        }
    }

    /// The agent works in a fresh worktree of the target branch, under the hooks.
    async fn implement(
        &self,
        attempt: &AttemptContext<'_>,
        decision: &RouteDecision,
        worktree_slot: &mut Option<Worktree>,
        trace: &mut Trace,
    ) -> Result<Implemented, Ending> {
        let task = attempt.task;
        let dir = self
            .settings
            .worktrees_dir
            .join(format!("{}-a{}", task.id, attempt.number));
        let branch = format!("gaffer/{}/a{}", task.id, attempt.number);
        let git_failed = |e: crate::git::GitError| Ending::failed(format!("git: {e}"));
        // On a shared remote, from its tip as fetched now: this clone's own branch may be
        // behind what the other hosts merged.
        let base = match &self.settings.remote {
            Some(remote) => self
                .repo
                .fetch_target(remote, &self.settings.target_branch)
                .await
                .map_err(git_failed)?,
            None => self.settings.target_branch.clone(),
        };
        // The worker's worktree from its previous attempt, if any, recycled.
        let worktree = self
            .repo
            .prepare_worktree(worktree_slot.take(), &dir, &branch, &base)
            .await
            .map_err(git_failed)?;
        let worktree = worktree_slot.insert(worktree).clone();
        let workspace =
            Workspace::open(&worktree.path).map_err(|e| Ending::failed(e.to_string()))?;
        let ctx = attempt.ctx.clone().with_worktree(worktree.path.clone());
        // The attempt ends early when the run stops, or when its task runs out of plugin fuel.
        let cancel = self.stop.token().child_token();
        let hooks = PluginHooks::new(
            attempt.plugins.hooks.clone(),
            attempt.contract.clone(),
            ctx,
            Arc::clone(&self.stop),
            cancel.clone(),
        );
        let earlier: Vec<String> = attempt
            .earlier
            .iter()
            .flat_map(|a| {
                a.reasons
                    .iter()
                    .map(move |r| format!("attempt {} ({}): {r}", a.number, a.model))
            })
            .collect();
        // The attempt's commands share a scratch home and /tmp, gone with the attempt (one
        // attempt cannot leave anything there for the next).
        let scratch = tempfile::Builder::new()
            .prefix(&format!("gaffer-{}-a{}-", task.id, attempt.number))
            .tempdir()
            .map_err(|e| Ending::failed(format!("cannot make the attempt's scratch: {e}")))?;
        // git works inside the sandbox on a git dir of the attempt's own.
        let mounts = self
            .repo
            .private_git_dir(&worktree, &scratch.path().join("git"))
            .await
            .map_err(|e| Ending::failed(format!("git: {e}")))?;
        let mut settings = self.settings.agent.clone();
        settings.command.scratch = Some(scratch.path().to_path_buf());
        settings.command.mounts = mounts
            .into_iter()
            .map(|(path, writable)| Mount { path, writable })
            .collect();
        let tag = CallTag {
            scope: attempt.scope.clone(),
            attempt_cap: Some(decision.attempt_budget),
        };
        let prompt = task_prompt(
            &attempt.contract,
            &earlier,
            self.settings.test_command.as_deref(),
        );
        let report = match self.settings.implementers.for_model(&decision.model) {
            None => {
                let agent = Agent {
                    gateway: &self.gateway,
                    workspace: &workspace,
                    hooks: &hooks,
                    settings: &settings,
                    tag,
                    model: decision.model.clone(),
                    stop: cancel,
                };
                agent.run(prompt).await
            }
            Some(implementer) => {
                trace.implementer = Some(implementer.name.clone());
                let agent = ExternalAgent {
                    gateway: &self.gateway,
                    implementer,
                    bridge: self.settings.implementers.bridge.as_ref(),
                    tag,
                    model: decision.model.clone(),
                    worktree: &worktree.path,
                    limits: &settings.command,
                    max_turns: settings.max_turns,
                    stop: cancel,
                };
                agent.run(&prompt).await
            }
        };
        trace.turns = report.turns;
        trace.agent_cost = report.agent_figure.as_ref().and_then(|f| f.cost);
        if let Some(exhausted) = hooks.fuel_exhausted() {
            return Err(self.plugin_failed(exhausted));
        }
        match &report.end {
            AgentEnd::Finished { .. } | AgentEnd::TurnLimit | AgentEnd::ContextFull => {}
            AgentEnd::Budget(exhausted) => {
                let mut ending = self.budget_ending(exhausted);
                // What an external agent showed when the cap refused its call.
                if let (Some(agent), Some(said)) = (
                    &trace.implementer,
                    report.agent_figure.as_ref().and_then(|f| f.said.as_ref()),
                ) {
                    ending.reasons.push(format!("{agent} said: {said}"));
                }
                return Err(ending);
            }
            AgentEnd::Stopped => {
                let why = self
                    .stop
                    .reason()
                    .map_or_else(|| "the run stopped".to_string(), |r| r.to_string());
                return Err(Ending::parked(format!("requeued: {why}")));
            }
            AgentEnd::Failed(reason) => return Err(Ending::failed(reason.clone())),
            AgentEnd::Provider(error) => {
                self.stop.request(StopReason::Provider {
                    message: error.clone(),
                });
                return Err(Ending::parked(format!(
                    "requeued: the provider failed: {error}"
                )));
            }
        }
        Ok(Implemented { worktree, report })
    }

    /// One snapshot of what the attempt left, then on a clean checkout of exactly that: the
    /// project's tests, the policy files, the rules on the whole change (and on the ignored
    /// files the attempt left, which never merge). The worktree is left at the snapshot.
    async fn check(
        &self,
        attempt: &AttemptContext<'_>,
        decision: &RouteDecision,
        implemented: &Implemented,
        trace: &mut Trace,
    ) -> Result<Checked, Ending> {
        let worktree = &implemented.worktree;
        let git_failed = |e: crate::git::GitError| Ending::failed(format!("git: {e}"));
        let message = commit_message(attempt, decision);
        let snapshot = match self.repo.snapshot(worktree, &message).await {
            Ok(snapshot) => snapshot,
            Err(crate::git::GitError::NestedRepository { path, .. }) => {
                return Err(nested_repository(&path));
            }
            Err(e) => return Err(git_failed(e)),
        };
        let commit = snapshot.commit;
        // Two reads of the same worktree and commit, at once (two git processes on two cores).
        let (ignored, diff) = tokio::try_join!(
            self.repo.ignored_files(worktree, IGNORED_CONTENT_CAP),
            self.repo.diff_commits(worktree, &worktree.base, &commit),
        )
        .map_err(git_failed)?;
        trace.changed = changed_files(&diff);
        self.repo
            .remove_untracked(worktree)
            .await
            .map_err(git_failed)?;
        if diff.files.is_empty() {
            let why = match &implemented.report.end {
                AgentEnd::TurnLimit => format!(
                    "the attempt changed nothing in its {} turns",
                    self.settings.agent.max_turns
                ),
                AgentEnd::ContextFull => {
                    "the attempt changed nothing before its context window filled".to_string()
                }
                _ => "the attempt changed nothing".to_string(),
            };
            return Err(self.rejected(
                attempt,
                Ending::new(TaskState::RejectedRequeued, AttemptOutcome::Rejected, why)
                    .rejected_by(RejectionCause::Other),
            ));
        }
        let mut policy = self.settings.policy_files.touched(&diff);
        if let Some(path) = snapshot.nested_repositories.first() {
            return Err(nested_repository(path));
        }
        policy.extend(
            ignored
                .iter()
                .filter(|f| f.content.is_none() && !f.path.ends_with('/'))
                .map(|f| {
                    format!(
                        "`{}` is ignored by git ({} bytes, sha256 {}) and over the {} bytes the \
                         hooks are shown",
                        f.path, f.size, f.sha256, IGNORED_CONTENT_CAP
                    )
                }),
        );
        if !policy.is_empty() {
            return Err(Ending::new(
                TaskState::NeedsHuman,
                AttemptOutcome::NeedsHuman,
                format!(
                    "only a person may accept this change: {}",
                    policy.join("; ")
                ),
            )
            .with_reasons(policy));
        }
        let tests = self.run_tests(worktree, &commit).await?;
        trace.tests_passed = tests.ran.then_some(tests.passed);
        self.rules(
            attempt,
            worktree,
            &crate::git::with_ignored(&diff, &ignored),
        )
        .await?;
        Ok(Checked { tests, diff })
    }

    /// The project's test command on a clean checkout of `commit` in the worktree, which is
    /// then reset to `commit` again (the tests' byproducts go).
    async fn run_tests(&self, worktree: &Worktree, commit: &str) -> Result<TestResult, Ending> {
        let Some(command) = &self.settings.test_command else {
            return Ok(TestResult::default());
        };
        let out = run_command(&worktree.path, command, &self.settings.test_limits).await;
        self.repo
            .reset_to(worktree, commit)
            .await
            .map_err(|e| Ending::failed(format!("git: {e}")))?;
        match out {
            Ok(out) if out.exit_code == Some(127) => Err(Ending::failed(format!(
                "the test command `{command}` was not found (exit 127): {}",
                tail(&out.output, 400)
            ))),
            Ok(out) => Ok(test_result(command, &out)),
            Err(e) => Err(Ending::failed(e.to_string())),
        }
    }

    /// The `on-diff` hooks on a change; a denial rejects the attempt.
    async fn rules(
        &self,
        attempt: &AttemptContext<'_>,
        worktree: &Worktree,
        diff: &Diff,
    ) -> Result<(), Ending> {
        let hooks = PluginHooks::new(
            attempt.plugins.hooks.clone(),
            attempt.contract.clone(),
            attempt.ctx.clone().with_worktree(worktree.path.clone()),
            Arc::clone(&self.stop),
            self.stop.token().child_token(),
        );
        let denials = match hooks.on_diff(diff).await {
            Ok(denials) => denials,
            Err(error) => return Err(self.plugin_failed(error)),
        };
        if !denials.is_empty() {
            let ending = Ending::new(
                TaskState::RejectedRequeued,
                AttemptOutcome::Rejected,
                format!("the change breaks the team's rules: {}", denials.join("; ")),
            )
            .with_reasons(denials)
            .rejected_by(RejectionCause::Hooks);
            return Err(self.rejected(attempt, ending));
        }
        Ok(())
    }

    /// The verifier's judgement (without one, passing tests are the bar).
    async fn verify(
        &self,
        attempt: &AttemptContext<'_>,
        decision: &RouteDecision,
        checked: &Checked,
    ) -> Result<(), Ending> {
        let cost_so_far = self
            .ledger
            .spent(CapLevel::Task, &attempt.scope)
            .await
            .unwrap_or(MicroUsd::ZERO);
        let verdict = match &attempt.plugins.verifier {
            Some(verifier) => {
                let request = VerifyRequest {
                    task: attempt.contract.clone(),
                    attempt: attempt.number,
                    model: decision.model.clone(),
                    diff: checked.diff.clone(),
                    tests: checked.tests.clone(),
                    cost_so_far,
                    history: attempt.history.clone(),
                };
                match verifier.verify(&attempt.ctx, &request).await {
                    Ok(called) => called.decision,
                    Err(error) => return Err(self.plugin_failed(error)),
                }
            }
            None if checked.tests.ran && !checked.tests.passed => Verdict::Reject(vec![Finding {
                message: format!(
                    "the tests failed: {}",
                    tail(&checked.tests.output_tail, 600)
                ),
                path: None,
                line: None,
            }]),
            None => Verdict::Approve,
        };
        match verdict {
            Verdict::Approve => Ok(()),
            Verdict::Reject(findings) => {
                let reasons = describe("verifier", &findings);
                let ending = Ending::new(
                    TaskState::RejectedRequeued,
                    AttemptOutcome::Rejected,
                    format!("rejected: {}", reasons.join("; ")),
                )
                .with_reasons(reasons)
                // Failing tests are the cause whoever judged them; else the verifier's view.
                .rejected_by(if checked.tests.ran && !checked.tests.passed {
                    RejectionCause::Tests
                } else {
                    RejectionCause::Verifier
                });
                Err(self.rejected(attempt, ending))
            }
            Verdict::NeedsHuman(reason) => Err(Ending::new(
                TaskState::NeedsHuman,
                AttemptOutcome::NeedsHuman,
                reason,
            )),
        }
    }

    /// Merge the snapshot into the target branch. When the target moved since the attempt
    /// began, the merged tree is tested and hooked again on a clean checkout before the target
    /// moves to it (with a compare-and-swap; a target that moved again starts this over). On a
    /// shared remote the candidate is built on the remote's tip and lands by a push that is
    /// the compare-and-swap.
    async fn merge(
        &self,
        attempt: &AttemptContext<'_>,
        decision: &RouteDecision,
        implemented: &Implemented,
        worktree_slot: &mut Option<Worktree>,
    ) -> Result<Ending, Ending> {
        let task = attempt.task;
        let worktree = &implemented.worktree;
        let target = &self.settings.merge_target();
        let git_failed = |e: crate::git::GitError| Ending::failed(format!("git: {e}"));
        let message = commit_message(attempt, decision);
        let _queue = self.merge_queue.lock().await;
        // Hosts sharing the store and the remote take turns too, so that each lands on the tip
        // the last one pushed instead of losing the race and testing again (PostgreSQL only:
        // the lock is the store's).
        let _turn = match &target.remote {
            Some(_) => self
                .backlog
                .merge_turn(&target.to_string())
                .await
                .map_err(Pipeline::store_failed)?,
            None => None,
        };
        // Within this process the target moves only under the queue; another process, another
        // host or a person may still move it, hence the tries.
        for _ in 0..target.tries() {
            let candidate = self
                .repo
                .candidate(worktree, target, &message)
                .await
                .map_err(git_failed)?;
            let (merged, how, tip) = match &candidate {
                Candidate::Ready { commit, how, tip } => (commit.clone(), *how, tip.clone()),
                Candidate::Conflict(reason) => {
                    return Err(self.rejected(
                        attempt,
                        Ending::new(
                            TaskState::RejectedRequeued,
                            AttemptOutcome::Conflict,
                            reason.clone(),
                        )
                        .rejected_by(RejectionCause::Other),
                    ));
                }
            };
            if how != MergeKind::FastForward {
                self.repo
                    .reset_to(worktree, &merged)
                    .await
                    .map_err(git_failed)?;
                let tests = self.run_tests(worktree, &merged).await?;
                if tests.ran && !tests.passed {
                    let ending = Ending::new(
                        TaskState::RejectedRequeued,
                        AttemptOutcome::Rejected,
                        format!(
                            "{target} moved while the attempt ran, and merged onto it the tests \
                             fail: {}",
                            tail(&tests.output_tail, 600)
                        ),
                    )
                    .rejected_by(RejectionCause::Tests);
                    return Err(self.rejected(attempt, ending));
                }
                let change = self
                    .repo
                    .diff_commits(worktree, &tip, &merged)
                    .await
                    .map_err(git_failed)?;
                self.rules(attempt, worktree, &change).await?;
            }
            let landed = self
                .repo
                .land(&candidate, target, &task.id)
                .await
                .map_err(git_failed)?;
            match landed {
                Some(MergeOutcome::Merged { commit, how, .. }) => {
                    // The target is now the snapshot itself, and the worktree is exactly the
                    // snapshot: the check's clean (or the reset after the tests) was the last
                    // thing that touched it, and only plugins (no files) and the user's
                    // checkout ran since. The worker's next attempt, on this commit, can take
                    // the worktree as it is.
                    if how == MergeKind::FastForward
                        && let Some(spare) = worktree_slot.as_mut()
                        && spare.path == worktree.path
                    {
                        spare.clean_at = Some(commit.clone());
                    }
                    return Ok(Ending::new(
                        TaskState::Merged,
                        AttemptOutcome::Approved,
                        format!("merged into {target} ({how:?}, {})", short(&commit)),
                    ));
                }
                Some(MergeOutcome::Parked { reason, .. }) => {
                    return Ok(Ending::new(
                        TaskState::Merged,
                        AttemptOutcome::Approved,
                        reason,
                    ));
                }
                Some(MergeOutcome::Conflict { reason }) => {
                    return Err(self.rejected(
                        attempt,
                        Ending::new(
                            TaskState::RejectedRequeued,
                            AttemptOutcome::Conflict,
                            reason,
                        )
                        .rejected_by(RejectionCause::Other),
                    ));
                }
                // The target moved again: a new candidate on its new tip.
                None => {}
            }
        }
        if target.remote.is_some() {
            // Other hosts kept landing first. That says nothing against the change or its
            // model: no rejection (no cause, nothing for a router to escalate on), but an
            // attempt that ended outside any plugin, and the task back in the queue, so that
            // its next attempt starts from the new tip (unless this was its last one).
            let kept_moving = format!(
                "{target} moved during each of {} tries to land on it (other hosts kept merging \
                 first)",
                target.tries()
            );
            let mut ending = self.rejected(
                attempt,
                Ending::new(
                    TaskState::RejectedRequeued,
                    AttemptOutcome::Failed,
                    kept_moving.clone(),
                ),
            );
            if ending.state == TaskState::RejectedRequeued {
                ending.reason =
                    format!("requeued: {kept_moving}; the next attempt starts from its new tip");
            }
            return Err(ending);
        }
        Err(Ending::failed(format!(
            "git: {}",
            self.repo.blocking().moved_every_time(target)
        )))
    }
}

/// A directory of the attempt that holds a repository of its own: it would merge as a
/// submodule (or cannot be staged at all), which only a person may accept.
fn nested_repository(path: &str) -> Ending {
    Ending::new(
        TaskState::NeedsHuman,
        AttemptOutcome::NeedsHuman,
        format!(
            "only a person may accept this change: `{path}` is a repository of its own (it \
             would merge as a submodule)"
        ),
    )
}

/// The commit message of an attempt's snapshot (and of a merge commit).
fn commit_message(attempt: &AttemptContext<'_>, decision: &RouteDecision) -> String {
    format!(
        "{}: {}\n\nImplemented by gaffer (attempt {}, model {}).",
        attempt.task.id, attempt.task.title, attempt.number, decision.model
    )
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
