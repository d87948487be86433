//! End-to-end latency at 100 ms batches: every record's wait from its
//! read to its sink written, at 50,000 records/s.
//!
//! A generator makes 100-byte records at a fixed rate, each stamped with
//! the moment it was made (read); they go through the `uppercase` component
//! (two workers, a 100 ms batch interval) into a sink that notes, for every
//! record, the time from that stamp to its write. A record waits for its
//! batch to be cut (up to the interval), then for its processing and the
//! write; the p99 target is 150 ms.
//!
//! Run: `cargo bench -p sluice-tests --bench latency`
//! (`SLUICE_BENCH_SECONDS` sets the run's length, default 20;
//! `SLUICE_BENCH_RATE` the records per second, default 50,000).

use sluice::exec::Job;
use sluice::model::batch::Batch;
use sluice::spec::SourceConfig;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const INTERVAL: Duration = Duration::from_millis(100);
/// The first second is left out (the instances warm up).
const WARM_UP_MS: i64 = 1000;

/// Per record, its wait in milliseconds, counted per millisecond.
#[derive(Clone, Default)]
struct RecordWaits(Arc<Mutex<Vec<u64>>>);

impl sluice::sink::Sink for RecordWaits {
    fn describe(&self) -> String {
        "record waits".into()
    }

    fn write(&mut self, _: u64, parts: &[Batch]) -> std::io::Result<()> {
        let now = sluice::model::time::now_ms();
        let mut counts = self.0.lock().unwrap();
        for ts in parts.iter().flat_map(|p| p.timestamps.iter()) {
            let wait = usize::try_from(now - ts).unwrap_or(0);
            if counts.len() <= wait {
                counts.resize(wait + 1, 0);
            }
            counts[wait] += 1;
        }
        Ok(())
    }
}

/// The smallest wait at or above which the slowest `1 - q` of the records
/// are.
fn quantile(counts: &[u64], q: f64) -> usize {
    let total: u64 = counts.iter().sum();
    let rank = (q * total as f64).ceil() as u64;
    let mut seen = 0;
    for (ms, n) in counts.iter().enumerate() {
        seen += n;
        if seen >= rank.max(1) {
            return ms;
        }
    }
    counts.len().saturating_sub(1)
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let seconds = env("SLUICE_BENCH_SECONDS", 20);
    let rate = env("SLUICE_BENCH_RATE", 50_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().unwrap();
    let runtime = sluice_tests::runtime_in(dir.path());
    let upper = sluice_tests::load(&runtime, sluice_tests::guests::UPPERCASE);
    let waits = RecordWaits::default();
    let job = Job::builder("latency-bench")
        .source(SourceConfig::Generator {
            records: None,
            rate: Some(rate),
            value_size: 100,
            keys: None,
            seed: 1,
        })
        .plugin_operator("upper", &upper, Vec::new())
        .sink_boxed(Box::new(waits.clone()))
        .workers(2)
        .interval(INTERVAL)
        .build()
        .expect("job");
    let stats = job.stats();
    let summary = rt.block_on(async {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let running = tokio::spawn(job.run(stop_rx));
        tokio::time::sleep(Duration::from_millis(WARM_UP_MS as u64)).await;
        waits.0.lock().unwrap().clear();
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        stop_tx.send(true).expect("stop");
        running.await.expect("job task").expect("job")
    });
    let counts = waits.0.lock().unwrap().clone();
    let records: u64 = counts.iter().sum();
    let figures = stats.figures("latency-bench", "finished").expect("figures");
    let processing = figures.meters.processing;
    println!(
        "{records} records in {seconds} s at {rate}/s, 100 ms batches, 2 workers ({} read in all)",
        summary.records_in
    );
    println!(
        "record read -> sink written: p50 {} ms, p99 {} ms, max {} ms (target p99 <= 150 ms)",
        quantile(&counts, 0.5),
        quantile(&counts, 0.99),
        counts.len().saturating_sub(1)
    );
    println!(
        "batch processing: mean {:.1} ms, max {:.1} ms over {} batches",
        processing.sum_s * 1e3 / processing.count.max(1) as f64,
        processing.max_s * 1e3,
        processing.count
    );
}
