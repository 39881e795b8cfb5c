//! The backlog's operations on SQLite: tasks, claims under leases that expire by the store's
//! clock, stages, finished attempts, orphans of dead workers.

use std::time::Duration;

use rusqlite::{OptionalExtension, params};

use super::{NOW_MS, SqliteStore};
use crate::store::{
    AttemptRecord, BacklogStore, HostRecord, MicroUsd, NewTask, Stage, StoreError, TaskRecord,
    TaskState, owner_is_dead,
};

/// A task row as read, before its JSON columns are decoded.
fn task_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TaskRecord> {
    let json_list = |i: usize| -> rusqlite::Result<Vec<String>> {
        let text: String = r.get(i)?;
        Ok(serde_json::from_str(&text).unwrap_or_default())
    };
    Ok(TaskRecord {
        id: r.get(0)?,
        title: r.get(1)?,
        body: r.get(2)?,
        labels: json_list(3)?,
        paths: json_list(4)?,
        source: r.get(5)?,
        state: r.get(6)?,
        stage: r.get(7)?,
        attempts: r.get(8)?,
        reason: r.get(9)?,
        lease_owner: r.get(10)?,
    })
}

const TASK_COLUMNS: &str =
    "id, title, body, labels, paths, source, state, stage, attempts, reason, lease_owner";

fn lease_ms(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2)
}

impl BacklogStore for SqliteStore {
    /// A local file: a write either gets the lock at once or is refused (see
    /// `SqliteStore::write`).
    fn can_refuse_to_wait(&self) -> bool {
        true
    }

    fn add_tasks(&self, tasks: &[NewTask]) -> Result<Vec<String>, StoreError> {
        self.write(|tx| {
            let mut ids = Vec::with_capacity(tasks.len());
            for task in tasks {
                let seq: i64 = tx
                    .query_row("SELECT COALESCE(MAX(seq), 0) + 1 FROM tasks", [], |r| {
                        r.get(0)
                    })
                    .map_err(|e| self.db_err(e))?;
                let id = format!("T-{seq}");
                let labels = serde_json::to_string(&task.labels).unwrap_or_else(|_| "[]".into());
                let paths = serde_json::to_string(&task.paths).unwrap_or_else(|_| "[]".into());
                tx.execute(
                    "INSERT INTO tasks (seq, id, title, body, labels, paths, source, state)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'queued')",
                    params![seq, id, task.title, task.body, labels, paths, task.source],
                )
                .map_err(|e| self.db_err(e))?;
                ids.push(id);
            }
            Ok(ids)
        })
    }

    fn claim(&self, owner: &str, lease: Duration) -> Result<Option<TaskRecord>, StoreError> {
        self.write(|tx| {
            let id: Option<String> = tx
                .query_row(
                    &format!(
                        "SELECT id FROM tasks
                         WHERE state IN ('queued', 'rejected-requeued')
                            OR (state = 'running' AND lease_expires_ms < {NOW_MS})
                         ORDER BY seq LIMIT 1"
                    ),
                    [],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| self.db_err(e))?;
            let Some(id) = id else {
                return Ok(None);
            };
            tx.execute(
                &format!(
                    "UPDATE tasks SET state = 'running', stage = 'route', attempts = attempts + 1,
                         lease_owner = ?2, lease_expires_ms = {NOW_MS} + ?3,
                         updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
                     WHERE id = ?1"
                ),
                params![id, owner, lease_ms(lease)],
            )
            .map_err(|e| self.db_err(e))?;
            let task = tx
                .query_row(
                    &format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1"),
                    [&id],
                    task_from_row,
                )
                .map_err(|e| self.db_err(e))?;
            Ok(Some(task))
        })
    }

    fn heartbeat(&self, task: &str, owner: &str, lease: Duration) -> Result<(), StoreError> {
        self.held_update(
            task,
            owner,
            &format!("lease_expires_ms = {NOW_MS} + ?3"),
            &[&lease_ms(lease)],
        )
    }

    fn set_stage(&self, task: &str, owner: &str, stage: Stage) -> Result<(), StoreError> {
        self.held_update(task, owner, "stage = ?3", &[&stage])
    }

    fn finish(
        &self,
        task: &str,
        owner: &str,
        state: TaskState,
        reason: &str,
    ) -> Result<(), StoreError> {
        self.held_update(
            task,
            owner,
            "state = ?3, reason = ?4, stage = NULL, lease_owner = NULL, lease_expires_ms = NULL",
            &[&state, &reason],
        )
    }

