#!/usr/bin/env bash
# Sluice's checkpoint store against fjall and redb: 1 M keys, 30 checkpoints
# of 1% changes each. A standalone crate (benches/state-store, outside the
# workspace, so CI never builds fjall or redb), built in release into
# target/state-store. The first build compiles wasmtime: several minutes.
#
#   benches/state-store.sh [--keys N] [--checkpoints N] [--changed N]
#                          [--deletes N] [--seed N] [--dir DIR]
#                          [--stores sluice,fjall,redb]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export CARGO_TARGET_DIR="$root/target/state-store"
# Under the repo's target/, on the repo's filesystem (not a tmpfs /tmp).
work="$root/target/state-store/work"
cmd=(cargo run --release --quiet --manifest-path "$root/benches/state-store/Cargo.toml" -- --dir "$work" "$@")
echo "## run"
echo "script:      benches/state-store.sh $*"
echo "build & run: CARGO_TARGET_DIR=$CARGO_TARGET_DIR ${cmd[*]}"
echo "commit:      $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$root" diff --quiet 2>/dev/null || echo ' (dirty)')"
echo "toolchain:   $(rustc -V)"
mkdir -p "$work"
echo "df:          $(df -hT "$work" | tail -1)"
echo
exec "${cmd[@]}"
