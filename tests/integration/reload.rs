//! Hot reload on a running job: versions of a stateful counter swapped in
//! while a generator streams records at a fixed rate, including versions
//! the job must refuse. The output proves that no record is lost or
//! repeated, that each batch is one version's, that versions follow each
//! other in order and that the running count goes on across versions.

use sluice::exec::Job;
use sluice::spec::SourceConfig;
use sluice::wasm::Plugin;
use sluice::wasm::reload::{DeployError, Outcome};
use sluice_tests::swap_soak::{BatchLog, Line, assert_each_input_once, parse};
use sluice_tests::{guests, load};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a deployment should come to.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// Adopted; its output lines carry this tag.
    Adopted(&'static str),
    /// Refused on its probe batch (it traps, or cannot take the state).
    RefusedOnProbe,
    /// Refused at deployment (wrong world).
    RefusedAtDeploy,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_swaps_lose_and_repeat_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = sluice_tests::runtime_in(dir.path());
    let a = load(&runtime, guests::COUNTER_A);
    let b = load(&runtime, guests::COUNTER_B);
    let broken = load(&runtime, guests::COUNTER_BROKEN);
    let stateless = load(&runtime, guests::UPPERCASE);
    let reducer = load(&runtime, guests::SUM);
    assert!(a.info().stateful && !stateless.info().stateful);

    let log = BatchLog::default();
    let job = Job::builder("swaps")
        .source(SourceConfig::Generator {
            records: None,
            rate: Some(4000),
            value_size: sluice_tests::swap_soak::VALUE_SIZE,
            keys: None,
            seed: 7,
        })
        .plugin_operator("counter", &a, Vec::new())
        .sink_boxed(Box::new(log.clone()))
        .workers(2)
        .partitions(2)
        .interval(Duration::from_millis(50))
        .build()
        .unwrap();
    let reloader = job.reloader();
    let stats = job.stats();
    assert_eq!(reloader.operators(), vec!["counter".to_string()]);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(job.run(stop_rx));

    // 20 deployments: the two good versions in turn, with a version that
    // traps, one that cannot take the counter's state (it has none) and one
    // of the wrong world among them.
    let mut plan: Vec<(&Plugin, Expect)> = Vec::new();
    for i in 0..20 {
        plan.push(match i {
            4 => (&broken, Expect::RefusedOnProbe),
            9 => (&reducer, Expect::RefusedAtDeploy),
            13 => (&stateless, Expect::RefusedOnProbe),
            _ if plan
                .iter()
                .rev()
                .find_map(|(_, e)| match e {
                    Expect::Adopted(t) => Some(*t),
                    _ => None,
                })
                .unwrap_or("a")
                == "a" =>
            {
                (&b, Expect::Adopted("b"))
            }
            _ => (&a, Expect::Adopted("a")),
        });
    }
    // (first batch of the version, tag), from the outcomes.
    let mut adopted: Vec<(u64, &str)> = vec![(0, "a")];
    let mut refused = 0;
    for (i, (plugin, expect)) in plan.iter().enumerate() {
        // Let a few batches go by between swaps.
        tokio::time::sleep(Duration::from_millis(120)).await;
        let deployed = reloader.deploy("counter", plugin);
        match (expect, deployed) {
            (Expect::RefusedAtDeploy, Err(DeployError::Refused { reason, .. })) => {
                assert!(reason.contains("`reduce` world"), "{reason}");
                refused += 1;
            }
            (Expect::RefusedAtDeploy, other) => {
                panic!(
                    "deployment {i}: expected a refusal, got {:?}",
                    other.map(|d| d.version)
                )
            }
            (_, Err(e)) => panic!("deployment {i} failed: {e}"),
            (expect, Ok(d)) => {
                let outcome = tokio::time::timeout(Duration::from_secs(30), d.outcome())
                    .await
                    .expect("an outcome within 30 s");
                match (expect, outcome) {
                    (Expect::Adopted(tag), Outcome::Adopted { batch, .. }) => {
                        adopted.push((batch, tag))
                    }
                    (Expect::RefusedOnProbe, Outcome::Refused { reason, .. }) => {
                        assert!(
                            reason.contains("broken") || reason.contains("cannot take over"),
                            "deployment {i}: {reason}"
                        );
                        refused += 1;
                    }
                    (expect, outcome) => {
                        panic!("deployment {i}: expected {expect:?}, got {outcome:?}")
                    }
                }
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop_tx.send(true).unwrap();
    let summary = running
        .await
        .unwrap()
        .expect("the job runs through every swap");

    assert_eq!(refused, 3);
    assert_eq!(adopted.len(), 18, "the initial version and 17 adopted");
    assert!(adopted.windows(2).all(|w| w[0].0 < w[1].0));
    // The job's own record of versions agrees.
    let events = stats.snapshot().versions;
    assert_eq!(events.len(), 20);
    assert_eq!(events.iter().filter(|e| e.adopted).count(), 17);
    assert!(events.windows(2).all(|w| w[0].version < w[1].version));

    let batches = log.0.lock().unwrap().clone();
    let expected_tag = |batch_no: u64| {
        adopted
            .iter()
            .rev()
            .find(|(first, _)| *first <= batch_no)
            .map(|(_, t)| *t)
            .unwrap()
    };
    let mut lines = 0u64;
    let mut inputs: HashMap<String, u32> = HashMap::new();
    // Per lineage (one per partition), the counts in output order.
    let mut counts: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut tags_seen = Vec::new();
    for (batch_no, values) in &batches {
        let want = expected_tag(*batch_no);
        for v in values {
            let line = parse(v);
            assert_eq!(
                line.tag, want,
                "batch {batch_no} must be processed by version `{want}` alone"
            );
            *inputs.entry(line.input.to_string()).or_default() += 1;
            counts
                .entry(line.lineage.to_string())
                .or_default()
                .push(line.count);
            lines += 1;
        }
        if tags_seen.last() != Some(&want) && !values.is_empty() {
            tags_seen.push(want);
        }
    }
    // Every input exactly once.
    assert_eq!(lines, summary.records_in);
    assert_each_input_once(&inputs, 7, summary.records_in);
    // The count of each partition runs 1, 2, 3, ... across all versions:
    // the state moved at every swap.
    assert_eq!(counts.len(), 2, "one lineage per partition: {counts:?}");
    for (lineage, seq) in &counts {
        let expected: Vec<u64> = (1..=seq.len() as u64).collect();
        assert_eq!(
            seq, &expected,
            "the count of `{lineage}` must not restart or skip"
        );
    }
    // Batches of every adopted version reached the output, in order.
    let adopted_tags: Vec<&str> = adopted.iter().map(|(_, t)| *t).collect();
    assert_eq!(tags_seen, adopted_tags);
}

/// Copies `from` over `to` the way a build does: a new file renamed into place.
fn replace_file(from: &Path, to: &Path) {
    let tmp = to.with_extension("tmp");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

/// `sluice run --quiet --watch` of a job file, its stderr collected.
struct Watched {
    child: std::process::Child,
    stderr: Arc<Mutex<String>>,
    _reader: std::thread::JoinHandle<()>,
}

impl Watched {
    fn start(dir: &Path, job: &Path) -> Watched {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice-under-test"))
            .args(["run", "--quiet", "--watch", job.to_str().unwrap()])
            .env("SLUICE_CACHE_DIR", dir.join("cache"))
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let reader = {
            let stderr = stderr.clone();
            let pipe = child.stderr.take().unwrap();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut s = stderr.lock().unwrap();
                    s.push_str(&line);
                    s.push('\n');
                }
            })
        };
        Watched {
            child,
            stderr,
            _reader: reader,
        }
    }

    fn wait_for(&self, needle: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !self.stderr.lock().unwrap().contains(needle) {
            assert!(
                std::time::Instant::now() < deadline,
                "no `{needle}` in:\n{}",
                self.stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the run with SIGTERM; its log, once it exited successfully.
    fn stop(&mut self) -> String {
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let status = self.child.wait().unwrap();
        // The reader ends with the pipe.
        let log = self.stderr.lock().unwrap().clone();
        assert!(status.success(), "{log}");
        log
    }
}

impl Drop for Watched {
    /// A run a failed test left behind is killed with it.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `sluice run --watch`: a rebuilt component file is swapped into the
/// running job; a file that is not a component is reported and ignored.
#[test]
fn run_watch_swaps_a_rebuilt_component() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("counter.wasm");
    std::fs::copy(guests::COUNTER_A, &wasm).unwrap();
    let job = sluice_tests::write_job(
        dir.path(),
        "watched.toml",
        "workers = 1\n[batch]\ninterval = \"100ms\"\n[[sources]]\nkind = \"generator\"\nrate = 5000\n\
         value_size = 30\n[[operators]]\nname = \"counter\"\nplugin = \"counter.wasm\"\n\
         [[sinks]]\nkind = \"jsonl\"\npath = \"out.jsonl\"\n",
    );
    let mut run = Watched::start(dir.path(), &job);
    run.wait_for("watching");
    std::thread::sleep(Duration::from_millis(500));
    let garbage = dir.path().join("garbage");
    std::fs::write(&garbage, b"not a component").unwrap();
    replace_file(&garbage, &wasm);
    run.wait_for("new version not deployed");
    replace_file(Path::new(guests::COUNTER_B), &wasm);
    run.wait_for("version 2");
    run.wait_for("adopted from batch");
    std::thread::sleep(Duration::from_millis(500));
    let log = run.stop();
    assert!(log.contains("not a WebAssembly file"), "{log}");

    let out = crate::read_jsonl(&dir.path().join("out.jsonl"));
    let lines: Vec<String> = out
        .iter()
        .map(|v| v["value"].as_str().expect("text value").to_string())
        .collect();
    let parsed: Vec<Line<'_>> = lines.iter().map(|l| parse(l)).collect();
    let first_b = parsed
        .iter()
        .position(|l| l.tag == "b")
        .expect("version b reached the output");
    assert!(first_b > 0, "version a ran first");
    assert!(
        parsed[..first_b].iter().all(|l| l.tag == "a")
            && parsed[first_b..].iter().all(|l| l.tag == "b"),
        "a then b, never mixed"
    );
    // One partition: one count, continuous across the swap.
    let counts: Vec<u64> = parsed.iter().map(|l| l.count).collect();
    assert_eq!(counts, (1..=parsed.len() as u64).collect::<Vec<_>>());
    assert!(parsed.iter().all(|l| l.lineage == parsed[0].lineage));
    let summary = log
        .lines()
        .find(|l| l.contains("job `watched` stopped"))
        .unwrap_or_else(|| panic!("no summary in {log}"));
    assert!(
        summary.contains(&format!(": {} record(s) in", parsed.len())),
        "every record read was written once: {summary}"
    );
}

/// `sluice run --watch` watches a reducer's file too: a component of the
/// wrong world is refused naming both worlds, and a `reduce` component is
/// adopted and goes on from the accumulators: the counts of the keys add
/// up to every record read.
#[test]
fn run_watch_swaps_a_reducer() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("count.wasm");
    std::fs::copy(guests::REDUCE_TRAP, &wasm).unwrap();
    let job = sluice_tests::write_job(
        dir.path(),
        "watched.toml",
        "workers = 1\n[batch]\ninterval = \"100ms\"\n\
         [[sources]]\nkind = \"generator\"\nrate = 2000\nvalue_size = 10\nkeys = 5\n\
         [[operators]]\nname = \"count\"\nreducer = \"count.wasm\"\n\
         [[sinks]]\nkind = \"jsonl\"\npath = \"out.jsonl\"\n",
    );
    let mut run = Watched::start(dir.path(), &job);
    run.wait_for("(operator `count`) for new versions");
    std::thread::sleep(Duration::from_millis(500));
    replace_file(Path::new(guests::UPPERCASE), &wasm);
    run.wait_for("a `reducer` operator needs `reduce`");
    // The counting reducer again: a new version, as the file changed.
    replace_file(Path::new(guests::REDUCE_TRAP), &wasm);
    run.wait_for("version 3");
    run.wait_for("adopted from batch");
    std::thread::sleep(Duration::from_millis(300));
    let log = run.stop();
    assert!(log.contains("replacing version 1"), "{log}");
    let last: BTreeMap<String, u64> = crate::read_jsonl(&dir.path().join("out.jsonl"))
        .iter()
        .map(|r| {
            let count = r["value"].as_str().unwrap().parse().unwrap();
            (r["key"].as_str().unwrap().to_string(), count)
        })
        .collect();
    let summary = log
        .lines()
        .find(|l| l.contains("job `watched` stopped"))
        .unwrap_or_else(|| panic!("no summary in {log}"));
    let counted: u64 = last.values().sum();
    assert!(
        summary.contains(&format!(": {counted} record(s) in")),
        "the counts of {} keys add up to the records read: {summary}",
        last.len()
    );
}

/// A version deployed while no batch runs waits for one; when the job ends
/// first, the deployer hears so instead of waiting forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_ends_refuses_the_version_it_did_not_try() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = sluice_tests::runtime_in(dir.path());
    let a = load(&runtime, guests::COUNTER_A);
    let b = load(&runtime, guests::COUNTER_B);
    // A socket that never sends anything: no batch is ever cut.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let job = Job::builder("idle")
        .source(SourceConfig::Socket { address })
        .plugin_operator("counter", &a, Vec::new())
        .sink_boxed(Box::new(BatchLog::default()))
        .interval(Duration::from_millis(50))
        .build()
        .unwrap();
    let reloader = job.reloader();
    let stats = job.stats();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(job.run(stop_rx));
    let deployment = reloader.deploy("counter", &b).expect("deploy");
    // Another version cannot overtake the waiting one.
    match reloader.deploy("counter", &a) {
        Err(DeployError::Busy { pending, .. }) => assert_eq!(pending, deployment.version),
        other => panic!("expected Busy, got {:?}", other.map(|d| d.version)),
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop_tx.send(true).unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(30), deployment.outcome())
        .await
        .expect("the outcome arrives when the job ends");
    match outcome {
        Outcome::Refused { reason, .. } => assert!(reason.contains("job ended"), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    running.await.unwrap().unwrap();
    assert_eq!(reloader.current_version("counter"), Some(1));
    // A version deployed after the end is refused at once.
    match reloader.deploy("counter", &b) {
        Err(DeployError::Refused { reason, .. }) => assert!(reason.contains("ended"), "{reason}"),
        other => panic!("expected a refusal, got {:?}", other.map(|d| d.version)),
    }
    let events = stats.snapshot().versions;
    assert_eq!(events.len(), 2);
    assert!(!events[0].adopted && events[0].detail.contains("job ended"));
    drop(listener);
}
