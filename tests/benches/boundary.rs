//! The cost of the Wasm boundary: the same operators as Wasm components in
//! the host and as native code (the plugin crates linked directly, run by the
//! SDK's native harness on the same columnar batches), side by side in one
//! run, at several batch sizes.
//!
//! Both sides receive their own copy of each input batch (the native harness
//! clones it, the host copies it into the guest's memory) and produce a new
//! output batch, as a pipeline stage would.
//!
//! Then `uppercase` in every language the SDKs offer, at batch 1024: each
//! example is built with `sluice plugin build` (its toolchain must be
//! installed: `bash scripts/toolchains.sh all`), and the table gives its
//! size, its first compile, its start from the compiled-component cache and
//! its speed against the native twin and the Rust component.
//!
//! Run: `cargo bench -p sluice-tests --bench boundary`
//! (set `SLUICE_BENCH_RECORDS` to change the records per measurement,
//! `SLUICE_BENCH_LANGUAGES=0` to leave the languages out).

use sluice::model::batch::Batch;
use sluice::operators::Operator;
use sluice::source::Generator;
use sluice::wasm::{LogTags, Runtime, WasmOperator};
use sluice_sdk::testing::Harness;
use sluice_tests::guests;
use std::hint::black_box;
use std::time::{Duration, Instant};

const BATCH_SIZES: [usize; 4] = [1, 64, 1024, 8192];
const VALUE_SIZE: usize = 100;
/// The filter keeps records containing this (about one in six).
const PATTERN: &str = "QU";

fn batches(size: usize, total: usize) -> Vec<Batch> {
    let g = Generator::new(42, VALUE_SIZE, None);
    let n_batches = total.div_ceil(size).min(4096.max(1_000_000 / size)).max(1);
    let distinct = n_batches.min(64);
    (0..distinct)
        .map(|b| {
            let mut batch = Batch::new();
            for i in 0..size {
                g.record((b * size + i) as u64, 0, &mut batch);
            }
            batch
        })
        .collect()
}

/// Repetitions of each measurement; the best is reported, which filters out
/// interference from the rest of the machine.
const REPEATS: usize = 5;

/// One way of running a batch through a pipeline: returns the records out.
type Run<'a> = &'a mut dyn FnMut(&mut Batch) -> usize;

/// Runs each of `runs` over the batches (cycling) until `total / REPEATS`
/// records went through, one after the other, `REPEATS` rounds; returns each
/// one's best records per second. Taking turns round by round puts every
/// side under the same conditions of the machine (a neighbour's load, the
/// memory bus), which measuring one side and then the other would not.
fn side_by_side(input: &mut [Batch], total: usize, runs: &mut [Run]) -> Vec<f64> {
    // Warm up: caches, allocator, lazily compiled paths.
    for f in runs.iter_mut() {
        for b in input.iter_mut().take(8) {
            black_box(f(b));
        }
    }
    let size = input[0].len();
    let rounds = (total / REPEATS).div_ceil(size);
    let mut best = vec![0f64; runs.len()];
    for _ in 0..REPEATS {
        for (f, best) in runs.iter_mut().zip(&mut best) {
            let started = Instant::now();
            let mut kept = 0;
            for i in 0..rounds {
                let n = input.len();
                kept += f(&mut input[i % n]);
            }
            let secs = started.elapsed().as_secs_f64();
            black_box(kept);
            *best = best.max((rounds * size) as f64 / secs);
        }
    }
    best
}

fn wasm(runtime: &Runtime, path: &str, config: &[(&str, &str)]) -> WasmOperator {
    let plugin = runtime.load(path.as_ref()).expect("load plugin");
    let tags = LogTags {
        job: "bench".into(),
        operator: path.into(),
        worker: 0,
    };
    let config: Vec<(String, String)> = config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    plugin.instantiate(tags, &config).expect("instantiate")
}

