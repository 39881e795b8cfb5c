//! The backlog's operations on PostgreSQL: claims with `FOR UPDATE SKIP LOCKED` under leases
//! that expire by the database's clock, stages, finished attempts, the runs' own leases, and
//! the orphans of dead runs.

use std::time::Duration;

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::ledger::lapsed_hosts;
use super::{Fail, PostgresStore, int, millis, signed, small, unsigned, word};
use crate::store::{
    AttemptOutcome, AttemptRecord, BacklogStore, HostRecord, MergeTurn, MicroUsd, NewTask,
    RejectionCause, Stage, StoreError, TaskRecord, TaskState, owner_is_dead,
};

/// A connection closed when dropped, on the store's runtime (its lock goes with it).
struct ClosedOnDrop {
    connection: Option<deadpool_postgres::ClientWrapper>,
    handle: tokio::runtime::Handle,
}

impl Drop for ClosedOnDrop {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            // Dropped inside the store's runtime, where its connection task runs.
            self.handle.spawn(async move { drop(connection) });
        }
    }
}

const TASK_COLUMNS: &str =
    "id, title, body, labels, paths, source, state, stage, attempts, reason, lease_owner";

/// A time as RFC 3339 in UTC, in SQL.
fn rfc3339(column: &str) -> String {
    format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')")
}

fn task_from_row(r: &Row) -> Result<TaskRecord, Fail> {
    let json_list = |i: usize| -> Result<Vec<String>, Fail> {
        let text: String = r.try_get(i)?;
        Ok(serde_json::from_str(&text).unwrap_or_default())
    };
    let state: String = r.try_get(6)?;
    let stage: Option<String> = r.try_get(7)?;
    Ok(TaskRecord {
        id: r.try_get(0)?,
        title: r.try_get(1)?,
        body: r.try_get(2)?,
        labels: json_list(3)?,
        paths: json_list(4)?,
        source: r.try_get(5)?,
        state: word(&state, TaskState::from_name, "state")?,
        stage: stage
            .map(|s| word(&s, Stage::from_name, "stage"))
            .transpose()?,
        attempts: small(r.try_get(8)?),
        reason: r.try_get(9)?,
        lease_owner: r.try_get(10)?,
    })
}

/// Update a running task that `owner` still holds under a live lease (`set` uses `$3`.. for
/// `args`), or say why not: the task does not exist, or the lease is lost.
async fn held_update<C: GenericClient>(
    client: &C,
    task: &str,
    owner: &str,
    set: &str,
    args: &[&(dyn ToSql + Sync)],
) -> Result<(), Fail> {
    let update = client
        .prepare_cached(&format!(
            "UPDATE tasks SET {set}, updated_at = now()
             WHERE id = $1 AND state = 'running' AND lease_owner = $2
               AND lease_expires_at >= now()"
        ))
        .await?;
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&task, &owner];
    params.extend_from_slice(args);
    if client.execute(&update, &params).await? == 1 {
        return Ok(());
    }
    let exists = client
        .query_opt("SELECT 1 FROM tasks WHERE id = $1", &[&task])
        .await?
        .is_some();
    Err(if exists {
        StoreError::LeaseLost {
            task: task.to_string(),
            owner: owner.to_string(),
        }
    } else {
        StoreError::NoSuchTask(task.to_string())
    }
    .into())
}

/// The columns `finish` and `finish_attempt` set: the task leaves `running`, its lease ends.
const FINISHED: &str =
    "state = $3, reason = $4, stage = NULL, lease_owner = NULL, lease_expires_at = NULL";

impl BacklogStore for PostgresStore {
    fn add_tasks(&self, tasks: &[NewTask]) -> Result<Vec<String>, StoreError> {
        let tasks = tasks.to_vec();
        self.run(move |pool| async move {
            let mut client = pool.get().await?;
            let tx = client.transaction().await?;
            // Ids are gapless and in order: one writer of new tasks at a time.
            tx.batch_execute("LOCK TABLE tasks IN EXCLUSIVE MODE")
                .await?;
            let next: i64 = tx
                .query_one("SELECT COALESCE(MAX(seq), 0) + 1 FROM tasks", &[])
                .await?
                .get(0);
            let insert = tx
                .prepare_cached(
                    "INSERT INTO tasks (seq, id, title, body, labels, paths, source, state)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 'queued')",
                )
                .await?;
            let mut ids = Vec::with_capacity(tasks.len());
            for (seq, task) in (next..).zip(&tasks) {
                let id = format!("T-{seq}");
                let labels = serde_json::to_string(&task.labels).unwrap_or_else(|_| "[]".into());
                let paths = serde_json::to_string(&task.paths).unwrap_or_else(|_| "[]".into());
                tx.execute(
                    &insert,
                    &[
                        &seq,
                        &id,
                        &task.title,
                        &task.body,
                        &labels,
                        &paths,
                        &task.source,
                    ],
                )
                .await?;
                ids.push(id);
            }
            tx.commit().await?;
            Ok(ids)
        })
    }

