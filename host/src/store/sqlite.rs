//! The SQLite store: WAL, migrations, and every operation in one transaction. Several
//! processes may share one database file; `BEGIN IMMEDIATE` serialises the writers, so a
//! reservation is checked against every cap and inserted atomically.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{
    AttemptRecord, BacklogStore, CapLevel, CapLimit, LedgerRow, LedgerStore, Micros, NewTask,
    PriceColumns, Recovery, ReservationId, RowScope, Settled, Settlement, StoreError, TaskRecord,
    TaskState, TokenColumns,
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
];

/// The store's clock in unix milliseconds, as SQL.
const NOW_MS: &str = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)";

/// A task row as read, before its JSON columns are decoded.
fn task_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TaskRecord> {
    let json_list = |i: usize| -> rusqlite::Result<Vec<String>> {
        let text: String = r.get(i)?;
        Ok(serde_json::from_str(&text).unwrap_or_default())
    };
    let state: String = r.get(6)?;
    Ok(TaskRecord {
        id: r.get(0)?,
        title: r.get(1)?,
        body: r.get(2)?,
        labels: json_list(3)?,
        paths: json_list(4)?,
        source: r.get(5)?,
        state: TaskState::from_name(&state).unwrap_or(TaskState::Failed),
        stage: r.get(7)?,
        attempts: r.get(8)?,
        reason: r.get(9)?,
        lease_owner: r.get(10)?,
    })
}

const TASK_COLUMNS: &str =
    "id, title, body, labels, paths, source, state, stage, attempts, reason, lease_owner";

/// A SQLite database file holding the ledger (and, later, the backlog).
pub struct SqliteStore {
    path: PathBuf,
    conn: Mutex<Connection>,
    owner: String,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("owner", &self.owner)
            .finish()
    }
}

/// `host:pid` of this process: the owner written on its rows.
pub fn this_process_owner() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string());
    format!("{host}:{}", std::process::id())
}

/// Whether the owner of a row still runs: a process on another host is assumed alive (only
/// its own host can tell); on this host, its pid must exist.
pub fn owner_is_alive(owner: &str) -> bool {
    let this = this_process_owner();
    let (this_host, _) = this.rsplit_once(':').unwrap_or((this.as_str(), ""));
    match owner.rsplit_once(':') {
        Some((host, pid)) if host == this_host => pid
            .parse::<u32>()
            .is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists()),
        _ => true,
    }
}

fn micros_to_sql(value: Micros, path: &Path) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Database {
        path: path.display().to_string(),
        reason: format!("amount {value} µ$ is beyond what the store can hold"),
    })
}

fn from_sql(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

impl SqliteStore {
    /// Open (creating if needed) the database at `path` and bring its schema up to date.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        let db_err = |e: rusqlite::Error| StoreError::Database {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        let mut conn = Connection::open(&path).map_err(db_err)?;
        conn.busy_timeout(Duration::from_secs(30)).map_err(db_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db_err)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(db_err)?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StoreError::Database {
                path: path.display().to_string(),
                reason: format!(
                    "schema version {version} is newer than this gaffer knows ({known}); upgrade gaffer"
                ),
            });
        }
        if version < known {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_err)?;
            // Re-read under the write lock: another process may have migrated meanwhile.
            let version: i64 = tx
                .pragma_query_value(None, "user_version", |row| row.get(0))
                .map_err(db_err)?;
            for (i, sql) in MIGRATIONS
                .iter()
                .enumerate()
                .skip(usize::try_from(version).unwrap_or(0))
            {
                tx.execute_batch(sql).map_err(db_err)?;
                tx.pragma_update(None, "user_version", (i + 1) as i64)
                    .map_err(db_err)?;
            }
            tx.commit().map_err(db_err)?;
        }
        Ok(SqliteStore {
            path,
            conn: Mutex::new(conn),
            owner: this_process_owner(),
        })
    }

    /// Write rows under another owner name (tests of recovery across processes).
    pub fn with_owner(mut self, owner: impl Into<String>) -> SqliteStore {
        self.owner = owner.into();
        self
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn db_err(&self, e: rusqlite::Error) -> StoreError {
        StoreError::Database {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        }
    }

    /// Run `f` in one `BEGIN IMMEDIATE` transaction and commit: every state change goes through
    /// here, so writers from several processes are serialised and nothing is half-done.
    fn write<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.with_conn(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| self.db_err(e))?;
            let value = f(&tx)?;
            tx.commit().map_err(|e| self.db_err(e))?;
            Ok(value)
        })
    }

    /// Refuse an operation on a reservation that is not in the `expected` state.
    fn require_state(
        &self,
        conn: &Connection,
        id: i64,
        expected: &str,
        operation: &'static str,
    ) -> Result<(), StoreError> {
        match state_of(conn, id).map_err(|e| self.db_err(e))?.as_deref() {
            None => Err(StoreError::NoSuchReservation(id)),
            Some(state) if state == expected => Ok(()),
            Some(state) => Err(StoreError::WrongState {
                id,
                operation,
                state: state.to_string(),
            }),
        }
    }

    /// Give a released reservation's amount back to its totals.
    fn give_back(&self, conn: &Connection, id: i64) -> Result<(), StoreError> {
        let reserved: i64 = conn
            .query_row(
                "SELECT reserved_micros FROM ledger WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .map_err(|e| self.db_err(e))?;
        if let Some((scope, day, month)) = row_scope(conn, id).map_err(|e| self.db_err(e))? {
            adjust_totals(conn, &scope, &day, &month, -reserved).map_err(|e| self.db_err(e))?;
        }
        Ok(())
    }

    fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut guard = match self.conn.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }
}

