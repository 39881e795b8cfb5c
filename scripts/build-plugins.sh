#!/usr/bin/env bash
# Build the WebAssembly plugins from source (nothing built is committed): the Rust reference
# plugins into target/guests/wasm32-unknown-unknown/plugin/, the test guests into
# target/guests/wasm32-wasip2/plugin/, then the Python and JavaScript reference plugins, into
# target/guests/polyglot/.
#
# The reference plugins use no WASI (they reach the world only through gaffer's own `host`
# interface), so they are built for wasm32-unknown-unknown and linked into components by the
# toolchain's wasm-component-ld: a component with no WASI imports links and instantiates
# faster (cost-tier's route call 10.8 µs against 12.0–12.3 µs built for wasm32-wasip2, and a
# `gaffer-hook` event about 0.15 ms sooner; README, Benchmarks). The test guests stay on
# wasm32-wasip2: they exercise what a plugin with WASI can reach. host/build.rs and
# tests/support/mod.rs build the same way (keep the three in step).
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-component-ld CARGO_TARGET_DIR=target/guests \
    cargo build --target wasm32-unknown-unknown --profile plugin \
    -p cost-tier -p tests-and-limits -p protected-paths -p layer-rules -p file-size \
    -p model-review -p cascade -p panicking-router "$@"
CARGO_TARGET_DIR=target/guests cargo build --target wasm32-wasip2 --profile plugin \
    -p hostile-guest -p hostile-hook "$@"
# triage links cost-tier's rules without cost-tier's `export` feature. Cargo unifies features
# within one build and would also overwrite cost_tier.wasm with the export-less variant, so
# triage builds in a target directory of its own and its component is copied beside the others.
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-component-ld CARGO_TARGET_DIR=target/guests-separate \
    cargo build --target wasm32-unknown-unknown --profile plugin -p triage "$@"
cp target/guests-separate/wasm32-unknown-unknown/plugin/triage.wasm \
    target/guests/wasm32-unknown-unknown/plugin/triage.wasm
scripts/build-polyglot-plugins.sh
