//! The store seen from async code. SQLite calls block (a write may wait up to the busy timeout
//! for another process's transaction), so async callers reach the backlog through
//! [`AsyncBacklog`], which runs each operation on tokio's blocking pool, never on a runtime
//! worker that other tasks need.
//!
//! The short operations of every model call and every task (the ledger's reservation and
//! settlement, the backlog's claim, stage and finish) are the exception: a store that can
//! refuse instead of waiting ([`without_waiting`]) runs them on the caller's thread, and only
//! one it refused goes to the blocking pool ([`at_once_or_off_runtime`]).

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use super::{
    AttemptRecord, BacklogStore, MergeTurn, NewTask, Stage, StoreError, TaskRecord, TaskState,
};

thread_local! {
    /// Set while this thread runs store operations that must not wait (see [`without_waiting`]).
    static REFUSING_TO_WAIT: Cell<bool> = const { Cell::new(false) };
}

/// Run `operation` with the store refusing, with [`StoreError::WouldWait`] and nothing
/// changed, whatever would make this thread wait: another writer's lock (another process's,
/// or another thread's on the same connection) or a checkpoint's flush to disk. For a store
/// whose [`super::LedgerStore::can_refuse_to_wait`] says so (SQLite); any other store is not
/// affected.
pub fn without_waiting<T>(operation: impl FnOnce() -> T) -> T {
    /// Puts the previous mode back, also when `operation` panics.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            REFUSING_TO_WAIT.with(|refusing| refusing.set(self.0));
        }
    }
    let _restore = Restore(REFUSING_TO_WAIT.with(|refusing| refusing.replace(true)));
    operation()
}

/// Whether store operations on this thread may wait (outside [`without_waiting`]).
pub(crate) fn may_wait() -> bool {
    !REFUSING_TO_WAIT.with(Cell::get)
}

/// Run a short store operation for async code: on the caller's thread when `at_once` (the
/// store can refuse to wait) and the store does it without waiting; on the blocking pool
/// otherwise, or when the store refused.
///
/// Why not always the blocking pool: handing an operation to a pool thread and back wakes two
/// sleeping threads, and on a virtual machine each wake-up is an interrupt between CPUs. The
/// gateway bench measured a metered call (two short transactions) at 860 µs through the pool
/// and 442 µs on the caller's thread, on this machine in one run; the transactions themselves
/// take tens of microseconds.
pub async fn at_once_or_off_runtime<T: Send + 'static>(
    at_once: bool,
    operation: impl Fn() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    if at_once {
        match without_waiting(&operation) {
            Err(StoreError::WouldWait) => {}
            done => return done,
        }
    }
    off_runtime(operation).await
}

/// Run a blocking store operation on the blocking pool.
pub async fn off_runtime<T: Send + 'static>(
    operation: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(operation)
        .await
        .unwrap_or_else(|e| {
            Err(StoreError::Database {
                path: "-".to_string(),
                reason: format!("a store operation did not finish: {e}"),
            })
        })
}

/// The backlog's operations for async code: the short ones of every task (claim, stage,
/// finish, history) on the caller's thread when the store can do them without waiting, else,
/// like the others, on the blocking pool (see [`at_once_or_off_runtime`]).
#[derive(Clone)]
pub struct AsyncBacklog {
    store: Arc<dyn BacklogStore>,
}

impl std::fmt::Debug for AsyncBacklog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncBacklog").finish_non_exhaustive()
    }
}

impl AsyncBacklog {
    pub fn new(store: Arc<dyn BacklogStore>) -> AsyncBacklog {
        AsyncBacklog { store }
    }

    /// The store itself, for a thread of its own (the lease heartbeat).
    pub fn blocking(&self) -> Arc<dyn BacklogStore> {
        Arc::clone(&self.store)
    }

    /// One short operation: at once when the store can refuse to wait, else off the runtime.
    async fn short<T: Send + 'static>(
        &self,
        operation: impl Fn(&dyn BacklogStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.blocking();
        let at_once = store.can_refuse_to_wait();
        at_once_or_off_runtime(at_once, move || operation(store.as_ref())).await
    }

    pub async fn claim(
        &self,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<TaskRecord>, StoreError> {
        let owner = owner.to_string();
        self.short(move |store| store.claim(&owner, lease)).await
    }

    pub async fn set_stage(&self, task: &str, owner: &str, stage: Stage) -> Result<(), StoreError> {
        let (task, owner) = (task.to_string(), owner.to_string());
        self.short(move |store| store.set_stage(&task, &owner, stage))
            .await
    }

    pub async fn finish(
        &self,
        task: &str,
        owner: &str,
        state: TaskState,
        reason: &str,
    ) -> Result<(), StoreError> {
        let (task, owner, reason) = (task.to_string(), owner.to_string(), reason.to_string());
        self.short(move |store| store.finish(&task, &owner, state, &reason))
            .await
    }

    pub async fn finish_attempt(
        &self,
        attempt: AttemptRecord,
        owner: &str,
        state: TaskState,
        reason: &str,
    ) -> Result<(), StoreError> {
        let (owner, reason) = (owner.to_string(), reason.to_string());
        self.short(move |store| store.finish_attempt(&attempt, &owner, state, &reason))
            .await
    }

    pub async fn attempts(&self, task: &str) -> Result<Vec<AttemptRecord>, StoreError> {
        let task = task.to_string();
        self.short(move |store| store.attempts(&task)).await
    }

    pub async fn requeue_orphans(
        &self,
        is_alive: fn(&str) -> bool,
    ) -> Result<Vec<String>, StoreError> {
        let store = self.blocking();
        off_runtime(move || store.requeue_orphans(&is_alive)).await
    }

    pub async fn expire(&self) -> Result<u64, StoreError> {
        self.short(|store| store.expire()).await
    }

    pub async fn tasks(&self) -> Result<Vec<TaskRecord>, StoreError> {
        let store = self.blocking();
        off_runtime(move || store.tasks()).await
    }

    /// Wait (off the runtime) for this host's turn to merge into `target`.
    pub async fn merge_turn(&self, target: &str) -> Result<Option<MergeTurn>, StoreError> {
        let (store, target) = (self.blocking(), target.to_string());
        off_runtime(move || store.merge_turn(&target)).await
    }

    pub async fn add_tasks(&self, tasks: Vec<NewTask>) -> Result<Vec<String>, StoreError> {
        let store = self.blocking();
        off_runtime(move || store.add_tasks(&tasks)).await
    }
}
