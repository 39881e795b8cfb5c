//! Benchmarks of the plugin runtime, in the configuration gaffer ships (fuel and deadline on)
//! unless a group says otherwise, each against a baseline measured in the same run:
//!
//! - `route`: the cost-tier router with a fresh sandbox per call, pooling and on-demand, against
//!   the same routing logic called as a native Rust function (the floor).
//! - `metering`: fuel and epoch overhead against unmetered, on a compute-heavy guest (a serial
//!   loop) and a call-heavy one (recursive Fibonacci).
//! - `hook`: a protected-paths decision through the runtime against the same rule as a command
//!   hook that starts a Python process per event (`/usr/bin/python3`, JSON on stdin).
//! - `language/*`: the same two plugins (cost-tier, protected-paths) written in Rust, Python
//!   (componentize-py) and JavaScript (jco, QuickJS): a call with a fresh sandbox, a load from
//!   the compile cache, and a cold compile; Rust is the baseline. The memory each instance
//!   holds is printed (it is a count of bytes, not a time).
//!
//! Guests are built from source by the shared test support. Run with `RUST_BACKTRACE=0`: a
//! backtrace captured per trap distorts timings (scripts/bench.sh sets it).

#[path = "../../tests/support/mod.rs"]
mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use criterion::{Criterion, criterion_group, criterion_main};
use gaffer::plugin::{
    AllocatorChoice, CallContext, EngineOptions, Metering, Plugin, PluginRuntime, PluginSpec,
    World, samples, types,
};
use gaffer_sdk::Router as _;
use serde_json::json;

fn runtime(allocator: AllocatorChoice, metering: Metering) -> PluginRuntime {
    PluginRuntime::builder()
        .options(EngineOptions {
            allocator,
            metering,
            ..EngineOptions::default()
        })
        .cache_dir(Some(support::test_cache_dir()))
        .build()
        .expect("runtime")
}

fn router(runtime: &PluginRuntime, path: std::path::PathBuf, config: serde_json::Value) -> Plugin {
    let mut spec = PluginSpec::new(World::Router, path).with_config(config);
    spec.fallback_model = Some("cheap".to_string());
    // The metering bench runs long computations; give them room.
    spec.limits.fuel_per_call = u64::MAX / 4;
    spec.limits.fuel_per_task = u64::MAX / 2;
    spec.limits.deadline = std::time::Duration::from_secs(60);
    runtime.load(spec).expect("router loads")
}

/// The host's sample request, as the SDK's native types, for the native floor.
fn sdk_request(r: &types::RouteRequest) -> gaffer_sdk::types::RouteRequest {
    use gaffer_sdk::types as s;
    s::RouteRequest {
        task: s::Task {
            id: r.task.id.clone(),
            title: r.task.title.clone(),
            body: r.task.body.clone(),
            labels: r.task.labels.clone(),
            paths: r.task.paths.clone(),
        },
        history: vec![],
        models: r
            .models
            .iter()
            .map(|m| s::ModelInfo {
                id: m.id.clone(),
                provider: m.provider.clone(),
                tier: m.tier,
                prices: s::Prices {
                    input: m.prices.input.get(),
                    output: m.prices.output.get(),
                    cache_read: m.prices.cache_read.get(),
                    cache_write: m.prices.cache_write.get(),
                },
                context_window: m.context_window,
                tags: m.tags.clone(),
            })
            .collect(),
        budget: s::BudgetView {
            money: r
                .budget
                .money
                .iter()
                // As the host hands the budget to a plugin: a per-model cap has no level in
                // the contract and is left out.
                .filter_map(|m| {
                    Some(s::MoneyLeft {
                        level: match m.level {
                            types::CapLevel::Call => s::BudgetLevel::Call,
                            types::CapLevel::Attempt => s::BudgetLevel::Attempt,
                            types::CapLevel::Task => s::BudgetLevel::Task,
                            types::CapLevel::Run => s::BudgetLevel::Run,
                            types::CapLevel::Day => s::BudgetLevel::Day,
                            types::CapLevel::Month => s::BudgetLevel::Month,
                            types::CapLevel::Model => return None,
                        },
                        cap: m.cap.get(),
                        spent: m.spent.get(),
                        left: m.left.get(),
                    })
                })
                .collect(),
            fuel_left_task: r.budget.fuel_left_task,
            fuel_per_call: r.budget.fuel_per_call,
        },
    }
}

