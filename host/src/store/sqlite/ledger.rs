//! The ledger's operations on SQLite: reservations checked against the running cap totals and
//! inserted in one transaction, settlement, release, crash recovery, plugin runs.

use rusqlite::{Connection, OptionalExtension, params};

use super::SqliteStore;
use crate::store::totals::{TOTALLED, total_key};
use crate::store::{
    CallTry, CapLevel, CapLimit, LedgerRow, LedgerStore, MicroUsd, Prices, Recovery, ReservationId,
    Reserved, RowScope, RowState, Settled, Settlement, StoreError, TokenCounts, owner_is_dead,
};

/// The store's clock: today and this month, UTC.
fn today(conn: &Connection) -> rusqlite::Result<(String, String)> {
    conn.prepare_cached("SELECT date('now'), strftime('%Y-%m', 'now')")?
        .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))
}

fn total(conn: &Connection, level: CapLevel, key: &str) -> rusqlite::Result<MicroUsd> {
    conn.prepare_cached("SELECT micros FROM cap_totals WHERE level = ?1 AND scope = ?2")?
        .query_row(params![level, key], |row| row.get::<_, MicroUsd>(0))
        .optional()
        .map(Option::unwrap_or_default)
}

/// An amount as the signed integer SQLite keeps (and totals adjust by).
fn signed(amount: MicroUsd, store: &SqliteStore) -> Result<i64, StoreError> {
    i64::try_from(amount.get()).map_err(|_| StoreError::Database {
        path: store.path.display().to_string(),
        reason: format!(
            "amount {} µ$ is beyond what the store can hold",
            amount.get()
        ),
    })
}

/// A count (fuel, milliseconds) as the signed integer SQLite keeps.
fn count(value: u64, store: &SqliteStore) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Database {
        path: store.path.display().to_string(),
        reason: format!("{value} is beyond what the store can hold"),
    })
}

/// A stored count; the schema keeps them non-negative.
fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// Add `delta` (negative to give back) to every total covering a row, in one statement (one
/// row per total; the same delta for each). The statement's text depends only on how many
/// totals cover the row (four to six), so at most three are prepared and kept.
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
    let keys: Vec<(CapLevel, String)> = TOTALLED
        .into_iter()
        .filter_map(|level| total_key(level, scope, day, month).map(|key| (level, key)))
        .collect();
    if keys.is_empty() {
        return Ok(());
    }
    let rows = (0..keys.len())
        .map(|i| format!("(?{}, ?{}, MAX(?1, 0))", 2 * i + 2, 2 * i + 3))
        .collect::<Vec<_>>()
        .join(", ");
    let mut upsert = conn.prepare_cached(&format!(
        "INSERT INTO cap_totals (level, scope, micros) VALUES {rows}
         ON CONFLICT (level, scope) DO UPDATE SET micros = MAX(micros + ?1, 0)"
    ))?;
    let mut params: Vec<&dyn rusqlite::ToSql> = vec![&delta];
    for (level, key) in &keys {
        params.push(level);
        params.push(key);
    }
    upsert.execute(params.as_slice())?;
    Ok(())
}

/// What an operation on a reservation reads of its row: its state, its reservation, and the
/// scope and clock its totals are keyed by. One cached statement, instead of a read per column.
struct OpenRow {
    state: RowState,
    reserved: MicroUsd,
    scope: RowScope,
    day: String,
    month: String,
}

fn open_row(conn: &Connection, id: i64) -> rusqlite::Result<Option<OpenRow>> {
    conn.prepare_cached(
        "SELECT state, reserved_micros, run_id, task_id, attempt, stage, phase, role, model,
                day, month
         FROM ledger WHERE id = ?1",
    )?
    .query_row([id], |r| {
        Ok(OpenRow {
            state: r.get(0)?,
            reserved: r.get(1)?,
            scope: RowScope {
                run_id: r.get(2)?,
                task_id: r.get(3)?,
                attempt: r.get(4)?,
                stage: r.get(5)?,
                phase: r.get(6)?,
                role: r.get(7)?,
                model: r.get(8)?,
            },
            day: r.get(9)?,
            month: r.get(10)?,
        })
    })
    .optional()
}

