#!/bin/sh
# Build the plugin into ./plugin.wasm (a WebAssembly component of the `{{world}}` world).
# Run `npm install` once first (it installs jco 1.35.0 into node_modules); set JCO to use
# another jco command.
set -eu
cd "$(dirname "$0")"
if [ -z "${JCO:-}" ] && [ ! -x node_modules/.bin/jco ]; then
    echo "build.sh: jco is not installed here; run \`npm install\` first (or set JCO)" >&2
    exit 1
fi
${JCO:-npx --no-install jco} componentize app.js -w wit -n {{world}} \
    --backend quickjs --backend-qjs-disable-async -o plugin.wasm