fn bench_route(c: &mut Criterion) {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let request = samples::route_request();
    let mut group = c.benchmark_group("route");

    let native_request = sdk_request(&request);
    group.bench_function("native-floor", |b| {
        b.iter(|| cost_tier::CostTier::route(std::hint::black_box(native_request.clone())))
    });

    let fuel_only = Metering {
        fuel: true,
        epoch: false,
    };
    for (label, allocator, metering) in [
        (
            "fresh-sandbox/pooling",
            AllocatorChoice::Pooling,
            Metering::SHIPPED,
        ),
        (
            "fresh-sandbox/on-demand",
            AllocatorChoice::OnDemand,
            Metering::SHIPPED,
        ),
        // Not shipped: the same without epoch interruption (a deadline that only fires where
        // fuel yields), the price of the epoch in the same run.
        (
            "fresh-sandbox/pooling, fuel only",
            AllocatorChoice::Pooling,
            fuel_only,
        ),
    ] {
        let rt = runtime(allocator, metering);
        let mut spec = PluginSpec::new(World::Router, support::guest("cost-tier"));
        spec.fallback_model = Some("cheap".to_string());
        let plugin = rt.load(spec).expect("cost-tier loads");
        let ctx = CallContext::new("bench", 1);
        // Sanity: the decision is the plugin's, not the fallback's.
        let check = tokio.block_on(plugin.route(&ctx, &request)).unwrap();
        assert!(check.fault.is_none(), "{:?}", check.fault);
        group.bench_function(label, |b| {
            b.iter(|| {
                let ctx = CallContext::new("bench", 1);
                tokio.block_on(plugin.route(&ctx, &request)).unwrap()
            })
        });
    }
    group.finish();
}

fn bench_metering(c: &mut Criterion) {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let request = samples::route_request();
    let configs = [
        (
            "unmetered",
            Metering {
                fuel: false,
                epoch: false,
            },
        ),
        (
            "fuel",
            Metering {
                fuel: true,
                epoch: false,
            },
        ),
        (
            "epoch",
            Metering {
                fuel: false,
                epoch: true,
            },
        ),
        ("fuel+epoch", Metering::SHIPPED),
    ];
    let workloads = [
        ("compute-loop", json!({"mode": "fuel", "rounds": 2_000_000})),
        ("call-heavy-fib", json!({"mode": "fib", "n": 25})),
    ];
    for (workload, config) in workloads {
        let mut group = c.benchmark_group(format!("metering/{workload}"));
        group.sample_size(20);
        for (label, metering) in configs {
            let rt = runtime(AllocatorChoice::OnDemand, metering);
            let plugin = router(&rt, support::guest("hostile-guest"), config.clone());
            let check = tokio
                .block_on(plugin.route(&CallContext::new("bench", 1), &request))
                .unwrap();
            assert!(check.fault.is_none(), "{label}: {:?}", check.fault);
            group.bench_function(label, |b| {
                b.iter(|| {
                    tokio
                        .block_on(plugin.route(&CallContext::new("bench", 1), &request))
                        .unwrap()
                })
            });
        }
        group.finish();
    }
}

