//! `gaffer serve`, the place to watch a run from:
//! - over the offline demo's ledger in headless Chromium (`--dump-dom`): the live figures and
//!   the task table, filled in by the page's script, checked against the store;
//! - during a real run (the pipeline against the scripted provider, its calls slowed down), in
//!   Chromium driven over the DevTools protocol: a task seen queued, running, then merged in
//!   the same page without a reload, then its page opened from the table (screenshots in
//!   target/test-artifacts/dashboard-live.png and task-page.png);
//! - a request addressed to another host (DNS rebinding) refused;
//! - a task's page and its JSON against a ledger built by hand through the store's API, every
//!   expected figure worked out here.

mod support;

use support::browser::{self, artifacts, chromium, headless};
use support::ledger_rows::{scope, send, settle};

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gaffer::demo::pipeline::demo_config;
use gaffer::demo::sample;
use gaffer::demo::scripted_provider::ScriptedProvider;
use gaffer::ledger::Caps;
use gaffer::report::dashboard::{self, Dashboard};
use gaffer::store::{
    AttemptOutcome, AttemptRecord, BacklogStore, CallTry, ChangedFile, LedgerStore, MicroUsd,
    NewTask, RejectionCause, Role, SqliteStore, TaskState,
};
use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::{Browser, LaunchOptions, Tab};
use serde_json::Value;

/// A child process ended when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `gaffer serve --bind 127.0.0.1:0` in `dir`, and the URL it printed.
fn serve(dir: &Path) -> (Killed, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gaffer"))
        .args(["serve", "--bind", "127.0.0.1:0"])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let server = Killed(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_string();
    (server, url)
}

#[test]
fn the_dashboard_shows_the_ledgers_figures_in_a_real_browser() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let plugins = support::guest("cost-tier").parent().unwrap().to_path_buf();
    support::guest("tests-and-limits");
    support::guest("protected-paths");
    let demo = Command::new(env!("CARGO_BIN_EXE_gaffer"))
        .arg("demo")
        .arg(&dir)
        .arg("--plugins")
        .arg(&plugins)
        .env("GAFFER_PLUGIN_CACHE", support::test_cache_dir())
        .output()
        .unwrap();
    assert!(
        demo.status.success(),
        "{}",
        String::from_utf8_lossy(&demo.stderr)
    );
    let (_server, url) = serve(&dir);

    // What the store says.
    let store = SqliteStore::open(dir.join(".gaffer/gaffer.db")).unwrap();
    let tasks = store.tasks().unwrap();
    let merged = tasks
        .iter()
        .filter(|t| t.state == TaskState::Merged)
        .count();
    let total: u64 = store.rows().unwrap().iter().map(|r| r.charged.get()).sum();
    assert!(merged == 4 && total > 0);

    let profile = tmp.path().join("chromium-profile");
    let dom = headless(&profile)
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let dom = String::from_utf8_lossy(&dom.stdout).to_string();
    // The script ran and filled in the live figures from /api/status and /api/tasks.
    assert!(
        dom.contains("data-live=\"yes\""),
        "the page's script did not run:\n{dom}"
    );
    assert!(
        dom.contains(&format!("data-state=\"merged\">{merged}<")),
        "merged count:\n{dom}"
    );
    assert!(
        dom.contains(&format!("id=\"total\" data-micros=\"{total}\"")),
        "{dom}"
    );
    let dollars = format!("{}.{:06}", total / 1_000_000, total % 1_000_000);
    assert!(
        dom.contains(&format!("${}", dollars.trim_end_matches('0'))),
        "{dom}"
    );
    // Every task is a row of the table, in its state, linking to its page.
    for t in &tasks {
        assert!(
            dom.contains(&format!(
                "<tr data-task=\"{}\" data-state=\"{}\">",
                t.id,
                t.state.name()
            )),
            "{} in the table:\n{dom}",
            t.id
        );
        assert!(dom.contains(&format!("href=\"/tasks/{}\"", t.id)), "{dom}");
    }
    assert!(dom.contains(&format!("{n} of {n} tasks", n = tasks.len())));
    assert_eq!(
        dom.matches("<figure data-chart=").count(),
        5,
        "the report's charts"
    );

    let bytes = browser::screenshot(&profile, &url, "dashboard.png", "1280,1400");
    assert!(bytes > 10_000, "{bytes} bytes");
}

