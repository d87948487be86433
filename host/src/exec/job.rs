//! Builds a job from its description and runs it: sources → micro-batcher →
//! stages of operators on the worker pool (with a hash exchange before keyed
//! operators) → sinks.
//!
//! Jobs come from a job file ([`Job::from_file`]) or from code:
//!
//! ```no_run
//! # async fn demo() -> Result<(), sluice::exec::JobError> {
//! use sluice::spec::{SinkConfig, SourceConfig};
//! use sluice::operators::{Count, NativeOperator};
//! use sluice::exec::Job;
//!
//! let summary = Job::builder("wordcount")
//!     .source(SourceConfig::File { path: "book.txt".into() })
//!     .operator(NativeOperator::new("split", |input, out| {
//!         for line in input.iter() {
//!             for w in line.value.split(|b| *b == b' ').filter(|w| !w.is_empty()) {
//!                 out.emit(Some(w), w, line.timestamp);
//!             }
//!         }
//!         Ok(())
//!     }))
//!     .operator(Count::new("count"))
//!     .sink(SinkConfig::Stdout { limit: 10 })
//!     .workers(2)
//!     .max_records(100_000)
//!     .build()?
//!     .run_to_end()
//!     .await?;
//! println!("{summary}");
//! # Ok(()) }
//! ```

use super::JobStats;
use super::SkipCount;
use super::worker::{DeadLetter, Route, StageOutput, Task, WorkerOp, WorkerOps};
use crate::model::batch::{self, Batch};
use crate::model::partition;
use crate::operators::registry::BUILTINS;
use crate::operators::{BatchContext, Combiner, OnStream, OperatorError, OperatorFactory};
use crate::sink::{self, Ack, Sink};
use crate::source::kafka::{Offsets, Positions};
use crate::source::{self, Chunk, SourceError};
use crate::spec::limits::{Limits, OnBreach};
use crate::spec::{ConfigError, JobConfig, PartitionBy, SinkConfig, SourceConfig};
use crate::wasm::reload::Reloader;
use crate::wasm::{LoadError, Runtime};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// Why a job could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The job file is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A plugin could not be loaded.
    #[error("operator `{operator}`: {error}")]
    Load {
        /// Operator name.
        operator: String,
        /// Why.
        error: LoadError,
    },
    /// The job description is inconsistent (builder API).
    #[error("invalid job: {0}")]
    Invalid(String),
    /// An operator could not be initialised.
    #[error("operator `{operator}` failed to start on worker {worker}: {error}")]
    Init {
        /// Operator name.
        operator: String,
        /// Worker index.
        worker: usize,
        /// The operator's error.
        error: OperatorError,
    },
    /// An operator rejected a record and no dead-letter file is configured.
    #[error(
        "operator `{operator}` rejected record {index} of batch {batch_no} (partition {partition}), value {record}: {reason}{}; \
         add a [dead_letter] path to the job to divert rejected records instead of stopping",
        if *more > 0 { format!(" (and {more} more record(s) in that batch)") } else { String::new() }
    )]
    Rejected {
        /// Operator name.
        operator: String,
        /// Micro-batch number.
        batch_no: u64,
        /// Partition.
        partition: usize,
        /// Index of the record in the operator's input batch.
        index: u32,
        /// The operator's reason.
        reason: String,
        /// The start of the record's value.
        record: String,
        /// Other records rejected in the same call.
        more: usize,
    },
    /// An operator failed or trapped.
    #[error("operator `{operator}` {} on worker {worker}, batch {batch_no}, partition {partition}: {error}",
        if matches!(error, OperatorError::Trap(_)) { "trapped" } else { "failed" })]
    Operator {
        /// Operator name.
        operator: String,
        /// Worker index.
        worker: usize,
        /// Micro-batch number.
        batch_no: u64,
        /// Partition.
        partition: usize,
        /// What happened.
        error: OperatorError,
    },
    /// A source failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A sink failed.
    #[error("sink {sink}: {error}")]
    Sink {
        /// Which sink.
        sink: String,
        /// The I/O error.
        error: std::io::Error,
    },
    /// A worker thread is gone (it panicked).
    #[error("worker {0} stopped unexpectedly")]
    WorkerLost(usize),
}

/// What a finished job did.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Job name.
    pub job: String,
    /// Records read from sources.
    pub records_in: u64,
    /// Records written to sinks (per sink, not multiplied by sink count).
    pub records_out: u64,
    /// Records diverted to the dead-letter file.
    pub dead_lettered: u64,
    /// Records that arrived after their windows had closed.
    pub late: u64,
    /// Records dropped because an operator exceeded a limit on them
    /// (`on_breach = "skip"`).
    pub skipped: u64,
    /// Non-empty micro-batches processed.
    pub batches: u64,
    /// Bytes of record payload read.
    pub bytes_in: u64,
    /// Wall-clock time from start to the last sink write.
    pub elapsed: Duration,
    /// Whether the job stopped on a signal rather than at the end of its input.
    pub interrupted: bool,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        write!(
            f,
            "job `{}` {}: {} record(s) in, {} out, {} dead-lettered, {} batch(es) in {:.2}s ({:.0} records/s, {:.1} MB/s in)",
            self.job,
            if self.interrupted {
                "stopped"
            } else {
                "finished"
            },
            self.records_in,
            self.records_out,
            self.dead_lettered,
            self.batches,
            secs,
            self.records_in as f64 / secs,
            self.bytes_in as f64 / secs / 1e6,
        )?;
        if self.late > 0 {
            write!(f, "; {} late record(s)", self.late)?;
        }
        if self.skipped > 0 {
            write!(
                f,
                "; {} record(s) skipped after exceeding a limit",
                self.skipped
            )?;
        }
        Ok(())
    }
}

