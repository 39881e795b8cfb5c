//! The ledger over both stores (SQLite and PostgreSQL, one suite): reservations checked
//! atomically against every cap, settlement, overrun and missing usage, a race of concurrent
//! callers, and recovery after a process is killed. Expected values are worked out by hand.

#[macro_use]
mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use gaffer::ledger::{
    CallTry, Caps, Ledger, LedgerError, MicroUsd, Prices, TokenCounts, WorstCase,
};
use gaffer::store::{
    CapLevel, CapLimit, LedgerStore, Phase, Role, RowScope, RowState, SqliteStore, Stage,
    StoreError, owner_is_alive, without_waiting,
};
use support::backends::{Backend, open_location};

on_both!(
    the_protocol_refuses_out_of_order_steps,
    concurrent_callers_never_exceed_a_cap,
    a_killed_process_is_recovered,
    a_try_reserved_as_sent_is_charged_once_after_a_kill,
    a_reservation_made_as_sent_follows_the_protocol,
    recovery_leaves_live_owners_alone,
    plugin_runs_are_rows_with_fuel_and_no_money,
    cap_totals_always_equal_what_the_rows_say,
    hosts_opening_a_new_store_at_once_migrate_it_once;
    async:
    a_call_is_reserved_at_its_worst_case_and_settled_at_its_cost,
    a_call_that_does_not_fit_is_refused_naming_the_cap,
    an_overrun_is_booked_in_full_and_closes_the_cap,
    missing_usage_charges_the_reservation_and_says_so,
);

fn scope(task: &str, attempt: u32) -> RowScope {
    RowScope {
        phase: Some(Phase::Explore),
        model: "cheap".to_string(),
        ..RowScope::attempt("run-1", task, attempt, Stage::Implement, Role::Agent)
    }
}

// $3 / $15 / $0.30 / $3.75 per Mtok.
const PRICES: Prices = Prices {
    input: MicroUsd(3_000_000),
    output: MicroUsd(15_000_000),
    cache_read: MicroUsd(300_000),
    cache_write: MicroUsd(3_750_000),
};

async fn a_call_is_reserved_at_its_worst_case_and_settled_at_its_cost(backend: Backend) {
    let db = backend.fresh();
    let store = db.open();
    let ledger = Ledger::new(
        store.clone(),
        Caps {
            per_task: Some(MicroUsd(2_000_000)),
            ..Caps::default()
        },
    );
    let worst = WorstCase::Tokens {
        prices: PRICES,
        max_input_tokens: 100_000,
        max_output_tokens: 8_192,
    };
    // 100 000 × 3.75 $/Mtok + 8 192 × 15 $/Mtok = 0.375 + 0.12288 = $0.49788 = 497 880 µ$.
    let reservation = ledger
        .reserve(&scope("T-1", 1), CallTry::FIRST, worst, None)
        .await
        .unwrap();
    assert_eq!(reservation.amount, MicroUsd(497_880));
    assert_eq!(
        store.spent(CapLevel::Task, &scope("T-1", 1)).unwrap(),
        MicroUsd(497_880)
    );

    ledger.mark_sent(&reservation).await.unwrap();
    let usage = TokenCounts {
        input: 2_000,
        cache_read: 40_000,
        cache_write: 0,
        output: 1_000,
    };
    // 2 000 × 3 + 40 000 × 0.3 + 1 000 × 15 = 6 000 + 12 000 + 15 000 = 33 000 µ$·Mtok/1e6 → 33 000 µ$.
    let settled = ledger
        .settle(&reservation, Some(usage), Duration::from_millis(900), "ok")
        .await
        .unwrap();
    assert_eq!(settled.charged, MicroUsd(33_000));
    assert!(!settled.overrun && !settled.usage_missing);
    assert_eq!(
        store.spent(CapLevel::Task, &scope("T-1", 1)).unwrap(),
        MicroUsd(33_000)
    );

    let rows = store.rows().unwrap();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(
        (row.state, row.reserved, row.charged),
        (RowState::Settled, MicroUsd(497_880), MicroUsd(33_000))
    );
    assert_eq!(
        (row.tokens.input, row.tokens.cache_read, row.tokens.output),
        (2_000, 40_000, 1_000)
    );
    assert_eq!(
        (row.prices.input, row.prices.output),
        (MicroUsd(3_000_000), MicroUsd(15_000_000))
    );
    assert_eq!(
        (row.scope.stage, row.scope.phase, row.scope.role),
        (Stage::Implement, Some(Phase::Explore), Role::Agent)
    );
    assert_eq!(row.wall_ms, 900);
}

