//! Parity: the Python and JavaScript reference plugins (plugins/python, plugins/js) make the same
//! decisions as the Rust plugins they mirror, on the same inputs, through the real runtime with
//! the shipped limits. The expected decision of every case is the Rust plugin's.

mod support;

use gaffer::plugin::samples::model;
use gaffer::plugin::types::{
    Attempt, AttemptOutcome, CapLevel, Diff, DiffStats, FileDiff, FileEdit, FileStatus,
    HookDecision, MicroUsd, ModelInfo, MoneyLeft, RouteRequest, ToolCall,
};
use gaffer::plugin::{CallContext, Plugin, PluginSpec, World, samples};
use serde_json::{Value, json};
use support::{Lang, guest, polyglot_guest, runtime};

/// The Rust plugin and its Python and JavaScript ports, with one config.
struct Trio {
    rust: Plugin,
    ports: Vec<(Lang, Plugin)>,
}

fn load_trio(name: &str, world: World, config: &Value) -> Trio {
    let (runtime, _) = runtime();
    let load = |path| {
        let mut spec = PluginSpec::new(world, path).with_config(config.clone());
        if world == World::Router {
            spec.fallback_model = Some("fallback".to_string());
        }
        runtime.load(spec).expect("plugin loads")
    };
    Trio {
        rust: load(guest(name)),
        ports: [Lang::Python, Lang::Js]
            .into_iter()
            .map(|lang| (lang, load(polyglot_guest(lang, name))))
            .collect(),
    }
}

fn ctx() -> CallContext {
    CallContext::new("T-1", 1)
}

// ---------------------------------------------------------------- cost-tier (router)

fn money(level: CapLevel, cap: u64, left: u64) -> MoneyLeft {
    MoneyLeft {
        level,
        cap: MicroUsd(cap),
        spent: MicroUsd(cap - left),
        left: MicroUsd(left),
    }
}

fn rejected(number: u32) -> Attempt {
    Attempt {
        number,
        outcome: AttemptOutcome::Rejected,
        ..samples::rejected_attempt()
    }
}

/// Route requests that vary every input cost-tier looks at; the dimensions cycle with
/// different periods, so the cases cover many combinations without the whole product.
fn route_requests() -> Vec<RouteRequest> {
    let labels: [&[&str]; 5] = [
        &[],
        &["bug"],
        &["ARCHITECTURE"],
        &["refactor", "security"],
        &["Docs", "refactor"],
    ];
    let bodies = [
        "short".to_string(),
        "x".repeat(4_001),
        // 4,000 characters but 8,000 bytes: not large (characters count, not bytes).
        "é".repeat(4_000),
        "é".repeat(4_001),
        // 4,000 characters but 8,000 UTF-16 units (JavaScript's `length`).
        "😀".repeat(4_000),
    ];
    let histories: [Vec<Attempt>; 4] = [
        vec![],
        vec![rejected(1)],
        vec![rejected(1), rejected(2)],
        vec![
            rejected(1),
            Attempt {
                outcome: AttemptOutcome::Failed,
                ..rejected(2)
            },
            rejected(3),
        ],
    ];
    let budgets: [Vec<MoneyLeft>; 5] = [
        samples::budget().money,
        vec![],
        vec![
            money(CapLevel::Call, 50_000, 10_000),
            money(CapLevel::Task, 2_000_000, 100_000),
        ],
        vec![
            money(CapLevel::Day, 100_000_000, 60_000_000),
            money(CapLevel::Month, 900_000_000, 800_000_000),
        ],
        vec![
            money(CapLevel::Task, 2_000_000, 950_000),
            money(CapLevel::Run, 3_000_000, 950_000),
        ],
    ];
    let model_sets: [Vec<ModelInfo>; 4] = [
        samples::models(),
        // No model at tier 2.
        vec![
            model("cheap", 1, 1_000_000, 5_000_000),
            model("strong", 3, 15_000_000, 75_000_000),
        ],
        // Two models at a tier, a gap, and prices that round up.
        vec![
            model("flash", 1, 300_001, 2_500_000),
            model("mini", 1, 250_000, 2_000_000),
            model("pro", 4, 1_250_000, 10_000_000),
            model("max", 4, 1_250_000, 10_000_000),
        ],
        // The cheapest model is not at the lowest tier.
        vec![
            model("local", 2, 0, 0),
            model("hosted", 1, 500_000, 1_500_000),
            model("big", 3, 5_000_000, 25_000_000),
        ],
    ];
    let many_paths: Vec<String> = (0..7).map(|i| format!("src/m{i}.rs")).collect();
    (0..120)
        .map(|i| {
            let mut request = samples::route_request();
            request.task.labels = labels[i % labels.len()]
                .iter()
                .map(|l| l.to_string())
                .collect();
            request.task.body = bodies[(i / 2) % bodies.len()].clone();
            if i % 7 == 3 {
                request.task.paths = many_paths.clone();
            }
            request.history = histories[(i / 3) % histories.len()].clone();
            request.budget.money = budgets[i % budgets.len()].clone();
            request.models = model_sets[(i / 5) % model_sets.len()].clone();
            request
        })
        .collect()
}

