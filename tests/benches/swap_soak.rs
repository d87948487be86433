//! The swap soak at full size: 1,000 deployments of versions of a stateful
//! counter into a job under load, broken versions among them (one in ten
//! fails after adoption and is rolled back, others fail their probe or are
//! refused at deployment), then a check of every record: each input exactly
//! once, each partition's count unbroken, each partition batch one
//! version's, the one the job's version events name (see
//! `sluice_tests::swap_soak`). The integration test `rollback::swap_soak`
//! runs the same soak with 100 swaps.
//!
//! Run: `cargo bench -p sluice-tests --bench swap_soak`
//! (`SLUICE_SOAK_SWAPS` sets the number of deployments, default 1000).

use sluice_tests::swap_soak::{Soak, run};
use std::time::Duration;

fn main() {
    let swaps = std::env::var("SLUICE_SOAK_SWAPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let soak = Soak {
        swaps,
        rate: 20_000,
        interval: Duration::from_millis(100),
        seed: 1000,
    };
    println!(
        "swap soak: {swaps} deployments, {} records/s, {} ms batches, 2 workers, 4 partitions",
        soak.rate,
        soak.interval.as_millis()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    let report = rt.block_on(run(soak));
    let mut adoptions = report.adoptions.clone();
    adoptions.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "ran {:.0} s: {} records in {} batches, every one written once",
        report.elapsed.as_secs_f64(),
        report.records,
        report.batches
    );
    println!(
        "versions: {} adopted and kept, {} rolled back after adoption, {} refused",
        report.adopted, report.rolled_back, report.refused
    );
    println!(
        "deployment to adoption: median {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        ms(adoptions[adoptions.len() / 2]),
        ms(adoptions[adoptions.len() * 99 / 100]),
        ms(adoptions[adoptions.len() - 1])
    );
    println!("checks passed: each input once, counts unbroken, one version per partition batch");
}
