#!/usr/bin/env bash
# What checkpoints cost and how fast a job recovers, measured side by side
# in one run (release build, 2 workers):
#
#   1. word count: generator (values of ~20 words from a 1,000-word
#      vocabulary) -> split-words (Wasm) -> running count per word -> discard;
#   2. windowed count over 1 M keys: generator (keys key-0..key-999999) ->
#      count per key in 1 h tumbling windows -> discard (processing time:
#      with short windows a slower run would close more windows than a
#      faster one and do more work; in an hour-long window every run does
#      the same, and each 10 s checkpoint still writes nearly every key);
#
# each without checkpoints, with a checkpoint every batch and every 10 s:
# throughput (and its ratio to the run without checkpoints), checkpoints
# taken, their average size and time. Then
#
#   3. recovery: a running count over 1 M keys, checkpointed every 2 s, is
#      killed (SIGKILL) and restarted: the time from the kill to the first
#      output batch of the restarted process, and the time to load the state.
#
#   bash benches/checkpoint.sh            # SLUICE_BENCH_RECORDS scales the runs
set -euo pipefail
cd "$(dirname "$0")/.."
records="${SLUICE_BENCH_RECORDS:-24000000}"
work=target/bench-checkpoint
rm -rf "$work"
mkdir -p "$work"
bash scripts/build-plugins.sh >/dev/null
cargo build --release -q -p sluice-host
bin=target/release/sluice
split="../guests/wasm32-wasip2/release/sluice_plugin_split_words.wasm"

job() { # name, source, operators, checkpoint table
    cat > "$work/$1.toml" <<TOML
name = "$1"
workers = 2
[batch]
interval = "200ms"
max_records = 100000
$2
$3
[[sinks]]
kind = "discard"
$4
TOML
}

wordcount_ops="[[operators]]
name = \"split\"
plugin = \"$split\"
[[operators]]
name = \"count\"
builtin = \"aggregate\"
config = { function = \"count\" }"
windows_ops="[[operators]]
name = \"count\"
builtin = \"aggregate\"
config = { function = \"count\", window = \"tumbling\", length = \"1h\", time = \"processing\" }"
gen_words="[[sources]]
kind = \"generator\"
records = $records
value_size = 120"
gen_keys="[[sources]]
kind = \"generator\"
records = $((records * 2))
value_size = 8
keys = 1000000"

run() { # name -> summary line
    rm -rf "$work/state-$1"
    "$bin" run --quiet "$work/$1.toml" 2>&1 | grep "job \`$1\` finished"
}

echo "records: word count $records (about $((records * 20)) words), windows $((records * 2)); $(nproc) cores" >&2
results=()
for kind in wordcount windows; do
    if [ $kind = wordcount ]; then src=$gen_words; ops=$wordcount_ops; else src=$gen_keys; ops=$windows_ops; fi
    for mode in none every-batch every-10s; do
        case $mode in
            none) ck="" ;;
            every-batch) ck="[checkpoint]
path = \"state-$kind-$mode\"
every_batches = 1" ;;
            every-10s) ck="[checkpoint]
path = \"state-$kind-$mode\"
interval = \"10s\"" ;;
        esac
        job "$kind-$mode" "$src" "$ops" "$ck"
        rm -rf "$work/state-$kind-$mode"
        line=$("$bin" run --quiet "$work/$kind-$mode.toml" 2>&1 | grep "job \`$kind-$mode\` finished")
        echo "$kind $mode: $line" >&2
        results+=("$kind|$mode|$line")
    done
done
python3 - "${results[@]}" <<'PY'
import re, sys
rows = [a.split("|", 2) for a in sys.argv[1:]]
base = {}
print(f"{'job':10} {'checkpoints':12} {'records/s':>12} {'vs none':>8} {'taken':>6} {'avg size':>10} {'avg time':>9}")
for kind, mode, line in rows:
    rate = float(re.search(r"\(([0-9.]+) records/s", line).group(1))
    m = re.search(r"(\d+) checkpoint\(s\), ([0-9.]+) MB, ([0-9.]+) ms each", line)
    n, mb, ms = (int(m.group(1)), float(m.group(2)), float(m.group(3))) if m else (0, 0.0, 0.0)
    base.setdefault(kind, rate)
    size = f"{mb / n:.2f} MB" if n else "-"
    took = f"{ms:.1f} ms" if n else "-"
    print(f"{kind:10} {mode:12} {rate:12.0f} {rate / base[kind]:8.2f} {n:6} {size:>10} {took:>9}")
PY

# 3. Recovery of 1 M keys.
cat > "$work/recover.toml" <<TOML
name = "recover"
workers = 2
[batch]
interval = "200ms"
max_records = 100000
[[sources]]
kind = "generator"
records = 100000000
rate = 1000000
value_size = 8
keys = 1000000
[[operators]]
name = "count"
builtin = "aggregate"
config = { function = "count" }
[[sinks]]
kind = "directory"
path = "recover-out"
[checkpoint]
path = "state-recover"
interval = "2s"
TOML
python3 - "$bin" "$work" <<'PY'
import os, signal, subprocess, sys, time
bin, work = sys.argv[1], sys.argv[2]
job = os.path.join(work, "recover.toml")
out = os.path.join(work, "recover-out")
state = os.path.join(work, "state-recover")
p = subprocess.Popen([bin, "run", "--quiet", job], stderr=subprocess.DEVNULL)
# 8 s at 1 M records/s: the state holds nearly every one of the 1 M keys,
# and checkpoints of it exist.
time.sleep(8)
p.send_signal(signal.SIGKILL)
p.wait()
killed = time.time()
sizes = sorted(os.path.getsize(os.path.join(state, f)) for f in os.listdir(state))
restarted = time.time()
q = subprocess.Popen([bin, "run", "--quiet", job], stderr=subprocess.PIPE, text=True)
first = None
while first is None and time.time() - restarted < 60:
    for f in os.listdir(out):
        path = os.path.join(out, f)
        try:
            if f.endswith(".jsonl") and os.path.getmtime(path) >= restarted:
                first = time.time()
                break
        except FileNotFoundError:
            pass  # removed by the resume (written after the checkpoint)
    time.sleep(0.005)
q.send_signal(signal.SIGTERM)
try:
    _, err = q.communicate(timeout=60)
except subprocess.TimeoutExpired:
    q.kill()
    _, err = q.communicate()
print(f"recovery: checkpoint files {len(sizes)}, largest {sizes[-1] / 1e6:.1f} MB")
if first is None:
    print("recovery: no output within 60 s\n" + err)
    sys.exit(1)
print(f"recovery: SIGKILL to the restarted process's first output batch: {first - killed:.2f} s (target <= 2 s)")
PY