    fn finish_attempt(
        &self,
        attempt: &AttemptRecord,
        owner: &str,
        state: TaskState,
        reason: &str,
    ) -> Result<(), StoreError> {
        let reasons = serde_json::to_string(&attempt.reasons).unwrap_or_else(|_| "[]".into());
        let changed = serde_json::to_string(&attempt.changed).unwrap_or_else(|_| "[]".into());
        let wall = i64::try_from(attempt.wall_ms).unwrap_or(i64::MAX);
        let agent_cost = attempt
            .agent_cost
            .map(|c| i64::try_from(c.get()).unwrap_or(i64::MAX));
        self.write(|tx| {
            self.held_update_in(
                tx,
                &attempt.task_id,
                owner,
                "state = ?3, reason = ?4, stage = NULL, lease_owner = NULL, lease_expires_ms = NULL",
                &[&state, &reason],
            )?;
            tx.execute(
                "INSERT OR REPLACE INTO attempts (task_id, number, run_id, model, outcome, reasons,
                                                  turns, tests_passed, wall_ms, rejected_by,
                                                  changed, implementer, agent_cost_micros)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                params![
                    attempt.task_id,
                    attempt.number,
                    attempt.run_id,
                    attempt.model,
                    attempt.outcome,
                    reasons,
                    attempt.turns,
                    attempt.tests_passed,
                    wall,
                    attempt.rejected_by,
                    changed,
                    attempt.implementer,
                    agent_cost
                ],
            )
            .map_err(|e| self.db_err(e))?;
            Ok(())
        })
    }

    fn attempts(&self, task: &str) -> Result<Vec<AttemptRecord>, StoreError> {
        self.with_conn(|conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT task_id, number, run_id, model, outcome, reasons, turns, tests_passed,
                            wall_ms, rejected_by, changed, implementer, agent_cost_micros
                     FROM attempts WHERE task_id = ?1 ORDER BY number",
                )
                .map_err(|e| self.db_err(e))?;
            let rows = stmt
                .query_map([task], |r| {
                    let reasons: String = r.get(5)?;
                    Ok(AttemptRecord {
                        task_id: r.get(0)?,
                        number: r.get(1)?,
                        run_id: r.get(2)?,
                        model: r.get(3)?,
                        outcome: r.get(4)?,
                        reasons: serde_json::from_str(&reasons).unwrap_or_default(),
                        turns: r.get(6)?,
                        tests_passed: r.get(7)?,
                        wall_ms: u64::try_from(r.get::<_, i64>(8)?).unwrap_or(0),
                        rejected_by: r.get(9)?,
                        changed: serde_json::from_str(&r.get::<_, String>(10)?).unwrap_or_default(),
                        implementer: r.get(11)?,
                        agent_cost: r
                            .get::<_, Option<i64>>(12)?
                            .map(|c| MicroUsd(u64::try_from(c).unwrap_or(0))),
                    })
                })
                .map_err(|e| self.db_err(e))?;
            rows.collect::<Result<_, _>>().map_err(|e| self.db_err(e))
        })
    }

    fn requeue_orphans(&self, is_alive: &dyn Fn(&str) -> bool) -> Result<Vec<String>, StoreError> {
        self.write(|tx| {
            let lapsed = self.lapsed_hosts(tx)?;
            let running: Vec<(String, Option<String>)> = {
                let mut stmt = tx
                    .prepare(
                        "SELECT id, lease_owner FROM tasks WHERE state = 'running' ORDER BY seq",
                    )
                    .map_err(|e| self.db_err(e))?;
                let rows = stmt
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                    .map_err(|e| self.db_err(e))?;
                rows.collect::<Result<_, _>>().map_err(|e| self.db_err(e))?
            };
            let mut requeued = Vec::new();
            for (id, owner) in running {
                let owner = owner.unwrap_or_default();
                if owner_is_dead(&owner, is_alive, &lapsed) {
                    tx.execute(
                        "UPDATE tasks SET state = 'queued', stage = NULL,
                             reason = 'its worker ' || ?2 || ' stopped; requeued',
                             lease_owner = NULL, lease_expires_ms = NULL,
                             updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
                         WHERE id = ?1",
                        params![id, owner],
                    )
                    .map_err(|e| self.db_err(e))?;
                    requeued.push(id);
                }
            }
            Ok(requeued)
        })
    }

    fn expire(&self) -> Result<u64, StoreError> {
        self.with_conn(|conn| {
            let n = conn
                .execute(
                    &format!(
                        "UPDATE tasks SET state = 'queued', stage = NULL,
                             reason = 'the lease of ' || lease_owner || ' expired; requeued',
                             lease_owner = NULL, lease_expires_ms = NULL,
                             updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
                         WHERE state = 'running' AND lease_expires_ms < {NOW_MS}"
                    ),
                    [],
                )
                .map_err(|e| self.db_err(e))?;
            Ok(n as u64)
        })
    }

    fn task(&self, id: &str) -> Result<Option<TaskRecord>, StoreError> {
        self.with_conn(|conn| {
            conn.query_row(
                &format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1"),
                [id],
                task_from_row,
            )
            .optional()
            .map_err(|e| self.db_err(e))
        })
    }

    fn tasks(&self) -> Result<Vec<TaskRecord>, StoreError> {
        self.with_conn(|conn| {
            let mut stmt = conn
                .prepare(&format!("SELECT {TASK_COLUMNS} FROM tasks ORDER BY seq"))
                .map_err(|e| self.db_err(e))?;
            let rows = stmt
                .query_map([], task_from_row)
                .map_err(|e| self.db_err(e))?;
            rows.collect::<Result<_, _>>().map_err(|e| self.db_err(e))
        })
    }

    fn host_beat(
        &self,
        owner: &str,
        run_id: &str,
        workers: u32,
        lease: Duration,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                &format!(
                    "INSERT INTO hosts (owner, run_id, workers, expires_ms)
                     VALUES (?1, ?2, ?3, {NOW_MS} + ?4)
                     ON CONFLICT (owner) DO UPDATE SET run_id = ?2, workers = ?3,
                         expires_ms = {NOW_MS} + ?4, has_left = 0,
                         seen_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
                ),
                params![owner, run_id, workers, lease_ms(lease)],
            )
            .map_err(|e| self.db_err(e))?;
            Ok(())
        })
    }

    fn host_left(&self, owner: &str) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                &format!(
                    "UPDATE hosts SET has_left = 1, expires_ms = {NOW_MS},
                         seen_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
                     WHERE owner = ?1"
                ),
                [owner],
            )
            .map_err(|e| self.db_err(e))?;
            Ok(())
        })
    }

    fn hosts(&self) -> Result<Vec<HostRecord>, StoreError> {
        self.with_conn(|conn| {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT owner, run_id, workers, started_at, seen_at,
                            expires_ms >= {NOW_MS} AND has_left = 0 AS live, has_left
                     FROM hosts ORDER BY live DESC, started_at DESC, owner"
                ))
                .map_err(|e| self.db_err(e))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(HostRecord {
                        owner: r.get(0)?,
                        run_id: r.get(1)?,
                        workers: r.get(2)?,
                        started_at: r.get(3)?,
                        seen_at: r.get(4)?,
                        live: r.get(5)?,
                        left: r.get(6)?,
                    })
                })
                .map_err(|e| self.db_err(e))?;
            rows.collect::<Result<_, _>>().map_err(|e| self.db_err(e))
        })
    }
}

