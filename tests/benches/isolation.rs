//! Isolation between jobs of one process: the throughput of a well-behaved
//! job (the `split-words` component over a file of 100-byte lines, one
//! worker) alone, and while a hostile job on the same runtime keeps
//! breaching its limits — an operator that loops until its 200 ms deadline,
//! one that allocates until its 64 MiB limit, and both in turn — with
//! `on_breach = "skip"`, so that it goes on attacking. Prints records/s and
//! the ratio to the job alone.
//!
//! Run: `cargo bench -p sluice-tests --bench isolation`
//! (set `SLUICE_BENCH_RECORDS` to change the good job's records per run).

use sluice::exec::Job;
use sluice::exec::SkipCount;
use sluice::model::batch::Batch;
use sluice::source::Generator;
use sluice::spec::limits::{Limits, OnBreach};
use sluice::spec::{SinkConfig, SourceConfig};
use sluice::wasm::{Plugin, Runtime};
use sluice_tests::guests;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Runs of the good job per measurement; the best is reported.
const REPEATS: usize = 3;

/// Writes `records` lines of about 100 bytes of generated words to a file
/// in `dir`.
fn write_input(dir: &Path, records: u64) -> PathBuf {
    let path = dir.join("good.txt");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).expect("create input"));
    let generator = Generator::new(1, 100, None);
    let mut batch = Batch::new();
    for i in 0..records {
        generator.record(i, 0, &mut batch);
        if batch.len() == 10_000 || i + 1 == records {
            for r in batch.iter() {
                file.write_all(r.value).expect("write input");
                file.write_all(b"\n").expect("write input");
            }
            batch = Batch::new();
        }
    }
    file.flush().expect("write input");
    path
}

/// The well-behaved job: the lines of `input` through `split-words`.
fn good_job(plugin: &Plugin, input: &Path) -> Job {
    Job::builder("good")
        .source(SourceConfig::File {
            path: input.to_path_buf(),
        })
        .operator(plugin.factory("split", vec![]))
        .sink(SinkConfig::Discard {})
        .workers(1)
        .max_records(20_000)
        .build()
        .expect("good job")
}

/// A hostile job whose records are `attacks`, repeated, one per batch.
fn hostile_job(plugin: &Plugin, dir: &Path, attacks: &[&str]) -> Job {
    let input = dir.join(format!("{}.txt", attacks.join("-")));
    let lines: Vec<&str> = attacks.iter().copied().cycle().take(2_000).collect();
    std::fs::write(&input, lines.join("\n")).expect("write hostile input");
    Job::builder("hostile")
        .source(SourceConfig::File { path: input })
        .operator(plugin.factory("hostile", vec![]))
        .sink(SinkConfig::Discard {})
        .workers(1)
        .max_records(1)
        .limits(Limits {
            memory: 64 << 20,
            cpu_per_batch: Some(Duration::from_millis(200)),
            output_ratio: Some(10.0),
            on_breach: OnBreach::Skip,
            ..Limits::default()
        })
        .build()
        .expect("hostile job")
}

/// Records per second of one run of the good job over `input`, which holds
/// `records` lines.
async fn run_good(plugin: &Plugin, input: &Path, records: u64) -> f64 {
    let started = Instant::now();
    let summary = good_job(plugin, input)
        .run_to_end()
        .await
        .expect("the good job failed");
    assert_eq!(summary.records_in, records, "the good job lost records");
    records as f64 / started.elapsed().as_secs_f64()
}

/// The best of [`REPEATS`] runs of the good job, alone.
async fn alone(plugin: &Plugin, input: &Path, records: u64) -> f64 {
    let mut best = 0f64;
    for _ in 0..REPEATS {
        best = best.max(run_good(plugin, input, records).await);
    }
    best
}

/// The best of [`REPEATS`] runs of the good job while the hostile job
/// attacks; also the number of attacks the hostile job made meanwhile.
async fn beside(
    good: &Plugin,
    hostile: &Plugin,
    dir: &Path,
    attacks: &[&str],
    input: &Path,
    records: u64,
) -> (f64, u64) {
    let job = hostile_job(hostile, dir, attacks);
    let skipped: SkipCount = job.skip_count();
    let attacker = tokio::spawn(job.run_to_end());
    // Let the hostile job start attacking first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = skipped.get();
    let mut best = 0f64;
    for _ in 0..REPEATS {
        best = best.max(run_good(good, input, records).await);
    }
    let attacks_made = skipped.get() - before;
    assert!(
        !attacker.is_finished(),
        "the hostile job ended before the measurement did"
    );
    attacker.abort();
    let _ = attacker.await;
    (best, attacks_made)
}

fn main() {
    let records: u64 = std::env::var("SLUICE_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = Runtime::with_cache_dir(Some(dir.path().join("cache"))).expect("engine");
    let split = runtime
        .load(guests::SPLIT_WORDS.as_ref())
        .expect("load split-words");
    let input = write_input(dir.path(), records);
    let hostile = runtime
        .load(guests::HOSTILE.as_ref())
        .expect("load hostile");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("async runtime");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "Isolation benchmark: the good job ({records} records of 100 bytes through `split-words`, 1 worker) \
         alone and beside a hostile job (1 worker, on_breach = \"skip\"), {cores} core(s), best of {REPEATS}"
    );
    let started = Instant::now();
    rt.block_on(async {
        println!(
            "{:<28} {:>14} {:>14} {:>7} {:>8}",
            "beside", "alone rec/s", "beside rec/s", "ratio", "attacks"
        );
        // Each ratio is taken against runs alone just before, so that a
        // change in the machine's load between phases does not skew it.
        for (name, attacks) in [
            ("an infinite loop (200ms)", &["LOOP"][..]),
            ("a memory bomb (64MiB)", &["BOMB"][..]),
            ("loop and bomb in turn", &["LOOP", "BOMB"][..]),
        ] {
            let base = alone(&split, &input, records).await;
            let (rps, made) = beside(&split, &hostile, dir.path(), attacks, &input, records).await;
            println!(
                "{name:<28} {base:>14.0} {rps:>14.0} {:>7.2} {made:>8}",
                rps / base
            );
        }
    });
    println!("(took {:.1}s)", started.elapsed().as_secs_f64());
}
