//! Persistence behind atomic domain operations (try-reserve, mark-sent, settle, recover, ...),
//! never raw SQL outside this module. SQLite is the embedded default; PostgreSQL lets several
//! hosts share one backlog and one budget. Both implement the same traits and pass the same
//! test suite.

pub mod blocking;
pub mod owner;
pub mod postgres;
pub mod sqlite;
mod totals;
pub mod units;
pub mod vocabulary;

use std::time::Duration;

pub use blocking::{AsyncBacklog, at_once_or_off_runtime, off_runtime, without_waiting};
pub use owner::{owner_is_alive, this_process_owner};
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;
pub use units::{MicroUsd, Prices, TokenCounts};
pub use vocabulary::{
    AttemptOutcome, CapLevel, Certainty, Phase, RejectionCause, Role, RowState, Stage, TaskState,
};

/// A cap to check a reservation against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapLimit {
    pub level: CapLevel,
    pub limit: MicroUsd,
}

/// What a row is about; these columns scope the caps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowScope {
    pub run_id: String,
    pub task_id: Option<String>,
    pub attempt: Option<u32>,
    pub stage: Stage,
    /// The work phase (agent calls only).
    pub phase: Option<Phase>,
    pub role: Role,
    /// Model key, or plugin name for plugin runs.
    pub model: String,
}

impl RowScope {
    /// A scope that names only a run: for what the caps see of it (`spent` at the run, day and
    /// month levels), where the other columns do not count.
    pub fn of_run(run_id: &str) -> RowScope {
        RowScope {
            run_id: run_id.to_string(),
            task_id: None,
            attempt: None,
            stage: Stage::Implement,
            phase: None,
            role: Role::Agent,
            model: String::new(),
        }
    }

    /// The scope of rows made for an attempt of `task` in `run_id`, before a stage, role and
    /// model are set.
    pub fn attempt(run_id: &str, task: &str, attempt: u32, stage: Stage, role: Role) -> RowScope {
        RowScope {
            run_id: run_id.to_string(),
            task_id: Some(task.to_string()),
            attempt: Some(attempt),
            stage,
            phase: None,
            role,
            model: String::new(),
        }
    }
}

/// Which try of which call a model-call row is. Every try on the wire is its own row; the
/// call id is the row id of the call's first try, so it is unique without coordination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallTry {
    /// `None` for a call's first try (its row's id becomes the call id).
    pub call_id: Option<i64>,
    /// 1 for the first try.
    pub number: u32,
}

impl CallTry {
    /// The first try of a new call.
    pub const FIRST: CallTry = CallTry {
        call_id: None,
        number: 1,
    };
}

/// The identity of a reservation, and of the call it is a try of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReservationId(pub i64);

/// A reservation made: its row, and the call it belongs to (for the next try's row).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Reserved {
    pub id: ReservationId,
    pub call_id: i64,
}

/// How a sent call ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    pub tokens: TokenCounts,
    pub prices: Prices,
    /// What the call cost from its usage; `None` when the provider reported no usage (the
    /// reservation then stands as the charge, flagged `usage-missing`).
    pub cost: Option<MicroUsd>,
    pub wall_ms: u64,
    pub outcome: String,
}

/// What settling did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    pub charged: MicroUsd,
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
    pub charged_micros: MicroUsd,
}

/// One ledger row as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRow {
    pub id: i64,
    pub scope: RowScope,
    pub state: RowState,
    pub reserved: MicroUsd,
    pub charged: MicroUsd,
    pub tokens: TokenCounts,
    pub prices: Prices,
    pub fuel: u64,
    pub wall_ms: u64,
    pub outcome: Option<String>,
    pub overrun: bool,
    pub usage_missing: bool,
    pub recovered: bool,
    /// The call this row is a try of (the row id of its first try); `None` for a plugin run.
    pub call_id: Option<i64>,
    /// Which try of its call (1 for the first); `None` for a plugin run.
    pub try_number: Option<u32>,
    /// `host:pid` of the process that made the row.
    pub owner: String,
    pub day: String,
    pub month: String,
}

impl LedgerRow {
    /// A model call's try (not a plugin run). Rows from before call ids are migrated to one try
    /// per call.
    pub fn is_model_call(&self) -> bool {
        self.call_id.is_some()
    }

    /// A try that went on the wire (or was attempted: a refused connection): a model call's
    /// row that was sent, settled, or released unbilled after sending. A reservation released
    /// before sending (a crash before the request left) is no try.
    pub fn is_try(&self) -> bool {
        self.is_model_call()
            && match self.state {
                RowState::Sent | RowState::Settled => true,
                RowState::Released => self.released_unbilled(),
                RowState::Reserved => false,
            }
    }

    /// A try the provider certainly did not bill, released after it was sent (the gateway
    /// records why in its outcome).
    pub fn released_unbilled(&self) -> bool {
        self.state == RowState::Released && !self.recovered && self.outcome.is_some()
    }