/// A job ready to run.
pub struct Job {
    name: String,
    workers: usize,
    partitions: usize,
    partition_by: PartitionBy,
    interval: Option<Duration>,
    max_records: Option<usize>,
    /// Each source with the stream it feeds (`None`: the unnamed stream).
    sources: Vec<(Option<String>, SourceConfig)>,
    operators: Vec<Arc<dyn OperatorFactory>>,
    /// Stream names by number; 0 is the stream of unnamed sources.
    streams: Vec<String>,
    sinks: Vec<Box<dyn Sink>>,
    dead_letter: Option<PathBuf>,
    progress: bool,
    /// What every Wasm instance of the job may use.
    limits: Limits,
    /// Records dropped under `on_breach = "skip"`.
    skipped: SkipCount,
    /// Live counters.
    stats: Arc<JobStats>,
    /// The swappable operators.
    reloader: Reloader,
}

/// Builds a [`Job`] in code.
pub struct JobBuilder {
    job: Job,
    /// The version cells of the swappable operators.
    cells: Vec<Arc<crate::wasm::reload::VersionCell>>,
    sink_configs: Vec<SinkConfig>,
    base: PathBuf,
}

/// The number of CPU cores, the default worker count.
pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Payload bytes after which a micro-batch is cut whatever its record count.
pub const MAX_BATCH_BYTES: usize = 1 << 30;

/// How long a stopping job waits for its sources to hand over what they read.
pub const STOP_GRACE: Duration = Duration::from_secs(2);

/// Default batch interval when neither an interval nor a record bound is set.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

impl JobBuilder {
    /// Adds a source feeding the unnamed stream.
    pub fn source(mut self, source: SourceConfig) -> Self {
        self.job.sources.push((None, source));
        self
    }
    /// Adds a source feeding the stream `name`, which operators select with
    /// [`crate::operators::OnStream`] and joins by name.
    pub fn named_source(mut self, name: impl Into<String>, source: SourceConfig) -> Self {
        self.job.sources.push((Some(name.into()), source));
        self
    }
    /// Appends an operator to the chain.
    pub fn operator(mut self, op: impl OperatorFactory + 'static) -> Self {
        self.job.operators.push(Arc::new(op));
        self
    }
    /// Appends a shared operator factory to the chain.
    pub fn operator_arc(mut self, op: Arc<dyn OperatorFactory>) -> Self {
        self.job.operators.push(op);
        self
    }
    /// Adds a Wasm `transform` operator that can be swapped for a new
    /// version while the job runs (see [`Job::reloader`]).
    pub fn plugin_operator(
        mut self,
        name: impl Into<String>,
        plugin: &crate::wasm::Plugin,
        config: Vec<(String, String)>,
    ) -> Self {
        let (factory, cell) = crate::wasm::swappable(plugin, name.into(), config);
        self.cells.push(cell);
        self.job.operators.push(factory);
        self
    }

    /// Adds a sink described by configuration.
    pub fn sink(mut self, sink: SinkConfig) -> Self {
        self.sink_configs.push(sink);
        self
    }
    /// Adds a sink object (for example [`crate::sink::CollectSink`]).
    pub fn sink_boxed(mut self, sink: Box<dyn Sink>) -> Self {
        self.job.sinks.push(sink);
        self
    }
    /// Number of CPU workers.
    pub fn workers(mut self, n: usize) -> Self {
        self.job.workers = n;
        self
    }
    /// Number of partitions (default: workers).
    pub fn partitions(mut self, n: usize) -> Self {
        self.job.partitions = n;
        self
    }
    /// How records are spread over partitions.
    pub fn partition_by(mut self, by: PartitionBy) -> Self {
        self.job.partition_by = by;
        self
    }
    /// Cut a micro-batch at least this often.
    pub fn interval(mut self, every: Duration) -> Self {
        self.job.interval = Some(every);
        self
    }
    /// Cut a micro-batch when it holds this many records.
    pub fn max_records(mut self, n: usize) -> Self {
        self.job.max_records = Some(n);
        self
    }
    /// JSON-lines file for rejected records.
    pub fn dead_letter(mut self, path: impl Into<PathBuf>) -> Self {
        self.job.dead_letter = Some(path.into());
        self
    }
    /// What every Wasm instance of the job may use, and what a breach does
    /// (default: [`Limits::default`]).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.job.limits = limits;
        self
    }
    /// Print a progress line to stderr every few seconds.
    pub fn progress(mut self, on: bool) -> Self {
        self.job.progress = on;
        self
    }
    /// Directory that relative paths are resolved against (default: current).
    pub fn base_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.base = dir.into();
        self
    }

    /// Checks the description, opens sinks and returns the job.
    pub fn build(mut self) -> Result<Job, JobError> {
        let job = &mut self.job;
        if job.workers == 0 {
            return Err(JobError::Invalid("workers must be at least 1".into()));
        }
        if job.partitions == 0 {
            job.partitions = job.workers;
        }
        if job.sources.is_empty() {
            return Err(JobError::Invalid("a job needs at least one source".into()));
        }
        if job.interval == Some(Duration::ZERO) {
            return Err(JobError::Invalid(
                "the batch interval must be longer than zero".into(),
            ));
        }
        if job.max_records == Some(0) {
            return Err(JobError::Invalid("max_records must be at least 1".into()));
        }
        if job.interval.is_none() && job.max_records.is_none() {
            job.interval = Some(DEFAULT_INTERVAL);
        }
        job.limits
            .validate()
            .map_err(|(limit, m)| JobError::Invalid(format!("limits.{limit}: {m}")))?;
        if job.limits.on_breach == OnBreach::DeadLetter && job.dead_letter.is_none() {
            return Err(JobError::Invalid(
                "limits.on_breach = \"dead-letter\" needs a dead-letter file (set one with `dead_letter`, or use \"skip\" or \"fail\")".into(),
            ));
        }
        job.sources = std::mem::take(&mut job.sources)
            .into_iter()
            .map(|(name, s)| (name, source::resolve(s, &self.base)))
            .collect();
        for (_, s) in &job.sources {
            source::preflight(s)?;
        }
        job.streams = name_streams(&job.sources, &job.operators)?;
        for cfg in &self.sink_configs {
            let s = sink::open(cfg, &self.base).map_err(|error| JobError::Sink {
                sink: sink::describe(cfg),
                error,
            })?;
            job.sinks.push(s);
        }
        if job.sinks.is_empty() {
            return Err(JobError::Invalid("a job needs at least one sink".into()));
        }
        if let Some(p) = &job.dead_letter {
            job.dead_letter = Some(self.base.join(p));
        }
        job.stats = Arc::new(JobStats::new(job.skipped.clone()));
        job.reloader = Reloader::new(&job.name, std::mem::take(&mut self.cells));
        job.reloader.bind(&job.limits, job.stats.clone());
        Ok(self.job)
    }
}

