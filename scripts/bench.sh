#!/usr/bin/env bash
# The criterion benchmarks: the plugin runtime, the gateway, the pipeline's own overhead per
# task (release build; figures in the README). Backtraces off: capturing
# one per trap distorts timings.
#
#   scripts/bench.sh [CRITERION ARGS...]            every bench
#   scripts/bench.sh --summary [CRITERION ARGS...]  the four comparisons, one table
#
# --summary runs only the benches of the four comparisons (bench/summary.py names them) and the
# Extism baseline, which it builds from bench/baselines/extism, a cargo workspace of its own
# outside gaffer's (its wasmtime never enters gaffer's build), into target/baselines/extism.
# Then it prints figure, baseline(s), ratio or time added, and the aim, from this run's results
# in target/criterion; a bench that did not run or failed shows as "not measured". Arguments
# after --summary go to every criterion run (e.g. --warm-up-time 1 --measurement-time 3).
set -euo pipefail
cd "$(dirname "$0")/.."
summary=false
if [ "${1:-}" = "--summary" ]; then
    summary=true
    shift
fi
scripts/setup.sh
scripts/build-plugins.sh
# `gaffer-hook` as it ships (statically linked), for the claude_code bench.
GAFFER_HOOK_BIN="$(scripts/build-hook.sh --release)"
export GAFFER_HOOK_BIN
if ! "${summary}"; then
    RUST_BACKTRACE=0 cargo bench -p gaffer -- "$@"
    exit
fi

root="${PWD}"
export CARGO_INCREMENTAL=0 RUST_BACKTRACE=0 CRITERION_HOME="${root}/target/criterion"
extism_target="${root}/target/baselines/extism"
(cd bench/baselines/extism && CARGO_TARGET_DIR="${extism_target}" cargo build --locked \
    -p cost-tier-extism --target wasm32-unknown-unknown --profile plugin)

since="$(date +%s)"
failed=()
for bench in pipeline claude_code plugin_runtime gateway; do
    cargo bench -p gaffer --bench "${bench}" -- "$(python3 bench/summary.py filter "${bench}")" "$@" \
        || failed+=("${bench}")
done
(cd bench/baselines/extism && CARGO_TARGET_DIR="${extism_target}" \
    EXTISM_ROUTE_WASM="${extism_target}/wasm32-unknown-unknown/plugin/cost_tier_extism.wasm" \
    cargo bench --locked -p extism-baseline -- "$@") || failed+=("extism baseline")

echo
python3 bench/summary.py table --since "${since}" "${CRITERION_HOME}"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "failed: ${failed[*]}" >&2
    exit 1
fi
