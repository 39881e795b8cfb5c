//! The schema: versioned migrations applied in order, each in the transaction that records
//! its version (`PRAGMA user_version`), so a database is always at one known version.

use rusqlite::{Connection, TransactionBehavior};

use crate::store::vocabulary::{
    AttemptOutcome, CapLevel, Phase, RejectionCause, Role, RowState, Stage, TaskState,
};

/// Schema versions, applied in order; `PRAGMA user_version` records how far a database is.
const MIGRATIONS: &[&str] = &[
    // 1: the one ledger table of DESIGN.md: one row per model call and per plugin run.
    "CREATE TABLE ledger (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL,
        task_id TEXT,
        attempt INTEGER,
        stage TEXT NOT NULL,
        phase TEXT,
        role TEXT NOT NULL,
        model TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('reserved', 'sent', 'settled', 'released')),
        reserved_micros INTEGER NOT NULL DEFAULT 0,
        charged_micros INTEGER NOT NULL DEFAULT 0,
        input_tokens INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        cache_read_tokens INTEGER NOT NULL DEFAULT 0,
        cache_write_tokens INTEGER NOT NULL DEFAULT 0,
        price_input INTEGER NOT NULL DEFAULT 0,
        price_output INTEGER NOT NULL DEFAULT 0,
        price_cache_read INTEGER NOT NULL DEFAULT 0,
        price_cache_write INTEGER NOT NULL DEFAULT 0,
        fuel INTEGER NOT NULL DEFAULT 0,
        wall_ms INTEGER NOT NULL DEFAULT 0,
        outcome TEXT,
        overrun INTEGER NOT NULL DEFAULT 0,
        usage_missing INTEGER NOT NULL DEFAULT 0,
        recovered INTEGER NOT NULL DEFAULT 0,
        owner TEXT NOT NULL,
        day TEXT NOT NULL,
        month TEXT NOT NULL,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        updated_at TEXT
    );
    CREATE INDEX ledger_task ON ledger (task_id, attempt);
    CREATE INDEX ledger_run ON ledger (run_id);
    CREATE INDEX ledger_day ON ledger (day);
    CREATE INDEX ledger_month ON ledger (month, model);
    CREATE INDEX ledger_open ON ledger (state) WHERE state IN ('reserved', 'sent');",
    // 2: running totals per cap scope, so that checking a cap is one lookup, not a sum over
    // every row of a day or a month. Kept in the same transaction as the rows they total.
    "CREATE TABLE cap_totals (
        level TEXT NOT NULL,
        scope TEXT NOT NULL,
        micros INTEGER NOT NULL,
        PRIMARY KEY (level, scope)
    ) WITHOUT ROWID;
    INSERT INTO cap_totals (level, scope, micros)
        SELECT 'attempt', task_id || '#' || attempt, SUM(CASE WHEN state IN ('reserved', 'sent') THEN reserved_micros WHEN state = 'settled' THEN charged_micros ELSE 0 END)
        FROM ledger WHERE task_id IS NOT NULL AND attempt IS NOT NULL GROUP BY task_id, attempt;
    INSERT INTO cap_totals (level, scope, micros)
        SELECT 'task', task_id, SUM(CASE WHEN state IN ('reserved', 'sent') THEN reserved_micros WHEN state = 'settled' THEN charged_micros ELSE 0 END)
        FROM ledger WHERE task_id IS NOT NULL GROUP BY task_id;
    INSERT INTO cap_totals (level, scope, micros)
        SELECT 'run', run_id, SUM(CASE WHEN state IN ('reserved', 'sent') THEN reserved_micros WHEN state = 'settled' THEN charged_micros ELSE 0 END)
        FROM ledger GROUP BY run_id;
    INSERT INTO cap_totals (level, scope, micros)
        SELECT 'day', day, SUM(CASE WHEN state IN ('reserved', 'sent') THEN reserved_micros WHEN state = 'settled' THEN charged_micros ELSE 0 END)
        FROM ledger GROUP BY day;
    INSERT INTO cap_totals (level, scope, micros)
        SELECT 'month', month, SUM(CASE WHEN state IN ('reserved', 'sent') THEN reserved_micros WHEN state = 'settled' THEN charged_micros ELSE 0 END)
        FROM ledger GROUP BY month;
    INSERT INTO cap_totals (level, scope, micros)
        SELECT 'model', month || '|' || model, SUM(CASE WHEN state IN ('reserved', 'sent') THEN reserved_micros WHEN state = 'settled' THEN charged_micros ELSE 0 END)
        FROM ledger GROUP BY month, model;",
    // 3: the backlog. Leases expire by the store's clock (unix milliseconds, from SQLite).
    "CREATE TABLE tasks (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        title TEXT NOT NULL,
        body TEXT NOT NULL DEFAULT '',
        labels TEXT NOT NULL DEFAULT '[]',
        paths TEXT NOT NULL DEFAULT '[]',
        source TEXT,
        state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'merged', 'rejected-requeued',
                                             'failed', 'budget-exhausted', 'needs-human')),
        stage TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        reason TEXT,
        lease_owner TEXT,
        lease_expires_ms INTEGER,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        updated_at TEXT
    );
    CREATE INDEX tasks_claimable ON tasks (state, seq);",
    // 4: finished attempts, the history the router sees; ledger rows carry their money.
    "CREATE TABLE attempts (
        task_id TEXT NOT NULL,
        number INTEGER NOT NULL,
        run_id TEXT NOT NULL,
        model TEXT NOT NULL,
        outcome TEXT NOT NULL,
        reasons TEXT NOT NULL DEFAULT '[]',
        turns INTEGER NOT NULL DEFAULT 0,
        tests_passed INTEGER,
        wall_ms INTEGER NOT NULL DEFAULT 0,
        ended_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        PRIMARY KEY (task_id, number)
    );",
    // 5: the vocabulary as CHECK constraints (see `typed_columns`), built at run time from
    // the enums, so the names the schema allows are the names the code reads back.
    "",
    // 6: every try on the wire is its own row, tied to its call. The call id is the row id of
    // the call's first try. Rows from before were one row per call: each model call becomes a
    // call of one try (a plugin run reserves and charges nothing, and keeps no call id), and
    // no amount changes, so every total stays as it was.
    "ALTER TABLE ledger ADD COLUMN call_id INTEGER;
    ALTER TABLE ledger ADD COLUMN try_number INTEGER CHECK (try_number IS NULL OR try_number >= 1);
    UPDATE ledger SET call_id = id, try_number = 1
        WHERE reserved_micros > 0 OR charged_micros > 0 OR input_tokens > 0 OR output_tokens > 0;
    CREATE INDEX ledger_call ON ledger (call_id) WHERE call_id IS NOT NULL;",
    // 7: what rejected an attempt, as the pipeline knew it (see `rejection_column`).
    "",
    // 8: the files each attempt's change touched (JSON), since its worktree does not outlive it.
    "ALTER TABLE attempts ADD COLUMN changed TEXT NOT NULL DEFAULT '[]';",
    // 9: the external agent that implemented an attempt, and its own figure for the cost.
    "ALTER TABLE attempts ADD COLUMN implementer TEXT;
    ALTER TABLE attempts ADD COLUMN agent_cost_micros INTEGER CHECK (agent_cost_micros IS NULL OR agent_cost_micros >= 0);",
    // 10: the runs on this store and their leases: what `status` shows, and how an owner on
    // another host (whose processes this host cannot see) is known to be alive.
    "CREATE TABLE hosts (
        owner TEXT PRIMARY KEY,
        run_id TEXT NOT NULL,
        workers INTEGER NOT NULL CHECK (workers >= 0),
        started_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        seen_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        expires_ms INTEGER NOT NULL,
        has_left INTEGER NOT NULL DEFAULT 0
    );",
    // 11: the ledger's indexes that no query uses: every call's row paid to keep them (a page
    // each in the WAL per reservation). Reports read whole tables; caps read `cap_totals`.
    "DROP INDEX IF EXISTS ledger_run;
    DROP INDEX IF EXISTS ledger_day;
    DROP INDEX IF EXISTS ledger_month;
    DROP INDEX IF EXISTS ledger_call;",
];

