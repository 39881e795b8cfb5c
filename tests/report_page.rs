//! The HTML report (`gaffer report --format html`) as a person sees it, in headless Chromium.
//!
//! A ledger written through the store's own API, with amounts chosen by hand, spread over
//! five days across a month's end: four tasks, three models, attempts rejected by the tests,
//! by a hook and by the verifier, one task out of budget. Its caps (day $2.00, month $5.00)
//! come from the project's gaffer.toml. In Chromium: every chart drew, the caps are mark
//! lines with their labels, no text of a chart overlaps another; the page's embedded JSON is
//! `gaffer report --format json`'s; every section of the text report is there. The replay
//! frontier page likewise. Screenshots: target/test-artifacts/report.png and
//! target/test-artifacts/replay-frontier.png.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::browser::{self, headless};
use support::ledger_rows;

use gaffer::ledger::Caps;
use gaffer::report::dashboard::Dashboard;
use gaffer::report::html::{self, CapLines};
use gaffer::report::{History, Options};
use gaffer::store::{
    AttemptOutcome, AttemptRecord, BacklogStore, CallTry, NewTask, Phase, RejectionCause, Role,
    RowScope, SqliteStore, Stage, TaskState,
};

const OWNER: &str = "tester:1";
const LEASE: Duration = Duration::from_secs(600);
/// A title that would close a `<script>` if the page did not escape it.
const NASTY_TITLE: &str = "Fix </script><b>bold</b> & \"quotes\"";

/// Every µ$ of the ledger below: 470 000 + 1 040 000 + 1 970 000 + 200 000.
const TOTAL: u64 = 3_680_000;

