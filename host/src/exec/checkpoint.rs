//! The job's side of checkpoints: which batch cuts may take one and when
//! one is due ([`Cut`], [`Plan`]), and how a job starts — afresh or from
//! the checkpoint its store holds, refused when the job changed
//! incompatibly with it ([`open`]).
//!
//! The protocol, per batch N that takes a checkpoint: the coordinator
//! collects every operator instance's changed state after N's last stage
//! and sends it with N's output to the commit thread; that thread writes N
//! to the sinks, makes them durable and notes how far each goes, writes the
//! checkpoint file (synced, renamed into place), and only then commits the
//! input positions — for an exactly-once Kafka sink, its transaction with
//! `sluice-batch=N` in the consumer-offset metadata. On recovery, such a
//! sink's committed batch decides which checkpoint is adopted, so exactly
//! one of "N committed" and "N not committed" holds for state and output.

use super::job::{Job, JobError};
use crate::sink;
use crate::source;
use crate::spec::{Delivery, Every, SinkConfig, SourceConfig};
use crate::state::{Fingerprint, Instance, Loaded, Meta, Store};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// Where and how often a job keeps checkpoints (the job file's `[checkpoint]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpointing {
    /// The checkpoint directory.
    pub dir: PathBuf,
    /// When a checkpoint is taken.
    pub every: Every,
    /// Throw away the checkpoints there and start afresh (`--reset-state`).
    pub reset: bool,
}

/// What a checkpoint of `job` depends on: keyed state is spread by
/// partition, positions are positions in the sources, progress is progress
/// in the sinks; then what the job file added (operators and settings).
pub(super) fn fingerprint(job: &mut Job, sink_configs: &[SinkConfig]) -> Fingerprint {
    let mut fp = Fingerprint::default();
    fp.push("partitions", job.partitions.to_string());
    fp.push("partition_by", format!("{:?}", job.partition_by));
    for (i, (name, s)) in job.sources.iter().enumerate() {
        fp.push(format!("sources[{i}]"), source_identity(s));
        if let Some(name) = name {
            fp.push(format!("sources[{i}].name"), name.clone());
        }
    }
    for (i, op) in job.operators.iter().enumerate() {
        fp.push(format!("operators[{i}]"), op.name().to_string());
    }
    for (i, cfg) in sink_configs.iter().enumerate() {
        fp.push(format!("sinks[{i}]"), sink_identity(cfg));
    }
    fp.0.append(&mut job.fingerprint.0);
    fp
}

/// What a checkpoint's positions of a source are positions in: its kind
/// and input (a Kafka source's topics and group, not its brokers, which
/// may move).
fn source_identity(s: &SourceConfig) -> String {
    match s {
        SourceConfig::Kafka(k) => format!("kafka {} as {}", k.topics.join(","), k.group),
        SourceConfig::Generator {
            value_size,
            keys,
            seed,
            ..
        } => format!("generator seed {seed}, value_size {value_size}, keys {keys:?}"),
        other => source::describe(other),
    }
}

/// What a checkpoint's progress of a sink is progress in.
fn sink_identity(s: &SinkConfig) -> String {
    match s {
        SinkConfig::Kafka(k) => format!("kafka {} ({:?})", k.topic, k.delivery),
        other => sink::describe(other),
    }
}

impl Job {
    /// Where and how often the job keeps checkpoints, if it does.
    pub fn checkpointing(&self) -> Option<&Checkpointing> {
        self.checkpoint.as_ref()
    }

    /// Throws the job's checkpoints away at the start and starts afresh
    /// (`--reset-state`); nothing without checkpoints.
    pub fn with_reset_state(mut self) -> Self {
        if let Some(c) = &mut self.checkpoint {
            c.reset = true;
        }
        self
    }

    /// Keeps the job's checkpoints in `dir` (taken as `every` says), as
    /// [`JobBuilder::checkpoint`]; a supervisor uses it for jobs whose file
    /// names none.
    pub fn with_checkpoint(mut self, dir: impl Into<PathBuf>, every: Every) -> Self {
        self.checkpoint = Some(Checkpointing {
            dir: dir.into(),
            every,
            reset: false,
        });
        self
    }

    /// The flag that makes a stop drain the job: set it before raising the
    /// stop, and the job emits every open window as at the end of its input
    /// (`--drain`). Without it, a checkpointed job stops with a final
    /// checkpoint and emits its open windows after the resume, when the
    /// watermark passes them.
    pub fn drain_flag(&self) -> Arc<AtomicBool> {
        self.drain.clone()
    }
}

