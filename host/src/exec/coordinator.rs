//! The coordinator: runs one micro-batch at a time through the stages —
//! partitions it, sends each partition batch to its worker, moves records
//! through the exchange before keyed stages, keeps the watermarks, probes
//! new operator versions — and hands the result to the commit thread.

use super::JobStats;
use super::batcher::Pending;
use super::checkpoint::{Cut, Plan};
use super::commit::SinkMsg;
use super::commit::Timing;
use super::dead_letter::DeadLetter;
use super::exchange::{Split, exchange};
use super::job::{JobError, Summary};
use super::plan::Stage;
use super::worker::{StageOutput, Task, Work, Workers};
use crate::metrics::JobMeters;
use crate::model::batch::{self, Batch};
use crate::model::partition;
use crate::operators::BatchContext;
use crate::source::kafka::Offsets;
use crate::source::position::Position;
use crate::spec::PartitionBy;
use crate::state::{Counts, Fingerprint};
use crate::wasm::reload::Reloader;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// What the coordinator needs of the job (the job itself holds sinks, which
/// need not be `Sync`).
pub(super) struct Settings {
    pub(super) name: String,
    pub(super) partitions: usize,
    pub(super) partition_by: PartitionBy,
    pub(super) progress: bool,
    /// The names of the job's streams, by number.
    pub(super) streams: Vec<String>,
}

/// A micro-batch for the coordinator's task.
pub(super) struct CutRequest {
    pub(super) pending: Pending,
    pub(super) cut: Cut,
    pub(super) records_in: u64,
    /// When the batch was cut.
    pub(super) cut_at: Instant,
    pub(super) done: oneshot::Sender<Result<(), JobError>>,
}

/// The reading side's handle on the coordinator task: at most one batch is
/// processed while the next one accumulates.
pub(super) struct BatchRunner {
    pub(super) tx: mpsc::Sender<CutRequest>,
    pub(super) in_flight: Option<oneshot::Receiver<Result<(), JobError>>>,
    pub(super) task: tokio::task::JoinHandle<Summary>,
    pub(super) streams: usize,
    pub(super) records_in: u64,
    pub(super) bytes_in: u64,
    /// The job stopped on a signal rather than at the end of its input.
    pub(super) interrupted: bool,
    pub(super) stats: Arc<JobStats>,
    pub(super) meters: Arc<JobMeters>,
}

impl BatchRunner {
    pub(super) fn start(
        mut coordinator: Coordinator,
        streams: usize,
        stats: Arc<JobStats>,
        meters: Arc<JobMeters>,
    ) -> Self {
        let (tx, mut rx) = mpsc::channel::<CutRequest>(1);
        let task = tokio::spawn(async move {
            while let Some(mut req) = rx.recv().await {
                coordinator.summary.records_in = req.records_in;
                let result = coordinator.cut(&mut req.pending, req.cut, req.cut_at).await;
                let failed = result.is_err();
                let _ = req.done.send(result);
                if failed {
                    break;
                }
            }
            let summary = coordinator.summary.clone();
            // Dropping the coordinator joins the worker threads, which waits
            // for calls still running (a failed batch leaves the other
            // partitions' calls going): not on the async threads.
            let _ = tokio::task::spawn_blocking(move || drop(coordinator)).await;
            summary
        });
        BatchRunner {
            tx,
            in_flight: None,
            task,
            streams,
            records_in: 0,
            bytes_in: 0,
            interrupted: false,
            stats,
            meters,
        }
    }

    /// Counts a chunk handed over by `source` as read.
    pub(super) fn count_in(&mut self, source: usize, chunk: &Batch) {
        let bytes = batch::payload_bytes(chunk);
        self.records_in += chunk.len() as u64;
        self.bytes_in += bytes as u64;
        self.stats.read(chunk.len() as u64, bytes as u64);
        if let Some(m) = self.meters.sources.get(source) {
            m.taken(chunk.len(), bytes);
        }
    }

    /// Notes the records read and not yet in a batch.
    pub(super) fn pending(&self, pending: &Pending) {
        let n = pending.len() as u64;
        self.meters.pending.store(n, Ordering::Relaxed);
    }

    /// Hands the pending records over as one micro-batch, once the previous
    /// batch is done; fails with the previous batch's error, if any.
    pub(super) async fn cut(&mut self, pending: &mut Pending, cut: Cut) -> Result<(), JobError> {
        self.wait().await?;
        let (done, rx) = oneshot::channel();
        let req = CutRequest {
            pending: std::mem::replace(pending, Pending::new(self.streams)),
            cut,
            records_in: self.records_in,
            cut_at: Instant::now(),
            done,
        };
        self.meters.pending.store(0, Ordering::Relaxed);
        self.tx
            .send(req)
            .await
            .map_err(|_| JobError::Invalid("the coordinator stopped".into()))?;
        self.in_flight = Some(rx);
        Ok(())
    }