    fn claim(&self, owner: &str, lease: Duration) -> Result<Option<TaskRecord>, StoreError> {
        let owner = owner.to_string();
        self.run(move |pool| async move {
            let client = pool.get().await?;
            // One statement: the oldest claimable task no other transaction holds right now.
            let claim = client
                .prepare_cached(&format!(
                    "UPDATE tasks SET state = 'running', stage = 'route', attempts = attempts + 1,
                         lease_owner = $1,
                         lease_expires_at = now() + $2::bigint * interval '1 millisecond',
                         updated_at = now()
                     WHERE seq = (
                         SELECT seq FROM tasks
                         WHERE state IN ('queued', 'rejected-requeued')
                            OR (state = 'running' AND lease_expires_at < now())
                         ORDER BY seq LIMIT 1
                         FOR UPDATE SKIP LOCKED)
                     RETURNING {TASK_COLUMNS}"
                ))
                .await?;
            let row = client.query_opt(&claim, &[&owner, &millis(lease)]).await?;
            row.as_ref().map(task_from_row).transpose()
        })
    }

    fn heartbeat(&self, task: &str, owner: &str, lease: Duration) -> Result<(), StoreError> {
        let (task, owner) = (task.to_string(), owner.to_string());
        self.run(move |pool| async move {
            let client = pool.get().await?;
            let lease = millis(lease);
            held_update(
                &client,
                &task,
                &owner,
                "lease_expires_at = now() + $3::bigint * interval '1 millisecond'",
                &[&lease],
            )
            .await
        })
    }

    fn set_stage(&self, task: &str, owner: &str, stage: Stage) -> Result<(), StoreError> {
        let (task, owner) = (task.to_string(), owner.to_string());
        self.run(move |pool| async move {
            let client = pool.get().await?;
            held_update(&client, &task, &owner, "stage = $3", &[&stage.name()]).await
        })
    }

    fn finish(
        &self,
        task: &str,
        owner: &str,
        state: TaskState,
        reason: &str,
    ) -> Result<(), StoreError> {
        let (task, owner, reason) = (task.to_string(), owner.to_string(), reason.to_string());
        self.run(move |pool| async move {
            let client = pool.get().await?;
            held_update(&client, &task, &owner, FINISHED, &[&state.name(), &reason]).await
        })
    }