async fn a_call_that_does_not_fit_is_refused_naming_the_cap(backend: Backend) {
    let db = backend.fresh();
    let store = db.open();
    let ledger = Ledger::new(
        store.clone(),
        Caps {
            per_task: Some(MicroUsd(1_000_000)),
            per_run: Some(MicroUsd(10_000_000)),
            ..Caps::default()
        },
    );
    let first = ledger
        .reserve(
            &scope("T-1", 1),
            CallTry::FIRST,
            WorstCase::Amount(MicroUsd(700_000)),
            None,
        )
        .await
        .unwrap();
    let error = ledger
        .reserve(
            &scope("T-1", 1),
            CallTry::FIRST,
            WorstCase::Amount(MicroUsd(400_000)),
            None,
        )
        .await
        .unwrap_err();
    match &error {
        LedgerError::Exhausted(e) => {
            assert_eq!(
                (e.level, e.limit, e.spent, e.needed),
                (
                    CapLevel::Task,
                    MicroUsd(1_000_000),
                    MicroUsd(700_000),
                    MicroUsd(400_000)
                )
            );
        }
        other => panic!("expected exhaustion, got {other:?}"),
    }
    assert_eq!(
        error.to_string(),
        "budget exhausted: the task cap of $1.00 would be exceeded by $0.10 (spent or reserved $0.70, this call needs up to $0.40 with model `cheap`)"
    );
    // Nothing was reserved for the refused call.
    assert_eq!(store.rows().unwrap().len(), 1);
    // Another task is not affected; the router's attempt cap is.
    assert!(
        ledger
            .reserve(
                &scope("T-2", 1),
                CallTry::FIRST,
                WorstCase::Amount(MicroUsd(400_000)),
                None
            )
            .await
            .is_ok()
    );
    let error = ledger
        .reserve(
            &scope("T-3", 1),
            CallTry::FIRST,
            WorstCase::Amount(MicroUsd(400_000)),
            Some(MicroUsd(300_000)),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, LedgerError::Exhausted(ref e) if e.level == CapLevel::Attempt),
        "{error}"
    );
    // Releasing gives the money back.
    ledger.release(&first).await.unwrap();
    assert!(
        ledger
            .reserve(
                &scope("T-1", 2),
                CallTry::FIRST,
                WorstCase::Amount(MicroUsd(900_000)),
                None
            )
            .await
            .is_ok()
    );
}

async fn an_overrun_is_booked_in_full_and_closes_the_cap(backend: Backend) {
    let db = backend.fresh();
    let store = db.open();
    let ledger = Ledger::new(
        store.clone(),
        Caps {
            per_task: Some(MicroUsd(100_000)),
            ..Caps::default()
        },
    );
    let r = ledger
        .reserve(
            &scope("T-1", 1),
            CallTry::FIRST,
            WorstCase::Tokens {
                prices: PRICES,
                max_input_tokens: 1_000,
                max_output_tokens: 1_000,
            },
            None,
        )
        .await
        .unwrap();
    // 1 000 × 3.75 + 1 000 × 15 = 18 750 µ$ reserved.
    assert_eq!(r.amount, MicroUsd(18_750));
    ledger.mark_sent(&r).await.unwrap();
    // The provider billed past its own limit: 7 000 output tokens = 105 000 µ$.
    let settled = ledger
        .settle(
            &r,
            Some(TokenCounts {
                output: 7_000,
                ..TokenCounts::default()
            }),
            Duration::ZERO,
            "ok",
        )
        .await
        .unwrap();
    assert_eq!(settled.charged, MicroUsd(105_000));
    assert!(settled.overrun);
    assert!(store.rows().unwrap()[0].overrun);
    // The task cap (100 000) is crossed: even the smallest call is now refused.
    assert!(matches!(
        ledger
            .reserve(
                &scope("T-1", 1),
                CallTry::FIRST,
                WorstCase::Amount(MicroUsd(1)),
                None
            )
            .await,
        Err(LedgerError::Exhausted(_))
    ));
}

