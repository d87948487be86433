//! A job's figures at one moment, as the dashboard reads them (JSON) and
//! the Prometheus exposition encodes them. Each field is described, with
//! its unit, in `docs/metrics.md`.
#![allow(missing_docs)]

use super::histogram::HistogramView;
use std::collections::BTreeMap;

/// Everything known about a running job at one moment.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct JobFigures {
    pub job: String,
    /// `running`, `finished`, `failed` or `stopped`.
    pub state: String,
    /// The host's clock when the figures were taken, in Unix milliseconds.
    pub now_ms: i64,
    pub started_ms: i64,
    /// The batch interval; `None` when batches are cut by size only.
    pub interval_ms: Option<u64>,
    pub partitions: usize,
    pub workers: usize,
    pub totals: Totals,
    #[serde(flatten)]
    pub meters: JobMetricsView,
    pub versions: Vec<VersionRow>,
    /// `None` for a job without checkpoints.
    pub checkpoints: Option<CheckpointView>,
}

/// The job's counters.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Totals {
    pub records_in: u64,
    pub bytes_in: u64,
    pub records_out: u64,
    pub dead_lettered: u64,
    pub late: u64,
    pub skipped: u64,
    pub batches: u64,
}

/// The job's meters at one moment ([`super::JobMeters::view`]).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct JobMetricsView {
    pub sources: Vec<SourceView>,
    pub stages: Vec<StageView>,
    pub sinks: Vec<SinkView>,
    /// Records read but not yet in a batch.
    pub pending: u64,
    pub kafka_lag: Vec<PartitionLag>,
    pub watermarks: Vec<WatermarkRow>,
    #[serde(skip)]
    pub scheduling: HistogramView,
    #[serde(skip)]
    pub processing: HistogramView,
    #[serde(skip)]
    pub total: HistogramView,
    #[serde(skip)]
    pub checkpoint: HistogramView,
    /// The latest batches, oldest first.
    pub batches: Vec<BatchRow>,
    /// The latest dead letters, oldest first.
    pub dead_letters: Vec<DeadLetterRow>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SourceView {
    pub name: String,
    pub kind: String,
    pub records: u64,
    pub bytes: u64,
    /// Records handed over and waiting in the job's input channel.
    pub waiting: u64,
    /// Time the source waited for room in that channel, in seconds.
    pub backpressured_s: f64,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StageView {
    pub stage: usize,
    pub keyed: bool,
    pub stateful: bool,
    pub busy_s: f64,
    pub backpressured_s: f64,
    pub operators: Vec<OperatorView>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct OperatorView {
    pub name: String,
    pub kind: String,
    pub records_in: u64,
    pub records_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub rejected: u64,
    pub traps: u64,
    pub restarts: u64,
    /// Breaches by limit name.
    pub breaches: BTreeMap<&'static str, u64>,
    pub dead_letters: u64,
    pub late: u64,
    /// The version in force (1: the one the job started with).
    pub version: u64,
    /// Time per call on a partition batch.
    pub call: HistogramView,
    pub partitions: Vec<PartitionView>,
    pub limits: Vec<LimitUse>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PartitionView {
    pub partition: usize,
    pub records_in: u64,
    pub records_out: u64,
}

/// A limit and how much of it the operator uses: for `memory` the largest
/// instance's linear memory in bytes, for `cpu_per_batch` the longest of
/// the partitions' last calls in seconds.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LimitUse {
    pub limit: &'static str,
    pub value: String,
    pub allowed: f64,
    pub used: Option<f64>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SinkView {
    pub name: String,
    pub kind: String,
    pub records: u64,
    pub bytes: u64,
}

/// How far a Kafka consumer is behind the end of one topic-partition.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// Records between the next one the source reads and the partition's
    /// end (its last stable offset under `read_committed`).
    pub lag: i64,
}

/// The event time a stage's watermark derives from, per input stream.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct WatermarkRow {
    pub stage: usize,
    pub stream: String,
    /// The largest event time of the stream that reached the stage.
    pub event_time_ms: Option<i64>,
    /// The stage's watermark (over all its input streams).
    pub watermark_ms: Option<i64>,
    /// Processing time minus the watermark, as of the last batch.
    pub lag_ms: Option<i64>,
}

/// One finished micro-batch.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BatchRow {
    pub batch: u64,
    pub records: u64,
    /// When it was cut, in Unix milliseconds.
    pub cut_ms: i64,
    pub scheduling_delay_ms: f64,
    pub processing_ms: f64,
    pub total_delay_ms: f64,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DeadLetterRow {
    pub operator: String,
    pub reason: String,
    pub batch: u64,
    pub partition: usize,
    /// The record's value, its first bytes as text.
    pub value: String,
}

/// A hot-reload event.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct VersionRow {
    pub operator: String,
    pub version: u64,
    pub batch: u64,
    pub adopted: bool,
    pub rolled_back: bool,
    pub detail: String,
    /// When the job decided, in Unix milliseconds.
    pub at_ms: i64,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CheckpointView {
    pub count: u64,
    pub last_batch: u64,
    pub last_bytes: u64,
    pub last_ms: f64,
    /// Seconds since the last checkpoint was written (since the start
    /// before the first).
    pub age_s: f64,
}
