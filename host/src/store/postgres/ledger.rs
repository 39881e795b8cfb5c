//! The ledger's operations on PostgreSQL: reservations checked against the cap totals under
//! their row locks and inserted in one transaction, settlement, release, recovery of dead
//! hosts' rows (exactly once, whoever runs it), plugin runs.

use std::collections::{BTreeMap, HashMap};

use deadpool_postgres::Transaction;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{Fail, PostgresStore, int, signed, small, unsigned, word};
use crate::store::totals::{TOTALLED, total_key};
use crate::store::{
    CallTry, CapLevel, CapLimit, LedgerRow, LedgerStore, MicroUsd, Phase, Prices, Recovery,
    ReservationId, Reserved, Role, RowScope, RowState, Settled, Settlement, Stage, StoreError,
    TokenCounts, owner_is_dead,
};

/// The store's clock: today and this month, UTC.
const TODAY: &str = "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD'),
                            to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM')";

/// Lock the totals named by the arrays (level, scope), creating the missing ones at zero, in
/// the order given, and return them. Every change to the totals locks through here, with keys
/// in one global order (a `BTreeMap`'s), so two transactions never wait on each other in a
/// cycle.
const LOCK_TOTALS: &str = "INSERT INTO cap_totals AS t (level, scope, micros)
     SELECT k.level, k.scope, 0
     FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS k(level, scope, n)
     ORDER BY k.n
     ON CONFLICT (level, scope) DO UPDATE SET micros = t.micros
     RETURNING level, scope, micros";

/// Lock the totals named by the arrays (level, scope) in the order given, as [`LOCK_TOTALS`]
/// does, and add each delta (never below zero), in one statement: for a change whose amounts
/// are known before the lock (settle, release, recovery), one round trip instead of two. A
/// new total is inserted at its delta (a negative delta cannot make one: it starts at zero);
/// an existing one is updated under its row lock, the delta read again by key (the keys are
/// unique, so the sub-select finds one).
const LOCK_AND_ADJUST_TOTALS: &str = "INSERT INTO cap_totals AS t (level, scope, micros)
     SELECT k.level, k.scope, GREATEST(k.delta, 0)
     FROM unnest($1::text[], $2::text[], $3::int8[]) WITH ORDINALITY AS k(level, scope, delta, n)
     ORDER BY k.n
     ON CONFLICT (level, scope) DO UPDATE SET micros = GREATEST(t.micros + (
         SELECT d.delta FROM unnest($1::text[], $2::text[], $3::int8[]) AS d(level, scope, delta)
         WHERE d.level = EXCLUDED.level AND d.scope = EXCLUDED.scope), 0)";

/// Add each delta to its (already locked) total, never below zero.
const ADJUST_TOTALS: &str = "UPDATE cap_totals AS t SET micros = GREATEST(t.micros + k.delta, 0)
     FROM unnest($1::text[], $2::text[], $3::int8[]) AS k(level, scope, delta)
     WHERE t.level = k.level AND t.scope = k.scope";

const ROW_COLUMNS: &str = "id, run_id, task_id, attempt, stage, phase, role, model, state,
     reserved_micros, charged_micros, input_tokens, output_tokens, cache_read_tokens,
     cache_write_tokens, price_input, price_output, price_cache_read, price_cache_write, fuel,
     wall_ms, outcome, overrun, usage_missing, recovered, owner, day, month, call_id, try_number";

/// Changes to the cap totals, by (level, scope), applied in one locked step.
#[derive(Default)]
struct TotalsChange(BTreeMap<(String, String), i64>);

impl TotalsChange {
    /// Add `delta` to every total covering a row of `scope` made on `day` in `month`.
    fn add(&mut self, scope: &RowScope, day: &str, month: &str, delta: i64) {
        for level in TOTALLED {
            if let Some(key) = total_key(level, scope, day, month) {
                *self.0.entry((level.name().to_string(), key)).or_default() += delta;
            }
        }
    }

