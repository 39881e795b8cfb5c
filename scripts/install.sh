#!/usr/bin/env bash
# Install gaffer's three binaries as they ship into DIR (default: cargo's own bin directory,
# ${CARGO_HOME:-~/.cargo}/bin): `gaffer`, `gaffer-sandbox` (the sandbox's init, which `gaffer`
# looks for beside itself) and `gaffer-hook` linked statically (scripts/build-hook.sh), which
# starts faster at every Claude Code tool call than the dynamically linked one that
# `cargo install --path host` would install.
#
#   scripts/install.sh [DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-${CARGO_HOME:-${HOME}/.cargo}/bin}"
# gaffer-hook is linked by build-hook.sh alone (statically), not twice.
cargo build --locked --release -p gaffer --bin gaffer --bin gaffer-sandbox
hook="$(scripts/build-hook.sh --release)"
mkdir -p "${dir}"
install -m 755 target/release/gaffer target/release/gaffer-sandbox "${dir}/"
install -m 755 "${hook}" "${dir}/gaffer-hook"
echo "installed gaffer, gaffer-sandbox and gaffer-hook in ${dir}"
