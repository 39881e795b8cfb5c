//! The reference plugins, built from source and run through the real runtime with the shipped
//! limits: their decisions, their denial reasons, and the fail policy of each world. Expected
//! values are worked out by hand from the inputs.

mod support;

use gaffer::plugin::types::{
    AttemptOutcome, CapLevel, Diff, DiffLine, DiffStats, FileDiff, FileEdit, FileStatus, Finding,
    HookDecision, Hunk, LineKind, MicroUsd, MoneyLeft, RuleDecision, TestResult, ToolCall, Verdict,
};
use gaffer::plugin::{CallContext, OnFailure, Plugin, PluginError, PluginSpec, World, samples};
use serde_json::{Value, json};
use support::{guest, runtime};

fn load(name: &str, world: World, config: Value) -> Plugin {
    let (runtime, _) = runtime();
    let mut spec = PluginSpec::new(world, guest(name)).with_config(config);
    if world == World::Router {
        spec.fallback_model = Some("cheap".to_string());
    }
    runtime.load(spec).expect("plugin loads")
}

fn ctx() -> CallContext {
    CallContext::new("T-1", 1)
}

fn task() -> gaffer::plugin::types::Task {
    samples::task()
}

// ---------------------------------------------------------------- cost-tier (router)
//
// Sample models (µ$ per Mtok in/out): cheap t1 1/5, mid t2 3/15, strong t3 15/75.
// Estimates at 200k in + 20k out: cheap $0.30, mid $0.90, strong $4.50.
// Sample budget: task $1.65 left, run $15.80 left.

#[tokio::test]
async fn cost_tier_starts_cheap_and_bounds_the_attempt_by_the_money_left() {
    let router = load("cost-tier", World::Router, json!({}));
    let called = router
        .route(&ctx(), &samples::route_request())
        .await
        .unwrap();
    assert!(called.fault.is_none(), "{:?}", called.fault);
    assert_eq!(called.decision.model, "cheap");
    assert_eq!(called.decision.attempt_budget, MicroUsd(1_650_000));
    assert!(
        called.decision.reason.starts_with("tier 1 = start 1"),
        "{}",
        called.decision.reason
    );
}

#[tokio::test]
async fn cost_tier_escalates_one_tier_per_rejection() {
    let router = load("cost-tier", World::Router, json!({}));
    let mut request = samples::route_request();
    request.history = vec![samples::rejected_attempt()];
    let once = router.route(&ctx(), &request).await.unwrap();
    assert_eq!(once.decision.model, "mid", "{}", once.decision.reason);
    assert!(
        once.decision.reason.contains("1 rejection"),
        "{}",
        once.decision.reason
    );

    // A second rejection asks for tier 3, but strong ($4.50) does not fit the $1.65 left:
    // it steps down to mid and says so.
    let mut second = samples::rejected_attempt();
    second.number = 2;
    second.model = "mid".to_string();
    request.history.push(second);
    let twice = router.route(&ctx(), &request).await.unwrap();
    assert_eq!(twice.decision.model, "mid", "{}", twice.decision.reason);
    assert!(
        twice.decision.reason.contains("2 rejections"),
        "{}",
        twice.decision.reason
    );

    // With money enough, the second rejection gets the strong model.
    request.budget.money = vec![MoneyLeft {
        level: CapLevel::Task,
        cap: MicroUsd(20_000_000),
        spent: MicroUsd(1_000_000),
        left: MicroUsd(19_000_000),
    }];
    let rich = router.route(&ctx(), &request).await.unwrap();
    assert_eq!(rich.decision.model, "strong", "{}", rich.decision.reason);
    assert_eq!(
        rich.decision.attempt_budget,
        MicroUsd(5_000_000),
        "the default $5 attempt cap"
    );
    // Approved attempts are not rejections.
    request.history[1].outcome = AttemptOutcome::Approved;
    let one = router.route(&ctx(), &request).await.unwrap();
    assert_eq!(one.decision.model, "mid", "{}", one.decision.reason);
}

