//! The micro-batcher: reads the chunks the sources send and cuts them into
//! micro-batches, at the record bound, the byte bound, each interval and at
//! the stop, while the coordinator runs the previous batch.

use super::checkpoint::{self, Cut, Plan};
use super::commit::{Resume, start_sink_thread};
use super::coordinator::{BatchRunner, Coordinator, Settings};
use super::job::{DEFAULT_INTERVAL, Job, JobError, STOP_GRACE, Summary};
use super::plan::{split_stages, stream_number};
use super::worker::start_workers;
use crate::model::batch::{self, Batch};
use crate::source::kafka::Positions;
use crate::source::position::Position;
use crate::source::{self, Chunk};
use crate::spec::limits::OnBreach;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, watch};

impl Job {
    /// Runs until every source has ended or `stop` turns true; then the
    /// records already read are processed and the sinks flushed.
    pub async fn run(mut self, stop: watch::Receiver<bool>) -> Result<Summary, JobError> {
        let started = Instant::now();
        let sources: Vec<usize> = self
            .sources
            .iter()
            .map(|(n, _)| stream_number(&self.streams, n.as_deref().unwrap_or("")))
            .collect();
        let sets_aside = self.limits.on_breach != OnBreach::Fail;
        let stages = split_stages(&self.operators, &self.streams, &sources, sets_aside);
        // A job with checkpoints starts from its newest one, if any.
        let (store, loaded, first_batch) = match checkpoint::open(&self)? {
            Some(o) => (Some(o.store), o.loaded, o.first_batch),
            None => (None, None, 0),
        };
        // Each worker takes its instances' entries out (nothing is copied).
        let (meta, restored) = match loaded {
            Some(l) => (Some(l.meta), Some(Arc::new(std::sync::Mutex::new(l.state)))),
            None => (None, None),
        };
        let meters = super::meters::start(&self, &stages, self.workers.min(self.partitions));
        let workers = start_workers(&self, &stages, restored, meters.clone())?;
        let resume_at = |i: usize| {
            meta.as_ref()
                .and_then(|m| m.sources.get(i).cloned().flatten())
        };

        let (chunk_tx, mut chunk_rx) = mpsc::channel::<Chunk>(64);
        let mut source_tasks = tokio::task::JoinSet::new();
        let has_kafka = self
            .sources
            .iter()
            .any(|(_, s)| matches!(s, crate::spec::SourceConfig::Kafka(_)));
        for (i, (s, (_, cfg))) in sources
            .iter()
            .zip(std::mem::take(&mut self.sources))
            .enumerate()
        {
            let feed = source::Feed {
                source: i,
                stream: *s,
                tx: chunk_tx.clone(),
                meter: meters.sources[i].clone(),
            };
            source_tasks.spawn(source::run(
                cfg,
                feed,
                stop.clone(),
                self.max_line_bytes,
                resume_at(i),
            ));
        }
        // Output after the checkpoint resumed from goes (it is written
        // again); a job without checkpoints starts its files afresh, unless
        // it reads Kafka, which goes on from its committed offsets.
        let resume_output = store.is_some() || !has_kafka;
        let mut sinks = std::mem::take(&mut self.sinks);
        if resume_output {
            for (i, s) in sinks.iter_mut().enumerate() {
                let progress = meta.as_ref().and_then(|m| m.sinks.get(i));
                s.resume(progress).map_err(|error| JobError::Sink {
                    sink: s.describe(),
                    error,
                })?;
            }
        }
        let dead_progress = match (&meta, resume_output) {
            (Some(m), _) => Resume::To(m.dead_letter.clone()),
            (None, true) => Resume::Afresh,
            (None, false) => Resume::Append,
        };
        drop(chunk_tx);

        let (sink_tx, sink_thread) = start_sink_thread(
            sinks,
            self.dead_letter.clone(),
            dead_progress,
            store,
            self.stats.clone(),
            meters.clone(),
        )?;
        let stage_count = stages.len();
        let watermarks = meta.as_ref().map(|m| m.watermarks.clone());
        let wm = |v: Option<Vec<Vec<Option<i64>>>>| {
            v.filter(|v| v.len() == stage_count)
                .unwrap_or_else(|| vec![vec![None; self.streams.len()]; stage_count])
        };
        let coordinator = Coordinator {
            job: Settings {
                name: self.name.clone(),
                partitions: self.partitions,
                partition_by: self.partition_by,
                progress: self.progress,
                streams: self.streams.clone(),
            },
            stages,
            workers,
            summary: Summary {
                job: self.name.clone(),
                ..Summary::default()
            },
            sink_tx,
            rr_next: watermarks.as_ref().map_or(0, |w| w.rr_next),
            next_batch_no: first_batch,
            stage_max_ts: wm(watermarks.as_ref().map(|w| w.stage_max_ts.clone())),
            stage_watermark_base: watermarks
                .as_ref()
                .map(|w| w.stage_watermark_base.clone())
                .filter(|v| v.len() == stage_count)
                .unwrap_or_else(|| vec![None; stage_count]),
            stage_last_records: wm(watermarks.as_ref().map(|w| w.stage_last_records.clone())),
            first_batch_time: watermarks.as_ref().and_then(|w| w.first_batch_time),
            last_progress: Instant::now(),
            started,
            stats: self.stats.clone(),
            meters: meters.clone(),
            reloader: self.reloader.clone(),
            probe_all: false,
            checkpoint: self.checkpoint.as_ref().map(|c| Plan::new(c.every)),
            positions: meta.as_ref().map(|m| m.sources.clone()).unwrap_or_default(),
            fingerprint: self.fingerprint.clone(),
            counts_before: meta.as_ref().map(|m| m.counts).unwrap_or_default(),
        };
        // The coordinator runs batches on its own task, so the next batch
        // is read while the previous one is processed.
        let mut batches = BatchRunner::start(
            coordinator,
            self.streams.len(),
            self.stats.clone(),
            meters.clone(),
        );

        let mut stop_rx = stop.clone();
        // Without an interval a batch is cut by size, and also once the
        // input has paused for a whole tick: records already read do not
        // wait for more input for ever, nor do windows and commits.
        let mut ticker = tokio::time::interval(self.interval.unwrap_or(DEFAULT_INTERVAL));
        let mut idle = true;
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        let max = self.max_records.unwrap_or(usize::MAX);
        let max_bytes = self.max_bytes;
        let mut pending = Pending::new(self.streams.len());
        let mut result = Ok(());
        loop {
            tokio::select! {
                chunk = chunk_rx.recv() => match chunk {
                    Some(Chunk { source, stream, records: mut chunk, mut offsets, mut span }) => {
                        idle = false;
                        batches.count_in(source, &chunk);
                        loop {
                            // Within the record bound and the byte bound
                            // (offsets are 32-bit and guests have 32-bit
                            // memories); a record larger than the byte
                            // bound makes a batch of its own.
                            let left = max_bytes.saturating_sub(pending.held_bytes());
                            let room = (max - pending.len())
                                .min(batch::fitting(&chunk, left, pending.is_empty()));
                            if chunk.len() <= room {
                                pending.push(stream, &chunk);
                                pending.add_offsets(source, stream, offsets);
                                if let Some(span) = span { pending.note(source, span.end); }
                                break;
                            }
                            // Split the chunk at the record bound.
                            let (head, tail) = split_at(&chunk, room);
                            pending.push(stream, &head);
                            pending.add_offsets(source, stream, offsets.as_mut().map(|o| o.split_first(room)));
                            if let Some(s) = &mut span {
                                pending.note(source, s.after(room, chunk.len()));
                                s.start = s.start.advanced(room as u64);
                            }
                            chunk = tail;
                            if let Err(e) = batches.cut(&mut pending, Cut::Regular).await { result = Err(e); break; }
                        }
                        if result.is_err() { break; }
                        batches.pending(&pending);
                        if (pending.len() >= max || pending.held_bytes() >= max_bytes)
                            && let Err(e) = batches.cut(&mut pending, Cut::Regular).await { result = Err(e); break; }
                    }
                    None => break,
                },
                _ = ticker.tick() => {
                    if (self.interval.is_some() || idle)
                        && let Err(e) = batches.cut(&mut pending, Cut::Regular).await { result = Err(e); break; }
                    idle = true;
                }
                Some(joined) = source_tasks.join_next(), if !source_tasks.is_empty() => match joined {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => { result = Err(e.into()); break; }
                    Err(e) => { result = Err(JobError::Invalid(format!("source task failed: {e}"))); break; }
                },
                _ = crate::signal::stopped(&mut stop_rx) => {
                    batches.interrupted = true;
                    // Sources stop at the signal and hand over what they had
                    // read; take all of it. A source stuck in a blocking read
                    // (stdin) gets a grace period, not a veto.
                    let grace = tokio::time::sleep(STOP_GRACE);
                    tokio::pin!(grace);
                    loop {
                        tokio::select! {
                            chunk = chunk_rx.recv() => match chunk {
                                Some(chunk) => {
                                    batches.count_in(chunk.source, &chunk.records);
                                    pending.push_chunk(chunk);
                                }
                                None => break,
                            },
                            _ = &mut grace => break,
                        }
                    }
                    break;
                }
            }
        }
        // Sources also watch the stop signal and may end first, closing the
        // channel before the branch above sees the signal.
        if *stop.borrow() {
            batches.interrupted = true;
        }
        if batches.interrupted {
            // No more input: take what is buffered, and make sources still
            // sending (or stuck in a read) give up instead of waiting.
            chunk_rx.close();
            while let Ok(chunk) = chunk_rx.try_recv() {
                batches.count_in(chunk.source, &chunk.records);
                pending.push_chunk(chunk);
            }
        }
        // What is left (a stop takes everything the sources read), still
        // within the record and byte bounds per batch.
        while result.is_ok() && (pending.len() > max || pending.held_bytes() > max_bytes) {
            let mut head = pending.split_first(max.min(pending.fitting(max_bytes)));
            result = batches.cut(&mut head, Cut::Head).await;
        }
        if result.is_ok() {
            // A checkpointed job that is stopped keeps its open windows for
            // after the resume, unless it is drained.
            let emit_all = !batches.interrupted
                || self.checkpoint.is_none()
                || self.drain.load(std::sync::atomic::Ordering::Relaxed);
            result = batches.cut(&mut pending, Cut::Final { emit_all }).await;
        }
        if result.is_ok() && !batches.interrupted {
            while let Some(r) = source_tasks.join_next().await {
                match r {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => result = Err(e.into()),
                    Err(e) => result = Err(JobError::Invalid(format!("source task failed: {e}"))),
                }
            }
        } else {
            source_tasks.abort_all();
        }
        // Waits for the last batch; closes the worker and sink channels.
        let (mut summary, last) = batches.finish().await;
        self.reloader
            .close("the job ended before the version was tried");
        summary.skipped = self.skipped.get();
        if result.is_ok() {
            result = last;
        }
        let sink_result = tokio::task::spawn_blocking(move || sink_thread.join())
            .await
            .map_err(|e| JobError::Invalid(e.to_string()))?
            .map_err(|_| JobError::Invalid("sink thread panicked".into()))?;
        // A failed sink makes the coordinator fail too ("sink thread
        // stopped"); report the sink's own error, the cause.
        let written = sink_result?;
        result?;
        summary.records_out = written.records;
        summary.dead_lettered = written.dead;
        summary.checkpoints = written.checkpoints;
        summary.checkpoint_bytes = written.checkpoint_bytes;
        summary.checkpoint_time = written.checkpoint_time;
        summary.elapsed = started.elapsed();
        Ok(summary)
    }
}