fn gaffer(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_gaffer"))
        .args(args)
        .current_dir(dir)
        .env("GAFFER_PLUGIN_CACHE", support::test_cache_dir())
        .output()
        .expect("gaffer runs");
    assert!(
        out.status.success(),
        "gaffer {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A model call of `cost` µ$ (reserved at twice that), measured.
fn call(store: &SqliteStore, scope: &RowScope, cost: u64) {
    let r = ledger_rows::send(store, scope, CallTry::FIRST, cost * 2);
    ledger_rows::settle(store, r, Some(cost), 1_000, 100);
}

fn agent(task: &str, attempt: u32, model: &str, phase: Phase) -> RowScope {
    RowScope {
        model: model.to_string(),
        phase: Some(phase),
        ..RowScope::attempt("run-1", task, attempt, Stage::Implement, Role::Agent)
    }
}

fn verifier(task: &str, attempt: u32, model: &str) -> RowScope {
    RowScope {
        model: model.to_string(),
        ..RowScope::attempt("run-1", task, attempt, Stage::Verify, Role::Verifier)
    }
}

/// Finish attempt `number` of `task`, leaving the task in `state`.
fn finish(
    store: &SqliteStore,
    task: &str,
    number: u32,
    model: &str,
    outcome: AttemptOutcome,
    cause: Option<RejectionCause>,
    state: TaskState,
) {
    let record = AttemptRecord {
        task_id: task.to_string(),
        number,
        run_id: "run-1".into(),
        model: model.to_string(),
        outcome,
        reasons: cause
            .map(|c| vec![format!("rejected by {}", c.name())])
            .unwrap_or_default(),
        turns: 4,
        tests_passed: Some(cause != Some(RejectionCause::Tests)),
        wall_ms: 1_000,
        rejected_by: cause,
        changed: Vec::new(),
        implementer: None,
        agent_cost: None,
    };
    store.finish_attempt(&record, OWNER, state, "done").unwrap();
}

/// Add a task and claim it (each task is worked through before the next is added).
fn start(store: &SqliteStore, title: &str, labels: &[&str]) -> String {
    store
        .add_tasks(&[NewTask {
            title: title.to_string(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            ..NewTask::default()
        }])
        .unwrap();
    store.claim(OWNER, LEASE).unwrap().unwrap().id
}

/// The project: a gaffer.toml with a day cap of $2.00, a month cap of $5.00 and a person at
/// $80/h for 1.5 h a task; a ledger of:
///
/// | task | day        | attempt                                       | µ$        |
/// |------|------------|-----------------------------------------------|-----------|
/// | T-1  | 2025-05-29 | 1 cheap implement, rejected by tests          | 120 000   |
/// |      |            | 2 mid implement + verifier, approved (merged) | 300 000 + 50 000 |
/// | T-2  | 2025-05-31 | 1 cheap explore, rejected by hooks            | 80 000    |
/// |      |            | 2 strong implement + verifier, approved       | 900 000 + 60 000 |
/// | T-3  | 2025-06-01 | 1 mid implement + verifier, rejected by it    | 400 000 + 70 000 |
/// |      | 2025-06-02 | 2 strong iterate, budget exhausted            | 1 500 000 |
/// | T-4  | 2025-06-02 | 1 cheap read-task + implement + verifier, approved | 10 000 + 150 000 + 40 000 |
///
/// Days: 05-29 470 000, 05-30 none, 05-31 1 040 000, 06-01 470 000, 06-02 1 700 000.
fn project() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(".gaffer")).unwrap();
    std::fs::write(
        dir.path().join("gaffer.toml"),
        "[project]\ntarget_branch = \"main\"\ntest_command = \"true\"\n\n\
         [budget]\nper_day = 2.00\nper_month = 5.00\n\n\
         [economics]\nhourly_rate = 80\nhours_per_task = 1.5\n",
    )
    .unwrap();
    let db = dir.path().join(".gaffer/gaffer.db");
    let store = SqliteStore::open(&db).unwrap().with_owner(OWNER);

    let t1 = start(&store, NASTY_TITLE, &["api"]);
    call(&store, &agent(&t1, 1, "cheap", Phase::Implement), 120_000);
    finish(
        &store,
        &t1,
        1,
        "cheap",
        AttemptOutcome::Rejected,
        Some(RejectionCause::Tests),
        TaskState::RejectedRequeued,
    );
    assert_eq!(store.claim(OWNER, LEASE).unwrap().unwrap().id, t1);
    call(&store, &agent(&t1, 2, "mid", Phase::Implement), 300_000);
    call(&store, &verifier(&t1, 2, "mid"), 50_000);
    finish(
        &store,
        &t1,
        2,
        "mid",
        AttemptOutcome::Approved,
        None,
        TaskState::Merged,
    );

    let t2 = start(&store, "Add a settings page", &["ui"]);
    call(&store, &agent(&t2, 1, "cheap", Phase::Explore), 80_000);
    finish(
        &store,
        &t2,
        1,
        "cheap",
        AttemptOutcome::Rejected,
        Some(RejectionCause::Hooks),
        TaskState::RejectedRequeued,
    );
    assert_eq!(store.claim(OWNER, LEASE).unwrap().unwrap().id, t2);
    call(&store, &agent(&t2, 2, "strong", Phase::Implement), 900_000);
    call(&store, &verifier(&t2, 2, "strong"), 60_000);
    finish(
        &store,
        &t2,
        2,
        "strong",
        AttemptOutcome::Approved,
        None,
        TaskState::Merged,
    );

    let t3 = start(&store, "Migrate the schema", &["api", "db"]);
    call(&store, &agent(&t3, 1, "mid", Phase::Implement), 400_000);
    call(&store, &verifier(&t3, 1, "mid"), 70_000);
    finish(
        &store,
        &t3,
        1,
        "mid",
        AttemptOutcome::Rejected,
        Some(RejectionCause::Verifier),
        TaskState::RejectedRequeued,
    );
    assert_eq!(store.claim(OWNER, LEASE).unwrap().unwrap().id, t3);
    call(&store, &agent(&t3, 2, "strong", Phase::Iterate), 1_500_000);
    finish(
        &store,
        &t3,
        2,
        "strong",
        AttemptOutcome::BudgetExhausted,
        None,
        TaskState::BudgetExhausted,
    );

    let t4 = start(&store, "Fix a typo", &["docs"]);
    call(&store, &agent(&t4, 1, "cheap", Phase::ReadTask), 10_000);
    call(&store, &agent(&t4, 1, "cheap", Phase::Implement), 150_000);
    call(&store, &verifier(&t4, 1, "cheap"), 40_000);
    finish(
        &store,
        &t4,
        1,
        "cheap",
        AttemptOutcome::Approved,
        None,
        TaskState::Merged,
    );
    drop(store);

    // Spread the rows over the days above.
    let db_conn = rusqlite::Connection::open(&db).unwrap();
    for (task, attempt, day) in [
        (&t1, 1, "2025-05-29"),
        (&t1, 2, "2025-05-29"),
        (&t2, 1, "2025-05-31"),
        (&t2, 2, "2025-05-31"),
        (&t3, 1, "2025-06-01"),
        (&t3, 2, "2025-06-02"),
        (&t4, 1, "2025-06-02"),
    ] {
        let changed = db_conn
            .execute(
                "UPDATE ledger SET day = ?1, month = ?2 WHERE task_id = ?3 AND attempt = ?4",
                rusqlite::params![day, &day[..7], task, attempt],
            )
            .unwrap();
        assert!(changed > 0, "{task} attempt {attempt}");
    }
    (dir, db)
}

/// The page `gaffer report --format html` writes for the project.
fn report_page(dir: &Path) -> String {
    gaffer(dir, &["report", "--format", "html", "--out", "report.html"]);
    std::fs::read_to_string(dir.join("report.html")).unwrap()
}

/// The text between `start` (exclusive) and the next `end`.
fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("no {start:?} in the page"))
        + start.len();
    let to = text[from..].find(end).expect("closed") + from;
    &text[from..to]
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
}