    pub(super) async fn wait(&mut self) -> Result<(), JobError> {
        match self.in_flight.take() {
            Some(rx) => rx
                .await
                .map_err(|_| JobError::Invalid("the coordinator stopped".into()))?,
            None => Ok(()),
        }
    }

    /// Waits for the last batch and stops the coordinator (closing the
    /// worker and sink channels); returns the summary so far and the last
    /// batch's result.
    pub(super) async fn finish(mut self) -> (Summary, Result<(), JobError>) {
        let last = self.wait().await;
        drop(self.tx);
        let mut summary = match self.task.await {
            Ok(summary) => summary,
            Err(e) => {
                return (
                    Summary::default(),
                    Err(JobError::Invalid(format!("coordinator task failed: {e}"))),
                );
            }
        };
        summary.records_in = self.records_in;
        summary.bytes_in = self.bytes_in;
        summary.interrupted = self.interrupted;
        (summary, last)
    }
}

/// One stream's records of a micro-batch, by partition.
pub(super) struct Flow {
    pub(super) stream: usize,
    pub(super) parts: Vec<Batch>,
}

pub(super) struct Coordinator {
    pub(super) job: Settings,
    pub(super) stages: Vec<Stage>,
    pub(super) workers: Workers,
    pub(super) summary: Summary,
    pub(super) sink_tx: std::sync::mpsc::SyncSender<SinkMsg>,
    pub(super) rr_next: usize,
    pub(super) next_batch_no: u64,
    /// Per stage, the largest event time seen (for watermarks).
    pub(super) stage_max_ts: Vec<Vec<Option<i64>>>,
    /// Per stage, the event time its watermark derives from: the smallest
    /// of its input streams' largest event times (none until every input
    /// stream has had a record), as of the last batch.
    pub(super) stage_watermark_base: Vec<Option<i64>>,
    /// Per stage and stream, the processing time of the last batch that
    /// brought it records (for `idle_timeout`).
    pub(super) stage_last_records: Vec<Vec<Option<i64>>>,
    /// The processing time of the job's first batch: a stream that has had
    /// no record is idle from then on.
    pub(super) first_batch_time: Option<i64>,
    pub(super) last_progress: Instant,
    pub(super) started: Instant,
    pub(super) stats: Arc<JobStats>,
    pub(super) meters: Arc<JobMeters>,
    pub(super) reloader: Reloader,
    /// Every partition runs this batch, even without records: a new
    /// operator version is probed on it.
    pub(super) probe_all: bool,
    /// When the next checkpoint is taken (a job with checkpoints).
    pub(super) checkpoint: Option<Plan>,
    /// Per source, where the batches so far have taken it.
    pub(super) positions: Vec<Option<Position>>,
    /// What the job is made of, for its checkpoints.
    pub(super) fingerprint: Fingerprint,
    /// The counts of the runs before this one (from the checkpoint).
    pub(super) counts_before: Counts,
}

impl Coordinator {
    /// Runs the pending records as one micro-batch. An empty batch is cut
    /// only when a stateful stage needs the boundary (to close windows on
    /// time); a [`Cut::Final`] with `emit_all` makes stateful operators
    /// emit everything.
    pub(super) async fn cut(
        &mut self,
        pending: &mut Pending,
        cut: Cut,
        cut_at: Instant,
    ) -> Result<(), JobError> {
        let started = Instant::now();
        let late_before = self.summary.late;
        let had_records = !pending.is_empty();
        let batch_no = self.next_batch_no;
        let timing = Timing {
            cut_at,
            started,
            first_read: pending.first_read.unwrap_or(cut_at),
            cut_ms: crate::model::time::now_ms()
                - i64::try_from(cut_at.elapsed().as_millis()).unwrap_or(0),
            records: pending.len() as u64,
        };
        let result = self.run_batch(pending, cut, timing).await;
        // A new operator version probed on this batch is adopted or refused
        // between this batch and the next.
        if result.is_ok() && self.next_batch_no > batch_no {
            self.reloader.end_batch(batch_no);
        }
        // A new operator version's instances are prepared now, in the
        // pause before the next batch, not during its probe batch.
        if result.is_ok() && self.reloader.prepare_needed() {
            for sender in &self.workers.senders {
                let _ = sender.send(Work::Prepare);
            }
        }
        self.stats.batch_done(
            had_records,
            self.summary.late - late_before,
            started.elapsed(),
        );
        result
    }

