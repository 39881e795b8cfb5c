//! Persistence behind atomic domain operations (try-reserve, mark-sent, settle, recover, ...),
//! never raw SQL outside this module. SQLite is the embedded default; another backend (Postgres)
//! implements the same trait and must pass the same test suite.

pub mod sqlite;

use std::fmt;

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
}