/// The key of the cap-total row a cap at `level` reads for a call in `scope`, on `day` and in
/// `month` (the store's clock at reservation); `None` when the cap does not apply (an attempt
/// cap for a call outside any task). `Call` has no total: it bounds the call alone.
fn total_key(level: CapLevel, scope: &RowScope, day: &str, month: &str) -> Option<String> {
    match level {
        CapLevel::Call => None,
        CapLevel::Attempt => match (&scope.task_id, scope.attempt) {
            (Some(task), Some(attempt)) => Some(format!("{task}#{attempt}")),
            _ => None,
        },
        CapLevel::Task => scope.task_id.clone(),
        CapLevel::Run => Some(scope.run_id.clone()),
        CapLevel::Day => Some(day.to_string()),
        CapLevel::Month => Some(month.to_string()),
        CapLevel::Model => Some(format!("{month}|{}", scope.model)),
    }
}

/// The levels that keep totals.
const TOTALLED: [CapLevel; 6] = [
    CapLevel::Attempt,
    CapLevel::Task,
    CapLevel::Run,
    CapLevel::Day,
    CapLevel::Month,
    CapLevel::Model,
];

fn level_name(level: CapLevel) -> String {
    level.to_string()
}

/// The store's clock: today and this month, UTC.
fn today(conn: &Connection) -> rusqlite::Result<(String, String)> {
    conn.query_row("SELECT date('now'), strftime('%Y-%m', 'now')", [], |row| {
        Ok((row.get(0)?, row.get(1)?))
    })
}

fn total(conn: &Connection, level: CapLevel, key: &str) -> rusqlite::Result<Micros> {
    conn.query_row(
        "SELECT micros FROM cap_totals WHERE level = ?1 AND scope = ?2",
        params![level_name(level), key],
        |row| row.get::<_, i64>(0),
    )
    .optional()
    .map(|v| from_sql(v.unwrap_or(0)))
}

/// Add `delta` (negative to give back) to every total covering a row.
fn adjust_totals(
    conn: &Connection,
    scope: &RowScope,
    day: &str,
    month: &str,
    delta: i64,
) -> rusqlite::Result<()> {
    if delta == 0 {
        return Ok(());
    }
    for level in TOTALLED {
        if let Some(key) = total_key(level, scope, day, month) {
            conn.execute(
                "INSERT INTO cap_totals (level, scope, micros) VALUES (?1, ?2, MAX(?3, 0))
                 ON CONFLICT (level, scope) DO UPDATE SET micros = MAX(micros + ?3, 0)",
                params![level_name(level), key, delta],
            )?;
        }
    }
    Ok(())
}