async fn missing_usage_charges_the_reservation_and_says_so(backend: Backend) {
    let db = backend.fresh();
    let store = db.open();
    let ledger = Ledger::new(store.clone(), Caps::default());
    let r = ledger
        .reserve(
            &scope("T-1", 1),
            CallTry::FIRST,
            WorstCase::Amount(MicroUsd(12_345)),
            None,
        )
        .await
        .unwrap();
    ledger.mark_sent(&r).await.unwrap();
    let settled = ledger.settle(&r, None, Duration::ZERO, "ok").await.unwrap();
    assert_eq!(settled.charged, MicroUsd(12_345));
    assert!(settled.usage_missing);
    let row = &store.rows().unwrap()[0];
    assert!(row.usage_missing);
    assert_eq!(row.charged, MicroUsd(12_345));
}

fn the_protocol_refuses_out_of_order_steps(backend: Backend) {
    let db = backend.fresh();
    let store = db.open();
    let id = store
        .try_reserve(&scope("T-1", 1), CallTry::FIRST, MicroUsd(10), &[])
        .unwrap()
        .id;
    let settle = gaffer::store::Settlement {
        tokens: Default::default(),
        prices: Default::default(),
        cost: Some(MicroUsd(1)),
        wall_ms: 0,
        outcome: "ok".into(),
    };
    assert!(
        matches!(
            store.settle(id, &settle),
            Err(StoreError::WrongState { .. })
        ),
        "settling what was never sent"
    );
    store.mark_sent(id).unwrap();
    assert!(
        matches!(store.release(id), Err(StoreError::WrongState { .. })),
        "a sent call cannot be released"
    );
    assert!(matches!(
        store.mark_sent(id),
        Err(StoreError::WrongState { .. })
    ));
    store.settle(id, &settle).unwrap();
    assert!(matches!(
        store.settle(id, &settle),
        Err(StoreError::WrongState { .. })
    ));
    assert!(matches!(
        store.mark_sent(gaffer::store::ReservationId(999)),
        Err(StoreError::NoSuchReservation(999))
    ));
}

/// 32 callers, each with its own connection (as separate processes would have), spend against
/// one task cap and one run cap sized to admit only some of them.
fn concurrent_callers_never_exceed_a_cap(backend: Backend) {
    let db = backend.fresh();
    const CALLERS: usize = 32;
    const CALL: MicroUsd = MicroUsd(100_000);
    // The task cap admits 10 reservations of 100 000; the run cap 15 (two tasks).
    let caps = [
        CapLimit {
            level: CapLevel::Task,
            limit: MicroUsd(1_000_000),
        },
        CapLimit {
            level: CapLevel::Run,
            limit: MicroUsd(1_500_000),
        },
    ];
    let barrier = Arc::new(Barrier::new(CALLERS));
    let handles: Vec<_> = (0..CALLERS)
        .map(|i| {
            let location = db.location.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let store = open_location(&location);
                let task = if i % 2 == 0 { "T-even" } else { "T-odd" };
                barrier.wait();
                match store.try_reserve(&scope(task, 1), CallTry::FIRST, CALL, &caps) {
                    Ok(reserved) => {
                        let id = reserved.id;
                        store.mark_sent(id).unwrap();
                        // Each call costs exactly what it reserved, so admissions cannot
                        // depend on settlement timing.
                        let settle = gaffer::store::Settlement {
                            tokens: Default::default(),
                            prices: Default::default(),
                            cost: Some(CALL),
                            wall_ms: 1,
                            outcome: "ok".into(),
                        };
                        store.settle(id, &settle).unwrap();
                        true
                    }
                    Err(StoreError::CapExceeded { .. }) => false,
                    Err(other) => panic!("{other}"),
                }
            })
        })
        .collect();
    let admitted = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|&ok| ok)
        .count();
    let store = db.open();
    let rows = store.rows().unwrap();
    // Every refused call was refused before anything was reserved or sent: one row per admission.
    assert_eq!(rows.len(), admitted);
    assert!(rows.iter().all(|r| r.state == RowState::Settled));
    let run_total: u64 = rows.iter().map(|r| r.charged.get()).sum();
    let even: u64 = rows
        .iter()
        .filter(|r| r.scope.task_id.as_deref() == Some("T-even"))
        .map(|r| r.charged.get())
        .sum();
    let odd: u64 = rows
        .iter()
        .filter(|r| r.scope.task_id.as_deref() == Some("T-odd"))
        .map(|r| r.charged.get())
        .sum();
    assert!(run_total <= 1_500_000, "run cap exceeded: {run_total}");
    assert!(
        even <= 1_000_000 && odd <= 1_000_000,
        "task cap exceeded: {even} {odd}"
    );
    // 16 callers per task, 10 fit a task, 15 fit the run: exactly 15 get through.
    assert_eq!(admitted, 15);
    assert_eq!(run_total, 1_500_000);
}

