//! Hot swaps of a stateful counter under load, checked record by record:
//! the soak behind the `swap_soak` benchmark (1,000 swaps) and the
//! integration test of the same name (100 swaps).
//!
//! A generator streams records through the counter fixture (`counter-a`,
//! see `tests/fixtures/counter-a/src/counter.rs`), which emits
//! `tag|lineage|count|input` per record: the version that processed it, its
//! partition's lineage and running count, and the input. A seeded plan
//! deploys versions in turn: the two good ones (`a`, `b`), one that fails its
//! probe batch (`broken`), one that fails a few batches after adoption
//! (`late`, rolled back), one that cannot take the state (stateless
//! `uppercase`) and one of the wrong world (`sum`). At the end the output
//! must hold every input exactly once, every partition's count must run
//! 1, 2, 3, ... across all versions and rollbacks, and each partition batch
//! must be one version's, the one the deployments' outcomes say.

use crate::{guests, load};
use sluice::exec::Job;
use sluice::model::batch::Batch;
use sluice::sink::Sink;
use sluice::source::Generator;
use sluice::spec::SourceConfig;
use sluice::wasm::reload::{DeployError, Outcome};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A micro-batch number and the values written for it.
pub type Written = (u64, Vec<String>);

/// Every write of a job: its micro-batch number and values.
#[derive(Clone, Default)]
pub struct BatchLog(pub Arc<Mutex<Vec<Written>>>);

impl Sink for BatchLog {
    fn describe(&self) -> String {
        "batch log".into()
    }

    fn write(&mut self, batch_no: u64, parts: &[Batch]) -> std::io::Result<()> {
        let values = parts
            .iter()
            .flat_map(|p| p.iter())
            .map(|r| String::from_utf8(r.value.to_vec()).expect("utf-8 output"))
            .collect();
        self.0.lock().unwrap().push((batch_no, values));
        Ok(())
    }
}

/// One counter output line: `tag|lineage|count|input`.
pub struct Line<'a> {
    /// The version that processed the record.
    pub tag: &'a str,
    /// The first input its partition's instance saw.
    pub lineage: &'a str,
    /// The partition's running count.
    pub count: u64,
    /// The input record's value.
    pub input: &'a str,
}

/// Parses a counter output line.
pub fn parse(line: &str) -> Line<'_> {
    let mut f = line.splitn(4, '|');
    let (Some(tag), Some(lineage), Some(count), Some(input)) =
        (f.next(), f.next(), f.next(), f.next())
    else {
        panic!("not a counter line: {line:?}");
    };
    Line {
        tag,
        lineage,
        count: count.parse().expect("count"),
        input,
    }
}

/// Asserts that the generator's records `0..records` each appear exactly
/// once among `inputs` (input value → times seen).
pub fn assert_each_input_once(inputs: &HashMap<String, u32>, seed: u64, records: u64) {
    let generator = Generator::new(seed, VALUE_SIZE, None);
    for i in 0..records {
        let mut one = Batch::new();
        generator.record(i, 0, &mut one);
        let value = String::from_utf8(one.get(0).unwrap().value.to_vec()).unwrap();
        assert_eq!(
            inputs.get(&value).copied(),
            Some(1),
            "input record {i} must appear exactly once"
        );
    }
    let seen: u64 = inputs.values().map(|n| u64::from(*n)).sum();
    assert_eq!(seen, records, "no output line without its input");
}

/// Bytes of each generated value.
pub const VALUE_SIZE: usize = 40;

/// The size and pace of a soak.
#[derive(Debug, Clone)]
pub struct Soak {
    /// Deployments in all.
    pub swaps: usize,
    /// Records per second from the generator.
    pub rate: u64,
    /// The micro-batch interval.
    pub interval: Duration,
    /// Seeds the plan and the generator.
    pub seed: u64,
}

