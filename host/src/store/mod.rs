//! Persistence behind atomic domain operations (try-reserve, mark-sent, settle, recover, ...),
//! never raw SQL outside this module. SQLite is the embedded default; another backend (Postgres)
//! implements the same trait and must pass the same test suite.

pub mod sqlite;

use std::fmt;
use std::time::Duration;

pub use sqlite::SqliteStore;

/// An amount in micro-dollars (the store holds plain integers; the ledger gives them meaning).
pub type Micros = u64;

/// A level at which a money cap applies, with the rows it covers.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum CapLevel {
    /// One model call: the reservation itself.
    Call,
    /// One attempt at a task (task and attempt number).
    Attempt,
    /// Everything spent on a task, across runs.
    Task,
    /// One `gaffer run`.
    Run,
    /// The store's current UTC day.
    Day,
    /// The store's current UTC month.
    Month,
    /// One model in the store's current UTC month.
    Model,
}

impl fmt::Display for CapLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CapLevel::Call => "call",
            CapLevel::Attempt => "attempt",
            CapLevel::Task => "task",
            CapLevel::Run => "run",
            CapLevel::Day => "day",
            CapLevel::Month => "month",
            CapLevel::Model => "model",
        })
    }
}

/// A cap to check a reservation against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapLimit {
    pub level: CapLevel,
    pub limit: Micros,
}

/// What a row is about; these columns scope the caps.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RowScope {
    pub run_id: String,
    pub task_id: Option<String>,
    pub attempt: Option<u32>,
    /// `route`, `implement`, `check`, `verify`.
    pub stage: String,
    /// `read-task`, `explore`, `implement`, `iterate` (agent calls only).
    pub phase: Option<String>,
    /// `agent`, `router`, `verifier`, `hook`.
    pub role: String,
    /// Model key, or plugin name for plugin runs.
    pub model: String,
}

/// Prices recorded beside a charge, µ$ per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PriceColumns {
    pub input: Micros,
    pub output: Micros,
    pub cache_read: Micros,
    pub cache_write: Micros,
}

/// Token counts of a charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TokenColumns {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
}

/// The identity of a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReservationId(pub i64);

/// How a sent call ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    pub tokens: TokenColumns,
    pub prices: PriceColumns,
    /// What the call cost from its usage; `None` when the provider reported no usage (the
    /// reservation then stands as the charge, flagged `usage-missing`).
    pub cost: Option<Micros>,
    pub wall_ms: u64,
    pub outcome: String,
}

/// What settling did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    pub charged: Micros,
    /// The charge exceeded the reservation (booked in full; the caps it crossed are now closed).
    pub overrun: bool,
    pub usage_missing: bool,
}

/// What recovery did after a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Recovery {
    /// Reservations never sent, released.
    pub released: u64,
    /// Reservations sent but never settled, charged at their reserved amount (flagged).
    pub charged: u64,
    pub charged_micros: Micros,
}

/// One ledger row as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRow {
    pub id: i64,
    pub scope: RowScope,
    /// `reserved`, `sent`, `settled`, `released`.
    pub state: String,
    pub reserved: Micros,
    pub charged: Micros,
    pub tokens: TokenColumns,
    pub prices: PriceColumns,
    pub fuel: u64,
    pub wall_ms: u64,
    pub outcome: Option<String>,
    pub overrun: bool,
    pub usage_missing: bool,
    pub recovered: bool,
    /// `host:pid` of the process that made the row.
    pub owner: String,
    pub day: String,
    pub month: String,
}

/// A reservation that does not fit, or a store failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A cap would be exceeded: which, its size, what was spent and reserved against it, and
    /// what the call needed.
    #[error(
        "{level} cap of {limit} µ$ would be exceeded: {spent} µ$ spent or reserved, the call needs {needed} µ$"
    )]
    CapExceeded {
        level: CapLevel,
        limit: Micros,
        spent: Micros,
        needed: Micros,
    },
    /// An operation on a reservation in the wrong state (settling what was never sent, ...).
    #[error("reservation {id}: cannot {operation} a reservation that is {state}")]
    WrongState {
        id: i64,
        operation: &'static str,
        state: String,
    },
    #[error("reservation {0} does not exist")]
    NoSuchReservation(i64),
    /// The worker no longer holds the task (its lease expired and another took it, or it ended).
    #[error("task `{task}`: `{owner}` no longer holds its lease")]
    LeaseLost { task: String, owner: String },
    #[error("task `{0}` does not exist")]
    NoSuchTask(String),
    /// The database itself failed; names the file.
    #[error("store {path}: {reason}")]
    Database { path: String, reason: String },
}

