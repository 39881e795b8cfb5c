#!/usr/bin/env bash
# Set up, build gaffer and its reference plugins, and show them deciding on sample tasks
# inside the sandbox. Needs no API key.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build-plugins.sh
cargo build -p gaffer
target/debug/gaffer demo --plugins target/guests/wasm32-wasip2/plugin "$@"
