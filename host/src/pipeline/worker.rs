//! CPU workers: dedicated threads that own operator instances and run a
//! stage's chain over partition batches, off the async runtime.

use crate::batch::{self, Batch};
use crate::operator::{BatchContext, Operator, OperatorError};
use crate::pipeline::{JobError, Split, split_for_exchange};
use std::sync::Arc;
use tokio::sync::oneshot;

/// Work for a worker: one partition batch through one stage.
pub(crate) struct Task {
    pub ctx: Arc<BatchContext>,
    /// Split the output by key into this many partitions for the exchange
    /// before the next (keyed) stage; done here, in parallel, rather than on
    /// the coordinator.
    pub split_for: Option<Arc<Split>>,
    pub stage: usize,
    /// The stream the input belongs to.
    pub stream: usize,
    pub partition: usize,
    pub input: Batch,
    pub reply: oneshot::Sender<Result<StageOutput, JobError>>,
}

/// A stage's output for one partition.
pub(crate) struct StageOutput {
    /// The stream the output belongs to.
    pub stream: usize,
    /// The output, or with `split_for` its parts by target partition.
    pub parts: Vec<Batch>,
    pub dead: Vec<DeadLetter>,
    /// Records that arrived after their windows closed.
    pub late: u64,
}

/// A record diverted to the dead-letter file.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The operator that rejected it (or trapped on its batch).
    pub operator: String,
    /// The reason.
    pub reason: String,
    /// Micro-batch number.
    pub batch_no: u64,
    /// Partition.
    pub partition: usize,
    /// The record's key.
    pub key: Option<Vec<u8>>,
    /// The record's value.
    pub value: Vec<u8>,
    /// The record's timestamp.
    pub timestamp: i64,
}

/// Which streams an operator reads and which its output belongs to, as
/// stream numbers.
#[derive(Debug, Clone, Default)]
pub(crate) struct Route {
    /// The streams it reads, in the order the operator declared them;
    /// `None`: all.
    pub accepts: Option<Vec<usize>>,
    /// The stream of its output; `None`: its input's.
    pub output: Option<usize>,
}

/// One operator instance of a worker.
pub(crate) struct WorkerOp {
    pub name: String,
    pub op: Box<dyn Operator>,
    pub route: Route,
}

/// A worker's operators: `stages[s][slot][i]` is operator `i` of stage `s`
/// for the worker's partition number `slot` (partition `slot * workers +
/// worker`).
pub(crate) struct WorkerOps {
    pub worker: usize,
    pub workers: usize,
    pub stages: Vec<Vec<Vec<WorkerOp>>>,
    pub dead_letter: bool,
}

/// How many times one batch may be retried after rejections before the
/// operator is considered broken (it keeps rejecting records it was not
/// given before).
const MAX_REJECTION_ROUNDS: usize = 3;