#[tokio::test]
async fn cost_tier_follows_labels_and_task_size() {
    let router = load("cost-tier", World::Router, json!({}));
    let mut request = samples::route_request();
    request.budget.money = vec![];
    request.task.labels = vec!["architecture".to_string()];
    let labelled = router.route(&ctx(), &request).await.unwrap();
    assert_eq!(
        labelled.decision.model, "strong",
        "{}",
        labelled.decision.reason
    );
    assert!(
        labelled.decision.reason.contains("`architecture`"),
        "{}",
        labelled.decision.reason
    );

    request.task.labels = vec!["bug".to_string()];
    request.task.body = "x".repeat(4_001);
    let large = router.route(&ctx(), &request).await.unwrap();
    assert_eq!(
        large.decision.model, "mid",
        "a large task is one tier up: {}",
        large.decision.reason
    );
}

#[tokio::test]
async fn cost_tier_says_when_nothing_fits_the_budget() {
    let router = load("cost-tier", World::Router, json!({}));
    let mut request = samples::route_request();
    request.budget.money = vec![MoneyLeft {
        level: CapLevel::Task,
        cap: MicroUsd(2_000_000),
        spent: MicroUsd(1_900_000),
        left: MicroUsd(100_000),
    }];
    let called = router.route(&ctx(), &request).await.unwrap();
    assert!(called.fault.is_none());
    assert_eq!(called.decision.model, "cheap");
    assert_eq!(called.decision.attempt_budget, MicroUsd(100_000));
    assert!(
        called.decision.reason.contains("$0.100"),
        "{}",
        called.decision.reason
    );
}

#[tokio::test]
async fn a_router_with_a_broken_config_falls_back_naming_the_field() {
    let router = load("cost-tier", World::Router, json!({"start_tier": "high"}));
    let called = router
        .route(&ctx(), &samples::route_request())
        .await
        .unwrap();
    assert_eq!(called.decision.model, "cheap");
    match called.fault {
        Some(PluginError::Returned { message, .. }) => {
            assert!(message.contains("start_tier"), "{message}")
        }
        other => panic!("expected the plugin's error, got {other:?}"),
    }
}

// ---------------------------------------------------------------- tests-and-limits (verifier)

fn added_line(path: &str, line: u32, text: &str) -> Diff {
    Diff {
        files: vec![FileDiff {
            path: path.to_string(),
            old_path: None,
            status: FileStatus::Modified,
            binary: false,
            hunks: vec![Hunk {
                old_start: line,
                old_lines: 0,
                new_start: line,
                new_lines: 1,
                lines: vec![DiffLine {
                    kind: LineKind::Added,
                    line,
                    text: text.to_string(),
                }],
            }],
            added: 1,
            removed: 0,
        }],
        stats: DiffStats {
            files_changed: 1,
            lines_added: 1,
            lines_removed: 0,
        },
    }
}

#[tokio::test]
async fn tests_and_limits_approves_a_clean_change() {
    let verifier = load("tests-and-limits", World::Verifier, json!({}));
    let called = verifier
        .verify(&ctx(), &samples::verify_request())
        .await
        .unwrap();
    assert_eq!(called.decision, Verdict::Approve);
}

#[tokio::test]
async fn tests_and_limits_rejects_failing_tests_quoting_the_output() {
    let verifier = load("tests-and-limits", World::Verifier, json!({}));
    let mut request = samples::verify_request();
    request.tests = TestResult {
        passed: false,
        exit_code: Some(101),
        output_tail: "running 12 tests\ntest users::last_page ... FAILED\ntest result: FAILED. 11 passed; 1 failed".to_string(),
        ..samples::tests_passed()
    };
    let called = verifier.verify(&ctx(), &request).await.unwrap();
    let Verdict::Reject(findings) = called.decision else {
        panic!("expected a rejection, got {:?}", called.decision);
    };
    assert_eq!(findings.len(), 1);
    assert!(
        findings[0].message.starts_with(
            "tests failed: `cargo test` exited with code 101; last lines of output:\n"
        ),
        "{}",
        findings[0].message
    );
    assert!(
        findings[0]
            .message
            .contains("test users::last_page ... FAILED")
    );
}