/// Migration 7: the attempts' rejection cause, its names checked like the vocabulary of
/// migration 5. Attempts recorded before keep `NULL`.
fn rejection_column() -> String {
    format!(
        "ALTER TABLE attempts ADD COLUMN rejected_by TEXT
             CHECK (rejected_by IS NULL OR rejected_by IN ({}));",
        RejectionCause::sql_list()
    )
}

/// Migration 5: the tables rebuilt with `CHECK` constraints on their named columns (SQLite
/// cannot add a constraint to a table in place). Rows are copied as they are; a row the
/// constraints refuse fails the migration, whose transaction then leaves the database as it was.
fn typed_columns() -> String {
    let stages_of_rows = [Stage::Route, Stage::Implement, Stage::Check, Stage::Verify]
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let levels = CapLevel::sql_list();
    let (stages, phases, roles, outcomes, states, row_states) = (
        Stage::sql_list(),
        Phase::sql_list(),
        Role::sql_list(),
        AttemptOutcome::sql_list(),
        TaskState::sql_list(),
        RowState::sql_list(),
    );
    format!(
        "CREATE TABLE ledger_v5 (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL,
            task_id TEXT,
            attempt INTEGER,
            stage TEXT NOT NULL CHECK (stage IN ({stages_of_rows})),
            phase TEXT CHECK (phase IS NULL OR phase IN ({phases})),
            role TEXT NOT NULL CHECK (role IN ({roles})),
            model TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ({row_states})),
            reserved_micros INTEGER NOT NULL DEFAULT 0 CHECK (reserved_micros >= 0),
            charged_micros INTEGER NOT NULL DEFAULT 0 CHECK (charged_micros >= 0),
            input_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            cache_read_tokens INTEGER NOT NULL DEFAULT 0,
            cache_write_tokens INTEGER NOT NULL DEFAULT 0,
            price_input INTEGER NOT NULL DEFAULT 0,
            price_output INTEGER NOT NULL DEFAULT 0,
            price_cache_read INTEGER NOT NULL DEFAULT 0,
            price_cache_write INTEGER NOT NULL DEFAULT 0,
            fuel INTEGER NOT NULL DEFAULT 0,
            wall_ms INTEGER NOT NULL DEFAULT 0,
            outcome TEXT,
            overrun INTEGER NOT NULL DEFAULT 0,
            usage_missing INTEGER NOT NULL DEFAULT 0,
            recovered INTEGER NOT NULL DEFAULT 0,
            owner TEXT NOT NULL,
            day TEXT NOT NULL,
            month TEXT NOT NULL,
            created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
            updated_at TEXT
        );
        INSERT INTO ledger_v5 SELECT * FROM ledger;
        DROP TABLE ledger;
        ALTER TABLE ledger_v5 RENAME TO ledger;
        CREATE INDEX ledger_task ON ledger (task_id, attempt);
        CREATE INDEX ledger_run ON ledger (run_id);
        CREATE INDEX ledger_day ON ledger (day);
        CREATE INDEX ledger_month ON ledger (month, model);
        CREATE INDEX ledger_open ON ledger (state) WHERE state IN ('reserved', 'sent');

        CREATE TABLE tasks_v5 (
            seq INTEGER PRIMARY KEY,
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
            lease_expires_ms INTEGER,
            created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
            updated_at TEXT
        );
        INSERT INTO tasks_v5 SELECT * FROM tasks;
        DROP TABLE tasks;
        ALTER TABLE tasks_v5 RENAME TO tasks;
        CREATE INDEX tasks_claimable ON tasks (state, seq);

        CREATE TABLE attempts_v5 (
            task_id TEXT NOT NULL,
            number INTEGER NOT NULL,
            run_id TEXT NOT NULL,
            model TEXT NOT NULL,
            outcome TEXT NOT NULL CHECK (outcome IN ({outcomes})),
            reasons TEXT NOT NULL DEFAULT '[]',
            turns INTEGER NOT NULL DEFAULT 0,
            tests_passed INTEGER,
            wall_ms INTEGER NOT NULL DEFAULT 0,
            ended_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
            PRIMARY KEY (task_id, number)
        );
        INSERT INTO attempts_v5 SELECT * FROM attempts;
        DROP TABLE attempts;
        ALTER TABLE attempts_v5 RENAME TO attempts;

        CREATE TABLE cap_totals_v5 (
            level TEXT NOT NULL CHECK (level IN ({levels})),
            scope TEXT NOT NULL,
            micros INTEGER NOT NULL CHECK (micros >= 0),
            PRIMARY KEY (level, scope)
        ) WITHOUT ROWID;
        INSERT INTO cap_totals_v5 SELECT * FROM cap_totals;
        DROP TABLE cap_totals;
        ALTER TABLE cap_totals_v5 RENAME TO cap_totals;"
    )
}

