//! The demo's runs: the whole pipeline, offline, on the sample repository with its backlog,
//! against the scripted model provider served over local HTTP (a simulation: no API key, no
//! network), or with the user's real models; and the reference plugins deciding on sample
//! inputs.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use serde_json::json;

use super::{sample, scripted_provider};
use crate::config::ConfigFile;
use crate::gateway::settings::GatewaySettings;
use crate::pipeline::progress::{self, Progress};
use crate::pipeline::{RunOptions, RunSummary, assemble};
use crate::plugin::output::{
    describe_hook_decision, describe_route, describe_rule_decision, describe_verdict,
};
use crate::plugin::types::{
    AttemptOutcome, CapLevel, Diff, DiffLine, FileEdit, LineKind, MicroUsd, MoneyLeft,
    RouteRequest, TestResult, ToolCall, VerifyRequest,
};
use crate::plugin::{
    CallContext, MemoryRecorder, Plugin, PluginRun, PluginRuntime, PluginSpec, World, samples,
};
use crate::project::{CONFIG_FILE, Project};
use crate::report::{History, Options, Report};

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
    anyhow::ensure!(path.is_file(), "{} is missing", path.display());
    let mut spec = PluginSpec::new(world, path).with_config(config);
    if world == World::Router {
        spec.fallback_model = Some("cheap".to_string());
    }
    Ok(runtime.load(spec)?)
}

/// A TOML string literal (quotes and backslashes escaped by the TOML writer).
fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

/// The demo's `gaffer.toml`: the scripted provider at `base_url`, two priced models, the
/// reference router, verifier and hook from `plugins`.
pub fn demo_config(base_url: &str, plugins: &Path) -> String {
    let models = format!(
        r#"[providers.scripted]
kind = "openai-compatible"
base_url = {base_url}
max_retries = 1

[models.small]
provider = "scripted"
id = {small}
tier = 1
max_tokens = 1024
context_window = 32000
prices = {{ input = "0.25", output = "1.25", cache_read = "0.025", cache_write = "0.3125" }}

[models.large]
provider = "scripted"
id = {large}
tier = 3
max_tokens = 2048
context_window = 64000
prices = {{ input = "3.00", output = "15.00", cache_read = "0.30", cache_write = "3.75" }}
"#,
        base_url = toml_string(base_url),
        small = toml_string(sample::SMALL),
        large = toml_string(sample::LARGE),
    );
    format!(
        "# gaffer demo: a SIMULATION. The models are scripted (solutions.json) and served on\n\
         # 127.0.0.1; the gateway, ledger, agent, git worktrees and plugins are the real ones.\n\n{}",
        demo_config_with(&models, "small", plugins)
    )
}

/// The demo's `gaffer.toml` around the given `[providers]` and `[models]` sections;
/// `fallback` is the router's fallback model key.
fn demo_config_with(models: &str, fallback: &str, plugins: &Path) -> String {
    let plugin = |file: &str| toml_string(&plugins.join(file).display().to_string());
    format!(
        r#"[project]
target_branch = "main"
test_command = {test}
test_timeout_secs = 120

[agent]
max_turns = 12
max_attempts = 3
command_timeout_secs = 60

[budget]
per_task = "0.50"
per_run = "5.00"

{models}
[plugins.router]
path = {router}
fallback_model = {fallback}
config = {{ expected_input_tokens = 20000, expected_output_tokens = 2000, attempt_budget = 250000 }}

[plugins.verifier]
path = {verifier}
config = {{ require_tests = true }}

[[plugins.hooks]]
path = {hook}
config = {{ globs = [".env", ".env.*", "**/migrations/**", ".git/**"] }}
"#,
        test = toml_string(sample::TEST_COMMAND),
        fallback = toml_string(fallback),
        router = plugin("cost_tier.wasm"),
        verifier = plugin("tests_and_limits.wasm"),
        hook = plugin("protected_paths.wasm"),
    )
}

/// The demo's `gaffer.toml` with Claude Code as the implementer: the scripted provider's
/// Anthropic side at `base_url` (which plays the solutions to Claude Code), the same models.
pub fn demo_config_for_claude_code(base_url: &str, plugins: &Path) -> String {
    // Claude Code sends a system prompt and tool list of about 100 KB with every call, and a
    // reservation bounds input tokens by bytes: the caps are raised to hold such calls.
    demo_config(base_url, plugins)
        .replace("attempt_budget = 250000", "attempt_budget = 1000000")
        .replace("per_task = \"0.50\"", "per_task = \"2.00\"")
        .replace("per_run = \"5.00\"", "per_run = \"10.00\"")
        .replace(
            "kind = \"openai-compatible\"",
            "kind = \"anthropic\"",
        )
        .replace(
            "[agent]\n",
            "[agent]\n# Claude Code implements, through gaffer's metering proxy, in the sandbox.\nimplementer = \"claude-code\"\n",
        )
}