/// After the page's own scripts: for each chart, whether it drew an SVG, its shapes, its
/// visible text and every pair of texts whose rendered boxes overlap (by more than a pixel
/// both ways), written into `#layout-check` as JSON.
const LAYOUT_CHECK: &str = r#"<script>
setTimeout(function () {
  var out = [];
  document.querySelectorAll('figure[data-chart]').forEach(function (fig) {
    var svg = fig.querySelector('.chart svg');
    var boxes = [];
    if (svg) {
      svg.querySelectorAll('text').forEach(function (t) {
        var r = t.getBoundingClientRect();
        var style = getComputedStyle(t);
        if (r.width > 0 && r.height > 0 && t.textContent.trim() !== '' && style.display !== 'none'
            && style.visibility !== 'hidden' && style.opacity !== '0' && t.getAttribute('opacity') !== '0') {
          boxes.push({ text: t.textContent, r: r });
        }
      });
    }
    var overlaps = [];
    for (var i = 0; i < boxes.length; i++) {
      for (var j = i + 1; j < boxes.length; j++) {
        var a = boxes[i].r, b = boxes[j].r;
        var w = Math.min(a.right, b.right) - Math.max(a.left, b.left);
        var h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
        if (w > 1 && h > 1) { overlaps.push(boxes[i].text + ' × ' + boxes[j].text); }
      }
    }
    out.push({
      chart: fig.getAttribute('data-chart'),
      svg: !!svg,
      shapes: svg ? svg.querySelectorAll('path, rect').length : 0,
      texts: boxes.map(function (b) { return b.text; }),
      overlaps: overlaps
    });
  });
  var pre = document.createElement('pre');
  pre.id = 'layout-check';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
}, 300);
</script>"#;

