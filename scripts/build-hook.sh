#!/usr/bin/env bash
# Build `gaffer-hook` as it ships: a static position-independent executable (glibc linked in,
# address-space layout randomisation kept), in target/<profile>/static/gaffer-hook, and print
# its path.
#
#   scripts/build-hook.sh [--release]
#
# Claude Code starts one `gaffer-hook` per tool call, so the process's start is part of every
# event. Dynamically linked, the loader maps libc, libm and libgcc_s, looks up their symbols and
# runs their initialisers before `main`; linked statically none of that happens: 1.8024 ms per
# event against 2.7302 ms linked dynamically, in one criterion run (README, Benchmarks). Cargo
# has no per-binary `crt-static`, so this links the one binary again with `cargo rustc`,
# reusing every other artefact of the build; the copy keeps it from being replaced when cargo
# next links the dynamic one into target/<profile>/gaffer-hook. Where static linking is not
# possible (not Linux with glibc), the dynamic binary is copied instead, and the script says so.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=debug
release=()
case "${1:-}" in
    --release)
        profile=release
        release=(--release)
        ;;
    "") ;;
    *)
        echo "usage: scripts/build-hook.sh [--release]" >&2
        exit 2
        ;;
esac
out="target/${profile}/static"
mkdir -p "${out}"
host="$(rustc -vV | sed -n 's/^host: //p')"
if [[ "${host}" == *-linux-gnu ]]; then
    # The build script's link arguments for gaffer-hook (packed relative relocations) still
    # apply; glibc's static start-up applies DT_RELR itself (2.36 and later).
    cargo rustc --quiet --locked "${release[@]}" -p gaffer --bin gaffer-hook \
        -- -C target-feature=+crt-static
else
    echo "build-hook: ${host} links gaffer-hook dynamically" >&2
    cargo build --quiet --locked "${release[@]}" -p gaffer --bin gaffer-hook
fi
cp "target/${profile}/gaffer-hook" "${out}/gaffer-hook.tmp"
mv "${out}/gaffer-hook.tmp" "${out}/gaffer-hook"
echo "${PWD}/${out}/gaffer-hook"