/// The crash: a child process (this same test binary, running this same test with
/// `GAFFER_CRASH_DB` set) reserves two calls, sends one, says so, and waits; the test kills it
/// with SIGKILL (no destructor, no settlement) and recovers.
fn a_killed_process_is_recovered(backend: Backend) {
    if let Ok(location) = std::env::var("GAFFER_CRASH_DB") {
        let store = open_location(&location);
        let sent = store
            .try_reserve(&scope("T-1", 1), CallTry::FIRST, MicroUsd(40_000), &[])
            .unwrap()
            .id;
        store.mark_sent(sent).unwrap();
        store
            .try_reserve(&scope("T-1", 1), CallTry::FIRST, MicroUsd(7_000), &[])
            .unwrap();
        println!("READY");
        std::thread::sleep(Duration::from_secs(120));
        return;
    }
    let db = backend.fresh();
    let name = match backend {
        Backend::Sqlite => "sqlite::a_killed_process_is_recovered",
        Backend::Postgres => "postgres::a_killed_process_is_recovered",
    };
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env("GAFFER_CRASH_DB", &db.location)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let ready = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line.contains("READY"));
    assert!(ready, "the child process did not get to the crash point");
    child.kill().unwrap();
    child.wait().unwrap();

    let store = db.open();
    let before = store.rows().unwrap();
    assert_eq!(
        before.iter().map(|r| r.state).collect::<Vec<_>>(),
        [RowState::Sent, RowState::Reserved]
    );
    // Rows of live processes (this one) are left alone.
    let recovery = store.recover(&owner_is_alive).unwrap();
    assert_eq!(
        (recovery.released, recovery.charged, recovery.charged_micros),
        (1, 1, MicroUsd(40_000))
    );
    let rows = store.rows().unwrap();
    assert_eq!(
        (rows[0].state, rows[0].charged),
        (RowState::Settled, MicroUsd(40_000))
    );
    assert!(
        rows[0].usage_missing && rows[0].recovered,
        "the charge is flagged"
    );
    assert_eq!(
        (rows[1].state, rows[1].charged),
        (RowState::Released, MicroUsd(0))
    );
    assert_eq!(
        store.spent(CapLevel::Task, &scope("T-1", 1)).unwrap(),
        MicroUsd(40_000)
    );
    // Recovering again changes nothing.
    assert_eq!(store.recover(&owner_is_alive).unwrap(), Default::default());
}