/// Load `page` (a copy with [`LAYOUT_CHECK`] appended) in Chromium; the check's findings.
fn layout_of(dir: &Path, page: &str, name: &str) -> Vec<Value> {
    let checked = dir.join(format!("{name}-checked.html"));
    // The last `</body>`: the inlined library holds the text too.
    let end = page.rfind("</body>").expect("a body");
    std::fs::write(
        &checked,
        format!("{}{LAYOUT_CHECK}{}", &page[..end], &page[end..]),
    )
    .unwrap();
    let dom = headless(&dir.join(format!("{name}-profile")))
        .arg("--dump-dom")
        .arg(format!("file://{}", checked.display()))
        .output()
        .unwrap();
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let dom = String::from_utf8_lossy(&dom.stdout).to_string();
    let json = unescape(between(&dom, "<pre id=\"layout-check\">", "</pre>"));
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

/// A PNG of the file `page` at target/test-artifacts/`name`.
fn screenshot(dir: &Path, page: &Path, name: &str, size: &str) -> usize {
    browser::screenshot(
        &dir.join("shot-profile"),
        &format!("file://{}", page.display()),
        name,
        size,
    )
}

/// A chart's findings, by its name.
fn chart<'a>(layout: &'a [Value], name: &str) -> &'a Value {
    layout
        .iter()
        .find(|c| c["chart"] == name)
        .unwrap_or_else(|| panic!("no chart {name}: {layout:?}"))
}