/// Chromium's executable by its full path (the DevTools client needs one).
fn chromium_path() -> PathBuf {
    let bin = PathBuf::from(chromium());
    if bin.is_absolute() {
        return bin;
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(&bin))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{} is not on PATH", bin.display()))
}

/// Headless Chromium driven over the DevTools protocol, with the flags this closed network
/// needs; it stays up however long the test waits between commands.
fn browser(profile: &Path) -> Browser {
    let args: Vec<&OsStr> = [
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    .iter()
    .map(OsStr::new)
    .collect();
    let options = LaunchOptions::default_builder()
        .path(Some(chromium_path()))
        .headless(true)
        .sandbox(false)
        .window_size(Some((1400, 1100)))
        .user_data_dir(Some(profile.to_path_buf()))
        .idle_browser_timeout(Duration::from_secs(600))
        .args(args)
        .build()
        .unwrap();
    Browser::new(options).unwrap()
}

/// The value of a JavaScript expression in the page (through JSON, so arrays come back whole).
fn js(tab: &Tab, expression: &str) -> Value {
    let json = tab
        .evaluate(&format!("JSON.stringify({expression})"), false)
        .unwrap_or_else(|e| panic!("{expression}: {e}"))
        .value;
    match json {
        Some(Value::String(text)) => serde_json::from_str(&text).unwrap(),
        _ => Value::Null,
    }
}

/// Wait, reading the page every 100 ms, until `expression` is true; panics with `what` after
/// `limit`.
fn wait_for(tab: &Tab, expression: &str, limit: Duration, what: &str) {
    let start = Instant::now();
    while js(tab, expression) != Value::Bool(true) {
        assert!(start.elapsed() < limit, "waited {limit:?} for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn tab_screenshot(tab: &Tab, name: &str) -> PathBuf {
    let png = tab
        .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
        .unwrap();
    assert!(png.len() > 10_000 && png.starts_with(b"\x89PNG"));
    let path = artifacts().join(name);
    std::fs::write(&path, png).unwrap();
    path
}

/// The state shown in the task table's row of `id`, read from the DOM.
fn state_in_table(tab: &Tab, id: &str) -> Value {
    js(
        tab,
        &format!(
            "(document.querySelector('#tasks tr[data-task=\"{id}\"]')||{{dataset:{{}}}}).dataset.state||null"
        ),
    )
}

#[test]
fn a_run_is_watched_live_without_a_reload_and_a_task_opens_its_page() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // The demo's script with its first task slowed down: every answer after the first waits
    // 1.5 s, so the task is seen running, spending, for several seconds.
    let mut script = sample::script();
    let slugify = script
        .tasks
        .iter_mut()
        .find(|t| t.matches == "Add slugify")
        .unwrap();
    for turns in slugify.models.values_mut() {
        for turn in turns.iter_mut().skip(1) {
            turn.delay_ms = 1_500;
        }
    }
    let provider = rt.block_on(ScriptedProvider::start(script)).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    sample::create(&root, true).unwrap();
    let plugins = support::guest("cost-tier").parent().unwrap().to_path_buf();
    support::guest("tests-and-limits");
    support::guest("protected-paths");
    let config = demo_config(&provider.base_url(), &plugins);
    assert!(config.contains("per_task = \"0.50\"\n"));
    let config = config.replace(
        "per_task = \"0.50\"\n",
        "per_task = \"0.50\"\nper_attempt = \"0.25\"\n",
    );
    std::fs::write(root.join("gaffer.toml"), config).unwrap();
    std::fs::create_dir_all(root.join(".gaffer")).unwrap();
    let store = SqliteStore::open(root.join(".gaffer/gaffer.db")).unwrap();
    let ids = store.add_tasks(&sample::tasks()).unwrap();
    let first = ids[0].clone();
    let (_server, url) = serve(&root);

    let browser = browser(&tmp.path().join("chromium-profile"));
    let tab = browser.new_tab().unwrap();
    tab.navigate_to(&url)
        .unwrap()
        .wait_until_navigated()
        .unwrap();
    wait_for(
        &tab,
        "document.body.dataset.live==='yes'",
        Duration::from_secs(30),
        "the page's first refresh",
    );
    let load = js(&tab, "document.body.dataset.loadId");
    assert!(load.is_string());
    // First read: nothing has run.
    assert_eq!(state_in_table(&tab, &first), "queued");
    assert_eq!(
        js(&tab, "document.querySelector('#running tbody').textContent"),
        "nothing running"
    );

    let log = std::fs::File::create(tmp.path().join("run.log")).unwrap();
    let run = Killed(
        Command::new(env!("CARGO_BIN_EXE_gaffer"))
            .arg("run")
            .current_dir(&root)
            .env("GAFFER_PLUGIN_CACHE", support::test_cache_dir())
            .env_remove("GAFFER_LOG")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );

    // Second read, same page: the task is running, and its attempt has spent something (a
    // call settled) against the attempt cap.
    let running_row = format!("document.querySelector('#running tr[data-task=\"{first}\"]')");
    wait_for(
        &tab,
        &format!(
            "(function(){{var r={running_row};return !!r&&r.cells[3].textContent.indexOf('$0.0000 +')!==0;}})()"
        ),
        Duration::from_secs(120),
        "the first task running with a settled call",
    );
    assert_eq!(state_in_table(&tab, &first), "running");
    let running = js(
        &tab,
        &format!("[].map.call({running_row}.cells,function(c){{return c.textContent;}})"),
    );
    eprintln!("running row mid-run: {running}");
    assert!(
        running[4].as_str().unwrap().ends_with('%'),
        "spend against the $0.25 attempt cap: {running}"
    );
    assert!(
        running[6].as_str().unwrap().ends_with('%'),
        "spend against the $0.50 task cap: {running}"
    );
    let live = tab_screenshot(&tab, "dashboard-live.png");

    // Third read, still the same page: merged.
    wait_for(
        &tab,
        &format!(
            "(document.querySelector('#tasks tr[data-task=\"{first}\"]')||{{dataset:{{}}}}).dataset.state==='merged'"
        ),
        Duration::from_secs(180),
        "the first task merged",
    );
    assert_eq!(
        js(&tab, "document.body.dataset.loadId"),
        load,
        "the page was reloaded"
    );
    let refreshes = js(&tab, "Number(document.body.dataset.refreshes)");
    assert!(refreshes.as_u64().unwrap() >= 2, "{refreshes}");
    // The charts are redrawn from /api/charts as the run goes (every fifth refresh).
    wait_for(
        &tab,
        "Number(document.body.dataset.chartsDrawn||0)>=1",
        Duration::from_secs(30),
        "the charts redrawn",
    );
    assert_eq!(
        js(
            &tab,
            "document.querySelectorAll('#charts figure[data-chart]').length"
        ),
        5
    );

    // Filtered by label, then sorted by cost, dearest first (two clicks on the column).
    js(
        &tab,
        "(function(){var f=document.getElementById('label-filter');f.value='boilerplate';f.dispatchEvent(new Event('change'));})()",
    );
    assert_eq!(
        js(
            &tab,
            "[].map.call(document.querySelectorAll('#tasks tbody tr'),function(r){return r.dataset.task;})"
        ),
        Value::from(vec![first.as_str()]),
        "only the task labelled boilerplate"
    );
    js(
        &tab,
        "(function(){var f=document.getElementById('label-filter');f.value='';f.dispatchEvent(new Event('change'));var h=document.querySelector('#tasks th[data-sort=cost_micros]');h.click();h.click();})()",
    );
    let costs: Vec<f64> = js(
        &tab,
        "[].map.call(document.querySelectorAll('#tasks tbody tr'),function(r){return Number(r.cells[6].textContent.slice(1));})",
    )
    .as_array()
    .unwrap()
    .iter()
    .map(|v| v.as_f64().unwrap())
    .collect();
    assert_eq!(costs.len(), ids.len());
    assert!(
        costs.windows(2).all(|w| w[0] >= w[1]),
        "dearest first: {costs:?}"
    );

    // Its page, by the link in the table (clicked from the page's script: the table is redrawn
    // every second, so a click at the coordinates the link had may land on another row).
    js(
        &tab,
        &format!("document.querySelector('#tasks tr[data-task=\"{first}\"] a').click()"),
    );
    tab.wait_for_element("#rows").unwrap();
    assert!(tab.get_url().ends_with(&format!("/tasks/{first}")));
    assert_eq!(
        js(&tab, "document.getElementById('task-id').textContent"),
        first.as_str()
    );
    assert_eq!(
        js(&tab, "document.getElementById('state').textContent"),
        "merged"
    );
    let store_rows = store.task_rows(&first).unwrap();
    let shown_rows: Vec<i64> = js(
        &tab,
        "[].map.call(document.querySelectorAll('#rows tr[data-row]'),function(r){return Number(r.dataset.row);})",
    )
    .as_array()
    .unwrap()
    .iter()
    .map(|v| v.as_i64().unwrap())
    .collect();
    assert_eq!(
        shown_rows,
        store_rows.iter().map(|r| r.id).collect::<Vec<_>>(),
        "every ledger row of the task, oldest first"
    );
    assert_eq!(
        js(
            &tab,
            "document.querySelectorAll('#rows tr:first-child th').length===document.querySelector('#rows tr[data-row]').cells.length"
        ),
        Value::Bool(true),
        "a cell under every heading"
    );
    let attempts = store.attempts(&first).unwrap();
    let outcomes = js(
        &tab,
        "[].map.call(document.querySelectorAll('section.attempt .outcome'),function(e){return e.textContent;})",
    );
    assert_eq!(
        outcomes,
        Value::from(
            attempts
                .iter()
                .map(|a| a.outcome.name())
                .collect::<Vec<_>>()
        )
    );
    let commits = js(&tab, "document.querySelectorAll('#commits tr').length");
    assert!(
        commits.as_u64().unwrap() >= 2,
        "the merged commit in the diff summary: {commits}"
    );
    let page = tab_screenshot(&tab, "task-page.png");
    eprintln!("screenshots: {} {}", live.display(), page.display());
    drop(run);
    drop(provider);
}

/// An HTTP/1.1 GET with the given Host header, as raw bytes: the status line and the body.
async fn raw_get(address: std::net::SocketAddr, path: &str, host: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let status = answer.lines().next().unwrap_or("").to_string();
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

const OWNER: &str = "tester:1";
const LEASE: Duration = Duration::from_secs(600);

/// The dashboard over `store` on 127.0.0.1, port 0, in this process.
async fn start(store: SqliteStore, caps: Caps) -> std::net::SocketAddr {
    let listener = dashboard::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let address = listener.local_addr().unwrap();
    let d = Dashboard {
        store: Arc::new(store),
        caps,
        title: "gaffer · <hand-built>".to_string(),
        repo: None,
    };
    tokio::spawn(async move { dashboard::serve(d, listener).await });
    address
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_addressed_to_another_host_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("gaffer.db")).unwrap();
    let address = start(store, Caps::default()).await;
    let port = address.port();

    for path in ["/", "/api/status", "/api/tasks", "/tasks/T-1"] {
        let (status, body) = raw_get(address, path, "evil.example").await;
        assert!(status.starts_with("HTTP/1.1 421"), "{path}: {status}");
        assert!(
            body.contains("Host `evil.example`") && body.contains("DNS rebinding"),
            "{body}"
        );
        assert!(body.contains(&format!("127.0.0.1:{port}")), "{body}");
    }
    // The port is part of the address: another port is another origin.
    let (status, _) = raw_get(address, "/", &format!("127.0.0.1:{}", port + 1)).await;
    assert!(status.starts_with("HTTP/1.1 421"), "{status}");
    let (status, _) = raw_get(address, "/", &format!("evil.example:{port}")).await;
    assert!(status.starts_with("HTTP/1.1 421"), "{status}");
    // Its own names are answered.
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ] {
        let (status, body) = raw_get(address, "/api/status", &host).await;
        assert!(status.starts_with("HTTP/1.1 200"), "{host}: {status}");
        assert!(body.contains("\"tasks\""), "{body}");
    }
}

async fn get(address: std::net::SocketAddr, path: &str) -> (u16, String) {
    let answer = reqwest::get(format!("http://{address}{path}"))
        .await
        .unwrap();
    (answer.status().as_u16(), answer.text().await.unwrap())
}

/// One task, two attempts, by hand:
/// - attempt 1 (run-1, `cheap`), rejected by the verifier with two findings: the agent's call
///   A tried twice — try 1 settles at 40 000 µ$ from 1 000 in / 200 out (measured), try 2
///   without usage is charged its 100 000 reservation (estimated); the verifier's call B
///   reserves 50 000 and costs 70 000 (overrun); the verifier's plugin run costs nothing.
/// - attempt 2 (run-1, `strong`), approved: call C settles at 25 000 (measured).
///
/// Task: 235 000 µ$ = measured 65 000 + estimated 100 000 + overrun 70 000; attempt 1 is
/// 210 000, attempt 2 is 25 000; five rows.
#[tokio::test(flavor = "multi_thread")]
async fn a_tasks_page_shows_each_attempt_and_every_ledger_row_of_a_hand_built_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("gaffer.db"))
        .unwrap()
        .with_owner(OWNER);
    let title = "<script>alert('title')</script> & \"quotes\"";
    store
        .add_tasks(&[NewTask {
            title: title.to_string(),
            body: "Body with <b>markup</b>.".to_string(),
            labels: vec!["ui".to_string()],
            paths: vec![],
            source: Some("by hand".to_string()),
        }])
        .unwrap();
    let id = store.claim(OWNER, LEASE).unwrap().unwrap().id;
    let agent = scope("run-1", &id, 1, Role::Agent, "cheap");
    let a1 = send(&store, &agent, CallTry::FIRST, 100_000);
    settle(&store, a1, Some(40_000), 1_000, 200);
    let a2 = send(
        &store,
        &agent,
        CallTry {
            call_id: Some(a1.call_id),
            number: 2,
        },
        100_000,
    );
    settle(&store, a2, None, 0, 0);
    let verifier = scope("run-1", &id, 1, Role::Verifier, "cheap");
    let b = send(&store, &verifier, CallTry::FIRST, 50_000);
    settle(&store, b, Some(70_000), 3_000, 400);
    store
        .record_plugin_run(&verifier, 1_000, 5, "reject")
        .unwrap();
    let reasons = vec![
        "verifier: the test asserts nothing".to_string(),
        "verifier: <img src=x onerror=alert(1)> is not escaped".to_string(),
    ];
    store
        .finish_attempt(
            &AttemptRecord {
                task_id: id.clone(),
                number: 1,
                run_id: "run-1".into(),
                model: "cheap".into(),
                outcome: AttemptOutcome::Rejected,
                reasons: reasons.clone(),
                turns: 4,
                tests_passed: Some(true),
                wall_ms: 1_000,
                rejected_by: Some(RejectionCause::Verifier),
                changed: vec![ChangedFile {
                    path: "src/<b>lib</b>.rs".into(),
                    status: "modified".into(),
                    added: 3,
                    removed: 1,
                }],
                implementer: None,
                agent_cost: None,
            },
            OWNER,
            TaskState::RejectedRequeued,
            "the verifier rejected it",
        )
        .unwrap();
    assert_eq!(store.claim(OWNER, LEASE).unwrap().unwrap().id, id);
    let c = send(
        &store,
        &scope("run-1", &id, 2, Role::Agent, "strong"),
        CallTry::FIRST,
        60_000,
    );
    settle(&store, c, Some(25_000), 500, 100);
    store
        .finish_attempt(
            &AttemptRecord {
                task_id: id.clone(),
                number: 2,
                run_id: "run-1".into(),
                model: "strong".into(),
                outcome: AttemptOutcome::Approved,
                reasons: vec![],
                turns: 2,
                tests_passed: Some(true),
                wall_ms: 500,
                rejected_by: None,
                changed: Vec::new(),
                implementer: None,
                agent_cost: None,
            },
            OWNER,
            TaskState::Merged,
            "approved",
        )
        .unwrap();
    let caps = Caps {
        per_attempt: Some(MicroUsd(250_000)),
        per_task: Some(MicroUsd(500_000)),
        ..Caps::default()
    };
    let address = start(store, caps).await;

    // The JSON twin.
    let (status, body) = get(address, &format!("/api/tasks/{id}")).await;
    assert_eq!(status, 200, "{body}");
    let t: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(t["id"], id.as_str());
    assert_eq!(t["title"], title);
    assert_eq!(t["state"], "merged");
    assert_eq!(t["cost_micros"], 235_000);
    assert_eq!(t["certainty"]["measured_micros"], 65_000);
    assert_eq!(t["certainty"]["estimated_micros"], 100_000);
    assert_eq!(t["certainty"]["overrun_micros"], 70_000);
    assert_eq!(t["per_attempt_cap_micros"], 250_000);
    assert_eq!(t["per_task_cap_micros"], 500_000);
    let attempts = t["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0]["outcome"], "rejected");
    assert_eq!(attempts[0]["rejected_by"], "verifier");
    assert_eq!(attempts[0]["reasons"], Value::from(reasons.clone()));
    assert_eq!(attempts[0]["model"], "cheap");
    assert_eq!(attempts[0]["cost_micros"], 210_000);
    assert_eq!(attempts[0]["verifier_micros"], 70_000);
    assert_eq!(attempts[0]["phases"]["implement"]["cost_micros"], 140_000);
    assert_eq!(attempts[0]["phases"]["implement"]["calls"], 2);
    assert_eq!(attempts[0]["phases"]["verify"]["cost_micros"], 70_000);
    // The rejected attempt's change is kept though its worktree is gone.
    assert_eq!(
        attempts[0]["changed"],
        serde_json::json!([{"path": "src/<b>lib</b>.rs", "status": "modified", "added": 3, "removed": 1}])
    );
    assert_eq!(attempts[1]["changed"], Value::Array(vec![]));
    assert_eq!(attempts[1]["outcome"], "approved");
    assert_eq!(attempts[1]["rejected_by"], Value::Null);
    assert_eq!(attempts[1]["model"], "strong");
    assert_eq!(attempts[1]["cost_micros"], 25_000);
    // Every row: (call, try, attempt, role, model, tokens in, out, charged, certainty).
    let rows: Vec<_> = t["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["call_id"].as_i64(),
                r["try_number"].as_u64(),
                r["attempt"].as_u64().unwrap(),
                r["role"].as_str().unwrap().to_string(),
                r["model"].as_str().unwrap().to_string(),
                r["input_tokens"].as_u64().unwrap(),
                r["output_tokens"].as_u64().unwrap(),
                r["charged_micros"].as_u64().unwrap(),
                r["certainty"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let s = |x: &str| x.to_string();
    assert_eq!(
        rows,
        vec![
            (
                Some(a1.call_id),
                Some(1),
                1,
                s("agent"),
                s("cheap"),
                1_000,
                200,
                40_000,
                s("measured")
            ),
            (
                Some(a1.call_id),
                Some(2),
                1,
                s("agent"),
                s("cheap"),
                0,
                0,
                100_000,
                s("estimated")
            ),
            (
                Some(b.call_id),
                Some(1),
                1,
                s("verifier"),
                s("cheap"),
                3_000,
                400,
                70_000,
                s("overrun")
            ),
            (
                None,
                None,
                1,
                s("verifier"),
                s("cheap"),
                0,
                0,
                0,
                s("plugin run")
            ),
            (
                Some(c.call_id),
                Some(1),
                2,
                s("agent"),
                s("strong"),
                500,
                100,
                25_000,
                s("measured")
            ),
        ]
    );
    assert_eq!(t["diff"]["commits"], Value::Array(vec![]));
    assert!(
        t["diff"]["note"]
            .as_str()
            .unwrap()
            .contains("no repository"),
        "{}",
        t["diff"]
    );

    // The page: the same figures, every user-given text escaped.
    let (status, html) = get(address, &format!("/tasks/{id}")).await;
    assert_eq!(status, 200, "{html}");
    assert!(!html.contains("<script>alert"), "the title is escaped");
    assert!(
        html.contains(
            "&lt;script&gt;alert(&#39;title&#39;)&lt;/script&gt; &amp; &quot;quotes&quot;"
        )
    );
    assert!(!html.contains("<img src=x"), "the reasons are escaped");
    assert!(html.contains("<li>verifier: the test asserts nothing</li>"));
    assert!(html.contains("<li>verifier: &lt;img src=x onerror=alert(1)&gt; is not escaped</li>"));
    assert!(
        html.contains("&lt;hand-built&gt;"),
        "the dashboard's title is escaped"
    );
    assert!(html.contains("Body with &lt;b&gt;markup&lt;/b&gt;."));
    assert!(html.contains(
        "<span class=\"outcome\">rejected</span> · rejected by <span class=\"rejected-by\">verifier</span>"
    ));
    assert!(html.contains("<span class=\"outcome\">approved</span></h3>"));
    assert!(html.contains(
        "<tr><td>src/&lt;b&gt;lib&lt;/b&gt;.rs</td><td>modified</td><td class=\"num\">+3</td><td class=\"num\">-1</td></tr>"
    ));
    assert!(html.contains("no changed files recorded"));
    assert!(html.contains("Cost <b id=\"cost\">$0.235000</b>"));
    assert!(html.contains(
        "measured $0.065000 + estimated $0.100000 + overrun $0.070000 · 3 calls, 4 tries"
    ));
    assert!(html.contains("cost <b class=\"cost\">$0.210000</b>"));
    assert!(html.contains("cost <b class=\"cost\">$0.025000</b>"));
    assert_eq!(html.matches("<tr data-row=").count(), 5);
    assert!(html.contains(&format!(
        "<tr data-row=\"{row}\"><td class=\"num\">{row}</td><td class=\"num\">{call}</td><td class=\"num\">2</td><td class=\"num\">1</td><td>implement</td><td></td><td>agent</td><td>cheap</td><td class=\"num\">0</td><td class=\"num\">0</td><td class=\"num\">0</td><td class=\"num\">$0.100000</td><td class=\"num\">$0.100000</td><td>estimated</td><td>ok</td></tr>",
        row = a2.id.0,
        call = a1.call_id
    )));
    assert!(html.contains("$0.2500 an attempt, $0.5000 the task"));
    assert!(html.contains("no repository to read the task&#39;s commits from"));

    // The table's data: the task with its models and certainty.
    let (_, list) = get(address, "/api/tasks").await;
    let list: Vec<Value> = serde_json::from_str(&list).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["models"], Value::from(vec!["cheap", "strong"]));
    assert_eq!(list[0]["attempts"], 2);
    assert_eq!(list[0]["labels"], Value::from(vec!["ui"]));
    assert_eq!(list[0]["cost_micros"], 235_000);
    assert_eq!(list[0]["certainty"]["overrun_micros"], 70_000);
    let (_, page) = get(address, "/").await;
    assert!(page.contains(&format!("<tr data-task=\"{id}\" data-state=\"merged\">")));
    assert!(!page.contains("<script>alert"));
    assert!(page.contains("<option>ui</option>"));

    // Unknown tasks: 404, with the id escaped.
    let (status, body) = get(address, "/tasks/T-99").await;
    assert_eq!(status, 404);
    assert!(body.contains("No task has the id “T-99”"), "{body}");
    let (status, body) = get(address, "/tasks/%3Cimg%20src%3Dx%3E").await;
    assert_eq!(status, 404);
    assert!(!body.contains("<img src=x>"), "{body}");
    assert!(body.contains("“&lt;img src=x&gt;”"), "{body}");
    let (status, body) = get(address, "/api/tasks/T-99").await;
    assert_eq!(status, 404);
    let error: BTreeMap<String, String> = serde_json::from_str(&body).unwrap();
    assert!(error["error"].contains("No task has the id “T-99”"));
}
