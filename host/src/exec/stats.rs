//! Live figures of a running job, readable from any thread while it runs.

use crate::metrics::{CheckpointView, JobFigures, JobMeters, Totals, VersionRow};
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
    /// When the last checkpoint was written, in Unix milliseconds.
    last_checkpoint_ms: AtomicU64,
    skipped: SkipCount,
    /// Each with when it was recorded, in Unix milliseconds.
    versions: Mutex<Vec<(VersionEvent, i64)>>,
    /// The detailed meters of the run going on (or the last one).
    meters: Mutex<Option<Run>>,
}

/// What the figures of a run need besides its meters.
#[derive(Debug, Clone)]
pub(crate) struct Run {
    pub(crate) meters: Arc<JobMeters>,
    pub(crate) started_ms: i64,
    pub(crate) interval_ms: Option<u64>,
    pub(crate) partitions: usize,
    pub(crate) workers: usize,
    pub(crate) checkpoints: bool,
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
            versions: self.versions().iter().map(|(e, _)| e.clone()).collect(),
            ..self.counters()
        }
    }

    /// The counters now, without the version events.
    fn counters(&self) -> StatsSnapshot {
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
            versions: Vec::new(),
        }
    }

    /// Starts the figures of a run on these meters.
    pub(crate) fn start_run(&self, run: Run) {
        *self
            .meters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(run);
    }

    /// Everything known about the job now, for the dashboard and the
    /// Prometheus exposition; `state` is what the caller knows of it
    /// (`running`, `finished`, ...). `None` before its run has started.
    pub fn figures(&self, job: &str, state: &str) -> Option<JobFigures> {
        let run = self
            .meters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()?;
        let s = self.counters();
        let timed = self.versions().clone();
        let now_ms = crate::model::time::now_ms();
        let in_force = versions_in_force(timed.iter().map(|(e, _)| e));
        let version = |op: &str| in_force.get(op).copied().unwrap_or(1);
        let checkpoint_age_from = match s.checkpoints {
            0 => run.started_ms,
            _ => self.last_checkpoint_ms.load(Ordering::Relaxed) as i64,
        };
        Some(JobFigures {
            job: job.to_string(),
            state: state.to_string(),
            now_ms,
            started_ms: run.started_ms,
            interval_ms: run.interval_ms,
            partitions: run.partitions,
            workers: run.workers,
            totals: Totals {
                records_in: s.records_in,
                bytes_in: s.bytes_in,
                records_out: s.records_out,
                dead_lettered: s.dead_lettered,
                late: s.late,
                skipped: s.skipped,
                batches: s.batches,
            },
            meters: run.meters.view(version),
            checkpoints: run.checkpoints.then(|| CheckpointView {
                count: s.checkpoints,
                last_batch: s.last_checkpoint_batch,
                last_bytes: s.last_checkpoint_bytes,
                last_ms: s.last_checkpoint_us as f64 / 1e3,
                age_s: now_ms.saturating_sub(checkpoint_age_from).max(0) as f64 / 1e3,
            }),
            versions: timed
                .into_iter()
                .map(|(v, at_ms)| VersionRow {
                    operator: v.operator,
                    version: v.version,
                    batch: v.batch,
                    adopted: v.adopted,
                    rolled_back: v.rolled_back,
                    detail: v.detail,
                    at_ms,
                })
                .collect(),
        })
    }

    fn versions(&self) -> std::sync::MutexGuard<'_, Vec<(VersionEvent, i64)>> {
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
        self.last_checkpoint_ms.store(
            crate::model::time::now_ms().max(0) as u64,
            Ordering::Relaxed,
        );
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
        versions.push((event, crate::model::time::now_ms()));
    }
}

/// Per operator, the version in force after `events` (oldest first): the
/// last adopted one, or after a rollback the one it replaced.
fn versions_in_force<'a>(
    events: impl IntoIterator<Item = &'a VersionEvent>,
) -> std::collections::HashMap<&'a str, u64> {
    let mut adopted: std::collections::HashMap<&str, Vec<u64>> = Default::default();
    for e in events {
        let chain = adopted
            .entry(e.operator.as_str())
            .or_insert_with(|| vec![1]);
        match (e.adopted, e.rolled_back) {
            (_, true) => {
                if chain.last() == Some(&e.version) && chain.len() > 1 {
                    chain.pop();
                }
            }
            (true, false) => chain.push(e.version),
            (false, false) => {}
        }
    }
    adopted
        .into_iter()
        .map(|(op, chain)| (op, chain.last().copied().unwrap_or(1)))
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn event(version: u64, adopted: bool, rolled_back: bool) -> VersionEvent {
        VersionEvent {
            operator: "op".into(),
            version,
            batch: 0,
            adopted,
            rolled_back,
            detail: String::new(),
        }
    }

    #[test]
    fn the_version_in_force_follows_adoptions_refusals_and_rollbacks() {
        let in_force = |events: &[VersionEvent]| versions_in_force(events).get("op").copied();
        assert_eq!(in_force(&[]), None);
        assert_eq!(in_force(&[event(2, true, false)]), Some(2));
        assert_eq!(
            in_force(&[event(2, true, false), event(3, false, false)]),
            Some(2)
        );
        let rolled = [
            event(2, true, false),
            event(3, true, false),
            event(3, false, true),
        ];
        assert_eq!(in_force(&rolled), Some(2));
        // A rollback of the first adopted version goes back to version 1.
        assert_eq!(
            in_force(&[event(2, true, false), event(2, false, true)]),
            Some(1)
        );
    }
}
