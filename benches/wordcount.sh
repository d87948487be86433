#!/usr/bin/env bash
# Word count of a generated corpus (2,000,000 lines of 10 words from a
# 10,000-word vocabulary, about 140 MB): Sluice (file source -> split-words
# Wasm operator -> keyed count -> discard sink, 2 workers) and, in the same
# run, its native twin (the same split rule and count in plain Rust on 2
# threads, the file's read included: the ceiling) and PySpark Structured
# Streaming on the same file (local[2]). Prints words/s for each, Sluice's
# share of the twin and the ratio to PySpark. Needs Java 17 and
# `pip install pyspark==4.0.1` for the Spark half (skipped with a message
# when pyspark is missing).
#
#   bash benches/wordcount.sh [lines]
set -euo pipefail
cd "$(dirname "$0")/.."
lines="${1:-2000000}"
words=$((lines * 10))
work=target/bench-wordcount
mkdir -p "$work/corpus"
corpus="$work/corpus/corpus-$lines.txt"
if [ ! -f "$corpus" ]; then
    echo "generating $corpus ..." >&2
    find "$work/corpus" -name 'corpus-*.txt' -delete
    python3 benches/gen_corpus.py "$corpus.tmp" "$lines"
    mv "$corpus.tmp" "$corpus"
fi
echo "corpus: $lines lines, $words words, $(du -h "$corpus" | cut -f1)" >&2

bash scripts/build-plugins.sh >/dev/null
cargo build --release -q -p sluice-host
cargo build --release -q -p sluice-tests --bin wordcount-native
cat > "$work/job.toml" <<TOML
name = "bench-wordcount"
workers = 2
[batch]
max_records = 200000
[[sources]]
kind = "file"
path = "corpus/$(basename "$corpus")"
[[operators]]
name = "split"
plugin = "../guests/wasm32-wasip2/release/sluice_plugin_split_words.wasm"
[[operators]]
name = "count"
builtin = "aggregate"
config = { function = "count" }
[[sinks]]
kind = "discard"
TOML
summary=$(target/release/sluice run --quiet "$work/job.toml" 2>&1 | grep "job \`bench-wordcount\` finished")
echo "sluice: $summary" >&2
sluice_secs=$(echo "$summary" | sed -E 's/.* in ([0-9.]+)s .*/\1/')
sluice_wps=$(python3 -c "print($words / $sluice_secs)")
# The native twin: the same split rule and the same count, on 2 threads.
native=$(target/release/wordcount-native "$corpus" 2)
native_wps=$(python3 -c "import json; n = json.loads('$native'); assert n['words'] == $words, n; print(n['words'] / n['seconds'])")
printf 'native : %6.2f M words/s (plain Rust, 2 threads, read included); sluice is %.2f of it\n' \
    "$(python3 -c "print($native_wps / 1e6)")" "$(python3 -c "print($sluice_wps / $native_wps)")"

if ! python3 -c "import pyspark" 2>/dev/null; then
    printf 'sluice: %.2f M words/s; pyspark is not installed (pip install pyspark==4.0.1), no ratio\n' \
        "$(python3 -c "print($sluice_wps / 1e6)")"
    exit 0
fi
spark=$(SPARK_LOCAL_IP=127.0.0.1 python3 benches/wordcount_spark.py "$work/corpus" "$words" 2>/dev/null | tail -1)
spark_wps=$(python3 -c "import json; print(json.loads('$spark')['words_per_second'])")
python3 - "$sluice_wps" "$spark_wps" "$sluice_secs" "$spark" <<'PY'
import json, sys
sluice, spark = float(sys.argv[1]), float(sys.argv[2])
spark_secs = json.loads(sys.argv[4])["seconds"]
print(f"sluice : {sluice / 1e6:6.2f} M words/s ({float(sys.argv[3]):.2f} s)")
print(f"pyspark: {spark / 1e6:6.2f} M words/s ({spark_secs:.2f} s of processing, start-up excluded)")
print(f"ratio  : {sluice / spark:.1f}x (target >= 20x)")
PY
