//! `gaffer run`: workers claim tasks under leases and take each through one attempt (the
//! stages are in [`super::stages`]) until the backlog is empty, a cap stops the run, or a
//! signal asks it to stop. A crashed run loses nothing: the next start requeues its tasks,
//! settles its ledger and removes its worktrees ([`super::start`]).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::progress::{Event, LogLines, Progress};
use super::settings::PipelineSettings;
use super::stages::Ending;
use super::stop::{StopReason, StopSignal};
use crate::gateway::metered::Gateway;
use crate::git::{AsyncRepo, GitError, Repo, Worktree};
use crate::ledger::Ledger;
use crate::plugin::PluginSet;
use crate::plugin::types::ModelInfo;
use crate::store::{
    AsyncBacklog, AttemptRecord, BacklogStore, CapLevel, LedgerStore, MicroUsd, RowScope, Stage,
    StoreError, TaskRecord, TaskState, off_runtime, owner_is_alive, this_process_owner,
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
    #[error(
        "{0}. gaffer will not run the agent's commands unconfined unless told to: install what is missing, or pass `gaffer run --unconfined` (commands then run with your rights, network and files)"
    )]
    SandboxUnavailable(crate::sandbox::SandboxUnavailable),
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
    pub stopped: Option<StopReason>,
    /// Charged to this run.
    pub spent: MicroUsd,
    /// What recovery at start did.
    pub recovered: Vec<String>,
}

impl RunSummary {
    /// The exit code of `gaffer run`: 0 when the backlog was worked through, else the stop
    /// reason's.
    pub fn exit_code(&self) -> u8 {
        self.stopped.as_ref().map_or(0, StopReason::exit_code)
    }
}

/// One finished attempt.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AttemptSummary {
    pub task: String,
    pub attempt: u32,
    pub model: Option<String>,
    pub state: TaskState,
    /// How the attempt ended; `None` when it was parked (the task went back to the queue).
    pub outcome: Option<crate::store::AttemptOutcome>,
    pub reason: String,
    /// Charged to this attempt.
    pub cost: MicroUsd,
}

/// The collaborators of a run.
pub struct Pipeline {
    pub(super) repo: AsyncRepo,
    pub(super) backlog: AsyncBacklog,
    pub(super) ledger: Arc<Ledger>,
    pub(super) gateway: Arc<Gateway>,
    pub(super) plugins: Arc<PluginSet>,
    /// What the router is told about each model (`id` is the model key).
    pub(super) models: Vec<ModelInfo>,
    pub(super) settings: PipelineSettings,
    pub(super) run_id: String,
    /// `host:pid`, the lease owner.
    pub(super) owner: String,
    pub(super) progress: Arc<dyn Progress>,
    pub(super) stop: Arc<StopSignal>,
    /// One merge at a time, from building its candidate to moving the target: a merged tree
    /// that must be tested again holds it through its tests, so that the target it was
    /// tested on is still the target when it lands (a merge queue of one).
    pub(super) merge_queue: tokio::sync::Mutex<()>,
    claimed: AtomicU32,
    attempts: Mutex<Vec<AttemptSummary>>,
}

/// Builds a [`Pipeline`] from its collaborators; what is not given takes the defaults of a run
/// (a new run id, this process as the lease owner, log lines as progress).
pub struct PipelineBuilder {
    repo: Arc<Repo>,
    backlog: Arc<dyn BacklogStore>,
    ledger: Arc<Ledger>,
    gateway: Arc<Gateway>,
    plugins: Arc<PluginSet>,
    models: Vec<ModelInfo>,
    settings: PipelineSettings,
    run_id: Option<String>,
    owner: Option<String>,
    progress: Option<Arc<dyn Progress>>,
}

