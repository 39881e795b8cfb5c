#!/usr/bin/env bash
# Set up, build gaffer and its reference plugins, and run the whole pipeline offline on a
# sample repository against scripted models (a simulation; no API key). Arguments go to
# `gaffer demo`: a directory for the sample repository, `--models gaffer.toml` to run it with
# real models, `--implementer claude-code` to have Claude Code (installed by the set-up into
# tools/agents) implement every task through gaffer's metering proxy, `--plugins-only` to see
# the reference plugins decide on sample inputs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build-plugins.sh
cargo build -p gaffer
PATH="$PWD/tools/agents/node_modules/.bin:$PATH" target/debug/gaffer demo --plugins target/guests/wasm32-unknown-unknown/plugin "$@"