/// The columns a new row sets besides its scope.
struct NewRow<'a> {
    state: RowState,
    reserved: i64,
    fuel: i64,
    wall_ms: i64,
    outcome: Option<&'a str>,
    /// The call it is a try of, and which try (`None` for a plugin run). A call's first try
    /// (`call_id` `None` in [`CallTry`]) names the call with its own row id.
    call: Option<CallTry>,
}

impl SqliteStore {
    /// Read a reservation's row and refuse the operation when it is not in the `expected`
    /// state.
    fn require_state(
        &self,
        conn: &Connection,
        id: i64,
        expected: RowState,
        operation: &'static str,
    ) -> Result<OpenRow, StoreError> {
        match open_row(conn, id).map_err(|e| self.db_err(e))? {
            None => Err(StoreError::NoSuchReservation(id)),
            Some(row) if row.state == expected => Ok(row),
            Some(row) => Err(StoreError::WrongState {
                id,
                operation,
                state: row.state,
            }),
        }
    }

    /// Insert one row of `scope`, made by this store's owner, on the store's `day` and `month`;
    /// returns its id and its call id.
    ///
    /// A call's first try takes the id SQLite would give it (one past the largest; it is
    /// inserted inside `write`, whose `BEGIN IMMEDIATE` holds the write lock, so no other
    /// writer can take it meanwhile), read first so that the row carries its own id as its
    /// call id in the same insert. Two plain statements: an `INSERT … RETURNING` or one that selects from the
    /// table it writes would make SQLite build a temporary table on every call.
    fn insert_row(
        &self,
        conn: &Connection,
        scope: &RowScope,
        row: &NewRow<'_>,
        day: &str,
        month: &str,
    ) -> Result<(i64, Option<i64>), StoreError> {
        // Only a call's first try needs its id before the insert; any other row (another try,
        // a plugin run, inserted outside a write transaction) lets SQLite choose.
        let id: Option<i64> = match row.call {
            Some(CallTry { call_id: None, .. }) => Some(
                conn.prepare_cached("SELECT COALESCE(MAX(id), 0) + 1 FROM ledger")
                    .and_then(|mut next| next.query_row([], |r| r.get(0)))
                    .map_err(|e| self.db_err(e))?,
            ),
            _ => None,
        };
        let (call_id, try_number) = match row.call {
            Some(call) => (call.call_id.or(id), Some(call.number)),
            None => (None, None),
        };
        conn.prepare_cached(
            "INSERT INTO ledger (id, run_id, task_id, attempt, stage, phase, role, model, state,
                                 reserved_micros, fuel, wall_ms, outcome, owner, day, month,
                                 call_id, try_number)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                     ?17, ?18)",
        )
        .and_then(|mut insert| {
            insert.execute(params![
                id,
                scope.run_id,
                scope.task_id,
                scope.attempt,
                scope.stage,
                scope.phase,
                scope.role,
                scope.model,
                row.state,
                row.reserved,
                row.fuel,
                row.wall_ms,
                row.outcome,
                self.owner,
                day,
                month,
                call_id,
                try_number
            ])
        })
        .map_err(|e| self.db_err(e))?;
        Ok((id.unwrap_or_else(|| conn.last_insert_rowid()), call_id))
    }

    /// Move a row from `from` to `to`, or refuse naming the operation when it is elsewhere;
    /// returns the row as it was read.
    fn transition(
        &self,
        conn: &Connection,
        id: i64,
        from: RowState,
        to: RowState,
        operation: &'static str,
    ) -> Result<OpenRow, StoreError> {
        let row = self.require_state(conn, id, from, operation)?;
        conn.prepare_cached(
            "UPDATE ledger SET state = ?2, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
             WHERE id = ?1",
        )
        .and_then(|mut update| update.execute(params![id, to]))
        .map_err(|e| self.db_err(e))?;
        Ok(row)
    }

    /// Give a released reservation's amount back to its totals.
    fn give_back(&self, conn: &Connection, row: &OpenRow) -> Result<(), StoreError> {
        let delta = -signed(row.reserved, self)?;
        adjust_totals(conn, &row.scope, &row.day, &row.month, delta).map_err(|e| self.db_err(e))
    }

    /// Check `amount` against every cap and insert the row in `state` (`reserved`, or `sent`
    /// for a caller that sends at once), in one transaction.
    fn reserve_as(
        &self,
        state: RowState,
        scope: &RowScope,
        call: CallTry,
        amount: MicroUsd,
        caps: &[CapLimit],
    ) -> Result<Reserved, StoreError> {
        let amount_sql = signed(amount, self)?;
        self.write(|tx| {
            let (day, month) = today(tx).map_err(|e| self.db_err(e))?;
            for cap in caps {
                let spent = match total_key(cap.level, scope, &day, &month) {
                    Some(key) => total(tx, cap.level, &key).map_err(|e| self.db_err(e))?,
                    None if cap.level == CapLevel::Call => MicroUsd::ZERO,
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
            let row = NewRow {
                state,
                reserved: amount_sql,
                fuel: 0,
                wall_ms: 0,
                outcome: None,
                call: Some(call),
            };
            let (id, call_id) = self.insert_row(tx, scope, &row, &day, &month)?;
            adjust_totals(tx, scope, &day, &month, amount_sql).map_err(|e| self.db_err(e))?;
            Ok(Reserved {
                id: ReservationId(id),
                call_id: call_id.unwrap_or(id),
            })
        })
    }
}

impl LedgerStore for SqliteStore {
    fn try_reserve(
        &self,
        scope: &RowScope,
        call: CallTry,
        amount: MicroUsd,
        caps: &[CapLimit],
    ) -> Result<Reserved, StoreError> {
        self.reserve_as(RowState::Reserved, scope, call, amount, caps)
    }

    fn try_reserve_sent(
        &self,
        scope: &RowScope,
        call: CallTry,
        amount: MicroUsd,
        caps: &[CapLimit],
    ) -> Result<Reserved, StoreError> {
        self.reserve_as(RowState::Sent, scope, call, amount, caps)
    }

    fn mark_sent(&self, id: ReservationId) -> Result<(), StoreError> {
        self.write(|tx| {
            self.transition(tx, id.0, RowState::Reserved, RowState::Sent, "mark as sent")
                .map(|_| ())
        })
    }

    fn settle(&self, id: ReservationId, s: &Settlement) -> Result<Settled, StoreError> {
        self.write(|tx| {
            let row = self.require_state(tx, id.0, RowState::Sent, "settle")?;
            let reserved = row.reserved;
            // A billed call is never free: without usage, the reservation is the charge.
            let usage_missing = s.cost.is_none();
            let charged = s.cost.unwrap_or(reserved);
            let overrun = charged > reserved;
            let p = &s.prices;
            let t = &s.tokens;
            let sql = |v: u64| count(v, self);
            let values = params![
                id.0,
                signed(charged, self)?,
                sql(t.input)?,
                sql(t.output)?,
                sql(t.cache_read)?,
                sql(t.cache_write)?,
                signed(p.input, self)?,
                signed(p.output, self)?,
                signed(p.cache_read, self)?,
                signed(p.cache_write, self)?,
                sql(s.wall_ms)?,
                s.outcome,
                overrun,
                usage_missing
            ];
            tx.prepare_cached(
                "UPDATE ledger SET state = 'settled', charged_micros = ?2,
                     input_tokens = ?3, output_tokens = ?4, cache_read_tokens = ?5,
                     cache_write_tokens = ?6, price_input = ?7, price_output = ?8,
                     price_cache_read = ?9, price_cache_write = ?10, wall_ms = ?11,
                     outcome = ?12, overrun = ?13, usage_missing = ?14,
                     updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
                 WHERE id = ?1",
            )
            .and_then(|mut update| update.execute(values))
            .map_err(|e| self.db_err(e))?;
            let delta = signed(charged, self)? - signed(reserved, self)?;
            adjust_totals(tx, &row.scope, &row.day, &row.month, delta)
                .map_err(|e| self.db_err(e))?;
            Ok(Settled {
                charged,
                overrun,
                usage_missing,
            })
        })
    }

    fn release(&self, id: ReservationId) -> Result<(), StoreError> {
        self.write(|tx| {
            let row =
                self.transition(tx, id.0, RowState::Reserved, RowState::Released, "release")?;
            self.give_back(tx, &row)
        })
    }

    fn release_unbilled(
        &self,
        id: ReservationId,
        wall_ms: u64,
        outcome: &str,
    ) -> Result<(), StoreError> {
        let wall = count(wall_ms, self)?;
        self.write(|tx| {
            let row = self.transition(
                tx,
                id.0,
                RowState::Sent,
                RowState::Released,
                "release unbilled",
            )?;
            tx.prepare_cached("UPDATE ledger SET wall_ms = ?2, outcome = ?3 WHERE id = ?1")
                .and_then(|mut update| update.execute(params![id.0, wall, outcome]))
                .map_err(|e| self.db_err(e))?;
            self.give_back(tx, &row)
        })
    }
    fn recover(&self, is_alive: &dyn Fn(&str) -> bool) -> Result<Recovery, StoreError> {
        self.write(|tx| {
            let lapsed = self.lapsed_hosts(tx)?;
            let open: Vec<(i64, RowState, String, MicroUsd)> = {
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
                if !owner_is_dead(&owner, is_alive, &lapsed) {
                    continue;
                }
                if state == RowState::Reserved {
                    tx.execute(
                        "UPDATE ledger SET state = 'released', recovered = 1,
                             updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?1",
                        [id],
                    )
                    .map_err(|e| self.db_err(e))?;
                    if let Some(row) = open_row(tx, id).map_err(|e| self.db_err(e))? {
                        self.give_back(tx, &row)?;
                    }
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
                    recovery.charged_micros = recovery.charged_micros.saturating_add(reserved);
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
        let fuel = count(fuel, self)?;
        let wall = count(wall_ms, self)?;
        let row = NewRow {
            state: RowState::Settled,
            reserved: 0,
            fuel,
            wall_ms: wall,
            outcome: Some(outcome),
            call: None,
        };
        self.with_conn(|conn| {
            let (day, month) = today(conn).map_err(|e| self.db_err(e))?;
            self.insert_row(conn, scope, &row, &day, &month).map(|_| ())
        })
    }

    fn spent(&self, level: CapLevel, scope: &RowScope) -> Result<MicroUsd, StoreError> {
        self.with_conn(|conn| {
            let (day, month) = today(conn).map_err(|e| self.db_err(e))?;
            match total_key(level, scope, &day, &month) {
                Some(key) => total(conn, level, &key).map_err(|e| self.db_err(e)),
                None => Ok(MicroUsd::ZERO),
            }
        })
    }

    fn rows(&self) -> Result<Vec<LedgerRow>, StoreError> {
        self.select_rows("1 = 1", &[])
    }

    fn task_rows(&self, task: &str) -> Result<Vec<LedgerRow>, StoreError> {
        self.select_rows("task_id = ?1", &[&task])
    }

    fn open_rows(&self) -> Result<Vec<LedgerRow>, StoreError> {
        self.select_rows("state IN ('reserved', 'sent')", &[])
    }

    fn today(&self) -> Result<(String, String), StoreError> {
        self.with_conn(|conn| today(conn).map_err(|e| self.db_err(e)))
    }

    /// A local file: a write either gets the lock at once or is refused (see
    /// `SqliteStore::write`).
    fn can_refuse_to_wait(&self) -> bool {
        true
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
                            overrun, usage_missing, recovered, owner, day, month,
                            call_id, try_number
                     FROM ledger WHERE {filter} ORDER BY id"
                ))
                .map_err(|e| self.db_err(e))?;
            let rows = stmt
                .query_map(args, |r| {
                    let u = |i: usize| r.get::<_, i64>(i).map(unsigned);
                    let m = |i: usize| r.get::<_, MicroUsd>(i);
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
                        reserved: m(9)?,
                        charged: m(10)?,
                        tokens: TokenCounts {
                            input: u(11)?,
                            output: u(12)?,
                            cache_read: u(13)?,
                            cache_write: u(14)?,
                        },
                        prices: Prices {
                            input: m(15)?,
                            output: m(16)?,
                            cache_read: m(17)?,
                            cache_write: m(18)?,
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
                        call_id: r.get(28)?,
                        try_number: r.get(29)?,
                    })
                })
                .map_err(|e| self.db_err(e))?;
            rows.collect::<Result<_, _>>().map_err(|e| self.db_err(e))
        })
    }
}
