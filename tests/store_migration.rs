//! A database written by an earlier gaffer opens with this one: its schema migrates (the
//! vocabulary becomes CHECK constraints) and its ledger and backlog read back with the figures
//! the earlier gaffer printed. The fixture is the database `gaffer demo` then `gaffer run
//! --per-task 0.0002` left with the binary built at bb66ba5, and `expected.json` holds what that
//! binary's `gaffer report --format json` said of it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gaffer::report::{History, Options};
use gaffer::store::{
    AttemptOutcome, BacklogStore, LedgerStore, MicroUsd, Role, SqliteStore, Stage, TaskState,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/bb66ba5")
        .join(name)
}

/// A database file made from the fixture's SQL dump, with its schema version.
fn old_database(dir: &Path, edit: impl FnOnce(&rusqlite::Connection)) -> PathBuf {
    let path = dir.join("gaffer.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(&std::fs::read_to_string(fixture("gaffer.sql")).unwrap())
        .unwrap();
    edit(&conn);
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, 4, "the fixture is a version-4 database");
    path
}

fn expected() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("expected.json")).unwrap()).unwrap()
}

fn micros(v: &serde_json::Value) -> MicroUsd {
    MicroUsd(v.as_u64().unwrap())
}

#[test]
fn a_database_of_bb66ba5_migrates_and_its_figures_are_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = old_database(dir.path(), |_| {});
    let store = SqliteStore::open(&path).unwrap();
    let expected = expected();

    // The report over the migrated store says what the old binary said.
    let report = History::read(&store).unwrap().report(&Options::default());
    assert_eq!(report.total_micros, micros(&expected["total_micros"]));
    assert_eq!(report.unmerged_micros, micros(&expected["unmerged_micros"]));
    let tasks = expected["tasks"].as_object().unwrap();
    assert_eq!(report.tasks.len(), tasks.len());
    for line in &report.tasks {
        let old = &tasks[&line.id];
        assert_eq!(
            line.state.name(),
            old["state"].as_str().unwrap(),
            "{}",
            line.id
        );
        assert_eq!(line.cost_micros, micros(&old["cost_micros"]), "{}", line.id);
        assert_eq!(line.fuel, old["fuel"].as_u64().unwrap(), "{}", line.id);
        let old_attempts = old["attempts"].as_array().unwrap();
        assert_eq!(line.attempts.len(), old_attempts.len(), "{}", line.id);
        for (new, old) in line.attempts.iter().zip(old_attempts) {
            assert_eq!(new.number, old["number"].as_u64().unwrap() as u32);
            assert_eq!(new.model, old["model"].as_str().unwrap());
            assert_eq!(new.outcome, old["outcome"].as_str().unwrap());
            assert_eq!(new.cost_micros, micros(&old["cost_micros"]));
        }
    }
    let models: BTreeMap<String, MicroUsd> = report
        .models
        .iter()
        .map(|m| (m.name.clone(), m.cost_micros))
        .collect();
    for (name, cost) in expected["models"].as_object().unwrap() {
        assert_eq!(models[name], micros(cost), "{name}");
    }

    // The running cap totals came through the table rebuild row for row.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let totals: Vec<(String, String, i64)> = conn
        .prepare("SELECT level, scope, micros FROM cap_totals ORDER BY level, scope")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let old_totals: Vec<(String, String, i64)> = expected["cap_totals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t[0].as_str().unwrap().to_string(),
                t[1].as_str().unwrap().to_string(),
                t[2].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(totals, old_totals);

    // The old words read back as the new vocabulary.
    let rows = store.rows().unwrap();
    assert_eq!(rows.len(), 72);
    assert!(
        rows.iter()
            .any(|r| r.scope.role == Role::Hook && r.scope.stage == Stage::Check)
    );
    assert_eq!(
        store.task("T-5").unwrap().unwrap().state,
        TaskState::BudgetExhausted
    );
    let attempts = store.attempts("T-2").unwrap();
    assert_eq!(
        attempts.iter().map(|a| a.outcome).collect::<Vec<_>>(),
        [AttemptOutcome::Rejected, AttemptOutcome::Approved]
    );
    assert!(
        attempts.iter().all(|a| a.rejected_by.is_none()
            && a.changed.is_empty()
            && a.implementer.is_none()
            && a.agent_cost.is_none()),
        "an old attempt's cause, change, implementer and agent's figure are not made up"
    );

    // The schema now holds the vocabulary: a word the code cannot read back is refused.
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, 12);

    // The ledger keeps the indexes its queries use (a task's rows, the open reservations),
    // and no longer the four that every insert paid for and no query read.
    let indexes: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'ledger' AND sql IS NOT NULL ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(indexes, ["ledger_open", "ledger_task"]);

    // Each model call of before is a call of one try; plugin runs (which reserved nothing) are
    // no call. The fixture's model calls, counted in its own dump before the migration: every
    // row that reserved something.
    let dump = rusqlite::Connection::open_in_memory().unwrap();
    dump.execute_batch(&std::fs::read_to_string(fixture("gaffer.sql")).unwrap())
        .unwrap();
    let calls_before: Vec<i64> = dump
        .prepare("SELECT id FROM ledger WHERE reserved_micros > 0 ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(!calls_before.is_empty());
    let calls_after: Vec<i64> = rows
        .iter()
        .filter(|r| r.is_model_call())
        .map(|r| {
            assert_eq!(r.call_id, Some(r.id), "row {} is its own call", r.id);
            assert_eq!(r.try_number, Some(1), "row {} is a first try", r.id);
            r.id
        })
        .collect();
    assert_eq!(calls_after, calls_before);
    let refused = conn.execute(
        "UPDATE ledger SET stage = 'merge-ish' WHERE id = (SELECT MIN(id) FROM ledger)",
        [],
    );
    assert!(
        refused.is_err(),
        "a stage outside the vocabulary was stored"
    );
    let refused = conn.execute("UPDATE attempts SET outcome = 'parked'", []);
    assert!(
        refused.is_err(),
        "an outcome outside the vocabulary was stored"
    );
    // Opening again is a no-op.
    drop(store);
    SqliteStore::open(&path).unwrap();
}

#[test]
fn a_database_the_new_schema_cannot_hold_is_refused_and_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let path = old_database(dir.path(), |conn| {
        // A word no gaffer writes, put there by hand.
        conn.execute(
            "UPDATE attempts SET outcome = 'abandoned' WHERE task_id = 'T-1'",
            [],
        )
        .unwrap();
    });
    let error = SqliteStore::open(&path).unwrap_err().to_string();
    assert!(
        error.contains("migration to schema version 5 failed, the database is unchanged"),
        "{error}"
    );
    assert!(error.contains(&path.display().to_string()), "{error}");
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, 4);
    let rows: i64 = conn
        .query_row("SELECT COUNT(*) FROM ledger", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 72);
}
