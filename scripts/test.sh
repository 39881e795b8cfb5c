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
cargo test --workspace --all-targets
cargo test --workspace --doc