/// A row's scope and clock, to adjust its totals.
fn row_scope(conn: &Connection, id: i64) -> rusqlite::Result<Option<(RowScope, String, String)>> {
    conn.query_row(
        "SELECT run_id, task_id, attempt, stage, phase, role, model, day, month FROM ledger WHERE id = ?1",
        [id],
        |r| {
            Ok((
                RowScope {
                    run_id: r.get(0)?,
                    task_id: r.get(1)?,
                    attempt: r.get(2)?,
                    stage: r.get(3)?,
                    phase: r.get(4)?,
                    role: r.get(5)?,
                    model: r.get(6)?,
                },
                r.get(7)?,
                r.get(8)?,
            ))
        },
    )
    .optional()
}

fn state_of(conn: &Connection, id: i64) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT state FROM ledger WHERE id = ?1", [id], |row| {
        row.get(0)
    })
    .optional()
}

impl LedgerStore for SqliteStore {
    fn try_reserve(
        &self,
        scope: &RowScope,
        amount: Micros,
        caps: &[CapLimit],
    ) -> Result<ReservationId, StoreError> {
        let amount_sql = micros_to_sql(amount, &self.path)?;
        self.write(|tx| {
            let (day, month) = today(tx).map_err(|e| self.db_err(e))?;
            for cap in caps {
                let spent = match total_key(cap.level, scope, &day, &month) {
                    Some(key) => total(tx, cap.level, &key).map_err(|e| self.db_err(e))?,
                    None if cap.level == CapLevel::Call => 0,
                    None => continue,
                };
                if spent.saturating_add(amount) > cap.limit {
                    return Err(StoreError::CapExceeded {
                        level: cap.level,
                        limit: cap.limit,
                        spent,
                        needed: amount,
                    });
                }
            }
            tx.execute(
                "INSERT INTO ledger (run_id, task_id, attempt, stage, phase, role, model, state,
                                     reserved_micros, owner, day, month)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'reserved', ?8, ?9, ?10, ?11)",
                params![
                    scope.run_id,
                    scope.task_id,
                    scope.attempt,
                    scope.stage,
                    scope.phase,
                    scope.role,
                    scope.model,
                    amount_sql,
                    self.owner,
                    day,
                    month
                ],
            )
            .map_err(|e| self.db_err(e))?;
            adjust_totals(tx, scope, &day, &month, amount_sql).map_err(|e| self.db_err(e))?;
            let id = tx.last_insert_rowid();
            Ok(ReservationId(id))
        })
    }

    fn mark_sent(&self, id: ReservationId) -> Result<(), StoreError> {
        self.write(|tx| {
            self.require_state(tx, id.0, "reserved", "mark as sent")?;
            tx.execute(
                "UPDATE ledger SET state = 'sent', updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
                 WHERE id = ?1",
                [id.0],
            )
            .map_err(|e| self.db_err(e))?;
            Ok(())
        })
    }

    fn settle(&self, id: ReservationId, s: &Settlement) -> Result<Settled, StoreError> {
        self.write(|tx| {
            self.require_state(tx, id.0, "sent", "settle")?;
            let reserved: i64 = tx
                .query_row(
                    "SELECT reserved_micros FROM ledger WHERE id = ?1",
                    [id.0],
                    |row| row.get(0),
                )
                .map_err(|e| self.db_err(e))?;
            let reserved = from_sql(reserved);
            // A billed call is never free: without usage, the reservation is the charge.
            let usage_missing = s.cost.is_none();
            let charged = s.cost.unwrap_or(reserved);
            let overrun = charged > reserved;
            let p = &s.prices;
            let t = &s.tokens;
            let sql = |v: u64| micros_to_sql(v, &self.path);
            tx.execute(
                "UPDATE ledger SET state = 'settled', charged_micros = ?2,
                     input_tokens = ?3, output_tokens = ?4, cache_read_tokens = ?5,
                     cache_write_tokens = ?6, price_input = ?7, price_output = ?8,
                     price_cache_read = ?9, price_cache_write = ?10, wall_ms = ?11,
                     outcome = ?12, overrun = ?13, usage_missing = ?14,
                     updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
                 WHERE id = ?1",
                params![
                    id.0,
                    sql(charged)?,
                    sql(t.input)?,
                    sql(t.output)?,
                    sql(t.cache_read)?,
                    sql(t.cache_write)?,
                    sql(p.input)?,
                    sql(p.output)?,
                    sql(p.cache_read)?,
                    sql(p.cache_write)?,
                    sql(s.wall_ms)?,
                    s.outcome,
                    overrun,
                    usage_missing
                ],
            )
            .map_err(|e| self.db_err(e))?;
            if let Some((scope, day, month)) = row_scope(tx, id.0).map_err(|e| self.db_err(e))? {
                let delta = sql(charged)? - sql(reserved)?;
                adjust_totals(tx, &scope, &day, &month, delta).map_err(|e| self.db_err(e))?;
            }
            Ok(Settled {
                charged,
                overrun,
                usage_missing,
            })
        })
    }

    fn release(&self, id: ReservationId) -> Result<(), StoreError> {
        self.write(|tx| {
            self.require_state(tx, id.0, "reserved", "release")?;
            tx.execute(
                "UPDATE ledger SET state = 'released', updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
                 WHERE id = ?1",
                [id.0],
            )
            .map_err(|e| self.db_err(e))?;
            self.give_back(tx, id.0)?;
            Ok(())
        })
    }

    fn recover(&self, is_alive: &dyn Fn(&str) -> bool) -> Result<Recovery, StoreError> {
        self.write(|tx| {
            let open: Vec<(i64, String, String, i64)> = {
                let mut stmt = tx
                    .prepare(
                        "SELECT id, state, owner, reserved_micros FROM ledger
                         WHERE state IN ('reserved', 'sent') ORDER BY id",
                    )
                    .map_err(|e| self.db_err(e))?;
                let rows = stmt
                    .query_map([], |row| {
                        Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                    })
                    .map_err(|e| self.db_err(e))?;
                rows.collect::<Result<_, _>>().map_err(|e| self.db_err(e))?
            };
            let mut recovery = Recovery::default();
            for (id, state, owner, reserved) in open {
                if is_alive(&owner) {
                    continue;
                }
                if state == "reserved" {
                    tx.execute(
                        "UPDATE ledger SET state = 'released', recovered = 1,
                             updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?1",
                        [id],
                    )
                    .map_err(|e| self.db_err(e))?;
                    self.give_back(tx, id)?;
                    recovery.released += 1;
                } else {
                    // Sent and never settled: the provider may have billed it. Charge the
                    // reservation, and say the usage is unknown.
                    tx.execute(
                        "UPDATE ledger SET state = 'settled', charged_micros = reserved_micros,
                             usage_missing = 1, recovered = 1, outcome = 'recovered-after-crash',
                             updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?1",
                        [id],
                    )
                    .map_err(|e| self.db_err(e))?;
                    recovery.charged += 1;
                    recovery.charged_micros =
                        recovery.charged_micros.saturating_add(from_sql(reserved));
                }
            }
            Ok(recovery)
        })
    }

    fn record_plugin_run(
        &self,
        scope: &RowScope,
        fuel: u64,
        wall_ms: u64,
        outcome: &str,
    ) -> Result<(), StoreError> {
        let fuel = micros_to_sql(fuel, &self.path)?;
        let wall = micros_to_sql(wall_ms, &self.path)?;
        self.with_conn(|conn| {
            conn.execute(
                "INSERT INTO ledger (run_id, task_id, attempt, stage, phase, role, model, state,
                                     fuel, wall_ms, outcome, owner, day, month)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'settled', ?8, ?9, ?10, ?11,
                         date('now'), strftime('%Y-%m', 'now'))",
                params![
                    scope.run_id,
                    scope.task_id,
                    scope.attempt,
                    scope.stage,
                    scope.phase,
                    scope.role,
                    scope.model,
                    fuel,
                    wall,
                    outcome,
                    self.owner
                ],
            )
            .map(|_| ())
            .map_err(|e| self.db_err(e))
        })
    }

    fn spent(&self, level: CapLevel, scope: &RowScope) -> Result<Micros, StoreError> {
        self.with_conn(|conn| {
            let (day, month) = today(conn).map_err(|e| self.db_err(e))?;
            match total_key(level, scope, &day, &month) {
                Some(key) => total(conn, level, &key).map_err(|e| self.db_err(e)),
                None => Ok(0),
            }
        })
    }

    fn rows(&self) -> Result<Vec<LedgerRow>, StoreError> {
        self.select_rows("1 = 1", &[])
    }

    fn task_rows(&self, task: &str) -> Result<Vec<LedgerRow>, StoreError> {
        self.select_rows("task_id = ?1", &[&task])
    }
}

