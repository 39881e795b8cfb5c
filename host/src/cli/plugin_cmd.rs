//! `gaffer plugin check|test|new|bench`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use serde_json::json;

use super::Format;
use crate::plugin::output::{
    describe_hook_decision, describe_route, describe_rule_decision, describe_verdict,
};
use crate::plugin::scaffold::Lang;
use crate::plugin::types::{RouteRequest, Task, ToolCall, VerifyRequest};
use crate::plugin::{
    AllocatorChoice, CallContext, CallError, Called, EngineOptions, MemoryRecorder, Plugin,
    PluginRun, PluginRuntime, PluginSpec, World, samples,
};

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Say which world a component implements, what it imports, whether this host accepts it,
    /// and make one sample call. Exits 0 only when accepted.
    Check {
        /// The component (`.wasm`).
        file: PathBuf,
        /// The plugin's config as JSON (its `config` table in gaffer.toml).
        #[arg(long, default_value = "{}")]
        config: String,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Run a plugin on declared inputs and check its decisions (for the plugin's own CI).
    Test {
        /// The component (`.wasm`).
        file: PathBuf,
        /// The cases (TOML: `config`, then `[[case]]` with one input and `expect`).
        #[arg(long)]
        cases: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Write a new plugin project into DIR (created, or empty): an example policy, the WIT,
    /// build.sh, cases.toml for `plugin test`, and a README saying how to use it.
    New {
        /// The world the plugin implements.
        #[arg(value_enum)]
        world: WorldArg,
        /// The language it is written in.
        #[arg(long, value_enum)]
        lang: LangArg,
        /// The project directory (created if missing; refused if not empty).
        dir: PathBuf,
    },
    /// Time calls with a fresh sandbox each, limits on (as shipped).
    Bench {
        /// The component (`.wasm`).
        file: PathBuf,
        /// Number of timed calls.
        #[arg(long, default_value_t = 2000)]
        calls: u32,
        /// Untimed calls first.
        #[arg(long, default_value_t = 100)]
        warmup: u32,
        /// Instance allocator.
        #[arg(long, value_enum, default_value_t = AllocatorArg::Auto)]
        allocator: AllocatorArg,
        /// The plugin's config as JSON.
        #[arg(long, default_value = "{}")]
        config: String,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

/// `--allocator` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AllocatorArg {
    Auto,
    Pooling,
    OnDemand,
}

impl From<AllocatorArg> for AllocatorChoice {
    fn from(value: AllocatorArg) -> Self {
        match value {
            AllocatorArg::Auto => AllocatorChoice::Auto,
            AllocatorArg::Pooling => AllocatorChoice::Pooling,
            AllocatorArg::OnDemand => AllocatorChoice::OnDemand,
        }
    }
}

/// The world of `plugin new`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WorldArg {
    /// Chooses the model and the money cap of each attempt.
    Router,
    /// Judges a finished attempt: approve, reject or hand to a person.
    Verifier,
    /// A rule checked on tool calls, file edits and the final change.
    Hook,
}

impl From<WorldArg> for World {
    fn from(value: WorldArg) -> Self {
        match value {
            WorldArg::Router => World::Router,
            WorldArg::Verifier => World::Verifier,
            WorldArg::Hook => World::Hook,
        }
    }
}

/// `plugin new --lang` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LangArg {
    /// Rust, built with cargo and wit-bindgen.
    Rust,
    /// Python, built with componentize-py.
    Python,
    /// JavaScript, built with jco (QuickJS backend).
    Js,
}

impl From<LangArg> for Lang {
    fn from(value: LangArg) -> Self {
        match value {
            LangArg::Rust => Lang::Rust,
            LangArg::Python => Lang::Python,
            LangArg::Js => Lang::Js,
        }
    }
}

pub async fn run(command: PluginCommand) -> anyhow::Result<ExitCode> {
    match command {
        PluginCommand::Check {
            file,
            config,
            format,
        } => check(&file, &config, format).await,
        PluginCommand::Test {
            file,
            cases,
            format,
        } => super::plugin_test::run(&file, &cases, format).await,
        PluginCommand::New { world, lang, dir } => {
            super::plugin_new::run(world.into(), lang.into(), &dir)
        }
        PluginCommand::Bench {
            file,
            calls,
            warmup,
            allocator,
            config,
            format,
        } => bench(&file, calls, warmup, allocator.into(), &config, format).await,
    }
}

fn parse_config(config: &str) -> anyhow::Result<serde_json::Value> {
    let value: serde_json::Value =
        serde_json::from_str(config).context("--config is not valid JSON")?;
    anyhow::ensure!(value.is_object(), "--config must be a JSON object");
    Ok(value)
}

fn spec_for(world: World, file: &Path, config: serde_json::Value) -> PluginSpec {
    let mut spec = PluginSpec::new(world, file).with_config(config);
    if world == World::Router {
        // The samples offer a model called `cheap`; fall back to it on a fault.
        spec.fallback_model = Some("cheap".to_string());
    }
    spec
}

/// One sample call's outcome, for printing.
#[derive(serde::Serialize)]
struct SampleCall {
    function: &'static str,
    decision: String,
    fuel_used: u64,
    wall_us: u64,
    memory_bytes: u64,
    fault: Option<String>,
}

fn sample(run: &PluginRun, decision: String, fault: Option<String>) -> SampleCall {
    SampleCall {
        function: run.function,
        decision,
        fuel_used: run.fuel_used,
        wall_us: u64::try_from(run.wall.as_micros()).unwrap_or(u64::MAX),
        memory_bytes: run.memory_bytes,
        fault,
    }
}

/// A finished call as a sample row.
fn sample_of<T>(
    called: Result<Called<T>, CallError>,
    describe: fn(&T) -> String,
) -> Result<SampleCall, CallError> {
    called.map(|c| {
        sample(
            &c.run,
            describe(&c.decision),
            c.fault.map(|f| f.to_string()),
        )
    })
}

/// Run one sample call per export of the plugin's world.
async fn sample_calls(plugin: &Plugin) -> Vec<Result<SampleCall, CallError>> {
    let ctx = CallContext::new("sample", 1);
    let task = samples::task();
    match plugin.spec().world {
        World::Router => vec![sample_of(
            plugin.route(&ctx, &samples::route_request()).await,
            describe_route,
        )],
        World::Verifier => vec![sample_of(
            plugin.verify(&ctx, &samples::verify_request()).await,
            describe_verdict,
        )],
        World::Hook => vec![
            sample_of(
                plugin.pre_tool(&ctx, &task, &samples::tool_call()).await,
                describe_hook_decision,
            ),
            sample_of(
                plugin.on_edit(&ctx, &task, &samples::file_edit()).await,
                describe_rule_decision,
            ),
            sample_of(
                plugin.on_diff(&ctx, &task, &samples::diff()).await,
                describe_rule_decision,
            ),
        ],
    }
}

/// `gaffer plugin check FILE`.
async fn check(file: &Path, config: &str, format: Format) -> anyhow::Result<ExitCode> {
    let config = parse_config(config)?;
    let recorder = Arc::new(MemoryRecorder::default());
    let runtime = PluginRuntime::builder().recorder(recorder).build()?;
    let mut report = json!({
        "file": file.display().to_string(),
        "allocator": runtime.allocator(),
        "accepted": false,
    });
    let mut reasons: Vec<String> = Vec::new();
    let info = match runtime.inspect(file) {
        Ok(info) => info,
        Err(error) => {
            reasons.push(error.to_string());
            report["reasons"] = json!(reasons);
            return print_check(&report, format);
        }
    };
    report["world"] = json!(info.world);
    report["size_bytes"] = json!(info.size_bytes);
    report["content_hash"] = json!(info.content_hash);
    report["imports"] = json!(info.imports);
    report["exports"] = json!(info.exports);
    report["compile_cache"] = json!(info.cache);
    let Some(world) = info.world else {
        reasons.push(format!(
            "its exports [{}] match no gaffer:plugin@0.1.0 world (router exports `route`, \
             verifier `verify`, hook `pre-tool`, `on-edit` and `on-diff`)",
            info.exports.join(", ")
        ));
        report["reasons"] = json!(reasons);
        return print_check(&report, format);
    };
    let plugin = match runtime.load(spec_for(world, file, config)) {
        Ok(plugin) => plugin,
        Err(error) => {
            reasons.push(error.to_string());
            report["reasons"] = json!(reasons);
            return print_check(&report, format);
        }
    };
    let mut calls = Vec::new();
    let mut faulted = false;
    for call in sample_calls(&plugin).await {
        match call {
            Ok(call) => {
                faulted |= call.fault.is_some();
                calls.push(json!(call));
            }
            Err(error) => {
                faulted = true;
                calls.push(json!({ "error": error.to_string() }));
            }
        }
    }
    report["sample_calls"] = json!(calls);
    if faulted {
        reasons.push("the sample call faulted (see sample_calls)".to_string());
    }
    report["accepted"] = json!(!faulted);
    report["reasons"] = json!(reasons);
    print_check(&report, format)
}

fn print_check(report: &serde_json::Value, format: Format) -> anyhow::Result<ExitCode> {
    let accepted = report["accepted"].as_bool().unwrap_or(false);
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(report)?),
        Format::Text => {
            let field = |k: &str| {
                report[k]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| report[k].to_string())
            };
            println!("file:      {}", field("file"));
            if !report["world"].is_null() {
                println!("world:     {}", field("world"));
                println!("size:      {} bytes", report["size_bytes"]);
                println!("hash:      {}", field("content_hash"));
                println!(
                    "compiled:  {} (allocator: {})",
                    field("compile_cache"),
                    field("allocator")
                );
            }
            if let Some(imports) = report["imports"].as_array() {
                println!("imports:");
                for import in imports {
                    println!("  {}", import.as_str().unwrap_or_default());
                }
            }
            if let Some(exports) = report["exports"].as_array() {
                let names: Vec<&str> = exports.iter().filter_map(|e| e.as_str()).collect();
                println!("exports:   {}", names.join(", "));
            }
            if let Some(calls) = report["sample_calls"].as_array() {
                for call in calls {
                    if let Some(error) = call["error"].as_str() {
                        println!("sample:    error: {error}");
                        continue;
                    }
                    println!(
                        "sample:    {} -> {}  [fuel {}, {} µs, {} KiB memory]",
                        call["function"].as_str().unwrap_or_default(),
                        call["decision"].as_str().unwrap_or_default(),
                        call["fuel_used"],
                        call["wall_us"],
                        call["memory_bytes"].as_u64().unwrap_or_default() / 1024
                    );
                    if let Some(fault) = call["fault"].as_str() {
                        println!("           fault: {fault}");
                    }
                }
            }
            println!("accepted:  {}", if accepted { "yes" } else { "no" });
            for reason in report["reasons"].as_array().into_iter().flatten() {
                println!("  - {}", reason.as_str().unwrap_or_default());
            }
        }
    }
    Ok(if accepted {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Per-call timing summary.
#[derive(Debug, serde::Serialize)]
struct BenchReport {
    file: String,
    world: World,
    function: &'static str,
    allocator: crate::plugin::AllocatorKind,
    calls: u32,
    median_ns: u64,
    p90_ns: u64,
    mean_ns: u64,
    min_ns: u64,
    max_ns: u64,
    fuel_per_call: u64,
    /// Linear memory of one instance at the end of a call.
    memory_bytes: u64,
}

/// The arguments of the timed calls, built once: the caller of a plugin already holds its
/// request, so building the sample is not part of a call (as in the criterion benches).
enum BenchInput {
    Route(RouteRequest),
    Verify(VerifyRequest),
    PreTool(Task, ToolCall),
}

impl BenchInput {
    fn for_world(world: World) -> BenchInput {
        match world {
            World::Router => BenchInput::Route(samples::route_request()),
            World::Verifier => BenchInput::Verify(samples::verify_request()),
            World::Hook => BenchInput::PreTool(samples::task(), samples::tool_call()),
        }
    }
}

/// One call with a fresh sandbox in the task's context `ctx`; its run record (fuel, memory).
async fn one_call(
    plugin: &Plugin,
    ctx: &CallContext,
    input: &BenchInput,
) -> anyhow::Result<PluginRun> {
    let (run, fault) = match input {
        BenchInput::Route(request) => {
            let c = plugin.route(ctx, request).await?;
            (c.run, c.fault)
        }
        BenchInput::Verify(request) => {
            let c = plugin.verify(ctx, request).await?;
            (c.run, c.fault)
        }
        BenchInput::PreTool(task, call) => {
            let c = plugin.pre_tool(ctx, task, call).await?;
            (c.run, c.fault)
        }
    };
    if let Some(fault) = fault {
        anyhow::bail!("the plugin faulted, so there is nothing meaningful to time: {fault}");
    }
    Ok(run)
}

/// `gaffer plugin bench FILE`.
async fn bench(
    file: &Path,
    calls: u32,
    warmup: u32,
    allocator: AllocatorChoice,
    config: &str,
    format: Format,
) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(calls > 0, "--calls must be at least 1");
    let config = parse_config(config)?;
    let runtime = PluginRuntime::builder()
        .options(EngineOptions {
            allocator,
            ..EngineOptions::default()
        })
        .build()?;
    let info = runtime.inspect(file)?;
    let world = info.world.with_context(|| {
        format!(
            "{}: its exports [{}] match no gaffer world",
            file.display(),
            info.exports.join(", ")
        )
    })?;
    let plugin = runtime.load(spec_for(world, file, config))?;
    let input = BenchInput::for_world(world);
    for _ in 0..warmup {
        one_call(&plugin, &CallContext::new("bench", 1), &input).await?;
    }
    let mut times: Vec<Duration> = Vec::with_capacity(calls as usize);
    let (mut fuel, mut memory) = (0, 0);
    for _ in 0..calls {
        // A task of its own for every call, so no call runs short of the task's fuel.
        let ctx = CallContext::new("bench", 1);
        let started = Instant::now();
        let run = one_call(&plugin, &ctx, &input).await?;
        times.push(started.elapsed());
        (fuel, memory) = (run.fuel_used, run.memory_bytes);
    }
    times.sort();
    let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    let n = times.len();
    let total: u128 = times.iter().map(|d| d.as_nanos()).sum();
    let report = BenchReport {
        file: file.display().to_string(),
        world,
        function: match world {
            World::Router => "route",
            World::Verifier => "verify",
            World::Hook => "pre-tool",
        },
        allocator: runtime.allocator(),
        calls,
        median_ns: ns(times[n / 2]),
        p90_ns: ns(times[(n * 9 / 10).min(n - 1)]),
        mean_ns: u64::try_from(total / n as u128).unwrap_or(u64::MAX),
        min_ns: ns(times[0]),
        max_ns: ns(times[n - 1]),
        fuel_per_call: fuel,
        memory_bytes: memory,
    };
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Text => {
            println!(
                "{} ({}, `{}`), fresh sandbox per call, fuel and deadline on, {:?} allocator",
                report.file, report.world, report.function, report.allocator
            );
            println!(
                "calls {}  median {:.1} µs  p90 {:.1} µs  mean {:.1} µs  min {:.1} µs  max {:.1} µs  fuel/call {}  memory {} KiB",
                report.calls,
                report.median_ns as f64 / 1e3,
                report.p90_ns as f64 / 1e3,
                report.mean_ns as f64 / 1e3,
                report.min_ns as f64 / 1e3,
                report.max_ns as f64 / 1e3,
                report.fuel_per_call,
                report.memory_bytes / 1024
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