impl WorkerOps {
    pub(crate) fn serve(
        mut self,
        tasks: crossbeam_channel::Receiver<Task>,
        busy: Arc<std::sync::atomic::AtomicU64>,
    ) {
        for task in tasks {
            let started = std::time::Instant::now();
            let result = self
                .run_chain(
                    &task.ctx,
                    task.stage,
                    task.stream,
                    task.partition,
                    task.input,
                )
                .map(|(stream, batch, dead, late)| {
                    let chained = started.elapsed();
                    let parts = match &task.split_for {
                        Some(split) => {
                            split_for_exchange(&batch, split.partitions, stream, &split.exchange)
                        }
                        None => vec![batch],
                    };
                    tracing::trace!(
                        worker = self.worker,
                        stage = task.stage,
                        partition = task.partition,
                        "operators {chained:?}, split {:?}",
                        started.elapsed() - chained
                    );
                    StageOutput {
                        stream,
                        parts,
                        dead,
                        late,
                    }
                });
            busy.fetch_add(
                started.elapsed().as_nanos() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
            // The coordinator may have gone (job failed elsewhere); nothing to do then.
            let _ = task.reply.send(result);
        }
    }

    fn run_chain(
        &mut self,
        ctx: &BatchContext,
        stage: usize,
        mut stream: usize,
        partition: usize,
        mut input: Batch,
    ) -> Result<(usize, Batch, Vec<DeadLetter>, u64), JobError> {
        let worker = self.worker;
        let batch_no = ctx.batch_no;
        let dead_letter = self.dead_letter;
        let mut dead = Vec::new();
        let mut late = 0;
        let slot = partition / self.workers;
        for WorkerOp { name, op, route } in &mut self.stages[stage][slot] {
            // Records of streams the operator does not read pass it untouched.
            let ctx = match &route.accepts {
                None => ctx,
                Some(accepts) => match accepts.iter().position(|s| *s == stream) {
                    None => continue,
                    Some(input) => &BatchContext {
                        input,
                        ..ctx.clone()
                    },
                },
            };
            if let Some(output) = route.output {
                stream = output;
            }
            op.begin_batch(batch_no);
            let mut rounds = 0;
            loop {
                if input.is_empty() {
                    break;
                }
                match op.process_with(&mut input, ctx) {
                    Ok(out) => {
                        input = out;
                        break;
                    }
                    Err(OperatorError::BadRecords(mut rejected)) => {
                        rounds += 1;
                        // One entry per record, the first reason given.
                        rejected.sort_by_key(|r| r.index);
                        rejected.dedup_by_key(|r| r.index);
                        let bad_index = rejected.iter().find(|r| r.index as usize >= input.len());
                        if rejected.is_empty()
                            || bad_index.is_some()
                            || rounds > MAX_REJECTION_ROUNDS
                        {
                            return Err(JobError::Operator {
                                operator: name.clone(),
                                worker,
                                batch_no,
                                partition,
                                error: OperatorError::Host(format!(
                                    "the operator reported bad records inconsistently ({} rejection(s), round {rounds}, index out of range: {:?})",
                                    rejected.len(),
                                    bad_index.map(|r| r.index)
                                )),
                            });
                        }
                        if !dead_letter {
                            let first = &rejected[0];
                            let record = input
                                .get(first.index as usize)
                                .map(|r| preview(r.value))
                                .unwrap_or_default();
                            return Err(JobError::Rejected {
                                operator: name.clone(),
                                batch_no,
                                partition,
                                index: first.index,
                                reason: first.reason.clone(),
                                record,
                                more: rejected.len() - 1,
                            });
                        }
                        for r in &rejected {
                            if let Some(rec) = input.get(r.index as usize) {
                                dead.push(DeadLetter {
                                    operator: name.clone(),
                                    reason: r.reason.clone(),
                                    batch_no,
                                    partition,
                                    key: rec.key.map(<[u8]>::to_vec),
                                    value: rec.value.to_vec(),
                                    timestamp: rec.timestamp,
                                });
                            }
                        }
                        let indices: Vec<u32> = rejected.iter().map(|r| r.index).collect();
                        input = batch::without(&input, &indices);
                    }
                    Err(OperatorError::Trap(reason)) if dead_letter => {
                        // The instance was re-created; the batch that made it
                        // trap goes to the dead-letter file, and work goes on.
                        let why = format!("operator trapped on this record's batch: {reason}");
                        for rec in input.iter() {
                            dead.push(DeadLetter {
                                operator: name.clone(),
                                reason: why.clone(),
                                batch_no,
                                partition,
                                key: rec.key.map(<[u8]>::to_vec),
                                value: rec.value.to_vec(),
                                timestamp: rec.timestamp,
                            });
                        }
                        input = Batch::new();
                    }
                    Err(error) => {
                        return Err(JobError::Operator {
                            operator: name.clone(),
                            worker,
                            batch_no,
                            partition,
                            error,
                        });
                    }
                }
            }
            // Stateful operators emit here what became final with this batch.
            let finished = op.finish_batch(ctx).map_err(|error| JobError::Operator {
                operator: name.clone(),
                worker,
                batch_no,
                partition,
                error,
            })?;
            if !finished.is_empty() {
                batch::append(&mut input, &finished);
            }
            let side = op.side_output();
            late += side.late;
            for d in side.diverted {
                dead.push(DeadLetter {
                    operator: name.clone(),
                    reason: d.reason,
                    batch_no,
                    partition,
                    key: d.key,
                    value: d.value,
                    timestamp: d.timestamp,
                });
            }
        }
        Ok((stream, input, dead, late))
    }
}

/// The start of a record's value, quoted, for error messages.
pub fn preview(value: &[u8]) -> String {
    const MAX: usize = 80;
    let text = String::from_utf8_lossy(&value[..value.len().min(MAX)]).into_owned();
    if value.len() > MAX {
        format!("{text:?}...")
    } else {
        format!("{text:?}")
    }
}
