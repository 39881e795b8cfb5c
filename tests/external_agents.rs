//! External agents as the implementer, with the real CLI (Claude Code 2.1.328, installed by
//! scripts/setup.sh into tools/agents) run by `gaffer run` in the attempt's sandbox against
//! the scripted provider on 127.0.0.1, which streams Anthropic's server-sent events. Expected
//! charges are computed here by hand from the usage the provider returned.

mod support;

#[path = "support/fake_provider.rs"]
mod fake_provider;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fake_provider::{FakeProvider, Reply};
use gaffer::store::{
    BacklogStore, LedgerRow, LedgerStore, NewTask, Phase, RowState, SqliteStore, TaskState,
};
use serde_json::{Value, json};

const UPSTREAM_KEY_ENV: &str = "GAFFER_TEST_ANTHROPIC_KEY";
/// The upstream key: it must appear nowhere the agent can see.
const UPSTREAM_KEY: &str = "sk-ant-upstream-CANARY-51f0c7e2b9";
/// Claude Code's own prices for `claude-sonnet-4-5` (its baked-in catalog), µ$ per token:
/// input 3, output 15, cache write (5 min) 3.75, cache read 0.30.
const MODEL_ID: &str = "claude-sonnet-4-5";

fn claude() -> PathBuf {
    let path = support::workspace_root().join("tools/agents/node_modules/.bin/claude");
    assert!(
        path.exists(),
        "{} is missing: scripts/setup.sh installs Claude Code",
        path.display()
    );
    path
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@t.invalid"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

struct Project {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    fake: FakeProvider,
}

impl Project {
    /// A small repository whose `gaffer.toml` sends every attempt to Claude Code on one model
    /// of the scripted provider, with `tasks` in its backlog.
    /// `script` is given the repository's root (where the attempts' worktrees will be) and the
    /// provider's own base URL.
    async fn new(tasks: &[&str], script: impl FnOnce(&Path, &str) -> Vec<Reply>) -> Project {
        Project::with_config(tasks, "", script).await
    }

    /// [`Project::new`] with `extra` appended to its `gaffer.toml`.
    async fn with_config(
        tasks: &[&str],
        extra: &str,
        script: impl FnOnce(&Path, &str) -> Vec<Reply>,
    ) -> Project {
        Project::custom(tasks, |base| claude_code_config(base) + extra, script).await
    }

    /// A small repository whose `gaffer.toml` is `config(provider's base URL)`.
    async fn custom(
        tasks: &[&str],
        config: impl FnOnce(&str) -> String,
        script: impl FnOnce(&Path, &str) -> Vec<Reply>,
    ) -> Project {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("repo");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("README.md"), "# greeter\n").unwrap();
        std::fs::write(root.join(".gitignore"), ".gaffer/\n").unwrap();
        let fake = FakeProvider::start(vec![]).await;
        fake.script(script(&root, &fake.base_url));
        std::fs::write(root.join("gaffer.toml"), config(&fake.base_url)).unwrap();
        git(&root, &["init", "-q", "-b", "main"]);
        git(&root, &["add", "-A"]);
        git(&root, &["commit", "-q", "-m", "start"]);
        std::fs::create_dir_all(root.join(".gaffer")).unwrap();
        let store = SqliteStore::open(root.join(".gaffer/gaffer.db")).unwrap();
        let tasks: Vec<NewTask> = tasks
            .iter()
            .map(|title| NewTask {
                title: title.to_string(),
                body: format!("{title}."),
                labels: vec![],
                paths: vec![],
                source: Some("test".into()),
            })
            .collect();
        store.add_tasks(&tasks).unwrap();
        Project {
            _tmp: tmp,
            root,
            fake,
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let out = Command::new(env!("CARGO_BIN_EXE_gaffer"))
            .arg("run")
            .args(args)
            .current_dir(&self.root)
            .env(UPSTREAM_KEY_ENV, UPSTREAM_KEY)
            .env("GAFFER_PLUGIN_CACHE", support::test_cache_dir())
            .env("GAFFER_LOG", "warn")
            .output()
            .unwrap();
        eprintln!(
            "gaffer run: {}\n--- stdout\n{}--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn store(&self) -> SqliteStore {
        SqliteStore::open(self.root.join(".gaffer/gaffer.db")).unwrap()
    }

    fn model_rows(&self) -> Vec<LedgerRow> {
        self.store()
            .rows()
            .unwrap()
            .into_iter()
            .filter(|r| r.is_model_call())
            .collect()
    }

    fn worktree(&self, task: &str) -> PathBuf {
        self.root.join(format!(".gaffer/worktrees/{task}-a1"))
    }
}

/// Claude Code on one Anthropic model of the provider at `base`.
fn claude_code_config(base: &str) -> String {
    format!(
        r#"[project]
target_branch = "main"

[agent]
implementer = "claude-code"
max_turns = 10
max_attempts = 1

[implementers.claude-code]
program = {program:?}
timeout_secs = 300

[providers.anthropic]
kind = "anthropic"
base_url = {base:?}
api_key_env = "{UPSTREAM_KEY_ENV}"
max_retries = 0

[models.strong]
provider = "anthropic"
id = "{MODEL_ID}"
tier = 1
max_tokens = 8192
context_window = 200000
prices = {{ input = "3.00", output = "15.00", cache_read = "0.30", cache_write = "3.75" }}
"#,
        program = claude().display().to_string(),
        base = base,
    )
}

/// An Anthropic stream that answers with `blocks` (text or tool use), reporting `usage`.
fn stream(blocks: &[Value], stop: &str, usage: (u64, u64, u64, u64)) -> Reply {
    let (input, cache_read, cache_write, output) = usage;
    let mut events = vec![(
        "message_start",
        json!({"type": "message_start", "message": {
            "id": "msg_test", "type": "message", "role": "assistant", "model": MODEL_ID,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": input, "cache_read_input_tokens": cache_read,
                      "cache_creation_input_tokens": cache_write, "output_tokens": 1}}}),
    )];
    for (index, block) in blocks.iter().enumerate() {
        if let Some(text) = block.get("text") {
            events.push((
                "content_block_start",
                json!({"type": "content_block_start", "index": index,
                "content_block": {"type": "text", "text": ""}}),
            ));
            events.push((
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index,
                "delta": {"type": "text_delta", "text": text}}),
            ));
        } else {
            events.push(("content_block_start", json!({"type": "content_block_start", "index": index,
                "content_block": {"type": "tool_use", "id": format!("toolu_{index}_{}", block["name"].as_str().unwrap()),
                                  "name": block["name"], "input": {}}})));
            events.push((
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index,
                "delta": {"type": "input_json_delta", "partial_json": block["input"].to_string()}}),
            ));
        }
        events.push((
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
    }
    events.push((
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
               "usage": {"output_tokens": output}}),
    ));
    events.push(("message_stop", json!({"type": "message_stop"})));
    Reply::sse(&events)
}

