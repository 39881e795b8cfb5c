//! End-to-end tests of the `gaffer` binary's plugin commands.

mod support;

use std::process::Command;

use support::guest;

fn gaffer(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gaffer"))
        .args(args)
        .env("GAFFER_CACHE_DIR", support::test_cache_dir())
        .output()
        .expect("gaffer runs")
}

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn check_accepts_a_router_and_reports_its_sample_call() {
    let path = guest("cost-tier");
    let out = gaffer(&[
        "plugin",
        "check",
        path.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json(&out);
    assert_eq!(report["accepted"], true);
    assert_eq!(report["world"], "router");
    assert_eq!(report["exports"], serde_json::json!(["route"]));
    let imports: Vec<&str> = report["imports"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i.as_str())
        .collect();
    assert!(imports.contains(&"gaffer:plugin/host@0.1.0"), "{imports:?}");
    let call = &report["sample_calls"][0];
    assert_eq!(call["function"], "route");
    assert!(call["fuel_used"].as_u64().unwrap() > 0);
    assert!(call["fault"].is_null(), "{call}");
}

#[test]
fn check_runs_every_hook_export() {
    let path = guest("protected-paths");
    let out = gaffer(&[
        "plugin",
        "check",
        path.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json(&out);
    assert_eq!(report["world"], "hook");
    let functions: Vec<&str> = report["sample_calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["function"].as_str())
        .collect();
    assert_eq!(functions, ["pre-tool", "on-edit", "on-diff"]);
}

#[test]
fn check_refuses_what_is_not_a_component_with_a_nonzero_status() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.wasm");
    std::fs::write(&path, b"junk").unwrap();
    let out = gaffer(&["plugin", "check", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("accepted:  no"), "{text}");
    assert!(text.contains("junk.wasm"), "{text}");
}

#[test]
fn check_refuses_a_plugin_whose_sample_call_faults() {
    let path = guest("hostile-guest");
    let out = gaffer(&[
        "plugin",
        "check",
        path.to_str().unwrap(),
        "--config",
        r#"{"mode":"panic"}"#,
        "--format",
        "json",
    ]);
    assert!(!out.status.success());
    let report = json(&out);
    assert_eq!(report["accepted"], false);
    let fault = report["sample_calls"][0]["fault"].as_str().unwrap();
    assert!(fault.contains("panicked on purpose"), "{fault}");
}

#[test]
fn bench_prints_the_figures_as_json() {
    let path = guest("cost-tier");
    let out = gaffer(&[
        "plugin",
        "bench",
        path.to_str().unwrap(),
        "--calls",
        "50",
        "--warmup",
        "5",
        "--format",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json(&out);
    assert_eq!(report["calls"], 50);
    let median = report["median_ns"].as_u64().unwrap();
    let p90 = report["p90_ns"].as_u64().unwrap();
    assert!(median > 0 && p90 >= median, "{report}");
    assert!(report["fuel_per_call"].as_u64().unwrap() > 0);
}

#[test]
fn bench_refuses_bad_config_json() {
    let path = guest("cost-tier");
    let out = gaffer(&[
        "plugin",
        "bench",
        path.to_str().unwrap(),
        "--config",
        "{nope",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config is not valid JSON"));
}

#[test]
fn models_lists_prices_and_their_source() {
    let config = support::workspace_root().join("examples/gaffer.toml");
    let out = gaffer(&[
        "models",
        "--config",
        config.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let models = json(&out);
    let cheap = models
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["model"] == "cheap")
        .unwrap();
    // host/data/prices/litellm.json: claude-haiku-4-5 at 0.000001 / 0.000005 $ per token.
    assert_eq!(
        cheap["pricing"]["micro_usd_per_million_tokens"]["input"],
        1_000_000
    );
    assert_eq!(
        cheap["pricing"]["micro_usd_per_million_tokens"]["output"],
        5_000_000
    );
    assert!(
        cheap["price_source"]["catalog"]
            .as_str()
            .unwrap()
            .starts_with("litellm 1.110.2")
    );
    let local = models
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["model"] == "local")
        .unwrap();
    assert_eq!(local["pricing"]["watts"], 350);
}

#[test]
fn models_refuses_an_unpriced_model_saying_how_to_price_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gaffer.toml");
    std::fs::write(
        &config,
        "[providers.p]\nkind = \"openai-compatible\"\n[models.x]\nprovider = \"p\"\nid = \"nobody-knows-me\"\n",
    )
    .unwrap();
    let out = gaffer(&["models", "--config", config.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("model `x` (id `nobody-knows-me` on provider `p`) has no price"),
        "{err}"
    );
}

fn gaffer_in(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gaffer"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("gaffer runs")
}

/// A fresh git repository with a Cargo project in it.
fn repository() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let git = Command::new("git")
        .args(["init", "-q", "-b", "trunk"])
        .current_dir(dir.path())
        .status()
        .unwrap();
    assert!(git.success());
    std::fs::write(dir.path().join("Cargo.toml"), "[package]\nname = \"x\"\n").unwrap();
    dir
}

#[test]
fn init_writes_a_working_config_and_ignores_its_state() {
    let repo = repository();
    let out = gaffer_in(repo.path(), &["init"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = std::fs::read_to_string(repo.path().join("gaffer.toml")).unwrap();
    assert!(config.contains("target_branch = \"trunk\""), "{config}");
    assert!(config.contains("test_command = \"cargo test\""), "{config}");
    assert!(repo.path().join(".gaffer/gaffer.db").is_file());
    let ignore = std::fs::read_to_string(repo.path().join(".gitignore")).unwrap();
    assert_eq!(ignore.lines().filter(|l| *l == "/.gaffer/").count(), 1);
    // The written file is one gaffer can read: every model is priced.
    let models = gaffer_in(repo.path(), &["models", "--format", "json"]);
    assert!(
        models.status.success(),
        "{}",
        String::from_utf8_lossy(&models.stderr)
    );
    // A second init refuses to overwrite, and says how.
    let again = gaffer_in(repo.path(), &["init"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert!(
        gaffer_in(repo.path(), &["init", "--force"])
            .status
            .success()
    );
    let ignore = std::fs::read_to_string(repo.path().join(".gitignore")).unwrap();
    assert_eq!(
        ignore.lines().filter(|l| *l == "/.gaffer/").count(),
        1,
        "not added twice"
    );
}

#[test]
fn tasks_are_added_imported_listed_and_shown() {
    let repo = repository();
    assert!(gaffer_in(repo.path(), &["init"]).status.success());
    let add = gaffer_in(
        repo.path(),
        &[
            "task",
            "add",
            "Fix pagination",
            "--body",
            "Last page drops one.",
            "--label",
            "bug",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&add.stdout).trim(), "T-1");
    std::fs::write(
        repo.path().join("todo.md"),
        "- [ ] Add a flag\n  Print each step.\n- [x] Done\n- [ ] Docs\n",
    )
    .unwrap();
    let import = gaffer_in(repo.path(), &["task", "import", "todo.md"]);
    assert_eq!(
        String::from_utf8_lossy(&import.stdout).trim(),
        "imported 2 tasks: T-2 T-3"
    );
    std::fs::write(
        repo.path().join("gh.json"),
        r#"[{"number": 7, "title": "Crash", "body": "boom", "labels": [{"name": "p1"}]}]"#,
    )
    .unwrap();
    assert!(
        gaffer_in(repo.path(), &["task", "import", "gh.json"])
            .status
            .success()
    );

    let list = json(&gaffer_in(
        repo.path(),
        &["task", "list", "--format", "json"],
    ));
    let titles: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Fix pagination", "Add a flag", "Docs", "Crash"]);
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|t| t["state"] == "queued")
    );
    let shown = json(&gaffer_in(
        repo.path(),
        &["task", "show", "T-4", "--format", "json"],
    ));
    assert_eq!(
        (shown["source"].as_str(), shown["labels"][0].as_str()),
        (Some("gh#7"), Some("p1"))
    );
    let missing = gaffer_in(repo.path(), &["task", "show", "T-99"]);
    assert!(!missing.status.success());
}

#[test]
fn a_bad_import_names_the_line_and_field_and_imports_nothing() {
    let repo = repository();
    assert!(gaffer_in(repo.path(), &["init"]).status.success());
    std::fs::write(
        repo.path().join("tasks.jsonl"),
        "{\"title\": \"fine\"}\n{\"title\": \"also fine\"}\n{\"body\": \"no title\"}\n",
    )
    .unwrap();
    let out = gaffer_in(repo.path(), &["task", "import", "tasks.jsonl"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tasks.jsonl:3: missing field `title`"),
        "{err}"
    );
    let list = json(&gaffer_in(
        repo.path(),
        &["task", "list", "--format", "json"],
    ));
    assert_eq!(list.as_array().unwrap().len(), 0, "nothing was imported");
}

#[test]
fn task_commands_outside_a_project_say_to_init() {
    let dir = tempfile::tempdir().unwrap();
    let out = gaffer_in(dir.path(), &["task", "list"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("run `gaffer init` first"));
}

/// `[store] url` with a password is refused before anything connects: the file is in every
/// worktree an agent works in. The error names the file and does not repeat the password.
#[test]
fn a_store_url_with_a_password_in_gaffer_toml_is_refused_without_repeating_it() {
    let dir = repository();
    std::fs::write(
        dir.path().join("gaffer.toml"),
        "[store]\nurl = \"postgres://gaffer:hunter2-canary@/gaffer?host=/nonexistent\"\n",
    )
    .unwrap();
    let out = gaffer_in(dir.path(), &["task", "list"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("gaffer.toml") && stderr.contains("PGPASSWORD"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2-canary"), "{stderr}");
}

/// A store that cannot be reached is named (without its password) and nothing else happens.
#[test]
fn an_unreachable_store_is_named_without_its_password() {
    let dir = repository();
    let out = gaffer_in(
        dir.path(),
        &[
            "task",
            "add",
            "something",
            "--db",
            "postgres://gaffer:hunter2-canary@/gaffer?host=/nonexistent-socket-dir",
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("postgres://gaffer@/gaffer?host=/nonexistent-socket-dir"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2-canary"), "{stderr}");
}