impl SqliteStore {
    /// Ledger rows matching `filter` (SQL over the ledger's columns, `?1`.. for `args`), oldest
    /// first.
    fn select_rows(
        &self,
        filter: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<LedgerRow>, StoreError> {
        self.with_conn(|conn| {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT id, run_id, task_id, attempt, stage, phase, role, model, state,
                            reserved_micros, charged_micros, input_tokens, output_tokens,
                            cache_read_tokens, cache_write_tokens, price_input, price_output,
                            price_cache_read, price_cache_write, fuel, wall_ms, outcome,
                            overrun, usage_missing, recovered, owner, day, month
                     FROM ledger WHERE {filter} ORDER BY id"
                ))
                .map_err(|e| self.db_err(e))?;
            let rows = stmt
                .query_map(args, |r| {
                    let u = |i: usize| r.get::<_, i64>(i).map(from_sql);
                    Ok(LedgerRow {
                        id: r.get(0)?,
                        scope: RowScope {
                            run_id: r.get(1)?,
                            task_id: r.get(2)?,
                            attempt: r.get(3)?,
                            stage: r.get(4)?,
                            phase: r.get(5)?,
                            role: r.get(6)?,
                            model: r.get(7)?,
                        },
                        state: r.get(8)?,
                        reserved: u(9)?,
                        charged: u(10)?,
                        tokens: TokenColumns {
                            input: u(11)?,
                            output: u(12)?,
                            cache_read: u(13)?,
                            cache_write: u(14)?,
                        },
                        prices: PriceColumns {
                            input: u(15)?,
                            output: u(16)?,
                            cache_read: u(17)?,
                            cache_write: u(18)?,
                        },
                        fuel: u(19)?,
                        wall_ms: u(20)?,
                        outcome: r.get(21)?,
                        overrun: r.get(22)?,
                        usage_missing: r.get(23)?,
                        recovered: r.get(24)?,
                        owner: r.get(25)?,
                        day: r.get(26)?,
                        month: r.get(27)?,
                    })
                })
                .map_err(|e| self.db_err(e))?;
            rows.collect::<Result<_, _>>().map_err(|e| self.db_err(e))
        })
    }
}