    pub(super) async fn run_batch(
        &mut self,
        pending: &mut Pending,
        cut: Cut,
        timing: Timing,
    ) -> Result<(), JobError> {
        let end_of_input = cut.end_of_input();
        let stateful = self.stages.iter().any(|s| s.stateful);
        let last_checkpoint = self.checkpoint.is_some() && matches!(cut, Cut::Final { .. });
        if pending.is_empty() && !stateful && !last_checkpoint {
            return Ok(());
        }
        self.note_positions(pending);
        let had_records = !pending.is_empty();
        let offsets = Offsets::after(pending.offsets.iter().map(|(_, p)| p));
        pending.offsets.clear();
        let streams = pending.take();
        let batch_no = self.next_batch_no;
        self.next_batch_no += 1;
        self.reloader.begin_batch(batch_no);
        self.probe_all = self.reloader.probing(batch_no);
        if had_records {
            self.summary.batches += 1;
        }
        let processing_time = crate::model::time::now_ms();
        // One flow per stream; with a stateful stage even an empty stream
        // flows, so that every stateful operator sees the batch boundary.
        let mut flows: Vec<Flow> = streams
            .into_iter()
            .enumerate()
            .filter(|(_, b)| stateful || !b.is_empty())
            .map(|(stream, input)| Flow {
                stream,
                parts: self.partition_input(input),
            })
            .collect();
        let mut dead = Vec::new();
        let mut marks = Vec::new();
        // Whether the flows are already split by key for the stage they feed.
        let mut exchanged = false;
        for s in 0..self.stages.len() {
            if self.stages[s].keyed && !exchanged {
                for flow in &mut flows {
                    flow.parts = exchange(
                        std::mem::take(&mut flow.parts),
                        self.job.partitions,
                        flow.stream,
                        &self.stages[s].exchange,
                    );
                }
            }
            if self.stages[s].ops.is_empty() {
                continue;
            }
            // Workers split their output for a keyed next stage themselves.
            let split_for = self.stages.get(s + 1).filter(|n| n.keyed).map(|n| {
                Arc::new(Split {
                    partitions: self.job.partitions,
                    exchange: n.exchange.clone(),
                })
            });
            exchanged = split_for.is_some();
            let mut ctx = BatchContext {
                batch_no,
                processing_time,
                end_of_input,
                has_records: had_records,
                ..BatchContext::default()
            };
            if self.stages[s].stateful {
                let (before, after) =
                    self.advance_watermark(s, &flows, processing_time, &mut marks);
                ctx.max_event_time_before = before;
                ctx.max_event_time_after = after;
            }
            let started = Instant::now();
            flows = self
                .run_stage(Arc::new(ctx), s, flows, &mut dead, split_for)
                .await?;
            tracing::debug!(
                batch = batch_no,
                stage = s,
                "stage took {:?}",
                started.elapsed()
            );
        }
        if !marks.is_empty() {
            self.meters.set_watermarks(marks);
        }
        // The sinks get every stream, partition by partition.
        let mut parts = vec![Batch::new(); self.job.partitions];
        for flow in flows {
            for (p, part) in flow.parts.into_iter().enumerate() {
                if parts[p].is_empty() {
                    parts[p] = part;
                } else {
                    batch::append(&mut parts[p], &part);
                }
            }
        }
        let active = had_records || !dead.is_empty() || parts.iter().any(|p| !p.is_empty());
        let due = self
            .checkpoint
            .as_mut()
            .is_some_and(|plan| plan.due(cut, active));
        let checkpoint = match due {
            true => Some(Box::new(self.take_checkpoint(batch_no).await?)),
            false => None,
        };
        if parts.iter().all(Batch::is_empty)
            && dead.is_empty()
            && offsets.is_none()
            && checkpoint.is_none()
        {
            // Nothing to write: the batch is done now.
            if had_records {
                self.meters.batch_written(timing.row(batch_no));
            }
            return Ok(());
        }
        let msg = SinkMsg {
            batch_no,
            parts,
            dead,
            offsets,
            checkpoint,
            timing: had_records.then_some(timing),
        };
        let tx = self.sink_tx.clone();
        // The sink thread applies back-pressure through its bounded channel:
        // the time it holds the batch back is the last stage's.
        let waiting = Instant::now();
        let sent = tokio::task::spawn_blocking(move || tx.send(msg).is_ok())
            .await
            .map_err(|e| JobError::Invalid(e.to_string()))?;
        if !sent {
            return Err(JobError::Invalid("sink thread stopped".into()));
        }
        if let Some(last) = self.meters.stages.last() {
            last.backpressured_ns.add_time(waiting.elapsed());
        }
        if self.job.progress {
            self.report_progress();
        }
        Ok(())
    }