fn python_hook(event: &[u8]) -> Vec<u8> {
    let script = support::workspace_root().join("tests/bench/protected_paths_hook.py");
    let mut child = Command::new("/usr/bin/python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(event)
        .expect("event written");
    let out = child.wait_with_output().expect("hook finishes");
    assert!(out.status.success());
    out.stdout
}

fn bench_hook(c: &mut Criterion) {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let rt = runtime(AllocatorChoice::Auto, Metering::SHIPPED);
    let plugin = rt
        .load(PluginSpec::new(
            World::Hook,
            support::guest("protected-paths"),
        ))
        .expect("protected-paths loads");
    let task = samples::task();
    let call = types::ToolCall {
        name: "write_file".to_string(),
        arguments: r#"{"path":"config/.env","content":"SECRET=1"}"#.to_string(),
    };
    let event = serde_json::to_vec(&json!({"name": call.name, "arguments": call.arguments}))
        .expect("event");

    // Both must deny the same call.
    let wasm = tokio
        .block_on(plugin.pre_tool(&CallContext::new("bench", 1), &task, &call))
        .unwrap();
    assert!(
        matches!(wasm.decision, types::HookDecision::Deny(_)),
        "{:?}",
        wasm.decision
    );
    let py: serde_json::Value = serde_json::from_slice(&python_hook(&event)).unwrap();
    assert_eq!(py["decision"], "deny");

    let mut group = c.benchmark_group("hook");
    group.bench_function("wasm-in-runtime", |b| {
        b.iter(|| {
            tokio
                .block_on(plugin.pre_tool(&CallContext::new("bench", 1), &task, &call))
                .unwrap()
        })
    });
    group.sample_size(30);
    group.bench_function("python-process-per-event", |b| {
        b.iter(|| python_hook(&event))
    });
    group.finish();
}

/// The three builds of each reference plugin, Rust first (the baseline).
fn by_language(rust_name: &str) -> [(&'static str, std::path::PathBuf); 3] {
    [
        ("rust", support::guest(rust_name)),
        (
            "python",
            support::polyglot_guest(support::Lang::Python, rust_name),
        ),
        ("js", support::polyglot_guest(support::Lang::Js, rust_name)),
    ]
}

fn bench_languages(c: &mut Criterion) {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let rt = runtime(AllocatorChoice::Auto, Metering::SHIPPED);
    let request = samples::route_request();
    let task = samples::task();
    let call = types::ToolCall {
        name: "write_file".to_string(),
        arguments: r#"{"path":"config/.env","content":"SECRET=1"}"#.to_string(),
    };
    let router_spec = |path: std::path::PathBuf| {
        let mut spec = PluginSpec::new(World::Router, path);
        spec.fallback_model = Some("cheap".to_string());
        spec
    };

    let mut route = c.benchmark_group("language/route");
    for (lang, path) in by_language("cost-tier") {
        let plugin = rt.load(router_spec(path)).expect("router loads");
        let check = tokio
            .block_on(plugin.route(&CallContext::new("bench", 1), &request))
            .unwrap();
        assert!(check.fault.is_none(), "{lang}: {:?}", check.fault);
        eprintln!(
            "language/route/{lang}: instance memory {} KiB, fuel {} per call",
            check.run.memory_bytes / 1024,
            check.run.fuel_used
        );
        route.bench_function(lang, |b| {
            b.iter(|| {
                tokio
                    .block_on(plugin.route(&CallContext::new("bench", 1), &request))
                    .unwrap()
            })
        });
    }
    route.finish();

    let mut hook = c.benchmark_group("language/pre-tool");
    for (lang, path) in by_language("protected-paths") {
        let plugin = rt
            .load(PluginSpec::new(World::Hook, path))
            .expect("hook loads");
        let check = tokio
            .block_on(plugin.pre_tool(&CallContext::new("bench", 1), &task, &call))
            .unwrap();
        assert!(
            matches!(check.decision, types::HookDecision::Deny(_)),
            "{lang}: {:?}",
            check.decision
        );
        eprintln!(
            "language/pre-tool/{lang}: instance memory {} KiB, fuel {} per call",
            check.run.memory_bytes / 1024,
            check.run.fuel_used
        );
        hook.bench_function(lang, |b| {
            b.iter(|| {
                tokio
                    .block_on(plugin.pre_tool(&CallContext::new("bench", 1), &task, &call))
                    .unwrap()
            })
        });
    }
    hook.finish();

    // What a process pays to get a plugin ready when the compiled artifact is on disk: read
    // and hash the component, read and deserialize the artifact, check the world.
    let mut load = c.benchmark_group("language/load-cached");
    load.sample_size(10);
    for (lang, path) in by_language("cost-tier") {
        rt.load(router_spec(path.clone())).expect("warm the cache");
        load.bench_function(lang, |b| {
            b.iter(|| rt.load(router_spec(path.clone())).expect("loads"))
        });
    }
    load.finish();

    // The first load of a component: compile it with Cranelift (into a cache that is emptied
    // before every iteration).
    let mut compile = c.benchmark_group("language/compile-cold");
    compile.sample_size(10);
    for (lang, path) in by_language("cost-tier") {
        let cache = tempfile::tempdir().expect("temp dir");
        let cold = PluginRuntime::builder()
            .cache_dir(Some(cache.path().to_path_buf()))
            .build()
            .expect("runtime");
        compile.bench_function(lang, |b| {
            b.iter(|| {
                for entry in std::fs::read_dir(cache.path()).expect("cache dir") {
                    let entry = entry.expect("entry");
                    let _ = std::fs::remove_file(entry.path());
                    let _ = std::fs::remove_dir_all(entry.path());
                }
                cold.load(router_spec(path.clone())).expect("compiles")
            })
        });
    }
    compile.finish();
}

criterion_group!(
    benches,
    bench_route,
    bench_metering,
    bench_hook,
    bench_languages
);
criterion_main!(benches);
