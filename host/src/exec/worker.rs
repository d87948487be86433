//! CPU workers: dedicated threads that own operator instances and run a
//! stage's chain over partition batches, off the async runtime.
//!
//! When a call traps or exceeds a limit and the job sets such records aside
//! (a dead-letter file for traps, `on_breach = "skip"` or `"dead-letter"`
//! for breaches), a stateless operator's batch is re-run in halves, on the
//! fresh instance, until the records that make it fail are found: only
//! those are set aside, and the others are processed as usual. The search
//! is bounded by [`MAX_ISOLATION_CALLS`] and [`MAX_ISOLATION_FAILURES`].

use super::SkipCount;
use crate::exec::{JobError, Split, split_for_exchange};
use crate::model::batch::{self, Batch, preview};
use crate::operators::{BatchContext, Operator, OperatorError};
use crate::spec::limits::OnBreach;
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
    /// The operator that rejected it (or trapped or exceeded a limit on it).
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
    /// The record's headers.
    pub headers: Vec<crate::operators::OwnedHeader>,
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
    /// What a breach of the job's limits does.
    pub on_breach: OnBreach,
    /// Counts the records dropped under `on_breach = "skip"`.
    pub skipped: SkipCount,
}

/// How many times one batch may be retried after rejections before the
/// operator is considered broken (it keeps rejecting records it was not
/// given before).
const MAX_REJECTION_ROUNDS: usize = 3;

/// The most calls the search for the records at fault in one failed batch
/// may make (per operator). Finding one record among `n` takes about
/// `2 * log2(n)` calls.
pub(crate) const MAX_ISOLATION_CALLS: usize = 128;

/// The most of those calls that may fail. A failed call can take the whole
/// `cpu_per_batch` deadline, so this bounds the time a search takes: about
/// `MAX_ISOLATION_FAILURES + 1` deadlines at worst. Finding one record among
/// `n` takes about `log2(n)` failed calls.
pub(crate) const MAX_ISOLATION_FAILURES: usize = 32;

/// Where records go when a call on them failed and the job goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Aside {
    /// To the dead-letter file, with the reason.
    DeadLetter,
    /// Dropped for that operator, and counted.
    Skip,
}

/// The job's rules for failed calls.
#[derive(Debug, Clone, Copy)]
struct Policy {
    dead_letter: bool,
    on_breach: OnBreach,
}

impl Policy {
    /// Where the records of a call that failed with `error` go, or `None`
    /// when the failure stops the job. A trap sets records aside when the
    /// job has a dead-letter file; a breach as `on_breach` says.
    fn aside(self, error: &OperatorError) -> Option<Aside> {
        match error {
            OperatorError::Trap(_) if self.dead_letter => Some(Aside::DeadLetter),
            OperatorError::Limit { .. } => match self.on_breach {
                OnBreach::Fail => None,
                OnBreach::Skip => Some(Aside::Skip),
                OnBreach::DeadLetter => Some(Aside::DeadLetter),
            },
            _ => None,
        }
    }
}

/// Where in the job an operator is running, for errors and dead letters.
struct Place<'a> {
    operator: &'a str,
    worker: usize,
    batch_no: u64,
    partition: usize,
    dead_letter: bool,
}

impl Place<'_> {
    /// The job's error for an operator failure here.
    fn failed(&self, error: OperatorError) -> JobError {
        JobError::Operator {
            operator: self.operator.to_string(),
            worker: self.worker,
            batch_no: self.batch_no,
            partition: self.partition,
            error,
        }
    }

    /// A dead letter for record `rec`, diverted here for `reason`.
    fn dead_letter(&self, rec: batch::Record<'_>, reason: &str) -> DeadLetter {
        DeadLetter {
            operator: self.operator.to_string(),
            reason: reason.to_string(),
            batch_no: self.batch_no,
            partition: self.partition,
            key: rec.key.map(<[u8]>::to_vec),
            value: rec.value.to_vec(),
            timestamp: rec.timestamp,
            headers: crate::operators::owned_headers(rec.headers),
        }
    }
}

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
        let batch_no = ctx.batch_no;
        let policy = Policy {
            dead_letter: self.dead_letter,
            on_breach: self.on_breach,
        };
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
            let place = Place {
                operator: name,
                worker: self.worker,
                batch_no,
                partition,
                dead_letter: policy.dead_letter,
            };
            op.begin_batch(batch_no);
            let mut run = Run {
                op: op.as_mut(),
                ctx,
                place: &place,
                policy,
                dead: &mut dead,
                skipped: &self.skipped,
            };
            input = run.apply(input)?;
            // Stateful operators emit here what became final with this batch.
            let finished = op.finish_batch(ctx).map_err(|error| place.failed(error))?;
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
                    headers: d.headers,
                });
            }
        }
        Ok((stream, input, dead, late))
    }
}

/// A call's output, or the records of the failed call and why it failed.
type Attempt = Result<Batch, (Batch, OperatorError)>;

/// One operator applied to one partition batch.
struct Run<'a> {
    op: &'a mut dyn Operator,
    ctx: &'a BatchContext,
    place: &'a Place<'a>,
    policy: Policy,
    dead: &'a mut Vec<DeadLetter>,
    skipped: &'a SkipCount,
}

