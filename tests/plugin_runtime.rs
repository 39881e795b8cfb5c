//! End-to-end tests of the plugin runtime with real components built from source: the hostile
//! plugin suite, the fail policy, fuel accounting, grants, starvation and reloading.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gaffer::config::{ConfigError, ConfigFile};
use gaffer::pipeline::assemble::plugin_specs;
use gaffer::plugin::types::{RouteDecision, RouteRequest};
use gaffer::plugin::{
    CallContext, CallError, Called, OnFailure, Plugin, PluginError, PluginRuntime, PluginSpec,
    PluginSpecs, WasiLinking, World, samples,
};
use serde_json::json;
use support::{FakeModels, Lang, guest, polyglot_guest, runtime, runtime_with};

fn hostile(mode: &str) -> PluginSpec {
    let mut spec =
        PluginSpec::new(World::Router, guest("hostile-guest")).with_config(json!({ "mode": mode }));
    spec.name = format!("hostile-{mode}");
    spec.fallback_model = Some("cheap".to_string());
    spec
}

async fn route(plugin: &Plugin) -> Result<Called<RouteDecision>, CallError> {
    plugin
        .route(&CallContext::new("T-1", 1), &samples::route_request())
        .await
}

/// After a hostile call, the same runtime must serve a well-behaved plugin correctly.
async fn serves_next_call(runtime: &PluginRuntime) {
    let ok = runtime.load(hostile("ok")).expect("ok plugin loads");
    let called = route(&ok).await.expect("ok plugin answers");
    assert!(called.fault.is_none(), "{:?}", called.fault);
    assert_eq!(called.decision.model, "cheap");
    assert_eq!(called.decision.reason, "ok for T-1");
}

fn fallback_reason(kind: &str) -> String {
    // The fallback decision names the plugin and the fault kind (see `Plugin::route`).
    format!("faulted ({kind}); fell back to `cheap`")
}

#[tokio::test]
async fn endless_loop_runs_out_of_fuel_and_falls_back() {
    let (runtime, recorder) = runtime();
    let mut spec = hostile("spin");
    spec.limits.fuel_per_call = 200_000_000;
    let plugin = runtime.load(spec).unwrap();
    let called = route(&plugin).await.unwrap();
    match called.fault {
        Some(PluginError::OutOfFuel {
            allowance,
            ref plugin,
            ..
        }) => {
            assert_eq!(allowance, 200_000_000);
            assert_eq!(plugin, "hostile-spin");
        }
        ref other => panic!("expected out of fuel, got {other:?}"),
    }
    assert_eq!(called.decision.model, "cheap");
    assert!(
        called
            .decision
            .reason
            .contains(&fallback_reason("out-of-fuel"))
    );
    assert_eq!(
        called.run.fuel_used, 200_000_000,
        "all the allowance was used"
    );
    assert_eq!(called.run.policy, Some(OnFailure::Fallback));
    let runs = recorder.runs();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].outcome, "out-of-fuel");
    serves_next_call(&runtime).await;
}

#[tokio::test]
async fn endless_loop_with_ample_fuel_meets_the_deadline() {
    let (runtime, _) = runtime();
    let mut spec = hostile("spin");
    spec.limits.fuel_per_call = u64::MAX / 4;
    spec.limits.deadline = Duration::from_millis(150);
    let plugin = runtime.load(spec).unwrap();
    let called = route(&plugin).await.unwrap();
    assert!(
        matches!(called.fault, Some(PluginError::Deadline { deadline, .. }) if deadline == Duration::from_millis(150)),
        "{:?}",
        called.fault
    );
    serves_next_call(&runtime).await;
}

#[tokio::test]
async fn waiting_inside_a_host_call_meets_the_deadline() {
    let models = Arc::new(FakeModels::default());
    let (runtime, _) = runtime_with(models.clone());
    let mut spec = hostile("await-host");
    spec.grants.complete = vec!["slow".to_string()];
    spec.limits.deadline = Duration::from_millis(200);
    let plugin = runtime.load(spec).unwrap();
    let called = route(&plugin).await.unwrap();
    assert!(
        matches!(called.fault, Some(PluginError::Deadline { .. })),
        "{:?}",
        called.fault
    );
    // The call did reach the model access, and then hung there.
    assert_eq!(models.calls().len(), 1);
    assert_eq!(models.calls()[0].model, "slow");
    serves_next_call(&runtime).await;
}