/// The folded path: a child process reserves one try directly as sent (what the gateway does
/// right before the request leaves) and holds another reservation unsent, says so, and waits;
/// the test kills it with SIGKILL before any settlement. Recovery charges the try reserved as
/// sent at its reservation (it may have left: never under-charged), releases the unsent one,
/// and does both exactly once.
fn a_try_reserved_as_sent_is_charged_once_after_a_kill(backend: Backend) {
    if let Ok(location) = std::env::var("GAFFER_CRASH_DB") {
        let store = open_location(&location);
        let caps = [CapLimit {
            level: CapLevel::Task,
            limit: MicroUsd(100_000),
        }];
        store
            .try_reserve_sent(&scope("T-1", 1), CallTry::FIRST, MicroUsd(40_000), &caps)
            .unwrap();
        store
            .try_reserve(&scope("T-1", 1), CallTry::FIRST, MicroUsd(7_000), &caps)
            .unwrap();
        println!("READY");
        std::thread::sleep(Duration::from_secs(120));
        return;
    }
    let db = backend.fresh();
    let name = match backend {
        Backend::Sqlite => "sqlite::a_try_reserved_as_sent_is_charged_once_after_a_kill",
        Backend::Postgres => "postgres::a_try_reserved_as_sent_is_charged_once_after_a_kill",
    };
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env("GAFFER_CRASH_DB", &db.location)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let ready = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line.contains("READY"));
    assert!(ready, "the child process did not get to the crash point");
    child.kill().unwrap();
    child.wait().unwrap();

    let store = db.open();
    let before = store.rows().unwrap();
    assert_eq!(
        before.iter().map(|r| r.state).collect::<Vec<_>>(),
        [RowState::Sent, RowState::Reserved]
    );
    assert_eq!(
        (before[0].call_id, before[0].try_number),
        (Some(before[0].id), Some(1)),
        "a call's first try names the call"
    );
    // Both held against the task: 40 000 + 7 000.
    assert_eq!(
        store.spent(CapLevel::Task, &scope("T-1", 1)).unwrap(),
        MicroUsd(47_000)
    );
    let recovery = store.recover(&owner_is_alive).unwrap();
    assert_eq!(
        (recovery.released, recovery.charged, recovery.charged_micros),
        (1, 1, MicroUsd(40_000))
    );
    let rows = store.rows().unwrap();
    assert_eq!(
        (rows[0].state, rows[0].charged),
        (RowState::Settled, MicroUsd(40_000))
    );
    assert!(
        rows[0].usage_missing && rows[0].recovered,
        "the charge is flagged"
    );
    assert_eq!(
        (rows[1].state, rows[1].charged),
        (RowState::Released, MicroUsd(0))
    );
    assert_eq!(
        store.spent(CapLevel::Task, &scope("T-1", 1)).unwrap(),
        MicroUsd(40_000)
    );
    // Recovering again changes nothing: charged once.
    assert_eq!(store.recover(&owner_is_alive).unwrap(), Default::default());
    assert_eq!(
        store.spent(CapLevel::Task, &scope("T-1", 1)).unwrap(),
        MicroUsd(40_000)
    );
}

/// A reservation made as sent is checked against the caps like any other, is already on the
/// wire (it cannot be released as unsent, nor marked sent again), and ends by settlement or
/// by release as unbilled. A task cap of 50 000 µ$ and tries of 40 000 and 20 000 µ$.
fn a_reservation_made_as_sent_follows_the_protocol(backend: Backend) {
    let db = backend.fresh();
    let store = db.open();
    let caps = [CapLimit {
        level: CapLevel::Task,
        limit: MicroUsd(50_000),
    }];
    let first = store
        .try_reserve_sent(&scope("T-1", 1), CallTry::FIRST, MicroUsd(40_000), &caps)
        .unwrap();
    assert_eq!(
        first.call_id, first.id.0,
        "a call's first try names the call"
    );
    let row = &store.rows().unwrap()[0];
    assert_eq!(
        (row.state, row.reserved, row.call_id, row.try_number),
        (RowState::Sent, MicroUsd(40_000), Some(first.id.0), Some(1))
    );
    let second_try = CallTry {
        call_id: Some(first.call_id),
        number: 2,
    };
    // 40 000 held + 20 000 > 50 000: refused, and nothing written.
    assert_eq!(
        store.try_reserve_sent(&scope("T-1", 1), second_try, MicroUsd(20_000), &caps),
        Err(StoreError::CapExceeded {
            level: CapLevel::Task,
            limit: MicroUsd(50_000),
            spent: MicroUsd(40_000),
            needed: MicroUsd(20_000),
        })
    );
    assert_eq!(store.rows().unwrap().len(), 1);
    assert!(matches!(
        store.release(first.id),
        Err(StoreError::WrongState { .. })
    ));
    assert!(matches!(
        store.mark_sent(first.id),
        Err(StoreError::WrongState { .. })
    ));
    // Not billed after all: the try stays counted, its reservation goes back.
    store
        .release_unbilled(first.id, 3, "not billed: connection refused")
        .unwrap();
    assert_eq!(
        store.spent(CapLevel::Task, &scope("T-1", 1)).unwrap(),
        MicroUsd(0)
    );
    let second = store
        .try_reserve_sent(&scope("T-1", 1), second_try, MicroUsd(20_000), &caps)
        .unwrap();
    assert_eq!(second.call_id, first.id.0);
    let settled = store
        .settle(
            second.id,
            &gaffer::store::Settlement {
                tokens: Default::default(),
                prices: Default::default(),
                cost: Some(MicroUsd(12_000)),
                wall_ms: 5,
                outcome: "ok".into(),
            },
        )
        .unwrap();
    assert_eq!(
        (settled.charged, settled.overrun, settled.usage_missing),
        (MicroUsd(12_000), false, false)
    );
    let rows = store.rows().unwrap();
    assert_eq!(
        rows.iter()
            .map(|r| (r.state, r.charged, r.call_id, r.try_number, r.is_try()))
            .collect::<Vec<_>>(),
        [
            (
                RowState::Released,
                MicroUsd(0),
                Some(first.id.0),
                Some(1),
                true
            ),
            (
                RowState::Settled,
                MicroUsd(12_000),
                Some(first.id.0),
                Some(2),
                true
            ),
        ]
    );
    assert_eq!(
        store.spent(CapLevel::Task, &scope("T-1", 1)).unwrap(),
        MicroUsd(12_000)
    );
}