impl Run<'_> {
    /// The operator's output for `input`. Rejected records go to the
    /// dead-letter file (or stop the job); when a call traps or exceeds a
    /// limit, the records at fault are set aside as the job's policy says
    /// (or the job stops), found by bisection when the operator is
    /// stateless.
    fn apply(&mut self, input: Batch) -> Result<Batch, JobError> {
        let (input, error) = match self.process(input)? {
            Ok(out) => return Ok(out),
            Err(failed) => failed,
        };
        let Some(aside) = self.policy.aside(&error) else {
            return Err(self.place.failed(error));
        };
        if input.len() > 1 && self.op.stateless() {
            return self.isolate(input, aside, error);
        }
        let scope = if input.len() == 1 {
            "this record".to_string()
        } else {
            format!("this record's batch ({} records)", input.len())
        };
        self.set_aside(&input, aside, &error, &scope);
        Ok(Batch::new())
    }

    /// Runs the halves of `input`, whose call failed with `error`, and
    /// recursively the halves of every part that fails again, depth first,
    /// so that the output keeps the input's order; a failing single record
    /// is set aside. Once [`MAX_ISOLATION_CALLS`] calls or
    /// [`MAX_ISOLATION_FAILURES`] failures are spent, the parts not done yet
    /// are set aside whole, as `aside` says, for `error`.
    fn isolate(
        &mut self,
        input: Batch,
        aside: Aside,
        error: OperatorError,
    ) -> Result<Batch, JobError> {
        let mut out = Batch::new();
        let (mut calls, mut failures) = (0, 0);
        // The parts still to run; the next one is last.
        let mut todo = halves(&input);
        while let Some(part) = todo.pop() {
            if calls == MAX_ISOLATION_CALLS || failures == MAX_ISOLATION_FAILURES {
                todo.push(part);
                let scope = format!(
                    "this record's part of the batch (not searched further after {calls} calls, {failures} failed)"
                );
                for rest in todo.iter().rev() {
                    self.set_aside(rest, aside, &error, &scope);
                }
                break;
            }
            calls += 1;
            let (part, failure) = match self.process(part)? {
                Ok(done) => {
                    batch::append(&mut out, &done);
                    continue;
                }
                Err(failed) => failed,
            };
            failures += 1;
            let Some(part_aside) = self.policy.aside(&failure) else {
                return Err(self.place.failed(failure));
            };
            if part.len() > 1 {
                todo.extend(halves(&part));
            } else {
                self.set_aside(&part, part_aside, &failure, "this record");
            }
        }
        Ok(out)
    }

    /// Calls the operator on `input`, and again without the records it
    /// rejects, which go to the dead-letter file (at most
    /// [`MAX_REJECTION_ROUNDS`] rounds). A failure other than a rejection
    /// comes back with the records of the failed call. A rejection without
    /// a dead-letter file, or an inconsistent one, stops the job.
    fn process(&mut self, mut input: Batch) -> Result<Attempt, JobError> {
        let place = self.place;
        let mut rounds = 0;
        loop {
            if input.is_empty() {
                return Ok(Ok(input));
            }
            let mut rejected = match self.op.process_with(&mut input, self.ctx) {
                Ok(out) => return Ok(Ok(out)),
                Err(OperatorError::BadRecords(rejected)) => rejected,
                Err(error) => return Ok(Err((input, error))),
            };
            rounds += 1;
            // One entry per record, the first reason given.
            rejected.sort_by_key(|r| r.index);
            rejected.dedup_by_key(|r| r.index);
            let bad_index = rejected.iter().find(|r| r.index as usize >= input.len());
            if rejected.is_empty() || bad_index.is_some() || rounds > MAX_REJECTION_ROUNDS {
                return Err(place.failed(OperatorError::Host(format!(
                    "the operator reported bad records inconsistently ({} rejection(s), round {rounds}, index out of range: {:?})",
                    rejected.len(),
                    bad_index.map(|r| r.index)
                ))));
            }
            if !place.dead_letter {
                let first = &rejected[0];
                let record = input
                    .get(first.index as usize)
                    .map(|r| preview(r.value))
                    .unwrap_or_default();
                return Err(JobError::Rejected {
                    operator: place.operator.to_string(),
                    batch_no: place.batch_no,
                    partition: place.partition,
                    index: first.index,
                    reason: first.reason.clone(),
                    record,
                    more: rejected.len() - 1,
                });
            }
            for r in &rejected {
                if let Some(rec) = input.get(r.index as usize) {
                    self.dead.push(place.dead_letter(rec, &r.reason));
                }
            }
            let indices: Vec<u32> = rejected.iter().map(|r| r.index).collect();
            input = batch::without(&input, &indices);
        }
    }

    /// Sends the records of a call that failed with `error` to the
    /// dead-letter file, or drops and counts them; `scope` says which
    /// records the call failed on, for the reason ("this record", ...).
    fn set_aside(&mut self, records: &Batch, aside: Aside, error: &OperatorError, scope: &str) {
        let place = self.place;
        match aside {
            Aside::DeadLetter => {
                let reason = match error {
                    OperatorError::Trap(reason) => format!("operator trapped on {scope}: {reason}"),
                    other => format!("operator failed on {scope}: {other}"),
                };
                for rec in records.iter() {
                    self.dead.push(place.dead_letter(rec, &reason));
                }
            }
            Aside::Skip => {
                self.skipped.add(records.len() as u64);
                tracing::warn!(
                    operator = place.operator,
                    worker = place.worker,
                    batch = place.batch_no,
                    partition = place.partition,
                    "skipped {} record(s), the operator failed on {scope}: {error}",
                    records.len()
                );
            }
        }
    }
}

/// The two halves of `input`, the first half last (see [`Run::isolate`]).
fn halves(input: &Batch) -> Vec<Batch> {
    let mid = input.len() / 2;
    vec![
        batch::slice(input, mid..input.len()),
        batch::slice(input, 0..mid),
    ]
}
