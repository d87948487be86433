#!/usr/bin/env bash
# Builds the example operators as Wasm components into
# target/guests/wasm32-wasip2/release/ (the same place the tests build them).
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip2 >/dev/null
packages=()
for dir in plugins/*/; do
    packages+=(-p "sluice-plugin-$(basename "$dir")")
done
cargo build --release --target wasm32-wasip2 --target-dir target/guests "${packages[@]}"
