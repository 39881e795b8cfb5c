//! `gaffer report` and `gaffer status` over ledgers written through the store's own API, with
//! amounts chosen by hand: how sure each dollar is (measured, estimated, overrun) in every
//! format, adding up to the ledger to the micro-dollar; settled against reserved in `status`;
//! rejections by cause; a projection refused on too thin a basis; the comparison with a person
//! on like terms. Every expected figure is worked out here, not read from the code under test.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use gaffer::ledger::Caps;
use gaffer::report::dashboard::Status;
use gaffer::report::{History, HumanRates, Options, build};
use gaffer::store::{
    AttemptOutcome, AttemptRecord, BacklogStore, CallTry, LedgerRow, LedgerStore, MicroUsd,
    NewTask, Prices, RejectionCause, Reserved, Role, RowState, SqliteStore, TaskRecord, TaskState,
    TokenCounts,
};

use support::ledger_rows::{self, scope, send};

const OWNER: &str = "tester:1";
const GHOST: &str = "ghost:1";
const LEASE: Duration = Duration::from_secs(600);

/// A project directory with a store in `.gaffer/`, as `gaffer init` leaves it (no
/// configuration: the commands report without caps).
fn project() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(".gaffer")).unwrap();
    let store = SqliteStore::open(dir.path().join(".gaffer/gaffer.db"))
        .unwrap()
        .with_owner(OWNER);
    (dir, store)
}