/// What kind of batch cut a batch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cut {
    /// A batch of the running job.
    Regular,
    /// A batch split off the records left at a stop, whose source positions
    /// are those of the batch after it: no checkpoint here.
    Head,
    /// The job's last batch: a checkpoint is taken; with `emit_all`, stateful
    /// operators emit everything (end of input, or a drain).
    Final {
        /// Emit every open window and result.
        emit_all: bool,
    },
}

impl Cut {
    /// Whether operators emit everything with this batch.
    pub(super) fn end_of_input(self) -> bool {
        matches!(self, Cut::Final { emit_all: true })
    }
}

/// When the running job takes its next checkpoint.
pub(super) struct Plan {
    pub(super) every: Every,
    pub(super) last: Instant,
    /// Batches with records or output since the last checkpoint.
    pub(super) batches: u64,
}

impl Plan {
    pub(super) fn new(every: Every) -> Self {
        Plan {
            every,
            last: Instant::now(),
            batches: 0,
        }
    }

    /// Counts a batch, `active` if it had records or output; whether it
    /// takes a checkpoint. Idle batches (a stateful job marking time) add
    /// nothing worth a checkpoint.
    pub(super) fn due(&mut self, cut: Cut, active: bool) -> bool {
        self.batches += u64::from(active);
        if self.batches == 0 {
            return false;
        }
        let due = match (cut, self.every) {
            (Cut::Head, _) => false,
            (Cut::Final { .. }, _) => true,
            (Cut::Regular, Every::Interval(i)) => self.last.elapsed() >= i,
            (Cut::Regular, Every::Batches(n)) => self.batches >= n,
        };
        if due {
            self.last = Instant::now();
            self.batches = 0;
        }
        due
    }
}

/// A checkpoint on its way from the coordinator to the commit thread: the
/// metadata so far (the commit thread adds the sinks' progress) and each
/// instance's changed state.
pub(super) struct Taken {
    pub(super) meta: Meta,
    pub(super) changes: Vec<(Instance, Vec<u8>)>,
}

/// A job's checkpoints as it starts: the store, the checkpoint it resumes
/// from, and the number of its first batch.
pub(super) struct Opened {
    pub(super) store: Store,
    pub(super) loaded: Option<Loaded>,
    pub(super) first_batch: u64,
}

/// The job's store and the checkpoint it resumes from, if any.
pub(super) fn open(job: &Job) -> Result<Option<Opened>, JobError> {
    let Some(c) = &job.checkpoint else {
        return Ok(None);
    };
    // One transaction per checkpoint: the interval must leave it time to
    // commit before the brokers abort it.
    for s in &job.sink_configs {
        if let (SinkConfig::Kafka(k), Every::Interval(i)) = (s, c.every)
            && k.delivery == Delivery::ExactlyOnce
        {
            let budget = crate::sink::kafka::transaction_budget(k).map_err(JobError::Invalid)?;
            if i >= budget / 2 {
                return Err(JobError::Invalid(format!(
                    "checkpoint.interval = {i:?} is too long for the exactly-once sink on `{}`: a transaction spans a checkpoint interval and must be written within {budget:?} (two thirds of its transaction.timeout.ms); take checkpoints at most every {:?}, or raise transaction.timeout.ms in the sink's config",
                    k.topic,
                    budget / 2
                )));
            }
        }
    }
    let failed = |e: crate::state::StoreError| JobError::Checkpoint(e.to_string());
    let mut store = Store::open(&c.dir).map_err(failed)?;
    if c.reset {
        tracing::info!(
            "--reset-state: removing the checkpoints in {}",
            c.dir.display()
        );
        store.reset().map_err(failed)?;
    }
    // With an exactly-once sink, the batch its last transaction committed
    // decides: a checkpoint of a later batch was prepared, never adopted.
    let committed = committed_batch(job)?;
    let had_checkpoints = store.has_checkpoints().map_err(failed)?;
    let loaded = store
        .load(|b| committed.is_none_or(|c| c.is_some_and(|c| b <= c)))
        .map_err(failed)?;
    // Batch numbers go on after the last committed one, even afresh, so
    // that the committed batch always names the newest transaction.
    let after_committed = committed.flatten().map_or(0, |c| c + 1);
    if !had_checkpoints {
        return Ok(Some(Opened {
            store,
            loaded: None,
            first_batch: after_committed,
        }));
    }
    if let Some(Some(c)) = committed
        && loaded.as_ref().is_none_or(|l| l.meta.batch != c)
    {
        return Err(JobError::Checkpoint(format!(
            "the exactly-once sink committed the output of batch {c}, but the checkpoint of that batch in {} is missing or damaged, so state and output cannot be matched; start afresh with --reset-state (the state is then lost)",
            store.dir().display()
        )));
    }
    if let Some(l) = &loaded {
        if let Some(m) = job.fingerprint.compare(&l.meta.fingerprint) {
            return Err(JobError::Incompatible {
                dir: store.dir().to_owned(),
                changes: m.to_string(),
            });
        }
        tracing::info!(
            "resuming `{}` from its checkpoint of batch {} in {}",
            job.name,
            l.meta.batch,
            store.dir().display()
        );
    }
    let first_batch = loaded
        .as_ref()
        .map_or(after_committed, |l| l.meta.batch + 1);
    Ok(Some(Opened {
        store,
        loaded,
        first_batch,
    }))
}