/// The ledger's operations on a store. Each one is atomic: a reservation is checked against
/// every cap and inserted in one transaction, also with several processes on one database.
pub trait LedgerStore: Send + Sync {
    /// Check `amount` against every cap and reserve it, or refuse naming the first cap that
    /// would be exceeded. Nothing is reserved on refusal.
    fn try_reserve(
        &self,
        scope: &RowScope,
        amount: Micros,
        caps: &[CapLimit],
    ) -> Result<ReservationId, StoreError>;
    /// Mark a reservation as sent, before the request leaves.
    fn mark_sent(&self, id: ReservationId) -> Result<(), StoreError>;
    /// Settle a sent reservation to its real cost.
    fn settle(&self, id: ReservationId, settlement: &Settlement) -> Result<Settled, StoreError>;
    /// Release a reservation whose request was never sent.
    fn release(&self, id: ReservationId) -> Result<(), StoreError>;
    /// After a crash: release the unsent reservations of dead owners, and charge their sent
    /// ones at the reserved amount (flagged). `is_alive` says whether an owner still runs.
    fn recover(&self, is_alive: &dyn Fn(&str) -> bool) -> Result<Recovery, StoreError>;
    /// Record a plugin run (zero tokens, its fuel and wall time).
    fn record_plugin_run(
        &self,
        scope: &RowScope,
        fuel: u64,
        wall_ms: u64,
        outcome: &str,
    ) -> Result<(), StoreError>;
    /// Spent and reserved in the scope of `level` for `scope` (what the caps see).
    fn spent(&self, level: CapLevel, scope: &RowScope) -> Result<Micros, StoreError>;
    /// Every row, oldest first.
    fn rows(&self) -> Result<Vec<LedgerRow>, StoreError>;
    /// The rows of one task, oldest first (its cost end to end).
    fn task_rows(&self, task: &str) -> Result<Vec<LedgerRow>, StoreError>;
}

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskState {
    Queued,
    /// Being worked on, under a lease; the stage says where.
    Running,
    Merged,
    /// The verifier rejected an attempt; the task waits for the next one.
    RejectedRequeued,
    /// An error outside any plugin (git, the test command missing).
    Failed,
    BudgetExhausted,
    NeedsHuman,
}

impl TaskState {
    /// The name stored and shown.
    pub fn name(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Running => "running",
            TaskState::Merged => "merged",
            TaskState::RejectedRequeued => "rejected-requeued",
            TaskState::Failed => "failed",
            TaskState::BudgetExhausted => "budget-exhausted",
            TaskState::NeedsHuman => "needs-human",
        }
    }

    fn from_name(name: &str) -> Option<TaskState> {
        [
            TaskState::Queued,
            TaskState::Running,
            TaskState::Merged,
            TaskState::RejectedRequeued,
            TaskState::Failed,
            TaskState::BudgetExhausted,
            TaskState::NeedsHuman,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A task to add to the backlog.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewTask {
    pub title: String,
    pub body: String,
    pub labels: Vec<String>,
    pub paths: Vec<String>,
    /// Where it came from (`gh#42`, `tasks.md:7`, ...).
    pub source: Option<String>,
}

/// A task as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRecord {
    /// `T-<n>`, in the order tasks were added.
    pub id: String,
    pub title: String,
    pub body: String,
    pub labels: Vec<String>,
    pub paths: Vec<String>,
    pub source: Option<String>,
    pub state: TaskState,
    /// The stage of a running task (`route`, `implement`, `check`, `verify`, `merge`).
    pub stage: Option<String>,
    /// Attempts started so far.
    pub attempts: u32,
    /// Why it is in its state (the last verdict, the cap that stopped it, ...).
    pub reason: Option<String>,
    /// `host:pid` of the worker holding it, while running.
    pub lease_owner: Option<String>,
}

/// One finished attempt at a task: what the router sees as history (its money is in the ledger
/// rows of the same task and attempt).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AttemptRecord {
    pub task_id: String,
    pub number: u32,
    pub run_id: String,
    /// The model key the router chose.
    pub model: String,
    /// `approved`, `rejected`, `needs-human`, `budget-exhausted`, `failed`, `conflict`.
    pub outcome: String,
    /// The verifier's findings, the hooks' denials, the failing tests, the cap: why it ended so.
    pub reasons: Vec<String>,
    /// Model turns the agent took.
    pub turns: u32,
    /// Whether the project's tests passed (`None`: they did not run).
    pub tests_passed: Option<bool>,
    pub wall_ms: u64,
}

/// The backlog's operations. Each is atomic; a claimed task is held by a lease that expires by
/// the store's clock, so a crashed worker's task comes back.
pub trait BacklogStore: Send + Sync {
    /// Add tasks in one transaction: all or none. Returns their ids in order.
    fn add_tasks(&self, tasks: &[NewTask]) -> Result<Vec<String>, StoreError>;
    /// Claim the oldest claimable task (queued, requeued, or running under an expired lease)
    /// for `owner`, for `lease`; it starts its next attempt at stage `route`.
    fn claim(&self, owner: &str, lease: Duration) -> Result<Option<TaskRecord>, StoreError>;
    /// Extend a lease; fails with `LeaseLost` when `owner` no longer holds the task.
    fn heartbeat(&self, task: &str, owner: &str, lease: Duration) -> Result<(), StoreError>;
    /// Record the stage a running task is in.
    fn set_stage(&self, task: &str, owner: &str, stage: &str) -> Result<(), StoreError>;
    /// End the attempt: the task leaves `running` for `state`, with the reason; the lease ends.
    fn finish(
        &self,
        task: &str,
        owner: &str,
        state: TaskState,
        reason: &str,
    ) -> Result<(), StoreError>;
    /// End an attempt and record it, in one transaction: the task leaves `running` for `state`
    /// and the attempt joins the task's history.
    fn finish_attempt(
        &self,
        attempt: &AttemptRecord,
        owner: &str,
        state: TaskState,
        reason: &str,
    ) -> Result<(), StoreError>;
    /// The finished attempts of a task, oldest first.
    fn attempts(&self, task: &str) -> Result<Vec<AttemptRecord>, StoreError>;
    /// After a crash: put running tasks whose worker is dead (`is_alive` says no) back in the
    /// queue at once, without waiting for their leases. Returns their ids.
    fn requeue_orphans(&self, is_alive: &dyn Fn(&str) -> bool) -> Result<Vec<String>, StoreError>;
    /// Put tasks whose lease expired back in the queue; returns how many.
    fn expire(&self) -> Result<u64, StoreError>;
    fn task(&self, id: &str) -> Result<Option<TaskRecord>, StoreError>;
    /// Every task, in the order added.
    fn tasks(&self) -> Result<Vec<TaskRecord>, StoreError>;
}
