//! Hot reload of a large state: how long a swap of a stateful operator
//! holding 1, 10 and 100 MB takes, seen from the job.
//!
//! The job: a generator at 20,000 records/s through the `ballast` fixture
//! (one worker, one partition, 100 ms batches), whose state is a block of
//! the set size. After a warm-up, the same component is deployed five times
//! per size; each swap hands the state over: a `snapshot` between batches,
//! a fresh instance given it (`restore`) on a thread of its own, then the
//! probe batch. The sink notes, per batch, how long its oldest record
//! waited (generation to sink: the batch interval plus processing); a
//! swap's cost is the worst wait above the median of the batches without a
//! swap, over every batch from the deployment to the one after adoption.
//! The target: at most one batch interval, for 100 MB too.
//!
//! Run: `cargo bench -p sluice-tests --bench state_swap`

use sluice::exec::Job;
use sluice::spec::SourceConfig;
use sluice::wasm::Runtime;
use sluice::wasm::reload::Outcome;
use sluice_tests::guests;
use std::time::{Duration, Instant};

const INTERVAL: Duration = Duration::from_millis(100);
const RATE: u64 = 20_000;
const SWAPS: usize = 5;

struct Measured {
    /// Per swap, its worst batch's wait above the steady median, in ms.
    added: Vec<i64>,
    /// Per swap, from the deployment to the adoption.
    decided: Vec<Duration>,
    steady_median: i64,
}

async fn measure(runtime: &Runtime, bytes: usize) -> Measured {
    let ballast = sluice_tests::load(runtime, guests::BALLAST);
    let sink = sluice_tests::Waits::default();
    let job = Job::builder("state-swap")
        .source(SourceConfig::Generator {
            records: None,
            rate: Some(RATE),
            value_size: 100,
            keys: None,
            seed: 1,
        })
        .plugin_operator(
            "ballast",
            &ballast,
            vec![("state_bytes".into(), bytes.to_string())],
        )
        .sink_boxed(Box::new(sink.clone()))
        .workers(1)
        .partitions(1)
        .interval(INTERVAL)
        .build()
        .expect("job");
    let reloader = job.reloader();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(job.run(stop_rx));
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The batches each swap may touch: from the one written last before the
    // deployment to the first one after its adoption.
    let mut swapped = Vec::new();
    let mut decided = Vec::new();
    for _ in 0..SWAPS {
        let started = Instant::now();
        let last_written = sink.0.lock().unwrap().last().map_or(0, |(b, _)| *b);
        let deployment = reloader.deploy("ballast", &ballast).expect("deploy");
        match deployment.outcome().await {
            Outcome::Adopted { batch, .. } => {
                decided.push(started.elapsed());
                swapped.push(last_written..=batch + 1);
            }
            Outcome::Refused { reason, .. } => panic!("a swap of {bytes} bytes refused: {reason}"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    stop_tx.send(true).expect("stop");
    running.await.expect("job task").expect("job");
    let waits = sink.0.lock().unwrap().clone();
    let touched = |b: u64| swapped.iter().any(|s| s.contains(&b));
    // Leave out the first batches, which warm the instance up (and make the
    // state).
    let mut steady: Vec<i64> = waits
        .iter()
        .skip(5)
        .filter(|(b, _)| !touched(*b))
        .map(|(_, w)| *w)
        .collect();
    steady.sort_unstable();
    let steady_median = steady[steady.len() / 2];
    let added = swapped
        .iter()
        .map(|s| {
            waits
                .iter()
                .filter(|(b, _)| s.contains(b))
                .map(|(_, w)| w - steady_median)
                .max()
                .unwrap_or(0)
        })
        .collect();
    Measured {
        added,
        decided,
        steady_median,
    }
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = Runtime::with_cache_dir(Some(dir.path().join("cache"))).expect("runtime");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    println!(
        "swap of a stateful operator: {RATE} records/s, {} ms batches, 1 partition, {SWAPS} swaps per size",
        INTERVAL.as_millis()
    );
    println!(
        "{:>7} {:>12} {:>14} {:>14} {:>18}",
        "state", "steady ms", "added med ms", "added max ms", "deploy→adopt ms"
    );
    for mb in [1usize, 10, 100] {
        let m = rt.block_on(measure(&runtime, mb * 1_000_000));
        let mut added = m.added.clone();
        added.sort_unstable();
        let mut decided = m.decided.clone();
        decided.sort();
        println!(
            "{:>4} MB {:>12} {:>14} {:>14} {:>18.0}",
            mb,
            m.steady_median,
            added[added.len() / 2],
            added[added.len() - 1],
            decided[decided.len() / 2].as_secs_f64() * 1e3
        );
    }
    println!(
        "target: the added wait of a swap at most one batch interval ({} ms)",
        INTERVAL.as_millis()
    );
}