    /// How sure the row's charge is; `None` while it is open (its reservation held, not yet
    /// charged) or released.
    pub fn certainty(&self) -> Option<Certainty> {
        if self.state != RowState::Settled {
            return None;
        }
        Some(if self.usage_missing || self.recovered {
            Certainty::Estimated
        } else if self.overrun {
            Certainty::Overrun
        } else {
            Certainty::Measured
        })
    }

    /// What the row holds against the caps now without being charged yet: its reservation
    /// while reserved or on the wire.
    pub fn open_reservation(&self) -> MicroUsd {
        match self.state {
            RowState::Reserved | RowState::Sent => self.reserved,
            RowState::Settled | RowState::Released => MicroUsd::ZERO,
        }
    }
}

/// A reservation that does not fit, or a store failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A cap would be exceeded: which, its size, what was spent and reserved against it, and
    /// what the call needed.
    #[error(
        "{level} cap of {} µ$ would be exceeded: {} µ$ spent or reserved, the call needs {} µ$",
        limit.get(),
        spent.get(),
        needed.get()
    )]
    CapExceeded {
        level: CapLevel,
        limit: MicroUsd,
        spent: MicroUsd,
        needed: MicroUsd,
    },
    /// An operation on a reservation in the wrong state (settling what was never sent, ...).
    #[error("reservation {id}: cannot {operation} a reservation that is {state}")]
    WrongState {
        id: i64,
        operation: &'static str,
        state: RowState,
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
    /// The operation would have waited (for a lock or a flush) inside [`without_waiting`],
    /// and was refused with nothing changed: the caller runs it again where it may wait.
    #[error("the store would have had to wait, and was asked not to")]
    WouldWait,
}

/// The ledger's operations on a store. Each one is atomic: a reservation is checked against
/// every cap and inserted in one transaction, also with several processes on one database.
pub trait LedgerStore: Send + Sync {
    /// Check `amount` against every cap and reserve it, or refuse naming the first cap that
    /// would be exceeded. Nothing is reserved on refusal.
    fn try_reserve(
        &self,
        scope: &RowScope,
        call: CallTry,
        amount: MicroUsd,
        caps: &[CapLimit],
    ) -> Result<Reserved, StoreError>;
    /// [`LedgerStore::try_reserve`] and [`LedgerStore::mark_sent`] in one transaction: the
    /// row is written directly as `sent`, for a caller that sends the request right after
    /// reserving (the gateway and the metering proxy). It saves a transaction (SQLite) or
    /// four round trips (PostgreSQL) per try on the wire.
    ///
    /// Why this is safe: a crash between the reservation and the send now finds the row
    /// `sent`, so recovery charges its reservation (flagged `recovered`, usage missing) instead
    /// of releasing it. That errs on the safe side: a try that may have left is never
    /// under-charged, and one that did not is charged at most its worst case, which the caps
    /// had already admitted. A caller that decides not to send after all must then book the
    /// try as unbilled ([`LedgerStore::release_unbilled`]), not [`LedgerStore::release`],
    /// which only takes a reservation still `reserved`.
    fn try_reserve_sent(
        &self,
        scope: &RowScope,
        call: CallTry,
        amount: MicroUsd,
        caps: &[CapLimit],
    ) -> Result<Reserved, StoreError>;
    /// Mark a reservation as sent, before the request leaves. Kept, with
    /// [`LedgerStore::try_reserve`] and [`LedgerStore::release`], for callers that hold a
    /// reservation for a while before they know whether they will send (a crash in between
    /// releases it at recovery).
    fn mark_sent(&self, id: ReservationId) -> Result<(), StoreError>;
    /// Settle a sent reservation to its real cost.
    fn settle(&self, id: ReservationId, settlement: &Settlement) -> Result<Settled, StoreError>;
    /// Release a reservation whose request was never sent.
    fn release(&self, id: ReservationId) -> Result<(), StoreError>;
    /// Release a sent try that the provider certainly did not bill (the connection was never
    /// made, or it refused the request with a status it does not bill). The row stays, with
    /// its outcome and wall time, so the try is counted; its reservation is given back.
    fn release_unbilled(
        &self,
        id: ReservationId,
        wall_ms: u64,
        outcome: &str,
    ) -> Result<(), StoreError>;
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
    fn spent(&self, level: CapLevel, scope: &RowScope) -> Result<MicroUsd, StoreError>;
    /// Every row, oldest first.
    fn rows(&self) -> Result<Vec<LedgerRow>, StoreError>;
    /// The rows of one task, oldest first (its cost end to end).
    fn task_rows(&self, task: &str) -> Result<Vec<LedgerRow>, StoreError>;
    /// The rows whose reservation is held now (reserved or on the wire), oldest first: what
    /// the caps count beyond what was charged.
    fn open_rows(&self) -> Result<Vec<LedgerRow>, StoreError>;
    /// Today (`YYYY-MM-DD`) and this month (`YYYY-MM`) by the store's clock, UTC: the day and
    /// month new rows get and the day and month caps count.
    fn today(&self) -> Result<(String, String), StoreError>;
    /// Whether this store honours [`without_waiting`]: an operation run inside it either
    /// finishes without waiting for another writer, the network or a flush to disk, or is
    /// refused with [`StoreError::WouldWait`] having changed nothing. Then the ledger runs its
    /// short writes on the caller's thread (see [`at_once_or_off_runtime`]). A store reached
    /// over the network cannot, and keeps the default.
    fn can_refuse_to_wait(&self) -> bool {
        false
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
    /// The stage of a running task.
    pub stage: Option<Stage>,
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
    pub outcome: AttemptOutcome,
    /// The verifier's findings, the hooks' denials, the failing tests, the cap: why it ended so.
    pub reasons: Vec<String>,
    /// Model turns the agent took.
    pub turns: u32,
    /// Whether the project's tests passed (`None`: they did not run).
    pub tests_passed: Option<bool>,
    pub wall_ms: u64,
    /// What rejected it, when it was rejected (`None` for attempts recorded before schema 7,
    /// whose cause the report reads from their reasons).
    pub rejected_by: Option<RejectionCause>,
    /// The files its change touched, with lines added and removed (empty when it made no
    /// change, ended before it was diffed, or was recorded before schema 8). Kept because the
    /// attempt's worktree and branch are removed when it ends.
    pub changed: Vec<ChangedFile>,
    /// The external agent that implemented it (`claude-code`); `None` for the built-in loop
    /// (and for attempts recorded before schema 9).
    pub implementer: Option<String>,
    /// That agent's own figure for what its model calls cost (Claude Code's
    /// `total_cost_usd`), kept beside the ledger's; `None` when it gave none.
    pub agent_cost: Option<MicroUsd>,
}

/// One file an attempt's change touched.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChangedFile {
    pub path: String,
    /// `added`, `modified`, `deleted` or `renamed`.
    pub status: String,
    pub added: u32,
    pub removed: u32,
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
    fn set_stage(&self, task: &str, owner: &str, stage: Stage) -> Result<(), StoreError>;
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
    /// Say that the run `owner` is alive, with `workers` workers, until `lease` from now by the
    /// store's clock: registered when a run starts and renewed from a thread of its own. Across
    /// hosts, whose processes one host cannot see, an owner is alive while this lease is.
    fn host_beat(
        &self,
        owner: &str,
        run_id: &str,
        workers: u32,
        lease: Duration,
    ) -> Result<(), StoreError>;
    /// The run `owner` stopped cleanly: its lease ends now.
    fn host_left(&self, owner: &str) -> Result<(), StoreError>;
    /// Every run that registered, the live ones first, then the newest.
    fn hosts(&self) -> Result<Vec<HostRecord>, StoreError>;
    /// Wait for this host's turn to merge into `target`, held until the returned turn is
    /// dropped (or the host dies). Hosts sharing one remote then land one after another, each
    /// on the tip the last one pushed, instead of racing and testing again after each loss.
    /// `None`: the store has no other hosts to take turns with (SQLite).
    fn merge_turn(&self, target: &str) -> Result<Option<MergeTurn>, StoreError> {
        let _ = target;
        Ok(None)
    }
    /// As [`LedgerStore::can_refuse_to_wait`], for the backlog's short operations.
    fn can_refuse_to_wait(&self) -> bool {
        false
    }
}