/// For a job with an exactly-once Kafka sink, the batch of the last
/// transaction it committed (`Some(None)`: none yet); `None` for others.
fn committed_batch(job: &Job) -> Result<Option<Option<u64>>, JobError> {
    let exactly_once = job
        .sink_configs
        .iter()
        .any(|s| matches!(s, SinkConfig::Kafka(k) if k.delivery == Delivery::ExactlyOnce));
    if !exactly_once {
        return Ok(None);
    }
    let Some(SourceConfig::Kafka(k)) = job.sources.first().map(|(_, s)| s) else {
        return Ok(None);
    };
    crate::source::kafka::committed_batch(k)
        .map(Some)
        .map_err(|e| JobError::Checkpoint(format!("cannot read the committed batch: {e}")))
}

impl super::coordinator::Coordinator {
    /// Takes the source positions a batch's records bring.
    pub(super) fn note_positions(&mut self, pending: &mut super::batcher::Pending) {
        for (source, position) in std::mem::take(&mut pending.positions) {
            if self.positions.len() <= source {
                self.positions.resize(source + 1, None);
            }
            let slot = &mut self.positions[source];
            *slot = Some(match slot.take() {
                Some(old) => old.merged(position),
                None => position,
            });
        }
    }

    /// Collects the checkpoint of `batch_no`, whose stages have all run:
    /// every instance's changed state, the positions, the watermarks.
    pub(super) async fn take_checkpoint(&mut self, batch_no: u64) -> Result<Taken, JobError> {
        let started = Instant::now();
        let mut replies = Vec::new();
        for (w, sender) in self.workers.senders.iter().enumerate() {
            let (reply, rx) = tokio::sync::oneshot::channel();
            let sender = sender.clone();
            let sent = tokio::task::spawn_blocking(move || {
                sender.send(super::worker::Work::Checkpoint(reply)).is_ok()
            })
            .await
            .map_err(|e| JobError::Invalid(e.to_string()))?;
            if !sent {
                return Err(JobError::WorkerLost(w));
            }
            replies.push((w, rx));
        }
        let mut changes = Vec::new();
        for (w, rx) in replies {
            changes.extend(rx.await.map_err(|_| JobError::WorkerLost(w))??);
        }
        let versions = self
            .reloader
            .operators()
            .into_iter()
            .filter_map(|op| {
                let v = self.reloader.current_version(&op)?;
                Some((op, v, String::new()))
            })
            .collect();
        let meta = Meta {
            job: self.job.name.clone(),
            batch: batch_no,
            prev: None,
            taken_at_ms: crate::model::time::now_ms(),
            fingerprint: self.fingerprint.clone(),
            sources: self.positions.clone(),
            watermarks: crate::state::Watermarks {
                stage_max_ts: self.stage_max_ts.clone(),
                stage_watermark_base: self.stage_watermark_base.clone(),
                stage_last_records: self.stage_last_records.clone(),
                first_batch_time: self.first_batch_time,
                rr_next: self.rr_next,
            },
            sinks: Vec::new(),
            dead_letter: serde_json::Value::Null,
            versions,
            counts: crate::state::Counts {
                records_in: self.counts_before.records_in + self.summary.records_in,
                records_out: self.counts_before.records_out,
                batches: self.counts_before.batches + self.summary.batches,
            },
        };
        tracing::debug!(
            batch = batch_no,
            "checkpoint state collected from the workers in {:?}",
            started.elapsed()
        );
        Ok(Taken { meta, changes })
    }
}