fn recovery_leaves_live_owners_alone(backend: Backend) {
    let db = backend.fresh();
    let store = db.open();
    let id = store
        .try_reserve(&scope("T-1", 1), CallTry::FIRST, MicroUsd(5), &[])
        .unwrap()
        .id;
    store.mark_sent(id).unwrap();
    assert_eq!(store.recover(&owner_is_alive).unwrap(), Default::default());
    assert_eq!(store.rows().unwrap()[0].state, RowState::Sent);
}

fn plugin_runs_are_rows_with_fuel_and_no_money(backend: Backend) {
    let db = backend.fresh();
    let store = db.open();
    let mut s = scope("T-1", 1);
    s.stage = Stage::Route;
    s.role = Role::Router;
    s.model = "cost-tier".into();
    s.phase = None;
    store.record_plugin_run(&s, 29_919, 0, "ok").unwrap();
    let row = &store.rows().unwrap()[0];
    assert_eq!(
        (row.fuel, row.charged, row.reserved, row.state),
        (29_919, MicroUsd(0), MicroUsd(0), RowState::Settled)
    );
    assert_eq!(row.scope.role, Role::Router);
}

#[test]
fn a_newer_schema_is_refused_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gaffer.db");
    drop(SqliteStore::open(&path).unwrap());
    let conn = rusqlite_free_bump(&path);
    assert!(conn);
    let error = SqliteStore::open(&path).unwrap_err().to_string();
    assert!(error.contains("gaffer.db"), "{error}");
    assert!(error.contains("newer than this gaffer knows"), "{error}");
}

/// Raise the schema version past what this gaffer knows, without a SQLite crate in the tests:
/// through the sqlite3 shell if present, else by patching the header's user_version field.
fn rusqlite_free_bump(path: &std::path::Path) -> bool {
    // Checkpoint the WAL into the main file first by reopening and closing.
    drop(SqliteStore::open(path).unwrap());
    let mut bytes = std::fs::read(path).unwrap();
    // The user_version is the big-endian u32 at offset 60 of the database header.
    bytes[60..64].copy_from_slice(&99u32.to_be_bytes());
    std::fs::write(path, bytes).is_ok()
}