#[tokio::test]
async fn tests_and_limits_names_file_and_line_of_a_forbidden_marker() {
    let verifier = load("tests-and-limits", World::Verifier, json!({}));
    let mut request = samples::verify_request();
    request.diff = added_line("src/api/users.rs", 42, "    // TODO: handle empty pages");
    let called = verifier.verify(&ctx(), &request).await.unwrap();
    assert_eq!(
        called.decision,
        Verdict::Reject(vec![Finding {
            message: "forbidden marker `TODO` added at `src/api/users.rs:42`: `// TODO: handle empty pages`"
                .to_string(),
            path: Some("src/api/users.rs".to_string()),
            line: Some(42),
        }])
    );
}

#[tokio::test]
async fn tests_and_limits_rejects_oversized_changes() {
    let verifier = load(
        "tests-and-limits",
        World::Verifier,
        json!({"max_changed_lines": 2, "max_files": 1}),
    );
    let mut request = samples::verify_request();
    // The sample diff: 1 file, 2 added + 1 removed = 3 lines.
    request.diff.stats.files_changed = 2;
    let called = verifier.verify(&ctx(), &request).await.unwrap();
    let Verdict::Reject(findings) = called.decision else {
        panic!("expected a rejection");
    };
    let messages: Vec<&str> = findings.iter().map(|f| f.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "the change touches 3 lines (2 added, 1 removed), more than the limit of 2; split the task or ask for a smaller change",
            "the change touches 2 files, more than the limit of 1; split the task or ask for a smaller change",
        ]
    );
}

#[tokio::test]
async fn a_verifier_fault_makes_the_attempt_need_a_human() {
    let verifier = load(
        "tests-and-limits",
        World::Verifier,
        json!({"max_files": "many"}),
    );
    let called = verifier
        .verify(&ctx(), &samples::verify_request())
        .await
        .unwrap();
    let Verdict::NeedsHuman(reason) = &called.decision else {
        panic!("expected needs-human, got {:?}", called.decision);
    };
    assert!(
        reason.starts_with("verifier `tests_and_limits` failed:"),
        "{reason}"
    );
    assert!(reason.contains("max_files"), "{reason}");
    assert_eq!(called.run.policy, Some(OnFailure::NeedsHuman));

    // Out of fuel is a fault like any other.
    let (runtime, _) = runtime();
    let mut spec = PluginSpec::new(World::Verifier, guest("tests-and-limits"));
    spec.limits.fuel_per_call = 1_000;
    let starved = runtime.load(spec.clone()).unwrap();
    let called = starved
        .verify(&ctx(), &samples::verify_request())
        .await
        .unwrap();
    assert!(matches!(
        called.fault,
        Some(PluginError::OutOfFuel {
            allowance: 1_000,
            ..
        })
    ));
    assert!(matches!(called.decision, Verdict::NeedsHuman(_)));

    // Overridden to reject.
    spec.on_failure = OnFailure::Reject;
    let rejecting = runtime.load(spec).unwrap();
    let called = rejecting
        .verify(&ctx(), &samples::verify_request())
        .await
        .unwrap();
    let Verdict::Reject(findings) = called.decision else {
        panic!("expected a rejection");
    };
    assert!(
        findings[0].message.contains("out of fuel"),
        "{}",
        findings[0].message
    );
}

// ---------------------------------------------------------------- protected-paths (hook)

fn write(path: &str) -> ToolCall {
    ToolCall {
        name: "write_file".to_string(),
        arguments: json!({"path": path, "content": "x"}).to_string(),
    }
}