fn gaffer(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_gaffer"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("gaffer runs");
    assert!(
        out.status.success(),
        "gaffer {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn task(title: &str) -> NewTask {
    NewTask {
        title: title.to_string(),
        body: String::new(),
        ..NewTask::default()
    }
}

/// Settle a sent try at `cost` µ$ (`None`: the provider reported no usage), 1 000 in, 100 out.
fn settle(store: &SqliteStore, r: Reserved, cost: Option<u64>) {
    ledger_rows::settle(store, r, cost, 1_000, 100);
}

fn record(
    task: &str,
    number: u32,
    run: &str,
    model: &str,
    outcome: AttemptOutcome,
) -> AttemptRecord {
    AttemptRecord {
        task_id: task.to_string(),
        number,
        run_id: run.to_string(),
        model: model.to_string(),
        outcome,
        reasons: Vec::new(),
        turns: 3,
        tests_passed: Some(true),
        wall_ms: 100,
        // As recorded before schema 7: the cause is read from the reasons.
        rejected_by: None,
        changed: Vec::new(),
        implementer: None,
        agent_cost: None,
    }
}

fn micros_of_csv(text: &str) -> u64 {
    let (whole, frac) = text.split_once('.').unwrap();
    whole.parse::<u64>().unwrap() * 1_000_000 + frac.parse::<u64>().unwrap()
}

/// Three tasks over two runs:
/// - T-1 (run-1, merged, model `cheap`): call A tried twice — try 1 settles at 40 000 µ$ from
///   its usage (measured), try 2 without usage is charged its 100 000 reservation (estimated);
///   the verifier's call B reserves 50 000 and costs 70 000 (overrun); a plugin run costs 0.
/// - T-2 (run-2, needs-human after a hook rejection, model `strong`): call C reserved at
///   200 000 and sent by a process that died; recovery charges the reservation (estimated).
/// - T-3 (run-2, running): call D holds a 30 000 reservation on the wire (not charged).
///
/// Charged: measured 40 000 + estimated 300 000 + overrun 70 000 = 410 000 µ$.
fn certainty_ledger() -> (tempfile::TempDir, SqliteStore) {
    let (dir, store) = project();
    store
        .add_tasks(&[task("Measured, estimated, overrun")])
        .unwrap();
    let t1 = store.claim(OWNER, LEASE).unwrap().unwrap().id;
    let agent = scope("run-1", &t1, 1, Role::Agent, "cheap");
    let a1 = send(&store, &agent, CallTry::FIRST, 100_000);
    settle(&store, a1, Some(40_000));
    let a2 = send(
        &store,
        &agent,
        CallTry {
            call_id: Some(a1.call_id),
            number: 2,
        },
        100_000,
    );
    settle(&store, a2, None);
    let verifier = scope("run-1", &t1, 1, Role::Verifier, "cheap");
    let b = send(&store, &verifier, CallTry::FIRST, 50_000);
    settle(&store, b, Some(70_000));
    store
        .record_plugin_run(&verifier, 1_000, 5, "approve")
        .unwrap();
    store
        .finish_attempt(
            &record(&t1, 1, "run-1", "cheap", AttemptOutcome::Approved),
            OWNER,
            TaskState::Merged,
            "approved",
        )
        .unwrap();

    store.add_tasks(&[task("Recovered after a crash")]).unwrap();
    let t2 = store.claim(OWNER, LEASE).unwrap().unwrap().id;
    let ghost = SqliteStore::open(dir.path().join(".gaffer/gaffer.db"))
        .unwrap()
        .with_owner(GHOST);
    send(
        &ghost,
        &scope("run-2", &t2, 1, Role::Agent, "strong"),
        CallTry::FIRST,
        200_000,
    );
    let mut rejected = record(&t2, 1, "run-2", "strong", AttemptOutcome::Rejected);
    rejected.reasons = vec!["protected-paths: .env: may not be changed".into()];
    store
        .finish_attempt(&rejected, OWNER, TaskState::NeedsHuman, "the rules")
        .unwrap();

    store.add_tasks(&[task("Still running")]).unwrap();
    let t3 = store.claim(OWNER, LEASE).unwrap().unwrap().id;
    send(
        &store,
        &scope("run-2", &t3, 1, Role::Agent, "strong"),
        CallTry::FIRST,
        30_000,
    );
    let recovery = store.recover(&|owner: &str| owner != GHOST).unwrap();
    assert_eq!(
        recovery.charged, 1,
        "only the dead process's call is recovered"
    );
    (dir, store)
}

#[test]
fn the_report_says_how_sure_each_dollar_is_in_every_format() {
    let (dir, store) = certainty_ledger();
    let ledger: u64 = store.rows().unwrap().iter().map(|r| r.charged.get()).sum();
    assert_eq!(ledger, 410_000, "the ledger holds what was written");

    let json: serde_json::Value =
        serde_json::from_str(&gaffer(dir.path(), &["report", "--format", "json"])).unwrap();
    assert_eq!(json["total_micros"], 410_000);
    let c = &json["certainty"];
    assert_eq!(c["measured_micros"], 40_000);
    assert_eq!(c["estimated_micros"], 300_000);
    assert_eq!(c["overrun_micros"], 70_000);
    // A, B, C and D are four calls; A was tried twice: five tries.
    assert_eq!(
        (c["calls"].as_u64(), c["tries"].as_u64()),
        (Some(4), Some(5))
    );
    assert_eq!(c["usage_missing_tries"], 1);
    assert_eq!(c["recovered_tries"], 1);
    assert_eq!(c["overrun_tries"], 1);
    assert_eq!(json["open_reserved_micros"], 30_000);
    assert_eq!(json["verifier_micros"], 70_000);

    let tasks = json["tasks"].as_array().unwrap();
    let by_id = |id: &str| tasks.iter().find(|t| t["id"] == id).unwrap().clone();
    let t1 = by_id("T-1");
    assert_eq!(t1["cost_micros"], 210_000);
    assert_eq!(t1["certainty"]["measured_micros"], 40_000);
    assert_eq!(t1["certainty"]["estimated_micros"], 100_000);
    assert_eq!(t1["certainty"]["overrun_micros"], 70_000);
    assert_eq!(t1["certainty"]["calls"], 2);
    assert_eq!(t1["certainty"]["tries"], 3);
    assert_eq!(t1["verifier_micros"], 70_000);
    assert_eq!(t1["attempts"][0]["verifier_micros"], 70_000);
    let t2 = by_id("T-2");
    assert_eq!(t2["cost_micros"], 200_000);
    assert_eq!(t2["certainty"]["estimated_micros"], 200_000);
    assert_eq!(t2["certainty"]["recovered_tries"], 1);
    let t3 = by_id("T-3");
    assert_eq!(t3["cost_micros"], 0);
    assert_eq!(t3["certainty"]["tries"], 1);

    // Per model: attempts routed to `cheap` hold A and B; to `strong`, C and D.
    let models = json["models"].as_array().unwrap();
    let model = |name: &str| models.iter().find(|m| m["name"] == name).unwrap().clone();
    assert_eq!(model("cheap")["certainty"]["measured_micros"], 40_000);
    assert_eq!(model("cheap")["certainty"]["overrun_micros"], 70_000);
    assert_eq!(model("cheap")["certainty"]["tries"], 3);
    assert_eq!(model("strong")["certainty"]["estimated_micros"], 200_000);
    assert_eq!(model("strong")["certainty"]["calls"], 2);

    // Per run.
    let runs = json["runs"].as_array().unwrap();
    let run = |name: &str| runs.iter().find(|r| r["run"] == name).unwrap().clone();
    assert_eq!(run("run-1")["cost_micros"], 210_000);
    assert_eq!(run("run-1")["tasks"], 1);
    assert_eq!(run("run-2")["cost_micros"], 200_000);
    assert_eq!(run("run-2")["certainty"]["estimated_micros"], 200_000);
    assert_eq!(run("run-2")["tasks"], 2);

    // Every level's parts add up to its cost.
    let parts = |v: &serde_json::Value| {
        ["measured_micros", "estimated_micros", "overrun_micros"]
            .iter()
            .map(|k| v["certainty"][k].as_u64().unwrap())
            .sum::<u64>()
    };
    for line in tasks.iter().chain(models).chain(runs) {
        assert_eq!(Some(parts(line)), line["cost_micros"].as_u64(), "{line}");
    }

    // CSV: one row per attempt; its certainty columns add up to the ledger.
    let csv = gaffer(dir.path(), &["report", "--format", "csv"]);
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let header = reader.headers().unwrap().clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 3, "{csv}");
    let sum = |name: &str| -> u64 { rows.iter().map(|r| micros_of_csv(&r[col(name)])).sum() };
    assert_eq!(sum("measured_usd"), 40_000);
    assert_eq!(sum("estimated_usd"), 300_000);
    assert_eq!(sum("overrun_usd"), 70_000);
    assert_eq!(sum("cost_usd"), ledger);
    assert_eq!(sum("verifier_usd"), 70_000);
    let t1_row = rows.iter().find(|r| &r[col("task")] == "T-1").unwrap();
    assert_eq!((&t1_row[col("calls")], &t1_row[col("tries")]), ("2", "3"));
    assert_eq!(&t1_row[col("run")], "run-1");
    let t2_row = rows.iter().find(|r| &r[col("task")] == "T-2").unwrap();
    assert_eq!(&t2_row[col("rejected_by")], "hooks");
    assert_eq!(&t2_row[col("recovered_tries")], "1");

    // Text: the total's parts to the µ$, and each task's.
    let text = gaffer(dir.path(), &["report"]);
    assert!(
        text.contains(
            "how sure: measured $0.040000 + estimated $0.300000 + overrun $0.070000 = $0.410000"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "how sure: measured $0.040000 + estimated $0.100000 + overrun $0.070000 · 2 calls, 3 tries = $0.210000"
        ),
        "{text}"
    );
    assert!(text.contains("4 calls in 5 tries"), "{text}");
    assert!(
        text.contains(
            "estimated tries: 1 without usage, 1 recovered after a crash; overrun tries: 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("held now in open reservations, not charged: $0.030000"),
        "{text}"
    );
    assert!(text.contains("verifier: $0.0700 of the total"), "{text}");
    assert!(text.contains("\nruns\n"), "{text}");

    // HTML: the parts in data attributes.
    gaffer(
        dir.path(),
        &["report", "--format", "html", "--out", "r.html"],
    );
    let html = std::fs::read_to_string(dir.path().join("r.html")).unwrap();
    assert!(
        html.contains("id=\"total\" data-micros=\"410000\""),
        "{html}"
    );
    assert!(
        html.contains("measured <b data-micros=\"40000\">"),
        "{html}"
    );
    assert!(
        html.contains("estimated <b data-micros=\"300000\">"),
        "{html}"
    );
    assert!(html.contains("overrun <b data-micros=\"70000\">"), "{html}");
    assert!(html.contains("<tr data-run=\"run-2\">"), "{html}");
}

#[test]
fn status_shows_settled_and_reserved_apart_at_every_level() {
    let (dir, store) = certainty_ledger();
    let caps = Caps {
        per_day: Some(MicroUsd(1_000_000)),
        per_month: Some(MicroUsd(5_000_000)),
        ..Caps::default()
    };
    let status = Status::read(&store, &caps).unwrap();
    // Settled: 410 000 µ$ charged; reserved: D's 30 000 on the wire; the caps count both.
    for level in ["day", "month", "all"] {
        let s = &status.spend[level];
        assert_eq!(s.settled_micros, MicroUsd(410_000), "{level}");
        assert_eq!(s.reserved_micros, MicroUsd(30_000), "{level}");
        assert_eq!(s.spent_micros, MicroUsd(440_000), "{level}");
    }
    assert_eq!(status.spend["day"].left_micros, Some(MicroUsd(560_000)));
    assert_eq!(status.spend["month"].left_micros, Some(MicroUsd(4_560_000)));
    assert_eq!(status.spend["all"].cap_micros, None);
    assert_eq!(status.spent_all_time_micros, MicroUsd(410_000));
    assert_eq!(status.running.len(), 1);
    let running = &status.running[0];
    assert_eq!(running.id, "T-3");
    assert_eq!(running.settled_micros, MicroUsd::ZERO);
    assert_eq!(running.reserved_micros, MicroUsd(30_000));

    // The command says the same, in JSON and in text.
    let json: serde_json::Value =
        serde_json::from_str(&gaffer(dir.path(), &["status", "--format", "json"])).unwrap();
    for level in ["day", "month", "all"] {
        assert_eq!(json["spend"][level]["settled_micros"], 410_000, "{level}");
        assert_eq!(json["spend"][level]["reserved_micros"], 30_000, "{level}");
    }
    assert_eq!(json["running"][0]["reserved_micros"], 30_000);
    let text = gaffer(dir.path(), &["status"]);
    let line = |name: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no {name} line in\n{text}"))
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    for level in ["day", "month", "all"] {
        assert_eq!(
            line(level)[1..4],
            ["$0.4100", "$0.0300", "$0.4400"],
            "{level}: {text}"
        );
    }
    assert!(
        text.contains("settled $0.0000 reserved $0.0300  Still running"),
        "{text}"
    );
}

/// Four tasks rejected once each, for a different cause, then approved; recorded as before
/// schema 7, without a cause, so the report reads it from the reasons.
#[test]
fn rejections_are_counted_by_cause() {
    let (dir, store) = project();
    let causes: [(&str, Vec<&str>, Option<bool>); 4] = [
        (
            "Hooked",
            vec!["protected-paths: .env: may not be changed"],
            Some(true),
        ),
        (
            "Tests fail",
            vec!["verifier: the tests failed: 1 failed"],
            Some(false),
        ),
        (
            "Reviewed",
            vec!["verifier: src/lib.rs:3: no docs"],
            Some(true),
        ),
        ("Nothing", vec!["the attempt changed nothing"], None),
    ];
    for (title, reasons, tests_passed) in causes {
        store.add_tasks(&[task(title)]).unwrap();
        let id = store.claim(OWNER, LEASE).unwrap().unwrap().id;
        let mut first = record(&id, 1, "run-1", "cheap", AttemptOutcome::Rejected);
        first.reasons = reasons.iter().map(|r| r.to_string()).collect();
        first.tests_passed = tests_passed;
        store
            .finish_attempt(&first, OWNER, TaskState::RejectedRequeued, "rejected")
            .unwrap();
        let again = store.claim(OWNER, LEASE).unwrap().unwrap();
        assert_eq!(again.id, id);
        store
            .finish_attempt(
                &record(&id, 2, "run-1", "cheap", AttemptOutcome::Approved),
                OWNER,
                TaskState::Merged,
                "approved",
            )
            .unwrap();
    }
    let json: serde_json::Value =
        serde_json::from_str(&gaffer(dir.path(), &["report", "--format", "json"])).unwrap();
    let r = &json["rejections"];
    assert_eq!(
        (&r["tests"], &r["hooks"], &r["verifier"], &r["other"]),
        (
            &serde_json::json!(1),
            &serde_json::json!(1),
            &serde_json::json!(1),
            &serde_json::json!(1)
        )
    );
    let tasks = json["tasks"].as_array().unwrap();
    let cause = |i: usize| tasks[i]["attempts"][0]["rejected_by"].clone();
    assert_eq!(
        [cause(0), cause(1), cause(2), cause(3)],
        ["hooks", "tests", "verifier", "other"].map(serde_json::Value::from)
    );
    // A hook's rejection is a rejection though its tests passed.
    assert_eq!(tasks[0]["rejections"]["hooks"], 1);
    assert_eq!(tasks[0]["test_failures"], 0);
    let text = gaffer(dir.path(), &["report"]);
    assert!(
        text.contains("rejected attempts: 1 by tests, 1 by hooks, 1 by the verifier, 1 other"),
        "{text}"
    );
    let hooked = text.lines().find(|l| l.contains("Hooked")).unwrap();
    assert!(hooked.contains(" 0/1/0 "), "{hooked}");
    assert!(text.contains("rejected (hooks)"), "{text}");
}

#[test]
fn a_projection_on_four_tasks_of_one_day_is_refused_as_too_thin() {
    let (dir, store) = project();
    // Four finished tasks today, at 10 000, 20 000, 30 000 and 40 001 µ$: 100 001 µ$, or
    // 25 000.25 → 25 000 µ$ a task.
    for (i, cost) in [10_000u64, 20_000, 30_000, 40_001].into_iter().enumerate() {
        store.add_tasks(&[task(&format!("Task {i}"))]).unwrap();
        let id = store.claim(OWNER, LEASE).unwrap().unwrap().id;
        let r = send(
            &store,
            &scope("run-1", &id, 1, Role::Agent, "cheap"),
            CallTry::FIRST,
            cost,
        );
        settle(&store, r, Some(cost));
        store
            .finish_attempt(
                &record(&id, 1, "run-1", "cheap", AttemptOutcome::Approved),
                OWNER,
                TaskState::Merged,
                "approved",
            )
            .unwrap();
    }
    let json: serde_json::Value = serde_json::from_str(&gaffer(
        dir.path(),
        &["report", "--format", "json", "--hourly-rate", "100"],
    ))
    .unwrap();
    let p = &json["projection"];
    assert_eq!(p["thin"], true);
    assert_eq!(p["finished_tasks"], 4);
    assert_eq!(p["days"], 1);
    assert_eq!(p["cost_per_task_micros"], 25_000);
    assert!(p["monthly_micros"].is_null(), "{p}");
    assert!(p["tasks_per_month"].is_null(), "{p}");
    assert!(json["human"]["monthly_micros"].is_null());
    let text = gaffer(dir.path(), &["report", "--hourly-rate", "100"]);
    assert!(
        text.contains(
            "no monthly projection: 4 finished tasks over 1 day with spend is too thin a basis \
             (it needs 20 finished tasks and 3 days); $0.0250 a finished task"
        ),
        "{text}"
    );
    assert!(!text.contains("month at"), "{text}");
    assert!(text.contains("no monthly comparison"), "{text}");
}

fn row(id: i64, task: &str, day: &str, charged: u64) -> LedgerRow {
    LedgerRow {
        id,
        scope: scope("run-1", task, 1, Role::Agent, "cheap"),
        state: RowState::Settled,
        reserved: MicroUsd(charged),
        charged: MicroUsd(charged),
        tokens: TokenCounts::default(),
        prices: Prices::default(),
        fuel: 0,
        wall_ms: 1,
        outcome: Some("ok".into()),
        overrun: false,
        usage_missing: false,
        recovered: false,
        call_id: Some(id),
        try_number: Some(1),
        owner: OWNER.into(),
        day: day.to_string(),
        month: day[..7].to_string(),
    }
}

/// Thirty finished tasks over three days, fifteen merged; each cost 10 000 µ$ (300 000 in all).
/// A person at $100/h for 2 h a task is paid only for the fifteen merged: $3 000, $200 each;
/// the agents' 300 000 µ$ over fifteen merged tasks is 20 000 µ$ each. The month: 10 tasks a
/// day is 300 a month, half merge: 150 merged tasks, $30 000 for a person, 3 000 000 µ$ for
/// the agents.
#[test]
fn a_person_is_compared_on_the_merged_tasks_only() {
    let mut tasks = Vec::new();
    let mut attempts = BTreeMap::new();
    let mut rows = Vec::new();
    for i in 0..30u32 {
        let id = format!("T-{}", i + 1);
        let merged = i % 2 == 0;
        tasks.push(TaskRecord {
            id: id.clone(),
            title: format!("Task {i}"),
            body: String::new(),
            labels: Vec::new(),
            paths: Vec::new(),
            source: None,
            state: if merged {
                TaskState::Merged
            } else {
                TaskState::NeedsHuman
            },
            stage: None,
            attempts: 1,
            reason: None,
            lease_owner: None,
        });
        let outcome = if merged {
            AttemptOutcome::Approved
        } else {
            AttemptOutcome::NeedsHuman
        };
        attempts.insert(id.clone(), vec![record(&id, 1, "run-1", "cheap", outcome)]);
        let day = ["2025-03-01", "2025-03-02", "2025-03-03"][(i / 10) as usize];
        rows.push(row(i64::from(i) + 1, &id, day, 10_000));
    }
    let report = build(
        &tasks,
        &attempts,
        &rows,
        &Options {
            human: Some(HumanRates {
                hourly: MicroUsd::dollars(100),
                hours_per_task: 2.0,
                hours_per_label: BTreeMap::new(),
            }),
            ..Options::default()
        },
    );
    let p = report.projection.as_ref().unwrap();
    assert!(!p.thin);
    assert_eq!((p.finished_tasks, p.days), (30, 3));
    assert_eq!(p.tasks_per_month, Some(300.0));
    assert_eq!(p.cost_per_task_micros, MicroUsd(10_000));
    assert_eq!(p.monthly_micros, Some(MicroUsd(3_000_000)));
    let h = report.human.as_ref().unwrap();
    assert_eq!(h.merged_tasks, 15);
    assert_eq!(h.merged_tasks_micros, MicroUsd::dollars(3_000));
    assert_eq!(h.agents_micros, MicroUsd(300_000));
    assert_eq!(h.person_per_merged_micros, Some(MicroUsd::dollars(200)));
    assert_eq!(h.agents_per_merged_micros, Some(MicroUsd(20_000)));
    assert_eq!(h.merged_per_month, Some(150.0));
    assert_eq!(h.monthly_micros, Some(MicroUsd::dollars(30_000)));
    assert_eq!(h.agents_monthly_micros, Some(MicroUsd(3_000_000)));
    assert!(h.basis.contains("15 merged tasks only"), "{}", h.basis);
    let text = gaffer::report::render_text(&report);
    assert!(
        text.contains(
            "month at 300 tasks (observed, from 30 finished tasks over 3 days with spend)"
        ),
        "{text}"
    );
    assert!(
        text.contains("per merged task: a person $200.0000, the agents $0.0200"),
        "{text}"
    );
    assert!(
        text.contains("a month at 150 merged tasks: a person $30000.0000, the agents $3.0000"),
        "{text}"
    );
    assert!(text.contains("basis: a person's hours for the 15 merged tasks only"));
}

/// Cost per merged task is rounded half up, and dollar columns have one width.
#[test]
fn per_merged_task_is_rounded_and_columns_have_one_width() {
    // Two merged tasks of 1 µ$ and 2 µ$: 3 µ$ over 2 is 1.5, rounded to 2 µ$ ($0.000002).
    let tasks: Vec<TaskRecord> = (1..=2)
        .map(|i| TaskRecord {
            id: format!("T-{i}"),
            title: format!("Task {i}"),
            body: String::new(),
            labels: Vec::new(),
            paths: Vec::new(),
            source: None,
            state: TaskState::Merged,
            stage: None,
            attempts: 1,
            reason: None,
            lease_owner: None,
        })
        .collect();
    let attempts: BTreeMap<String, Vec<AttemptRecord>> = tasks
        .iter()
        .map(|t| {
            (
                t.id.clone(),
                vec![record(&t.id, 1, "run-1", "cheap", AttemptOutcome::Approved)],
            )
        })
        .collect();
    let rows = vec![
        row(1, "T-1", "2025-03-01", 1),
        row(2, "T-2", "2025-03-01", 140_191_550),
    ];
    let report = build(&tasks, &attempts, &rows, &Options::default());
    let cheap = &report.models[0];
    // 140 191 551 / 2 = 70 095 775.5 → 70 095 776.
    assert_eq!(cheap.cost_per_merged_micros, Some(MicroUsd(70_095_776)));
    let text = gaffer::report::render_text(&report);
    assert!(text.contains("$70.0958"), "{text}");
    assert!(text.contains("$140.1916"), "{text}");
    assert!(text.contains("$0.0000"), "{text}");
}

#[test]
fn the_history_of_a_store_reports_what_build_does() {
    let (_dir, store) = certainty_ledger();
    let history = History::read(&store).unwrap();
    let report = history.report(&Options::default());
    assert_eq!(report.total_micros, MicroUsd(410_000));
    assert_eq!(report.certainty.total(), report.total_micros);
}

#[test]
fn a_try_the_provider_did_not_bill_is_counted_free() {
    // One call: its first try refused unbilled (a 429, released by the gateway), its second
    // answered at 12 345 µ$. By hand: 1 call, 2 tries, 1 of them free; 12 345 µ$ measured.
    let (dir, store) = project();
    store.add_tasks(&[task("Rate limited once")]).unwrap();
    let t = store.claim(OWNER, LEASE).unwrap().unwrap().id;
    let agent = scope("run-1", &t, 1, Role::Agent, "cheap");
    let first = send(&store, &agent, CallTry::FIRST, 90_000);
    store
        .release_unbilled(first.id, 3, "not billed: error: HTTP 429")
        .unwrap();
    let second = send(
        &store,
        &agent,
        CallTry {
            call_id: Some(first.call_id),
            number: 2,
        },
        90_000,
    );
    settle(&store, second, Some(12_345));
    store
        .finish_attempt(
            &record(&t, 1, "run-1", "cheap", AttemptOutcome::Approved),
            OWNER,
            TaskState::Merged,
            "approved",
        )
        .unwrap();

    let json: serde_json::Value =
        serde_json::from_str(&gaffer(dir.path(), &["report", "--format", "json"])).unwrap();
    let c = &json["certainty"];
    assert_eq!(c["calls"], 1);
    assert_eq!(c["tries"], 2);
    assert_eq!(c["unbilled_tries"], 1);
    assert_eq!(c["measured_micros"], 12_345);
    assert_eq!(c["estimated_micros"], 0);
    assert_eq!(json["total_micros"], 12_345);
    let text = gaffer(dir.path(), &["report"]);
    assert!(
        text.contains("1 calls in 2 tries") && text.contains("free tries (not billed): 1"),
        "{text}"
    );
    let csv = gaffer(dir.path(), &["report", "--format", "csv"]);
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let column = header.iter().position(|h| *h == "unbilled_tries").unwrap();
    let row: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(row[column], "1");
}

#[test]
fn the_recorded_cause_wins_over_what_the_reasons_look_like() {
    // A team hook named `verifier` writes reasons that read like the verifier's; the pipeline
    // recorded that hooks rejected it, and the report says so.
    let (dir, store) = project();
    store.add_tasks(&[task("Hook named verifier")]).unwrap();
    let id = store.claim(OWNER, LEASE).unwrap().unwrap().id;
    let mut first = record(&id, 1, "run-1", "cheap", AttemptOutcome::Rejected);
    first.reasons = vec!["verifier: layering: ui may not import db".into()];
    first.rejected_by = Some(RejectionCause::Hooks);
    store
        .finish_attempt(&first, OWNER, TaskState::RejectedRequeued, "rejected")
        .unwrap();
    assert_eq!(
        store.attempts(&id).unwrap()[0].rejected_by,
        Some(RejectionCause::Hooks),
        "the cause is stored"
    );
    let json: serde_json::Value =
        serde_json::from_str(&gaffer(dir.path(), &["report", "--format", "json"])).unwrap();
    assert_eq!(json["rejections"]["hooks"], 1);
    assert_eq!(json["rejections"]["verifier"], 0);
    assert_eq!(json["tasks"][0]["attempts"][0]["rejected_by"], "hooks");
}
