//! Hot reload under load: micro-batch latency while versions of an operator
//! are swapped in, beside the same job without swaps, and the time from a
//! deployment to its adoption.
//!
//! The job: a generator at a fixed rate through the stateful `counter`
//! component (two workers, a 100 ms batch interval) into a sink that notes,
//! per batch, how long its oldest record waited (from generation to the
//! sink: the batch interval plus processing). One run is steady; in the
//! other the two versions of the counter take turns every 250 ms.
//!
//! Run: `cargo bench -p sluice-tests --bench reload`
//! (`SLUICE_BENCH_SECONDS` sets the length of each run, default 10).

use sluice::exec::Job;
use sluice::spec::SourceConfig;
use sluice::wasm::reload::Outcome;
use sluice::wasm::{Plugin, Runtime};
use sluice_tests::guests;
use std::time::Duration;

const INTERVAL: Duration = Duration::from_millis(100);
const RATE: u64 = 50_000;
/// Batches at the start of a run left out (the instances warm up).
const WARM_UP: usize = 5;

struct Run {
    latencies: Vec<i64>,
    /// Deployment to adoption, per swap.
    adoptions: Vec<Duration>,
    records: u64,
}

async fn run(a: &Plugin, b: &Plugin, seconds: u64, swap_every: Option<Duration>) -> Run {
    let sink = sluice_tests::Waits::default();
    let job = Job::builder("reload-bench")
        .source(SourceConfig::Generator {
            records: None,
            rate: Some(RATE),
            value_size: 100,
            keys: None,
            seed: 1,
        })
        .plugin_operator("counter", a, Vec::new())
        .sink_boxed(Box::new(sink.clone()))
        .workers(2)
        .interval(INTERVAL)
        .build()
        .expect("job");
    let reloader = job.reloader();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(job.run(stop_rx));
    let end = tokio::time::Instant::now() + Duration::from_secs(seconds);
    let mut adoptions = Vec::new();
    let mut next_is_b = true;
    while tokio::time::Instant::now() < end {
        match swap_every {
            None => tokio::time::sleep(Duration::from_millis(100)).await,
            Some(every) => {
                tokio::time::sleep(every).await;
                let plugin = if next_is_b { b } else { a };
                let deployment = reloader.deploy("counter", plugin).expect("deploy");
                match deployment.outcome().await {
                    Outcome::Adopted { after, .. } => adoptions.push(after),
                    Outcome::Refused { reason, .. } => panic!("refused: {reason}"),
                }
                next_is_b = !next_is_b;
            }
        }
    }
    stop_tx.send(true).expect("stop");
    let summary = running.await.expect("job task").expect("job");
    let mut latencies: Vec<i64> = sink.0.lock().unwrap().iter().map(|(_, w)| *w).collect();
    latencies.drain(..WARM_UP.min(latencies.len()));
    Run {
        latencies,
        adoptions,
        records: summary.records_in,
    }
}

fn percentile<T: Copy + Ord>(values: &[T], p: f64) -> T {
    let mut v = values.to_vec();
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let seconds: u64 = std::env::var("SLUICE_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = Runtime::with_cache_dir(Some(dir.path().join("cache"))).expect("runtime");
    let a = sluice_tests::load(&runtime, guests::COUNTER_A);
    let b = sluice_tests::load(&runtime, guests::COUNTER_B);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    let steady = rt.block_on(run(&a, &b, seconds, None));
    let swaps = rt.block_on(run(&a, &b, seconds, Some(Duration::from_millis(250))));

    println!(
        "hot reload: {RATE} records/s through the stateful counter, {} ms batches, 2 workers, {seconds} s per run",
        INTERVAL.as_millis()
    );
    println!(
        "{:<22} {:>8} {:>8} {:>8} {:>8} {:>9}",
        "run", "batches", "p50 ms", "p99 ms", "max ms", "records"
    );
    for (name, r) in [("steady", &steady), ("swap every 250 ms", &swaps)] {
        println!(
            "{:<22} {:>8} {:>8} {:>8} {:>8} {:>9}",
            name,
            r.latencies.len(),
            percentile(&r.latencies, 0.5),
            percentile(&r.latencies, 0.99),
            percentile(&r.latencies, 1.0),
            r.records
        );
    }
    let n = swaps.adoptions.len();
    println!(
        "swaps: {n}; deployment to adoption: median {:.1} ms, max {:.1} ms",
        percentile(&swaps.adoptions, 0.5).as_secs_f64() * 1e3,
        percentile(&swaps.adoptions, 1.0).as_secs_f64() * 1e3,
    );
    let added_p99 = percentile(&swaps.latencies, 0.99) - percentile(&steady.latencies, 0.99);
    let added_max = percentile(&swaps.latencies, 1.0) - percentile(&steady.latencies, 1.0);
    println!(
        "added by swapping: p99 {added_p99} ms, max {added_max} ms = {:.2} batch interval(s) (target: at most 1)",
        added_max as f64 / INTERVAL.as_millis() as f64
    );
}