/// What a soak did.
#[derive(Debug, Default)]
pub struct Report {
    /// Versions adopted and kept.
    pub adopted: usize,
    /// Versions refused on their probe batch or at deployment.
    pub refused: usize,
    /// Versions adopted, then rolled back.
    pub rolled_back: usize,
    /// Records read (each written once).
    pub records: u64,
    /// Batches written.
    pub batches: usize,
    /// The job's length.
    pub elapsed: Duration,
    /// Deployment to adoption, per adopted version.
    pub adoptions: Vec<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Good,
    Broken,
    Late,
    Stateless,
    WrongWorld,
}

/// A small deterministic generator for the plan.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// Runs the soak and checks its output; panics on the first fault found.
pub async fn run(soak: Soak) -> Report {
    let dir = tempfile::tempdir().unwrap();
    let runtime = crate::runtime_in(dir.path());
    let a = load(&runtime, guests::COUNTER_A);
    let b = load(&runtime, guests::COUNTER_B);
    let broken = load(&runtime, guests::COUNTER_BROKEN);
    let late = load(&runtime, guests::COUNTER_LATE);
    let stateless = load(&runtime, guests::UPPERCASE);
    let reducer = load(&runtime, guests::SUM);

    let log = BatchLog::default();
    let job = Job::builder("swap-soak")
        .source(SourceConfig::Generator {
            records: None,
            rate: Some(soak.rate),
            value_size: VALUE_SIZE,
            keys: None,
            seed: soak.seed,
        })
        .plugin_operator("counter", &a, Vec::new())
        .sink_boxed(Box::new(log.clone()))
        .workers(2)
        .partitions(4)
        .interval(soak.interval)
        .build()
        .unwrap();
    let reloader = job.reloader();
    let stats = job.stats();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let running = tokio::spawn(job.run(stop_rx));

    let mut plan = Lcg(soak.seed);
    let mut report = Report::default();
    // From which batch on which version ran, and in the batch of a
    // rollback which one else, as the deployments' outcomes say.
    let mut changes: Vec<Change<'_>> = vec![(0, "a", None)];
    let mut current_good = "a";
    for i in 0..soak.swaps {
        let kind = match plan.next(20) {
            0..=13 => Kind::Good,
            14 | 15 => Kind::Late,
            16 => Kind::Broken,
            17 => Kind::Stateless,
            18 => Kind::WrongWorld,
            _ => Kind::Good,
        };
        let (plugin, tag) = match kind {
            Kind::Good if current_good == "a" => (&b, "b"),
            Kind::Good => (&a, "a"),
            Kind::Late => (&late, "late"),
            Kind::Broken => (&broken, "broken"),
            Kind::Stateless => (&stateless, "stateless"),
            Kind::WrongWorld => (&reducer, "sum"),
        };
        tokio::time::sleep(Duration::from_millis(plan.next(40))).await;
        let deployment = match reloader.deploy("counter", plugin) {
            Err(DeployError::Refused { reason, .. }) if kind == Kind::WrongWorld => {
                assert!(reason.contains("`reduce` world"), "{reason}");
                report.refused += 1;
                continue;
            }
            Err(e) => panic!("deployment {i} ({tag}): {e}"),
            Ok(d) => d,
        };
        assert_ne!(
            kind,
            Kind::WrongWorld,
            "deployment {i}: a reducer was accepted"
        );
        let version = deployment.version;
        let (outcome, window) = tokio::time::timeout(Duration::from_secs(60), deployment.decided())
            .await
            .expect("an outcome within 60 s");
        match (kind, outcome) {
            (Kind::Good | Kind::Late, Outcome::Adopted { after, batch, .. }) => {
                changes.push((batch, tag, None));
                report.adoptions.push(after);
                if kind == Kind::Good {
                    current_good = tag;
                    report.adopted += 1;
                    continue;
                }
                let rolled = tokio::time::timeout(Duration::from_secs(60), window.closed())
                    .await
                    .expect("the late version's window closes within 60 s")
                    .unwrap_or_else(|| {
                        panic!("deployment {i} (version {version}): kept, not rolled back")
                    });
                assert!(
                    rolled.reason.contains("breaks after 6 batches"),
                    "{rolled:?}"
                );
                changes.push((rolled.batch, tag, Some(current_good)));
                changes.push((rolled.batch + 1, current_good, None));
                report.rolled_back += 1;
            }
            (Kind::Broken | Kind::Stateless, Outcome::Refused { reason, .. }) => {
                assert!(
                    reason.contains("broken") || reason.contains("cannot take over"),
                    "deployment {i}: {reason}"
                );
                report.refused += 1;
            }
            (kind, outcome) => panic!("deployment {i}: {kind:?} came to {outcome:?}"),
        }
    }
    tokio::time::sleep(soak.interval * 4).await;
    stop_tx.send(true).unwrap();
    let summary = running
        .await
        .unwrap()
        .expect("the job runs through every swap");
    report.elapsed = started.elapsed();
    report.records = summary.records_in;

    // The job's own record of versions agrees, as far as it keeps it.
    let events = stats.snapshot().versions;
    if events.len() < sluice::exec::MAX_VERSION_EVENTS {
        assert_eq!(
            events.iter().filter(|e| e.adopted).count(),
            report.adopted + report.rolled_back
        );
        assert_eq!(
            events.iter().filter(|e| e.rolled_back).count(),
            report.rolled_back
        );
    }
    let batches = log.0.lock().unwrap().clone();
    report.batches = batches.len();
    assert_versions(&batches, &changes, soak.seed, summary.records_in, 4);
    report
}

