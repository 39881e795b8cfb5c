#!/bin/sh
# Build the plugin into ./plugin.wasm (a WebAssembly component of the `{{world}}` world).
# Needs Rust with the wasm32-wasip2 target: `rustup target add wasm32-wasip2`.
set -eu
cd "$(dirname "$0")"
# The library's file name: the [package] name of Cargo.toml, with `-` as `_`.
lib="{{lib}}"
target_dir="${CARGO_TARGET_DIR:-target}"
cargo build --target wasm32-wasip2 --release
cp "${target_dir}/wasm32-wasip2/release/${lib}.wasm" plugin.wasm
echo "built plugin.wasm"
