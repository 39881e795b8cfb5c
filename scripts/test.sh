#!/usr/bin/env bash
# Every test: set-up, the plugins built from source, unit and end-to-end tests of the whole
# workspace (benchmarks run once each as tests, so they cannot rot), doc examples, formatting.
set -euo pipefail
cd "$(dirname "$0")/.."
# A full run gains nothing from incremental artefacts (gigabytes of them); a developer's own
# `cargo test` keeps them.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
scripts/setup.sh
scripts/build-plugins.sh
cargo fmt --all -- --check
# The bridge's end-to-end tests run `gaffer-hook` as it ships (statically linked), not only as
# cargo links it for the tests (tests/claude_code.rs reads GAFFER_HOOK_BIN).
GAFFER_HOOK_BIN="$(scripts/build-hook.sh)"
export GAFFER_HOOK_BIN
cargo test --workspace --all-targets
cargo test --workspace --doc