fn texts(chart: &Value) -> Vec<String> {
    chart["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn every_chart_draws_with_its_caps_and_no_label_overlaps_another() {
    let (dir, _db) = project();
    let page = report_page(dir.path());
    let artifacts = support::workspace_root().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    std::fs::write(artifacts.join("report.html"), &page).unwrap();
    // ECharts once, in the head.
    assert_eq!(page.matches("Apache ECharts 6.1.0").count(), 1);
    assert!(page.find("Apache ECharts").unwrap() < page.find("</head>").unwrap());

    let layout = layout_of(dir.path(), &page, "report");
    assert_eq!(
        layout
            .iter()
            .map(|c| c["chart"].clone())
            .collect::<Vec<_>>(),
        ["spend", "per_task", "models", "phases", "outcomes"]
    );
    for c in &layout {
        assert_eq!(c["svg"], true, "{c}");
        assert!(c["shapes"].as_u64().unwrap() > 5, "{c}");
        assert_eq!(c["overlaps"], serde_json::json!([]), "labels overlap: {c}");
    }

    // The caps are mark lines with their labels; the month runs 05-29 to 06-02, gaps filled.
    let spend = texts(chart(&layout, "spend"));
    assert!(spend.contains(&"day cap $2.00".to_string()), "{spend:?}");
    assert!(spend.contains(&"month cap $5.00".to_string()), "{spend:?}");
    for legend in ["spend per day", "month to date"] {
        assert!(spend.contains(&legend.to_string()), "{spend:?}");
    }
    assert!(
        spend.iter().any(|t| t == "2025-05-29") && spend.iter().any(|t| t == "2025-06-02"),
        "{spend:?}"
    );
    // The chart data: 05-30 is a day without spend; month to date restarts on 06-01.
    let data: Value = serde_json::from_str(between(
        &page,
        "<script type=\"application/json\" class=\"gaffer-chart-data\">",
        "</script>",
    ))
    .unwrap();
    let s = &data["spend"];
    assert_eq!(
        s["days"],
        serde_json::json!([
            "2025-05-29",
            "2025-05-30",
            "2025-05-31",
            "2025-06-01",
            "2025-06-02"
        ])
    );
    assert_eq!(
        s["per_day"],
        serde_json::json!([0.47, 0.0, 1.04, 0.47, 1.7])
    );
    let to_date: Vec<f64> = s["month_to_date"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let want = [0.47, 0.47, 1.51, 0.47, 2.17];
    for (got, want) in to_date.iter().zip(want) {
        assert!((got - want).abs() < 1e-9, "{to_date:?}");
    }
    assert_eq!(
        (s["day_cap"].as_f64(), s["month_cap"].as_f64()),
        (Some(2.0), Some(5.0))
    );

    // Cost per task: $0.20, $0.47, $1.04 and $1.97 in bands of $0.20 (10 of them).
    let bins = data["per_task"]["bins"].as_array().unwrap();
    assert_eq!(bins.len(), 10);
    assert_eq!(bins[0]["label"], "$0.00–0.20");
    let counts: Vec<u64> = bins.iter().map(|b| b["count"].as_u64().unwrap()).collect();
    assert_eq!(counts, [0, 1, 1, 0, 0, 1, 0, 0, 0, 1]);

    // The other charts name what they show.
    let models = texts(chart(&layout, "models"));
    for m in ["cheap", "mid", "strong"] {
        assert!(models.contains(&m.to_string()), "{models:?}");
    }
    let phases = texts(chart(&layout, "phases"));
    for p in ["read-task", "explore", "implement", "iterate", "verify"] {
        assert!(phases.contains(&p.to_string()), "{phases:?}");
    }
    let outcomes = texts(chart(&layout, "outcomes"));
    for o in [
        "approved",
        "rejected: tests",
        "rejected: hooks",
        "rejected: verifier",
        "budget-exhausted",
    ] {
        assert!(outcomes.contains(&o.to_string()), "{outcomes:?}");
    }

    let bytes = screenshot(
        dir.path(),
        &dir.path().join("report.html"),
        "report.png",
        "1400,1500",
    );
    assert!(bytes > 30_000, "{bytes} bytes: a page with charts");
}

#[test]
fn the_pages_json_is_the_reports_and_every_section_of_the_text_report_is_there() {
    let (dir, _db) = project();
    let page = report_page(dir.path());

    // One source: the embedded JSON is what `--format json` prints.
    let embedded = between(
        &page,
        "<script type=\"application/json\" id=\"report-data\">",
        "</script>",
    );
    assert!(!embedded.contains('<'), "a title must not close the script");
    let embedded: Value = serde_json::from_str(embedded).unwrap();
    let printed: Value =
        serde_json::from_str(&gaffer(dir.path(), &["report", "--format", "json"])).unwrap();
    assert_eq!(embedded, printed);
    assert_eq!(embedded["total_micros"], TOTAL);
    assert_eq!(embedded["tasks"][0]["title"], NASTY_TITLE);
    // The title is text in the table, not markup.
    assert!(!page.contains("<b>bold</b>"));
    assert!(page.contains("Fix &lt;/script&gt;&lt;b&gt;bold&lt;/b&gt; &amp; &quot;quotes&quot;"));

    // The headline and how sure each dollar is (all measured here).
    assert!(page.contains(&format!("id=\"total\" data-micros=\"{TOTAL}\"")));
    assert!(
        page.contains("<b id=\"merged\">3</b> merged"),
        "three tasks merged"
    );
    // Not merged: T-1's first attempt 120 000, T-2's 80 000, T-3's 470 000 + 1 500 000.
    assert!(page.contains("id=\"unmerged\" data-micros=\"2170000\""));
    assert!(page.contains(&format!(
        "measured <b data-micros=\"{TOTAL}\">$3.680000</b> + estimated <b data-micros=\"0\">"
    )));
    assert!(page.contains("12 calls in 12 tries"), "{page}");
    // The verifier: 50 000 + 60 000 + 70 000 + 40 000.
    assert!(page.contains(
        "<p id=\"verifier\">The verifier's own model calls: <b data-micros=\"220000\">$0.2200</b>"
    ));
    for (cause, n) in [("tests", 1), ("hooks", 1), ("verifier", 1), ("other", 0)] {
        assert!(
            page.contains(&format!(
                "<tr data-cause=\"{cause}\"><td>{}</td><td class=\"num\">{n}</td></tr>",
                if cause == "verifier" {
                    "the verifier"
                } else {
                    cause
                }
            )),
            "rejections by {cause}"
        );
    }

    // Cost by phase, to the µ$: implement 120 000 + 300 000 + 900 000 + 400 000 + 150 000.
    for (phase, micros) in [
        ("read-task", 10_000),
        ("explore", 80_000),
        ("implement", 1_870_000),
        ("iterate", 1_500_000),
        ("verify", 220_000),
    ] {
        let row = between(&page, &format!("<tr data-phase=\"{phase}\">"), "</tr>");
        assert!(
            row.contains(&format!("data-micros=\"{micros}\"")),
            "{phase}: {row}"
        );
    }
    let order: Vec<usize> = ["read-task", "explore", "implement", "iterate", "verify"]
        .iter()
        .map(|p| page.find(&format!("<tr data-phase=\"{p}\">")).unwrap())
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "phases in work order"
    );

    // Tasks with their attempts; the out-of-budget task; models, labels, runs.
    let t3 = between(&page, "<tr class=\"task\" data-task=\"T-3\">", "</tr>");
    assert!(
        t3.contains("budget-exhausted") && t3.contains("data-micros=\"1970000\""),
        "{t3}"
    );
    assert!(page.contains("<span class=\"outcome\">rejected (tests)</span>"));
    assert!(page.contains("<span class=\"outcome\">rejected (hooks)</span>"));
    assert!(page.contains("<span class=\"outcome\">rejected (verifier)</span>"));
    assert!(page.contains("<span class=\"outcome\">budget-exhausted</span>"));
    assert_eq!(page.matches("<tr class=\"attempt\"").count(), 7);
    // cheap: 120 000 + 80 000 + 200 000; mid: 350 000 + 470 000; strong: 960 000 + 1 500 000.
    for (model, micros) in [("cheap", 400_000), ("mid", 820_000), ("strong", 2_460_000)] {
        let models = between(&page, "<table id=\"models\">", "</table>");
        let row = between(models, &format!("<tr data-name=\"{model}\">"), "</tr>");
        assert!(
            row.contains(&format!("data-micros=\"{micros}\"")),
            "{model}: {row}"
        );
    }
    let labels = between(&page, "<table id=\"labels\">", "</table>");
    // api: T-1 (470 000) and T-3 (1 970 000).
    let api = between(labels, "<tr data-name=\"api\">", "</tr>");
    assert!(api.contains("data-micros=\"2440000\""), "{api}");
    let runs = between(&page, "<table id=\"runs\">", "</table>");
    assert!(
        runs.contains("<td>2025-05-29</td><td>2025-06-02</td><td class=\"num\">4</td>"),
        "{runs}"
    );
    // Where agents fail, the projection (too thin: 4 tasks), the comparison with a person.
    let hardest = between(&page, "<p id=\"hardest\">", "</p>");
    assert!(
        hardest.starts_with("Where agents fail") && hardest.contains("T-3"),
        "{hardest}"
    );
    let projection = between(&page, "<p id=\"projection\" data-thin=\"true\">", "</p>");
    assert!(projection.contains("no monthly projection"), "{projection}");
    let human = between(&page, "<p id=\"human\">", "</p>");
    // 3 merged tasks × 1.5 h × $80.
    assert!(
        human.contains("a person at $80.00/h: $360.0000 for the 3 merged tasks"),
        "{human}"
    );

    // Without caps the spend chart says none is drawn.
    let store = SqliteStore::open(dir.path().join(".gaffer/gaffer.db")).unwrap();
    let report = History::read(&store).unwrap().report(&Options::default());
    let bare = html::render(&report, CapLines::default(), "no caps");
    assert!(bare.contains("no day cap is configured, so none is drawn"));
    assert!(bare.contains("no month cap is configured, so none is drawn"));
    let data = html::chart_data(&report, CapLines::default());
    assert!(data["spend"]["day_cap"].is_null() && data["spend"]["month_cap"].is_null());
}

#[test]
fn the_replay_frontier_is_a_page_with_every_policy_the_frontier_and_the_choice() {
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("frontier.html");
    let data = support::workspace_root().join("examples/data/swebench-verified-outcomes.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_gaffer"))
        .arg("replay")
        .arg("--data")
        .arg(&data)
        .args([
            "--search",
            "--candidates",
            "deepseek-v3.2-reasoner,gemini-3-pro-preview,claude-4-sonnet-20250514",
            "--max-length",
            "2",
            "--plot",
        ])
        .arg(&plot)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = std::fs::read_to_string(&plot).unwrap();
    let points: Value = serde_json::from_str(between(
        &page,
        "<script type=\"application/json\" id=\"frontier-data\">",
        "</script>",
    ))
    .unwrap();
    let points = points.as_array().unwrap();
    // Three singles and six ordered pairs.
    assert_eq!(points.len(), 9);
    let chosen: Vec<&Value> = points.iter().filter(|p| p["chosen"] == true).collect();
    assert_eq!(chosen.len(), 1);
    assert_eq!(chosen[0]["frontier"], true, "the choice is on the frontier");
    // No point on the frontier is beaten by another.
    for p in points.iter().filter(|p| p["frontier"] == true) {
        let (cost, solved) = (p["cost_micros"].as_u64(), p["solved"].as_u64());
        assert!(
            !points
                .iter()
                .any(|q| q["cost_micros"].as_u64() < cost && q["solved"].as_u64() >= solved)
        );
    }

    let layout = layout_of(dir.path(), &page, "frontier");
    let c = chart(&layout, "frontier");
    assert_eq!(c["svg"], true);
    assert_eq!(c["overlaps"], serde_json::json!([]), "labels overlap: {c}");
    let labels = texts(c);
    for t in [
        "other policies",
        "Pareto frontier",
        "chosen",
        "tasks solved",
    ] {
        assert!(labels.contains(&t.to_string()), "{labels:?}");
    }
    assert!(
        labels.contains(&chosen[0]["name"].as_str().unwrap().to_string()),
        "the chosen policy is named on the plot: {labels:?}"
    );
    let bytes = screenshot(dir.path(), &plot, "replay-frontier.png", "1100,900");
    assert!(bytes > 20_000, "{bytes} bytes");
}

