#!/bin/sh
# Build the plugin into ./plugin.wasm (a WebAssembly component of the `{{world}}` world).
# Needs componentize-py 0.25.1 (`pip install componentize-py==0.25.1`); set COMPONENTIZE_PY to
# use one that is not on PATH.
set -eu
cd "$(dirname "$0")"
if [ -z "${COMPONENTIZE_PY:-}" ] && ! command -v componentize-py >/dev/null 2>&1; then
    echo "build.sh: componentize-py is not on PATH; \`pip install componentize-py==0.25.1\` (or set COMPONENTIZE_PY)" >&2
    exit 1
fi
${COMPONENTIZE_PY:-componentize-py} -d wit -w {{world}} componentize app -o plugin.wasm
