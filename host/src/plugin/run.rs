//! What every plugin call produces besides its answer: a run record (fuel, wall time, outcome)
//! for the ledger, and the per-task fuel account that calls draw from.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use super::error::PluginError;
use super::spec::{OnFailure, World};
use crate::store::Stage;

/// One plugin run, as the ledger records it (zero tokens, its fuel and wall time).
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginRun {
    pub plugin: String,
    pub world: World,
    /// The exported function called (`route`, `verify`, `pre-tool`, ...).
    pub function: &'static str,
    pub task_id: String,
    pub attempt: u32,
    /// The stage of the attempt the call was made in.
    pub stage: Stage,
    /// Instructions used.
    pub fuel_used: u64,
    /// The fuel the call was allowed.
    pub fuel_allowance: u64,
    #[serde(serialize_with = "serialize_micros")]
    pub wall: Duration,
    /// Linear memory the instance held at the end of the call, all memories, in bytes.
    pub memory_bytes: u64,
    /// `ok`, or the fault's kind (`out-of-fuel`, `trap`, `deadline`, ...).
    pub outcome: &'static str,
    /// The fault's message, when there was one.
    pub fault: Option<String>,
    /// The fail policy applied to the fault, when there was one.
    pub policy: Option<OnFailure>,
    /// Content hash of the component that ran.
    pub component: String,
}

/// Serialize a duration as whole microseconds (JSON output of runs and reports).
pub(crate) fn serialize_micros<S: serde::Serializer>(
    duration: &Duration,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(u64::try_from(duration.as_micros()).unwrap_or(u64::MAX))
}

/// Receives every plugin run. The ledger implements it; the default writes a debug log line.
pub trait RunRecorder: Send + Sync + 'static {
    fn record(&self, run: &PluginRun);
}

/// The default recorder: a `tracing` event per run.
#[derive(Debug, Default)]
pub struct LogRecorder;

impl RunRecorder for LogRecorder {
    fn record(&self, run: &PluginRun) {
        tracing::debug!(
            plugin = %run.plugin,
            function = run.function,
            task = %run.task_id,
            fuel = run.fuel_used,
            wall_us = run.wall.as_micros() as u64,
            outcome = run.outcome,
            "plugin run"
        );
    }
}

/// A recorder that keeps every run in memory (tests, `plugin check`).
#[derive(Debug, Default)]
pub struct MemoryRecorder {
    runs: Mutex<Vec<PluginRun>>,
}

impl MemoryRecorder {
    /// All runs recorded so far.
    pub fn runs(&self) -> Vec<PluginRun> {
        self.runs.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl RunRecorder for MemoryRecorder {
    fn record(&self, run: &PluginRun) {
        if let Ok(mut runs) = self.runs.lock() {
            runs.push(run.clone());
        }
    }
}

/// Fuel used by each plugin within one task, checked against each plugin's `fuel_per_task`.
#[derive(Debug, Default)]
pub struct TaskFuel {
    used: Mutex<HashMap<String, u64>>,
}

impl TaskFuel {
    pub fn new() -> TaskFuel {
        TaskFuel::default()
    }

    /// An account that starts from what each plugin already used in the task (in earlier runs
    /// as well: the ledger keeps every plugin run's fuel).
    pub fn with_used(used: impl IntoIterator<Item = (String, u64)>) -> TaskFuel {
        TaskFuel {
            used: Mutex::new(used.into_iter().collect()),
        }
    }

    /// Fuel `plugin` has used in this task.
    pub fn used(&self, plugin: &str) -> u64 {
        self.used
            .lock()
            .map(|u| u.get(plugin).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    pub(crate) fn add(&self, plugin: &str, fuel: u64) {
        if let Ok(mut used) = self.used.lock() {
            let entry = used.entry(plugin.to_string()).or_insert(0);
            *entry = entry.saturating_add(fuel);
        }
    }
}

/// Who a call is for: the task, the attempt and its stage, its worktree (for plugins granted
/// files) and the task's fuel account.
#[derive(Debug, Clone)]
pub struct CallContext {
    pub task_id: String,
    pub attempt: u32,
    /// The stage the call is made in; `None`: the world's own (route, verify, check).
    pub stage: Option<Stage>,
    pub worktree: Option<PathBuf>,
    pub fuel: std::sync::Arc<TaskFuel>,
}

impl CallContext {
    /// A context for `task_id` with a fresh fuel account and no worktree.
    pub fn new(task_id: impl Into<String>, attempt: u32) -> CallContext {
        CallContext {
            task_id: task_id.into(),
            attempt,
            stage: None,
            worktree: None,
            fuel: std::sync::Arc::new(TaskFuel::new()),
        }
    }

    /// The same context in another stage (a hook asked while the agent implements).
    pub fn at_stage(mut self, stage: Stage) -> CallContext {
        self.stage = Some(stage);
        self
    }

    /// The stage of a call of a plugin of `world` in this context.
    pub fn stage_of(&self, world: World) -> Stage {
        self.stage.unwrap_or(match world {
            World::Router => Stage::Route,
            World::Verifier => Stage::Verify,
            World::Hook => Stage::Check,
        })
    }

    /// Grant access to a worktree (only plugins with `grants.files` can read it).
    pub fn with_worktree(mut self, worktree: impl Into<PathBuf>) -> CallContext {
        self.worktree = Some(worktree.into());
        self
    }
}

/// The answer of a call after the fail policy: the decision, and the fault it replaced, if any.
#[derive(Debug, Clone)]
pub struct Called<T> {
    /// The plugin's decision, or the fail policy's when the plugin faulted.
    pub decision: T,
    /// The fault the policy answered, if the plugin faulted.
    pub fault: Option<PluginError>,
    /// The run record (also given to the runtime's recorder).
    pub run: PluginRun,
}
