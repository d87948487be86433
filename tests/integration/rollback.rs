//! Hot reload past adoption: a version that fails within its rollback
//! window hands the job back to the version it replaced, with nothing lost
//! or repeated; after the window a failure follows the job's error policy;
//! reducers swap with their accumulators; states past `max_state` are
//! refused without harm to the running one; and a soak of 100 swaps.

use sluice::exec::Job;
use sluice::model::batch::Batch;
use sluice::sink::Sink;
use sluice::spec::limits::Limits;
use sluice::spec::{ReduceMode, RollbackWindow, SourceConfig};
use sluice::wasm::reload::{DeployError, Outcome};
use sluice_tests::swap_soak::{
    self, BatchLog, Soak, VALUE_SIZE, assert_each_input_once, assert_versions,
};
use sluice_tests::{guests, load};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn generator(rate: u64, seed: u64) -> SourceConfig {
    SourceConfig::Generator {
        records: None,
        rate: Some(rate),
        value_size: VALUE_SIZE,
        keys: None,
        seed,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_that_fails_after_adoption_is_rolled_back_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = sluice_tests::runtime_in(dir.path());
    let a = load(&runtime, guests::COUNTER_A);
    let late = load(&runtime, guests::COUNTER_LATE);
    let log = BatchLog::default();
    let job = Job::builder("rollback")
        .source(generator(4000, 11))
        .plugin_operator("counter", &a, Vec::new())
        .sink_boxed(Box::new(log.clone()))
        .workers(2)
        .partitions(2)
        .interval(Duration::from_millis(50))
        .rollback_window(RollbackWindow::Batches(20))
        .build()
        .unwrap();
    let reloader = job.reloader();
    let stats = job.stats();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(job.run(stop_rx));
    tokio::time::sleep(Duration::from_millis(300)).await;

    let deployment = reloader.deploy("counter", &late).expect("deploy");
    let (outcome, window) = tokio::time::timeout(Duration::from_secs(30), deployment.decided())
        .await
        .expect("an outcome");
    let Outcome::Adopted { batch: first, .. } = outcome else {
        panic!("the late version passes its probe: {outcome:?}");
    };
    let rolled = tokio::time::timeout(Duration::from_secs(30), window.closed())
        .await
        .expect("the window closes")
        .expect("the version is rolled back");
    assert!(
        rolled.reason.contains("breaks after 6 batches"),
        "{rolled:?}"
    );
    assert_eq!(reloader.current_version("counter"), Some(1));
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop_tx.send(true).unwrap();
    let summary = running
        .await
        .unwrap()
        .expect("the job goes on after the rollback");

    let events = stats.snapshot().versions;
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events[0].adopted && events[0].batch == first);
    assert!(
        events[1].rolled_back && !events[1].adopted,
        "{:?}",
        events[1]
    );
    assert!(
        events[1].detail.contains("rolled back to version 1"),
        "{:?}",
        events[1]
    );
    let failed = events[1].batch;
    assert_eq!(failed, rolled.batch);
    assert!(
        (first..first + 20).contains(&failed),
        "the failure at batch {failed} falls in the window from batch {first}"
    );

    // Version a, then the late one from its first batch, a again after
    // the batch it failed on (in which it ran the partitions where it did
    // not fail).
    let batches = log.0.lock().unwrap().clone();
    let changes = [
        (0, "a", None),
        (first, "late", None),
        (failed, "late", Some("a")),
        (failed + 1, "a", None),
    ];
    let lines = assert_versions(&batches, &changes, 11, summary.records_in, 2);
    assert!(lines.get("late").is_some_and(|n| *n > 0), "{lines:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_its_window_a_failing_version_meets_the_error_policy() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = sluice_tests::runtime_in(dir.path());
    let a = load(&runtime, guests::COUNTER_A);
    let late = load(&runtime, guests::COUNTER_LATE);
    let job = Job::builder("no-rollback")
        .source(generator(4000, 12))
        .plugin_operator("counter", &a, Vec::new())
        .sink_boxed(Box::new(BatchLog::default()))
        .workers(1)
        .partitions(1)
        .interval(Duration::from_millis(50))
        .rollback_window(RollbackWindow::Batches(1))
        .build()
        .unwrap();
    let reloader = job.reloader();
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(job.run(stop_rx));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (outcome, window) = reloader.deploy("counter", &late).unwrap().decided().await;
    assert!(matches!(outcome, Outcome::Adopted { .. }), "{outcome:?}");
    assert_eq!(
        window.closed().await,
        None,
        "kept once its one batch passed"
    );
    let error = tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("the job ends")
        .unwrap()
        .expect_err("a trap without a dead-letter file stops the job");
    assert!(
        error.to_string().contains("breaks after 6 batches"),
        "{error}"
    );
}

/// `(key, value)` of every record written.
#[derive(Clone, Default)]
struct KeyedLog(Arc<Mutex<Vec<(String, String)>>>);

impl Sink for KeyedLog {
    fn describe(&self) -> String {
        "keyed log".into()
    }

    fn write(&mut self, _batch_no: u64, parts: &[Batch]) -> std::io::Result<()> {
        let mut rows = self.0.lock().unwrap();
        for r in parts.iter().flat_map(|p| p.iter()) {
            let text = |b: &[u8]| String::from_utf8(b.to_vec()).expect("utf-8");
            rows.push((text(r.key.expect("keyed")), text(r.value)));
        }
        Ok(())
    }
}

/// A reducer swapped twice, the second time for a version that counts
/// instead of summing and traps on `BOOM`: the accumulators carry over at
/// every swap, and after the rollback the summing version, brought up to
/// date over the batches it missed, holds every key's true total.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reducer_swaps_with_its_accumulators_and_rolls_back_to_true_totals() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = sluice_tests::runtime_in(dir.path());
    let split = load(&runtime, guests::SPLIT_WORDS);
    let sum = load(&runtime, guests::SUM);
    let count_or_trap = load(&runtime, guests::REDUCE_TRAP);
    let upper = load(&runtime, guests::UPPERCASE);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let rows = KeyedLog::default();
    let dead = dir.path().join("dead.jsonl");
    let job = Job::builder("reducer-swaps")
        .source(SourceConfig::Socket { address })
        .plugin_operator("split", &split, Vec::new())
        .reducer_operator("total", &sum, Vec::new(), ReduceMode::Update)
        .sink_boxed(Box::new(rows.clone()))
        .dead_letter(&dead)
        .workers(2)
        .partitions(2)
        .interval(Duration::from_millis(50))
        .rollback_window(RollbackWindow::Batches(1000))
        .build()
        .unwrap();
    let reloader = job.reloader();
    assert_eq!(reloader.operators(), ["split", "total"]);
    let stats = job.stats();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(job.run(stop_rx));

    // The input: rounds of `1 2 ... 20` every 10 ms, and one `BOOM 5` when asked.
    let sending = Arc::new(AtomicBool::new(true));
    let boom = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicU64::new(0));
    let sender = {
        let (sending, boom, rounds) = (sending.clone(), boom.clone(), rounds.clone());
        std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            let round: String = (1..=20).map(|k| format!("{k} ")).collect();
            let mut boomed = false;
            loop {
                let last = !sending.load(Ordering::SeqCst);
                writeln!(socket, "{round}").unwrap();
                rounds.fetch_add(1, Ordering::SeqCst);
                if boom.load(Ordering::SeqCst) && !boomed {
                    writeln!(socket, "BOOM 5").unwrap();
                    boomed = true;
                }
                if last {
                    return boomed;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let decided = |d: sluice::wasm::reload::Deployment| async move {
        tokio::time::timeout(Duration::from_secs(30), d.decided())
            .await
            .expect("an outcome")
    };
    let (outcome, _) = decided(reloader.deploy("total", &sum).unwrap()).await;
    assert!(matches!(outcome, Outcome::Adopted { .. }), "{outcome:?}");
    match reloader.deploy("total", &upper) {
        Err(DeployError::Refused { reason, .. }) => assert!(
            reason.contains("`transform` world; a `reducer` operator needs `reduce`"),
            "{reason}"
        ),
        other => panic!("expected a refusal, got {:?}", other.map(|d| d.version)),
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let counting = reloader.deploy("total", &count_or_trap).unwrap();
    let counting_version = counting.version;
    let (outcome, window) = decided(counting).await;
    assert!(matches!(outcome, Outcome::Adopted { .. }), "{outcome:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    boom.store(true, Ordering::SeqCst);
    let rolled = tokio::time::timeout(Duration::from_secs(30), window.closed())
        .await
        .expect("the window closes")
        .expect("the counting version is rolled back");
    assert!(
        rolled.reason.contains("BOOM among the values"),
        "{rolled:?}"
    );
    assert_eq!(reloader.current_version("total"), Some(2));
    tokio::time::sleep(Duration::from_millis(200)).await;
    sending.store(false, Ordering::SeqCst);
    assert!(sender.join().unwrap(), "BOOM was sent");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let _ = stop_tx.send(true);
    running
        .await
        .unwrap()
        .expect("the job runs through the swaps");

    // The last value of each key is its total over every round, plus the 5
    // of the `BOOM 5` line.
    let rounds = rounds.load(Ordering::SeqCst) as i64;
    let last: BTreeMap<String, String> = rows.0.lock().unwrap().iter().cloned().collect();
    for k in 1..=20i64 {
        let want = k * rounds + if k == 5 { 5 } else { 0 };
        assert_eq!(
            last.get(&k.to_string()).map(String::as_str),
            Some(want.to_string().as_str()),
            "key {k}: the summing version holds the total of all {rounds} rounds"
        );
    }
    // `BOOM` is no integer: the summing version rejected it.
    let dead_rows = crate::read_jsonl(&dead);
    assert_eq!(dead_rows.len(), 1, "{dead_rows:?}");
    assert_eq!(dead_rows[0]["value"], "BOOM");
    let events = stats.snapshot().versions;
    let rolled: Vec<_> = events.iter().filter(|e| e.rolled_back).collect();
    assert_eq!(rolled.len(), 1, "{events:?}");
    assert_eq!(rolled[0].version, counting_version);
}

/// A job's output through the `ballast` fixture: per partition, the counts
/// (`value|count`) must run 1, 2, 3, ... and every input appear once.
fn assert_ballast_counts(log: &BatchLog, seed: u64, records: u64) {
    let mut inputs: HashMap<String, u32> = HashMap::new();
    let mut counts = Vec::new();
    for (_, values) in log.0.lock().unwrap().iter() {
        for v in values {
            let (input, count) = v.rsplit_once('|').expect("value|count");
            *inputs.entry(input.to_string()).or_default() += 1;
            counts.push(count.parse::<u64>().unwrap());
        }
    }
    assert!(
        counts.iter().copied().eq(1..=counts.len() as u64),
        "the count runs on"
    );
    assert_each_input_once(&inputs, seed, records);
}

/// A state past `max_state` is refused by name when a new version would
/// take it; the running instance keeps it and goes on. A state of several
/// MiB, past what `output_ratio` lets a call return, moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_state_refuses_a_state_too_large_and_the_running_version_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = sluice_tests::runtime_in(dir.path());
    let ballast = load(&runtime, guests::BALLAST);
    for (bytes, max_state, adopted) in [(2_000_000, Some(1 << 20), false), (8_000_000, None, true)]
    {
        let log = BatchLog::default();
        let job = Job::builder("ballast")
            .source(generator(2000, 13))
            .plugin_operator(
                "ballast",
                &ballast,
                vec![("state_bytes".into(), bytes.to_string())],
            )
            .sink_boxed(Box::new(log.clone()))
            .workers(1)
            .partitions(1)
            .interval(Duration::from_millis(50))
            .limits(Limits {
                max_state,
                output_ratio: Some(2.0),
                ..Limits::default()
            })
            .build()
            .unwrap();
        let reloader = job.reloader();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let running = tokio::spawn(job.run(stop_rx));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let outcome = reloader
            .deploy("ballast", &ballast)
            .unwrap()
            .outcome()
            .await;
        match (adopted, outcome) {
            (true, Outcome::Adopted { .. }) => {}
            (false, Outcome::Refused { reason, .. }) => assert!(
                reason.contains(
                    "limit `max_state` = 1 MiB exceeded: the instance's snapshot is 1.9 MiB"
                ),
                "{reason}"
            ),
            (_, outcome) => panic!("{bytes} bytes of state: {outcome:?}"),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop_tx.send(true).unwrap();
        let summary = running.await.unwrap().expect("the job goes on");
        assert_ballast_counts(&log, 13, summary.records_in);
    }
}

/// 100 swaps under load, broken versions among them (see
/// `sluice_tests::swap_soak`); `SLUICE_SOAK_SWAPS` sets another number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swap_soak() {
    let swaps = std::env::var("SLUICE_SOAK_SWAPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let report = swap_soak::run(Soak {
        swaps,
        rate: 4000,
        interval: Duration::from_millis(50),
        seed: 42,
    })
    .await;
    eprintln!("swap soak: {report:?}");
    assert!(report.adopted > swaps / 2, "{report:?}");
    assert!(report.rolled_back > 0 && report.refused > 0, "{report:?}");
}
