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
    // 12: the vocabulary's CHECK constraints as equalities (see `checks_without_in_lists`).
    "",
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

/// A `CHECK` condition that `column` holds one of `names`, as equalities joined by `OR`.
fn one_of<T: Copy>(column: &str, names: &[T], name: fn(T) -> &'static str) -> String {
    names
        .iter()
        .map(|&n| format!("{column} = '{}'", name(n)))
        .collect::<Vec<_>>()
        .join(" OR ")
}

/// Migration 12: the tables of migration 5 rebuilt with their vocabulary checked by equalities
/// instead of `IN` lists, and otherwise as they were (columns in the same order, the same
/// indexes). SQLite checks an `IN` list of more than two constants by building a temporary
/// b-tree of it every time the constraint is checked: a ledger row's insert built four, each
/// running total's upsert one, some ten per model call, which was about a quarter of the
/// ledger's time in a metered call. Rows are copied as they are.
fn checks_without_in_lists() -> String {
    let ledger_stages = [Stage::Route, Stage::Implement, Stage::Check, Stage::Verify];
    let stage_of_row = one_of("stage", &ledger_stages, Stage::name);
    let phase = one_of("phase", Phase::ALL, Phase::name);
    let role = one_of("role", Role::ALL, Role::name);
    let row_state = one_of("state", RowState::ALL, RowState::name);
    let task_state = one_of("state", TaskState::ALL, TaskState::name);
    let task_stage = one_of("stage", Stage::ALL, Stage::name);
    let outcome = one_of("outcome", AttemptOutcome::ALL, AttemptOutcome::name);
    let rejected_by = one_of("rejected_by", RejectionCause::ALL, RejectionCause::name);
    let level = one_of("level", CapLevel::ALL, CapLevel::name);
    format!(
        "CREATE TABLE ledger_v12 (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL,
            task_id TEXT,
            attempt INTEGER,
            stage TEXT NOT NULL CHECK ({stage_of_row}),
            phase TEXT CHECK (phase IS NULL OR {phase}),
            role TEXT NOT NULL CHECK ({role}),
            model TEXT NOT NULL,
            state TEXT NOT NULL CHECK ({row_state}),
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
            updated_at TEXT,
            call_id INTEGER,
            try_number INTEGER CHECK (try_number IS NULL OR try_number >= 1)
        );
        INSERT INTO ledger_v12 SELECT * FROM ledger;
        DROP TABLE ledger;
        ALTER TABLE ledger_v12 RENAME TO ledger;
        CREATE INDEX ledger_task ON ledger (task_id, attempt);
        CREATE INDEX ledger_open ON ledger (state) WHERE state IN ('reserved', 'sent');

        CREATE TABLE tasks_v12 (
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            title TEXT NOT NULL,
            body TEXT NOT NULL DEFAULT '',
            labels TEXT NOT NULL DEFAULT '[]',
            paths TEXT NOT NULL DEFAULT '[]',
            source TEXT,
            state TEXT NOT NULL CHECK ({task_state}),
            stage TEXT CHECK (stage IS NULL OR {task_stage}),
            attempts INTEGER NOT NULL DEFAULT 0,
            reason TEXT,
            lease_owner TEXT,
            lease_expires_ms INTEGER,
            created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
            updated_at TEXT
        );
        INSERT INTO tasks_v12 SELECT * FROM tasks;
        DROP TABLE tasks;
        ALTER TABLE tasks_v12 RENAME TO tasks;
        CREATE INDEX tasks_claimable ON tasks (state, seq);

        CREATE TABLE attempts_v12 (
            task_id TEXT NOT NULL,
            number INTEGER NOT NULL,
            run_id TEXT NOT NULL,
            model TEXT NOT NULL,
            outcome TEXT NOT NULL CHECK ({outcome}),
            reasons TEXT NOT NULL DEFAULT '[]',
            turns INTEGER NOT NULL DEFAULT 0,
            tests_passed INTEGER,
            wall_ms INTEGER NOT NULL DEFAULT 0,
            ended_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
            rejected_by TEXT CHECK (rejected_by IS NULL OR {rejected_by}),
            changed TEXT NOT NULL DEFAULT '[]',
            implementer TEXT,
            agent_cost_micros INTEGER CHECK (agent_cost_micros IS NULL OR agent_cost_micros >= 0),
            PRIMARY KEY (task_id, number)
        );
        INSERT INTO attempts_v12 SELECT * FROM attempts;
        DROP TABLE attempts;
        ALTER TABLE attempts_v12 RENAME TO attempts;

        CREATE TABLE cap_totals_v12 (
            level TEXT NOT NULL CHECK ({level}),
            scope TEXT NOT NULL,
            micros INTEGER NOT NULL CHECK (micros >= 0),
            PRIMARY KEY (level, scope)
        ) WITHOUT ROWID;
        INSERT INTO cap_totals_v12 SELECT * FROM cap_totals;
        DROP TABLE cap_totals;
        ALTER TABLE cap_totals_v12 RENAME TO cap_totals;"
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
    migrate_to(conn, MIGRATIONS.len())
}

