#!/usr/bin/env bash
# The criterion benchmarks: the plugin runtime, the gateway, the pipeline's own overhead per
# task (release build; figures in the README). Backtraces off: capturing
# one per trap distorts timings.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build-plugins.sh
RUST_BACKTRACE=0 cargo bench -p gaffer -- "$@"