impl SqliteStore {
    /// The owners of runs whose lease lapsed without their leaving: dead, wherever they ran.
    pub(super) fn lapsed_hosts(
        &self,
        conn: &rusqlite::Connection,
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        let mut stmt = conn
            .prepare(&format!(
                "SELECT owner FROM hosts WHERE expires_ms < {NOW_MS} AND has_left = 0"
            ))
            .map_err(|e| self.db_err(e))?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(|e| self.db_err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.db_err(e))
    }

    /// Update a running task that `owner` still holds under a live lease, or say the lease is
    /// lost. `set` uses ?3 and ?4 for `args`.
    fn held_update(
        &self,
        task: &str,
        owner: &str,
        set: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<(), StoreError> {
        self.write(|tx| self.held_update_in(tx, task, owner, set, args))
    }

    /// [`Self::held_update`] inside a transaction the caller holds.
    fn held_update_in(
        &self,
        tx: &rusqlite::Transaction<'_>,
        task: &str,
        owner: &str,
        set: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<(), StoreError> {
        {
            let exists: bool = tx
                .query_row("SELECT 1 FROM tasks WHERE id = ?1", [task], |_| Ok(true))
                .optional()
                .map_err(|e| self.db_err(e))?
                .unwrap_or(false);
            if !exists {
                return Err(StoreError::NoSuchTask(task.to_string()));
            }
            let mut params: Vec<&dyn rusqlite::ToSql> = vec![&task, &owner];
            params.extend_from_slice(args);
            let n = tx
                .execute(
                    &format!(
                        "UPDATE tasks SET {set}, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
                         WHERE id = ?1 AND state = 'running' AND lease_owner = ?2
                           AND lease_expires_ms >= {NOW_MS}"
                    ),
                    params.as_slice(),
                )
                .map_err(|e| self.db_err(e))?;
            if n == 0 {
                return Err(StoreError::LeaseLost {
                    task: task.to_string(),
                    owner: owner.to_string(),
                });
            }
            Ok(())
        }
    }
}
