#!/usr/bin/env bash
# Builds everything (Wasm plugins, the release `sluice` binary) and runs the
# word-count demo job.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build-plugins.sh
cargo build --release -p sluice-host
for plugin in target/guests/wasm32-wasip2/release/sluice_plugin_*.wasm; do
    # `sed` reads all the output: `head` would close the pipe while
    # `sluice` still writes the imports line.
    target/release/sluice plugin check "$plugin" | sed -n 1p
done
target/release/sluice run examples/wordcount.toml
echo "all counts: target/wordcount.jsonl"