/// [`migrate`], up to schema version `target` (tests start from an older version).
fn migrate_to(conn: &mut Connection, target: usize) -> Result<(), MigrationError> {
    let known = MIGRATIONS.len() as i64;
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version > known {
        return Err(MigrationError::Newer {
            found: version,
            known,
        });
    }
    if version >= target as i64 {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Re-read under the write lock: another process may have migrated meanwhile.
    let version: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
    for (i, fixed) in MIGRATIONS
        .iter()
        .enumerate()
        .take(target)
        .skip(usize::try_from(version).unwrap_or(0))
    {
        let sql = match i + 1 {
            5 => typed_columns(),
            7 => rejection_column(),
            12 => checks_without_in_lists(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::types::Value;

    /// A database at schema version `version`.
    fn database_at(version: usize) -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate_to(&mut conn, version).unwrap();
        conn
    }

    fn tables(conn: &Connection) -> Vec<String> {
        conn.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn columns(conn: &Connection, table: &str) -> Vec<String> {
        conn.prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// The statements that write to `table` and check its constraints whose programs open a
    /// temporary b-tree (`OpenEphemeral`): an insert checks every `CHECK`, an update of one
    /// column those that name it. Primary-key columns are left out: an update of a key may
    /// gather the rows first, which has nothing to do with the constraints (and no code
    /// changes a key).
    fn writes_building_temporary_btrees(conn: &Connection, table: &str) -> Vec<String> {
        let mut statements = vec![format!("INSERT INTO {table} DEFAULT VALUES")];
        let keys: Vec<String> = conn
            .prepare(&format!(
                "SELECT name FROM pragma_table_info('{table}') WHERE pk > 0"
            ))
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for column in columns(conn, table) {
            if !keys.contains(&column) {
                statements.push(format!("UPDATE {table} SET {column} = {column}"));
            }
        }
        statements
            .into_iter()
            .filter(|sql| {
                let opcodes: Vec<String> = conn
                    .prepare(&format!("EXPLAIN {sql}"))
                    .unwrap()
                    .query_map([], |r| r.get(1))
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap();
                opcodes.iter().any(|op| op == "OpenEphemeral")
            })
            .collect()
    }

    /// A write to any table checks its vocabulary without building a temporary b-tree: before
    /// migration 12 a ledger insert built four and a running total's upsert one.
    #[test]
    fn no_write_builds_a_temporary_btree_to_check_a_constraint() {
        let before = database_at(11);
        let ledger_before = writes_building_temporary_btrees(&before, "ledger");
        assert!(
            ledger_before.contains(&"INSERT INTO ledger DEFAULT VALUES".to_string())
                && ledger_before.contains(&"UPDATE ledger SET state = state".to_string()),
            "version 11 should show the cost this migration removes: {ledger_before:?}"
        );

        let conn = database_at(MIGRATIONS.len());
        for table in tables(&conn) {
            let building = writes_building_temporary_btrees(&conn, &table);
            assert!(building.is_empty(), "{table}: {building:?}");
        }
    }

    fn all_rows(conn: &Connection, table: &str) -> Vec<Vec<Value>> {
        let mut statement = conn
            .prepare(&format!("SELECT * FROM {table} ORDER BY 1, 2"))
            .unwrap();
        let width = statement.column_count();
        statement
            .query_map([], |r| (0..width).map(|i| r.get::<_, Value>(i)).collect())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn schema_objects(conn: &Connection) -> Vec<(String, String, String)> {
        conn.prepare("SELECT type, name, tbl_name FROM sqlite_schema ORDER BY type, name")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// Migration 12 rebuilds four tables: every row comes through as it was, column for column,
    /// with the same tables, indexes and column names, and a word outside the vocabulary is
    /// still refused.
    #[test]
    fn rebuilding_the_checks_keeps_every_row_and_index() {
        let mut conn = database_at(11);
        conn.execute_batch(
            "INSERT INTO ledger (run_id, task_id, attempt, stage, phase, role, model, state,
                 reserved_micros, charged_micros, input_tokens, output_tokens, cache_read_tokens,
                 cache_write_tokens, price_input, price_output, price_cache_read,
                 price_cache_write, fuel, wall_ms, outcome, overrun, usage_missing, recovered,
                 owner, day, month, created_at, updated_at, call_id, try_number)
             VALUES ('r1', 'T-1', 2, 'implement', 'iterate', 'agent', 'cheap', 'settled', 900,
                 870, 1200, 80, 1000, 5, 1000000, 5000000, 100000, 1250000, 0, 431, 'ok', 0, 1,
                 0, 'host:1', '2026-12-02', '2026-12', '2026-12-02T10:00:00.000Z',
                 '2026-12-02T10:00:01.000Z', 1, 1),
                 ('r1', NULL, NULL, 'route', NULL, 'router', 'plugin', 'released', 0, 0, 0, 0,
                 0, 0, 0, 0, 0, 0, 13098, 2, NULL, 0, 0, 0, 'host:1', '2026-12-02', '2026-12',
                 '2026-12-02T10:00:02.000Z', NULL, NULL, NULL),
                 ('r2', 'T-2', 1, 'verify', 'read-task', 'verifier', 'strong', 'sent', 5000, 0,
                 0, 0, 0, 0, 3000000, 15000000, 0, 0, 0, 0, NULL, 0, 0, 1, 'host:2',
                 '2026-12-02', '2026-12', '2026-12-02T10:00:03.000Z', NULL, 3, 2);
             INSERT INTO tasks (id, title, body, labels, paths, source, state, stage, attempts,
                 reason, lease_owner, lease_expires_ms, created_at, updated_at)
             VALUES ('T-1', 'Fix it', 'body', '[\"bug\"]', '[\"src\"]', 'issues', 'running',
                 'implement', 2, NULL, 'host:1', 1796200000000, '2026-12-02T09:00:00.000Z',
                 NULL),
                 ('T-2', 'Done', '', '[]', '[]', NULL, 'needs-human', NULL, 1, 'why', NULL,
                 NULL, '2026-12-02T09:00:01.000Z', '2026-12-02T09:30:00.000Z');
             INSERT INTO attempts (task_id, number, run_id, model, outcome, reasons, turns,
                 tests_passed, wall_ms, ended_at, rejected_by, changed, implementer,
                 agent_cost_micros)
             VALUES ('T-1', 1, 'r1', 'cheap', 'rejected', '[\"tests\"]', 7, 0, 52000,
                 '2026-12-02T09:10:00.000Z', 'tests', '[\"src/a.rs\"]', 'claude-code', 4100),
                 ('T-2', 1, 'r2', 'strong', 'needs-human', '[]', 3, NULL, 9000,
                 '2026-12-02T09:20:00.000Z', NULL, '[]', NULL, NULL);
             INSERT INTO cap_totals (level, scope, micros)
             VALUES ('task', 'T-1', 870), ('month', '2026-12', 5870), ('model', '2026-12|cheap', 870);",
        )
        .unwrap();
        let rebuilt = ["ledger", "tasks", "attempts", "cap_totals"];
        let before: Vec<_> = rebuilt.iter().map(|t| all_rows(&conn, t)).collect();
        let columns_before: Vec<_> = rebuilt.iter().map(|t| columns(&conn, t)).collect();
        let objects_before = schema_objects(&conn);

        migrate(&mut conn).unwrap();
        let after: Vec<_> = rebuilt.iter().map(|t| all_rows(&conn, t)).collect();
        assert_eq!(after, before);
        assert_eq!(
            rebuilt
                .iter()
                .map(|t| columns(&conn, t))
                .collect::<Vec<_>>(),
            columns_before
        );
        assert_eq!(schema_objects(&conn), objects_before);
        assert_eq!(before[0].len(), 3, "the fixture's rows were written");

        let refused = [
            "UPDATE ledger SET stage = 'merge' WHERE id = 1",
            "UPDATE ledger SET phase = 'lunch' WHERE id = 1",
            "UPDATE ledger SET role = 'intern' WHERE id = 1",
            "UPDATE ledger SET state = 'lost' WHERE id = 1",
            "UPDATE tasks SET state = 'parked' WHERE id = 'T-1'",
            "UPDATE tasks SET stage = 'deploy' WHERE id = 'T-1'",
            "UPDATE attempts SET outcome = 'maybe' WHERE task_id = 'T-1'",
            "UPDATE attempts SET rejected_by = 'mood' WHERE task_id = 'T-1'",
            "UPDATE cap_totals SET level = 'year' WHERE scope = 'T-1'",
        ];
        for sql in refused {
            let error = conn.execute(sql, []).unwrap_err().to_string();
            assert!(error.contains("CHECK constraint failed"), "{sql}: {error}");
        }
        conn.execute("UPDATE tasks SET stage = 'merge' WHERE id = 'T-1'", [])
            .unwrap();
    }
}