fn main() {
    // Both sides on the allocator settings `sluice` runs with.
    sluice::exec::tune_allocator();
    let total: usize = std::env::var("SLUICE_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let cache = tempfile::tempdir().expect("temp dir");
    // As `sluice run` compiles a job without `cpu_per_batch`: no deadline
    // checks in the guest code (`SLUICE_BENCH_DEADLINES=1` measures with them).
    let deadlines = std::env::var("SLUICE_BENCH_DEADLINES").is_ok_and(|v| v == "1");
    let runtime =
        Runtime::with_options(Some(cache.path().to_path_buf()), deadlines).expect("engine");

    println!(
        "Wasm boundary benchmark: {VALUE_SIZE}-byte records, one core, {total} records per measurement, deadline checks {}",
        if deadlines { "on" } else { "off" }
    );
    println!(
        "{:<18} {:>6} {:>14} {:>14} {:>12}",
        "pipeline", "batch", "native rec/s", "wasm rec/s", "wasm/native"
    );
    let started = Instant::now();
    for pipeline in ["uppercase", "filter", "uppercase+filter", "split-words"] {
        for size in BATCH_SIZES {
            // Per-record calls are slow by design; fewer of them keep the run short.
            let total = if size == 1 { total / 10 } else { total };
            let mut input = batches(size, total);
            let rps = match pipeline {
                "uppercase" => {
                    let mut up = Harness::<sluice_plugin_uppercase::Uppercase>::new(&[]).unwrap();
                    let mut w = wasm(&runtime, guests::UPPERCASE, &[]);
                    side_by_side(
                        &mut input,
                        total,
                        &mut [&mut |b| up.run(b).unwrap().len(), &mut |b| {
                            w.process(b).unwrap().len()
                        }],
                    )
                }
                "filter" => {
                    let mut grep =
                        Harness::<sluice_plugin_grep::Grep>::new(&[("pattern", PATTERN)]).unwrap();
                    let mut w = wasm(&runtime, guests::GREP, &[("pattern", PATTERN)]);
                    side_by_side(
                        &mut input,
                        total,
                        &mut [&mut |b| grep.run(b).unwrap().len(), &mut |b| {
                            w.process(b).unwrap().len()
                        }],
                    )
                }
                "uppercase+filter" => {
                    let mut up = Harness::<sluice_plugin_uppercase::Uppercase>::new(&[]).unwrap();
                    let mut grep =
                        Harness::<sluice_plugin_grep::Grep>::new(&[("pattern", PATTERN)]).unwrap();
                    let mut wup = wasm(&runtime, guests::UPPERCASE, &[]);
                    let mut wgrep = wasm(&runtime, guests::GREP, &[("pattern", PATTERN)]);
                    side_by_side(
                        &mut input,
                        total,
                        &mut [
                            &mut |b| grep.run_owned(up.run(b).unwrap()).unwrap().len(),
                            &mut |b| wgrep.process(&mut wup.process(b).unwrap()).unwrap().len(),
                        ],
                    )
                }
                _ => {
                    let mut split =
                        Harness::<sluice_plugin_split_words::SplitWords>::new(&[]).unwrap();
                    let mut w = wasm(&runtime, guests::SPLIT_WORDS, &[]);
                    side_by_side(
                        &mut input,
                        total,
                        &mut [&mut |b| split.run(b).unwrap().len(), &mut |b| {
                            w.process(b).unwrap().len()
                        }],
                    )
                }
            };
            let (native, wasm_rps) = (rps[0], rps[1]);
            println!(
                "{pipeline:<18} {size:>6} {:>14} {:>14} {:>11.2}x",
                human(native),
                human(wasm_rps),
                native / wasm_rps
            );
        }
    }
    println!(
        "(wasm/native = how many times longer the Wasm component takes; target <= 1.3x at batch 1024)"
    );
    if std::env::var("SLUICE_BENCH_LANGUAGES").map_or(true, |v| v != "0") {
        languages(total, deadlines);
    }
    println!(
        "total {:.1?}",
        Duration::from_secs_f64(started.elapsed().as_secs_f64())
    );
}

/// `uppercase` in every language at batch 1024, against the native twin and
/// the Rust component.
fn languages(total: usize, deadlines: bool) {
    const SIZE: usize = 1024;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut input = batches(SIZE, total);
    // Build and load every component first, then measure them all side by
    // side with the native twin.
    let mut rows = Vec::new();
    for lang in ["rust", "c", "go", "js", "python"] {
        let path = if lang == "rust" {
            std::path::PathBuf::from(guests::UPPERCASE)
        } else {
            let dir = root
                .join("plugin-sdk")
                .join(lang)
                .join("examples/uppercase");
            let builder = Runtime::with_cache_dir(None).expect("engine");
            match sluice::cli::plugin::build::build(&dir, &builder) {
                Ok(built) => built.path,
                Err(e) => {
                    println!("{lang:<8} not built: {e}");
                    continue;
                }
            }
        };
        let size = std::fs::metadata(&path).expect("component").len();
        // First compile into an empty cache, then a start from it, as a
        // second `sluice run` of the same component does.
        let cache = tempfile::tempdir().expect("temp dir");
        let started = Instant::now();
        Runtime::with_options(Some(cache.path().to_path_buf()), deadlines)
            .expect("engine")
            .load(&path)
            .expect("load");
        let first = started.elapsed();
        let runtime =
            Runtime::with_options(Some(cache.path().to_path_buf()), deadlines).expect("engine");
        let started = Instant::now();
        let op = wasm(&runtime, path.to_str().unwrap(), &[]);
        let cached = started.elapsed();
        rows.push((lang, size, first, cached, op));
    }
    let mut up = Harness::<sluice_plugin_uppercase::Uppercase>::new(&[]).unwrap();
    let rps = {
        let mut native = |b: &mut Batch| up.run(b).unwrap().len();
        let mut components: Vec<_> = rows
            .iter_mut()
            .map(|(.., op)| |b: &mut Batch| op.process(b).unwrap().len())
            .collect();
        let mut runs: Vec<Run> = vec![&mut native];
        runs.extend(components.iter_mut().map(|f| f as Run));
        side_by_side(&mut input, total, &mut runs)
    };
    let native = rps[0];
    println!();
    println!(
        "uppercase in every language, batch {SIZE}, native twin {}/s (measured side by side)",
        human(native)
    );
    println!(
        "{:<8} {:>10} {:>14} {:>13} {:>12} {:>12} {:>10}",
        "language",
        "size",
        "first compile",
        "cached start",
        "wasm rec/s",
        "wasm/native",
        "wasm/rust"
    );
    let rust = rps[1];
    for ((lang, size, first, cached, _), rps) in rows.iter().zip(&rps[1..]) {
        println!(
            "{lang:<8} {:>7.0} KB {:>12.2} s {:>10.1} ms {:>12} {:>11.2}x {:>9.2}x",
            *size as f64 / 1024.0,
            first.as_secs_f64(),
            cached.as_secs_f64() * 1e3,
            human(*rps),
            native / rps,
            rust / rps
        );
    }
    println!(
        "(wasm/rust = how many times longer than the Rust component; compiled languages: target <= 1.5x)"
    );
}

fn human(rps: f64) -> String {
    if rps >= 1e6 {
        format!("{:.2} M", rps / 1e6)
    } else {
        format!("{:.0} K", rps / 1e3)
    }
}
