//! The pipeline end to end: the `gaffer` binary on real git repositories, with the real gateway,
//! ledger, agent, plugins and worktrees, against the scripted provider on 127.0.0.1. Expected
//! values come from the provider's log, the repository and hand computation.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use gaffer::demo::pipeline::demo_config;
use gaffer::demo::sample;
use gaffer::demo::scripted_provider::{
    LoggedCall, Script, ScriptedCall, ScriptedProvider, TaskScript, Turn,
};
use gaffer::store::{
    AttemptOutcome, BacklogStore, LedgerRow, LedgerStore, MicroUsd, NewTask, Phase, RejectionCause,
    Role, RowState, SqliteStore, TaskState,
};
use serde_json::json;

/// Demo prices, µ$ per million tokens: small 0.25 / 1.25 (cache read 0.025); large 3 / 15
/// (cache read 0.30).
fn prices(model: &str) -> (u64, u64, u64) {
    match model {
        "demo-small" => (250_000, 1_250_000, 25_000),
        "demo-large" => (3_000_000, 15_000_000, 300_000),
        other => panic!("no price for {other}"),
    }
}

/// What a logged call costs, by hand: ceil(Σ tokens × price / 10⁶).
fn expected_cost(call: &LoggedCall) -> u64 {
    let (input, output, cache_read) = prices(&call.model);
    let uncached = call.prompt_tokens - call.cached_tokens;
    (uncached * input + call.cached_tokens * cache_read + call.completion_tokens * output)
        .div_ceil(1_000_000)
}

fn turn(name: &str, arguments: serde_json::Value) -> Turn {
    Turn {
        calls: vec![ScriptedCall {
            name: name.to_string(),
            arguments,
        }],
        ..Turn::default()
    }
}

fn finish() -> Turn {
    turn("finish", json!({"summary": "done"}))
}

fn task(title: &str) -> NewTask {
    NewTask {
        title: title.to_string(),
        body: format!("Do {title}."),
        labels: vec!["bug".to_string()],
        paths: vec![],
        source: Some("test".to_string()),
    }
}

/// Per model id, its turns.
type ModelTurns<'a> = Vec<(&'a str, Vec<Turn>)>;

