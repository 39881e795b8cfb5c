#!/usr/bin/env bash
# Build the WebAssembly plugins from source (nothing built is committed): the reference plugins
# and the test guests, into target/guests/wasm32-wasip2/plugin/.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_TARGET_DIR=target/guests cargo build --target wasm32-wasip2 --profile plugin \
    -p cost-tier -p tests-and-limits -p protected-paths -p layer-rules -p file-size \
    -p hostile-guest "$@"
