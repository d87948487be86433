//! Live figures of a running job, readable from any thread while it runs.

use crate::wasm::reload::{VersionEvent, VersionLog};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Version events a job keeps, the latest.
pub const MAX_VERSION_EVENTS: usize = 1000;

/// A running job's counters. The pipeline updates them as batches go by;
/// [`JobStats::snapshot`] reads them at any time (see
/// [`crate::exec::Job::stats`]).
#[derive(Debug, Default)]
pub struct JobStats {
    records_in: AtomicU64,
    bytes_in: AtomicU64,
    records_out: AtomicU64,
    dead_lettered: AtomicU64,
    late: AtomicU64,
    batches: AtomicU64,
    last_batch_us: AtomicU64,
    checkpoints: AtomicU64,
    last_checkpoint_batch: AtomicU64,
    last_checkpoint_bytes: AtomicU64,
    last_checkpoint_us: AtomicU64,
    skipped: SkipCount,
    versions: Mutex<Vec<VersionEvent>>,
}

/// The counters of a job at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StatsSnapshot {
    /// Records read from sources.
    pub records_in: u64,
    /// Bytes of record payload read.
    pub bytes_in: u64,
    /// Records written to the sinks.
    pub records_out: u64,
    /// Records sent to the dead-letter file.
    pub dead_lettered: u64,
    /// Records that arrived after their windows closed.
    pub late: u64,
    /// Records dropped under `on_breach = "skip"`.
    pub skipped: u64,
    /// Non-empty micro-batches processed.
    pub batches: u64,
    /// How long the last micro-batch took to process, in milliseconds.
    pub last_batch_ms: u64,
    /// Checkpoints written while the job ran.
    pub checkpoints: u64,
    /// The batch of the last checkpoint written.
    pub last_checkpoint_batch: u64,
    /// The size of the last checkpoint file, in bytes.
    pub last_checkpoint_bytes: u64,
    /// How long writing the last checkpoint took, in microseconds.
    pub last_checkpoint_us: u64,
    /// Operator versions adopted or refused while the job ran, oldest first
    /// (the last [`MAX_VERSION_EVENTS`]).
    pub versions: Vec<VersionEvent>,
}

impl JobStats {
    pub(crate) fn new(skipped: SkipCount) -> Self {
        JobStats {
            skipped,
            ..JobStats::default()
        }
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            records_in: self.records_in.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            records_out: self.records_out.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            late: self.late.load(Ordering::Relaxed),
            skipped: self.skipped.get(),
            batches: self.batches.load(Ordering::Relaxed),
            last_batch_ms: self.last_batch_us.load(Ordering::Relaxed) / 1000,
            checkpoints: self.checkpoints.load(Ordering::Relaxed),
            last_checkpoint_batch: self.last_checkpoint_batch.load(Ordering::Relaxed),
            last_checkpoint_bytes: self.last_checkpoint_bytes.load(Ordering::Relaxed),
            last_checkpoint_us: self.last_checkpoint_us.load(Ordering::Relaxed),
            versions: self.versions().clone(),
        }
    }

    fn versions(&self) -> std::sync::MutexGuard<'_, Vec<VersionEvent>> {
        // A panic while pushing an event leaves the list usable.
        self.versions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn read(&self, records: u64, bytes: u64) {
        self.records_in.fetch_add(records, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn batch_done(&self, had_records: bool, late: u64, took: std::time::Duration) {
        if had_records {
            self.batches.fetch_add(1, Ordering::Relaxed);
        }
        self.late.fetch_add(late, Ordering::Relaxed);
        self.last_batch_us
            .store(took.as_micros() as u64, Ordering::Relaxed);
    }

    pub(crate) fn checkpointed(&self, batch: u64, bytes: u64, took: std::time::Duration) {
        self.checkpoints.fetch_add(1, Ordering::Relaxed);
        self.last_checkpoint_batch.store(batch, Ordering::Relaxed);
        self.last_checkpoint_bytes.store(bytes, Ordering::Relaxed);
        self.last_checkpoint_us
            .store(took.as_micros() as u64, Ordering::Relaxed);
    }

    pub(crate) fn written(&self, records: u64, dead: u64) {
        self.records_out.fetch_add(records, Ordering::Relaxed);
        self.dead_lettered.fetch_add(dead, Ordering::Relaxed);
    }
}

impl VersionLog for JobStats {
    fn record(&self, event: VersionEvent) {
        let mut versions = self.versions();
        if versions.len() == MAX_VERSION_EVENTS {
            versions.remove(0);
        }
        versions.push(event);
    }
}

/// The number of records a job dropped under `on_breach = "skip"`, shared
/// by its workers; clones count together.
#[derive(Debug, Clone, Default)]
pub struct SkipCount(Arc<AtomicU64>);

impl SkipCount {
    /// Records dropped so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Counts `n` more dropped records.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
}