    pub(super) fn partition_input(&mut self, input: Batch) -> Vec<Batch> {
        let n = self.job.partitions;
        if n == 1 {
            return vec![input];
        }
        if self.job.partition_by == PartitionBy::RoundRobin {
            // Records are dealt in contiguous runs of equal size (one bulk
            // copy per partition); the partition receiving the first run
            // rotates from batch to batch, so small batches spread too.
            let len = input.len();
            let mut parts = vec![Batch::new(); n];
            let mut start = 0;
            for i in 0..n {
                let take = len / n + usize::from(i < len % n);
                parts[(self.rr_next + i) % n] = batch::slice(&input, start..start + take);
                start += take;
            }
            self.rr_next = (self.rr_next + 1) % n;
            return parts;
        }
        let mut parts = vec![Batch::new(); n];
        for r in input.iter() {
            let p = match r.key {
                Some(k) => partition::for_key(k, n as u32) as usize,
                None => {
                    let p = self.rr_next;
                    self.rr_next = (self.rr_next + 1) % n;
                    p
                }
            };
            parts[p].push_record(r);
        }
        parts
    }

    pub(super) async fn run_stage(
        &mut self,
        ctx: Arc<BatchContext>,
        stage: usize,
        flows: Vec<Flow>,
        dead: &mut Vec<DeadLetter>,
        split_for: Option<Arc<Split>>,
    ) -> Result<Vec<Flow>, JobError> {
        let n_workers = self.workers.senders.len();
        let mut replies = Vec::new();
        for flow in flows {
            for (partition, input) in flow.parts.into_iter().enumerate() {
                let (reply, rx) = oneshot::channel();
                if input.is_empty() && !self.stages[stage].stateful && !self.probe_all {
                    let _ = reply.send(Ok(StageOutput {
                        stream: flow.stream,
                        parts: vec![Batch::new(); split_for.as_ref().map_or(1, |s| s.partitions)],
                        dead: Vec::new(),
                        late: 0,
                    }));
                } else {
                    let w = partition % n_workers;
                    let task = Task {
                        ctx: ctx.clone(),
                        split_for: split_for.clone(),
                        stage,
                        stream: flow.stream,
                        partition,
                        input,
                        reply,
                    };
                    let sender = self.workers.senders[w].clone();
                    // Bounded queue: wait off the async threads if it is full.
                    let sent = tokio::task::spawn_blocking(move || {
                        sender.send(Work::Batch(Box::new(task))).is_ok()
                    })
                    .await
                    .map_err(|e| JobError::Invalid(e.to_string()))?;
                    if !sent {
                        return Err(JobError::WorkerLost(w));
                    }
                }
                replies.push((partition, rx));
            }
        }
        // Regroup the outputs by the stream they now belong to (a join turns
        // two streams into one), each target partition assembled in source
        // order, so records of one source partition keep their order.
        let targets = split_for
            .as_ref()
            .map_or(self.job.partitions, |s| s.partitions);
        let mut out: Vec<Flow> = Vec::new();
        for (partition, rx) in replies {
            let result = rx
                .await
                .map_err(|_| JobError::WorkerLost(partition % n_workers))??;
            dead.extend(result.dead);
            self.summary.late += result.late;
            let flow = match out.iter().position(|f| f.stream == result.stream) {
                Some(i) => &mut out[i],
                None => {
                    out.push(Flow {
                        stream: result.stream,
                        parts: vec![Batch::new(); targets],
                    });
                    out.last_mut().expect("just pushed")
                }
            };
            let placed = match split_for {
                // Unsplit output stays in its partition.
                None => vec![(
                    partition,
                    result.parts.into_iter().next().unwrap_or_default(),
                )],
                Some(_) => result.parts.into_iter().enumerate().collect(),
            };
            for (t, part) in placed {
                if part.is_empty() {
                    continue;
                }
                if flow.parts[t].is_empty() {
                    flow.parts[t] = part;
                } else {
                    batch::append(&mut flow.parts[t], &part);
                }
            }
        }
        Ok(out)
    }

    pub(super) fn report_progress(&mut self) {
        if self.last_progress.elapsed() < Duration::from_secs(2) {
            return;
        }
        self.last_progress = Instant::now();
        let secs = self.started.elapsed().as_secs_f64();
        let busy = self.workers.busy.load(Ordering::Relaxed) as f64 / 1e9;
        eprintln!(
            "[{}] {:.0}s: batch {} | {} records in ({:.0}/s) | worker busy {:.0}%",
            self.job.name,
            secs,
            self.summary.batches,
            self.summary.records_in,
            self.summary.records_in as f64 / secs.max(1e-9),
            100.0 * busy / (secs * self.workers.senders.len() as f64).max(1e-9),
        );
    }
}