/// The caps read running totals; whatever happens to the rows, the totals must equal what the
/// rows say (settled at their charge, open at their reservation, released at nothing).
fn cap_totals_always_equal_what_the_rows_say(backend: Backend) {
    let db = backend.fresh();
    let store = db.open();
    let settle = |cost: Option<MicroUsd>| gaffer::store::Settlement {
        tokens: Default::default(),
        prices: Default::default(),
        cost,
        wall_ms: 0,
        outcome: "ok".into(),
    };
    let a = store
        .try_reserve(&scope("T-1", 1), CallTry::FIRST, MicroUsd(1_000), &[])
        .unwrap()
        .id;
    let b = store
        .try_reserve(&scope("T-1", 2), CallTry::FIRST, MicroUsd(2_000), &[])
        .unwrap()
        .id;
    let c = store
        .try_reserve(&scope("T-2", 1), CallTry::FIRST, MicroUsd(3_000), &[])
        .unwrap()
        .id;
    let d = store
        .try_reserve(&scope("T-2", 1), CallTry::FIRST, MicroUsd(4_000), &[])
        .unwrap()
        .id;
    store.mark_sent(a).unwrap();
    store.settle(a, &settle(Some(MicroUsd(250)))).unwrap(); // under its reservation
    store.mark_sent(b).unwrap();
    store.settle(b, &settle(Some(MicroUsd(9_000)))).unwrap(); // an overrun
    store.release(c).unwrap();
    store.mark_sent(d).unwrap(); // left open
    let rows = store.rows().unwrap();
    let by_rows = |keep: &dyn Fn(&LedgerRowLite) -> bool| -> u64 {
        rows.iter()
            .map(|r| LedgerRowLite {
                task: r.scope.task_id.clone(),
                attempt: r.scope.attempt,
                state: r.state,
                reserved: r.reserved.get(),
                charged: r.charged.get(),
            })
            .filter(|r| keep(r))
            .map(|r| match r.state {
                RowState::Settled => r.charged,
                RowState::Reserved | RowState::Sent => r.reserved,
                RowState::Released => 0,
            })
            .sum()
    };
    // By hand: T-1 = 250 + 9 000; T-2 = 0 (released) + 4 000 (open); the run = 13 250.
    assert_eq!(
        store.spent(CapLevel::Task, &scope("T-1", 1)).unwrap(),
        MicroUsd(9_250)
    );
    assert_eq!(
        store.spent(CapLevel::Task, &scope("T-2", 1)).unwrap(),
        MicroUsd(4_000)
    );
    assert_eq!(
        store.spent(CapLevel::Attempt, &scope("T-1", 2)).unwrap(),
        MicroUsd(9_000)
    );
    assert_eq!(
        store.spent(CapLevel::Run, &scope("T-1", 1)).unwrap(),
        MicroUsd(13_250)
    );
    assert_eq!(
        store.spent(CapLevel::Run, &scope("T-1", 1)).unwrap().get(),
        by_rows(&|_| true)
    );
    assert_eq!(
        store.spent(CapLevel::Day, &scope("T-1", 1)).unwrap(),
        MicroUsd(13_250)
    );
    assert_eq!(
        store.spent(CapLevel::Month, &scope("T-1", 1)).unwrap(),
        MicroUsd(13_250)
    );
    assert_eq!(
        store.spent(CapLevel::Model, &scope("T-9", 1)).unwrap(),
        MicroUsd(13_250),
        "all calls used `cheap`"
    );
    assert_eq!(
        store.spent(CapLevel::Task, &scope("T-2", 1)).unwrap().get(),
        by_rows(&|r| r.task.as_deref() == Some("T-2"))
    );
    // Recovery of the open one (its owner "dies") leaves its total where it is: charged as reserved.
    let recovered = store.recover(&|_| false).unwrap();
    assert_eq!(recovered.charged, 1);
    assert_eq!(
        store.spent(CapLevel::Task, &scope("T-2", 1)).unwrap(),
        MicroUsd(4_000)
    );
}

struct LedgerRowLite {
    task: Option<String>,
    #[allow(dead_code)]
    attempt: Option<u32>,
    state: RowState,
    reserved: u64,
    charged: u64,
}

/// The database's name in a test server's URL (`postgres://gaffer@localhost/<name>?host=…`).
fn database_name(url: &str) -> String {
    let path = url.split('?').next().unwrap_or(url);
    path.rsplit('/').next().unwrap_or_default().to_string()
}

#[test]
fn a_newer_postgres_schema_is_refused_naming_the_database() {
    let db = Backend::Postgres.fresh();
    drop(db.open());
    let name = database_name(&db.location);
    support::postgres::server().psql(&name, "UPDATE gaffer_schema SET version = 99");
    let url = gaffer::store::postgres::StoreUrl::from_command_line(&db.location).unwrap();
    let error = gaffer::store::PostgresStore::open(&url)
        .unwrap_err()
        .to_string();
    assert!(error.contains(&name), "{error}");
    assert!(error.contains("newer than this gaffer knows"), "{error}");
}

