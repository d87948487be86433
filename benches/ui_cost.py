"""What watching a job costs: the word-count benchmark's job run with
`--ui` (its dashboard and /metrics polled four times a second, four times as
often as the dashboard does) and without, alternately, in one run; with
`SLUICE_BASELINE=/path/to/sluice` (a build from before the meters) also
that binary, so the meters' own cost is measured too.

    python3 benches/ui_cost.py [LINES] [ROUNDS]

Uses the corpus `benches/wordcount.sh` makes (made here if missing) and the
release binary (built first). Per variant it prints the median wall time
(the job's own figure) and the median CPU time of the process (user +
system, which scheduling noise on a shared machine disturbs less), and the
median over rounds of each round's ratio to the plain run; the target is
within 3%.
"""
import os
import re
import resource
import socket
import statistics
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

root = Path(__file__).resolve().parent.parent
lines = int(sys.argv[1]) if len(sys.argv) > 1 else 6_000_000
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 9
work = root / "target/bench-wordcount"
corpus = work / "corpus" / f"corpus-{lines}.txt"
if not corpus.exists():
    corpus.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, str(root / "benches/gen_corpus.py"), str(corpus), str(lines)], check=True)
subprocess.run(["bash", "scripts/build-plugins.sh"], cwd=root, check=True, stdout=subprocess.DEVNULL)
subprocess.run(["cargo", "build", "--release", "-q", "-p", "sluice-host"], cwd=root, check=True)
job = work / "ui-cost.toml"
job.write_text(f"""name = "bench-wordcount"
workers = 2
[batch]
max_records = 200000
[[sources]]
kind = "file"
path = "corpus/{corpus.name}"
[[operators]]
name = "split"
plugin = "../guests/wasm32-wasip2/release/sluice_plugin_split_words.wasm"
[[operators]]
name = "count"
builtin = "aggregate"
config = {{ function = "count" }}
[[sinks]]
kind = "discard"
""")
sluice = str(root / "target/release/sluice")
baseline = os.environ.get("SLUICE_BASELINE")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def poll(base, stop, counts):
    """Reads the dashboard's figures and the metrics, four times a second."""
    while not stop.is_set():
        for path in ("/metrics", "/v1/jobs/bench-wordcount/dashboard"):
            try:
                with urllib.request.urlopen(base + path, timeout=2) as r:
                    r.read()
                counts[path] = counts.get(path, 0) + 1
            except OSError:
                pass
        stop.wait(0.25)


def run(variant):
    binary = baseline if variant == "before" else sluice
    args = [binary, "run", "--quiet", str(job)]
    stop, counts, poller = threading.Event(), {}, None
    if variant == "--ui":
        port = free_port()
        args[2:2] = ["--ui", f"127.0.0.1:{port}"]
        poller = threading.Thread(target=poll, args=(f"http://127.0.0.1:{port}", stop, counts))
        poller.start()
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(args, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    stop.set()
    if poller:
        poller.join()
    summary = re.search(r"finished: .* in ([0-9.]+)s", out.stderr)
    if out.returncode != 0 or not summary:
        sys.exit(f"sluice failed: {out.stderr}")
    cpu = (after.ru_utime - used.ru_utime) + (after.ru_stime - used.ru_stime)
    return float(summary.group(1)), cpu, sum(counts.values())


variants = (["before"] if baseline else []) + ["plain", "--ui"]
wall = {v: [] for v in variants}
cpu = {v: [] for v in variants}
words = lines * 10
for i in range(rounds):
    for v in variants:
        secs, used, polled = run(v)
        wall[v].append(secs)
        cpu[v].append(used)
        note = f", polled {polled} times" if v == "--ui" else ""
        print(f"round {i + 1} {v:6}: {secs:.2f} s ({words / secs / 1e6:.1f} M words/s), cpu {used:.2f} s{note}",
              file=sys.stderr)


def ratio(figures, v):
    return statistics.median(a / b for a, b in zip(figures[v], figures["plain"]))


for v in variants:
    line = f"{v:6}: wall {statistics.median(wall[v]):.2f} s, cpu {statistics.median(cpu[v]):.2f} s"
    if v != "plain":
        line += (f"; vs plain: wall {100 * (ratio(wall, v) - 1):+.1f}%, "
                 f"cpu {100 * (ratio(cpu, v) - 1):+.1f}% (median of the rounds' ratios)")
    print(line)
print("target: --ui within 3% of plain")