#[tokio::test]
async fn protected_paths_denies_writes_to_protected_files_with_the_reason() {
    let hook = load("protected-paths", World::Hook, json!({}));
    let called = hook
        .pre_tool(&ctx(), &task(), &write("config/.env"))
        .await
        .unwrap();
    assert_eq!(
        called.decision,
        HookDecision::Deny(
            "`config/.env` is protected (matches `.env`); change it by hand or ask a person"
                .to_string()
        )
    );
    let sneaky = hook
        .pre_tool(&ctx(), &task(), &write("src/../db/migrations/001.sql"))
        .await
        .unwrap();
    assert!(
        matches!(&sneaky.decision, HookDecision::Deny(r) if r.contains("`db/migrations/001.sql` is protected")),
        "{:?}",
        sneaky.decision
    );
    let fine = hook
        .pre_tool(&ctx(), &task(), &write("src/lib.rs"))
        .await
        .unwrap();
    assert_eq!(fine.decision, HookDecision::Allow);
    let read = ToolCall {
        name: "read_file".to_string(),
        arguments: json!({"path": ".env"}).to_string(),
    };
    assert_eq!(
        hook.pre_tool(&ctx(), &task(), &read)
            .await
            .unwrap()
            .decision,
        HookDecision::Allow,
        "reading is not writing"
    );
}

#[tokio::test]
async fn protected_paths_judges_edits_and_the_whole_diff() {
    let hook = load(
        "protected-paths",
        World::Hook,
        json!({"globs": ["**/migrations/**"]}),
    );
    let edit = FileEdit {
        path: "db/migrations/002_users.sql".to_string(),
        before: None,
        after: Some("create table users();".to_string()),
    };
    let RuleDecision::Deny(findings) = hook.on_edit(&ctx(), &task(), &edit).await.unwrap().decision
    else {
        panic!("expected a denial");
    };
    assert_eq!(
        findings[0].path.as_deref(),
        Some("db/migrations/002_users.sql")
    );

    // A file written by a shell command shows up only in the diff: caught there.
    let diff = added_line("db/migrations/003_more.sql", 1, "drop table users;");
    let RuleDecision::Deny(findings) = hook.on_diff(&ctx(), &task(), &diff).await.unwrap().decision
    else {
        panic!("expected a denial");
    };
    assert_eq!(findings.len(), 1);
    assert!(
        findings[0].message.contains("matches `**/migrations/**`"),
        "{}",
        findings[0].message
    );
    assert_eq!(
        hook.on_diff(&ctx(), &task(), &samples::diff())
            .await
            .unwrap()
            .decision,
        RuleDecision::Allow
    );
}

#[tokio::test]
async fn a_hook_fault_denies_unless_configured_to_allow() {
    let (runtime, _) = runtime();
    let broken =
        PluginSpec::new(World::Hook, guest("protected-paths")).with_config(json!({"globs": 5}));
    let hook = runtime.load(broken.clone()).unwrap();
    let called = hook
        .pre_tool(&ctx(), &task(), &write("src/lib.rs"))
        .await
        .unwrap();
    let HookDecision::Deny(reason) = &called.decision else {
        panic!("expected a denial, got {:?}", called.decision);
    };
    assert!(
        reason.starts_with(
            "hook `protected_paths` failed, so the call is denied (hooks fail closed):"
        ),
        "{reason}"
    );
    assert!(reason.contains("globs"), "{reason}");
    let RuleDecision::Deny(findings) = hook
        .on_diff(&ctx(), &task(), &samples::diff())
        .await
        .unwrap()
        .decision
    else {
        panic!("on-diff must fail closed too");
    };
    assert!(findings[0].message.contains("fail closed"));

    let mut open = broken;
    open.on_failure = OnFailure::Allow;
    let hook = runtime.load(open).unwrap();
    let called = hook
        .pre_tool(&ctx(), &task(), &write("src/lib.rs"))
        .await
        .unwrap();
    assert_eq!(called.decision, HookDecision::Allow);
    assert!(called.fault.is_some(), "the fault is still reported");
}