async fn assert_router_parity(config: Value) {
    let trio = load_trio("cost-tier", World::Router, &config);
    for (i, request) in route_requests().iter().enumerate() {
        let expected = trio.rust.route(&ctx(), request).await.unwrap();
        assert!(expected.fault.is_none(), "case {i}: {:?}", expected.fault);
        for (lang, port) in &trio.ports {
            let actual = port.route(&ctx(), request).await.unwrap();
            assert!(
                actual.fault.is_none(),
                "{lang:?}, config {config}, case {i}: {:?}",
                actual.fault
            );
            assert_eq!(
                actual.decision, expected.decision,
                "{lang:?}, config {config}, case {i}: {request:#?}"
            );
        }
    }
}

#[tokio::test]
async fn cost_tier_ports_route_like_the_rust_plugin_with_the_defaults() {
    assert_router_parity(json!({})).await;
}

#[tokio::test]
async fn cost_tier_ports_route_like_the_rust_plugin_with_a_custom_config() {
    assert_router_parity(json!({
        "start_tier": 2,
        "label_tiers": {"bug": 1, "docs": 3, "Architecture": 4},
        "large_body_chars": 10,
        "large_paths": 3,
        "attempt_budget": 800_000,
        "expected_input_tokens": 50_000,
        "expected_output_tokens": 7_000,
    }))
    .await;
}

#[tokio::test]
async fn cost_tier_ports_refuse_the_configs_the_rust_plugin_refuses() {
    for config in [
        json!({"start_tier": 0}),
        json!({"attempt_budget": 0}),
        json!({"start_tier": 256}),
        json!({"attempt_budget": "five dollars"}),
        json!({"label_tiers": {"bug": -1}}),
        json!({"expected_tokens": 1}),
        json!([1, 2]),
    ] {
        let trio = load_trio("cost-tier", World::Router, &config);
        let request = samples::route_request();
        let expected = trio.rust.route(&ctx(), &request).await.unwrap();
        assert!(expected.fault.is_some(), "Rust accepted {config}");
        for (lang, port) in &trio.ports {
            let actual = port.route(&ctx(), &request).await.unwrap();
            let fault = actual.fault.map(|f| f.to_string()).unwrap_or_default();
            assert!(
                fault.contains("invalid config"),
                "{lang:?}, {config}: {fault}"
            );
            assert_eq!(actual.decision.model, "fallback", "{lang:?}, {config}");
        }
    }
}

// ---------------------------------------------------------------- protected-paths (hook)

/// Paths that exercise the globs: plain, nested, normalised, renamed, near misses.
const PATHS: &[&str] = &[
    ".env",
    "config/.env",
    ".env.local",
    ".envrc",
    "./deploy/../.env.production",
    "/abs/.git/HEAD",
    ".git",
    "a/../../.git/config",
    "db/migrations/001.sql",
    "migrations/002.sql",
    "migrations",
    "x/migrations",
    "src/api/users.rs",
    "secrets/token.txt",
    "app/secrets",
    "certs/server.pem",
    "server.PEM",
    "config/prod.toml",
    "sub/config/prod.toml",
    "src/a/deep/file.rs",
    "src/c/file.rs",
    "docs/guide.md",
    "docs/x-notes.md",
    "keep/.env",
    "naïve/ünïcode.env",
    "notes/a.txt",
    "notes/y.txt",
];

fn hook_configs() -> Vec<Value> {
    vec![
        json!({}),
        json!({
            "globs": [
                "secrets/", "*.pem", "/config/prod.toml", "src/{a,b}/**",
                "docs/[!x]*.md", "notes/[^y]*.txt", "*.{env,key}", "!keep/**", ".env"
            ],
            "write_tools": ["write_file", "Write", "edit"],
        }),
    ]
}

fn tool_calls() -> Vec<ToolCall> {
    let call = |name: &str, arguments: String| ToolCall {
        name: name.to_string(),
        arguments,
    };
    let mut calls: Vec<ToolCall> = PATHS
        .iter()
        .flat_map(|p| {
            [
                call("write_file", json!({"path": p, "content": "x"}).to_string()),
                call("edit", json!({"file_path": p}).to_string()),
                call("Write", json!({"paths": ["README.md", p]}).to_string()),
            ]
        })
        .collect();
    calls.extend([
        call(
            "write_file",
            json!({"from": "a.txt", "to": ".env"}).to_string(),
        ),
        call(
            "write_file",
            json!({"old_path": ".env", "new_path": "b"}).to_string(),
        ),
        call(
            "write_file",
            json!({"path": 7, "paths": [1, "src/x.rs"]}).to_string(),
        ),
        call("write_file", json!({"content": "no path"}).to_string()),
        call("write_file", "[1, 2]".to_string()),
        call("write_file", "\"src/a.rs\"".to_string()),
        call("read_file", json!({"path": ".env"}).to_string()),
        call(
            "run_command",
            json!({"command": "echo x > .env"}).to_string(),
        ),
        call("delete_file", json!({"path": ".git/index"}).to_string()),
    ]);
    calls
}