impl PipelineBuilder {
    /// What the router is told about each model.
    pub fn models(mut self, models: Vec<ModelInfo>) -> Self {
        self.models = models;
        self
    }
    pub fn run_id(mut self, run_id: impl Into<String>) -> Self {
        self.run_id = Some(run_id.into());
        self
    }
    /// The lease owner (`host:pid` of this process by default).
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }
    pub fn progress(mut self, progress: Arc<dyn Progress>) -> Self {
        self.progress = Some(progress);
        self
    }
    pub fn build(self) -> Pipeline {
        Pipeline {
            repo: AsyncRepo::new(self.repo),
            backlog: AsyncBacklog::new(self.backlog),
            ledger: self.ledger,
            gateway: self.gateway,
            plugins: self.plugins,
            models: self.models,
            settings: self.settings,
            run_id: self.run_id.unwrap_or_else(new_run_id),
            owner: self.owner.unwrap_or_else(this_process_owner),
            progress: self.progress.unwrap_or_else(|| Arc::new(LogLines)),
            stop: Arc::new(StopSignal::new()),
            merge_queue: tokio::sync::Mutex::new(()),
            claimed: AtomicU32::new(0),
            attempts: Mutex::new(Vec::new()),
        }
    }
}

/// A run's id: time, process and a random tag. The tag keeps ids apart when several hosts
/// share one store: containerised runs are all pid 1, and may start in the same second.
pub fn new_run_id() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!(
        "run-{secs}-{}-{}",
        std::process::id(),
        crate::store::owner::random_tag(3)
    )
}

/// A lease renewed from a thread of its own, every third of its length (two renewals may fail
/// before it lapses), so that neither a busy runtime nor a long git operation can let it lapse.
/// `renew` returns `false` to stop renewing.
struct Renewal {
    stop: mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Renewal {
    fn start(
        name: String,
        lease: Duration,
        mut renew: impl FnMut() -> bool + Send + 'static,
    ) -> Renewal {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(lease / 3) {
                    if !renew() {
                        return;
                    }
                }
            })
            .ok();
        if thread.is_none() {
            tracing::error!("cannot start the thread `{name}`");
        }
        Renewal { stop, thread }
    }

    /// Stop renewing, once the thread has finished its current renewal.
    fn stop(mut self) {
        let _ = self.stop.send(());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A task's lease, held while an attempt runs.
struct Heartbeat {
    renewal: Renewal,
    lost: Arc<AtomicBool>,
}

impl Heartbeat {
    fn start(
        backlog: Arc<dyn BacklogStore>,
        task: &str,
        owner: &str,
        lease: Duration,
    ) -> Heartbeat {
        let lost = Arc::new(AtomicBool::new(false));
        let (task, owner, flag) = (task.to_string(), owner.to_string(), Arc::clone(&lost));
        let renewal = Renewal::start(format!("lease {task}"), lease, move || {
            match backlog.heartbeat(&task, &owner, lease) {
                Ok(()) => true,
                Err(error) => {
                    tracing::warn!(task = %task, %error, "the lease is lost");
                    flag.store(true, Ordering::SeqCst);
                    false
                }
            }
        });
        Heartbeat { renewal, lost }
    }

    /// Stop renewing; whether the lease was lost meanwhile.
    fn stop(self) -> bool {
        self.renewal.stop();
        self.lost.load(Ordering::SeqCst)
    }
}

/// The run's own lease on the store: while it lives, hosts that cannot see this process know
/// it is alive. Each renewal also sweeps up after runs whose lease lapsed (a host that died):
/// their open ledger rows are recovered and their tasks requeued, by whichever live run gets
/// there first, exactly once (the store sees to that).
struct RunLease {
    renewal: Renewal,
    backlog: Arc<dyn BacklogStore>,
    owner: String,
}

impl RunLease {
    fn start(
        backlog: Arc<dyn BacklogStore>,
        ledger: Arc<dyn LedgerStore>,
        owner: &str,
        run_id: &str,
        workers: u32,
        lease: Duration,
    ) -> RunLease {
        let (store, owner_name, run_id) =
            (Arc::clone(&backlog), owner.to_string(), run_id.to_string());
        let renewal = Renewal::start("run lease".to_string(), lease, move || {
            match store.host_beat(&owner_name, &run_id, workers, lease) {
                Ok(()) => sweep(store.as_ref(), ledger.as_ref()),
                Err(error) => tracing::warn!(%error, "cannot renew the run's lease"),
            }
            true
        });
        RunLease {
            renewal,
            backlog,
            owner: owner.to_string(),
        }
    }

    /// Stop renewing and say the run left (its workers are done).
    fn end(self) {
        self.renewal.stop();
        if let Err(error) = self.backlog.host_left(&self.owner) {
            tracing::warn!(%error, "cannot record that the run left");
        }
    }
}

/// What dead runs left behind: their open rows (unsent released, sent charged at their
/// reservation, flagged), their running tasks, and leases that lapsed.
fn sweep(backlog: &dyn BacklogStore, ledger: &dyn LedgerStore) {
    match ledger.recover(&owner_is_alive) {
        Ok(r) if r.released + r.charged > 0 => tracing::warn!(
            released = r.released,
            charged = r.charged,
            charged_micros = r.charged_micros.get(),
            "recovered the ledger rows of a run that stopped"
        ),
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "cannot recover the rows of stopped runs"),
    }
    match backlog.requeue_orphans(&owner_is_alive) {
        Ok(ids) if !ids.is_empty() => tracing::warn!(
            tasks = %ids.join(", "),
            "requeued the tasks of a run that stopped"
        ),
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "cannot requeue the tasks of stopped runs"),
    }
    if let Err(error) = backlog.expire() {
        tracing::warn!(%error, "cannot requeue tasks whose lease expired");
    }
}