/// Splits `chunk` into its first `n` records and the rest, in bulk.
pub(super) fn split_at(chunk: &Batch, n: usize) -> (Batch, Batch) {
    let n = n.min(chunk.len());
    (
        batch::slice(chunk, 0..n),
        batch::slice(chunk, n..chunk.len()),
    )
}

/// Records read but not yet cut into a micro-batch, by stream.
pub(super) struct Pending {
    pub(super) streams: Vec<Batch>,
    pub(super) len: usize,
    /// Where the Kafka records among them came from, by stream, in order.
    pub(super) offsets: Vec<(usize, Positions)>,
    /// Per source, in order, where its records here take it.
    pub(super) positions: Vec<(usize, Position)>,
    /// When the first of them was read.
    pub(super) first_read: Option<Instant>,
}

impl Pending {
    pub(super) fn new(streams: usize) -> Self {
        Pending {
            streams: vec![Batch::new(); streams.max(1)],
            len: 0,
            offsets: Vec::new(),
            positions: Vec::new(),
            first_read: None,
        }
    }

    /// Notes that `source`'s records here take it to `position`.
    pub(super) fn note(&mut self, source: usize, position: Position) {
        self.positions.push((source, position));
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes the pending records are held in (see [`batch::held_bytes`]).
    pub(super) fn held_bytes(&self) -> usize {
        self.streams.iter().map(batch::held_bytes).sum()
    }

    /// How many records from the front, streams in order, fit in `bytes`;
    /// at least one, when there is one.
    pub(super) fn fitting(&self, mut bytes: usize) -> usize {
        let mut n = 0;
        for b in &self.streams {
            let fit = batch::fitting(b, bytes, n == 0);
            n += fit;
            if fit < b.len() {
                break;
            }
            bytes = bytes.saturating_sub(batch::held_bytes(b));
        }
        n
    }

    pub(super) fn push(&mut self, stream: usize, chunk: &Batch) {
        self.first_read.get_or_insert_with(Instant::now);
        batch::append(&mut self.streams[stream], chunk);
        self.len += chunk.len();
    }

    /// Takes every pending record, by stream.
    pub(super) fn take(&mut self) -> Vec<Batch> {
        self.len = 0;
        let n = self.streams.len();
        std::mem::replace(&mut self.streams, vec![Batch::new(); n])
    }

    /// Adds a whole chunk, with its positions.
    pub(super) fn push_chunk(&mut self, chunk: Chunk) {
        self.push(chunk.stream, &chunk.records);
        self.add_offsets(chunk.source, chunk.stream, chunk.offsets);
        if let Some(span) = chunk.span {
            self.note(chunk.source, span.end);
        }
    }

    /// Adds the Kafka positions of records of `source` (feeding `stream`).
    pub(super) fn add_offsets(
        &mut self,
        source: usize,
        stream: usize,
        positions: Option<Positions>,
    ) {
        let Some(p) = positions else { return };
        let offsets = p
            .next_offsets()
            .into_iter()
            .map(|((topic, partition), next)| (topic, partition, next))
            .collect();
        self.note(source, Position::Kafka { offsets });
        self.offsets.push((stream, p));
    }

    /// Takes the first `n` records, streams in order, with their Kafka
    /// positions.
    pub(super) fn split_first(&mut self, mut n: usize) -> Pending {
        let mut head = Pending::new(self.streams.len());
        head.first_read = self.first_read;
        for (stream, b) in self.streams.iter_mut().enumerate() {
            if n == 0 {
                break;
            }
            let (h, t) = split_at(b, n);
            n -= h.len();
            head.push(stream, &h);
            self.len -= h.len();
            *b = t;
            // The same number of this stream's positions, from the front.
            let mut want = h.len();
            for (s, positions) in &mut self.offsets {
                if *s != stream || want == 0 {
                    continue;
                }
                let part = positions.split_first(want);
                want -= part.len();
                // The head's source positions stay with the rest (a head
                // takes no checkpoint).
                head.offsets.push((stream, part));
            }
            self.offsets.retain(|(_, p)| !p.is_empty());
        }
        head
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Splitting a chunk at the record bound keeps every record in order.
        #[test]
        fn split_at_keeps_records(n in 0usize..30, at in 0usize..35) {
            let mut b = Batch::from_values((0..n).map(|i| i.to_string()), 0);
            if n > 2 {
                // One record with headers, one of them null.
                b.push(None, b"headed", 1);
                b.push_header(b"h", Some(b"v"));
                b.push_header(b"h", None);
                b.push(None, b"last", 2);
            }
            let (h, t) = split_at(&b, at);
            prop_assert_eq!(h.validate(), Ok(()));
            prop_assert_eq!(t.validate(), Ok(()));
            prop_assert_eq!(h.len(), b.len().min(at));
            let mut joined = h.clone();
            batch::append(&mut joined, &t);
            prop_assert_eq!(joined, b);
        }
    }
}
