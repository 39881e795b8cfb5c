//! The cost-tier routing decision through Extism 1.x, the baseline of gaffer's `route` bench
//! (host/benches/plugin_runtime.rs, `fresh-sandbox/pooling`). The guest is
//! bench/baselines/extism/guest built for wasm32-unknown-unknown (scripts/bench.sh builds it
//! and passes its path in `EXTISM_ROUTE_WASM`). Compiled once; each call sends the request as
//! JSON and reads the decision back as JSON (gaffer's call lowers and lifts the same records
//! through the component model).
//!
//! Limits on, as gaffer ships its own: fuel (`with_fuel_limit`, gaffer's 10⁹ per call), a
//! timeout (`Manifest::with_timeout`, gaffer's 2 s deadline; Extism enforces it with epoch
//! interruption and a timer thread) and a memory cap (`with_memory_max`, gaffer's 128 MiB).
//! No WASI (the plug-in needs none). Extism's compile cache is off: the module is compiled once
//! in the process, outside the timings.
//!
//! - `route-extism/fresh-plugin`: a new `Plugin` from the compiled plug-in for every call (a new
//!   store and instance, as gaffer's fresh sandbox per call).
//! - `route-extism/reused-plugin`: one `Plugin` called again and again (state may persist
//!   between calls; gaffer does not offer this).

use criterion::{Criterion, criterion_group, criterion_main};
use extism::convert::Json;
use extism::{CompiledPlugin, Manifest, Plugin, PluginBuilder, Wasm};
use extism_baseline::cost_tier::{RouteDecision, RouteRequest};
use extism_baseline::{DEADLINE, FUEL_PER_CALL, MAX_PAGES, expected_decision, route_request};

fn compiled() -> CompiledPlugin {
    let wasm = std::env::var("EXTISM_ROUTE_WASM").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../../target/baselines/extism/wasm32-unknown-unknown/plugin/cost_tier_extism.wasm"
        )
        .to_string()
    });
    let bytes = std::fs::read(&wasm)
        .unwrap_or_else(|e| panic!("{wasm}: {e} (scripts/bench.sh --summary builds it)"));
    let manifest = Manifest::new([Wasm::data(bytes)])
        .with_timeout(DEADLINE)
        .with_memory_max(MAX_PAGES)
        .with_config_key("config", "{}");
    PluginBuilder::new(manifest)
        .with_wasi(false)
        .with_fuel_limit(FUEL_PER_CALL)
        .with_cache_disabled()
        .compile()
        .expect("the plug-in compiles")
}

fn call(plugin: &mut Plugin, request: &RouteRequest) -> RouteDecision {
    let Json(decision) = plugin
        .call::<_, Json<RouteDecision>>("route", Json(request))
        .expect("route");
    decision
}

fn bench(c: &mut Criterion) {
    let compiled = compiled();
    let request = route_request();
    let mut reused = Plugin::new_from_compiled(&compiled).expect("plug-in");
    // The same decision as gaffer's cost-tier plugin, to the character.
    assert_eq!(call(&mut reused, &request), expected_decision());
    let mut group = c.benchmark_group("route-extism");
    group.bench_function("fresh-plugin", |b| {
        b.iter(|| {
            call(
                &mut Plugin::new_from_compiled(&compiled).expect("plug-in"),
                &request,
            )
        })
    });
    group.bench_function("reused-plugin", |b| b.iter(|| call(&mut reused, &request)));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
