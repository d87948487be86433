//! CPU workers: dedicated threads that own operator instances — one per
//! operator and partition, so an operator's state is one partition's — and
//! run a stage's chain over partition batches, off the async runtime.

use super::SkipCount;
use super::dead_letter::DeadLetter;
use super::exchange::{Split, split_for_exchange};
use super::isolation::{Aside, Place, Policy, Run};
use super::job::{Job, JobError};
use super::plan::Stage;
use crate::metrics::{CallFigures, JobMeters, OperatorMeter};
use crate::model::batch::{self, Batch};
use crate::operators::{BatchContext, Diverted, Operator, OperatorFactory};
use crate::spec::limits::OnBreach;
use crate::state::{DeltaWriter, Instance, InstanceState};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
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

/// Per operator instance, its encoded state changes since the last checkpoint.
pub(crate) type Changed = Vec<(Instance, Vec<u8>)>;

/// What a worker is asked to do.
pub(crate) enum Work {
    /// Run a partition batch through a stage.
    Batch(Box<Task>),
    /// Write every instance's state changes since the last checkpoint
    /// (between batches: the queue is in order).
    Checkpoint(oneshot::Sender<Result<Changed, JobError>>),
    /// Let every instance prepare for a new operator version (between
    /// batches, see [`Operator::prepare`]).
    Prepare,
}

/// The name of the instance of operator `i` of stage `stage` for
/// `partition` in checkpoints.
pub(crate) fn instance(name: &str, stage: usize, i: usize, partition: usize) -> Instance {
    (format!("{name}@{stage}.{i}"), partition as u32)
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
    /// What the operator's calls did, over all its partitions.
    pub meter: Arc<OperatorMeter>,
}

/// A worker's operators: `stages[s][slot][i]` is operator `i` of stage `s`
/// for the worker's partition number `slot` (partition `slot * workers +
/// worker`).
pub(crate) struct WorkerOps {
    pub worker: usize,
    pub workers: usize,
    pub stages: Vec<Vec<Vec<WorkerOp>>>,
    pub dead_letter: bool,
    /// What a breach of the job's limits does.
    pub on_breach: OnBreach,
    /// Counts the records dropped under `on_breach = "skip"`.
    pub skipped: SkipCount,
    /// The run's meters: each stage's busy time.
    pub meters: Arc<JobMeters>,
}

impl WorkerOps {
    pub(crate) fn serve(
        mut self,
        tasks: crossbeam_channel::Receiver<Work>,
        busy: Arc<std::sync::atomic::AtomicU64>,
    ) {
        for work in tasks {
            let task = match work {
                Work::Batch(task) => task,
                Work::Checkpoint(reply) => {
                    let _ = reply.send(self.checkpoint());
                    continue;
                }
                Work::Prepare => {
                    let ops = self.stages.iter_mut().flatten().flatten();
                    ops.for_each(|w| w.op.prepare());
                    continue;
                }
            };
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
            let took = started.elapsed();
            busy.fetch_add(took.as_nanos() as u64, std::sync::atomic::Ordering::Relaxed);
            if let Some(stage) = self.meters.stages.get(task.stage) {
                stage.busy_ns.add_time(took);
            }
            // The coordinator may have gone (job failed elsewhere); nothing to do then.
            let _ = task.reply.send(result);
        }
    }

    /// Every instance's state changes since the last checkpoint.
    fn checkpoint(&mut self) -> Result<Changed, JobError> {
        let mut out = Vec::new();
        for (s, slots) in self.stages.iter_mut().enumerate() {
            for (slot, ops) in slots.iter_mut().enumerate() {
                let partition = slot * self.workers + self.worker;
                for (i, WorkerOp { name, op, .. }) in ops.iter_mut().enumerate() {
                    let mut w = DeltaWriter::default();
                    op.checkpoint(&mut w).map_err(|e| {
                        JobError::Checkpoint(format!(
                            "operator `{name}` (partition {partition}) could not write its state: {e}"
                        ))
                    })?;
                    if !w.bytes.is_empty() {
                        out.push((instance(name, s, i, partition), w.bytes));
                    }
                }
            }
        }
        Ok(out)
    }

    fn run_chain(
        &mut self,
        ctx: &BatchContext,
        stage: usize,
        mut stream: usize,
        partition: usize,
        mut input: Batch,
    ) -> Result<(usize, Batch, Vec<DeadLetter>, u64), JobError> {
        let batch_no = ctx.batch_no;
        let policy = Policy {
            dead_letter: self.dead_letter,
            on_breach: self.on_breach,
        };
        let mut dead = Vec::new();
        let mut late = 0;
        let slot = partition / self.workers;
        for WorkerOp {
            name,
            op,
            route,
            meter,
        } in &mut self.stages[stage][slot]
        {
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
            let place = Place {
                operator: name,
                worker: self.worker,
                batch_no,
                partition,
                dead_letter: policy.dead_letter,
            };
            op.begin_batch(batch_no);
            let (records_in, bytes_in) = (input.len(), batch::payload_bytes(&input));
            let (dead_before, started) = (dead.len(), std::time::Instant::now());
            let mut run = Run {
                op: op.as_mut(),
                ctx,
                place: &place,
                policy,
                dead: &mut dead,
                skipped: &self.skipped,
                meter,
            };
            input = run.apply(input)?;
            // Stateful operators emit here what became final with this batch.
            let finished = op.finish_batch(ctx).map_err(|error| place.failed(error))?;
            if !finished.is_empty() {
                batch::append(&mut input, &finished);
            }
            let side = op.side_output();
            late += side.late;
            let call = CallFigures {
                records_in,
                bytes_in,
                records_out: input.len(),
                bytes_out: batch::payload_bytes(&input),
                took: started.elapsed(),
                dead_letters: 0,
                late: side.late,
                memory: op.memory_used(),
            };
            let dead_letter = |d: Diverted| DeadLetter {
                operator: name.clone(),
                reason: d.reason,
                batch_no,
                partition,
                key: d.key,
                value: d.value,
                timestamp: d.timestamp,
                headers: d.headers,
            };
            dead.extend(side.diverted.into_iter().map(dead_letter));
            // Records refused at a limit: stop, or set exactly them aside.
            if let Some(breach) = side.breach {
                match policy.aside(&breach) {
                    None => return Err(place.failed(breach)),
                    Some(Aside::DeadLetter) => {
                        dead.extend(side.refused.into_iter().map(dead_letter));
                    }
                    Some(Aside::Skip) => {
                        self.skipped.add(side.refused.len() as u64);
                        tracing::warn!(
                            operator = name.as_str(),
                            worker = self.worker,
                            batch = batch_no,
                            partition,
                            "skipped {} record(s) the operator could not take: {breach}",
                            side.refused.len()
                        );
                    }
                }
            }
            let dead_letters = dead.len() - dead_before;
            meter.called(
                partition,
                CallFigures {
                    dead_letters,
                    ..call
                },
            );
        }
        Ok((stream, input, dead, late))
    }
}

