#!/usr/bin/env bash
# Idempotent set-up of everything gaffer's build, demo and tests need on a fresh machine.
# Both README commands (scripts/demo.sh and scripts/test.sh) start with it; CI reaches it
# through scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

# The toolchain is pinned in rust-toolchain.toml. Automatic toolchain installation is off on
# these machines (RUSTUP_AUTO_INSTALL=0), so install the pinned toolchain's pieces explicitly.
toolchain="$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)"
if ! rustup toolchain list | grep -q "^${toolchain}"; then
    rustup toolchain install "${toolchain}" --profile minimal --component rustfmt,clippy
fi
if ! rustup target list --toolchain "${toolchain}" --installed | grep -qx wasm32-wasip2; then
    rustup target add --toolchain "${toolchain}" wasm32-wasip2
fi
for component in rustfmt clippy; do
    if ! rustup component list --toolchain "${toolchain}" --installed | grep -q "^${component}"; then
        rustup component add --toolchain "${toolchain}" "${component}"
    fi
done

# Headless Chromium for the dashboard's browser test (Debian's package; nothing else uses it).
if ! command -v chromium >/dev/null 2>&1; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        sudo="sudo"
    fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get install -y -q chromium >/dev/null 2>&1 \
        || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q chromium >/dev/null; }
fi
