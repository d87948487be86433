//! The commit: one thread writes each micro-batch to every sink and the
//! dead-letter file, in batch order, then commits the batch's input
//! positions (or lets a transactional sink commit them with its output).

use super::JobStats;
use super::dead_letter::{DeadLetter, write_dead_letters};
use super::job::JobError;
use crate::model::batch::Batch;
use crate::sink::{Ack, ConsumerOffsets, JsonlSink, Sink};
use crate::source::kafka::Offsets;
use std::path::PathBuf;
use std::sync::Arc;

pub(super) struct SinkMsg {
    pub(super) batch_no: u64,
    pub(super) parts: Vec<Batch>,
    pub(super) dead: Vec<DeadLetter>,
    /// The Kafka offsets after the batch's input, committed once the
    /// batch is written.
    pub(super) offsets: Option<Offsets>,
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
}

pub(super) type SinkThread = std::thread::JoinHandle<Result<Written, JobError>>;

pub(super) fn start_sink_thread(
    mut sinks: Vec<Box<dyn Sink>>,
    dead_letter: Option<PathBuf>,
    stats: Arc<JobStats>,
) -> Result<(std::sync::mpsc::SyncSender<SinkMsg>, SinkThread), JobError> {
    let mut dlq = match &dead_letter {
        Some(p) => Some(JsonlSink::create(p).map_err(|error| JobError::Sink {
            sink: format!("dead-letter {}", p.display()),
            error,
        })?),
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
            };
            for msg in rx {
                if !msg.dead.is_empty() {
                    if let (Some(dlq), Some(path)) = (&mut dlq, &dead_letter) {
                        write_dead_letters(dlq, &msg.dead).map_err(|error| JobError::Sink {
                            sink: format!("dead-letter {}", path.display()),
                            error,
                        })?;
                    }
                    written.dead += msg.dead.len() as u64;
                }
                let has_output = !msg.parts.iter().all(Batch::is_empty);
                let offsets = msg.offsets;
                let mut committed = false;
                for s in &mut sinks {
                    let result = if s.transactional() {
                        committed = true;
                        s.write_transaction(
                            msg.batch_no,
                            &msg.parts,
                            offsets.as_ref().map(|o| o as &dyn Ack),
                            true,
                        )
                    } else if has_output {
                        s.write(msg.batch_no, &msg.parts)
                    } else {
                        Ok(())
                    };
                    result.map_err(|error| JobError::Sink {
                        sink: s.describe(),
                        error,
                    })?;
                }
                let records = msg.parts.iter().map(|p| p.len() as u64).sum::<u64>();
                written.records += records;
                stats.written(records, msg.dead.len() as u64);
                // Every sink has the batch: its sources may forget it (a
                // transactional sink already committed the offsets).
                if let Some(o) = &offsets {
                    if !committed {
                        o.commit();
                    }
                    o.finish();
                }
            }
            for s in &mut sinks {
                s.close().map_err(|error| JobError::Sink {
                    sink: s.describe(),
                    error,
                })?;
            }
            if let Some(d) = &mut dlq {
                d.close().map_err(|error| JobError::Sink {
                    sink: "dead-letter".into(),
                    error,
                })?;
            }
            Ok(written)
        })
        .map_err(|e| JobError::Invalid(format!("cannot start sink thread: {e}")))?;
    Ok((tx, thread))
}
