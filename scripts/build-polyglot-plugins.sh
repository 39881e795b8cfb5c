#!/usr/bin/env bash
# Build the Python and JavaScript reference plugins from source into target/guests/polyglot/:
# Python with componentize-py, JavaScript with jco's QuickJS backend (both installed by
# scripts/setup.sh). A component newer than its source and the WIT is left as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
out="${root}/target/guests/polyglot"
wit="${root}/wit/0.1.0"
componentize_py="${root}/.tools/python/bin/componentize-py"
jco="${root}/plugins/js/node_modules/.bin/jco"
for tool in "${componentize_py}" "${jco}"; do
    if [ ! -x "${tool}" ]; then
        echo "build-polyglot-plugins: ${tool} is missing; run scripts/setup.sh first" >&2
        exit 1
    fi
done
mkdir -p "${out}/python" "${out}/js"

# up_to_date OUTPUT DIR EXT: the output exists and is newer than every source of its language
# (a plugin may import the shared modules beside it) and every WIT file.
up_to_date() {
    [ -f "$1" ] || return 1
    for f in "$2"/*."$3" "${wit}"/*.wit; do
        [ "$1" -nt "${f}" ] || return 1
    done
}

# module:world
for plugin in cost_tier:router protected_paths:hook; do
    module="${plugin%%:*}"
    world="${plugin##*:}"
    target="${out}/python/${module}.wasm"
    if ! up_to_date "${target}" plugins/python py; then
        "${componentize_py}" -d "${wit}" -w "${world}" componentize "${module}" \
            -p plugins/python -o "${target}.tmp" >/dev/null
        mv "${target}.tmp" "${target}"
    fi
done

# file:world (jco resolves the WIT path relative to the working directory)
for plugin in cost-tier:router protected-paths:hook; do
    name="${plugin%%:*}"
    world="${plugin##*:}"
    target="${out}/js/${name}.wasm"
    if ! up_to_date "${target}" plugins/js js; then
        (cd plugins/js && "${jco}" componentize "${name}.js" -w ../../wit/0.1.0 -n "${world}" \
            --backend quickjs --backend-qjs-disable-async -o "${target}.tmp" >/dev/null)
        mv "${target}.tmp" "${target}"
    fi
done
