//! `gaffer demo`: the reference plugins deciding on sample tasks, each call in a fresh sandbox
//! with the shipped limits. Needs no API key and no repository.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use serde_json::json;

use super::Format;
use crate::plugin::output::{
    describe_hook_decision, describe_route, describe_rule_decision, describe_verdict,
};
use crate::plugin::types::{
    AttemptOutcome, BudgetLevel, Diff, DiffLine, FileEdit, LineKind, MoneyLeft, RouteRequest,
    TestResult, ToolCall, VerifyRequest,
};
use crate::plugin::{
    CallContext, MemoryRecorder, Plugin, PluginRun, PluginRuntime, PluginSpec, World, samples,
};

/// One demo step, printed as a row.
#[derive(serde::Serialize)]
struct Step {
    plugin: String,
    function: &'static str,
    scenario: String,
    decision: String,
    fuel: u64,
    wall_us: u64,
}

fn step(scenario: &str, decision: String, run: &PluginRun) -> Step {
    Step {
        plugin: run.plugin.clone(),
        function: run.function,
        scenario: scenario.to_string(),
        decision,
        fuel: run.fuel_used,
        wall_us: u64::try_from(run.wall.as_micros()).unwrap_or(u64::MAX),
    }
}

fn load(
    runtime: &PluginRuntime,
    dir: &Path,
    file: &str,
    world: World,
    config: serde_json::Value,
) -> anyhow::Result<Plugin> {
    let path = dir.join(file);
    anyhow::ensure!(
        path.is_file(),
        "{} is missing: build the reference plugins first (scripts/build-plugins.sh)",
        path.display()
    );
    let mut spec = PluginSpec::new(world, path).with_config(config);
    if world == World::Router {
        spec.fallback_model = Some("cheap".to_string());
    }
    Ok(runtime.load(spec)?)
}

pub async fn run(dir: &Path, format: Format) -> anyhow::Result<ExitCode> {
    let recorder = Arc::new(MemoryRecorder::default());
    let runtime = PluginRuntime::builder()
        .recorder(recorder)
        .build()
        .context("starting the plugin runtime")?;
    let mut steps = Vec::new();
    let ctx = CallContext::new("demo", 1);

    // Router: start cheap, follow labels and size, escalate on rejection, respect the budget.
    let router = load(&runtime, dir, "cost_tier.wasm", World::Router, json!({}))?;
    let base = samples::route_request();
    let mut architecture = base.clone();
    architecture.task.labels = vec!["architecture".to_string()];
    architecture.task.title = "Split the billing module into a service".to_string();
    let mut rejected_once = base.clone();
    rejected_once.history = vec![samples::rejected_attempt()];
    let mut tight = base.clone();
    tight.task.labels = vec!["architecture".to_string()];
    tight.budget.money = vec![MoneyLeft {
        level: BudgetLevel::Task,
        cap: 2_000_000,
        spent: 1_900_000,
        left: 100_000,
    }];
    let scenarios: [(&str, &RouteRequest); 4] = [
        ("small bug fix, first attempt", &base),
        ("label `architecture`", &architecture),
        ("after one rejected attempt", &rejected_once),
        ("architecture, but only $0.10 left for the task", &tight),
    ];
    for (scenario, request) in scenarios {
        let called = router.route(&ctx, request).await?;
        steps.push(step(
            scenario,
            describe_route(&called.decision),
            &called.run,
        ));
    }
    debug_assert!(matches!(
        samples::rejected_attempt().outcome,
        AttemptOutcome::Rejected
    ));

    // Verifier: tests, size limits, forbidden markers.
    let verifier = load(
        &runtime,
        dir,
        "tests_and_limits.wasm",
        World::Verifier,
        json!({}),
    )?;
    let passing = samples::verify_request();
    let mut failing = passing.clone();
    failing.tests = TestResult {
        passed: false,
        exit_code: Some(101),
        output_tail: "test users::last_page ... FAILED\ntest result: FAILED. 11 passed; 1 failed"
            .to_string(),
        ..samples::tests_passed()
    };
    let mut marker = passing.clone();
    marker.diff = with_added_line(samples::diff(), 12, "    // TODO: handle empty pages");
    let verifications: [(&str, &VerifyRequest); 3] = [
        ("tests pass, small diff", &passing),
        ("tests fail", &failing),
        ("adds a TODO", &marker),
    ];
    for (scenario, request) in verifications {
        let called = verifier.verify(&ctx, request).await?;
        steps.push(step(
            scenario,
            describe_verdict(&called.decision),
            &called.run,
        ));
    }

    // Hooks: the team's rules.
    let task = samples::task();
    let protected = load(
        &runtime,
        dir,
        "protected_paths.wasm",
        World::Hook,
        json!({}),
    )?;
    let write_env = ToolCall {
        name: "write_file".to_string(),
        arguments: r#"{"path":"config/.env","content":"API_KEY=..."}"#.to_string(),
    };
    let called = protected.pre_tool(&ctx, &task, &write_env).await?;
    steps.push(step(
        "write config/.env",
        describe_hook_decision(&called.decision),
        &called.run,
    ));
    let called = protected
        .pre_tool(&ctx, &task, &samples::tool_call())
        .await?;
    steps.push(step(
        "write src/api/users.rs",
        describe_hook_decision(&called.decision),
        &called.run,
    ));

    let layers = load(
        &runtime,
        dir,
        "layer_rules.wasm",
        World::Hook,
        json!({
            "layers": [
                {"name": "domain", "paths": ["src/domain/**"]},
                {"name": "infrastructure", "paths": ["src/infrastructure/**"]}
            ],
            "forbid": [{"from": "domain", "to": "infrastructure"}]
        }),
    )?;
    let edit = FileEdit {
        path: "src/domain/user.rs".to_string(),
        before: Some("pub struct User;\n".to_string()),
        after: Some("use crate::infrastructure::db::Pool;\n\npub struct User;\n".to_string()),
    };
    let called = layers.on_edit(&ctx, &task, &edit).await?;
    steps.push(step(
        "domain imports infrastructure",
        describe_rule_decision(&called.decision),
        &called.run,
    ));

    let size = load(
        &runtime,
        dir,
        "file_size.wasm",
        World::Hook,
        json!({"max_lines": 400}),
    )?;
    let big = FileEdit {
        path: "src/api/users.rs".to_string(),
        before: None,
        after: Some("// line\n".repeat(520)),
    };
    let called = size.on_edit(&ctx, &task, &big).await?;
    steps.push(step(
        "a 520-line file",
        describe_rule_decision(&called.decision),
        &called.run,
    ));

    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&steps)?),
        Format::Text => {
            println!(
                "gaffer demo: reference plugins in a fresh sandbox per call ({:?} allocator, fuel and deadline on)\n",
                runtime.allocator()
            );
            for s in &steps {
                println!("{} `{}` — {}", s.plugin, s.function, s.scenario);
                println!("    {}", s.decision);
                println!("    fuel {} instructions, {} µs", s.fuel, s.wall_us);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Add one line to the first hunk of a diff, keeping its counts right.
fn with_added_line(mut diff: Diff, line: u32, text: &str) -> Diff {
    if let Some(file) = diff.files.first_mut() {
        if let Some(hunk) = file.hunks.first_mut() {
            hunk.lines.push(DiffLine {
                kind: LineKind::Added,
                line,
                text: text.to_string(),
            });
            hunk.new_lines += 1;
        }
        file.added += 1;
    }
    diff.stats.lines_added += 1;
    diff
}