fn tool(name: &str, input: Value) -> Value {
    json!({"name": name, "input": input})
}

/// ceil(Σ count × price / 10⁶) at Claude Code's prices for the model (see [`MODEL_ID`]).
fn charge((input, cache_read, cache_write, output): (u64, u64, u64, u64)) -> u64 {
    (input * 3_000_000 + cache_read * 300_000 + cache_write * 3_750_000 + output * 15_000_000)
        .div_ceil(1_000_000)
}

/// The tool results a request carries back to the model.
fn tool_results(request: &Value) -> Vec<String> {
    request["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|m| m["content"].as_array().cloned().unwrap_or_default())
        .filter(|b| b["type"] == "tool_result")
        .map(|b| b["content"].to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn claude_code_implements_a_task_with_its_own_tools_and_the_ledger_matches_the_bill() {
    let usages = [
        (2_000, 0, 1_500, 120),
        (1_000, 3_400, 200, 90),
        (900, 3_600, 150, 60),
        (800, 3_800, 100, 20),
    ];
    // Claude Code's four turns: Write, Edit, Bash, then the end. Its Write takes an absolute
    // path: the attempt's worktree is known before the run.
    let project = Project::new(&["Add a greeter"], |root, provider| {
        let file = root.join(".gaffer/worktrees/T-1-a1/greet.py");
        // The agent's shell, as an attacker: record its environment, look for the upstream key
        // wherever it can read (its home, /tmp, gaffer's mounts, every process's environment
        // and command line; the key is searched for in two halves, so that this command does
        // not hold it), write outside the worktree, call the provider directly, and leave a
        // process behind.
        let (first, second) = UPSTREAM_KEY.split_at(12);
        let attack = format!(
            "env > agent_env.txt; \
             A={first} B={second} python3 {scan} > canary_found.txt; \
             touch {escaped} 2>/dev/null; \
             python3 -c \"import urllib.request; urllib.request.urlopen('{provider}/v1/messages', timeout=3)\" \
              2>/dev/null && echo reached > direct.txt; \
             (setsid sleep 4321 >/dev/null 2>&1 &); \
             ls; echo written",
            scan = "-c \"import os, glob\nkey = (os.environ['A'] + os.environ['B']).encode()\nprobe = b'ANTHROPIC_API_KEY=gaffer-proxy-'\npaths = [os.path.join(d, f) for root in [os.environ['HOME'], '/tmp', '/run'] for d, _, fs in os.walk(root) for f in fs]\nfor p in paths + glob.glob('/proc/*/environ') + glob.glob('/proc/*/cmdline'):\n    try:\n        data = open(p, 'rb').read() if os.path.isfile(p) else b''\n    except OSError:\n        continue\n    if key in data:\n        print('key', p)\n    if probe in data:\n        print('probe', p)\n\"",
            escaped = root.join("escaped.txt").display(),
        );
        vec![
            stream(
                &[tool(
                    "Write",
                    json!({"file_path": file, "content": "print('hello')\n"}),
                )],
                "tool_use",
                usages[0],
            ),
            stream(
                &[tool(
                    "Edit",
                    json!({"file_path": file, "old_string": "hello",
                                       "new_string": "hello, world"}),
                )],
                "tool_use",
                usages[1],
            ),
            stream(
                &[tool(
                    "Bash",
                    json!({"command": attack, "description": "Look around"}),
                )],
                "tool_use",
                usages[2],
            ),
            stream(&[json!({"text": "Added greet.py."})], "end_turn", usages[3]),
        ]
    })
    .await;
    let out = project.run(&[]);
    assert!(out.status.success());
    let task = project.store().task("T-1").unwrap().unwrap();
    assert_eq!(task.state, TaskState::Merged, "{:?}", task.reason);

    // Claude Code's Write and Edit made the file; its Bash wrote in the worktree; all merged.
    let greet = std::fs::read_to_string(project.root.join("greet.py")).unwrap();
    assert_eq!(greet, "print('hello, world')\n");
    let env = std::fs::read_to_string(project.root.join("agent_env.txt")).unwrap();
    assert!(
        env.contains("ANTHROPIC_BASE_URL=http://127.0.0.1:3129"),
        "{env}"
    );
    assert!(
        !env.contains(UPSTREAM_KEY),
        "the upstream key reached the agent: {env}"
    );
    assert!(!env.contains(UPSTREAM_KEY_ENV), "{env}");
    // The scan finds what is there (the proxy's token, in the agent's environment) and not
    // the upstream key.
    let found = std::fs::read_to_string(project.root.join("canary_found.txt")).unwrap();
    assert!(
        found.lines().any(|l| l.starts_with("probe /proc/")),
        "the scan cannot see the processes' environments: {found}"
    );
    assert!(
        !found.lines().any(|l| l.starts_with("key ")),
        "the upstream key is readable in the sandbox: {found}"
    );
    assert!(
        !project.root.join("escaped.txt").exists(),
        "a write left the worktree"
    );
    assert!(
        !project.root.join("direct.txt").exists(),
        "the agent reached the provider directly"
    );
    // Nothing the agent started outlives the attempt.
    let left = Command::new("pgrep")
        .args(["-f", "sleep 4321"])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&left.stdout)
    );

    // What the provider received: four calls with the upstream key, the routed model, and
    // nothing of the key in what the agent sent (its tool results included).
    let received = project.fake.received();
    assert_eq!(
        received.len(),
        4,
        "{:#?}",
        received.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    for call in &received {
        assert_eq!(call.path, "/v1/messages");
        assert_eq!(call.header("x-api-key"), Some(UPSTREAM_KEY));
        assert_eq!(call.body["model"], MODEL_ID);
        assert!(!call.body.to_string().contains(UPSTREAM_KEY));
    }
    assert!(
        env.contains("ANTHROPIC_API_KEY=gaffer-proxy-"),
        "the agent holds the proxy's token instead: {env}"
    );
    let results = tool_results(&received[3].body);
    assert_eq!(
        results.len(),
        3,
        "the model saw its three tools' results: {results:?}"
    );
    assert!(results[2].contains("written"), "{results:?}");

    // Per call, the ledger equals the usage billed; in all, Claude Code's own figure agrees
    // within 1 µ$ a call (it computes in floating point).
    let rows = project.model_rows();
    assert_eq!(rows.len(), 4);
    for (row, usage) in rows.iter().zip(usages) {
        assert_eq!(row.state, RowState::Settled);
        assert_eq!(row.charged.get(), charge(usage), "{row:?}");
        assert_eq!(row.scope.task_id.as_deref(), Some("T-1"));
        assert_eq!(row.scope.model, "strong");
    }
    // The phases, read from the conversation each call carries: the task, then (after the
    // Write) the implementation.
    let phases: Vec<Option<Phase>> = rows.iter().map(|r| r.scope.phase).collect();
    assert_eq!(
        phases,
        [
            Phase::ReadTask,
            Phase::Implement,
            Phase::Implement,
            Phase::Implement
        ]
        .map(Some)
    );
    let ledger: u64 = rows.iter().map(|r| r.charged.get()).sum();
    let attempts = project.store().attempts("T-1").unwrap();
    let figure = attempts[0]
        .agent_cost
        .expect("the agent's own figure is kept beside the ledger");
    eprintln!(
        "ledger {ledger} µ$, Claude Code's own figure {} µ$",
        figure.get()
    );
    assert!(
        figure.get().abs_diff(ledger) <= 4,
        "Claude Code says {} µ$, the ledger {ledger} µ$",
        figure.get()
    );
    assert!(!project.worktree("T-1").exists());

    // The report shows the ledger and the agent's own figure side by side, in every format.
    let report = |format: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_gaffer"))
            .args(["report", "--format", format])
            .current_dir(&project.root)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let dollars = |micros: u64| format!("${}.{:06}", micros / 1_000_000, micros % 1_000_000);
    let text = report("text");
    assert!(
        text.contains(&format!(
            "by claude-code: its calls {} in the ledger, {} by its own figure",
            dollars(ledger),
            dollars(figure.get())
        )),
        "{text}"
    );
    assert!(text.contains("external agents"), "{text}");
    let json: Value = serde_json::from_str(&report("json")).unwrap();
    let agents = &json["agents"][0];
    assert_eq!(agents["implementer"], "claude-code");
    assert_eq!(agents["attempts"], 1);
    assert_eq!(agents["ledger_micros"], ledger);
    assert_eq!(agents["figure_micros"], figure.get());
    let csv = report("csv");
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let row: Vec<&str> = lines.next().unwrap().split(',').collect();
    let column = |name: &str| row[header.iter().position(|h| *h == name).unwrap()];
    assert_eq!(column("implementer"), "claude-code");
    assert_eq!(column("agent_calls_usd"), &dollars(ledger)[1..]);
    assert_eq!(column("agent_figure_usd"), &dollars(figure.get())[1..]);
    report("html");
    let html = std::fs::read_to_string(project.root.join("gaffer-report.html")).unwrap();
    assert!(html.contains("<table id=\"agents\">"));
    assert!(html.contains(&format!(
        "by claude-code: its calls {} in the ledger",
        dollars(ledger)
    )));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_cap_reached_mid_attempt_refuses_the_next_call_and_nothing_merges() {
    // Two tasks whose prompts are the same length. The first run measures how big Claude
    // Code's first request is (its size is the reservation's input bound); the second sets
    // the task cap so that the first call fits and the second cannot.
    let project = Project::new(&["Task one", "Task two"], |root, _| {
        let file = root.join(".gaffer/worktrees/T-2-a1/two.txt");
        vec![
            stream(
                &[json!({"text": "Nothing to do."})],
                "end_turn",
                (1_000, 0, 0, 10),
            ),
            stream(
                &[tool(
                    "Write",
                    json!({"file_path": file, "content": "two\n"}),
                )],
                "tool_use",
                (1_000, 0, 0, 100),
            ),
            stream(&[json!({"text": "Done."})], "end_turn", (1_000, 0, 0, 10)),
        ]
    })
    .await;
    let out = project.run(&["--max-tasks", "1"]);
    assert!(out.status.success());
    let first_request = project.fake.received()[0].body.to_string().len() as u64;

    // The first call reserves its body's bytes at $3.75 per Mtok and at least 1,024 output
    // tokens at $15: 300 bytes of slack and 1,000 µ$ over that. Its answer costs
    // 1,000 × 3 + 100 × 15 = 4,500 µ$, more than the slack; the second call's body is bigger.
    let cap = (3_750 * (first_request + 300)).div_ceil(1_000) + 15_360 + 1_000;
    let cap_dollars = format!("{}.{:06}", cap / 1_000_000, cap % 1_000_000);
    let main_before = git(&project.root, &["rev-parse", "main"]);
    let out = project.run(&["--per-task", &cap_dollars]);
    assert!(out.status.success());

    let task = project.store().task("T-2").unwrap().unwrap();
    eprintln!("first request {first_request} bytes, task cap {cap} µ$");
    assert_eq!(task.state, TaskState::BudgetExhausted, "{:?}", task.reason);
    let reason = task.reason.unwrap_or_default();
    assert!(reason.contains("task cap"), "{reason}");
    // Claude Code was refused with the cap's message, and showed it.
    let attempts = project.store().attempts("T-2").unwrap();
    let said = attempts[0]
        .reasons
        .iter()
        .find(|r| r.starts_with("claude-code said:"))
        .unwrap_or_else(|| panic!("{:?}", attempts[0].reasons));
    assert!(said.contains("402"), "{said}");
    assert!(said.contains("budget exhausted: the task cap"), "{said}");
    // The refused call never reached the provider; nothing merged; the cap held.
    assert_eq!(project.fake.received().len(), 2);
    assert_eq!(git(&project.root, &["rev-parse", "main"]), main_before);
    assert!(!project.root.join("two.txt").exists());
    let spent: u64 = project
        .model_rows()
        .iter()
        .filter(|r| r.scope.task_id.as_deref() == Some("T-2"))
        .map(|r| r.charged.get())
        .sum();
    assert_eq!(spent, charge((1_000, 0, 0, 100)));
    assert!(spent <= cap);
}

#[tokio::test(flavor = "multi_thread")]
async fn inside_claude_code_a_protected_write_is_denied_by_the_teams_hook_with_the_reason() {
    let hooks = format!(
        "\n[[plugins.hooks]]\npath = {:?}\nconfig = {{ globs = [\".env\"] }}\n",
        support::guest("protected-paths").display().to_string()
    );
    let project = Project::with_config(&["Configure the app"], &hooks, |root, _| {
        let worktree = root.join(".gaffer/worktrees/T-1-a1");
        vec![
            stream(
                &[tool(
                    "Write",
                    json!({"file_path": worktree.join(".env"),
                                        "content": "API_TOKEN=from-the-model\n"}),
                )],
                "tool_use",
                (1_000, 0, 0, 40),
            ),
            stream(
                &[tool(
                    "Write",
                    json!({"file_path": worktree.join("settings.py"),
                                        "content": "DEBUG = False\n"}),
                )],
                "tool_use",
                (1_100, 0, 0, 40),
            ),
            stream(
                &[json!({"text": "Configured."})],
                "end_turn",
                (1_200, 0, 0, 10),
            ),
        ]
    })
    .await;
    let out = project.run(&[]);
    assert!(out.status.success());
    let received = project.fake.received();
    assert_eq!(received.len(), 3);
    // The model was told why its write was denied, in the tool result of its next request.
    let results = tool_results(&received[1].body);
    assert_eq!(results.len(), 1, "{results:?}");
    assert!(
        results[0].contains("`.env` is protected (matches `.env`)"),
        "{results:?}"
    );
    // The allowed write merged; the denied one never happened.
    let task = project.store().task("T-1").unwrap().unwrap();
    assert_eq!(task.state, TaskState::Merged, "{:?}", task.reason);
    assert_eq!(
        std::fs::read_to_string(project.root.join("settings.py")).unwrap(),
        "DEBUG = False\n"
    );
    assert!(!project.root.join(".env").exists());
}

#[test]
fn the_offline_demo_runs_with_claude_code_as_the_implementer() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let plugins = support::guest("cost-tier").parent().unwrap().to_path_buf();
    support::guest("tests-and-limits");
    support::guest("protected-paths");
    let bin = claude().parent().unwrap().to_path_buf();
    let path = std::env::join_paths(
        std::iter::once(bin).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gaffer"))
        .arg("demo")
        .arg(&dir)
        .arg("--plugins")
        .arg(&plugins)
        .args(["--implementer", "claude-code"])
        .env("PATH", path)
        .env("GAFFER_PLUGIN_CACHE", support::test_cache_dir())
        .env_remove("ANTHROPIC_API_KEY")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(" · 4 merged · "), "{text}");
    assert!(text.contains("external agents"), "{text}");
    // The same routing as with the built-in loop: the harder tasks escalate to the strong model.
    let store = SqliteStore::open(dir.join(".gaffer/gaffer.db")).unwrap();
    let models = |id: &str| -> Vec<String> {
        store
            .attempts(id)
            .unwrap()
            .into_iter()
            .map(|a| {
                assert_eq!(a.implementer.as_deref(), Some("claude-code"));
                a.model
            })
            .collect()
    };
    assert_eq!(models("T-1"), ["small"]);
    assert_eq!(models("T-2"), ["small", "large"]);
    assert_eq!(models("T-3"), ["small", "large"]);
    assert_eq!(models("T-4"), ["small"]);
    // Claude Code's changes are on main, and the project's tests pass there.
    let python = Command::new("python3")
        .args(["-m", "unittest", "discover", "-s", "tests"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        python.status.success(),
        "{}",
        String::from_utf8_lossy(&python.stderr)
    );
}

fn codex() -> PathBuf {
    let path = support::workspace_root().join("tools/agents/node_modules/.bin/codex");
    assert!(
        path.exists(),
        "{} is missing: scripts/setup.sh installs Codex",
        path.display()
    );
    path
}

/// One OpenAI-compatible model, `gpt-5.5` (a model Codex knows), at $1.25 in, $10 out,
/// $0.125 cached, and `implementer` with its section.
fn openai_config(base: &str, implementer: &str, section: &str) -> String {
    format!(
        r#"[project]
target_branch = "main"

[agent]
implementer = "{implementer}"
max_turns = 10
max_attempts = 1

{section}

[providers.openai]
kind = "openai-compatible"
base_url = "{base}/v1"
api_key_env = "{UPSTREAM_KEY_ENV}"
max_retries = 0

[models.coder]
provider = "openai"
id = "gpt-5.5"
tier = 1
max_tokens = 8192
context_window = 400000
prices = {{ input = "1.25", output = "10.00", cache_read = "0.125" }}
"#
    )
}

/// ceil(Σ count × price / 10⁶) at the OpenAI model's prices: `input` includes `cached`.
fn openai_charge(input: u64, cached: u64, output: u64) -> u64 {
    ((input - cached) * 1_250_000 + cached * 125_000 + output * 10_000_000).div_ceil(1_000_000)
}

/// A Responses stream: `item` (a function call, or a message's text) then the completion with
/// its usage.
fn responses_stream(item: Value, usage: (u64, u64, u64)) -> Reply {
    let (input, cached, output) = usage;
    let mut events = vec![(
        "response.created",
        json!({"type": "response.created", "response": {"id": "resp_test", "status": "in_progress"}}),
    )];
    if let Some(text) = item.get("text") {
        let message = json!({"type": "message", "id": "msg_1", "role": "assistant",
            "status": "completed", "content": [{"type": "output_text", "text": text, "annotations": []}]});
        events.push((
            "response.output_item.added",
            json!({"type": "response.output_item.added",
            "output_index": 0, "item": {"type": "message", "id": "msg_1", "role": "assistant",
            "status": "in_progress", "content": []}}),
        ));
        events.push((
            "response.output_text.delta",
            json!({"type": "response.output_text.delta",
            "output_index": 0, "content_index": 0, "delta": text}),
        ));
        events.push((
            "response.output_item.done",
            json!({"type": "response.output_item.done",
            "output_index": 0, "item": message}),
        ));
    } else {
        events.push((
            "response.output_item.done",
            json!({"type": "response.output_item.done",
            "output_index": 0, "item": item}),
        ));
    }
    events.push((
        "response.completed",
        json!({"type": "response.completed", "response": {"id": "resp_test", "status": "completed",
            "usage": {"input_tokens": input, "input_tokens_details": {"cached_tokens": cached},
                      "output_tokens": output, "output_tokens_details": {"reasoning_tokens": 0},
                      "total_tokens": input + output}}}),
    ));
    Reply::sse(&events)
}

#[tokio::test(flavor = "multi_thread")]
async fn codex_implements_a_task_over_the_responses_api_and_the_ledger_matches_the_bill() {
    let usages = [(9_000, 0, 120), (9_400, 8_960, 30)];
    let section = format!(
        "[implementers.codex]\nprogram = {:?}\ntimeout_secs = 300\n",
        codex().display().to_string()
    );
    let project = Project::custom(
        &["Say hello"],
        |base| openai_config(base, "codex", &section),
        |_, _| {
            vec![
                responses_stream(
                    json!({"type": "function_call", "id": "fc_1", "call_id": "call_1",
                           "name": "exec_command",
                           "arguments": json!({"cmd": "printf 'hello from codex\\n' > codex.txt; env > codex_env.txt"}).to_string()}),
                    usages[0],
                ),
                responses_stream(json!({"text": "Wrote codex.txt."}), usages[1]),
            ]
        },
    )
    .await;
    let out = project.run(&[]);
    assert!(out.status.success());
    let task = project.store().task("T-1").unwrap().unwrap();
    assert_eq!(task.state, TaskState::Merged, "{:?}", task.reason);
    assert_eq!(
        std::fs::read_to_string(project.root.join("codex.txt")).unwrap(),
        "hello from codex\n"
    );
    let env = std::fs::read_to_string(project.root.join("codex_env.txt")).unwrap();
    assert!(
        !env.contains(UPSTREAM_KEY),
        "the upstream key reached Codex: {env}"
    );
    assert!(env.contains("GAFFER_PROXY_TOKEN=gaffer-proxy-"), "{env}");

    // Two Responses calls, with the upstream key, the routed model, the proxy's output bound,
    // and no web search (Codex's own is turned off; the proxy would refuse it).
    let received = project.fake.received();
    assert_eq!(received.len(), 2);
    for call in &received {
        assert_eq!(call.path, "/v1/responses");
        assert_eq!(
            call.header("authorization"),
            Some(format!("Bearer {UPSTREAM_KEY}").as_str())
        );
        assert_eq!(call.body["model"], "gpt-5.5");
        assert_eq!(call.body["max_output_tokens"], 8_192);
        assert!(call.body.get("previous_response_id").is_none());
    }
    let rows = project.model_rows();
    assert_eq!(rows.len(), 2);
    for (row, (input, cached, output)) in rows.iter().zip(usages) {
        assert_eq!(
            row.charged.get(),
            openai_charge(input, cached, output),
            "{row:?}"
        );
    }
    // Codex's own token counts, at the model's prices, are the same figure.
    let ledger: u64 = rows.iter().map(|r| r.charged.get()).sum();
    let attempt = &project.store().attempts("T-1").unwrap()[0];
    assert_eq!(attempt.implementer.as_deref(), Some("codex"));
    assert_eq!(attempt.agent_cost.map(|c| c.get()), Some(ledger));
}

#[tokio::test(flavor = "multi_thread")]
async fn any_command_can_implement_through_the_proxy() {
    // A team's own agent: a Python script that streams one Chat Completions call and writes the
    // file the answer names. It lives outside the repository, shown read-only in the sandbox.
    let tools = tempfile::tempdir().unwrap();
    let script = tools.path().join("tiny_agent.py");
    std::fs::write(
        &script,
        r#"import json, os, urllib.request
prompt = open(os.environ["GAFFER_PROMPT_FILE"]).read()
body = {"model": os.environ["GAFFER_MODEL"], "stream": True, "max_tokens": 512,
        "messages": [{"role": "user", "content": prompt}]}
request = urllib.request.Request(
    os.environ["OPENAI_BASE_URL"] + "/chat/completions", data=json.dumps(body).encode(),
    headers={"Authorization": "Bearer " + os.environ["OPENAI_API_KEY"],
             "Content-Type": "application/json"})
text = ""
with urllib.request.urlopen(request) as answer:
    for line in answer:
        line = line.decode().strip()
        if line.startswith("data: ") and line != "data: [DONE]":
            for choice in json.loads(line[6:]).get("choices", []):
                text += choice.get("delta", {}).get("content") or ""
name, _, content = text.partition("\n")
open(name, "w").write(content)
open("agent_env.txt", "w").write("\n".join(f"{k}={v}" for k, v in os.environ.items()))
print("wrote", name)
"#,
    )
    .unwrap();
    let section = format!(
        "[implementers.tiny]\ncommand = \"python3 {}\"\nprotocol = \"openai-chat\"\n\n[sandbox]\nread_only = [{:?}]\n",
        script.display(),
        tools.path().display().to_string()
    );
    let reply = Reply::sse(&[
        (
            "",
            json!({"id": "c1", "object": "chat.completion.chunk", "choices": [
            {"index": 0, "delta": {"role": "assistant", "content": "notes.txt\n"}, "finish_reason": null}]}),
        ),
        (
            "",
            json!({"id": "c1", "object": "chat.completion.chunk", "choices": [
            {"index": 0, "delta": {"content": "written by a command agent\n"}, "finish_reason": "stop"}]}),
        ),
        (
            "",
            json!({"id": "c1", "object": "chat.completion.chunk", "choices": [],
            "usage": {"prompt_tokens": 700, "completion_tokens": 12,
                      "prompt_tokens_details": {"cached_tokens": 0}}}),
        ),
        ("", json!("[DONE]")),
    ]);
    let project = Project::custom(
        &["Write the notes"],
        |base| openai_config(base, "tiny", &section),
        |_, _| vec![reply],
    )
    .await;
    let out = project.run(&[]);
    assert!(out.status.success());
    let task = project.store().task("T-1").unwrap().unwrap();
    assert_eq!(task.state, TaskState::Merged, "{:?}", task.reason);
    assert_eq!(
        std::fs::read_to_string(project.root.join("notes.txt")).unwrap(),
        "written by a command agent\n"
    );
    let env = std::fs::read_to_string(project.root.join("agent_env.txt")).unwrap();
    assert!(!env.contains(UPSTREAM_KEY), "{env}");
    assert!(
        env.contains("OPENAI_BASE_URL=http://127.0.0.1:3129/v1"),
        "{env}"
    );
    let received = project.fake.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].path, "/v1/chat/completions");
    assert_eq!(received[0].body["stream_options"]["include_usage"], true);
    let rows = project.model_rows();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].charged.get(), openai_charge(700, 0, 12));
    let attempt = &project.store().attempts("T-1").unwrap()[0];
    assert_eq!(attempt.implementer.as_deref(), Some("tiny"));
    assert_eq!(
        attempt.agent_cost, None,
        "a command gives no figure of its own"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_routed_to_a_model_whose_provider_speaks_another_format_fails_at_start() {
    // Claude Code speaks Anthropic's format; the only model is behind an OpenAI-compatible
    // provider, and gaffer does not translate: the attempt fails before anything is sent.
    let section = format!(
        "[implementers.claude-code]\nprogram = {:?}\n",
        claude().display().to_string()
    );
    let project = Project::custom(
        &["Say hello"],
        |base| openai_config(base, "claude-code", &section),
        |_, _| vec![],
    )
    .await;
    let out = project.run(&[]);
    assert!(out.status.success());
    let task = project.store().task("T-1").unwrap().unwrap();
    assert_eq!(task.state, TaskState::Failed);
    let reason = task.reason.unwrap_or_default();
    assert!(
        reason.contains(
            "model `coder` is served by provider `openai` in the OpenAI-compatible format, but \
             the agent speaks Anthropic Messages; gaffer does not translate between them"
        ),
        "{reason}"
    );
    assert!(project.fake.received().is_empty());
    assert!(project.model_rows().is_empty());
}
