//! The PostgreSQL schema: versioned migrations applied in order, each in the transaction that
//! records its version in `gaffer_schema`, under an advisory lock so that hosts starting at
//! once migrate one after the other (the later ones find the work done). The tables and their
//! `CHECK`ed vocabulary are SQLite's at its newest version; timestamps are `timestamptz`.

use deadpool_postgres::Object;

use super::Fail;
use crate::store::vocabulary::{
    AttemptOutcome, CapLevel, Phase, RejectionCause, Role, RowState, Stage, TaskState,
};

/// Any fixed key: held by the migrating transaction only.
const MIGRATION_LOCK: i64 = 0x6761_6666_6572; // "gaffer"

/// The migrations in order; the first builds the schema of 2026-11 whole.
fn migrations() -> Vec<String> {
    vec![
        first_schema(),
        // 2: as SQLite's 11, the ledger's indexes that no query uses, which every call's
        // row paid to keep.
        "DROP INDEX IF EXISTS ledger_run; DROP INDEX IF EXISTS ledger_call;".to_string(),
    ]
}

fn first_schema() -> String {
    let stages_of_rows = [Stage::Route, Stage::Implement, Stage::Check, Stage::Verify]
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let (stages, phases, roles, outcomes, states, row_states, levels, causes) = (
        Stage::sql_list(),
        Phase::sql_list(),
        Role::sql_list(),
        AttemptOutcome::sql_list(),
        TaskState::sql_list(),
        RowState::sql_list(),
        CapLevel::sql_list(),
        RejectionCause::sql_list(),
    );
    format!(
        "CREATE TABLE ledger (
            id BIGSERIAL PRIMARY KEY,
            run_id TEXT NOT NULL,
            task_id TEXT,
            attempt INTEGER,
            stage TEXT NOT NULL CHECK (stage IN ({stages_of_rows})),
            phase TEXT CHECK (phase IS NULL OR phase IN ({phases})),
            role TEXT NOT NULL CHECK (role IN ({roles})),
            model TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ({row_states})),
            reserved_micros BIGINT NOT NULL DEFAULT 0 CHECK (reserved_micros >= 0),
            charged_micros BIGINT NOT NULL DEFAULT 0 CHECK (charged_micros >= 0),
            input_tokens BIGINT NOT NULL DEFAULT 0,
            output_tokens BIGINT NOT NULL DEFAULT 0,
            cache_read_tokens BIGINT NOT NULL DEFAULT 0,
            cache_write_tokens BIGINT NOT NULL DEFAULT 0,
            price_input BIGINT NOT NULL DEFAULT 0,
            price_output BIGINT NOT NULL DEFAULT 0,
            price_cache_read BIGINT NOT NULL DEFAULT 0,
            price_cache_write BIGINT NOT NULL DEFAULT 0,
            fuel BIGINT NOT NULL DEFAULT 0,
            wall_ms BIGINT NOT NULL DEFAULT 0,
            outcome TEXT,
            overrun BOOLEAN NOT NULL DEFAULT FALSE,
            usage_missing BOOLEAN NOT NULL DEFAULT FALSE,
            recovered BOOLEAN NOT NULL DEFAULT FALSE,
            owner TEXT NOT NULL,
            day TEXT NOT NULL,
            month TEXT NOT NULL,
            call_id BIGINT,
            try_number INTEGER CHECK (try_number IS NULL OR try_number >= 1),
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            updated_at TIMESTAMPTZ
        );
        CREATE INDEX ledger_task ON ledger (task_id, attempt);
        CREATE INDEX ledger_run ON ledger (run_id);
        CREATE INDEX ledger_open ON ledger (state) WHERE state IN ('reserved', 'sent');
        CREATE INDEX ledger_call ON ledger (call_id) WHERE call_id IS NOT NULL;

        CREATE TABLE cap_totals (
            level TEXT NOT NULL CHECK (level IN ({levels})),
            scope TEXT NOT NULL,
            micros BIGINT NOT NULL CHECK (micros >= 0),
            PRIMARY KEY (level, scope)
        );

        CREATE TABLE tasks (
            seq BIGINT PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            title TEXT NOT NULL,
            body TEXT NOT NULL DEFAULT '',
            labels TEXT NOT NULL DEFAULT '[]',
            paths TEXT NOT NULL DEFAULT '[]',
            source TEXT,
            state TEXT NOT NULL CHECK (state IN ({states})),
            stage TEXT CHECK (stage IS NULL OR stage IN ({stages})),
            attempts INTEGER NOT NULL DEFAULT 0,
            reason TEXT,
            lease_owner TEXT,
            lease_expires_at TIMESTAMPTZ,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            updated_at TIMESTAMPTZ
        );
        CREATE INDEX tasks_claimable ON tasks (seq)
            WHERE state IN ('queued', 'rejected-requeued', 'running');

        CREATE TABLE attempts (
            task_id TEXT NOT NULL,
            number INTEGER NOT NULL,
            run_id TEXT NOT NULL,
            model TEXT NOT NULL,
            outcome TEXT NOT NULL CHECK (outcome IN ({outcomes})),
            reasons TEXT NOT NULL DEFAULT '[]',
            turns INTEGER NOT NULL DEFAULT 0,
            tests_passed BOOLEAN,
            wall_ms BIGINT NOT NULL DEFAULT 0,
            ended_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            rejected_by TEXT CHECK (rejected_by IS NULL OR rejected_by IN ({causes})),
            changed TEXT NOT NULL DEFAULT '[]',
            implementer TEXT,
            agent_cost_micros BIGINT CHECK (agent_cost_micros IS NULL OR agent_cost_micros >= 0),
            PRIMARY KEY (task_id, number)
        );

        CREATE TABLE hosts (
            owner TEXT PRIMARY KEY,
            run_id TEXT NOT NULL,
            workers INTEGER NOT NULL CHECK (workers >= 0),
            started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            seen_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            expires_at TIMESTAMPTZ NOT NULL,
            has_left BOOLEAN NOT NULL DEFAULT FALSE
        );"
    )
}

/// Bring the database up to the newest schema, or refuse one newer than this gaffer knows.
pub(super) async fn migrate(client: &mut Object) -> Result<(), Fail> {
    let migrations = migrations();
    let known = i32::try_from(migrations.len()).unwrap_or(i32::MAX);
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS gaffer_schema (version INTEGER NOT NULL);
         INSERT INTO gaffer_schema (version)
             SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM gaffer_schema);",
    )
    .await?;
    let version: i32 = tx
        .query_one("SELECT version FROM gaffer_schema", &[])
        .await?
        .get(0);
    if version > known {
        return Err(Fail::Db(format!(
            "schema version {version} is newer than this gaffer knows ({known}); upgrade gaffer"
        )));
    }
    for (number, sql) in migrations
        .iter()
        .enumerate()
        .map(|(i, sql)| (i + 1, sql))
        .skip(usize::try_from(version).unwrap_or(0))
    {
        tx.batch_execute(sql).await.map_err(|e| {
            Fail::Db(format!(
                "migration to schema version {number} failed, the database is unchanged: {}",
                super::describe(&e)
            ))
        })?;
        tx.execute(
            "UPDATE gaffer_schema SET version = $1",
            &[&i32::try_from(number).unwrap_or(i32::MAX)],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
