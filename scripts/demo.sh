#!/usr/bin/env bash
# Set up, build gaffer and its reference plugins, and run the whole pipeline offline on a
# sample repository against scripted models (a simulation; no API key). Arguments go to
# `gaffer demo`: a directory for the sample repository, `--models gaffer.toml` to run it with
# real models, `--plugins-only` to see the reference plugins decide on sample inputs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build-plugins.sh
cargo build -p gaffer
target/debug/gaffer demo --plugins target/guests/wasm32-wasip2/plugin "$@"
