//! The job: what it is made of ([`Job`], built in code with [`JobBuilder`]
//! or from a job file), how it fails ([`JobError`]) and what it did
//! ([`Summary`]).

use super::checkpoint::Checkpointing;
use super::plan::name_streams;
use super::{JobStats, SkipCount};
use crate::operators::registry::BUILTINS;
use crate::operators::{OperatorError, OperatorFactory};
use crate::signal::Halt;
use crate::sink::{self, Sink};
use crate::source::{self, SourceError};
use crate::spec::limits::{Limits, OnBreach};
use crate::spec::{ConfigError, PartitionBy, SinkConfig, SourceConfig};
use crate::spec::{Every, JobConfig, RollbackWindow};
use crate::state::Fingerprint;
use crate::wasm::VersionCell;
use crate::wasm::reload::Reloader;
use crate::wasm::{LoadError, Runtime};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use tokio::sync::watch;

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
    /// A checkpoint could not be written or read.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// The job changed incompatibly with the checkpoint it would resume from.
    #[error(
        "the job changed incompatibly with its checkpoint in {}: {changes}; run with --reset-state to start afresh (its state and input positions are then lost), or restore the job as it was",
        dir.display()
    )]
    Incompatible {
        /// The checkpoint directory.
        dir: PathBuf,
        /// What changed.
        changes: String,
    },
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
    /// Checkpoints written.
    pub checkpoints: u64,
    /// Bytes of the checkpoints written.
    pub checkpoint_bytes: u64,
    /// Time the checkpoints took, from syncing the sinks to committing the
    /// input (the commit thread's time; the operators' share is collected
    /// between batches).
    pub checkpoint_time: Duration,
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
        if self.checkpoints > 0 {
            write!(
                f,
                "; {} checkpoint(s), {:.1} MB, {:.1} ms each on average",
                self.checkpoints,
                self.checkpoint_bytes as f64 / 1e6,
                self.checkpoint_time.as_secs_f64() * 1e3 / self.checkpoints as f64
            )?;
        }
        Ok(())
    }
}

/// A job ready to run.
pub struct Job {
    pub(super) name: String,
    pub(super) workers: usize,
    pub(super) partitions: usize,
    pub(super) partition_by: PartitionBy,
    pub(super) interval: Option<Duration>,
    pub(super) max_records: Option<usize>,
    /// Bytes after which a micro-batch is cut (see [`held_bytes`](crate::model::batch::held_bytes)).
    pub(super) max_bytes: usize,
    /// The longest line (or Kafka record) a source takes.
    pub(super) max_line_bytes: usize,
    /// Each source with the stream it feeds (`None`: the unnamed stream).
    pub(super) sources: Vec<(Option<String>, SourceConfig)>,
    pub(super) operators: Vec<Arc<dyn OperatorFactory>>,
    /// Stream names by number; 0 is the stream of unnamed sources.
    pub(super) streams: Vec<String>,
    pub(super) sinks: Vec<Box<dyn Sink>>,
    pub(super) dead_letter: Option<PathBuf>,
    pub(super) progress: bool,
    /// What every Wasm instance of the job may use.
    pub(super) limits: Limits,
    /// Records dropped under `on_breach = "skip"`.
    pub(super) skipped: SkipCount,
    /// Live counters.
    pub(super) stats: Arc<JobStats>,
    /// The swappable operators.
    pub(super) reloader: Reloader,
    /// Ends the job's operator calls by force.
    pub(super) halt: Halt,
    /// Where and how often the job keeps checkpoints.
    pub(super) checkpoint: Option<Checkpointing>,
    /// A stop emits every open window first ([`Job::drain_flag`]).
    pub(super) drain: Arc<AtomicBool>,
    /// What the job is made of, for its checkpoints.
    pub(super) fingerprint: Fingerprint,
    /// The configurations of the sinks opened from configuration.
    pub(super) sink_configs: Vec<SinkConfig>,
}

