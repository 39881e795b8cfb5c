#!/usr/bin/env bash
# Idempotent set-up of everything gaffer's build, demo and tests need on a fresh machine.
# Both README commands (scripts/demo.sh and scripts/test.sh) start with it; CI reaches it
# through scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

# One set-up at a time: the demo and the tests started together on a fresh machine would
# otherwise both install the same tools into the same folders (pip into one virtual
# environment, npm into one node_modules) and break each other's half-written files. The
# second waits, then finds everything in place. The lock is released when this script exits.
mkdir -p .tools
exec 9>.tools/setup.lock
if ! flock --wait 1800 9; then
    echo "setup: another scripts/setup.sh has held .tools/setup.lock for 30 minutes; giving up" >&2
    exit 1
fi

# The toolchain is pinned in rust-toolchain.toml. Automatic toolchain installation is off on
# these machines (RUSTUP_AUTO_INSTALL=0), so install the pinned toolchain's pieces explicitly.
toolchain="$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)"
if ! rustup toolchain list | grep -q "^${toolchain}"; then
    rustup toolchain install "${toolchain}" --profile minimal --component rustfmt,clippy
fi
# wasm32-wasip2 for plugins that use WASI (the test guests); wasm32-unknown-unknown for the
# reference plugins, which need none (scripts/build-plugins.sh says why).
for target in wasm32-wasip2 wasm32-unknown-unknown; do
    if ! rustup target list --toolchain "${toolchain}" --installed | grep -qx "${target}"; then
        rustup target add --toolchain "${toolchain}" "${target}"
    fi
done
for component in rustfmt clippy; do
    if ! rustup component list --toolchain "${toolchain}" --installed | grep -q "^${component}"; then
        rustup component add --toolchain "${toolchain}" "${component}"
    fi
done

# Debian packages: bubblewrap makes the namespaces of the sandbox every agent command runs in;
# headless Chromium drives the dashboard's browser test (nothing else uses it); PostgreSQL's
# server programs (initdb, postgres) let the tests of the PostgreSQL store start throwaway
# servers of their own, on Unix sockets only (tests/support/postgres.rs). Nothing here creates
# or starts a cluster (Debian's package may set up and start its own `main`; no test uses it).
missing=()
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
if [ "${#missing[@]}" -gt 0 ]; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        sudo="sudo"
    fi
    export DEBIAN_FRONTEND=noninteractive
    # Something else may be installing at the same time (another checkout's set-up, the
    # machine's own upgrades): wait for dpkg's lock rather than fail on it.
    apt=(apt-get -o DPkg::Lock::Timeout=900 -y -q)
    $sudo "${apt[@]}" install "${missing[@]}" >/dev/null 2>&1 \
        || { $sudo "${apt[@]}" update >/dev/null && $sudo "${apt[@]}" install "${missing[@]}" >/dev/null; }
fi

# Python plugins: componentize-py (PyPI), pinned, in a virtual environment of the project's own
# (.tools/python, ignored by git) so that nothing is installed into the machine's Python.
componentize_py_version="0.25.1"
python_tools=".tools/python"
if ! "${python_tools}/bin/componentize-py" --version 2>/dev/null | grep -qx "componentize-py ${componentize_py_version}"; then
    python3 -m venv "${python_tools}"
    "${python_tools}/bin/pip" install --quiet --disable-pip-version-check \
        "componentize-py==${componentize_py_version}"
fi

# JavaScript plugins: jco (npm), which builds components with its QuickJS backend
# (componentize-qjs). Versions are pinned by plugins/js/package-lock.json; `npm ci` runs again
# only when the lock file changed since the last install.
js_stamp="plugins/js/node_modules/.gaffer-lock-sha256"
js_lock_sum="$(sha256sum plugins/js/package-lock.json | cut -d' ' -f1)"
if [ ! -x plugins/js/node_modules/.bin/jco ] || [ "$(cat "${js_stamp}" 2>/dev/null)" != "${js_lock_sum}" ]; then
    (cd plugins/js && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    echo "${js_lock_sum}" > "${js_stamp}"
fi

# Claude Code and Codex CLI (npm), which gaffer drives as implementer agents. Pinned by
# tools/agents/package-lock.json and installed into that folder (node_modules, ignored by git),
# never globally; each package's native binary comes from the platform's optional dependency
# (node_modules/.bin/claude, node_modules/.bin/codex). `npm ci` runs again only when the lock
# file changed since the last install or a binary is missing.
agents_stamp="tools/agents/node_modules/.gaffer-lock-sha256"
agents_lock_sum="$(sha256sum tools/agents/package-lock.json | cut -d' ' -f1)"
if [ ! -x tools/agents/node_modules/.bin/claude ] || [ ! -x tools/agents/node_modules/.bin/codex ] \
    || [ "$(cat "${agents_stamp}" 2>/dev/null)" != "${agents_lock_sum}" ]; then
    (cd tools/agents && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    echo "${agents_lock_sum}" > "${agents_stamp}"
fi