// ---------------------------------------------------------------- layer-rules (hook)

fn layers() -> Value {
    json!({
        "layers": [
            {"name": "domain", "paths": ["src/domain/**", "app/domain/**"]},
            {"name": "infrastructure", "paths": ["src/infrastructure/**", "app/infrastructure/**"], "modules": ["sqlx"]}
        ],
        "forbid": [{"from": "domain", "to": "infrastructure"}]
    })
}

async fn edit_findings(hook: &Plugin, path: &str, after: &str) -> Vec<Finding> {
    let edit = FileEdit {
        path: path.to_string(),
        before: None,
        after: Some(after.to_string()),
    };
    match hook.on_edit(&ctx(), &task(), &edit).await.unwrap().decision {
        RuleDecision::Allow => vec![],
        RuleDecision::Deny(findings) => findings,
    }
}

#[tokio::test]
async fn layer_rules_parses_rust_python_and_typescript_imports() {
    let hook = load("layer-rules", World::Hook, layers());

    let rust = edit_findings(
        &hook,
        "src/domain/user.rs",
        "// a user\nuse std::fmt;\nuse crate::infrastructure::db::{Pool, Tx};\n\npub struct User;\n",
    )
    .await;
    // One finding per imported name of the grouped `use`.
    assert_eq!(rust.len(), 2, "{rust:?}");
    assert!(
        rust.iter()
            .all(|f| (f.path.as_deref(), f.line) == (Some("src/domain/user.rs"), Some(3)))
    );
    assert!(
        rust[1]
            .message
            .ends_with("(`crate::infrastructure::db::Tx`)"),
        "{}",
        rust[1].message
    );
    assert!(
        rust[0].message.starts_with(
            "`src/domain/user.rs:3`: layer `domain` may not import layer `infrastructure`"
        ),
        "{}",
        rust[0].message
    );

    let bare = edit_findings(&hook, "src/domain/repo.rs", "use sqlx::PgPool;\n").await;
    assert_eq!(bare.len(), 1, "a bare crate matched by `modules`: {bare:?}");

    let python = edit_findings(
        &hook,
        "app/domain/orders.py",
        "import json\n# from app.infrastructure import nothing\nfrom app.infrastructure.db import session\n",
    )
    .await;
    assert_eq!(python.len(), 1, "{python:?}");
    assert_eq!(python[0].line, Some(3), "the commented import is ignored");

    let typescript = edit_findings(
        &hook,
        "src/domain/user.ts",
        "import { z } from \"zod\";\n\nimport type { Db } from '../infrastructure/db';\nexport const x = 1;\n",
    )
    .await;
    assert_eq!(typescript.len(), 1, "{typescript:?}");
    assert_eq!(typescript[0].line, Some(3));

    // The allowed direction passes.
    let allowed = edit_findings(
        &hook,
        "src/infrastructure/db.rs",
        "use crate::domain::user::User;\n",
    )
    .await;
    assert!(allowed.is_empty(), "{allowed:?}");
}

#[tokio::test]
async fn layer_rules_checks_added_lines_of_the_diff() {
    let hook = load("layer-rules", World::Hook, layers());
    let diff = added_line("src/domain/user.rs", 7, "use crate::infrastructure::cache;");
    let RuleDecision::Deny(findings) = hook.on_diff(&ctx(), &task(), &diff).await.unwrap().decision
    else {
        panic!("expected a denial");
    };
    assert_eq!(findings[0].line, Some(7));
}

// ---------------------------------------------------------------- file-size (hook)