#[tokio::test]
async fn protected_paths_ports_judge_tool_calls_like_the_rust_plugin() {
    let task = samples::task();
    for config in hook_configs() {
        let trio = load_trio("protected-paths", World::Hook, &config);
        for call in tool_calls() {
            let expected = trio.rust.pre_tool(&ctx(), &task, &call).await.unwrap();
            assert!(expected.fault.is_none(), "{:?}", expected.fault);
            for (lang, port) in &trio.ports {
                let actual = port.pre_tool(&ctx(), &task, &call).await.unwrap();
                assert!(actual.fault.is_none(), "{lang:?}: {:?}", actual.fault);
                assert_eq!(
                    actual.decision, expected.decision,
                    "{lang:?}, config {config}, {call:?}"
                );
            }
        }
    }
}

#[tokio::test]
async fn protected_paths_ports_deny_unparsable_arguments_like_the_rust_plugin() {
    // Each language's JSON parser words its error its own way: the decision must be the same
    // (deny, naming the tool and the cause), the parser's message may differ.
    let task = samples::task();
    let trio = load_trio("protected-paths", World::Hook, &json!({}));
    let call = ToolCall {
        name: "write_file".to_string(),
        arguments: "{\"path\": \".env\"".to_string(),
    };
    let expected = trio.rust.pre_tool(&ctx(), &task, &call).await.unwrap();
    assert!(matches!(expected.decision, HookDecision::Deny(_)));
    for (lang, port) in &trio.ports {
        let actual = port.pre_tool(&ctx(), &task, &call).await.unwrap();
        match actual.decision {
            HookDecision::Deny(reason) => assert!(
                reason.starts_with("the arguments of `write_file` are not valid JSON (")
                    && reason.ends_with("call it again with a JSON object"),
                "{lang:?}: {reason}"
            ),
            other => panic!("{lang:?} decided {other:?}"),
        }
    }
}

#[tokio::test]
async fn protected_paths_ports_judge_edits_like_the_rust_plugin() {
    let task = samples::task();
    for config in hook_configs() {
        let trio = load_trio("protected-paths", World::Hook, &config);
        for path in PATHS {
            let edit = FileEdit {
                path: path.to_string(),
                before: None,
                after: Some("x".to_string()),
            };
            let expected = trio.rust.on_edit(&ctx(), &task, &edit).await.unwrap();
            for (lang, port) in &trio.ports {
                let actual = port.on_edit(&ctx(), &task, &edit).await.unwrap();
                assert!(actual.fault.is_none(), "{lang:?}: {:?}", actual.fault);
                assert_eq!(
                    actual.decision, expected.decision,
                    "{lang:?}, config {config}, {path}"
                );
            }
        }
    }
}

fn file(path: &str, old_path: Option<&str>) -> FileDiff {
    FileDiff {
        path: path.to_string(),
        old_path: old_path.map(str::to_string),
        status: if old_path.is_some() {
            FileStatus::Renamed
        } else {
            FileStatus::Modified
        },
        binary: false,
        hunks: vec![],
        added: 1,
        removed: 0,
    }
}

#[tokio::test]
async fn protected_paths_ports_judge_diffs_like_the_rust_plugin() {
    let task = samples::task();
    let mut diffs: Vec<Vec<FileDiff>> = vec![
        vec![],
        PATHS.iter().map(|p| file(p, None)).collect(),
        vec![file("src/ok.rs", None), file("notes/env", Some(".env"))],
        vec![file("db/migrations/9.sql", Some("db/seed/9.sql"))],
    ];
    diffs.extend(PATHS.iter().map(|p| vec![file("moved.txt", Some(p))]));
    for config in hook_configs() {
        let trio = load_trio("protected-paths", World::Hook, &config);
        for files in &diffs {
            let diff = Diff {
                stats: DiffStats {
                    files_changed: u32::try_from(files.len()).unwrap(),
                    lines_added: 0,
                    lines_removed: 0,
                },
                files: files.clone(),
            };
            let expected = trio.rust.on_diff(&ctx(), &task, &diff).await.unwrap();
            for (lang, port) in &trio.ports {
                let actual = port.on_diff(&ctx(), &task, &diff).await.unwrap();
                assert!(actual.fault.is_none(), "{lang:?}: {:?}", actual.fault);
                assert_eq!(
                    actual.decision, expected.decision,
                    "{lang:?}, config {config}, {files:?}"
                );
            }
        }
    }
}
