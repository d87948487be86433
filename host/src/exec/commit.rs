//! The commit: one thread writes each micro-batch to every sink and the
//! dead-letter file, in batch order, then commits the batch's input
//! positions (or lets a transactional sink commit them with its output).
//!
//! With checkpoints, positions commit only at a checkpoint: the thread
//! makes the sinks durable, notes how far each goes, writes the
//! checkpoint, and then commits the input of every batch since the last
//! one — an exactly-once sink's transaction, recording the batch, last.

use super::JobStats;
use super::checkpoint::Taken;
use super::dead_letter::{DeadLetter, write_dead_letters};
use super::job::JobError;
use crate::metrics::{BatchRow, DeadLetterRow, JobMeters, RECENT_DEAD_LETTERS};
use crate::model::batch::{Batch, payload_bytes};
use crate::sink::{Ack, ConsumerOffsets, JsonlSink, Sink};
use crate::source::kafka::Offsets;
use crate::state::Store;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

pub(super) struct SinkMsg {
    pub(super) batch_no: u64,
    pub(super) parts: Vec<Batch>,
    pub(super) dead: Vec<DeadLetter>,
    /// The Kafka offsets after the batch's input, committed once the
    /// batch is written.
    pub(super) offsets: Option<Offsets>,
    /// The checkpoint this batch ends with.
    pub(super) checkpoint: Option<Box<Taken>>,
    /// When a batch with records was read, cut and started.
    pub(super) timing: Option<Timing>,
}

/// The moments of a micro-batch before its commit.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timing {
    pub(super) cut_at: Instant,
    pub(super) started: Instant,
    pub(super) first_read: Instant,
    /// `cut_at` on the wall clock, in Unix milliseconds.
    pub(super) cut_ms: i64,
    pub(super) records: u64,
}

impl Timing {
    /// The batch's row once its sinks are written, now.
    pub(super) fn row(&self, batch: u64) -> BatchRow {
        let now = Instant::now();
        let ms =
            |from: Instant, to: Instant| to.saturating_duration_since(from).as_secs_f64() * 1e3;
        BatchRow {
            batch,
            records: self.records,
            cut_ms: self.cut_ms,
            scheduling_delay_ms: ms(self.cut_at, self.started),
            processing_ms: ms(self.started, now),
            total_delay_ms: ms(self.first_read, now),
        }
    }
}

/// Bytes of a dead letter's value the dashboard shows.
const DEAD_LETTER_TEXT: usize = 200;

/// The latest of a batch's dead letters, as the dashboard shows them.
fn dead_letter_rows(dead: &[DeadLetter]) -> impl Iterator<Item = DeadLetterRow> + '_ {
    let skip = dead.len().saturating_sub(RECENT_DEAD_LETTERS);
    dead[skip..].iter().map(|d| DeadLetterRow {
        operator: d.operator.clone(),
        reason: d.reason.clone(),
        batch: d.batch_no,
        partition: d.partition,
        value: String::from_utf8_lossy(&d.value[..d.value.len().min(DEAD_LETTER_TEXT)])
            .into_owned(),
    })
}

/// A batch's Kafka offsets, as its sinks acknowledge it.
impl Ack for Offsets {
    fn commit(&self) {
        Offsets::commit(self);
    }

    fn consumer_offsets(&self) -> Result<ConsumerOffsets, String> {
        self.for_transaction()
    }
}

pub(super) struct Written {
    pub(super) records: u64,
    pub(super) dead: u64,
    /// Checkpoints written, their bytes and the time writing them took.
    pub(super) checkpoints: u64,
    pub(super) checkpoint_bytes: u64,
    pub(super) checkpoint_time: std::time::Duration,
}

/// Where the dead-letter file starts.
pub(super) enum Resume {
    /// At the length a checkpoint recorded.
    To(serde_json::Value),
    /// Empty.
    Afresh,
    /// After what is there.
    Append,
}

pub(super) type SinkThread = std::thread::JoinHandle<Result<Written, JobError>>;

fn sink_error(sink: String) -> impl FnOnce(std::io::Error) -> JobError {
    move |error| JobError::Sink { sink, error }
}