pub(super) struct Workers {
    pub(super) senders: Vec<crossbeam_channel::Sender<Work>>,
    pub(super) threads: Vec<std::thread::JoinHandle<()>>,
    pub(super) busy: Arc<AtomicU64>,
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.senders.clear();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Starts the workers; with checkpoints their instances record their
/// changes, and with `restored` (a checkpoint's state) each takes its own back.
pub(super) fn start_workers(
    job: &Job,
    stages: &[Stage],
    restored: Option<Arc<std::sync::Mutex<HashMap<Instance, InstanceState>>>>,
    meters: Arc<JobMeters>,
) -> Result<Workers, JobError> {
    let track = job.checkpoint.is_some();
    let busy = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::new();
    let mut threads = Vec::new();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let n_workers = job.workers.min(job.partitions);
    for w in 0..n_workers {
        // The partitions this worker runs: p with p % n_workers == w.
        let slots = (w..job.partitions).step_by(n_workers).count();
        let (tx, rx) = crossbeam_channel::bounded::<Work>(job.partitions * 2 + 4);
        let restored = restored.clone();
        senders.push(tx);
        let factories: Vec<Vec<(Arc<dyn OperatorFactory>, Route)>> = stages
            .iter()
            .map(|s| {
                s.ops
                    .iter()
                    .cloned()
                    .zip(s.routes.iter().cloned())
                    .collect()
            })
            .collect();
        let job_name = job.name.clone();
        let dead_letter = job.dead_letter.is_some();
        let limits = job.limits.clone();
        let skipped = job.skipped.clone();
        let ready_tx = ready_tx.clone();
        let busy = busy.clone();
        let halt = job.halt.clone();
        let meters = meters.clone();
        let thread = std::thread::Builder::new()
            .name(format!("sluice-worker-{w}"))
            .spawn(move || {
                // Every instance this thread creates, now or later (after a
                // trap, for a new version), is halted with the job.
                halt.install();
                // One instance of each operator per partition, so that an
                // operator's state is the state of one partition.
                let mut stages = Vec::new();
                for (s, ops) in factories.iter().enumerate() {
                    let mut per_partition = Vec::new();
                    for slot in 0..slots {
                        let partition = slot * n_workers + w;
                        let mut instances = Vec::new();
                        for (i, (f, route)) in ops.iter().enumerate() {
                            let made =
                                f.instantiate_limited(&job_name, w, &limits)
                                    .and_then(|mut op| {
                                        if track {
                                            op.track_changes();
                                        }
                                        let state = restored.as_ref().and_then(|r| {
                                            r.lock()
                                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                                .remove(&instance(f.name(), s, i, partition))
                                        });
                                        if let Some(state) = state {
                                            let entries: Vec<(Vec<u8>, Vec<u8>)> =
                                                state.into_iter().collect();
                                            op.restore_entries(&entries)?;
                                        }
                                        Ok(op)
                                    });
                            match made {
                                Ok(op) => instances.push(WorkerOp {
                                    name: f.name().to_string(),
                                    op,
                                    route: route.clone(),
                                    meter: meters.stages[s].operators[i].clone(),
                                }),
                                Err(error) => {
                                    let _ = ready_tx.send((
                                        w,
                                        Err(JobError::Init {
                                            operator: f.name().to_string(),
                                            worker: w,
                                            error,
                                        }),
                                    ));
                                    return;
                                }
                            }
                        }
                        per_partition.push(instances);
                    }
                    stages.push(per_partition);
                }
                let _ = ready_tx.send((w, Ok(())));
                drop(ready_tx);
                WorkerOps {
                    worker: w,
                    workers: n_workers,
                    stages,
                    dead_letter,
                    on_breach: limits.on_breach,
                    skipped,
                    meters,
                }
                .serve(rx, busy);
            })
            .map_err(|e| JobError::Invalid(format!("cannot start worker thread: {e}")))?;
        threads.push(thread);
    }
    drop(ready_tx);
    let workers = Workers {
        senders,
        threads,
        busy,
    };
    let mut ready = vec![false; workers.threads.len()];
    for _ in 0..workers.threads.len() {
        match ready_rx.recv() {
            Ok((w, Ok(()))) => ready[w] = true,
            Ok((_, Err(e))) => return Err(e),
            // A worker died (panicked) before reporting: name the first one
            // that did not report.
            Err(_) => {
                return Err(JobError::WorkerLost(
                    ready.iter().position(|r| !r).unwrap_or(0),
                ));
            }
        }
    }
    Ok(workers)
}
