//! A task's plugin fuel is an account that lasts as long as the task, across attempts and runs
//! (the ledger keeps every plugin run's fuel), and running it dry ends the task, not the run:
//! the task parks as budget-exhausted and the other tasks go on.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gaffer::demo::pipeline::demo_config;
use gaffer::demo::sample;
use gaffer::demo::scripted_provider::ScriptedProvider;
use gaffer::store::{BacklogStore, LedgerStore, NewTask, Role, SqliteStore, TaskState};

struct Repo {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    _provider: ScriptedProvider,
}

/// The sample repository with `tasks`, the demo's scripted models and reference plugins, and
/// `edit` applied to its `gaffer.toml`.
async fn repo(tasks: Vec<NewTask>, edit: impl Fn(String) -> String) -> Repo {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    sample::create(&root, true).unwrap();
    let provider = ScriptedProvider::start(sample::script()).await.unwrap();
    let plugins = support::guest("cost-tier").parent().unwrap().to_path_buf();
    std::fs::write(
        root.join("gaffer.toml"),
        edit(demo_config(&provider.base_url(), &plugins)),
    )
    .unwrap();
    std::fs::create_dir_all(root.join(".gaffer")).unwrap();
    store(&root).add_tasks(&tasks).unwrap();
    Repo {
        _tmp: tmp,
        root,
        _provider: provider,
    }
}

fn store(root: &Path) -> SqliteStore {
    SqliteStore::open(root.join(".gaffer/gaffer.db")).unwrap()
}

fn run(root: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_gaffer"))
        .arg("run")
        .args(args)
        .current_dir(root)
        .env("GAFFER_PLUGIN_CACHE", support::test_cache_dir())
        .output()
        .unwrap();
    eprintln!(
        "gaffer run {args:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn task(title: &str) -> NewTask {
    sample::tasks()
        .into_iter()
        .find(|t| t.title == title)
        .unwrap()
}

/// Fuel the router's runs of `task` used, from the ledger's rows.
fn router_fuel(root: &Path, task: &str) -> Vec<u64> {
    store(root)
        .task_rows(task)
        .unwrap()
        .into_iter()
        .filter(|r| r.scope.role == Role::Router)
        .map(|r| r.fuel)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn task_fuel_is_carried_from_one_run_to_the_next() {
    // The cheap model gets this one wrong (its test fails), so the task comes back.
    let r = repo(vec![task("Count words, not spaces")], |t| t).await;
    let out = run(&r.root, &["--max-tasks", "1"]);
    assert!(out.status.success());
    assert_eq!(
        store(&r.root).task("T-1").unwrap().unwrap().state,
        TaskState::RejectedRequeued
    );
    let first = router_fuel(&r.root, "T-1");
    assert_eq!(first.len(), 1, "one route in the first run");
    // The task may now spend half a route more than it has: enough for one more route only
    // if the first run's fuel were forgotten.
    let budget = first[0] + first[0] / 2;
    let config = std::fs::read_to_string(r.root.join("gaffer.toml")).unwrap();
    let config = config.replacen(
        "fallback_model = \"small\"",
        &format!("fallback_model = \"small\"\nfuel_per_task = {budget}"),
        1,
    );
    std::fs::write(r.root.join("gaffer.toml"), config).unwrap();

    let out = run(&r.root, &[]);
    assert!(out.status.success(), "the run goes on: the task parks");
    let task = store(&r.root).task("T-1").unwrap().unwrap();
    assert_eq!(task.state, TaskState::BudgetExhausted);
    let reason = task.reason.unwrap_or_default();
    assert!(
        reason.contains("plugin fuel budget exhausted")
            && reason.contains("cost_tier")
            && reason.contains(&format!("of {budget} instructions")),
        "{reason}"
    );
    // Across both runs the router never used more than the task's budget.
    let all = router_fuel(&r.root, "T-1");
    assert_eq!(all.len(), 2, "the second route ran, and ran dry");
    assert!(all.iter().sum::<u64>() <= budget, "{all:?} > {budget}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_out_of_plugin_fuel_parks_and_the_run_goes_on() {
    // The hook may use 1 000 instructions a task: far less than one call of it.
    let r = repo(
        vec![
            task("Add slugify"),
            task("Read the API token from the environment"),
        ],
        |t| {
            t.replacen(
                "[[plugins.hooks]]\n",
                "[[plugins.hooks]]\nfuel_per_task = 1000\n",
                1,
            )
        },
    )
    .await;
    let out = run(&r.root, &["--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "no task's fuel stops the run");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(summary["stopped"].is_null(), "{summary}");
    assert_eq!(summary["attempts"].as_array().unwrap().len(), 2);
    for id in ["T-1", "T-2"] {
        let task = store(&r.root).task(id).unwrap().unwrap();
        assert_eq!(task.state, TaskState::BudgetExhausted, "{id}");
        let reason = task.reason.unwrap_or_default();
        assert!(
            reason.contains("plugin fuel budget exhausted") && reason.contains("protected_paths"),
            "{id}: {reason}"
        );
        // The attempt ended at its first hooked tool call: one model call.
        let model_calls = store(&r.root)
            .task_rows(id)
            .unwrap()
            .into_iter()
            .filter(|r| r.scope.role == Role::Agent)
            .count();
        assert_eq!(model_calls, 1, "{id}");
    }
}