/// Hosts starting together on an empty store: one creates and migrates it, the others wait for
/// it and find the schema done; all of them work.
fn hosts_opening_a_new_store_at_once_migrate_it_once(backend: Backend) {
    let db = backend.fresh();
    let barrier = Arc::new(Barrier::new(6));
    let handles: Vec<_> = (0..6)
        .map(|i| {
            let location = db.location.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let store = open_location(&location);
                store
                    .try_reserve(
                        &scope(&format!("T-{i}"), 1),
                        CallTry::FIRST,
                        MicroUsd(1),
                        &[],
                    )
                    .unwrap();
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    assert_eq!(db.open().rows().unwrap().len(), 6);
    if backend == Backend::Postgres {
        let name = database_name(&db.location);
        let server = support::postgres::server();
        let version = server.psql(&name, "SELECT version FROM gaffer_schema");
        assert_eq!(version.trim(), "2");
        let indexes = server.psql(
            &name,
            "SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes WHERE tablename = 'ledger'",
        );
        assert_eq!(indexes.trim(), "ledger_open,ledger_pkey,ledger_task");
    }
}

/// A model call's ledger writes run on the caller's thread when they can (the hand-off to
/// the blocking pool cost more than the writes), but never wait there: while another process
/// holds SQLite's write lock, the store, asked not to wait, refuses and writes nothing, and the
/// ledger's reservation waits for the lock off the runtime, whose other tasks go on meanwhile.
#[test]
fn a_ledger_write_that_must_wait_for_another_process_waits_off_the_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gaffer.db");
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    // Another process's transaction: a connection of its own, holding the write lock.
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();

    let refused = without_waiting(|| {
        store.try_reserve_sent(&scope("T-1", 1), CallTry::FIRST, MicroUsd(1_000), &[])
    });
    assert!(matches!(refused, Err(StoreError::WouldWait)), "{refused:?}");
    assert!(store.rows().unwrap().is_empty(), "a refused write wrote");

    let ledger = Ledger::new(store.clone(), Caps::default());
    let ticks = Arc::new(AtomicUsize::new(0));
    // The other process commits once this runtime's other task has ticked five times, which
    // it can only do if the waiting reservation leaves the runtime's one thread free (after
    // 20 s it commits anyway, and the count below fails the test).
    let holder = {
        let ticks = Arc::clone(&ticks);
        std::thread::spawn(move || {
            let started = std::time::Instant::now();
            while ticks.load(Ordering::SeqCst) < 5 && started.elapsed() < Duration::from_secs(20) {
                std::thread::sleep(Duration::from_millis(5));
            }
            other.execute_batch("COMMIT").unwrap();
        })
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let worst = WorstCase::Amount(MicroUsd(1_000));
    let reserved = runtime.block_on(async {
        let ticker = {
            let ticks = Arc::clone(&ticks);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    ticks.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        let reserved = ledger
            .reserve_sent(&scope("T-1", 1), CallTry::FIRST, worst, None)
            .await;
        ticker.abort();
        reserved
    });
    holder.join().unwrap();
    let reserved = reserved.unwrap();
    assert!(
        ticks.load(Ordering::SeqCst) >= 5,
        "the runtime stood still while the write waited"
    );
    let rows = store.rows().unwrap();
    assert_eq!(
        (rows.len(), rows[0].id, rows[0].state, rows[0].reserved),
        (1, reserved.id.0, RowState::Sent, MicroUsd(1_000))
    );
}

/// The other half: with no other writer, a call's reservation and settlement need no thread of
/// the blocking pool. Its only thread is kept busy until the call's writes are done, so a write
/// sent there would wait for it, and the call would time out.
#[test]
fn an_uncontended_call_books_without_the_blocking_pool() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("gaffer.db")).unwrap());
    let ledger = Ledger::new(store.clone(), Caps::default());
    let booked = support::without_the_blocking_pool(async {
        let worst = WorstCase::Amount(MicroUsd(5_000));
        let reservation = ledger
            .reserve_sent(&scope("T-1", 1), CallTry::FIRST, worst, None)
            .await?;
        ledger
            .settle_amount(
                &reservation,
                MicroUsd(3_000),
                TokenCounts::default(),
                Duration::from_millis(7),
                "ok",
            )
            .await
    });
    let settled = booked
        .expect("the call's writes waited for the blocking pool")
        .unwrap();
    assert_eq!(settled.charged, MicroUsd(3_000));
    let rows = store.rows().unwrap();
    assert_eq!(
        (rows.len(), rows[0].state, rows[0].charged, rows[0].wall_ms),
        (1, RowState::Settled, MicroUsd(3_000), 7)
    );
}