    /// Lock the totals touched, in the global order, and apply the changes: one statement.
    async fn apply(mut self, tx: &Transaction<'_>) -> Result<(), Fail> {
        self.0.retain(|_, delta| *delta != 0);
        if self.0.is_empty() {
            return Ok(());
        }
        let (levels, scopes): (Vec<String>, Vec<String>) = self.0.keys().cloned().unzip();
        let deltas: Vec<i64> = self.0.values().copied().collect();
        let lock_and_adjust = tx.prepare_cached(LOCK_AND_ADJUST_TOTALS).await?;
        tx.execute(&lock_and_adjust, &[&levels, &scopes, &deltas])
            .await?;
        Ok(())
    }
}

/// A row scope's columns as the insert statements bind them, `$1` to `$7`: run, task,
/// attempt, stage, phase, role, model.
struct ScopeColumns<'a> {
    scope: &'a RowScope,
    attempt: Option<i32>,
    stage: &'static str,
    phase: Option<&'static str>,
    role: &'static str,
}

impl<'a> ScopeColumns<'a> {
    fn of(scope: &'a RowScope) -> Result<ScopeColumns<'a>, Fail> {
        Ok(ScopeColumns {
            scope,
            attempt: scope.attempt.map(int).transpose()?,
            stage: scope.stage.name(),
            phase: scope.phase.map(Phase::name),
            role: scope.role.name(),
        })
    }

    /// The seven parameters, followed by `rest`.
    fn with<'b>(&'b self, rest: &[&'b (dyn ToSql + Sync)]) -> Vec<&'b (dyn ToSql + Sync)> {
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![
            &self.scope.run_id,
            &self.scope.task_id,
            &self.attempt,
            &self.stage,
            &self.phase,
            &self.role,
            &self.scope.model,
        ];
        params.extend_from_slice(rest);
        params
    }
}

/// A row's scope, as stored.
fn scope_of(row: &Row, first: usize) -> Result<RowScope, Fail> {
    let stage: String = row.try_get(first + 3)?;
    let phase: Option<String> = row.try_get(first + 4)?;
    let role: String = row.try_get(first + 5)?;
    Ok(RowScope {
        run_id: row.try_get(first)?,
        task_id: row.try_get(first + 1)?,
        attempt: row.try_get::<_, Option<i32>>(first + 2)?.map(small),
        stage: word(&stage, Stage::from_name, "stage")?,
        phase: phase
            .map(|p| word(&p, Phase::from_name, "phase"))
            .transpose()?,
        role: word(&role, Role::from_name, "role")?,
        model: row.try_get(first + 6)?,
    })
}

fn ledger_row(r: &Row) -> Result<LedgerRow, Fail> {
    let m = |i: usize| -> Result<MicroUsd, Fail> { Ok(MicroUsd(unsigned(r.try_get(i)?))) };
    let u = |i: usize| -> Result<u64, Fail> { Ok(unsigned(r.try_get(i)?)) };
    let state: String = r.try_get(8)?;
    Ok(LedgerRow {
        id: r.try_get(0)?,
        scope: scope_of(r, 1)?,
        state: word(&state, RowState::from_name, "state")?,
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
        outcome: r.try_get(21)?,
        overrun: r.try_get(22)?,
        usage_missing: r.try_get(23)?,
        recovered: r.try_get(24)?,
        owner: r.try_get(25)?,
        day: r.try_get(26)?,
        month: r.try_get(27)?,
        call_id: r.try_get(28)?,
        try_number: r.try_get::<_, Option<i32>>(29)?.map(small),
    })
}

/// Lock a row and read its state, scope, clock and reservation; refuse when it is not in
/// `expected`.
async fn locked_row(
    tx: &Transaction<'_>,
    id: i64,
    expected: RowState,
    operation: &'static str,
) -> Result<(RowScope, String, String, i64), Fail> {
    let select = tx
        .prepare_cached(
            "SELECT state, run_id, task_id, attempt, stage, phase, role, model, day, month,
                    reserved_micros
             FROM ledger WHERE id = $1 FOR UPDATE",
        )
        .await?;
    let Some(row) = tx.query_opt(&select, &[&id]).await? else {
        return Err(StoreError::NoSuchReservation(id).into());
    };
    let state: String = row.try_get(0)?;
    let state = word(&state, RowState::from_name, "state")?;
    if state != expected {
        return Err(StoreError::WrongState {
            id,
            operation,
            state,
        }
        .into());
    }
    Ok((
        scope_of(&row, 1)?,
        row.try_get(8)?,
        row.try_get(9)?,
        row.try_get(10)?,
    ))
}

/// The owners of runs whose lease lapsed without their leaving.
pub(super) async fn lapsed_hosts(
    tx: &Transaction<'_>,
) -> Result<std::collections::HashSet<String>, Fail> {
    let select = tx
        .prepare_cached("SELECT owner FROM hosts WHERE expires_at < now() AND NOT has_left")
        .await?;
    Ok(tx
        .query(&select, &[])
        .await?
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect())
}

impl PostgresStore {
    /// Check `amount` against every cap under the totals' row locks and insert the row in
    /// `state` (`reserved`, or `sent` for a caller that sends at once), in one transaction.
    ///
    /// Round trips: `BEGIN`, the clock, the locked totals, then the insert and the totals'
    /// update pipelined (sent together, answered together: the update waits for nothing the
    /// insert returns), `COMMIT`. Were either to fail, the transaction is aborted and rolls
    /// back when dropped.
    fn reserve_as(
        &self,
        state: RowState,
        scope: &RowScope,
        call: CallTry,
        amount: MicroUsd,
        caps: &[CapLimit],
    ) -> Result<Reserved, StoreError> {
        let (scope, caps, owner) = (scope.clone(), caps.to_vec(), self.owner.clone());
        self.run(move |pool| async move {
            let amount_sql = signed(amount.get())?;
            let mut client = pool.get().await?;
            let tx = client.transaction().await?;
            let today = tx.prepare_cached(TODAY).await?;
            let clock = tx.query_one(&today, &[]).await?;
            let (day, month): (String, String) = (clock.try_get(0)?, clock.try_get(1)?);
            let mut change = TotalsChange::default();
            change.add(&scope, &day, &month, amount_sql);
            let (levels, scopes): (Vec<String>, Vec<String>) = change.0.keys().cloned().unzip();
            let lock = tx.prepare_cached(LOCK_TOTALS).await?;
            let totals: HashMap<(String, String), i64> = tx
                .query(&lock, &[&levels, &scopes])
                .await?
                .iter()
                .map(|r| ((r.get(0), r.get(1)), r.get(2)))
                .collect();
            for cap in &caps {
                let spent = match total_key(cap.level, &scope, &day, &month) {
                    Some(key) => totals
                        .get(&(cap.level.name().to_string(), key))
                        .map(|&micros| MicroUsd(unsigned(micros)))
                        .unwrap_or_default(),
                    None if cap.level == CapLevel::Call => MicroUsd::ZERO,
                    None => continue,
                };
                if spent.saturating_add(amount) > cap.limit {
                    // Nothing was written: the transaction rolls back when dropped.
                    return Err(StoreError::CapExceeded {
                        level: cap.level,
                        limit: cap.limit,
                        spent,
                        needed: amount,
                    }
                    .into());
                }
            }
            let insert = tx
                .prepare_cached(
                    "WITH n AS (SELECT nextval(pg_get_serial_sequence('ledger', 'id')) AS id)
                     INSERT INTO ledger (id, run_id, task_id, attempt, stage, phase, role, model,
                                         state, reserved_micros, owner, day, month, call_id,
                                         try_number)
                     SELECT n.id, $1, $2, $3, $4, $5, $6, $7, $14, $8, $9, $10, $11,
                            COALESCE($12, n.id), $13
                     FROM n
                     RETURNING id, call_id",
                )
                .await?;
            let adjust = tx.prepare_cached(ADJUST_TOTALS).await?;
            let columns = ScopeColumns::of(&scope)?;
            let try_number = int(call.number)?;
            let state = state.name();
            let params = columns.with(&[
                &amount_sql,
                &owner,
                &day,
                &month,
                &call.call_id,
                &try_number,
                &state,
            ]);
            let deltas: Vec<i64> = change.0.values().copied().collect();
            let adjust_params: [&(dyn ToSql + Sync); 3] = [&levels, &scopes, &deltas];
            let (row, _) = tokio::try_join!(
                tx.query_one(&insert, &params),
                tx.execute(&adjust, &adjust_params),
            )?;
            tx.commit().await?;
            Ok(Reserved {
                id: ReservationId(row.try_get(0)?),
                call_id: row.try_get(1)?,
            })
        })
    }
}

impl LedgerStore for PostgresStore {
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
        self.run(move |pool| async move {
            let mut client = pool.get().await?;
            let tx = client.transaction().await?;
            locked_row(&tx, id.0, RowState::Reserved, "mark as sent").await?;
            let update = tx
                .prepare_cached(
                    "UPDATE ledger SET state = 'sent', updated_at = now() WHERE id = $1",
                )
                .await?;
            tx.execute(&update, &[&id.0]).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn settle(&self, id: ReservationId, s: &Settlement) -> Result<Settled, StoreError> {
        let s = s.clone();
        self.run(move |pool| async move {
            let (p, t) = (&s.prices, &s.tokens);
            // `None`: the provider reported no usage, and the reservation is the charge (a
            // billed call is never free); the statement decides, from the locked row.
            let cost = s.cost.map(|c| signed(c.get())).transpose()?;
            let values = [
                signed(t.input)?,
                signed(t.output)?,
                signed(t.cache_read)?,
                signed(t.cache_write)?,
                signed(p.input.get())?,
                signed(p.output.get())?,
                signed(p.cache_read.get())?,
                signed(p.cache_write.get())?,
                signed(s.wall_ms)?,
            ];
            let mut client = pool.get().await?;
            let tx = client.transaction().await?;
            // Locks the row and moves it only from `sent` (as `locked_row` then an update would,
            // in one round trip); the row lock comes before the totals', as everywhere.
            let update = tx
                .prepare_cached(
                    "UPDATE ledger SET state = 'settled',
                         charged_micros = COALESCE($2::int8, reserved_micros),
                         input_tokens = $3, output_tokens = $4, cache_read_tokens = $5,
                         cache_write_tokens = $6, price_input = $7, price_output = $8,
                         price_cache_read = $9, price_cache_write = $10, wall_ms = $11,
                         outcome = $12, overrun = COALESCE($2::int8, reserved_micros) > reserved_micros,
                         usage_missing = ($2::int8 IS NULL), updated_at = now()
                     WHERE id = $1 AND state = 'sent'
                     RETURNING run_id, task_id, attempt, stage, phase, role, model, day, month,
                               reserved_micros, charged_micros, overrun",
                )
                .await?;
            let mut params: Vec<&(dyn ToSql + Sync)> = vec![&id.0, &cost];
            params.extend(values.iter().map(|v| v as &(dyn ToSql + Sync)));
            params.push(&s.outcome);
            let Some(row) = tx.query_opt(&update, &params).await? else {
                // Not settled: say why (no such row, or not on the wire).
                locked_row(&tx, id.0, RowState::Sent, "settle").await?;
                return Err(Fail::Db(format!(
                    "reservation {}: the settlement changed no row",
                    id.0
                )));
            };
            let scope = scope_of(&row, 0)?;
            let (day, month): (String, String) = (row.try_get(7)?, row.try_get(8)?);
            let (reserved, charged): (i64, i64) = (row.try_get(9)?, row.try_get(10)?);
            let overrun: bool = row.try_get(11)?;
            let mut change = TotalsChange::default();
            change.add(&scope, &day, &month, charged - reserved);
            change.apply(&tx).await?;
            tx.commit().await?;
            Ok(Settled {
                charged: MicroUsd(unsigned(charged)),
                overrun,
                usage_missing: s.cost.is_none(),
            })
        })
    }

    fn release(&self, id: ReservationId) -> Result<(), StoreError> {
        self.run(move |pool| async move {
            let mut client = pool.get().await?;
            let tx = client.transaction().await?;
            let (scope, day, month, reserved) =
                locked_row(&tx, id.0, RowState::Reserved, "release").await?;
            let update = tx
                .prepare_cached(
                    "UPDATE ledger SET state = 'released', updated_at = now() WHERE id = $1",
                )
                .await?;
            tx.execute(&update, &[&id.0]).await?;
            let mut change = TotalsChange::default();
            change.add(&scope, &day, &month, -reserved);
            change.apply(&tx).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn release_unbilled(
        &self,
        id: ReservationId,
        wall_ms: u64,
        outcome: &str,
    ) -> Result<(), StoreError> {
        let outcome = outcome.to_string();
        self.run(move |pool| async move {
            let wall = signed(wall_ms)?;
            let mut client = pool.get().await?;
            let tx = client.transaction().await?;
            let (scope, day, month, reserved) =
                locked_row(&tx, id.0, RowState::Sent, "release unbilled").await?;
            let update = tx
                .prepare_cached(
                    "UPDATE ledger SET state = 'released', wall_ms = $2, outcome = $3,
                         updated_at = now()
                     WHERE id = $1",
                )
                .await?;
            tx.execute(&update, &[&id.0, &wall, &outcome]).await?;
            let mut change = TotalsChange::default();
            change.add(&scope, &day, &month, -reserved);
            change.apply(&tx).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn recover(&self, is_alive: &dyn Fn(&str) -> bool) -> Result<Recovery, StoreError> {
        // Who is dead is decided here, on this thread (`is_alive` need not be `Send`): the
        // lapsed runs first, then each open row's owner.
        let (lapsed, open) = self.run(|pool| async move {
            let mut client = pool.get().await?;
            let tx = client.transaction().await?;
            let lapsed = lapsed_hosts(&tx).await?;
            let select = tx
                .prepare_cached(
                    "SELECT id, owner FROM ledger WHERE state IN ('reserved', 'sent') ORDER BY id",
                )
                .await?;
            let open: Vec<(i64, String)> = tx
                .query(&select, &[])
                .await?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            Ok((lapsed, open))
        })?;
        let dead: Vec<i64> = open
            .into_iter()
            .filter(|(_, owner)| owner_is_dead(owner, is_alive, &lapsed))
            .map(|(id, _)| id)
            .collect();
        if dead.is_empty() {
            return Ok(Recovery::default());
        }
        self.run(move |pool| async move {
            let mut client = pool.get().await?;
            let tx = client.transaction().await?;
            // Each row moves only from the state it is still in: another host recovering the
            // same rows at the same moment waits on their locks, then finds them done.
            let release = tx
                .prepare_cached(
                    "UPDATE ledger SET state = 'released', recovered = TRUE, updated_at = now()
                     WHERE id = ANY($1) AND state = 'reserved'
                     RETURNING run_id, task_id, attempt, stage, phase, role, model, day, month,
                               reserved_micros",
                )
                .await?;
            let charge = tx
                .prepare_cached(
                    "UPDATE ledger SET state = 'settled', charged_micros = reserved_micros,
                         usage_missing = TRUE, recovered = TRUE,
                         outcome = 'recovered-after-crash', updated_at = now()
                     WHERE id = ANY($1) AND state = 'sent'
                     RETURNING reserved_micros",
                )
                .await?;
            let released = tx.query(&release, &[&dead]).await?;
            let charged = tx.query(&charge, &[&dead]).await?;
            let mut change = TotalsChange::default();
            for row in &released {
                let scope = scope_of(row, 0)?;
                let (day, month): (String, String) = (row.try_get(7)?, row.try_get(8)?);
                let reserved: i64 = row.try_get(9)?;
                change.add(&scope, &day, &month, -reserved);
            }
            change.apply(&tx).await?;
            tx.commit().await?;
            Ok(Recovery {
                released: released.len() as u64,
                charged: charged.len() as u64,
                charged_micros: charged
                    .iter()
                    .map(|r| MicroUsd(unsigned(r.get::<_, i64>(0))))
                    .sum(),
            })
        })
    }

    fn record_plugin_run(
        &self,
        scope: &RowScope,
        fuel: u64,
        wall_ms: u64,
        outcome: &str,
    ) -> Result<(), StoreError> {
        let (scope, outcome, owner) = (scope.clone(), outcome.to_string(), self.owner.clone());
        self.run(move |pool| async move {
            let (fuel, wall) = (signed(fuel)?, signed(wall_ms)?);
            let columns = ScopeColumns::of(&scope)?;
            let client = pool.get().await?;
            let insert = client
                .prepare_cached(
                    "INSERT INTO ledger (run_id, task_id, attempt, stage, phase, role, model,
                                         state, fuel, wall_ms, outcome, owner, day, month)
                     SELECT $1, $2, $3, $4, $5, $6, $7, 'settled', $8, $9, $10, $11,
                            to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD'),
                            to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM')",
                )
                .await?;
            client
                .execute(&insert, &columns.with(&[&fuel, &wall, &outcome, &owner]))
                .await?;
            Ok(())
        })
    }

    fn spent(&self, level: CapLevel, scope: &RowScope) -> Result<MicroUsd, StoreError> {
        let scope = scope.clone();
        self.run(move |pool| async move {
            let client = pool.get().await?;
            let today = client.prepare_cached(TODAY).await?;
            let clock = client.query_one(&today, &[]).await?;
            let (day, month): (String, String) = (clock.try_get(0)?, clock.try_get(1)?);
            let Some(key) = total_key(level, &scope, &day, &month) else {
                return Ok(MicroUsd::ZERO);
            };
            let select = client
                .prepare_cached("SELECT micros FROM cap_totals WHERE level = $1 AND scope = $2")
                .await?;
            let micros: Option<i64> = client
                .query_opt(&select, &[&level.name(), &key])
                .await?
                .map(|r| r.get(0));
            Ok(MicroUsd(unsigned(micros.unwrap_or(0))))
        })
    }

    fn rows(&self) -> Result<Vec<LedgerRow>, StoreError> {
        self.select_rows("TRUE", None)
    }

    fn task_rows(&self, task: &str) -> Result<Vec<LedgerRow>, StoreError> {
        self.select_rows("task_id = $1", Some(task.to_string()))
    }

    fn open_rows(&self) -> Result<Vec<LedgerRow>, StoreError> {
        self.select_rows("state IN ('reserved', 'sent')", None)
    }

    fn today(&self) -> Result<(String, String), StoreError> {
        self.run(|pool| async move {
            let client = pool.get().await?;
            let today = client.prepare_cached(TODAY).await?;
            let clock = client.query_one(&today, &[]).await?;
            Ok((clock.try_get(0)?, clock.try_get(1)?))
        })
    }
}

impl PostgresStore {
    /// Ledger rows matching `filter` (SQL over the ledger's columns, `$1` for `arg`), oldest
    /// first.
    fn select_rows(
        &self,
        filter: &'static str,
        arg: Option<String>,
    ) -> Result<Vec<LedgerRow>, StoreError> {
        self.run(move |pool| async move {
            let client = pool.get().await?;
            let select = client
                .prepare_cached(&format!(
                    "SELECT {ROW_COLUMNS} FROM ledger WHERE {filter} ORDER BY id"
                ))
                .await?;
            let rows = match &arg {
                Some(arg) => client.query(&select, &[arg]).await?,
                None => client.query(&select, &[]).await?,
            };
            rows.iter().map(ledger_row).collect()
        })
    }
}