#[test]
fn the_dashboards_charts_draw_with_the_caps_and_no_overlap_on_the_same_ledger() {
    // The dashboard draws the report's charts with the same code; its page as served, on the
    // ledger of several days, models, rejections and a budget-exhausted task, with its caps.
    let (dir, db) = project();
    let dashboard = Dashboard {
        store: std::sync::Arc::new(SqliteStore::open(&db).unwrap()),
        caps: Caps {
            per_day: Some(gaffer::store::MicroUsd(2_000_000)),
            per_month: Some(gaffer::store::MicroUsd(5_000_000)),
            ..Caps::default()
        },
        title: "gaffer · several days".to_string(),
        repo: None,
    };
    let page = dashboard.page().unwrap();
    assert_eq!(page.matches("Apache ECharts 6.1.0").count(), 1);
    let layout = layout_of(dir.path(), &page, "dashboard");
    assert_eq!(layout.len(), 5, "{layout:?}");
    for c in &layout {
        assert_eq!(c["svg"], true, "{c}");
        assert!(c["shapes"].as_u64().unwrap() > 5, "{c}");
        assert_eq!(c["overlaps"], serde_json::json!([]), "labels overlap: {c}");
    }
    let spend = texts(chart(&layout, "spend"));
    assert!(spend.contains(&"day cap $2.00".to_string()), "{spend:?}");
    assert!(spend.contains(&"month cap $5.00".to_string()), "{spend:?}");
    let outcomes = texts(chart(&layout, "outcomes"));
    assert!(
        outcomes.contains(&"budget-exhausted".to_string()),
        "{outcomes:?}"
    );
}