impl Pipeline {
    /// A builder over the collaborators a run needs.
    pub fn builder(
        repo: Arc<Repo>,
        backlog: Arc<dyn BacklogStore>,
        ledger: Arc<Ledger>,
        gateway: Arc<Gateway>,
        plugins: Arc<PluginSet>,
        settings: PipelineSettings,
    ) -> PipelineBuilder {
        PipelineBuilder {
            repo,
            backlog,
            ledger,
            gateway,
            plugins,
            models: Vec::new(),
            settings,
            run_id: None,
            owner: None,
            progress: None,
        }
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    pub fn settings(&self) -> &PipelineSettings {
        &self.settings
    }

    /// The plugins in force (a reload puts new ones in force from the next call).
    pub fn plugins(&self) -> &Arc<PluginSet> {
        &self.plugins
    }

    /// Ask the run to stop: no new claims, current steps park at their next boundary.
    pub fn request_stop(&self, reason: StopReason) {
        self.stop.request(reason);
    }

    /// Run until the backlog is empty (or forever with `watch`), a cap or a signal stops it,
    /// or `max_tasks` were claimed.
    pub async fn run(self: &Arc<Self>) -> Result<RunSummary, RunError> {
        self.preflight().await?;
        let workers = u32::try_from(self.settings.workers).unwrap_or(u32::MAX);
        {
            let (backlog, owner, run_id, lease) = (
                self.backlog.blocking(),
                self.owner.clone(),
                self.run_id.clone(),
                self.settings.lease,
            );
            off_runtime(move || backlog.host_beat(&owner, &run_id, workers, lease)).await?;
        }
        let run_lease = RunLease::start(
            self.backlog.blocking(),
            self.ledger.blocking_store(),
            &self.owner,
            &self.run_id,
            workers,
            self.settings.lease,
        );
        let recovered = match self.recover().await {
            Ok(recovered) => recovered,
            Err(error) => {
                let _ = tokio::task::spawn_blocking(move || run_lease.end()).await;
                return Err(error);
            }
        };
        self.progress.event(Event::Note(format!(
            "run {} started: {} worker(s){}",
            self.run_id,
            self.settings.workers,
            if self.settings.watch {
                ", watching for tasks"
            } else {
                ""
            }
        )));
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
        // gaffer's git commands run without git's automatic maintenance: it runs here, once.
        if let Err(error) = self.repo.maintain().await {
            tracing::warn!(%error, "git maintenance");
        }
        let _ = tokio::task::spawn_blocking(move || run_lease.end()).await;
        let spent = self
            .ledger
            .spent(CapLevel::Run, &RowScope::of_run(&self.run_id))
            .await
            .unwrap_or_default();
        self.progress.finish();
        Ok(RunSummary {
            run_id: self.run_id.clone(),
            attempts: self.attempts.lock().map(|a| a.clone()).unwrap_or_default(),
            stopped: self.stop.reason(),
            spent,
            recovered,
        })
    }

    /// Claims and attempts tasks until there are none (or the run stops). The worker keeps the
    /// worktree of its last attempt for the next, which recycles it, and parks it at the end
    /// for the next run's worker of the same number.
    async fn worker(&self, worker: usize) {
        let mut spare = None;
        self.work(worker, &mut spare).await;
        if let Some(worktree) = spare
            && let Err(error) = self
                .repo
                .park_worktree(&worktree, &self.settings.worktrees_dir, worker)
                .await
        {
            tracing::warn!(%error, "cannot remove the worktree; the next start will");
        }
    }

    async fn work(&self, worker: usize, spare: &mut Option<Worktree>) {
        loop {
            if self.stop.is_requested() {
                return;
            }
            if let Some(max) = self.settings.max_tasks
                && self.claimed.load(Ordering::SeqCst) >= max
            {
                return;
            }
            let claimed = match self.backlog.claim(&self.owner, self.settings.lease).await {
                Ok(claimed) => claimed,
                Err(error) => {
                    self.stop.request(StopReason::Store {
                        message: error.to_string(),
                    });
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
                let _ = self
                    .backlog
                    .finish(
                        &task.id,
                        &self.owner,
                        TaskState::Queued,
                        "--max-tasks reached; requeued",
                    )
                    .await;
                return;
            }
            self.attempt(worker, task, spare).await;
        }
    }

    /// Record the stage a task is in, for `gaffer status` and the live lines.
    pub(super) async fn enter(
        &self,
        worker: usize,
        task: &TaskRecord,
        stage: Stage,
        model: Option<&str>,
    ) {
        if let Err(error) = self.backlog.set_stage(&task.id, &self.owner, stage).await {
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

    /// One attempt at a claimed task, written down at the end whatever happens.
    async fn attempt(&self, worker: usize, task: TaskRecord, spare: &mut Option<Worktree>) {
        let started = Instant::now();
        let number = task.attempts;
        let heartbeat = Heartbeat::start(
            self.backlog.blocking(),
            &task.id,
            &self.owner,
            self.settings.lease,
        );
        // The worktree stays for the worker's next attempt.
        let ending = self.steps(worker, &task, spare).await;
        if heartbeat.stop() {
            self.progress.event(Event::Note(format!(
                "{}: the lease was lost; another worker has it",
                task.id
            )));
            return;
        }
        let cost = self
            .ledger
            .task_rows(&task.id)
            .await
            .map(|rows| super::history::attempt_cost(&rows, number).0)
            .unwrap_or_default();
        let written = match ending.outcome {
            None => {
                self.backlog
                    .finish(&task.id, &self.owner, TaskState::Queued, &ending.reason)
                    .await
            }
            Some(outcome) => {
                let record = AttemptRecord {
                    task_id: task.id.clone(),
                    number,
                    run_id: self.run_id.clone(),
                    model: ending.model.clone().unwrap_or_default(),
                    outcome,
                    reasons: ending.reasons.clone(),
                    turns: ending.turns,
                    tests_passed: ending.tests_passed,
                    wall_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                    rejected_by: ending.rejected_by,
                    changed: ending.changed.clone(),
                    implementer: ending.implementer.clone(),
                    agent_cost: ending.agent_cost,
                };
                self.backlog
                    .finish_attempt(record, &self.owner, ending.state, &ending.reason)
                    .await
            }
        };
        if let Err(error) = written {
            tracing::error!(task = %task.id, %error, "cannot record the end of the attempt");
        }
        let summary = AttemptSummary {
            task: task.id.clone(),
            attempt: number,
            model: ending.model.clone(),
            state: ending.state,
            outcome: ending.outcome,
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

    /// Ending for a step whose store access failed: the task goes back to the queue.
    pub(super) fn store_failed(error: StoreError) -> Ending {
        Ending::parked(format!("requeued: the store failed: {error}"))
    }
}