fn script(entries: Vec<(&str, ModelTurns<'_>)>) -> Script {
    Script {
        tasks: entries
            .into_iter()
            .map(|(m, models)| TaskScript {
                matches: m.to_string(),
                models: models
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
            })
            .collect(),
    }
}

/// A sample repository with a backlog, a `gaffer.toml` pointing at a scripted provider, and the
/// reference plugins.
struct Project {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    provider: ScriptedProvider,
}

fn git(dir: &Path, args: &[&str]) -> Output {
    Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@t.invalid"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn git_ok(dir: &Path, args: &[&str]) -> String {
    let out = git(dir, args);
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Project {
    async fn new(script: Script, tasks: Vec<NewTask>, edit: impl Fn(String) -> String) -> Project {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("repo");
        sample::create(&root, true).unwrap();
        let provider = ScriptedProvider::start(script).await.unwrap();
        let plugins = support::guest("cost-tier").parent().unwrap().to_path_buf();
        support::guest("tests-and-limits");
        support::guest("protected-paths");
        std::fs::write(
            root.join("gaffer.toml"),
            edit(demo_config(&provider.base_url(), &plugins)),
        )
        .unwrap();
        std::fs::create_dir_all(root.join(".gaffer")).unwrap();
        let store = SqliteStore::open(root.join(".gaffer/gaffer.db")).unwrap();
        store.add_tasks(&tasks).unwrap();
        Project {
            _tmp: tmp,
            root,
            provider,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gaffer"));
        cmd.args(args)
            .current_dir(&self.root)
            .env("GAFFER_PLUGIN_CACHE", support::test_cache_dir())
            .env_remove("GAFFER_LOG");
        cmd
    }

    /// `gaffer run ARGS` to the end.
    fn run(&self, args: &[&str]) -> Output {
        let mut all = vec!["run"];
        all.extend_from_slice(args);
        let out = self.command(&all).output().unwrap();
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

    fn state(&self, id: &str) -> (TaskState, String) {
        let t = self.store().task(id).unwrap().unwrap();
        (t.state, t.reason.unwrap_or_default())
    }

    fn rows(&self) -> Vec<LedgerRow> {
        self.store().rows().unwrap()
    }

    /// Model-call rows (plugin runs reserve nothing).
    fn model_rows(&self) -> Vec<LedgerRow> {
        self.rows()
            .into_iter()
            .filter(|r| r.reserved > MicroUsd::ZERO || r.charged > MicroUsd::ZERO)
            .collect()
    }

    fn main_tip(&self) -> String {
        git_ok(&self.root, &["rev-parse", "main"])
    }

    /// No attempt's worktree left: under .gaffer/worktrees only the worktrees parked for the
    /// next run (`spare-<worker>`, detached, on no branch), and git knows no other.
    fn assert_no_worktrees(&self) {
        let dir = self.root.join(".gaffer/worktrees");
        let left: Vec<String> = std::fs::read_dir(&dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let attempts: Vec<&String> = left.iter().filter(|n| !n.starts_with("spare-")).collect();
        assert!(attempts.is_empty(), "worktrees left: {left:?}");
        let listed = git_ok(&self.root, &["worktree", "list", "--porcelain"]);
        assert_eq!(
            listed.matches("worktree ").count(),
            1 + left.len(),
            "{listed}"
        );
        assert_eq!(
            listed.matches("\ndetached").count(),
            left.len(),
            "parked worktrees are on no branch: {listed}"
        );
        let branches = git_ok(&self.root, &["branch", "--list", "gaffer/*/*"]);
        assert!(branches.is_empty(), "attempt branches left: {branches}");
    }

    /// The tool results the model was shown in the last request of `model` on a task.
    fn tool_results(&self, model: &str) -> Vec<String> {
        self.last_tool_results(|c| c.model == model)
    }

    /// The tool results shown in the last request that `pick` chooses.
    fn last_tool_results(&self, pick: impl Fn(&LoggedCall) -> bool) -> Vec<String> {
        let log = self.provider.log();
        let last = log.iter().rev().find(|c| pick(c)).expect("a call");
        last.request["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["role"] == "tool")
            .map(|m| m["content"].as_str().unwrap_or("").to_string())
            .collect()
    }
}

fn slugify_turns() -> Vec<Turn> {
    sample::script()
        .tasks
        .into_iter()
        .find(|t| t.matches == "Add slugify")
        .unwrap()
        .models
        .remove(sample::SMALL)
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fix_that_makes_its_failing_test_pass_is_merged_and_the_ledger_matches_the_provider() {
    let p = Project::new(
        script(vec![(
            "Add slugify",
            vec![(sample::SMALL, slugify_turns())],
        )]),
        vec![sample::tasks().remove(0)],
        |t| t,
    )
    .await;
    let before = p.main_tip();
    let out = p.run(&[]);
    assert!(out.status.success());
    assert_eq!(p.state("T-1").0, TaskState::Merged);
    // The change is on main, in the user's checked-out tree too, and the test now runs there.
    assert_ne!(p.main_tip(), before);
    let strings = std::fs::read_to_string(p.root.join("textkit/strings.py")).unwrap();
    assert!(strings.contains("re.findall"), "{strings}");
    assert!(p.root.join("tests/test_slugify.py").is_file());
    assert!(!p.root.join("tests/pending/test_slugify.py").exists());
    let tests = Command::new("python3")
        .args(["-m", "unittest", "discover", "-s", "tests"])
        .current_dir(&p.root)
        .output()
        .unwrap();
    assert!(tests.status.success(), "{}", stderr(&tests));
    // Every call the provider answered is one settled row, charged what its usage costs.
    let log = p.provider.log();
    assert_eq!(log.len(), 4, "four scripted turns");
    let rows = p.model_rows();
    assert_eq!(rows.len(), log.len());
    let expected: u64 = log.iter().map(expected_cost).sum();
    let charged: u64 = rows.iter().map(|r| r.charged.get()).sum();
    assert_eq!(charged, expected);
    for (row, call) in rows.iter().zip(&log) {
        assert_eq!(row.state, RowState::Settled);
        assert_eq!(row.tokens.output, call.completion_tokens);
        assert_eq!(row.tokens.cache_read, call.cached_tokens);
        assert_eq!(row.tokens.input, call.prompt_tokens - call.cached_tokens);
        assert_eq!(row.scope.role, Role::Agent);
    }
    // Phases: the first call reads the task, the last runs after the change.
    assert_eq!(rows[0].scope.phase, Some(Phase::ReadTask));
    assert_eq!(rows[1].scope.phase, Some(Phase::Explore));
    assert_eq!(rows[3].scope.phase, Some(Phase::Implement));
    // Plugin runs are rows too: the router, the hook, the verifier.
    let roles: Vec<Role> = p
        .rows()
        .into_iter()
        .filter(|r| r.reserved == MicroUsd::ZERO && r.charged == MicroUsd::ZERO)
        .map(|r| r.scope.role)
        .collect();
    for role in [Role::Router, Role::Hook, Role::Verifier] {
        assert!(roles.contains(&role), "{roles:?}");
    }
    p.assert_no_worktrees();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_cheap_attempt_escalates_and_both_attempts_are_charged_to_the_task() {
    let demo = sample::script();
    let count = demo
        .tasks
        .into_iter()
        .find(|t| t.matches == "Count words, not spaces")
        .unwrap();
    let p = Project::new(
        Script { tasks: vec![count] },
        vec![sample::tasks().remove(1)],
        |t| t,
    )
    .await;
    let out = p.run(&[]);
    assert!(out.status.success());
    assert_eq!(p.state("T-1").0, TaskState::Merged);
    let attempts = p.store().attempts("T-1").unwrap();
    let summary: Vec<(u32, &str, AttemptOutcome)> = attempts
        .iter()
        .map(|a| (a.number, a.model.as_str(), a.outcome))
        .collect();
    assert_eq!(
        summary,
        [
            (1, "small", AttemptOutcome::Rejected),
            (2, "large", AttemptOutcome::Approved)
        ]
    );
    assert!(
        attempts[0].reasons.iter().any(|r| r.contains("test")),
        "{:?}",
        attempts[0].reasons
    );
    assert_eq!(attempts[0].rejected_by, Some(RejectionCause::Tests));
    assert_eq!(attempts[0].tests_passed, Some(false));
    // The ledger has both attempts' calls, each at its model's price, and they add up to the
    // task's cost as the provider reported it.
    let log = p.provider.log();
    let rows = p.model_rows();
    assert_eq!(rows.len(), log.len());
    let by_attempt = |n: u32| -> Vec<&LedgerRow> {
        rows.iter().filter(|r| r.scope.attempt == Some(n)).collect()
    };
    assert!(by_attempt(1).iter().all(|r| r.scope.model == "small"));
    assert!(by_attempt(2).iter().all(|r| r.scope.model == "large"));
    assert_eq!(
        by_attempt(1).len(),
        log.iter().filter(|c| c.model == "demo-small").count()
    );
    let expected: u64 = log.iter().map(expected_cost).sum();
    let task_cost: u64 = p
        .store()
        .task_rows("T-1")
        .unwrap()
        .iter()
        .map(|r| r.charged.get())
        .sum();
    assert_eq!(task_cost, expected);
    // The second attempt was told why the first was rejected.
    let second_prompt = log
        .iter()
        .find(|c| c.model == "demo-large")
        .unwrap()
        .request["messages"][1]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        second_prompt.contains("Earlier attempts"),
        "{second_prompt}"
    );
    p.assert_no_worktrees();
}

#[tokio::test(flavor = "multi_thread")]
async fn protected_writes_are_denied_with_the_reason_and_shell_writes_are_caught_on_diff() {
    let turns = vec![
        turn("write_file", json!({"path": ".env", "content": "KEY=1\n"})),
        turn(
            "run_command",
            json!({"command": "printf 'KEY=1\\n' > .env"}),
        ),
        finish(),
    ];
    let p = Project::new(
        script(vec![("Protect", vec![(sample::SMALL, turns)])]),
        vec![task("Protect the env")],
        |t| t.replace("max_attempts = 3", "max_attempts = 1"),
    )
    .await;
    let before = p.main_tip();
    let out = p.run(&[]);
    assert!(out.status.success());
    // The model saw the denial as the result of its write_file call.
    let results = p.tool_results("demo-small");
    assert!(
        results[0].contains("denied") && results[0].contains(".env"),
        "{results:?}"
    );
    // The shell write got through the tool, and on-diff caught its effect.
    let (state, reason) = p.state("T-1");
    assert_eq!(state, TaskState::NeedsHuman, "{reason}");
    assert!(
        reason.contains("protected_paths") && reason.contains(".env"),
        "{reason}"
    );
    let attempts = p.store().attempts("T-1").unwrap();
    assert_eq!(attempts[0].outcome, AttemptOutcome::Rejected);
    assert_eq!(attempts[0].rejected_by, Some(RejectionCause::Hooks));
    // What it changed is kept with the attempt, though its worktree is gone.
    assert!(
        attempts[0]
            .changed
            .iter()
            .any(|f| f.path == ".env" && f.status == "added" && f.added == 1),
        "{:?}",
        attempts[0].changed
    );
    // Nothing protected was merged; main did not move.
    assert_eq!(p.main_tip(), before);
    assert!(
        !git(&p.root, &["cat-file", "-e", "main:.env"])
            .status
            .success()
    );
    assert!(!p.root.join(".env").exists());
    p.assert_no_worktrees();
}

#[tokio::test(flavor = "multi_thread")]
async fn paths_that_lead_out_of_the_worktree_are_refused() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "s3cret").unwrap();
    let turns = vec![
        turn("read_file", json!({"path": "../../secret.txt"})),
        turn(
            "read_file",
            json!({"path": outside.path().join("secret.txt")}),
        ),
        turn("read_file", json!({"path": "escape/secret.txt"})),
        turn(
            "write_file",
            json!({"path": "escape/planted.txt", "content": "x"}),
        ),
        turn(
            "write_file",
            json!({"path": "textkit/../../../planted.txt", "content": "x"}),
        ),
        finish(),
    ];
    let p = Project::new(
        script(vec![("Escape", vec![(sample::SMALL, turns)])]),
        vec![task("Escape the sandbox")],
        |t| t.replace("max_attempts = 3", "max_attempts = 1"),
    )
    .await;
    // A committed symlink that points outside the repository.
    std::os::unix::fs::symlink(outside.path(), p.root.join("escape")).unwrap();
    git_ok(&p.root, &["add", "escape"]);
    git_ok(&p.root, &["commit", "-q", "-m", "a symlink out"]);
    let out = p.run(&[]);
    assert!(out.status.success());
    let results = p.tool_results("demo-small");
    assert_eq!(results.len(), 5, "{results:?}");
    for (i, result) in results.iter().enumerate() {
        assert!(
            !result.contains("s3cret"),
            "call {i} read outside: {result}"
        );
        assert!(
            result.contains("outside") || result.contains("escape"),
            "call {i} was not refused as an escape: {result}"
        );
    }
    assert!(!outside.path().join("planted.txt").exists());
    assert!(!p._tmp.path().join("planted.txt").exists());
    assert_eq!(
        std::fs::read_dir(outside.path()).unwrap().count(),
        1,
        "only secret.txt"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn commands_run_without_the_provider_key_in_their_environment() {
    let turns = vec![turn("run_command", json!({"command": "env"})), finish()];
    let p = Project::new(
        script(vec![("Env", vec![(sample::SMALL, turns)])]),
        vec![task("Env check")],
        |t| {
            t.replace(
                "max_retries = 1",
                "max_retries = 1\napi_key_env = \"GAFFER_TEST_PROVIDER_KEY\"",
            )
            .replace("max_attempts = 3", "max_attempts = 1")
        },
    )
    .await;
    let out = p
        .command(&["run"])
        .env("GAFFER_TEST_PROVIDER_KEY", "sk-test-do-not-leak-4242")
        .env("OPENAI_API_KEY", "sk-openai-do-not-leak")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let results = p.tool_results("demo-small");
    let env = &results[0];
    assert!(
        env.contains("exit code 0") && env.contains("PATH="),
        "{env}"
    );
    assert!(!env.contains("do-not-leak"), "{env}");
    assert!(
        !env.contains("GAFFER_TEST_PROVIDER_KEY") && !env.contains("OPENAI_API_KEY"),
        "{env}"
    );
}

/// One attempt's leftovers never reach the next attempt that recycles its worktree, in the same
/// run or (parked between runs) in the next: an attempt that ends before its change is checked
/// (a nested repository it made) leaves a modified tracked file, an untracked one, an ignored
/// one, a hidden directory and a nested repository, each holding a canary; the attempts after
/// it read, list and grep for it in the recycled worktree and never see it.
#[tokio::test(flavor = "multi_thread")]
async fn a_recycled_worktree_shows_the_next_attempt_nothing_the_last_one_left() {
    const CANARY: &str = "canary-5e1f-left-by-an-earlier-attempt";
    let plant = vec![
        turn(
            "run_command",
            json!({"command": format!(
                "echo {CANARY} >> README.md && echo {CANARY} > untracked.txt && \
                 mkdir -p __pycache__ .hidden && echo {CANARY} > __pycache__/c.pyc && \
                 echo {CANARY} > .hidden/h && git init -q nested && echo {CANARY} > nested/n"
            )}),
        ),
        finish(),
    ];
    let harvest = |note: &str| {
        vec![
            turn("read_file", json!({"path": "untracked.txt"})),
            turn("read_file", json!({"path": "__pycache__/c.pyc"})),
            turn(
                "run_command",
                // The pattern split in two, so that only a match prints the canary.
                json!({"command": "cat README.md; ls -a . nested .hidden __pycache__; \
                               grep -rn \"canary-5e1f\"\"-left\" . ; true"}),
            ),
            turn(
                "write_file",
                json!({"path": note, "content": "nothing found\n"}),
            ),
            finish(),
        ]
    };
    let p = Project::new(
        script(vec![
            ("Plant", vec![(sample::SMALL, plant)]),
            ("Harvest one", vec![(sample::SMALL, harvest("one.txt"))]),
            ("Harvest two", vec![(sample::SMALL, harvest("two.txt"))]),
        ]),
        vec![
            task("Plant one"),
            task("Harvest one"),
            task("Plant two"),
            task("Harvest two"),
        ],
        |t| t.replace("max_attempts = 3", "max_attempts = 1"),
    )
    .await;

    // Run 1: the planting attempt ends before its check and its worktree is parked as it is.
    let out = p.run(&["--workers", "1", "--max-tasks", "1"]);
    assert!(out.status.success());
    let (state, reason) = p.state("T-1");
    assert_eq!(state, TaskState::NeedsHuman, "{reason}");
    assert!(reason.contains("nested"), "{reason}");
    let spare = p.root.join(".gaffer/worktrees/spare-0");
    assert!(
        std::fs::read_to_string(spare.join("untracked.txt"))
            .unwrap()
            .contains(CANARY),
        "the parked worktree holds what the attempt left"
    );

    // Run 2: harvest from the parked worktree, plant again, harvest from that in the same run.
    let out = p.run(&["--workers", "1"]);
    assert!(out.status.success());
    assert_eq!(p.state("T-2").0, TaskState::Merged);
    assert_eq!(p.state("T-3").0, TaskState::NeedsHuman);
    assert_eq!(p.state("T-4").0, TaskState::Merged);
    for task in ["Harvest one", "Harvest two"] {
        let results = canary_unseen(&p, task, CANARY);
        assert_eq!(results.len(), 4, "{task}: {results:?}");
        assert!(results[2].contains("exit code"), "{}", results[2]);
    }
    // One worktree served every attempt (git has one linked worktree).
    let admin: Vec<_> = std::fs::read_dir(p.root.join(".git/worktrees"))
        .unwrap()
        .collect();
    assert_eq!(admin.len(), 1, "{admin:?}");
    assert!(
        p.root.join(".git/worktrees/T-1-a1").is_dir(),
        "recycled, not made anew: {admin:?}"
    );
    for note in ["one.txt", "two.txt"] {
        let shown = git_ok(&p.root, &["show", &format!("main:{note}")]);
        assert!(shown.contains("nothing found"), "{shown}");
    }
    p.assert_no_worktrees();
}

/// The worktree of an attempt that merged goes to the worker's next attempt as it is, without a
/// look at its files (see `Worktree::clean_at`): that holds only because gaffer's own reset after
/// the tests was the last thing to touch it. The tests are the repository's code, as much the
/// attacker's as the agent's: what they leave must not reach the next attempt either.
#[tokio::test(flavor = "multi_thread")]
async fn what_the_tests_of_a_merged_attempt_leave_never_reaches_the_next_attempt() {
    const CANARY: &str = "canary-77d2-left-by-the-tests";
    let write_note = |note: &str| {
        vec![
            turn(
                "write_file",
                json!({"path": note, "content": "nothing found\n"}),
            ),
            finish(),
        ]
    };
    let harvest = vec![
        turn("read_file", json!({"path": "untracked.txt"})),
        turn(
            "run_command",
            // The pattern split in two, so that only a match prints the canary.
            json!({"command": "cat README.md; ls -a . .hidden; \
                           grep -rn \"canary-77d2\"\"-left\" . ; true"}),
        ),
        turn(
            "write_file",
            json!({"path": "harvest.txt", "content": "nothing found\n"}),
        ),
        finish(),
    ];
    let plant = format!(
        "echo {CANARY} > untracked.txt && echo {CANARY} >> README.md && mkdir -p .hidden && \
         echo {CANARY} > .hidden/h && {}",
        sample::TEST_COMMAND
    );
    let p = Project::new(
        script(vec![
            ("Merge one", vec![(sample::SMALL, write_note("one.txt"))]),
            ("Harvest", vec![(sample::SMALL, harvest)]),
        ]),
        vec![task("Merge one"), task("Harvest")],
        |t| {
            t.replace(sample::TEST_COMMAND, &plant)
                .replace("require_tests = true", "require_tests = false")
        },
    )
    .await;

    let out = p.run(&["--workers", "1"]);
    assert!(out.status.success());
    assert_eq!(p.state("T-1").0, TaskState::Merged, "{:?}", p.state("T-1"));
    assert_eq!(p.state("T-2").0, TaskState::Merged, "{:?}", p.state("T-2"));
    let results = canary_unseen(&p, "Harvest", CANARY);
    assert_eq!(results.len(), 3, "{results:?}");
    assert!(results[1].contains("exit code"), "{}", results[1]);
    // One worktree served both attempts.
    assert!(p.root.join(".git/worktrees/T-1-a1").is_dir());
    p.assert_no_worktrees();
}

/// A worktree parked by a run whose last attempt merged goes to the next run without a checkout
/// when nothing changed it meanwhile (its stamp, in gaffer's git dir, says so). Whatever does
/// change it between runs (a tracked file rewritten at the same size with its time put back, a
/// file slipped into a directory whose time is put back, a hidden directory) never reaches the
/// next run's attempt.
#[tokio::test(flavor = "multi_thread")]
async fn what_changes_a_parked_worktree_between_runs_never_reaches_the_next_run() {
    const CANARY: &str = "canary-41c9-slipped-in-between-runs";
    let p = Project::new(
        script(vec![
            (
                "Merge one",
                vec![(
                    sample::SMALL,
                    vec![
                        turn(
                            "write_file",
                            json!({"path": "one.txt", "content": "nothing found\n"}),
                        ),
                        finish(),
                    ],
                )],
            ),
            (
                "Harvest",
                vec![(
                    sample::SMALL,
                    vec![
                        turn("read_file", json!({"path": "textkit/slipped.py"})),
                        turn(
                            "run_command",
                            // The pattern split in two, so that only a match prints the canary.
                            json!({"command": "cat README.md; ls -a . .hidden textkit; \
                                           grep -rn \"canary-41c9\"\"-slipped\" . ; true"}),
                        ),
                        turn(
                            "write_file",
                            json!({"path": "harvest.txt", "content": "nothing found\n"}),
                        ),
                        finish(),
                    ],
                )],
            ),
        ]),
        vec![task("Merge one"), task("Harvest")],
        |t| t.replace("require_tests = true", "require_tests = false"),
    )
    .await;
    let out = p.run(&["--workers", "1", "--max-tasks", "1"]);
    assert!(out.status.success());
    assert_eq!(p.state("T-1").0, TaskState::Merged, "{:?}", p.state("T-1"));
    let spare = p.root.join(".gaffer/worktrees/spare-0");
    assert!(
        spare.join("one.txt").is_file(),
        "parked: {}",
        spare.display()
    );

    // Between the runs: changes that keep sizes and modification times.
    let put_back = |path: &Path, like: &std::fs::Metadata| {
        let file = std::fs::File::open(path).unwrap();
        file.set_modified(like.modified().unwrap()).unwrap();
    };
    let readme = spare.join("README.md");
    let before = std::fs::metadata(&readme).unwrap();
    let text = std::fs::read_to_string(&readme).unwrap();
    let planted = format!("{CANARY}\n");
    assert!(text.len() > planted.len());
    std::fs::write(&readme, format!("{planted}{}", &text[planted.len()..])).unwrap();
    put_back(&readme, &before);
    let textkit = spare.join("textkit");
    let before = std::fs::metadata(&textkit).unwrap();
    std::fs::write(textkit.join("slipped.py"), format!("# {CANARY}\n")).unwrap();
    put_back(&textkit, &before);
    std::fs::create_dir(spare.join(".hidden")).unwrap();
    std::fs::write(spare.join(".hidden/h"), CANARY).unwrap();

    let out = p.run(&["--workers", "1"]);
    assert!(out.status.success());
    assert_eq!(p.state("T-2").0, TaskState::Merged, "{:?}", p.state("T-2"));
    let results = canary_unseen(&p, "Harvest", CANARY);
    assert_eq!(results.len(), 3, "{results:?}");
    assert!(results[1].contains("exit code"), "{}", results[1]);
    assert!(
        p.root.join(".git/worktrees/T-1-a1").is_dir(),
        "the parked worktree served the next run"
    );
    p.assert_no_worktrees();
}

/// The tool results of the attempt whose request names `task`, none of them showing `canary`;
/// and `main` holds none of it either.
fn canary_unseen(p: &Project, task: &str, canary: &str) -> Vec<String> {
    let results = p.last_tool_results(|c| c.request.to_string().contains(task));
    for result in &results {
        assert!(
            !result.contains(canary),
            "{task}: the attempt saw the canary: {result}"
        );
    }
    let found = git(&p.root, &["grep", "-n", canary, "main"]);
    assert!(
        found.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&found.stdout)
    );
    results
}

/// Many cheap turns: reading files until the money runs out.
fn reading_turns(n: usize) -> Vec<Turn> {
    let mut turns: Vec<Turn> = (0..n)
        .map(|_| turn("read_file", json!({"path": "textkit/strings.py"})))
        .collect();
    turns.push(turn(
        "write_file",
        json!({"path": "notes.txt", "content": "x\n"}),
    ));
    turns.push(finish());
    turns
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_cap_reached_mid_attempt_ends_the_task_as_budget_exhausted() {
    let p = Project::new(
        script(vec![("Reader", vec![(sample::SMALL, reading_turns(30))])]),
        vec![task("Reader task")],
        |t| {
            t.replace("per_task = \"0.50\"", "per_task = \"0.004\"")
                .replace("max_turns = 12", "max_turns = 60")
        },
    )
    .await;
    let before = p.main_tip();
    let out = p.run(&[]);
    assert!(
        out.status.success(),
        "a task's cap ends the task, not the run"
    );
    let (state, reason) = p.state("T-1");
    assert_eq!(state, TaskState::BudgetExhausted, "{reason}");
    assert!(reason.contains("task cap of $0.004"), "{reason}");
    assert_eq!(p.main_tip(), before, "nothing merged");
    let log = p.provider.log();
    assert!(
        log.len() >= 2 && log.len() < 30,
        "stopped mid-attempt after {} calls",
        log.len()
    );
    let spent: u64 = p
        .store()
        .task_rows("T-1")
        .unwrap()
        .iter()
        .map(|r| r.charged.get())
        .sum();
    assert!(spent <= 4_000, "spent {spent} µ$ of a 4000 µ$ cap");
    assert_eq!(spent, log.iter().map(expected_cost).sum::<u64>());
    p.assert_no_worktrees();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_cap_stops_the_run_cleanly_and_keeps_the_backlog() {
    let p = Project::new(
        script(vec![
            ("Reader one", vec![(sample::SMALL, reading_turns(30))]),
            ("Reader two", vec![(sample::SMALL, reading_turns(30))]),
        ]),
        vec![task("Reader one"), task("Reader two")],
        |t| {
            t.replace("per_run = \"5.00\"", "per_run = \"0.004\"")
                .replace("max_turns = 12", "max_turns = 60")
        },
    )
    .await;
    let out = p.run(&[]);
    assert_eq!(out.status.code(), Some(3), "a run cap stops the run");
    let text = stdout(&out);
    assert!(text.contains("run cap of $0.004"), "{text}");
    // The interrupted task is back in the queue, the other never started; nothing is lost.
    let (state, reason) = p.state("T-1");
    assert_eq!(state, TaskState::Queued, "{reason}");
    assert_eq!(p.state("T-2").0, TaskState::Queued);
    assert!(p.store().attempts("T-1").unwrap().is_empty());
    let charged: u64 = p.rows().iter().map(|r| r.charged.get()).sum();
    assert!(charged <= 4_000);
    assert!(p.rows().iter().all(|r| r.state == RowState::Settled));
    p.assert_no_worktrees();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_run_resumes_without_charging_a_call_twice_or_leaving_a_worktree() {
    let mut turns = slugify_turns();
    // The third call is slow: the process is killed while it is in flight.
    turns[2].delay_ms = 3_000;
    let p = Project::new(
        script(vec![("Add slugify", vec![(sample::SMALL, turns)])]),
        vec![sample::tasks().remove(0)],
        |t| t,
    )
    .await;
    let mut child = p
        .command(&["run"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while p.provider.log().len() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the run never got going"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Kill while the third call is in flight: its ledger row (the third model-call row) is
    // marked sent, not yet settled; the first two are settled.
    let third_in_flight = |rows: &[LedgerRow]| {
        rows.len() == 3
            && rows[..2].iter().all(|r| r.state == RowState::Settled)
            && rows[2].state == RowState::Sent
    };
    while !third_in_flight(&p.model_rows()) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the third call never left"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        p.root.join(".gaffer/worktrees").read_dir().unwrap().count() == 1,
        "the killed run left its worktree"
    );
    let (state, _) = p.state("T-1");
    assert_eq!(
        state,
        TaskState::Running,
        "still leased to the dead process"
    );
    let answered_before_kill = p.provider.log().len();

    let out = p.run(&[]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("T-1"));
    assert_eq!(p.state("T-1").0, TaskState::Merged);
    p.assert_no_worktrees();
    // Every answered call is exactly one settled row with the provider's usage; the call in
    // flight at the kill was answered by nobody and is charged once, at its reservation.
    let log = p.provider.log();
    assert!(log.len() > answered_before_kill);
    let rows = p.model_rows();
    let settled: Vec<&LedgerRow> = rows.iter().filter(|r| !r.recovered).collect();
    let recovered: Vec<&LedgerRow> = rows.iter().filter(|r| r.recovered).collect();
    assert_eq!(settled.len(), log.len());
    assert_eq!(recovered.len(), 1, "{recovered:?}");
    assert_eq!(recovered[0].charged, recovered[0].reserved);
    let mut got: Vec<(u64, u64, u64)> = settled
        .iter()
        .map(|r| (r.tokens.input, r.tokens.cache_read, r.tokens.output))
        .collect();
    let mut want: Vec<(u64, u64, u64)> = log
        .iter()
        .map(|c| {
            (
                c.prompt_tokens - c.cached_tokens,
                c.cached_tokens,
                c.completion_tokens,
            )
        })
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    // The killed attempt left no history; the one that merged is attempt 2.
    let attempts = p.store().attempts("T-1").unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(
        (attempts[0].number, attempts[0].outcome),
        (2, AttemptOutcome::Approved)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_tasks_on_four_workers_merge_exactly_once_each() {
    let mut entries = Vec::new();
    let mut tasks = Vec::new();
    for i in 1..=20 {
        let title = format!("Write note {i:02}");
        entries.push(TaskScript {
            matches: title.clone(),
            models: [(
                sample::SMALL.to_string(),
                vec![
                    turn(
                        "write_file",
                        json!({"path": format!("notes/note-{i:02}.txt"), "content": format!("note {i}\n")}),
                    ),
                    finish(),
                ],
            )]
            .into_iter()
            .collect(),
        });
        tasks.push(task(&title));
    }
    let p = Project::new(Script { tasks: entries }, tasks, |t| {
        t.replace("require_tests = true", "require_tests = false")
    })
    .await;
    let out = p.run(&["--workers", "4"]);
    assert!(out.status.success());
    let store = p.store();
    let all = store.tasks().unwrap();
    assert!(all.iter().all(|t| t.state == TaskState::Merged), "{all:?}");
    // Each note is on main once, in a commit of its own task.
    for i in 1..=20 {
        let note = git_ok(&p.root, &["show", &format!("main:notes/note-{i:02}.txt")]);
        assert_eq!(note, format!("note {i}"));
        let commits = git_ok(
            &p.root,
            &[
                "log",
                "--oneline",
                "--no-merges",
                "--grep",
                &format!("^T-{i}: "),
                "main",
            ],
        );
        assert_eq!(commits.lines().count(), 1, "T-{i}: {commits}");
    }
    // No ledger row lost: two answered calls per task, each one row.
    let log = p.provider.log();
    assert_eq!(log.len(), 40);
    let rows = p.model_rows();
    assert_eq!(rows.len(), 40);
    let per_task: BTreeMap<String, usize> = rows.iter().fold(BTreeMap::new(), |mut m, r| {
        *m.entry(r.scope.task_id.clone().unwrap()).or_default() += 1;
        m
    });
    assert!(per_task.values().all(|&n| n == 2), "{per_task:?}");
    assert_eq!(
        rows.iter().map(|r| r.charged.get()).sum::<u64>(),
        log.iter().map(expected_cost).sum::<u64>()
    );
    p.assert_no_worktrees();
}

/// Nothing changed: tasks still queued, no ledger rows, main where it was, no worktrees.
fn assert_untouched(p: &Project, main_before: &str) {
    assert_eq!(p.state("T-1").0, TaskState::Queued);
    assert!(p.rows().is_empty());
    assert_eq!(p.main_tip(), main_before);
    assert!(p.provider.log().is_empty());
    assert!(
        !p.root.join(".gaffer/worktrees").exists()
            || p.root.join(".gaffer/worktrees").read_dir().unwrap().count() == 0
    );
}

async fn bad_input(
    edit: impl Fn(String) -> String,
    prepare: impl Fn(&Path),
) -> (Project, Output, String) {
    let p = Project::new(
        script(vec![(
            "Add slugify",
            vec![(sample::SMALL, slugify_turns())],
        )]),
        vec![sample::tasks().remove(0)],
        edit,
    )
    .await;
    prepare(&p.root);
    let before = p.main_tip();
    let out = p.run(&[]);
    (p, out, before)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_config_is_named_and_changes_nothing() {
    let (p, out, before) = bad_input(|t| t.replace("[agent]", "[agent\n"), |_| {}).await;
    assert!(!out.status.success());
    let err = stderr(&out);
    // Errors in the file read `FILE:LINE: reason`: the line of the broken table header.
    let config = std::fs::read_to_string(p.root.join("gaffer.toml")).unwrap();
    let line = config
        .lines()
        .position(|l| l == "[agent")
        .expect("the broken header")
        + 1;
    assert!(err.contains(&format!("gaffer.toml:{line}:")), "{err}");
    assert_untouched(&p, &before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_plugin_file_is_named_and_changes_nothing() {
    let (p, out, before) = bad_input(
        |t| t.replace("protected_paths.wasm", "no_such_plugin.wasm"),
        |_| {},
    )
    .await;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("no_such_plugin.wasm"), "{err}");
    assert_untouched(&p, &before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_test_command_that_does_not_exist_is_named_and_changes_nothing() {
    let (p, out, before) = bad_input(
        |t| t.replace(sample::TEST_COMMAND, "no-such-test-runner --all"),
        |_| {},
    )
    .await;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("no-such-test-runner") && err.contains("not found"),
        "{err}"
    );
    assert_untouched(&p, &before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dirty_target_branch_is_named_and_changes_nothing() {
    let (p, out, before) = bad_input(
        |t| t,
        |root| std::fs::write(root.join("README.md"), "local edit\n").unwrap(),
    )
    .await;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("uncommitted changes") && err.contains("README.md"),
        "{err}"
    );
    assert_untouched(&p, &before);
    assert_eq!(
        std::fs::read_to_string(p.root.join("README.md")).unwrap(),
        "local edit\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_target_branch_is_named_and_changes_nothing() {
    let (p, out, before) = bad_input(
        |t| t.replace("target_branch = \"main\"", "target_branch = \"release\""),
        |_| {},
    )
    .await;
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("`release`") && err.contains("does not exist"),
        "{err}"
    );
    assert_untouched(&p, &before);
}

#[tokio::test(flavor = "multi_thread")]
async fn status_shows_the_backlog_by_state_and_spend_against_the_caps() {
    let p = Project::new(
        script(vec![(
            "Add slugify",
            vec![(sample::SMALL, slugify_turns())],
        )]),
        vec![sample::tasks().remove(0), task("Never scripted")],
        |t| t.replace("per_run", "per_day = \"50.00\"\nper_run"),
    )
    .await;
    let out = p.run(&["--max-tasks", "1"]);
    assert!(out.status.success());
    let status = p.command(&["status", "--format", "json"]).output().unwrap();
    assert!(status.status.success(), "{}", stderr(&status));
    let value: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(value["tasks"]["merged"], 1);
    assert_eq!(value["tasks"]["queued"], 1);
    let spent: u64 = p.provider.log().iter().map(expected_cost).sum();
    assert_eq!(value["spend"]["day"]["spent_micros"], spent);
    assert_eq!(value["spend"]["day"]["cap_micros"], 50_000_000);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signal_parks_the_current_attempt_and_exits_cleanly() {
    let mut turns = slugify_turns();
    turns[2].delay_ms = 2_000;
    let p = Project::new(
        script(vec![("Add slugify", vec![(sample::SMALL, turns)])]),
        vec![sample::tasks().remove(0), task("Never started")],
        |t| t,
    )
    .await;
    let before = p.main_tip();
    let child = p
        .command(&["run"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while p.provider.log().len() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the run never got going"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // SIGTERM while the third call is in flight: the call completes, the attempt parks.
    let pid = i32::try_from(child.id()).unwrap();
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(stderr(&out).contains("stopping"), "{}", stderr(&out));
    // Both tasks are back in the queue, no lease held, nothing merged, nothing left behind.
    for id in ["T-1", "T-2"] {
        let t = p.store().task(id).unwrap().unwrap();
        assert_eq!((t.state, t.lease_owner), (TaskState::Queued, None), "{id}");
    }
    assert_eq!(p.main_tip(), before);
    p.assert_no_worktrees();
    assert!(p.rows().iter().all(|r| r.state == RowState::Settled));
    assert_eq!(p.model_rows().len(), p.provider.log().len());
}

#[test]
fn the_demo_runs_the_whole_pipeline_offline_and_ends_with_the_economics() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let plugins = support::guest("cost-tier").parent().unwrap().to_path_buf();
    support::guest("tests-and-limits");
    support::guest("protected-paths");
    let out = Command::new(env!("CARGO_BIN_EXE_gaffer"))
        .arg("demo")
        .arg(&dir)
        .arg("--plugins")
        .arg(&plugins)
        .env("GAFFER_PLUGIN_CACHE", support::test_cache_dir())
        .env_remove("OPENAI_API_KEY")
        .env_remove("ANTHROPIC_API_KEY")
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(text.contains("SIMULATION"), "{text}");
    // It ends with the economics: the report's tables and totals, and its HTML beside the repo.
    assert!(text.contains(" · 4 merged · "), "{text}");
    assert!(
        text.contains("read-task $") && text.contains("\nmodels\n"),
        "{text}"
    );
    assert!(text.contains("on attempts that did not merge"), "{text}");
    assert!(dir.join("gaffer-report.html").is_file());
    // The sample repository holds the merged history: one commit per task on main.
    let log = git_ok(&dir, &["log", "--format=%s", "main"]);
    for id in ["T-1", "T-2", "T-3", "T-4"] {
        assert_eq!(
            log.lines()
                .filter(|l| l.starts_with(&format!("{id}: ")))
                .count(),
            1,
            "{log}"
        );
    }
    // Routing, rejection and escalation happened: the harder tasks needed the strong model.
    let store = SqliteStore::open(dir.join(".gaffer/gaffer.db")).unwrap();
    let models = |id: &str| -> Vec<(String, AttemptOutcome)> {
        store
            .attempts(id)
            .unwrap()
            .into_iter()
            .map(|a| (a.model, a.outcome))
            .collect()
    };
    let pair = |m: &str, o: AttemptOutcome| (m.to_string(), o);
    use AttemptOutcome::{Approved, Rejected};
    assert_eq!(models("T-1"), [pair("small", Approved)]);
    assert_eq!(
        models("T-2"),
        [pair("small", Rejected), pair("large", Approved)]
    );
    assert_eq!(
        models("T-3"),
        [pair("small", Rejected), pair("large", Approved)]
    );
    assert_eq!(models("T-4"), [pair("small", Approved)]);
    // T-2's first attempt failed its tests; T-3's broke a hook's rule.
    let cause = |id: &str| store.attempts(id).unwrap()[0].rejected_by;
    assert_eq!(cause("T-2"), Some(RejectionCause::Tests));
    assert_eq!(cause("T-3"), Some(RejectionCause::Hooks));
    let python = Command::new("python3")
        .args(["-m", "unittest", "discover", "-s", "tests"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(python.status.success(), "{}", stderr(&python));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_report_over_a_pipeline_ledger_adds_up_in_every_format() {
    let demo = sample::script();
    let p = Project::new(demo, sample::tasks(), |t| {
        t + "\n[economics]\nhourly_rate = 90\nhours_per_task = 1.5\n"
    })
    .await;
    assert!(p.run(&[]).status.success());
    let report = |format: &str| -> String {
        let out = p.command(&["report", "--format", format]).output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    let json: serde_json::Value = serde_json::from_str(&report("json")).unwrap();
    let store = p.store();
    let tasks = json["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 4);
    let mut total = 0;
    for t in tasks {
        let id = t["id"].as_str().unwrap();
        // Per-task totals are the sums of their ledger rows.
        let rows: u64 = store
            .task_rows(id)
            .unwrap()
            .iter()
            .map(|r| r.charged.get())
            .sum();
        assert_eq!(t["cost_micros"].as_u64(), Some(rows), "{id}");
        let attempts: u64 = t["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["cost_micros"].as_u64().unwrap())
            .sum();
        assert_eq!(attempts, rows, "{id}: attempts add up to the task");
        total += rows;
    }
    assert_eq!(json["total_micros"].as_u64(), Some(total));
    assert_eq!(total, p.rows().iter().map(|r| r.charged.get()).sum::<u64>());
    // Unmerged spend: exactly the rejected attempts of T-2 and T-3.
    let rejected: u64 = ["T-2", "T-3"]
        .iter()
        .flat_map(|id| store.task_rows(id).unwrap())
        .filter(|r| r.scope.attempt == Some(1))
        .map(|r| r.charged.get())
        .sum();
    assert_eq!(json["unmerged_micros"].as_u64(), Some(rejected));
    // A person at $90/h for 1.5 h on each of 4 merged tasks: $540.
    assert_eq!(
        json["human"]["merged_tasks_micros"].as_u64(),
        Some(540_000_000)
    );
    // CSV: one row per attempt, and its dollars add up to the JSON's.
    let csv = report("csv");
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let header = reader.headers().unwrap().clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 6, "{csv}");
    for t in tasks {
        let id = t["id"].as_str().unwrap();
        let csv_micros: u64 = rows
            .iter()
            .filter(|r| &r[col("task")] == id)
            .map(|r| {
                let (whole, frac) = r[col("cost_usd")].split_once('.').unwrap();
                whole.parse::<u64>().unwrap() * 1_000_000 + frac.parse::<u64>().unwrap()
            })
            .sum();
        assert_eq!(Some(csv_micros), t["cost_micros"].as_u64(), "{id}");
    }
    assert!(
        rows.iter()
            .any(|r| &r[col("title")] == "Count words, not spaces")
    );
    // The text table shows the same dollars.
    let text = report("text");
    for t in tasks {
        let micros = t["cost_micros"].as_u64().unwrap();
        let dollars = format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000);
        let shown = dollars.trim_end_matches('0');
        assert!(
            text.contains(&format!("${shown}")),
            "{shown} not in\n{text}"
        );
    }
    // HTML: one file, the same figures in its data attributes.
    let out = p
        .command(&["report", "--format", "html", "--out", "r.html"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let html = std::fs::read_to_string(p.root.join("r.html")).unwrap();
    assert!(html.contains(&format!("id=\"total\" data-micros=\"{total}\"")));
    assert_eq!(html.matches("<figure data-chart=").count(), 5);
    // Self-contained: nothing is loaded from elsewhere (the inlined chart library names the
    // SVG namespace, which is no request).
    for external in [
        "src=\"http",
        "href=\"http",
        "src='http",
        "href='http",
        "url(http",
    ] {
        assert!(!html.contains(external), "loads {external}…");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_on_the_ledger_reproduces_the_run_that_wrote_it() {
    let p = Project::new(sample::script(), sample::tasks(), |t| t).await;
    assert!(p.run(&[]).status.success());
    let out = p
        .command(&[
            "replay",
            "--from-ledger",
            "--cascade",
            "small,large",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let results: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let by_name = |n: &str| results.iter().find(|r| r["name"] == n).unwrap().clone();
    // The cascade the router followed costs what the run cost, attempt for attempt.
    let total: u64 = p.rows().iter().map(|r| r.charged.get()).sum();
    let cascade = by_name("cascade small → large");
    assert_eq!(cascade["cost_micros"].as_u64(), Some(total));
    assert_eq!(
        (cascade["solved"].as_u64(), cascade["attempts"].as_u64()),
        (Some(4), Some(6))
    );
    // The cheap model alone: the two tasks it solved; the strong one was tried on two only.
    let small = by_name("small");
    assert_eq!(
        (small["solved"].as_u64(), small["attempts"].as_u64()),
        (Some(2), Some(4))
    );
    let large = by_name("large");
    assert_eq!(
        (large["solved"].as_u64(), large["untried"].as_u64()),
        (Some(2), Some(2))
    );
}