/// Why the schema cannot be brought up to date.
#[derive(Debug, thiserror::Error)]
pub(super) enum MigrationError {
    #[error("schema version {found} is newer than this gaffer knows ({known}); upgrade gaffer")]
    Newer { found: i64, known: i64 },
    #[error("migration to schema version {version} failed, the database is unchanged: {source}")]
    Failed {
        version: usize,
        source: rusqlite::Error,
    },
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

/// Bring the database up to the newest schema, one migration per step, all in one `BEGIN
/// IMMEDIATE` transaction (another process migrating at the same time waits, then finds the
/// work done).
pub(super) fn migrate(conn: &mut Connection) -> Result<(), MigrationError> {
    let known = MIGRATIONS.len() as i64;
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version > known {
        return Err(MigrationError::Newer {
            found: version,
            known,
        });
    }
    if version == known {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Re-read under the write lock: another process may have migrated meanwhile.
    let version: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
    for (i, fixed) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(version).unwrap_or(0))
    {
        let sql = match i + 1 {
            5 => typed_columns(),
            7 => rejection_column(),
            _ => fixed.to_string(),
        };
        tx.execute_batch(&sql)
            .map_err(|source| MigrationError::Failed {
                version: i + 1,
                source,
            })?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
    }
    tx.commit()?;
    Ok(())
}
