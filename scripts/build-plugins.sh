#!/usr/bin/env bash
# Build the WebAssembly plugins from source (nothing built is committed): the Rust reference
# plugins and the test guests, into target/guests/wasm32-wasip2/plugin/, then the Python and
# JavaScript reference plugins, into target/guests/polyglot/.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_TARGET_DIR=target/guests cargo build --target wasm32-wasip2 --profile plugin \
    -p cost-tier -p tests-and-limits -p protected-paths -p layer-rules -p file-size \
    -p model-review -p cascade -p hostile-guest -p hostile-hook "$@"
# triage links cost-tier's rules without cost-tier's `export` feature. Cargo unifies features
# within one build and would also overwrite cost_tier.wasm with the export-less variant, so
# triage builds in a target directory of its own and its component is copied beside the others.
CARGO_TARGET_DIR=target/guests-separate cargo build --target wasm32-wasip2 --profile plugin -p triage "$@"
cp target/guests-separate/wasm32-wasip2/plugin/triage.wasm target/guests/wasm32-wasip2/plugin/triage.wasm
scripts/build-polyglot-plugins.sh