#[tokio::test]
async fn unbounded_memory_growth_hits_the_memory_cap() {
    let (runtime, _) = runtime();
    let mut spec = hostile("grow");
    spec.limits.memory_bytes = 32 * 1024 * 1024;
    let plugin = runtime.load(spec).unwrap();
    let called = route(&plugin).await.unwrap();
    match called.fault {
        Some(PluginError::MemoryLimit { requested, cap, .. }) => {
            assert_eq!(cap, 32 * 1024 * 1024);
            assert!(requested > cap, "requested {requested} cap {cap}");
        }
        ref other => panic!("expected memory limit, got {other:?}"),
    }
    // The run reports the memory the instance held: under the cap, and (growing by doubling)
    // more than half of it by the time a growth was refused.
    let held = called.run.memory_bytes;
    assert!(
        held <= 32 * 1024 * 1024 && held > 16 * 1024 * 1024,
        "memory held {held}"
    );
    serves_next_call(&runtime).await;
}

#[tokio::test]
async fn deep_recursion_traps() {
    let (runtime, _) = runtime();
    let plugin = runtime.load(hostile("recurse")).unwrap();
    let called = route(&plugin).await.unwrap();
    match &called.fault {
        Some(PluginError::Trap { message, .. }) => {
            assert!(message.contains("call stack exhausted"), "{message}")
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    assert!(called.decision.reason.contains(&fallback_reason("trap")));
    serves_next_call(&runtime).await;
}

#[tokio::test]
async fn a_panic_traps_with_its_message_and_a_backtrace() {
    let (runtime, _) = runtime();
    let plugin = runtime.load(hostile("panic")).unwrap();
    let called = route(&plugin).await.unwrap();
    match &called.fault {
        Some(PluginError::Trap {
            message, backtrace, ..
        }) => {
            assert!(
                message.contains("hostile plugin panicked on purpose"),
                "{message}"
            );
            assert!(backtrace.is_some(), "a wasm backtrace is kept");
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    serves_next_call(&runtime).await;
}

/// A plugin built without WASI has no stderr for Rust's panic message; the SDK logs it at
/// `error` instead, and the trap report quotes it.
#[tokio::test]
async fn a_panic_without_wasi_traps_with_its_message_from_the_log() {
    let (runtime, _) = runtime();
    let mut spec = PluginSpec::new(World::Router, guest("panicking-router"));
    spec.fallback_model = Some("cheap".to_string());
    let plugin = runtime.load(spec).unwrap();
    let task = samples::route_request().task.id;
    let called = route(&plugin).await.unwrap();
    match &called.fault {
        Some(PluginError::Trap { message, .. }) => {
            assert!(
                message.contains("the plugin logged: panicked at "),
                "{message}"
            );
            assert!(
                message.contains(&format!("panicking-router gave up on task {task}")),
                "{message}"
            );
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    assert!(called.decision.reason.contains(&fallback_reason("trap")));
    serves_next_call(&runtime).await;
}

#[tokio::test]
async fn huge_output_is_rejected() {
    let (runtime, _) = runtime();
    let spec =
        hostile("huge-output").with_config(json!({"mode": "huge-output", "bytes": 8_388_608}));
    let plugin = runtime.load(spec).unwrap();
    let called = route(&plugin).await.unwrap();
    match called.fault {
        Some(PluginError::OversizedOutput { size, cap, .. }) => {
            // "cheap" (5) + 8 MiB of reason + 8 bytes for the budget.
            assert_eq!(size, 5 + 8_388_608 + 8);
            assert_eq!(cap, 256 * 1024);
        }
        ref other => panic!("expected oversized output, got {other:?}"),
    }
    serves_next_call(&runtime).await;
}

#[tokio::test]
async fn ambient_authority_is_denied() {
    let (runtime, _) = runtime();
    let plugin = runtime.load(hostile("ambient")).unwrap();
    let called = route(&plugin).await.unwrap();
    assert!(called.fault.is_none(), "{:?}", called.fault);
    let reason = called.decision.reason;
    for expected in [
        "file=denied(",
        "dir=denied(",
        "socket=denied(",
        "env=empty",
        "clock=0",
    ] {
        assert!(reason.contains(expected), "missing {expected} in: {reason}");
    }
    serves_next_call(&runtime).await;
}

#[tokio::test]
async fn a_component_for_another_world_is_incompatible() {
    let (runtime, _) = runtime();
    let mut spec = PluginSpec::new(World::Router, guest("protected-paths"));
    spec.fallback_model = Some("cheap".to_string());
    let error = runtime.load(spec).unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, PluginError::Incompatible { .. }), "{text}");
    assert!(text.contains("expected the `router` world"), "{text}");
    assert!(text.contains("that is the `hook` world"), "{text}");
    assert!(text.contains("pre-tool"), "{text}");

    let error = runtime
        .load(PluginSpec::new(World::Hook, guest("cost-tier")))
        .unwrap_err()
        .to_string();
    assert!(error.contains("expected the `hook` world"), "{error}");
    assert!(error.contains("exports [route]"), "{error}");
    serves_next_call(&runtime).await;
}

#[tokio::test]
async fn a_file_that_is_not_a_component_is_refused_with_its_path() {
    let (runtime, _) = runtime();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.wasm");
    std::fs::write(&path, b"this is not wasm").unwrap();
    let error = runtime
        .load(PluginSpec::new(World::Hook, &path))
        .unwrap_err();
    assert!(matches!(error, PluginError::Compile { .. }), "{error}");
    assert!(error.to_string().contains("broken.wasm"), "{error}");
    let missing = runtime
        .load(PluginSpec::new(
            World::Hook,
            dir.path().join("missing.wasm"),
        ))
        .unwrap_err();
    assert!(matches!(missing, PluginError::Read { .. }), "{missing}");
}

#[tokio::test]
async fn an_error_returned_by_the_router_falls_back() {
    let (runtime, _) = runtime();
    let plugin = runtime.load(hostile("return-error")).unwrap();
    let called = route(&plugin).await.unwrap();
    assert!(
        matches!(&called.fault, Some(PluginError::Returned { message, .. }) if message == "the router refuses on purpose"),
        "{:?}",
        called.fault
    );
    assert_eq!(called.decision.model, "cheap");
}

#[tokio::test]
async fn a_router_naming_an_unknown_model_is_malformed() {
    let (runtime, _) = runtime();
    let plugin = runtime.load(hostile("bad-model")).unwrap();
    let called = route(&plugin).await.unwrap();
    match &called.fault {
        Some(PluginError::MalformedOutput { reason, .. }) => {
            assert!(reason.contains("`no-such-model`"), "{reason}");
            assert!(reason.contains("[cheap, mid, strong]"), "{reason}");
        }
        other => panic!("expected malformed output, got {other:?}"),
    }
}

#[tokio::test]
async fn the_stop_policy_hands_the_fault_to_the_caller() {
    let (runtime, _) = runtime();
    let mut spec = hostile("panic");
    spec.on_failure = OnFailure::Stop;
    let plugin = runtime.load(spec).unwrap();
    match route(&plugin).await {
        Err(CallError::Stopped(PluginError::Trap { .. })) => {}
        other => panic!("expected a stop, got {other:?}"),
    }
}

#[tokio::test]
async fn too_many_faults_refuse_further_calls_naming_the_plugin() {
    let (runtime, _) = runtime();
    let mut spec = hostile("return-error");
    spec.limits.max_faults = 2;
    let plugin = runtime.load(spec).unwrap();
    assert!(route(&plugin).await.unwrap().fault.is_some());
    assert!(route(&plugin).await.unwrap().fault.is_some());
    match route(&plugin).await {
        Err(CallError::FaultLimit {
            plugin,
            faults,
            limit,
            last,
        }) => {
            assert_eq!(plugin, "hostile-return-error");
            assert_eq!((faults, limit), (2, 2));
            assert!(last.contains("refuses on purpose"), "{last}");
        }
        other => panic!("expected the fault limit, got {other:?}"),
    }
}

#[tokio::test]
async fn fuel_is_counted_per_task_and_exhaustion_stops_the_task() {
    let (runtime, recorder) = runtime();
    let spec = hostile("fuel").with_config(json!({"mode": "fuel", "rounds": 100_000}));
    let probe = runtime.load(spec.clone()).unwrap();
    let first = route(&probe).await.unwrap();
    assert!(first.fault.is_none(), "{:?}", first.fault);
    let per_call = first.run.fuel_used;
    assert!(
        per_call > 100_000,
        "100k rounds use more than 100k instructions: {per_call}"
    );

    // A task budget that fits one call and a half.
    let mut limited = spec;
    limited.limits.fuel_per_task = per_call + per_call / 2;
    let plugin = runtime.load(limited).unwrap();
    let ctx = CallContext::new("T-9", 1);
    let request = samples::route_request();
    let one = plugin.route(&ctx, &request).await.unwrap();
    assert!(one.fault.is_none());
    assert_eq!(
        ctx.fuel.used(plugin.name()),
        per_call,
        "same work, same fuel"
    );
    match plugin.route(&ctx, &request).await {
        Err(CallError::TaskFuelExhausted {
            task, budget, used, ..
        }) => {
            assert_eq!(task, "T-9");
            assert_eq!(budget, per_call + per_call / 2);
            assert_eq!(used, budget, "the second call used the rest of the budget");
        }
        other => panic!("expected task fuel exhaustion, got {other:?}"),
    }
    // Exhaustion is not a plugin fault.
    assert_eq!(plugin.faults(), 0);
    // And a spent task is refused before anything runs.
    let runs_before = recorder.runs().len();
    assert!(matches!(
        plugin.route(&ctx, &request).await,
        Err(CallError::TaskFuelExhausted { .. })
    ));
    assert_eq!(recorder.runs().len(), runs_before);
    // Another task has its own budget.
    assert!(
        plugin
            .route(&CallContext::new("T-10", 1), &request)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn complete_reaches_the_model_access_only_when_granted() {
    let models = Arc::new(FakeModels::default());
    let (runtime, _) = runtime_with(models.clone());
    let mut granted =
        hostile("complete").with_config(json!({"mode": "complete", "model": "cheap"}));
    granted.grants.complete = vec!["cheap".to_string()];
    let plugin = runtime.load(granted).unwrap();
    let called = route(&plugin).await.unwrap();
    assert_eq!(called.decision.reason, "model said: use mid (cost 27)");
    let log = models.calls();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].plugin, "hostile-complete");
    assert_eq!(
        log[0].task_id, "T-1",
        "the call is charged to the calling task"
    );
    assert_eq!(log[0].max_tokens, 64);
    assert_eq!(log[0].prompt, "route Fix off-by-one in pagination");

    let not_granted =
        hostile("complete").with_config(json!({"mode": "complete", "model": "strong"}));
    let plugin = runtime
        .load(PluginSpec {
            grants: gaffer::plugin::Grants {
                complete: vec!["cheap".to_string()],
                files: false,
            },
            ..not_granted
        })
        .unwrap();
    let called = route(&plugin).await.unwrap();
    assert!(
        called
            .decision
            .reason
            .starts_with("complete refused: HostError::NotGranted("),
        "{}",
        called.decision.reason
    );
    assert!(
        called
            .decision
            .reason
            .contains("may not call model `strong`")
    );
    assert_eq!(
        models.calls().len(),
        1,
        "a refused call never reaches the gateway"
    );
}

#[tokio::test]
async fn files_are_readable_only_when_granted_and_only_inside_the_worktree() {
    let (runtime, _) = runtime();
    let worktree = tempfile::tempdir().unwrap();
    std::fs::write(
        worktree.path().join("README.md"),
        "hello from the worktree\n",
    )
    .unwrap();
    let ctx = CallContext::new("T-1", 1).with_worktree(worktree.path());
    let request = samples::route_request();

    let mut spec =
        hostile("read-file").with_config(json!({"mode": "read-file", "path": "README.md"}));
    spec.grants.files = true;
    let plugin = runtime.load(spec.clone()).unwrap();
    let called = plugin.route(&ctx, &request).await.unwrap();
    assert_eq!(called.decision.reason, "read: hello from the worktree");

    let escaping = runtime
        .load(
            spec.clone()
                .with_config(json!({"mode": "read-file", "path": "../../etc/passwd"})),
        )
        .unwrap();
    let called = escaping.route(&ctx, &request).await.unwrap();
    assert!(
        called.decision.reason.starts_with("read refused:"),
        "{}",
        called.decision.reason
    );

    spec.grants.files = false;
    let ungranted = runtime.load(spec).unwrap();
    let called = ungranted.route(&ctx, &request).await.unwrap();
    assert!(
        called
            .decision
            .reason
            .starts_with("read refused: HostError::NotGranted("),
        "{}",
        called.decision.reason
    );
}

/// A spinning plugin on one task must not stop another task's work on the same runtime thread.
#[test]
fn a_spinning_plugin_does_not_starve_other_tasks() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let (runtime, _) = runtime();
        let mut spec = hostile("spin");
        spec.limits.fuel_per_call = 3_000_000_000;
        spec.limits.deadline = Duration::from_secs(30);
        let plugin = runtime.load(spec).unwrap();
        let progress = Arc::new(AtomicU64::new(0));
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let other = {
            let progress = progress.clone();
            let done = done.clone();
            tokio::spawn(async move {
                while !done.load(Ordering::Relaxed) {
                    progress.fetch_add(1, Ordering::Relaxed);
                    tokio::task::yield_now().await;
                }
            })
        };
        // Let the other task start, then spin on the same (single) thread.
        tokio::task::yield_now().await;
        let before = progress.load(Ordering::Relaxed);
        let called = route(&plugin).await.unwrap();
        let during = progress.load(Ordering::Relaxed) - before;
        done.store(true, Ordering::Relaxed);
        other.await.unwrap();
        assert!(matches!(called.fault, Some(PluginError::OutOfFuel { .. })));
        // 3e9 instructions with a yield every 1e7: the other task gets ~300 turns.
        assert!(
            during >= 100,
            "the other task ran only {during} times while the plugin spun"
        );
    });
}

fn replace_file(path: &std::path::Path, from: &std::path::Path) {
    // Write beside and rename, as a deploy would: the runtime never sees a half-written file.
    let tmp = path.with_extension("new");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn a_replaced_wasm_serves_only_after_a_reload_and_a_broken_one_keeps_the_old() {
    let (runtime, _) = runtime();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("router.wasm");
    std::fs::copy(guest("cost-tier"), &path).unwrap();
    let mut spec = PluginSpec::new(World::Router, &path);
    spec.fallback_model = Some("cheap".to_string());
    let plugin = runtime.load(spec).unwrap();
    let request: RouteRequest = samples::route_request();
    let ctx = CallContext::new("T-1", 1);

    let first = plugin.route(&ctx, &request).await.unwrap();
    assert!(first.fault.is_none(), "{:?}", first.fault);
    assert_ne!(first.decision.reason, "ok for T-1");
    let cost_tier_hash = plugin.content_hash();
    assert_eq!(
        cost_tier_hash,
        sha256_hex(&std::fs::read(guest("cost-tier")).unwrap())
    );
    // Nothing changed on disk: a reload has nothing to do.
    assert!(!plugin.reload().unwrap());

    // Swap in another router: the calls keep the component in force until a reload is asked.
    replace_file(&path, &guest("hostile-guest"));
    let unasked = plugin.route(&ctx, &request).await.unwrap();
    assert_eq!(
        unasked.decision.reason, first.decision.reason,
        "a changed file must not serve before a reload"
    );
    assert_eq!(plugin.content_hash(), cost_tier_hash);
    assert!(plugin.reload().unwrap(), "the new component now serves");
    let second = plugin.route(&ctx, &request).await.unwrap();
    assert_eq!(second.decision.reason, "ok for T-1");
    let hostile_hash = plugin.content_hash();
    assert_eq!(
        hostile_hash,
        sha256_hex(&std::fs::read(guest("hostile-guest")).unwrap())
    );
    assert!(!plugin.reload().unwrap(), "the file is the one loaded");

    // A broken replacement: the reload says why, and the previous one keeps serving.
    std::fs::write(dir.path().join("router.new"), b"\0asm garbage").unwrap();
    std::fs::rename(dir.path().join("router.new"), &path).unwrap();
    let error = plugin.reload().unwrap_err();
    assert!(matches!(error, PluginError::Compile { .. }), "{error}");
    let third = plugin.route(&ctx, &request).await.unwrap();
    assert_eq!(third.decision.reason, "ok for T-1");
    assert_eq!(plugin.content_hash(), hostile_hash);

    // A replacement for the wrong world is refused the same way.
    replace_file(&path, &guest("protected-paths"));
    let error = plugin.reload().unwrap_err();
    assert!(matches!(error, PluginError::Incompatible { .. }), "{error}");
    let fourth = plugin.route(&ctx, &request).await.unwrap();
    assert_eq!(fourth.decision.reason, "ok for T-1");
    assert_eq!(plugin.content_hash(), hostile_hash);

    // A file gone: the same.
    std::fs::remove_file(&path).unwrap();
    let error = plugin.reload().unwrap_err();
    assert!(matches!(error, PluginError::Read { .. }), "{error}");
    assert_eq!(
        plugin.route(&ctx, &request).await.unwrap().decision.reason,
        "ok for T-1"
    );

    // And a good one after that serves once reloaded, not before.
    replace_file(&path, &guest("cost-tier"));
    let unasked = plugin.route(&ctx, &request).await.unwrap();
    assert_eq!(unasked.decision.reason, "ok for T-1");
    assert_eq!(plugin.content_hash(), hostile_hash);
    assert!(plugin.reload().unwrap());
    let fifth = plugin.route(&ctx, &request).await.unwrap();
    assert_eq!(plugin.content_hash(), cost_tier_hash);
    assert_eq!(fifth.decision.reason, first.decision.reason);
}

#[tokio::test]
async fn compiled_components_are_cached_on_disk() {
    let cache = tempfile::tempdir().unwrap();
    let build = || {
        PluginRuntime::builder()
            .cache_dir(Some(cache.path().to_path_buf()))
            .build()
            .unwrap()
    };
    // A copy of the guest, so that the test can change it in place.
    let files = tempfile::tempdir().unwrap();
    let wasm = files.path().join("plugin.wasm");
    std::fs::copy(guest("hostile-guest"), &wasm).unwrap();
    let spec = || {
        let mut spec = hostile("ok");
        spec.path = wasm.clone();
        spec
    };
    let artifacts = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(cache.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
            .collect()
    };
    let first = build().load(spec()).unwrap();
    assert_eq!(
        first.cache_outcome(),
        gaffer::plugin::CacheOutcome::Compiled
    );
    assert_eq!(artifacts().len(), 1);
    // A second runtime (a new process, as far as the cache can tell) loads the artifact.
    let second = build().load(spec()).unwrap();
    assert_eq!(second.cache_outcome(), gaffer::plugin::CacheOutcome::Hit);
    assert_eq!(second.content_hash(), first.content_hash());
    // Cached artifacts are mapped: the components using them go before one is damaged.
    drop((first, second));

    // A corrupt artifact is recompiled, not trusted.
    std::fs::write(&artifacts()[0], b"corrupt").unwrap();
    let third = build().load(spec()).unwrap();
    assert_eq!(
        third.cache_outcome(),
        gaffer::plugin::CacheOutcome::Compiled
    );
    drop(third);

    // The same file changed in place (same path and inode, other bytes) is the other
    // component, not the one cached for the old bytes.
    std::fs::write(&wasm, std::fs::read(guest("cost-tier")).unwrap()).unwrap();
    let mut router = spec();
    router.config_json = "{}".to_string();
    let changed = build().load(router).unwrap();
    assert_eq!(
        changed.cache_outcome(),
        gaffer::plugin::CacheOutcome::Compiled
    );
    let expected = sha256_hex(&std::fs::read(guest("cost-tier")).unwrap());
    assert_eq!(changed.content_hash(), expected);
    serves_next_call(&build()).await;
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The plugins `gaffer.toml` names, read by the one config parser (as a reload reads them).
fn specs_of(config: &std::path::Path) -> Result<PluginSpecs, ConfigError> {
    plugin_specs(&ConfigFile::load(config)?)
}

#[tokio::test]
async fn a_changed_gaffer_toml_takes_effect_only_after_a_reload() {
    use gaffer::plugin::PluginSet;
    let (runtime, _) = runtime();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("plugins")).unwrap();
    std::fs::copy(
        guest("hostile-guest"),
        dir.path().join("plugins/router.wasm"),
    )
    .unwrap();
    let config = dir.path().join("gaffer.toml");
    let write = |mode: &str, extra: &str| {
        std::fs::write(
            &config,
            format!(
                "[project]\ntarget_branch = \"main\"\n\n[plugins.router]\npath = \"plugins/router.wasm\"\n\
                 fallback_model = \"cheap\"\nconfig = {{ mode = \"{mode}\" }}\n{extra}"
            ),
        )
        .unwrap();
    };
    write("ok", "");
    let set = PluginSet::load(runtime, &specs_of(&config).unwrap()).unwrap();
    let route_now = || async {
        let active = set.current();
        let router = active.router.as_ref().expect("a router is configured");
        route(router).await.unwrap()
    };
    let first = route_now().await;
    assert_eq!(first.decision.reason, "ok for T-1");

    // A new plugin config: the calls keep the one in force until a reload is asked.
    write("return-error", "");
    let unasked = route_now().await;
    assert!(unasked.fault.is_none(), "{:?}", unasked.fault);
    assert_eq!(
        unasked.decision.reason, "ok for T-1",
        "a changed gaffer.toml must not serve before a reload"
    );
    set.reload(&specs_of(&config).unwrap()).unwrap();
    let second = route_now().await;
    assert!(
        matches!(second.fault, Some(PluginError::Returned { .. })),
        "{:?}",
        second.fault
    );

    // A broken file: the parser refuses it naming the file and line, there is nothing to
    // reload, and the plugins in force keep serving.
    std::fs::write(&config, "[plugins.router\npath = 3\n").unwrap();
    let error = specs_of(&config).unwrap_err().to_string();
    assert!(error.contains("gaffer.toml:1:"), "{error}");
    let third = route_now().await;
    assert!(matches!(third.fault, Some(PluginError::Returned { .. })));

    // A valid file naming a plugin that does not exist: the reload is refused, saying why,
    // and the plugins in force keep serving.
    write("ok", "fuel_per_call = 5\n");
    std::fs::remove_file(dir.path().join("plugins/router.wasm")).unwrap();
    let error = set.reload(&specs_of(&config).unwrap()).unwrap_err();
    assert!(matches!(error, PluginError::Read { .. }), "{error}");
    let fourth = route_now().await;
    assert!(matches!(fourth.fault, Some(PluginError::Returned { .. })));

    // Fixed: in force once reloaded, not before.
    std::fs::copy(
        guest("hostile-guest"),
        dir.path().join("plugins/router.wasm"),
    )
    .unwrap();
    write("ok", "fuel_per_call = 50000000\n");
    let unasked = route_now().await;
    assert!(matches!(unasked.fault, Some(PluginError::Returned { .. })));
    set.reload(&specs_of(&config).unwrap()).unwrap();
    let fifth = route_now().await;
    assert!(fifth.fault.is_none(), "{:?}", fifth.fault);
    assert_eq!(fifth.decision.reason, "ok for T-1");
    assert_eq!(
        set.current()
            .router
            .as_ref()
            .expect("a router is configured")
            .spec()
            .limits
            .fuel_per_call,
        50_000_000
    );
}

#[tokio::test]
async fn a_broken_gaffer_toml_at_start_is_an_error_naming_the_field() {
    use gaffer::plugin::PluginSet;
    let (runtime, _) = runtime();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gaffer.toml");
    std::fs::write(&config, "[plugins.router]\npath = \"r.wasm\"\nfuel = 3\n").unwrap();
    let error = specs_of(&config).unwrap_err().to_string();
    assert!(error.contains("gaffer.toml:3:"), "{error}");
    assert!(
        error.contains("unknown key `plugins.router.fuel`"),
        "{error}"
    );
    std::fs::write(&config, "[[plugins.hooks]]\npath = \"missing.wasm\"\n").unwrap();
    let error = PluginSet::load(runtime, &specs_of(&config).unwrap()).unwrap_err();
    assert!(matches!(error, PluginError::Read { .. }), "{error}");
}

#[tokio::test]
async fn without_fuel_the_epoch_enforces_the_deadline() {
    use gaffer::plugin::{EngineOptions, Metering};
    let runtime = PluginRuntime::builder()
        .options(EngineOptions {
            metering: Metering {
                fuel: false,
                epoch: true,
            },
            ..EngineOptions::default()
        })
        .cache_dir(Some(support::test_cache_dir()))
        .build()
        .unwrap();
    let mut spec = hostile("spin");
    spec.limits.deadline = Duration::from_millis(150);
    let plugin = runtime.load(spec).unwrap();
    let called = route(&plugin).await.unwrap();
    assert!(
        matches!(called.fault, Some(PluginError::Deadline { .. })),
        "{:?}",
        called.fault
    );
    assert_eq!(
        called.run.fuel_used, 0,
        "no fuel is counted without fuel metering"
    );
}

/// The runtime of the shipped configuration with the given allocator and the test cache.
fn runtime_using(allocator: gaffer::plugin::AllocatorChoice) -> PluginRuntime {
    PluginRuntime::builder()
        .options(gaffer::plugin::EngineOptions {
            allocator,
            ..gaffer::plugin::EngineOptions::default()
        })
        .cache_dir(Some(support::test_cache_dir()))
        .build()
        .expect("runtime builds")
}

/// The pooling allocator where this machine grants its address space, and on-demand.
fn both_allocators() -> Vec<(gaffer::plugin::AllocatorKind, PluginRuntime)> {
    use gaffer::plugin::AllocatorChoice;
    let mut runtimes = vec![runtime_using(AllocatorChoice::OnDemand)];
    let auto = runtime_using(AllocatorChoice::Auto);
    if auto.allocator() == gaffer::plugin::AllocatorKind::Pooling {
        runtimes.push(auto);
    }
    runtimes
        .into_iter()
        .map(|runtime| (runtime.allocator(), runtime))
        .collect()
}

#[tokio::test]
async fn host_calls_that_burn_no_fuel_still_meet_the_deadline() {
    // The plugin hands 32 MiB to `log` in a loop: the copying is the host's work, so the
    // plugin's fuel barely moves and no fuel yield comes. The epoch ends it.
    let (runtime, _) = runtime();
    let mut spec = hostile("log-flood");
    spec.limits.fuel_per_call = u64::MAX / 4;
    spec.limits.deadline = Duration::from_secs(2);
    let plugin = runtime.load(spec).unwrap();
    let called = route(&plugin).await.unwrap();
    assert!(
        matches!(called.fault, Some(PluginError::Deadline { .. })),
        "{:?}",
        called.fault
    );
    // The deadline holds within twice its setting.
    assert!(
        called.run.wall <= Duration::from_secs(4),
        "ran {:?} against a deadline of 2 s",
        called.run.wall
    );
    serves_next_call(&runtime).await;
}

#[tokio::test]
async fn reading_a_fifo_fails_cleanly_and_the_next_call_is_served() {
    let (runtime, _) = runtime();
    let worktree = tempfile::tempdir().unwrap();
    let fifo = worktree.path().join("pipe");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    std::os::unix::fs::symlink("/dev/zero", worktree.path().join("zero")).unwrap();
    let ctx = CallContext::new("T-1", 1).with_worktree(worktree.path());
    for path in ["pipe", "zero"] {
        let mut spec = hostile("read-file").with_config(json!({"mode": "read-file", "path": path}));
        spec.grants.files = true;
        let plugin = runtime.load(spec).unwrap();
        // Opening a FIFO for reading blocks until a writer comes; none ever does here.
        let called = tokio::time::timeout(
            Duration::from_secs(30),
            plugin.route(&ctx, &samples::route_request()),
        )
        .await
        .expect("the read returns instead of hanging")
        .unwrap();
        assert!(called.fault.is_none(), "{:?}", called.fault);
        assert!(
            called.decision.reason.starts_with("read refused:"),
            "{path}: {}",
            called.decision.reason
        );
    }
    serves_next_call(&runtime).await;
}

#[tokio::test]
async fn a_component_with_more_memories_than_allowed_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    // Forty memories of one page each besides the ABI's: tiny, and too many.
    let wasm = support::many_memories_hook(dir.path(), 40, 1);
    for (allocator, runtime) in both_allocators() {
        let mut spec = PluginSpec::new(World::Hook, wasm.clone());
        spec.name = "many-memories".to_string();
        let error = runtime.load(spec).expect_err("refused at load");
        let text = error.to_string();
        assert!(
            text.contains("plugin `many-memories`")
                && text.contains("41 linear memories")
                && text.contains("at most 4"),
            "{allocator:?}: {text}"
        );
    }
}

#[tokio::test]
async fn every_memory_of_an_instance_counts_against_one_cap() {
    let dir = tempfile::tempdir().unwrap();
    // Three memories of 100 MiB besides the ABI's one page: each is under a 256 MiB cap, all
    // together are not.
    let wasm = support::many_memories_hook(dir.path(), 3, 1600);
    let task = samples::task();
    let call = gaffer::plugin::types::ToolCall {
        name: "read_file".to_string(),
        arguments: r#"{"path":"README.md"}"#.to_string(),
    };
    for (allocator, runtime) in both_allocators() {
        let mut spec = PluginSpec::new(World::Hook, wasm.clone());
        spec.name = "three-memories".to_string();
        spec.limits.memory_bytes = 256 * 1024 * 1024;
        let plugin = runtime.load(spec.clone()).unwrap();
        let called = plugin
            .pre_tool(&CallContext::new("T-1", 1), &task, &call)
            .await
            .unwrap();
        match called.fault {
            Some(PluginError::MemoryLimit { requested, cap, .. }) => {
                assert_eq!(cap, 256 * 1024 * 1024, "{allocator:?}");
                // The fourth memory would bring the total to 1 page + 3 × 100 MiB.
                assert_eq!(requested, 65536 + 3 * 1600 * 65536, "{allocator:?}");
            }
            ref other => panic!("{allocator:?}: expected the memory limit, got {other:?}"),
        }
        assert!(
            matches!(
                called.decision,
                gaffer::plugin::types::HookDecision::Deny(_)
            ),
            "{allocator:?}: a hook that faults denies"
        );
        // Control: with room for all of them, the same hook answers (and fills them).
        spec.limits.memory_bytes = 512 * 1024 * 1024;
        let roomy = runtime.load(spec).unwrap();
        let called = roomy
            .pre_tool(&CallContext::new("T-1", 1), &task, &call)
            .await
            .unwrap();
        assert!(called.fault.is_none(), "{allocator:?}: {:?}", called.fault);
        assert_eq!(called.run.memory_bytes, 65536 + 3 * 1600 * 65536);
    }
}

/// One call of `plugin`'s world, as text: the decision and the fault, if any.
async fn decide(plugin: &Plugin) -> String {
    let ctx = CallContext::new("T-1", 1);
    let task = samples::task();
    match plugin.spec().world {
        World::Router => {
            let called = plugin.route(&ctx, &samples::route_request()).await;
            format!("{:?}", called.map(|c| (c.decision, c.fault)))
        }
        World::Verifier => {
            let called = plugin.verify(&ctx, &samples::verify_request()).await;
            format!("{:?}", called.map(|c| (c.decision, c.fault)))
        }
        World::Hook => {
            let pre_tool = plugin.pre_tool(&ctx, &task, &samples::tool_call()).await;
            let on_edit = plugin.on_edit(&ctx, &task, &samples::file_edit()).await;
            let on_diff = plugin.on_diff(&ctx, &task, &samples::diff()).await;
            format!(
                "{:?} {:?} {:?}",
                pre_tool.map(|c| (c.decision, c.fault)),
                on_edit.map(|c| (c.decision, c.fault)),
                on_diff.map(|c| (c.decision, c.fault))
            )
        }
    }
}

/// A runtime that links only the WASI interfaces each component imports (the hook bridge's)
/// loads every guest, in each language, and decides as a runtime with all of WASI linked.
#[tokio::test]
async fn linking_only_the_imported_wasi_decides_as_linking_all_of_it() {
    let (whole, _) = runtime();
    let imported = PluginRuntime::builder()
        .cache_dir(Some(support::test_cache_dir()))
        .wasi_linking(WasiLinking::Imported)
        .build()
        .expect("runtime");
    let mut hostile_ok = hostile("ok");
    hostile_ok.name = "hostile".to_string();
    let mut specs = vec![hostile_ok];
    for (name, world) in [
        ("cost-tier", World::Router),
        ("cascade", World::Router),
        ("tests-and-limits", World::Verifier),
        ("protected-paths", World::Hook),
        ("layer-rules", World::Hook),
        ("file-size", World::Hook),
    ] {
        specs.push(PluginSpec::new(world, guest(name)));
    }
    for lang in [Lang::Python, Lang::Js] {
        specs.push(PluginSpec::new(
            World::Router,
            polyglot_guest(lang, "cost-tier"),
        ));
        specs.push(PluginSpec::new(
            World::Hook,
            polyglot_guest(lang, "protected-paths"),
        ));
    }
    for mut spec in specs {
        spec.fallback_model = Some("cheap".to_string());
        let path = spec.path.display().to_string();
        let all = whole.load(spec.clone()).expect(&path);
        let only = imported.load(spec).expect(&path);
        let (expected, got) = (decide(&all).await, decide(&only).await);
        assert!(!expected.is_empty());
        assert_eq!(got, expected, "{path}");
    }
}