/// Builds a [`Job`] in code.
pub struct JobBuilder {
    pub(super) job: Job,
    /// The version cells of the swappable operators.
    pub(super) cells: Vec<Arc<VersionCell>>,
    /// How long a replaced version is kept for a rollback.
    pub(super) rollback: RollbackWindow,
    pub(super) sink_configs: Vec<SinkConfig>,
    pub(super) base: PathBuf,
}

/// The number of CPU cores, the default worker count.
pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Bytes after which a micro-batch is cut whatever its record count, the
/// default and the largest bound accepted: offsets are 32-bit and guests
/// have 32-bit memories, so a batch stays well below 4 GiB. Counted as
/// [`held_bytes`](crate::model::batch::held_bytes) counts them, so empty records count too.
pub const MAX_BATCH_BYTES: usize = crate::spec::MAX_BATCH_BYTES as usize;

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
    /// Adds a Wasm reducer (`reduce` component) that can be swapped for a
    /// new version while the job runs (see [`Job::reloader`]); the
    /// accumulators carry over.
    pub fn reducer_operator(
        mut self,
        name: impl Into<String>,
        plugin: &crate::wasm::Plugin,
        config: Vec<(String, String)>,
        mode: crate::spec::ReduceMode,
    ) -> Self {
        let (factory, cell) = crate::wasm::swappable_reducer(plugin, name.into(), config, mode);
        self.cells.push(cell);
        self.job.operators.push(factory);
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
    /// Cut a micro-batch when its records are held in this many bytes
    /// (default and most: [`MAX_BATCH_BYTES`]).
    pub fn max_batch_bytes(mut self, n: usize) -> Self {
        self.job.max_bytes = n;
        self
    }
    /// The longest line (and largest Kafka record) a source takes
    /// (default [`crate::spec::DEFAULT_MAX_LINE_BYTES`]); a longer one
    /// fails the job.
    pub fn max_line_bytes(mut self, n: usize) -> Self {
        self.job.max_line_bytes = n;
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
    /// How long after adoption a new version of a swappable operator that
    /// fails goes back to the version it replaced (default: 10 batches).
    pub fn rollback_window(mut self, window: RollbackWindow) -> Self {
        self.rollback = window;
        self
    }
    /// Print a progress line to stderr every few seconds.
    pub fn progress(mut self, on: bool) -> Self {
        self.job.progress = on;
        self
    }
    /// Keeps checkpoints in `dir`, taken as `every` says; a job whose
    /// checkpoint exists there resumes from it.
    pub fn checkpoint(mut self, dir: impl Into<PathBuf>, every: Every) -> Self {
        self.job.checkpoint = Some(Checkpointing {
            dir: dir.into(),
            every,
            reset: false,
        });
        self
    }
    /// Adds a field of what the job is made of, compared with a checkpoint's
    /// on resume (the job file's operators and settings add theirs).
    pub fn fingerprint(mut self, field: impl Into<String>, value: impl Into<String>) -> Self {
        self.job.fingerprint.push(field, value);
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
        if !(1..=MAX_BATCH_BYTES).contains(&job.max_line_bytes) {
            return Err(JobError::Invalid(format!(
                "max_line_bytes must be from 1 to {MAX_BATCH_BYTES}"
            )));
        }
        if !(1..=MAX_BATCH_BYTES).contains(&job.max_bytes) {
            return Err(JobError::Invalid(format!(
                "max_batch_bytes must be from 1 to {MAX_BATCH_BYTES}"
            )));
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
        for (_, s) in &mut job.sources {
            // A Kafka source's static group membership is the job's.
            if let SourceConfig::Kafka(k) = s {
                k.job = Some(job.name.clone());
            }
            source::preflight(s)?;
        }
        job.streams = name_streams(&job.sources, &job.operators)?;
        job.fingerprint = super::checkpoint::fingerprint(job, &self.sink_configs);
        for (i, cfg) in self.sink_configs.iter_mut().enumerate() {
            if let SinkConfig::Kafka(k) = cfg
                && k.delivery == crate::spec::Delivery::ExactlyOnce
            {
                k.transactional_id = Some(sink::kafka::transactional_id(k, &job.name, i));
            }
            let s = sink::open(cfg, &self.base).map_err(|error| JobError::Sink {
                sink: sink::describe(cfg),
                error,
            })?;
            job.sinks.push(s);
        }
        if job.sinks.is_empty() {
            return Err(JobError::Invalid("a job needs at least one sink".into()));
        }
        job.sink_configs = self.sink_configs.clone();
        if let Some(p) = &job.dead_letter {
            job.dead_letter = Some(self.base.join(p));
        }
        job.stats = Arc::new(JobStats::new(job.skipped.clone()));
        job.reloader = Reloader::new(&job.name, std::mem::take(&mut self.cells));
        job.reloader
            .bind(&job.limits, self.rollback, job.stats.clone());
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
                max_bytes: MAX_BATCH_BYTES,
                max_line_bytes: crate::spec::DEFAULT_MAX_LINE_BYTES as usize,
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
                halt: Halt::default(),
                checkpoint: None,
                drain: Arc::new(AtomicBool::new(false)),
                fingerprint: Fingerprint::default(),
                sink_configs: Vec::new(),
            },
            sink_configs: Vec::new(),
            cells: Vec::new(),
            rollback: RollbackWindow::default(),
            base: PathBuf::from("."),
        }
    }

    /// Reads a job file, loads its plugins (compiled once, cached) and opens
    /// its sinks. Relative paths are relative to the job file.
    pub fn from_file(path: &Path, runtime: &Runtime) -> Result<Job, JobError> {
        let cfg = JobConfig::from_file(path, &BUILTINS)?;
        Self::from_config(cfg, path, runtime)
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

    /// The job's [`Halt`]: raising it, from any thread, fails the job's
    /// operator calls within about 100 ms (and every later one at once),
    /// so a job asked to stop ends even while a call would run until its
    /// deadline. A stop request ([`Job::run`]'s `stop`) is the gentle way.
    pub fn halt(&self) -> Halt {
        self.halt.clone()
    }

    /// Makes `halt` the job's [`Halt`], for a supervisor that keeps one
    /// across the runs of a job.
    pub fn with_halt(mut self, halt: Halt) -> Self {
        self.halt = halt;
        self
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::Count;
    use crate::operators::NativeOperator;
    use crate::sink::CollectSink;

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

    /// Empty records once weighed nothing against the batch's byte bound,
    /// so a source of empty lines (or a generator with `value_size = 0`)
    /// could make a micro-batch of any number of records. Each record now
    /// counts the 17 bytes that place it.
    #[tokio::test]
    async fn empty_records_count_against_the_batch_byte_bound() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let largest = Arc::new(AtomicUsize::new(0));
        let seen = largest.clone();
        let watch = NativeOperator::new("watch", move |input, out| {
            seen.fetch_max(input.len(), Ordering::Relaxed);
            for r in input.iter() {
                out.forward(r);
            }
            Ok(())
        });
        let sink = CollectSink::new();
        let summary = Job::builder("t")
            .source(SourceConfig::Generator {
                records: Some(10_000),
                rate: None,
                value_size: 0,
                keys: None,
                seed: 1,
            })
            .operator(watch)
            .sink_boxed(Box::new(sink.clone()))
            .workers(1)
            .max_batch_bytes(1024)
            .build()
            .unwrap()
            .run_to_end()
            .await
            .unwrap();
        // 1024 bytes hold 60 records of 17 bytes.
        let most = 1024 / 17;
        assert_eq!(summary.records_out, 10_000);
        assert!(largest.load(Ordering::Relaxed) <= most, "{largest:?}");
        assert!(summary.batches >= 10_000 / most as u64, "{summary}");
    }
}