#[tokio::test]
async fn file_size_denies_files_over_the_limit() {
    let hook = load("file-size", World::Hook, json!({"max_lines": 400}));
    let edit = FileEdit {
        path: "src/big.rs".to_string(),
        before: None,
        after: Some("x\n".repeat(401)),
    };
    let RuleDecision::Deny(findings) = hook.on_edit(&ctx(), &task(), &edit).await.unwrap().decision
    else {
        panic!("expected a denial");
    };
    assert!(
        findings[0]
            .message
            .contains("401 lines, more than the limit of 400"),
        "{}",
        findings[0].message
    );
    assert_eq!(findings[0].line, Some(401));

    let ok = FileEdit {
        after: Some("x\n".repeat(400)),
        ..edit
    };
    assert_eq!(
        hook.on_edit(&ctx(), &task(), &ok).await.unwrap().decision,
        RuleDecision::Allow
    );

    let big_write = ToolCall {
        name: "write_file".to_string(),
        arguments: json!({"path": "src/big.rs", "content": "x\n".repeat(500)}).to_string(),
    };
    assert!(matches!(
        hook.pre_tool(&ctx(), &task(), &big_write)
            .await
            .unwrap()
            .decision,
        HookDecision::Deny(_)
    ));
}

#[tokio::test]
async fn file_size_counts_the_worktree_file_when_granted() {
    let (runtime, _) = runtime();
    let worktree = tempfile::tempdir().unwrap();
    std::fs::create_dir(worktree.path().join("src")).unwrap();
    std::fs::write(worktree.path().join("src/users.rs"), "line\n".repeat(450)).unwrap();
    // The diff only shows line 12 changing; the file has 450 lines.
    let diff = added_line("src/users.rs", 12, "line");
    let ctx = CallContext::new("T-1", 1).with_worktree(worktree.path());

    let mut spec =
        PluginSpec::new(World::Hook, guest("file-size")).with_config(json!({"max_lines": 400}));
    spec.grants.files = true;
    let granted = runtime.load(spec.clone()).unwrap();
    let RuleDecision::Deny(findings) = granted
        .on_diff(&ctx, &task(), &diff)
        .await
        .unwrap()
        .decision
    else {
        panic!("with files granted the hook sees all 450 lines");
    };
    assert!(
        findings[0].message.contains("450 lines"),
        "{}",
        findings[0].message
    );

    spec.grants.files = false;
    let blind = runtime.load(spec).unwrap();
    assert_eq!(
        blind.on_diff(&ctx, &task(), &diff).await.unwrap().decision,
        RuleDecision::Allow,
        "without files, line 12 is all it can see"
    );
}

// ---------------------------------------------------------------- built without WASI

/// The reference plugins this binary embeds reach the world only through gaffer's `host`
/// interface: built for `wasm32-unknown-unknown`, their components import nothing else (no
/// WASI), which makes every fresh instance cheaper to link. The allowed names are the
/// interfaces of `wit/0.1.0` that the three worlds import.
#[test]
fn the_embedded_reference_plugins_import_only_gaffers_interfaces() {
    let allowed = ["gaffer:plugin/types@0.1.0", "gaffer:plugin/host@0.1.0"];
    let embedded = gaffer::plugin::reference::embedded();
    assert_eq!(
        embedded.len(),
        7,
        "the test build embeds every reference plugin"
    );
    let engine =
        wasmtime::Engine::new(wasmtime::Config::new().wasm_component_model(true)).expect("engine");
    for plugin in embedded {
        let component =
            wasmtime::component::Component::new(&engine, plugin.bytes).expect("component");
        let imports: Vec<String> = component
            .component_type()
            .imports(&engine)
            .map(|(name, _)| name.to_string())
            .collect();
        assert!(!imports.is_empty(), "{} imports gaffer's host", plugin.file);
        for name in &imports {
            assert!(
                allowed.contains(&name.as_str()),
                "{} imports `{name}`; all: {imports:?}",
                plugin.file
            );
        }
    }
}
