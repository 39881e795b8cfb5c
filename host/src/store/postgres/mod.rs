//! The PostgreSQL store, for several hosts on one backlog and one budget.
//!
//! Concurrency: every transaction runs at `READ COMMITTED` and takes explicit row locks, which
//! is what PostgreSQL's documentation recommends for a check-then-write under contention:
//! - A reservation locks the cap-total rows it is checked against, creating the missing ones,
//!   with one `INSERT … ON CONFLICT DO UPDATE` that visits them in one global order (level,
//!   then scope, bytewise), reads the latest committed totals under the lock, checks every
//!   cap, inserts its row and adds itself to the totals before committing. A second host racing
//!   for the same dollars waits on the lock, then reads the first one's total: no cap is ever
//!   exceeded. Every other change to the totals (settle, release, recovery) knows its deltas
//!   before it locks, so it locks and adjusts them in one statement of the same form, visiting
//!   them in the same order: two transactions cannot deadlock. A row's own lock (`FOR UPDATE`,
//!   or the `UPDATE` that moves it) is always taken before the totals'. `SERIALIZABLE`
//!   would give the same guarantee by aborting one of the racers, to be retried: more work
//!   exactly when the budget is tight.
//! - A claim takes the oldest claimable task with `FOR UPDATE SKIP LOCKED`: hosts claiming at
//!   once take different tasks instead of queueing behind one row.
//! - A row's state changes only from the state it is read in (`WHERE state = …`), so recovery of
//!   a dead host's rows, run by whichever host notices first, happens exactly once.
//! - New task ids are gapless (`T-<n>`): `add_tasks` holds the table's `EXCLUSIVE` lock (reads go
//!   on; other writers of tasks wait for the moment it takes).
//!
//! The driver is `tokio-postgres` behind a `deadpool` pool, on a runtime of the store's own: the
//! store's blocking methods (the traits are synchronous, like SQLite's) hand each operation to
//! that runtime and wait on a channel, so they may be called from any thread, and an async
//! caller reaches them through the blocking pool as it does SQLite ([`super::off_runtime`]).

mod backlog;
mod connect;
mod ledger;
mod schema;

use std::future::Future;
use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

use super::StoreError;
pub use connect::{ConnectError, StoreUrl};

/// Connections a process keeps open at most (a run uses one per worker at a time, plus its
/// heartbeats).
const POOL_SIZE: usize = 16;

/// A PostgreSQL database holding the backlog and the ledger, shared by several hosts.
pub struct PostgresStore {
    /// The URL without its password, for errors.
    name: Arc<str>,
    pool: Pool,
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    owner: String,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("name", &self.name)
            .field("owner", &self.owner)
            .finish()
    }
}

/// Why an operation failed, before the store names itself in the error.
#[derive(Debug)]
enum Fail {
    Store(StoreError),
    Db(String),
}

impl From<StoreError> for Fail {
    fn from(error: StoreError) -> Fail {
        Fail::Store(error)
    }
}

impl From<tokio_postgres::Error> for Fail {
    fn from(error: tokio_postgres::Error) -> Fail {
        Fail::Db(describe(&error))
    }
}

impl From<deadpool_postgres::PoolError> for Fail {
    fn from(error: deadpool_postgres::PoolError) -> Fail {
        match error {
            deadpool_postgres::PoolError::Backend(e) => Fail::Db(describe(&e)),
            other => Fail::Db(other.to_string()),
        }
    }
}

/// The server's own message and SQLSTATE when there is one (the driver's `Display` says only
/// "db error"), else the driver's error and its causes.
fn describe(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return format!("{} (SQLSTATE {})", db.message(), db.code().code());
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl PostgresStore {
    /// Connect to the database at `url` (the password, when the URL has none, from
    /// `PGPASSWORD` or a `.pgpass` file) and bring its schema up to date.
    pub fn open(url: &StoreUrl) -> Result<PostgresStore, StoreError> {
        let name: Arc<str> = Arc::from(url.display());
        let db_err = |reason: String| StoreError::Database {
            path: name.to_string(),
            reason,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("gaffer-postgres")
            .enable_all()
            .build()
            .map_err(|e| db_err(format!("cannot start the store's threads: {e}")))?;
        let manager = Manager::from_config(
            url.config().clone(),
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| db_err(e.to_string()))?;
        let store = PostgresStore {
            name,
            pool,
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
            owner: super::this_process_owner(),
        };
        store.run(|pool| async move {
            let mut client = pool.get().await?;
            schema::migrate(&mut client).await
        })?;
        Ok(store)
    }

    /// Write rows under another owner name (tests of recovery across processes).
    pub fn with_owner(mut self, owner: impl Into<String>) -> PostgresStore {
        self.owner = owner.into();
        self
    }

    /// The database, as its URL without a password.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Run one operation on the store's runtime and wait for it: callable from any thread, a
    /// runtime's included (the wait is on a channel, not a nested runtime).
    fn run<T, F, Fut>(&self, operation: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Pool) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, Fail>> + Send + 'static,
    {
        let pool = self.pool.clone();
        let (done, result) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = done.send(operation(pool).await);
        });
        let outcome = result.recv().unwrap_or_else(|_| {
            Err(Fail::Db(
                "the store's operation stopped before it finished".to_string(),
            ))
        });
        outcome.map_err(|fail| match fail {
            Fail::Store(error) => error,
            Fail::Db(reason) => StoreError::Database {
                path: self.name.to_string(),
                reason,
            },
        })
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // Dropping a runtime blocks until its threads stop, which panics inside an async
        // context; the connections need no goodbye.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A word of the vocabulary read back from a column, or the error naming the column.
fn word<T>(text: &str, from_name: fn(&str) -> Option<T>, column: &str) -> Result<T, Fail> {
    from_name(text).ok_or_else(|| {
        Fail::Db(format!(
            "column {column} holds `{text}`, which this gaffer does not know"
        ))
    })
}

/// An amount or a count as the signed 64-bit integer PostgreSQL keeps.
fn signed(value: u64) -> Result<i64, Fail> {
    i64::try_from(value).map_err(|_| Fail::Db(format!("{value} is beyond what the store can hold")))
}

/// A stored count; the schema keeps them non-negative.
fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// A small count (attempt, try, workers) as PostgreSQL's `integer`.
fn int(value: u32) -> Result<i32, Fail> {
    i32::try_from(value).map_err(|_| Fail::Db(format!("{value} is beyond what the store can hold")))
}

/// A stored small count; the schema keeps them non-negative.
fn small(value: i32) -> u32 {
    u32::try_from(value).unwrap_or(0)
}

/// A duration in milliseconds, for `interval` arithmetic in SQL.
fn millis(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX / 2)
}