/// A host's turn to merge into a target, given back when dropped.
pub struct MergeTurn {
    _release: Box<dyn Send + Sync>,
}

impl MergeTurn {
    /// A turn that ends when `release` is dropped.
    pub fn new(release: Box<dyn Send + Sync>) -> MergeTurn {
        MergeTurn { _release: release }
    }
}

impl std::fmt::Debug for MergeTurn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MergeTurn").finish_non_exhaustive()
    }
}

/// A run registered on the store (one `gaffer run` process, on some host).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HostRecord {
    /// `host:pid` (with the PID namespace when it is not the machine's own).
    pub owner: String,
    pub run_id: String,
    pub workers: u32,
    /// When it registered and when it last renewed its lease (RFC 3339, UTC).
    pub started_at: String,
    pub seen_at: String,
    /// Whether its lease is live now (by the store's clock).
    pub live: bool,
    /// Whether it stopped cleanly (`false` for a live run, and for one whose lease lapsed).
    pub left: bool,
}

/// Both halves of a store: what a run, the dashboard and the reports open.
pub trait Store: BacklogStore + LedgerStore {}
impl<T: BacklogStore + LedgerStore + ?Sized> Store for T {}

/// Whether the owner of an open row or a lease is dead: its process is gone (`is_alive`, which
/// can only see this host), or it registered as a run whose lease has lapsed (what other hosts
/// go by).
pub(crate) fn owner_is_dead(
    owner: &str,
    is_alive: &dyn Fn(&str) -> bool,
    lapsed_hosts: &std::collections::HashSet<String>,
) -> bool {
    owner.is_empty() || lapsed_hosts.contains(owner) || !is_alive(owner)
}