pub(super) fn start_sink_thread(
    mut sinks: Vec<Box<dyn Sink>>,
    dead_letter: Option<PathBuf>,
    dead_resume: Resume,
    mut store: Option<Store>,
    stats: Arc<JobStats>,
    meters: Arc<JobMeters>,
) -> Result<(std::sync::mpsc::SyncSender<SinkMsg>, SinkThread), JobError> {
    let dlq_name = |p: &PathBuf| format!("dead-letter {}", p.display());
    let mut dlq = match &dead_letter {
        Some(p) => {
            let mut d = JsonlSink::create(p).map_err(sink_error(dlq_name(p)))?;
            match &dead_resume {
                Resume::To(v) => d.resume(Some(v)),
                Resume::Afresh => d.resume(None),
                Resume::Append => Ok(()),
            }
            .map_err(sink_error(dlq_name(p)))?;
            Some(d)
        }
        None => None,
    };
    // Two batches in flight: the next batch computes while this one is written.
    let (tx, rx) = std::sync::mpsc::sync_channel::<SinkMsg>(2);
    let thread = std::thread::Builder::new()
        .name("sluice-sinks".into())
        .spawn(move || {
            let mut written = Written {
                records: 0,
                dead: 0,
                checkpoints: 0,
                checkpoint_bytes: 0,
                checkpoint_time: std::time::Duration::ZERO,
            };
            // With checkpoints: the input of the batches since the last one.
            let mut uncommitted: Option<Offsets> = None;
            for msg in rx {
                if !msg.dead.is_empty() {
                    if let (Some(dlq), Some(path)) = (&mut dlq, &dead_letter) {
                        write_dead_letters(dlq, &msg.dead).map_err(sink_error(dlq_name(path)))?;
                    }
                    written.dead += msg.dead.len() as u64;
                    meters.dead_letters.extend(dead_letter_rows(&msg.dead));
                }
                let has_output = !msg.parts.iter().all(Batch::is_empty);
                let checkpointing = store.is_some();
                let offsets = match (checkpointing, msg.offsets) {
                    (false, o) => o,
                    (true, o) => {
                        match (&mut uncommitted, o) {
                            (Some(u), Some(o)) => u.merge(o),
                            (None, Some(o)) => uncommitted = Some(o),
                            (_, None) => {}
                        }
                        None
                    }
                };
                let mut committed = false;
                for s in &mut sinks {
                    let result = if s.transactional() {
                        committed = true;
                        s.write_transaction(
                            msg.batch_no,
                            &msg.parts,
                            offsets.as_ref().map(|o| o as &dyn Ack),
                            !checkpointing,
                        )
                    } else if has_output {
                        s.write(msg.batch_no, &msg.parts)
                    } else {
                        Ok(())
                    };
                    result.map_err(sink_error(s.describe()))?;
                }
                let records = msg.parts.iter().map(|p| p.len() as u64).sum::<u64>();
                written.records += records;
                stats.written(records, msg.dead.len() as u64);
                let bytes = msg
                    .parts
                    .iter()
                    .map(|p| payload_bytes(p) as u64)
                    .sum::<u64>();
                for m in &meters.sinks {
                    m.records.add(records);
                    m.bytes.add(bytes);
                }
                if let (Some(store), Some(mut taken)) = (&mut store, msg.checkpoint) {
                    // Durable first, then the checkpoint, then the commit.
                    let synced = std::time::Instant::now();
                    for s in &mut sinks {
                        let progress = s.checkpoint().map_err(sink_error(s.describe()))?;
                        taken.meta.sinks.push(progress);
                    }
                    if let (Some(d), Some(path)) = (&mut dlq, &dead_letter) {
                        taken.meta.dead_letter =
                            d.checkpoint().map_err(sink_error(dlq_name(path)))?;
                    }
                    taken.meta.counts.records_out += written.records;
                    let sync_took = synced.elapsed();
                    let started = std::time::Instant::now();
                    let w = store
                        .write(&mut taken.meta, &taken.changes)
                        .map_err(|e| JobError::Checkpoint(e.to_string()))?;
                    written.checkpoints += 1;
                    written.checkpoint_bytes += w.bytes;
                    stats.checkpointed(msg.batch_no, w.bytes, w.took);
                    tracing::debug!(
                        batch = msg.batch_no,
                        "checkpoint of {} bytes written in {:?}",
                        w.bytes,
                        w.took
                    );
                    let input = uncommitted.take();
                    let mut committed = false;
                    for s in sinks.iter_mut().filter(|s| s.transactional()) {
                        committed = true;
                        s.write_transaction(
                            msg.batch_no,
                            &[],
                            input.as_ref().map(|o| o as &dyn Ack),
                            true,
                        )
                        .map_err(sink_error(s.describe()))?;
                    }
                    if let Some(o) = &input {
                        if !committed {
                            o.commit();
                        }
                        o.finish();
                    }
                    // From the sinks' sync to the commit.
                    let took = started.elapsed() + sync_took;
                    written.checkpoint_time += took;
                    meters.checkpoint.observe(took);
                }
                // Every sink has the batch: its sources may forget it (a
                // transactional sink already committed the offsets).
                if let Some(o) = &offsets {
                    if !committed {
                        o.commit();
                    }
                    o.finish();
                }
                if let Some(t) = msg.timing {
                    meters.batch_written(t.row(msg.batch_no));
                }
            }
            for s in &mut sinks {
                s.close().map_err(sink_error(s.describe()))?;
            }
            if let Some(d) = &mut dlq {
                d.close().map_err(sink_error("dead-letter".into()))?;
            }
            if let Some(store) = &mut store {
                store.wait_compaction();
            }
            Ok(written)
        })
        .map_err(|e| JobError::Invalid(format!("cannot start sink thread: {e}")))?;
    Ok((tx, thread))
}