fn lease_ms(lease: Duration) -> i64 {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2)
}

impl BacklogStore for SqliteStore {
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

    fn set_stage(&self, task: &str, owner: &str, stage: &str) -> Result<(), StoreError> {
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
            &[&state.name(), &reason],
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
        let wall = micros_to_sql(attempt.wall_ms, &self.path)?;
        self.write(|tx| {
            self.held_update_in(
                tx,
                &attempt.task_id,
                owner,
                "state = ?3, reason = ?4, stage = NULL, lease_owner = NULL, lease_expires_ms = NULL",
                &[&state.name(), &reason],
            )?;
            tx.execute(
                "INSERT OR REPLACE INTO attempts (task_id, number, run_id, model, outcome, reasons,
                                                  turns, tests_passed, wall_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    attempt.task_id,
                    attempt.number,
                    attempt.run_id,
                    attempt.model,
                    attempt.outcome,
                    reasons,
                    attempt.turns,
                    attempt.tests_passed,
                    wall
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
                            wall_ms
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
                        wall_ms: from_sql(r.get(8)?),
                    })
                })
                .map_err(|e| self.db_err(e))?;
            rows.collect::<Result<_, _>>().map_err(|e| self.db_err(e))
        })
    }

    fn requeue_orphans(&self, is_alive: &dyn Fn(&str) -> bool) -> Result<Vec<String>, StoreError> {
        self.write(|tx| {
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
                if owner.is_empty() || !is_alive(&owner) {
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
}

impl SqliteStore {
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
