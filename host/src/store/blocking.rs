//! The store seen from async code. SQLite calls block (a write may wait up to the busy timeout
//! for another process's transaction), so async callers reach the backlog through
//! [`AsyncBacklog`], which runs each operation on tokio's blocking pool, never on a runtime
//! worker that other tasks need.

use std::sync::Arc;
use std::time::Duration;

use super::{
    AttemptRecord, BacklogStore, MergeTurn, NewTask, Stage, StoreError, TaskRecord, TaskState,
};

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

/// The backlog's operations for async code: each runs on the blocking pool.
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

    pub async fn claim(
        &self,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<TaskRecord>, StoreError> {
        let (store, owner) = (self.blocking(), owner.to_string());
        off_runtime(move || store.claim(&owner, lease)).await
    }

    pub async fn set_stage(&self, task: &str, owner: &str, stage: Stage) -> Result<(), StoreError> {
        let (store, task, owner) = (self.blocking(), task.to_string(), owner.to_string());
        off_runtime(move || store.set_stage(&task, &owner, stage)).await
    }

    pub async fn finish(
        &self,
        task: &str,
        owner: &str,
        state: TaskState,
        reason: &str,
    ) -> Result<(), StoreError> {
        let (store, task, owner, reason) = (
            self.blocking(),
            task.to_string(),
            owner.to_string(),
            reason.to_string(),
        );
        off_runtime(move || store.finish(&task, &owner, state, &reason)).await
    }

    pub async fn finish_attempt(
        &self,
        attempt: AttemptRecord,
        owner: &str,
        state: TaskState,
        reason: &str,
    ) -> Result<(), StoreError> {
        let (store, owner, reason) = (self.blocking(), owner.to_string(), reason.to_string());
        off_runtime(move || store.finish_attempt(&attempt, &owner, state, &reason)).await
    }

    pub async fn attempts(&self, task: &str) -> Result<Vec<AttemptRecord>, StoreError> {
        let (store, task) = (self.blocking(), task.to_string());
        off_runtime(move || store.attempts(&task)).await
    }

    pub async fn requeue_orphans(
        &self,
        is_alive: fn(&str) -> bool,
    ) -> Result<Vec<String>, StoreError> {
        let store = self.blocking();
        off_runtime(move || store.requeue_orphans(&is_alive)).await
    }

    pub async fn expire(&self) -> Result<u64, StoreError> {
        let store = self.blocking();
        off_runtime(move || store.expire()).await
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