/// From which batch on a version ran: its first batch, its tag, and the tag
/// of another that may have run a partition of that batch (the batch of a
/// rollback).
pub type Change<'a> = (u64, &'a str, Option<&'a str>);

/// Checks a counter job's output against the versions that ran it
/// (`changes`, in order): every line of a batch is the version in force's
/// (or the other one's, in the batch of a rollback), each partition's batch
/// is one version's, the generator's records `0..records` (of `seed`)
/// appear exactly once, and each of the `partitions` counts runs 1, 2, 3,
/// ... Returns the lines each version wrote.
pub fn assert_versions(
    batches: &[Written],
    changes: &[Change<'_>],
    seed: u64,
    records: u64,
    partitions: usize,
) -> HashMap<String, usize> {
    let allowed = |batch_no: u64| -> (&str, Option<&str>) {
        let (_, tag, or) = changes
            .iter()
            .rev()
            .find(|(first, _, _)| *first <= batch_no)
            .copied()
            .expect("a version from batch 0");
        (tag, or)
    };
    let mut lines_of: HashMap<String, usize> = HashMap::new();
    let mut inputs: HashMap<String, u32> = HashMap::new();
    let mut counts: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (batch_no, values) in batches {
        let (tag, or) = allowed(*batch_no);
        let mut per_lineage: HashMap<&str, &str> = HashMap::new();
        for v in values {
            let line = parse(v);
            assert!(
                line.tag == tag || Some(line.tag) == or,
                "batch {batch_no}: version `{}` ran it, `{tag}`{} was in force",
                line.tag,
                or.map(|o| format!(" or `{o}`")).unwrap_or_default()
            );
            let first = per_lineage.entry(line.lineage).or_insert(line.tag);
            assert_eq!(
                *first, line.tag,
                "batch {batch_no}: one partition's batch must be one version's"
            );
            *lines_of.entry(line.tag.to_string()).or_default() += 1;
            *inputs.entry(line.input.to_string()).or_default() += 1;
            counts
                .entry(line.lineage.to_string())
                .or_default()
                .push(line.count);
        }
    }
    assert_each_input_once(&inputs, seed, records);
    assert_eq!(counts.len(), partitions, "one lineage per partition");
    for (lineage, seq) in &counts {
        assert!(
            seq.iter().copied().eq(1..=seq.len() as u64),
            "the count of `{lineage}` must run on across every swap and rollback"
        );
    }
    lines_of
}