    fn finish_attempt(
        &self,
        attempt: &AttemptRecord,
        owner: &str,
        state: TaskState,
        reason: &str,
    ) -> Result<(), StoreError> {
        let (attempt, owner, reason) = (attempt.clone(), owner.to_string(), reason.to_string());
        self.run(move |pool| async move {
            let reasons = serde_json::to_string(&attempt.reasons).unwrap_or_else(|_| "[]".into());
            let changed = serde_json::to_string(&attempt.changed).unwrap_or_else(|_| "[]".into());
            let (number, turns) = (int(attempt.number)?, int(attempt.turns)?);
            let wall = signed(attempt.wall_ms)?;
            let agent_cost = attempt.agent_cost.map(|c| signed(c.get())).transpose()?;
            let (outcome, rejected_by) = (
                attempt.outcome.name(),
                attempt.rejected_by.map(RejectionCause::name),
            );
            let mut client = pool.get().await?;
            let tx = client.transaction().await?;
            held_update(
                &tx,
                &attempt.task_id,
                &owner,
                FINISHED,
                &[&state.name(), &reason],
            )
            .await?;
            let insert = tx
                .prepare_cached(
                    "INSERT INTO attempts (task_id, number, run_id, model, outcome, reasons,
                                           turns, tests_passed, wall_ms, rejected_by, changed,
                                           implementer, agent_cost_micros)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                     ON CONFLICT (task_id, number) DO UPDATE SET
                         run_id = EXCLUDED.run_id, model = EXCLUDED.model,
                         outcome = EXCLUDED.outcome, reasons = EXCLUDED.reasons,
                         turns = EXCLUDED.turns, tests_passed = EXCLUDED.tests_passed,
                         wall_ms = EXCLUDED.wall_ms, rejected_by = EXCLUDED.rejected_by,
                         changed = EXCLUDED.changed, implementer = EXCLUDED.implementer,
                         agent_cost_micros = EXCLUDED.agent_cost_micros, ended_at = now()",
                )
                .await?;
            tx.execute(
                &insert,
                &[
                    &attempt.task_id,
                    &number,
                    &attempt.run_id,
                    &attempt.model,
                    &outcome,
                    &reasons,
                    &turns,
                    &attempt.tests_passed,
                    &wall,
                    &rejected_by,
                    &changed,
                    &attempt.implementer,
                    &agent_cost,
                ],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn attempts(&self, task: &str) -> Result<Vec<AttemptRecord>, StoreError> {
        let task = task.to_string();
        self.run(move |pool| async move {
            let client = pool.get().await?;
            let select = client
                .prepare_cached(
                    "SELECT task_id, number, run_id, model, outcome, reasons, turns, tests_passed,
                            wall_ms, rejected_by, changed, implementer, agent_cost_micros
                     FROM attempts WHERE task_id = $1 ORDER BY number",
                )
                .await?;
            let rows = client.query(&select, &[&task]).await?;
            rows.iter()
                .map(|r| {
                    let outcome: String = r.try_get(4)?;
                    let reasons: String = r.try_get(5)?;
                    let rejected_by: Option<String> = r.try_get(9)?;
                    let changed: String = r.try_get(10)?;
                    Ok(AttemptRecord {
                        task_id: r.try_get(0)?,
                        number: small(r.try_get(1)?),
                        run_id: r.try_get(2)?,
                        model: r.try_get(3)?,
                        outcome: word(&outcome, AttemptOutcome::from_name, "outcome")?,
                        reasons: serde_json::from_str(&reasons).unwrap_or_default(),
                        turns: small(r.try_get(6)?),
                        tests_passed: r.try_get(7)?,
                        wall_ms: unsigned(r.try_get(8)?),
                        rejected_by: rejected_by
                            .map(|c| word(&c, RejectionCause::from_name, "rejected_by"))
                            .transpose()?,
                        changed: serde_json::from_str(&changed).unwrap_or_default(),
                        implementer: r.try_get(11)?,
                        agent_cost: r
                            .try_get::<_, Option<i64>>(12)?
                            .map(|c| MicroUsd(unsigned(c))),
                    })
                })
                .collect()
        })
    }

    fn requeue_orphans(&self, is_alive: &dyn Fn(&str) -> bool) -> Result<Vec<String>, StoreError> {
        let (lapsed, running) = self.run(|pool| async move {
            let mut client = pool.get().await?;
            let tx = client.transaction().await?;
            let lapsed = lapsed_hosts(&tx).await?;
            let running: Vec<(String, Option<String>)> = tx
                .query(
                    "SELECT id, lease_owner FROM tasks WHERE state = 'running' ORDER BY seq",
                    &[],
                )
                .await?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            Ok((lapsed, running))
        })?;
        let orphans: Vec<(String, String)> = running
            .into_iter()
            .map(|(id, owner)| (id, owner.unwrap_or_default()))
            .filter(|(_, owner)| owner_is_dead(owner, is_alive, &lapsed))
            .collect();
        if orphans.is_empty() {
            return Ok(Vec::new());
        }
        self.run(move |pool| async move {
            let client = pool.get().await?;
            let requeue = client
                .prepare_cached(
                    "UPDATE tasks SET state = 'queued', stage = NULL,
                         reason = 'its worker ' || $2 || ' stopped; requeued',
                         lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
                     WHERE id = $1 AND state = 'running' AND lease_owner IS NOT DISTINCT FROM
                         NULLIF($2, '')",
                )
                .await?;
            let mut requeued = Vec::new();
            for (id, owner) in orphans {
                // Only if it is still that owner's: another host may have requeued or taken it.
                if client.execute(&requeue, &[&id, &owner]).await? == 1 {
                    requeued.push(id);
                }
            }
            Ok(requeued)
        })
    }

    fn expire(&self) -> Result<u64, StoreError> {
        self.run(|pool| async move {
            let client = pool.get().await?;
            let n = client
                .execute(
                    "UPDATE tasks SET state = 'queued', stage = NULL,
                         reason = 'the lease of ' || lease_owner || ' expired; requeued',
                         lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
                     WHERE state = 'running' AND lease_expires_at < now()",
                    &[],
                )
                .await?;
            Ok(n)
        })
    }

    fn task(&self, id: &str) -> Result<Option<TaskRecord>, StoreError> {
        let id = id.to_string();
        self.run(move |pool| async move {
            let client = pool.get().await?;
            let select = client
                .prepare_cached(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1"))
                .await?;
            let row = client.query_opt(&select, &[&id]).await?;
            row.as_ref().map(task_from_row).transpose()
        })
    }

    fn tasks(&self) -> Result<Vec<TaskRecord>, StoreError> {
        self.run(|pool| async move {
            let client = pool.get().await?;
            let select = client
                .prepare_cached(&format!("SELECT {TASK_COLUMNS} FROM tasks ORDER BY seq"))
                .await?;
            let rows = client.query(&select, &[]).await?;
            rows.iter().map(task_from_row).collect()
        })
    }

    fn host_beat(
        &self,
        owner: &str,
        run_id: &str,
        workers: u32,
        lease: Duration,
    ) -> Result<(), StoreError> {
        let (owner, run_id) = (owner.to_string(), run_id.to_string());
        self.run(move |pool| async move {
            let workers = int(workers)?;
            let client = pool.get().await?;
            let beat = client
                .prepare_cached(
                    "INSERT INTO hosts (owner, run_id, workers, expires_at)
                     VALUES ($1, $2, $3, now() + $4::bigint * interval '1 millisecond')
                     ON CONFLICT (owner) DO UPDATE SET run_id = $2, workers = $3,
                         expires_at = now() + $4::bigint * interval '1 millisecond',
                         has_left = FALSE, seen_at = now()",
                )
                .await?;
            client
                .execute(&beat, &[&owner, &run_id, &workers, &millis(lease)])
                .await?;
            Ok(())
        })
    }

    fn host_left(&self, owner: &str) -> Result<(), StoreError> {
        let owner = owner.to_string();
        self.run(move |pool| async move {
            let client = pool.get().await?;
            client
                .execute(
                    "UPDATE hosts SET has_left = TRUE, expires_at = now(), seen_at = now()
                     WHERE owner = $1",
                    &[&owner],
                )
                .await?;
            Ok(())
        })
    }

    fn merge_turn(&self, target: &str) -> Result<Option<MergeTurn>, StoreError> {
        let target = target.to_string();
        let connection = self.run(move |pool| async move {
            let client = pool.get().await?;
            // A session lock, on a connection kept for the turn: it ends when the turn is
            // dropped (the connection is closed, not returned to the pool) or when the host
            // dies and its connection with it. No lease to expire, nothing to clean up.
            client
                .execute(
                    "SELECT pg_advisory_lock(hashtextextended('gaffer merge ' || $1, 0))",
                    &[&target],
                )
                .await?;
            Ok(deadpool_postgres::Object::take(client))
        })?;
        Ok(Some(MergeTurn::new(Box::new(ClosedOnDrop {
            connection: Some(connection),
            handle: self.handle.clone(),
        }))))
    }

    fn hosts(&self) -> Result<Vec<HostRecord>, StoreError> {
        self.run(|pool| async move {
            let client = pool.get().await?;
            let select = format!(
                "SELECT owner, run_id, workers, {}, {},
                        expires_at >= now() AND NOT has_left AS live, has_left
                 FROM hosts ORDER BY live DESC, started_at DESC, owner",
                rfc3339("started_at"),
                rfc3339("seen_at")
            );
            let rows = client.query(&select, &[]).await?;
            rows.iter()
                .map(|r| {
                    Ok(HostRecord {
                        owner: r.try_get(0)?,
                        run_id: r.try_get(1)?,
                        workers: small(r.try_get(2)?),
                        started_at: r.try_get(3)?,
                        seen_at: r.try_get(4)?,
                        live: r.try_get(5)?,
                        left: r.try_get(6)?,
                    })
                })
                .collect()
        })
    }
}
