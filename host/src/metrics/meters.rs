//! The live meters of one job, one per source, operator, stage and sink,
//! shared by the threads that move its records: each adds what a chunk or a
//! partition batch did, once per chunk or batch and never per record, and a
//! scrape reads them at any time ([`JobMeters::view`]).

use super::histogram::Histogram;
use super::view::{
    BatchRow, DeadLetterRow, JobMetricsView, LimitUse, OperatorView, PartitionLag, PartitionView,
    SinkView, SourceView, StageView, WatermarkRow,
};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Batches the view keeps, the latest.
pub const RECENT_BATCHES: usize = 300;
/// Dead letters the view keeps, the latest.
pub const RECENT_DEAD_LETTERS: usize = 50;

/// A count that only grows, added to from any thread.
#[derive(Debug, Default)]
pub struct Count(AtomicU64);

impl Count {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds a duration, in nanoseconds.
    pub fn add_time(&self, d: Duration) {
        self.add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    /// The count now.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn secs(&self) -> f64 {
        self.get() as f64 / 1e9
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere leaves figures worth showing.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The latest `cap` rows of something, oldest first.
#[derive(Debug)]
pub struct Recent<T> {
    rows: Mutex<VecDeque<T>>,
    cap: usize,
}

impl<T: Clone> Recent<T> {
    fn new(cap: usize) -> Self {
        Recent {
            rows: Mutex::new(VecDeque::with_capacity(cap)),
            cap,
        }
    }

    /// Keeps `rows`, dropping the oldest beyond the cap.
    pub fn extend(&self, rows: impl IntoIterator<Item = T>) {
        let mut kept = lock(&self.rows);
        for row in rows {
            if kept.len() == self.cap {
                kept.pop_front();
            }
            kept.push_back(row);
        }
    }

    fn to_vec(&self) -> Vec<T> {
        lock(&self.rows).iter().cloned().collect()
    }
}

/// What a source has read and how long it waited to hand it over.
#[derive(Debug, Default)]
pub struct SourceMeter {
    /// The source's name in the job (its stream).
    pub name: String,
    /// Its kind, as a job file writes it (`file`, `kafka`, ...).
    pub kind: String,
    records: Count,
    bytes: Count,
    sent: Count,
    backpressured_ns: Count,
    lag: Mutex<Vec<PartitionLag>>,
}

impl SourceMeter {
    /// A meter for source `name` of kind `kind`.
    pub fn new(name: impl Into<String>, kind: impl Into<String>) -> Self {
        SourceMeter {
            name: name.into(),
            kind: kind.into(),
            ..SourceMeter::default()
        }
    }

    /// The source hands over a chunk of `records` records, having waited
    /// `blocked` for room in the job's input channel.
    pub fn sent(&self, records: usize, blocked: Duration) {
        self.sent.add(records as u64);
        self.backpressured_ns.add_time(blocked);
    }

    /// The job took a chunk of `records` records and `bytes` bytes.
    pub fn taken(&self, records: usize, bytes: usize) {
        self.records.add(records as u64);
        self.bytes.add(bytes as u64);
    }

    /// A Kafka source's lag, per topic-partition it reads.
    pub fn set_lag(&self, lag: Vec<PartitionLag>) {
        *lock(&self.lag) = lag;
    }

    fn view(&self) -> SourceView {
        let records = self.records.get();
        SourceView {
            name: self.name.clone(),
            kind: self.kind.clone(),
            records,
            bytes: self.bytes.get(),
            waiting: self.sent.get().saturating_sub(records),
            backpressured_s: self.backpressured_ns.secs(),
        }
    }
}

/// One partition's share of an operator.
#[derive(Debug, Default)]
struct PartitionMeter {
    records_in: Count,
    records_out: Count,
    memory: AtomicU64,
    last_call_ns: AtomicU64,
}

/// A limit an operator is held to, as the job file set it.
#[derive(Debug, Clone)]
pub struct LimitSpec {
    /// The setting's name (`memory`, `cpu_per_batch`).
    pub limit: &'static str,
    /// Its value as a job file writes it.
    pub value: String,
    /// The value in bytes or seconds.
    pub allowed: f64,
}

/// What an operator did, over all its partitions.
#[derive(Debug, Default)]
pub struct OperatorMeter {
    /// The operator's name in the job.
    pub name: String,
    /// Its kind, as a job file writes it.
    pub kind: String,
    records_in: Count,
    records_out: Count,
    bytes_in: Count,
    bytes_out: Count,
    rejected: Count,
    traps: Count,
    restarts: Count,
    dead_letters: Count,
    late: Count,
    breaches: Mutex<BTreeMap<&'static str, u64>>,
    call: Histogram,
    partitions: Vec<PartitionMeter>,
    limits: Vec<LimitSpec>,
}

/// What one call of an operator on a partition batch did.
#[derive(Debug, Default, Clone, Copy)]
pub struct CallFigures {
    /// Records and payload bytes given to the operator.
    pub records_in: usize,
    /// See `records_in`.
    pub bytes_in: usize,
    /// Records and payload bytes it emitted.
    pub records_out: usize,
    /// See `records_out`.
    pub bytes_out: usize,
    /// Time in the operator.
    pub took: Duration,
    /// Records it sent to the dead-letter file.
    pub dead_letters: usize,
    /// Records that reached it after their windows closed.
    pub late: u64,
    /// The instance's linear memory after the call (Wasm operators).
    pub memory: Option<u64>,
}

impl OperatorMeter {
    /// A meter for operator `name` of kind `kind`, run in `partitions`
    /// partitions and held to `limits`.
    pub fn new(
        name: impl Into<String>,
        kind: impl Into<String>,
        partitions: usize,
        limits: Vec<LimitSpec>,
    ) -> Self {
        OperatorMeter {
            name: name.into(),
            kind: kind.into(),
            partitions: (0..partitions).map(|_| PartitionMeter::default()).collect(),
            limits,
            ..OperatorMeter::default()
        }
    }

    /// Counts one call on a partition batch of `partition`.
    pub fn called(&self, partition: usize, c: CallFigures) {
        self.records_in.add(c.records_in as u64);
        self.records_out.add(c.records_out as u64);
        self.bytes_in.add(c.bytes_in as u64);
        self.bytes_out.add(c.bytes_out as u64);
        self.dead_letters.add(c.dead_letters as u64);
        self.late.add(c.late);
        self.call.observe(c.took);
        if let Some(p) = self.partitions.get(partition) {
            p.records_in.add(c.records_in as u64);
            p.records_out.add(c.records_out as u64);
            let ns = u64::try_from(c.took.as_nanos()).unwrap_or(u64::MAX);
            p.last_call_ns.store(ns, Ordering::Relaxed);
            if let Some(m) = c.memory {
                p.memory.store(m, Ordering::Relaxed);
            }
        }
    }

    /// Counts records the operator rejected.
    pub fn rejected(&self, n: usize) {
        self.rejected.add(n as u64);
    }

    /// Counts a trap; the instance was re-created.
    pub fn trapped(&self) {
        self.traps.add(1);
        self.restarts.add(1);
    }

    /// Counts a breach of `limit`; `restarted` when the instance was
    /// re-created for it.
    pub fn breached(&self, limit: &'static str, restarted: bool) {
        *lock(&self.breaches).entry(limit).or_default() += 1;
        if restarted {
            self.restarts.add(1);
        }
    }

    fn view(&self, version: u64) -> OperatorView {
        let partitions: Vec<PartitionView> = self
            .partitions
            .iter()
            .enumerate()
            .map(|(i, p)| PartitionView {
                partition: i,
                records_in: p.records_in.get(),
                records_out: p.records_out.get(),
            })
            .collect();
        let max = |f: fn(&PartitionMeter) -> u64| self.partitions.iter().map(f).max();
        let limits =
            self.limits
                .iter()
                .map(|l| LimitUse {
                    limit: l.limit,
                    value: l.value.clone(),
                    allowed: l.allowed,
                    used: match l.limit {
                        "memory" => max(|p| p.memory.load(Ordering::Relaxed)).map(|b| b as f64),
                        "cpu_per_batch" => max(|p| p.last_call_ns.load(Ordering::Relaxed))
                            .map(|ns| ns as f64 / 1e9),
                        _ => None,
                    },
                })
                .collect();
        OperatorView {
            name: self.name.clone(),
            kind: self.kind.clone(),
            records_in: self.records_in.get(),
            records_out: self.records_out.get(),
            bytes_in: self.bytes_in.get(),
            bytes_out: self.bytes_out.get(),
            rejected: self.rejected.get(),
            traps: self.traps.get(),
            restarts: self.restarts.get(),
            breaches: lock(&self.breaches).clone(),
            dead_letters: self.dead_letters.get(),
            late: self.late.get(),
            version,
            call: self.call.view(),
            partitions,
            limits,
        }
    }
}

/// A stage: its operators, and how its time went.
#[derive(Debug, Default)]
pub struct StageMeter {
    /// Whether the stage's input is exchanged by key.
    pub keyed: bool,
    /// Whether the stage has state (windows, reducers).
    pub stateful: bool,
    /// Worker time on the stage's partition batches, summed over partitions.
    pub busy_ns: Count,
    /// Time the stage's output waited for the next step to take it.
    pub backpressured_ns: Count,
    /// Its operators, in chain order.
    pub operators: Vec<Arc<OperatorMeter>>,
}

/// What a sink wrote.
#[derive(Debug, Default)]
pub struct SinkMeter {
    /// The sink's name (its description).
    pub name: String,
    /// Its kind, as a job file writes it.
    pub kind: String,
    /// Records written.
    pub records: Count,
    /// Payload bytes written.
    pub bytes: Count,
}

impl SinkMeter {
    /// A meter for sink `name` of kind `kind`.
    pub fn new(name: impl Into<String>, kind: impl Into<String>) -> Self {
        SinkMeter {
            name: name.into(),
            kind: kind.into(),
            ..SinkMeter::default()
        }
    }
}

/// Every meter of a job.
#[derive(Debug)]
pub struct JobMeters {
    /// Per source, in the job's order.
    pub sources: Vec<Arc<SourceMeter>>,
    /// Per stage.
    pub stages: Vec<StageMeter>,
    /// Per sink, in the job's order.
    pub sinks: Vec<SinkMeter>,
    /// Per batch: from its cut to the start of its processing.
    pub scheduling: Histogram,
    /// Per batch: from the start of its processing to its sinks written.
    pub processing: Histogram,
    /// Per batch: from its first record read to its sinks written.
    pub total: Histogram,
    /// Per checkpoint: from the sinks' sync to its commit.
    pub checkpoint: Histogram,
    /// Records read but not yet in a batch.
    pub pending: AtomicU64,
    /// The latest batches.
    pub batches: Recent<BatchRow>,
    /// The latest dead letters.
    pub dead_letters: Recent<DeadLetterRow>,
    watermarks: Mutex<Vec<WatermarkRow>>,
}

impl JobMeters {
    /// The meters of a job of these sources, stages and sinks.
    pub fn new(
        sources: Vec<Arc<SourceMeter>>,
        stages: Vec<StageMeter>,
        sinks: Vec<SinkMeter>,
    ) -> Self {
        JobMeters {
            sources,
            stages,
            sinks,
            scheduling: Histogram::default(),
            processing: Histogram::default(),
            total: Histogram::default(),
            checkpoint: Histogram::default(),
            pending: AtomicU64::new(0),
            batches: Recent::new(RECENT_BATCHES),
            dead_letters: Recent::new(RECENT_DEAD_LETTERS),
            watermarks: Mutex::new(Vec::new()),
        }
    }

    /// The watermarks after a batch.
    pub fn set_watermarks(&self, rows: Vec<WatermarkRow>) {
        *lock(&self.watermarks) = rows;
    }

    /// A finished batch: its row, and its delays into the histograms.
    pub fn batch_written(&self, row: BatchRow) {
        let ms = |v: f64| Duration::from_secs_f64(v.max(0.0) / 1e3);
        self.scheduling.observe(ms(row.scheduling_delay_ms));
        self.processing.observe(ms(row.processing_ms));
        self.total.observe(ms(row.total_delay_ms));
        self.batches.extend([row]);
    }

    /// The meters now; `version(operator)` is the version in force of each.
    pub fn view(&self, version: impl Fn(&str) -> u64) -> JobMetricsView {
        JobMetricsView {
            sources: self.sources.iter().map(|s| s.view()).collect(),
            stages: self
                .stages
                .iter()
                .enumerate()
                .map(|(i, s)| StageView {
                    stage: i,
                    keyed: s.keyed,
                    stateful: s.stateful,
                    busy_s: s.busy_ns.secs(),
                    backpressured_s: s.backpressured_ns.secs(),
                    operators: s
                        .operators
                        .iter()
                        .map(|o| o.view(version(&o.name)))
                        .collect(),
                })
                .collect(),
            sinks: self
                .sinks
                .iter()
                .map(|s| SinkView {
                    name: s.name.clone(),
                    kind: s.kind.clone(),
                    records: s.records.get(),
                    bytes: s.bytes.get(),
                })
                .collect(),
            pending: self.pending.load(Ordering::Relaxed),
            kafka_lag: self
                .sources
                .iter()
                .flat_map(|s| lock(&s.lag).clone())
                .collect(),
            watermarks: lock(&self.watermarks).clone(),
            scheduling: self.scheduling.view(),
            processing: self.processing.view(),
            total: self.total.view(),
            checkpoint: self.checkpoint.view(),
            batches: self.batches.to_vec(),
            dead_letters: self.dead_letters.to_vec(),
        }
    }
}