impl Job {
    /// Starts describing a job in code.
    pub fn builder(name: impl Into<String>) -> JobBuilder {
        JobBuilder {
            job: Job {
                name: name.into(),
                workers: default_workers(),
                partitions: 0,
                partition_by: PartitionBy::RoundRobin,
                interval: None,
                max_records: None,
                sources: Vec::new(),
                operators: Vec::new(),
                streams: Vec::new(),
                sinks: Vec::new(),
                dead_letter: None,
                progress: false,
                limits: Limits::default(),
                skipped: SkipCount::default(),
                stats: Arc::new(JobStats::default()),
                reloader: Reloader::new("", Vec::new()),
            },
            sink_configs: Vec::new(),
            cells: Vec::new(),
            base: PathBuf::from("."),
        }
    }

    /// Reads a job file, loads its plugins (compiled once, cached) and opens
    /// its sinks. Relative paths are relative to the job file.
    pub fn from_file(path: &Path, runtime: &Runtime) -> Result<Job, JobError> {
        let cfg = JobConfig::from_file(path, &BUILTINS)?;
        Self::from_config(cfg, path, runtime)
    }

    /// Builds a job from a parsed job file at `path`.
    pub fn from_config(cfg: JobConfig, path: &Path, runtime: &Runtime) -> Result<Job, JobError> {
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let name = cfg.name.clone().unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "job".into())
        });
        let limits = cfg.limits().map_err(|e| JobError::Invalid(e.to_string()))?;
        let mut b = Job::builder(name)
            .base_dir(&base)
            .partition_by(cfg.partition_by)
            .limits(limits);
        if let Some(w) = &cfg.workers {
            b = b.workers(*w.get_ref());
        }
        if let Some(p) = &cfg.partitions {
            b = b.partitions(*p.get_ref());
        }
        if let Some(i) = cfg.interval() {
            b = b.interval(i);
        }
        if let Some(m) = &cfg.batch.max_records {
            b = b.max_records(*m.get_ref());
        }
        for s in &cfg.sources {
            let s = s.get_ref();
            b = match &s.name {
                Some(name) => b.named_source(name, s.source.clone()),
                None => b.source(s.source.clone()),
            };
        }
        for op in &cfg.operators {
            let op = op.get_ref();
            let name = op.display_name();
            let factory: Arc<dyn OperatorFactory> = if let Some(plugin) = &op.plugin {
                let loaded = runtime
                    .load_world(&base.join(plugin), crate::wasm::World::Transform)
                    .map_err(|error| JobError::Load {
                        operator: name.clone(),
                        error,
                    })?;
                let (factory, cell) =
                    crate::wasm::swappable(&loaded, name.clone(), op.config_pairs());
                b.cells.push(cell);
                factory
            } else if let Some(reducer) = &op.reducer {
                let loaded = runtime
                    .load_world(&base.join(reducer), crate::wasm::World::Reduce)
                    .map_err(|error| JobError::Load {
                        operator: name.clone(),
                        error,
                    })?;
                let mode = op
                    .mode
                    .as_deref()
                    .unwrap_or("update")
                    .parse()
                    .map_err(|m| {
                        JobError::Invalid(format!("operator `{name}`: field `mode`: {m}"))
                    })?;
                Arc::new(crate::wasm::WasmReducerFactory::new(
                    name.clone(),
                    loaded,
                    op.config_pairs(),
                    mode,
                ))
            } else {
                let builtin = op.builtin.as_deref().unwrap_or("count");
                BUILTINS
                    .factory(builtin, &name, &op.config_pairs())
                    .map_err(|(key, m)| {
                        JobError::Invalid(format!("operator `{name}`: setting `{key}`: {m}"))
                    })?
            };
            b = b.operator_arc(match &op.input {
                Some(stream) => Arc::new(OnStream::new(stream, factory)),
                None => factory,
            });
        }
        for s in &cfg.sinks {
            b = b.sink(s.get_ref().clone());
        }
        if let Some(d) = &cfg.dead_letter {
            b = b.dead_letter(d.path.clone());
        }
        b.build()
    }

    /// The job's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The count of records the job drops under `on_breach = "skip"`; take
    /// it before running the job and read it during or after the run.
    pub fn skip_count(&self) -> SkipCount {
        self.skipped.clone()
    }

    /// The handle that swaps new versions of the job's `plugin` operators
    /// into it while it runs (see [`crate::wasm::reload`]).
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// The job's live counters, readable from any thread while it runs.
    pub fn stats(&self) -> Arc<JobStats> {
        self.stats.clone()
    }

    /// Turns on progress lines on stderr (every 2 s).
    pub fn with_progress(mut self) -> Self {
        self.progress = true;
        self
    }

    /// Whether every source ends by itself.
    pub fn is_bounded(&self) -> bool {
        self.sources.iter().all(|(_, s)| source::is_bounded(s))
    }

    /// Runs until every source has ended.
    pub async fn run_to_end(self) -> Result<Summary, JobError> {
        let (_tx, rx) = watch::channel(false);
        self.run(rx).await
    }

    /// Runs until every source has ended or `stop` turns true; then the
    /// records already read are processed and the sinks flushed.
    pub async fn run(mut self, stop: watch::Receiver<bool>) -> Result<Summary, JobError> {
        let started = Instant::now();
        let sources: Vec<usize> = self
            .sources
            .iter()
            .map(|(n, _)| stream_number(&self.streams, n.as_deref().unwrap_or("")))
            .collect();
        let stages = split_stages(&self.operators, &self.streams, &sources);
        let workers = start_workers(&self, &stages)?;

        let (chunk_tx, mut chunk_rx) = mpsc::channel::<Chunk>(64);
        let mut source_tasks = tokio::task::JoinSet::new();
        for (s, (_, cfg)) in sources.iter().zip(std::mem::take(&mut self.sources)) {
            source_tasks.spawn(source::run(cfg, *s, chunk_tx.clone(), stop.clone()));
        }
        drop(chunk_tx);

        let (sink_tx, sink_thread) = start_sink_thread(
            std::mem::take(&mut self.sinks),
            self.dead_letter.clone(),
            self.stats.clone(),
        )?;
        let stage_count = stages.len();
        let coordinator = Coordinator {
            job: Settings {
                name: self.name.clone(),
                partitions: self.partitions,
                partition_by: self.partition_by,
                progress: self.progress,
            },
            stages,
            workers,
            summary: Summary {
                job: self.name.clone(),
                ..Summary::default()
            },
            sink_tx,
            rr_next: 0,
            next_batch_no: 0,
            stage_max_ts: vec![vec![None; self.streams.len()]; stage_count],
            stage_watermark_base: vec![None; stage_count],
            last_progress: Instant::now(),
            started,
            stats: self.stats.clone(),
            reloader: self.reloader.clone(),
            probe_all: false,
        };
        // The coordinator runs batches on its own task, so the next batch
        // is read while the previous one is processed.
        let mut batches = BatchRunner::start(coordinator, self.streams.len(), self.stats.clone());

        let mut stop_rx = stop.clone();
        let mut ticker = tokio::time::interval(self.interval.unwrap_or(Duration::from_secs(3600)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        let max = self.max_records.unwrap_or(usize::MAX);
        let mut pending = Pending::new(self.streams.len());
        let mut result = Ok(());
        loop {
            tokio::select! {
                chunk = chunk_rx.recv() => match chunk {
                    Some(Chunk { stream, records: mut chunk, mut offsets }) => {
                        batches.count_in(&chunk);
                        // Offsets are 32-bit and guests have 32-bit memories:
                        // a batch stays well below 4 GiB of payload.
                        if !pending.is_empty()
                            && pending.payload_bytes() + batch::payload_bytes(&chunk) > MAX_BATCH_BYTES
                            && let Err(e) = batches.cut(&mut pending, false).await
                        {
                            result = Err(e);
                            break;
                        }
                        loop {
                            let room = max - pending.len();
                            if chunk.len() <= room {
                                pending.push(stream, &chunk);
                                pending.add_offsets(stream, offsets);
                                break;
                            }
                            // Split the chunk at the record bound.
                            let (head, tail) = split_at(&chunk, room);
                            pending.push(stream, &head);
                            pending.add_offsets(stream, offsets.as_mut().map(|o| o.split_first(room)));
                            chunk = tail;
                            if let Err(e) = batches.cut(&mut pending, false).await { result = Err(e); break; }
                        }
                        if result.is_err() { break; }
                        if pending.len() >= max
                            && let Err(e) = batches.cut(&mut pending, false).await { result = Err(e); break; }
                    }
                    None => break,
                },
                _ = ticker.tick(), if self.interval.is_some() => {
                    if let Err(e) = batches.cut(&mut pending, false).await { result = Err(e); break; }
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
                                    batches.count_in(&chunk.records);
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
                batches.count_in(&chunk.records);
                pending.push_chunk(chunk);
            }
        }
        // What is left, still within the record bound per batch.
        while result.is_ok() && pending.len() > max {
            let mut head = pending.split_first(max);
            result = batches.cut(&mut head, false).await;
        }
        if result.is_ok() {
            result = batches.cut(&mut pending, true).await;
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
        summary.elapsed = started.elapsed();
        Ok(summary)
    }
}

/// Splits `chunk` into its first `n` records and the rest, in bulk.
fn split_at(chunk: &Batch, n: usize) -> (Batch, Batch) {
    let n = n.min(chunk.len());
    (
        batch::slice(chunk, 0..n),
        batch::slice(chunk, n..chunk.len()),
    )
}

/// Records read but not yet cut into a micro-batch, by stream.
struct Pending {
    streams: Vec<Batch>,
    len: usize,
    /// Where the Kafka records among them came from, by stream, in order.
    offsets: Vec<(usize, Positions)>,
}

impl Pending {
    fn new(streams: usize) -> Self {
        Pending {
            streams: vec![Batch::new(); streams.max(1)],
            len: 0,
            offsets: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn payload_bytes(&self) -> usize {
        self.streams.iter().map(batch::payload_bytes).sum()
    }

    fn push(&mut self, stream: usize, chunk: &Batch) {
        batch::append(&mut self.streams[stream], chunk);
        self.len += chunk.len();
    }

    /// Takes every pending record, by stream.
    fn take(&mut self) -> Vec<Batch> {
        self.len = 0;
        let n = self.streams.len();
        std::mem::replace(&mut self.streams, vec![Batch::new(); n])
    }

    /// Adds a whole chunk, with its Kafka positions.
    fn push_chunk(&mut self, chunk: Chunk) {
        self.push(chunk.stream, &chunk.records);
        self.add_offsets(chunk.stream, chunk.offsets);
    }

    fn add_offsets(&mut self, stream: usize, positions: Option<Positions>) {
        self.offsets.extend(positions.map(|p| (stream, p)));
    }

    /// Takes the first `n` records, streams in order, with their Kafka
    /// positions.
    fn split_first(&mut self, mut n: usize) -> Pending {
        let mut head = Pending::new(self.streams.len());
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
                head.add_offsets(stream, Some(part));
            }
            self.offsets.retain(|(_, p)| !p.is_empty());
        }
        head
    }
}

/// Numbers the job's streams: 0 is the unnamed stream, then named sources
/// in order, then the outputs of operators that start a stream (joins).
/// Checks that every stream an operator reads exists before it.
fn name_streams(
    sources: &[(Option<String>, SourceConfig)],
    ops: &[Arc<dyn OperatorFactory>],
) -> Result<Vec<String>, JobError> {
    let mut streams = vec![String::new()];
    for name in sources.iter().filter_map(|(n, _)| n.as_ref()) {
        if !streams.contains(name) {
            streams.push(name.clone());
        }
    }
    for op in ops {
        for input in op.inputs().unwrap_or_default() {
            if input.is_empty() || !streams.contains(&input) {
                return Err(JobError::Invalid(format!(
                    "operator `{}` reads the stream {input:?}, but no source or earlier join is called that (streams: {})",
                    op.name(),
                    streams[1..]
                        .iter()
                        .map(|s| format!("{s:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        if let Some(out) = op.output_stream() {
            if streams.contains(&out) {
                return Err(JobError::Invalid(format!(
                    "operator `{}` names its output stream {out:?}, which already exists; rename the operator",
                    op.name()
                )));
            }
            streams.push(out);
        }
    }
    Ok(streams)
}

fn stream_number(streams: &[String], name: &str) -> usize {
    streams.iter().position(|s| s == name).unwrap_or(0)
}

/// Splits the operator chain into stages: a keyed operator starts a new
/// stage, preceded by a hash exchange.
fn split_stages(
    ops: &[Arc<dyn OperatorFactory>],
    streams: &[String],
    sources: &[usize],
) -> Vec<Stage> {
    // The streams flowing at each point of the chain.
    let mut flowing: Vec<usize> = Vec::new();
    for s in sources {
        if !flowing.contains(s) {
            flowing.push(*s);
        }
    }
    let mut stages = vec![Stage {
        ops: Vec::new(),
        routes: Vec::new(),
        inputs: flowing.clone(),
        keyed: false,
        stateful: false,
        exchange: Exchange::default(),
    }];
    for op in ops {
        if op.keyed() {
            stages.push(Stage {
                ops: Vec::new(),
                routes: Vec::new(),
                inputs: flowing.clone(),
                keyed: true,
                stateful: false,
                exchange: Exchange::default(),
            });
        }
        let route = Route {
            accepts: op
                .inputs()
                .map(|names| names.iter().map(|n| stream_number(streams, n)).collect()),
            output: op.output_stream().map(|n| stream_number(streams, &n)),
        };
        if op.keyed() {
            let stage = stages.last_mut().expect("just pushed");
            stage.exchange = Exchange {
                combine: op.combiner().map(|c| Combine {
                    accepts: route.accepts.clone(),
                    combiner: c,
                }),
                unkeyed_together: op.unkeyed_together(),
            };
        }
        if let Some(out) = route.output {
            let reads = |s: &usize| route.accepts.as_ref().is_none_or(|a| a.contains(s));
            flowing.retain(|s| !reads(s));
            if !flowing.contains(&out) {
                flowing.push(out);
            }
        }
        let stage = stages.last_mut().expect("at least one stage");
        stage.stateful |= op.stateful();
        stage.ops.push(op.clone());
        stage.routes.push(route);
    }
    stages.retain(|s| !s.ops.is_empty() || !s.keyed);
    stages
}

struct Stage {
    ops: Vec<Arc<dyn OperatorFactory>>,
    /// Per operator, the streams it reads and writes.
    routes: Vec<Route>,
    /// The streams that enter the stage.
    inputs: Vec<usize>,
    /// How records enter the stage, when it is keyed.
    exchange: Exchange,
    keyed: bool,
    /// Some operator keeps state across batches (sees every boundary).
    stateful: bool,
}

struct Workers {
    senders: Vec<crossbeam_channel::Sender<Task>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    busy: Arc<AtomicU64>,
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.senders.clear();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn start_workers(job: &Job, stages: &[Stage]) -> Result<Workers, JobError> {
    let busy = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::new();
    let mut threads = Vec::new();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let n_workers = job.workers.min(job.partitions);
    for w in 0..n_workers {
        // The partitions this worker runs: p with p % n_workers == w.
        let slots = (w..job.partitions).step_by(n_workers).count();
        let (tx, rx) = crossbeam_channel::bounded::<Task>(job.partitions * 2 + 4);
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
        let thread = std::thread::Builder::new()
            .name(format!("sluice-worker-{w}"))
            .spawn(move || {
                // One instance of each operator per partition, so that an
                // operator's state is the state of one partition.
                let mut stages = Vec::new();
                for ops in &factories {
                    let mut per_partition = Vec::new();
                    for _ in 0..slots {
                        let mut instances = Vec::new();
                        for (f, route) in ops {
                            match f.instantiate_limited(&job_name, w, &limits) {
                                Ok(op) => instances.push(WorkerOp {
                                    name: f.name().to_string(),
                                    op,
                                    route: route.clone(),
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

struct SinkMsg {
    batch_no: u64,
    parts: Vec<Batch>,
    dead: Vec<DeadLetter>,
    /// The Kafka offsets after the batch's input, committed once the
    /// batch is written.
    offsets: Option<Offsets>,
}

/// A batch's Kafka offsets, as its sinks acknowledge it.
impl Ack for Offsets {
    fn commit(&self) {
        Offsets::commit(self);
    }

    fn consumer_offsets(
        &self,
    ) -> Result<
        (
            rdkafka::TopicPartitionList,
            rdkafka::consumer::ConsumerGroupMetadata,
        ),
        String,
    > {
        let metadata = self
            .group_metadata()
            .ok_or("the Kafka source has no consumer group metadata")?;
        Ok((self.list()?, metadata))
    }
}

struct Written {
    records: u64,
    dead: u64,
}

type SinkThread = std::thread::JoinHandle<Result<Written, JobError>>;

fn start_sink_thread(
    mut sinks: Vec<Box<dyn Sink>>,
    dead_letter: Option<PathBuf>,
    stats: Arc<JobStats>,
) -> Result<(std::sync::mpsc::SyncSender<SinkMsg>, SinkThread), JobError> {
    let mut dlq = match &dead_letter {
        Some(p) => Some(
            crate::sink::JsonlSink::create(p).map_err(|error| JobError::Sink {
                sink: format!("dead-letter {}", p.display()),
                error,
            })?,
        ),
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
                if !committed && let Some(o) = &offsets {
                    o.commit();
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

fn write_dead_letters(
    dlq: &mut crate::sink::JsonlSink,
    dead: &[DeadLetter],
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    for d in dead {
        crate::sink::write_json_record(
            &mut buf,
            d.key.as_deref(),
            &d.value,
            d.timestamp,
            d.headers
                .iter()
                .map(|(key, value)| crate::model::batch::Header {
                    key,
                    value: value.as_deref(),
                }),
            &[
                ("operator", &d.operator.as_str().into()),
                ("reason", &d.reason.as_str().into()),
                ("batch", &d.batch_no.into()),
                ("partition", &d.partition.into()),
            ],
        )?;
    }
    dlq.write_raw(&buf)
}

/// What the coordinator needs of the job (the job itself holds sinks, which
/// need not be `Sync`).
struct Settings {
    name: String,
    partitions: usize,
    partition_by: PartitionBy,
    progress: bool,
}

/// A micro-batch for the coordinator's task.
struct CutRequest {
    pending: Pending,
    end_of_input: bool,
    records_in: u64,
    done: oneshot::Sender<Result<(), JobError>>,
}

/// The reading side's handle on the coordinator task: at most one batch is
/// processed while the next one accumulates.
struct BatchRunner {
    tx: mpsc::Sender<CutRequest>,
    in_flight: Option<oneshot::Receiver<Result<(), JobError>>>,
    task: tokio::task::JoinHandle<Summary>,
    streams: usize,
    records_in: u64,
    bytes_in: u64,
    /// The job stopped on a signal rather than at the end of its input.
    interrupted: bool,
    stats: Arc<JobStats>,
}

impl BatchRunner {
    fn start(mut coordinator: Coordinator, streams: usize, stats: Arc<JobStats>) -> Self {
        let (tx, mut rx) = mpsc::channel::<CutRequest>(1);
        let task = tokio::spawn(async move {
            while let Some(mut req) = rx.recv().await {
                coordinator.summary.records_in = req.records_in;
                let result = coordinator.cut(&mut req.pending, req.end_of_input).await;
                let failed = result.is_err();
                let _ = req.done.send(result);
                if failed {
                    break;
                }
            }
            coordinator.summary.clone()
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
        }
    }

    /// Counts a chunk handed over by a source as read.
    fn count_in(&mut self, chunk: &Batch) {
        let bytes = batch::payload_bytes(chunk) as u64;
        self.records_in += chunk.len() as u64;
        self.bytes_in += bytes;
        self.stats.read(chunk.len() as u64, bytes);
    }

    /// Hands the pending records over as one micro-batch, once the previous
    /// batch is done; fails with the previous batch's error, if any.
    async fn cut(&mut self, pending: &mut Pending, end_of_input: bool) -> Result<(), JobError> {
        self.wait().await?;
        let (done, rx) = oneshot::channel();
        let req = CutRequest {
            pending: std::mem::replace(pending, Pending::new(self.streams)),
            end_of_input,
            records_in: self.records_in,
            done,
        };
        self.tx
            .send(req)
            .await
            .map_err(|_| JobError::Invalid("the coordinator stopped".into()))?;
        self.in_flight = Some(rx);
        Ok(())
    }

    async fn wait(&mut self) -> Result<(), JobError> {
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
    async fn finish(mut self) -> (Summary, Result<(), JobError>) {
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
struct Flow {
    stream: usize,
    parts: Vec<Batch>,
}

struct Coordinator {
    job: Settings,
    stages: Vec<Stage>,
    workers: Workers,
    summary: Summary,
    sink_tx: std::sync::mpsc::SyncSender<SinkMsg>,
    rr_next: usize,
    next_batch_no: u64,
    /// Per stage, the largest event time seen (for watermarks).
    stage_max_ts: Vec<Vec<Option<i64>>>,
    /// Per stage, the event time its watermark derives from: the smallest
    /// of its input streams' largest event times (none until every input
    /// stream has had a record), as of the last batch.
    stage_watermark_base: Vec<Option<i64>>,
    last_progress: Instant,
    started: Instant,
    stats: Arc<JobStats>,
    reloader: Reloader,
    /// Every partition runs this batch, even without records: a new
    /// operator version is probed on it.
    probe_all: bool,
}

impl Coordinator {
    /// Runs the pending records as one micro-batch. An empty batch is cut
    /// only when a stateful stage needs the boundary (to close windows on
    /// time); `end_of_input` makes stateful operators emit everything.
    async fn cut(&mut self, pending: &mut Pending, end_of_input: bool) -> Result<(), JobError> {
        let started = Instant::now();
        let late_before = self.summary.late;
        let had_records = !pending.is_empty();
        let batch_no = self.next_batch_no;
        let result = self.run_batch(pending, end_of_input).await;
        // A new operator version probed on this batch is adopted or refused
        // between this batch and the next.
        if result.is_ok() && self.next_batch_no > batch_no {
            self.reloader.end_batch(batch_no);
        }
        self.stats.batch_done(
            had_records,
            self.summary.late - late_before,
            started.elapsed(),
        );
        result
    }

    async fn run_batch(
        &mut self,
        pending: &mut Pending,
        end_of_input: bool,
    ) -> Result<(), JobError> {
        let stateful = self.stages.iter().any(|s| s.stateful);
        if pending.is_empty() && !stateful {
            return Ok(());
        }
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
                // One watermark for all partitions: per input stream the
                // largest event time that reached the stage; the slowest
                // stream holds the watermark back, so a source read faster
                // than another does not make the other's records late.
                for flow in &flows {
                    let batch_max = flow
                        .parts
                        .iter()
                        .filter_map(|p| p.timestamps.iter().copied().max())
                        .max();
                    let seen = &mut self.stage_max_ts[s][flow.stream];
                    *seen = (*seen).max(batch_max);
                }
                let before = self.stage_watermark_base[s];
                let after = self.stages[s]
                    .inputs
                    .iter()
                    .map(|i| self.stage_max_ts[s][*i])
                    .collect::<Option<Vec<i64>>>()
                    .and_then(|m| m.into_iter().min())
                    .max(before);
                self.stage_watermark_base[s] = after;
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
        if parts.iter().all(Batch::is_empty) && dead.is_empty() && offsets.is_none() {
            return Ok(());
        }
        let msg = SinkMsg {
            batch_no,
            parts,
            dead,
            offsets,
        };
        let tx = self.sink_tx.clone();
        // The sink thread applies back-pressure through its bounded channel.
        tokio::task::spawn_blocking(move || tx.send(msg))
            .await
            .map_err(|e| JobError::Invalid(e.to_string()))?
            .map_err(|_| JobError::Invalid("sink thread stopped".into()))?;
        if self.job.progress {
            self.report_progress();
        }
        Ok(())
    }

    fn partition_input(&mut self, input: Batch) -> Vec<Batch> {
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

    async fn run_stage(
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
                    let sent = tokio::task::spawn_blocking(move || sender.send(task).is_ok())
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

    fn report_progress(&mut self) {
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

/// Moves every record of `stream` to the partition that owns its key,
/// keeping the order of records from each input partition (see
/// [`split_for_exchange`]).
fn exchange(parts: Vec<Batch>, n: usize, stream: usize, how: &Exchange) -> Vec<Batch> {
    let mut out = vec![Batch::new(); n];
    for p in &parts {
        for (t, part) in split_for_exchange(p, n, stream, how).iter().enumerate() {
            batch::append(&mut out[t], part);
        }
    }
    out
}

/// How a stage's output is prepared for the exchange into a keyed stage.
pub(crate) struct Split {
    /// Partitions of the next stage.
    pub partitions: usize,
    /// How the next stage takes records.
    pub exchange: Exchange,
}

/// How records enter a keyed stage.
#[derive(Clone, Default)]
pub(crate) struct Exchange {
    /// The keyed operator's map-side combiner.
    combine: Option<Combine>,
    /// Records without a key all go to partition 0 (else by value).
    unkeyed_together: bool,
}

/// A keyed operator's combiner and the streams it applies to.
#[derive(Clone)]
pub(crate) struct Combine {
    accepts: Option<Vec<usize>>,
    combiner: Arc<dyn Combiner>,
}

impl Combine {
    pub(crate) fn applies_to(&self, stream: usize) -> bool {
        self.accepts.as_ref().is_none_or(|a| a.contains(&stream))
    }
}

/// Combines `batch` (of `stream`) when the combiner applies to the stream,
/// then splits it by key into `n` partitions.
pub(crate) fn split_for_exchange(
    batch: &Batch,
    n: usize,
    stream: usize,
    how: &Exchange,
) -> Vec<Batch> {
    match how.combine.as_ref().filter(|c| c.applies_to(stream)) {
        Some(c) => batch::split_by_key(&c.combiner.combine(batch), n, how.unkeyed_together),
        None => batch::split_by_key(batch, n, how.unkeyed_together),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::Count;
    use crate::operators::NativeOperator;
    use crate::sink::CollectSink;
    use proptest::prelude::*;

    fn upper() -> NativeOperator {
        NativeOperator::new("upper", |input, out| {
            for r in input.iter() {
                out.emit(r.key, &r.value.to_ascii_uppercase(), r.timestamp);
            }
            Ok(())
        })
    }

    #[tokio::test]
    async fn builder_runs_native_chain_and_count() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.txt");
        std::fs::write(&input, "a b a\nc a\n").unwrap();
        let sink = CollectSink::new();
        let split = NativeOperator::new("split", |input, out| {
            for r in input.iter() {
                for w in r.value.split(|b| *b == b' ') {
                    out.emit(Some(w), w, r.timestamp);
                }
            }
            Ok(())
        });
        let job = Job::builder("t")
            .source(SourceConfig::File { path: input })
            .operator(split)
            .operator(upper())
            .operator(Count::new("count"))
            .sink_boxed(Box::new(sink.clone()))
            .workers(2)
            .max_records(100)
            .build()
            .unwrap();
        let stats = job.stats();
        let summary = job.run_to_end().await.unwrap();
        assert_eq!(summary.records_in, 2);
        // The live counters agree with the summary.
        let live = stats.snapshot();
        assert_eq!(
            (live.records_in, live.records_out, live.batches),
            (summary.records_in, summary.records_out, summary.batches)
        );
        assert_eq!(live.bytes_in, summary.bytes_in);
        let mut got: Vec<(String, String)> = sink
            .records()
            .into_iter()
            .map(|(k, v, _)| {
                (
                    String::from_utf8(k.unwrap()).unwrap(),
                    String::from_utf8(v).unwrap(),
                )
            })
            .collect();
        got.sort();
        // `upper` changes values, not keys: counts group by the original words.
        assert_eq!(
            got,
            [
                ("a".into(), "3".into()),
                ("b".into(), "1".into()),
                ("c".into(), "1".into())
            ]
        );
    }

    /// Headers an operator gives records reach the jsonl sink and, for
    /// records a later operator rejects, the dead-letter file, across
    /// partitions.
    #[tokio::test]
    async fn headers_reach_the_sink_and_the_dead_letter_file() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.txt");
        let lines: Vec<String> = (0..40)
            .map(|i| format!("{} {i}", if i % 5 == 0 { "bad" } else { "ok" }))
            .collect();
        std::fs::write(&input, lines.join("\n")).unwrap();
        let tag = NativeOperator::new("tag", |input, out| {
            for r in input.iter() {
                let n = r.value.rsplit(|b| *b == b' ').next().unwrap_or_default();
                out.emit(Some(n), r.value, r.timestamp);
                out.batch.push_header(b"n", Some(n));
                if n.ends_with(b"3") {
                    out.batch.push_header(b"three", None);
                }
            }
            Ok(())
        });
        let check = NativeOperator::new("check", |input, out| {
            for r in input.iter() {
                match r.value.starts_with(b"bad") {
                    true => out.reject(r.index, "bad"),
                    false => out.forward(r),
                }
            }
            Ok(())
        });
        let job = Job::builder("t")
            .source(SourceConfig::File { path: input })
            .operator(tag)
            .operator(check)
            .sink(crate::spec::SinkConfig::Jsonl {
                path: dir.path().join("out.jsonl"),
            })
            .dead_letter(dir.path().join("dead.jsonl"))
            .workers(2)
            .partitions(3)
            .max_records(7)
            .build()
            .unwrap();
        job.run_to_end().await.unwrap();
        let read = |name: &str| -> Vec<serde_json::Value> {
            std::fs::read_to_string(dir.path().join(name))
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        };
        let (out, dead) = (read("out.jsonl"), read("dead.jsonl"));
        assert_eq!((out.len(), dead.len()), (32, 8));
        for line in out.iter().chain(&dead) {
            let n = line["key"].as_str().unwrap();
            let mut want = vec![serde_json::json!({"key": "n", "value": n})];
            if n.ends_with('3') {
                want.push(serde_json::json!({"key": "three", "value": null}));
            }
            assert_eq!(line["headers"], serde_json::Value::Array(want), "{line}");
        }
        assert!(dead.iter().all(|l| l["reason"] == "bad"));
    }

    #[test]
    fn stages_split_before_keyed_operators() {
        let ops: Vec<Arc<dyn OperatorFactory>> = vec![
            Arc::new(upper()),
            Arc::new(Count::new("c")),
            Arc::new(upper()),
        ];
        let stages = split_stages(&ops, &[], &[0]);
        assert_eq!(
            stages
                .iter()
                .map(|s| (s.ops.len(), s.keyed))
                .collect::<Vec<_>>(),
            [(1, false), (2, true)]
        );
        let stages = split_stages(
            &[Arc::new(Count::new("c")) as Arc<dyn OperatorFactory>],
            &[],
            &[0],
        );
        assert_eq!(
            stages
                .iter()
                .map(|s| (s.ops.len(), s.keyed))
                .collect::<Vec<_>>(),
            [(0, false), (1, true)]
        );
    }

    proptest! {
        /// The exchange loses nothing, puts each key in exactly one partition
        /// and keeps the relative order of records from the same input partition.
        #[test]
        fn exchange_partitions_by_key(records in proptest::collection::vec((0u8..20, 0usize..3), 0..200), n in 1usize..6) {
            let mut parts = vec![Batch::new(); 3];
            for (i, (k, p)) in records.iter().enumerate() {
                parts[*p].push(Some(&[*k]), &(i as u32).to_le_bytes(), i as i64);
                // Headers on some records: each must arrive with its record.
                for _ in 0..i % 3 {
                    parts[*p].push_header(b"i", Some(&(i as u32).to_le_bytes()));
                }
            }
            let out = exchange(parts.clone(), n, 0, &Exchange::default());
            prop_assert_eq!(out.iter().map(Batch::len).sum::<usize>(), records.len());
            for (p, b) in out.iter().enumerate() {
                prop_assert_eq!(b.validate(), Ok(()));
                let mut last_seen = [-1i64; 3];
                for r in b.iter() {
                    let i = r.timestamp as u32;
                    prop_assert_eq!(r.headers.len(), i as usize % 3);
                    prop_assert!(r.headers.iter().all(|h| h.value == Some(&i.to_le_bytes()[..])));
                    prop_assert_eq!(partition::for_key(r.key.unwrap(), n as u32) as usize, p);
                    let src = records[r.timestamp as usize].1;
                    prop_assert!(r.timestamp > last_seen[src]);
                    last_seen[src] = r.timestamp;
                }
            }
        }

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