/// The `[providers]`, `[models]` and `[prices]` of a user's `gaffer.toml` (checked: every
/// model priced), and its cheapest tier's model key, for a demo with real models.
fn real_models(file: &Path) -> anyhow::Result<(String, String)> {
    let config = ConfigFile::load(file)?;
    let resolved = config.resolve(GatewaySettings::from_config)?;
    let fallback = resolved
        .models
        .iter()
        .min_by_key(|m| m.tier)
        .map(|m| m.entry.key.clone())
        .with_context(|| format!("{}: no [models] configured", file.display()))?;
    let table: toml::Table = toml::from_str(config.text())?;
    let mut keep = toml::Table::new();
    for section in ["providers", "models", "prices"] {
        if let Some(value) = table.get(section) {
            keep.insert(section.to_string(), value.clone());
        }
    }
    Ok((toml::to_string(&keep)?, fallback))
}

/// What a pipeline demo did.
pub struct DemoRun {
    pub summary: RunSummary,
    pub report: Report,
}

/// Create the sample repository in `dir`, serve its solutions (or use the models of `real`),
/// run the pipeline over its backlog and return what it did. `narrate` prints what is going on
/// (text output); otherwise progress goes to stderr as log lines.
pub async fn run_pipeline_demo(
    dir: &Path,
    plugins: &Path,
    real: Option<&Path>,
    implementer: &str,
    narrate: bool,
) -> anyhow::Result<DemoRun> {
    let claude_code = match implementer {
        "builtin" => false,
        "claude-code" => {
            anyhow::ensure!(
                real.is_none(),
                "--implementer claude-code runs on the scripted models only"
            );
            anyhow::ensure!(
                std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                    .any(|dir| dir.join("claude").is_file()),
                "--implementer claude-code needs `claude` on PATH: scripts/setup.sh installs it \
                 into tools/agents/node_modules/.bin, which scripts/demo.sh puts on PATH"
            );
            true
        }
        other => anyhow::bail!("no implementer `{other}` (builtin, claude-code)"),
    };
    sample::create(dir, real.is_none())
        .with_context(|| format!("creating the sample repository in {}", dir.display()))?;
    // Held until the run ends: the scripted provider serves from this process.
    let mut provider = None;
    let config = match real {
        Some(file) => {
            let (models, fallback) = real_models(file)?;
            if narrate {
                println!(
                    "gaffer demo with the models of {}: real calls, charged to your keys (caps: \
                     $0.50 a task, $5.00 the run).\n",
                    file.display()
                );
            }
            demo_config_with(&models, &fallback, plugins)
        }
        None => {
            let solutions = std::fs::read_to_string(dir.join("solutions.json"))?;
            let script: scripted_provider::Script = serde_json::from_str(&solutions)?;
            let scripted = scripted_provider::ScriptedProvider::start(script).await?;
            if narrate {
                println!(
                    "gaffer demo — a SIMULATION: scripted models on {} play the solutions in \
                     {}/solutions.json;\nthe gateway, ledger, agent, git worktrees, hooks, router \
                     and verifier are real.\n",
                    scripted.base_url(),
                    dir.display()
                );
            }
            if narrate && claude_code {
                println!(
                    "Claude Code implements every attempt, in the sandbox, its model calls through \
                     gaffer's metering proxy. It prices the scripted model ids at its own default \
                     model's list prices, so its own figure in the report differs from the \
                     ledger's, which uses the prices in gaffer.toml.\n"
                );
            }
            let text = if claude_code {
                demo_config_for_claude_code(&scripted.anthropic_base_url(), plugins)
            } else {
                demo_config(&scripted.base_url(), plugins)
            };
            provider = Some(scripted);
            text
        }
    };
    let project = Project::at(dir, Path::new(CONFIG_FILE));
    std::fs::write(project.config_path(), config)?;
    let store = project.create_state()?;
    store.add_tasks(&sample::tasks())?;
    let pipeline = assemble(
        &project,
        &RunOptions::default(),
        |workers, ledger, run_id| {
            if narrate {
                progress::for_terminal(workers, ledger, run_id)
            } else {
                Arc::new(progress::LogLines) as Arc<dyn Progress>
            }
        },
    )?;
    let summary = pipeline.run().await?;
    drop(provider);
    let report = History::read(&*store)?.report(&Options::default());
    Ok(DemoRun { summary, report })
}

/// The reference plugins deciding on sample inputs, each call in a fresh sandbox.
pub async fn show_plugins(dir: &Path, json: bool) -> anyhow::Result<()> {
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
        level: CapLevel::Task,
        cap: MicroUsd(2_000_000),
        spent: MicroUsd(1_900_000),
        left: MicroUsd(100_000),
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

    match json {
        true => println!("{}", serde_json::to_string_pretty(&steps)?),
        false => {
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
    Ok(())
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
