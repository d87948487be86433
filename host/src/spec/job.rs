//! The job file: a TOML description of sources, operators and sinks.
//!
//! ```toml
//! name = "wordcount"
//! workers = 2                 # CPU workers; default: number of cores
//!
//! [batch]
//! interval = "1s"             # cut a micro-batch at least this often
//! max_records = 10000         # ... or when it holds this many records
//!
//! [[sources]]
//! kind = "file"
//! path = "data/lines.txt"
//!
//! [[operators]]
//! name = "split"
//! plugin = "split_words.wasm"  # relative to the job file
//! config = { lowercase = true }
//!
//! [[operators]]
//! name = "count"
//! builtin = "count"
//!
//! [[sinks]]
//! kind = "stdout"
//!
//! [limits]                    # what each Wasm instance may use; see [`crate::spec::limits`]
//! memory = "64MiB"
//! cpu_per_batch = "2s"
//! output_ratio = 10
//! on_breach = "fail"
//! ```
//!
//! Parsing is strict: an unknown field, a wrong type or an unusable value is
//! an error naming the file, line, field and what is accepted.

use crate::model::units::{parse_duration, parse_size};
use crate::spec::limits::{Limit, Limits, OnBreach};
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// A problem with a job file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read job file {path}: {error}")]
    Read {
        /// The job file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The file is not valid TOML or does not match the job schema.
    #[error("{path}: {message}")]
    Syntax {
        /// The job file.
        path: PathBuf,
        /// The parser's message, with line, column and field.
        message: String,
    },
    /// A field has a value Sluice cannot use.
    #[error("{path}:{line}: field `{field}`: {message}")]
    Invalid {
        /// The job file.
        path: PathBuf,
        /// 1-based line of the offending value.
        line: usize,
        /// Dotted path of the field.
        field: String,
        /// What is wrong and what would be accepted.
        message: String,
    },
}

/// A parsed job file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    /// Job name, used in logs and output file names. Default: the file stem.
    pub name: Option<String>,
    /// Number of CPU workers. Default: number of cores.
    pub workers: Option<Spanned<usize>>,
    /// Number of partitions per stage. Default: the number of workers.
    pub partitions: Option<Spanned<usize>>,
    /// How records are spread over partitions at the source.
    #[serde(default)]
    pub partition_by: PartitionBy,
    /// When micro-batches are cut.
    #[serde(default)]
    pub batch: BatchConfig,
    /// Where records come from.
    pub sources: Vec<Spanned<SourceEntry>>,
    /// The chain of operators, in order.
    #[serde(default)]
    pub operators: Vec<Spanned<OperatorConfig>>,
    /// Where results go.
    pub sinks: Vec<Spanned<SinkConfig>>,
    /// Where rejected records go, with the reason. Without it, a rejected
    /// record stops the job.
    pub dead_letter: Option<DeadLetterConfig>,
    /// What every Wasm instance of the job may use. Default: the defaults of
    /// [`Limits`].
    pub limits: Option<LimitsConfig>,
}

/// The `[limits]` table; every setting is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Linear memory per instance, e.g. `"64MiB"` (`B`, `KiB`, `MiB`, `GiB`).
    pub memory: Option<Spanned<String>>,
    /// Longest one call may run, e.g. `"2s"`.
    pub cpu_per_batch: Option<Spanned<String>>,
    /// A call may pass the host at most this many bytes per byte of its
    /// input, plus 1 MiB.
    pub output_ratio: Option<Spanned<f64>>,
    /// What a breach does: `"fail"`, `"skip"` or `"dead-letter"`.
    pub on_breach: Option<Spanned<String>>,
}

/// A `[limits]` setting Sluice cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {message}")]
pub struct LimitsError {
    /// Dotted path of the field, `limits.memory`.
    pub field: String,
    /// Where its value is in the job file.
    pub span: std::ops::Range<usize>,
    /// What is wrong and what would be accepted.
    pub message: String,
}

impl LimitsConfig {
    /// The limits this table sets, the defaults for those it leaves out.
    pub fn resolve(&self) -> Result<Limits, LimitsError> {
        let error = |field: &str, span: std::ops::Range<usize>, message: String| LimitsError {
            field: format!("limits.{field}"),
            span,
            message,
        };
        let mut out = Limits::default();
        if let Some(m) = &self.memory {
            out.memory = parse_size(m.get_ref())
                .map_err(|msg| error(Limit::Memory.name(), m.span(), msg))?;
        }
        if let Some(c) = &self.cpu_per_batch {
            out.cpu_per_batch = Some(
                parse_duration(c.get_ref())
                    .map_err(|msg| error(Limit::CpuPerBatch.name(), c.span(), msg))?,
            );
        }
        if let Some(r) = &self.output_ratio {
            out.output_ratio = Some(*r.get_ref());
        }
        if let Some(p) = &self.on_breach {
            out.on_breach = p
                .get_ref()
                .parse()
                .map_err(|msg| error("on_breach", p.span(), msg))?;
        }
        out.validate().map_err(|(limit, msg)| {
            let span = match limit {
                Limit::Memory => self.memory.as_ref().map(Spanned::span),
                Limit::CpuPerBatch => self.cpu_per_batch.as_ref().map(Spanned::span),
                Limit::OutputRatio => self.output_ratio.as_ref().map(Spanned::span),
            };
            error(limit.name(), span.unwrap_or_default(), msg)
        })?;
        Ok(out)
    }
}

/// How records are spread over partitions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PartitionBy {
    /// Contiguous runs of equal size, one per partition; the partition that
    /// gets the first run rotates from batch to batch.
    #[default]
    RoundRobin,
    /// By [`crate::model::partition::for_key`]; records without a key go round-robin.
    Key,
}

/// When micro-batches are cut.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Cut a batch at least this often, e.g. `"500ms"`, `"2s"`, `"1m"`.
    pub interval: Option<Spanned<String>>,
    /// Cut a batch when it holds this many records.
    pub max_records: Option<Spanned<usize>>,
}

/// A `[[sources]]` entry: a source, and the stream it feeds.
#[derive(Debug, Clone)]
pub struct SourceEntry {
    /// The stream the source feeds. Operators pick a stream with `input`, a
    /// join names its two sides by stream. Unnamed sources feed one unnamed
    /// stream; sources with the same name feed one stream.
    pub name: Option<String>,
    /// The source itself.
    pub source: SourceConfig,
}

impl<'de> Deserialize<'de> for SourceEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut table = toml::Table::deserialize(d)?;
        let name = match table.remove("name") {
            None => None,
            Some(toml::Value::String(s)) if !s.trim().is_empty() => Some(s),
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "field `name`: expected a non-empty string, found {other}"
                )));
            }
        };
        let source = SourceConfig::deserialize(toml::Value::Table(table))
            .map_err(|e| D::Error::custom(e.message()))?;
        Ok(SourceEntry { name, source })
    }
}

/// A source of records.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SourceConfig {
    /// Lines of a text file (bounded).
    File {
        /// The file, relative to the job file.
        path: PathBuf,
    },
    /// Lines of files that appear in a directory (unbounded), like Spark's
    /// `textFileStream`. Names starting with `.` or ending in `.tmp` are skipped
    /// until renamed, so writers can publish files atomically.
    Directory {
        /// The directory, relative to the job file.
        path: PathBuf,
        /// How often to look for new files. Default `"1s"`.
        poll: Option<String>,
        /// Also read files present at start. Default `false`.
        #[serde(default)]
        existing: bool,
    },
    /// Lines from a TCP server, like Spark's `socketTextStream`; reconnects
    /// with backoff when the connection drops (unbounded).
    Socket {
        /// `host:port` to connect to.
        address: String,
    },
    /// Lines of standard input, until end of file.
    Stdin {},
    /// Records of Kafka topics, read as a member of a consumer group
    /// (unbounded). Keys, values and timestamps are kept; offsets are
    /// committed once every sink has written the batch holding the records
    /// (at-least-once).
    Kafka(KafkaSourceConfig),
    /// Deterministic synthetic records for tests and benchmarks.
    Generator {
        /// Total records; unbounded when absent.
        records: Option<u64>,
        /// Records per second; as fast as possible when absent.
        rate: Option<u64>,
        /// Approximate value size in bytes. Default 100.
        #[serde(default = "default_value_size")]
        value_size: usize,
        /// Number of distinct keys `key-0`...; unkeyed when absent.
        keys: Option<u64>,
        /// Seed of the pseudo-random words. Default 1.
        #[serde(default = "default_seed")]
        seed: u64,
    },
}

/// The `kafka` source's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// Bootstrap brokers, `host:port[,host:port...]`.
    pub brokers: String,
    /// Topics to read.
    pub topics: Vec<String>,
    /// Consumer group; processes of one job in the same group share the
    /// topics' partitions.
    pub group: String,
    /// Where a partition without a committed offset starts: `earliest`
    /// (default) or `latest`. Committed offsets always win.
    #[serde(default)]
    pub start: KafkaStart,
    /// How long to keep retrying unreachable brokers at start, e.g. `"30s"`
    /// (default).
    pub connect_timeout: Option<String>,
    /// Further librdkafka consumer settings, e.g.
    /// `{ "session.timeout.ms" = "10000" }`.
    #[serde(default)]
    pub config: std::collections::BTreeMap<String, String>,
}

/// Where a Kafka partition without a committed offset starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KafkaStart {
    /// The oldest record the broker keeps.
    #[default]
    Earliest,
    /// Records produced from now on.
    Latest,
}

/// The `kafka` sink's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// Bootstrap brokers, `host:port[,host:port...]`.
    pub brokers: String,
    /// The topic records are written to.
    pub topic: String,
    /// `at-least-once` (default), or `exactly-once`: each batch's output and
    /// the Kafka source's offsets commit in one transaction, so consumers
    /// reading with `isolation.level = read_committed` see every input's
    /// results once, even across crashes. Needs a job whose only source is
    /// a `kafka` source.
    #[serde(default)]
    pub delivery: Delivery,
    /// The producer's transactional id in exactly-once mode; default
    /// `sluice-<topic>`. A restarted run with the same id fences the crashed
    /// one off and aborts its open transaction; concurrent runs of one job
    /// (scale-out) need distinct ids.
    pub transactional_id: Option<String>,
    /// Further librdkafka producer settings.
    #[serde(default)]
    pub config: std::collections::BTreeMap<String, String>,
}

/// A Kafka sink's delivery guarantee.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Delivery {
    /// Offsets commit after the output is written: a crash may repeat output.
    #[default]
    AtLeastOnce,
    /// Output and offsets commit in one Kafka transaction.
    ExactlyOnce,
}

fn default_value_size() -> usize {
    100
}
fn default_seed() -> u64 {
    1
}

/// One step of the operator chain: a Wasm plugin, a Wasm reducer or a built-in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorConfig {
    /// Name used in logs and errors. Default: the plugin's or reducer's file
    /// stem, or the built-in's name.
    pub name: Option<String>,
    /// Path of a Wasm component, relative to the job file.
    pub plugin: Option<PathBuf>,
    /// A built-in operator: `count` (records per key in each micro-batch),
    /// `aggregate` (keyed count/sum/min/max/avg, optionally windowed; see
    /// [`crate::operators::aggregate`]) or `join` (a windowed join of two streams; see
    /// [`crate::operators::join`]).
    pub builtin: Option<String>,
    /// Path of a `reduce` component (a keyed reducer whose accumulators the
    /// host keeps; see [`crate::wasm::WasmReducer`]), relative to the job
    /// file.
    pub reducer: Option<PathBuf>,
    /// Which results a `reducer` emits after each micro-batch: `update` (the
    /// keys that changed, the default) or `complete` (every key, sorted).
    /// Only with `reducer`.
    pub mode: Option<String>,
    /// The stream the operator applies to (a source's `name`, or an earlier
    /// join's); records of other streams pass it untouched. Default: every
    /// record that reaches it.
    pub input: Option<String>,
    /// Settings passed to the plugin's `init`, as strings.
    #[serde(default)]
    pub config: toml::Table,
}

/// A sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SinkConfig {
    /// Prints the first `limit` records of each batch, like `DStream.print`.
    Stdout {
        /// Records shown per batch. Default 10.
        #[serde(default = "default_limit")]
        limit: usize,
    },
    /// Appends every record as a JSON object per line.
    Jsonl {
        /// The output file, relative to the job file.
        path: PathBuf,
    },
    /// Counts records and drops them (for benchmarks, like Spark's `noop`
    /// format).
    Discard {},
    /// Produces every record to a Kafka topic with an idempotent producer:
    /// key, value and timestamp kept, the partition chosen from the key by
    /// Kafka's murmur2 (as Java clients do; records without a key are
    /// spread at random), flushed at the end of each batch; a record the
    /// broker refuses fails the job.
    Kafka(KafkaSinkConfig),
    /// Writes each batch to its own file in a directory, atomically (written
    /// under a temporary name, then renamed).
    Directory {
        /// The directory, relative to the job file; created if needed.
        path: PathBuf,
    },
}

fn default_limit() -> usize {
    10
}

/// The dead-letter file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterConfig {
    /// JSON-lines file receiving rejected records and reasons, relative to the job file.
    pub path: PathBuf,
}

/// Built-in operators a job file may name.
pub const BUILTINS: &[&str] = &["count", "aggregate", "join"];

impl JobConfig {
    /// Reads and parses a job file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        Self::from_str(&text, path)
    }

    /// Parses job-file text; `path` is used in messages.
    pub fn from_str(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let cfg: JobConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_string(),
        })?;
        cfg.validate(text, path)?;
        Ok(cfg)
    }

    fn validate(&self, text: &str, path: &Path) -> Result<(), ConfigError> {
        let invalid =
            |span: std::ops::Range<usize>, field: &str, message: String| ConfigError::Invalid {
                path: path.to_owned(),
                line: line_of(text, span.start),
                field: field.to_string(),
                message,
            };
        for (field, v) in [("workers", &self.workers), ("partitions", &self.partitions)] {
            if let Some(v) = v
                && (*v.get_ref() == 0 || *v.get_ref() > 1024)
            {
                return Err(invalid(
                    v.span(),
                    field,
                    format!("{} is out of range (accepted: 1 to 1024)", v.get_ref()),
                ));
            }
        }
        if let Some(i) = &self.batch.interval {
            parse_duration(i.get_ref()).map_err(|m| invalid(i.span(), "batch.interval", m))?;
        }
        if let Some(m) = &self.batch.max_records
            && *m.get_ref() == 0
        {
            return Err(invalid(
                m.span(),
                "batch.max_records",
                "must be at least 1".into(),
            ));
        }
        if self.sources.is_empty() {
            return Err(ConfigError::Syntax {
                path: path.to_owned(),
                message: "no [[sources]]: a job needs at least one source".into(),
            });
        }
        if self.sinks.is_empty() {
            return Err(ConfigError::Syntax {
                path: path.to_owned(),
                message: "no [[sinks]]: a job needs at least one sink".into(),
            });
        }
        for (i, s) in self.sinks.iter().enumerate() {
            if let SinkConfig::Kafka(k) = s.get_ref()
                && k.delivery == Delivery::ExactlyOnce
            {
                let kafka_sources = self
                    .sources
                    .iter()
                    .filter(|s| matches!(s.get_ref().source, SourceConfig::Kafka(_)))
                    .count();
                if kafka_sources != 1 || self.sources.len() != 1 {
                    return Err(invalid(
                        s.span(),
                        &format!("sinks[{i}].delivery"),
                        "\"exactly-once\" needs a job whose only source is one `kafka` source \
                         (its offsets commit with the output)"
                            .into(),
                    ));
                }
            }
        }
        for (i, s) in self.sources.iter().enumerate() {
            match &s.get_ref().source {
                SourceConfig::Directory { poll: Some(p), .. } => {
                    parse_duration(p)
                        .map_err(|m| invalid(s.span(), &format!("sources[{i}].poll"), m))?;
                }
                SourceConfig::Generator { value_size, .. } if *value_size > 1 << 20 => {
                    return Err(invalid(
                        s.span(),
                        &format!("sources[{i}].value_size"),
                        format!("{value_size} is too large (accepted: up to 1048576 bytes)"),
                    ));
                }
                SourceConfig::Generator { rate: Some(0), .. } => {
                    return Err(invalid(
                        s.span(),
                        &format!("sources[{i}].rate"),
                        "must be at least 1 record per second (omit it for full speed)".into(),
                    ));
                }
                SourceConfig::Socket { address }
                    if address.parse::<std::net::SocketAddr>().is_err()
                        && !address.contains(':') =>
                {
                    return Err(invalid(
                        s.span(),
                        &format!("sources[{i}].address"),
                        format!("{address:?} is not host:port"),
                    ));
                }
                _ => {}
            }
        }
        for (i, op) in self.operators.iter().enumerate() {
            let o = op.get_ref();
            let field = format!("operators[{i}]");
            o.validate_kind(&field)
                .map_err(|(field, m)| invalid(op.span(), &field, m))?;
            match (&o.plugin, &o.builtin) {
                (None, Some(b)) if !BUILTINS.contains(&b.as_str()) => {
                    return Err(invalid(
                        op.span(),
                        &format!("{field}.builtin"),
                        format!("unknown built-in {b:?} (accepted: {})", BUILTINS.join(", ")),
                    ));
                }
                (None, Some(b)) if b == "count" && !o.config.is_empty() => {
                    return Err(invalid(
                        op.span(),
                        &format!("{field}.config"),
                        "`count` takes no settings (use `aggregate` for windows and other functions)".into(),
                    ));
                }
                (None, Some(b)) if b == "aggregate" => {
                    let agg =
                        crate::operators::aggregate::AggregateConfig::parse(&o.config_pairs())
                            .map_err(|(key, m)| {
                                invalid(op.span(), &format!("{field}.config.{key}"), m)
                            })?;
                    if agg.late_to_dead_letter && self.dead_letter.is_none() {
                        return Err(invalid(
                            op.span(),
                            &format!("{field}.config.late"),
                            "\"dead-letter\" needs a [dead_letter] path in the job".into(),
                        ));
                    }
                }
                _ => {}
            }
        }
        self.validate_streams(&invalid)?;
        if let Some(l) = &self.limits {
            let resolved = l
                .resolve()
                .map_err(|e| invalid(e.span, &e.field, e.message))?;
            if let Some(p) = &l.on_breach
                && resolved.on_breach == OnBreach::DeadLetter
                && self.dead_letter.is_none()
            {
                return Err(invalid(
                    p.span(),
                    "limits.on_breach",
                    "\"dead-letter\" needs a [dead_letter] path in the job (or use \"skip\" or \"fail\")".into(),
                ));
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, op) in self.operators.iter().enumerate() {
            let name = op.get_ref().display_name();
            if !names.insert(name.clone()) {
                return Err(invalid(
                    op.span(),
                    &format!("operators[{i}].name"),
                    format!("two operators are called {name:?}; give each a distinct `name`"),
                ));
            }
        }
        Ok(())
    }

    /// Checks that every stream an operator reads (`input`, a join's `left`
    /// and `right`) is a source's name or an earlier join's.
    fn validate_streams(
        &self,
        invalid: &dyn Fn(std::ops::Range<usize>, &str, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        let mut streams: Vec<String> = self
            .sources
            .iter()
            .filter_map(|s| s.get_ref().name.clone())
            .collect();
        let known = |streams: &[String]| {
            if streams.is_empty() {
                "no source has a `name`".to_string()
            } else {
                format!(
                    "known streams: {}",
                    streams
                        .iter()
                        .map(|s| format!("{s:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        };
        for (i, op) in self.operators.iter().enumerate() {
            let o = op.get_ref();
            let mut reads = Vec::new();
            if let Some(input) = &o.input {
                reads.push((format!("operators[{i}].input"), input.clone()));
            }
            let join = o.builtin.as_deref() == Some("join");
            if join {
                let j = crate::operators::join::JoinConfig::parse(&o.config_pairs()).map_err(
                    |(key, m)| invalid(op.span(), &format!("operators[{i}].config.{key}"), m),
                )?;
                if o.input.is_some() {
                    return Err(invalid(
                        op.span(),
                        &format!("operators[{i}].input"),
                        "a join reads the streams named by its `left` and `right` settings".into(),
                    ));
                }
                if j.settings.late_to_dead_letter && self.dead_letter.is_none() {
                    return Err(invalid(
                        op.span(),
                        &format!("operators[{i}].config.late"),
                        "\"dead-letter\" needs a [dead_letter] path in the job".into(),
                    ));
                }
                reads.push((format!("operators[{i}].config.left"), j.left));
                reads.push((format!("operators[{i}].config.right"), j.right));
            }
            for (field, stream) in reads {
                if !streams.contains(&stream) {
                    return Err(invalid(
                        op.span(),
                        &field,
                        format!(
                            "no source or earlier join is called {stream:?} ({})",
                            known(&streams)
                        ),
                    ));
                }
            }
            if join {
                let name = o.display_name();
                if streams.contains(&name) {
                    return Err(invalid(
                        op.span(),
                        &format!("operators[{i}].name"),
                        format!(
                            "a join's output is the stream {name:?}, which a source already feeds; give the join another `name`"
                        ),
                    ));
                }
                streams.push(name);
            }
        }
        Ok(())
    }

    /// The limits on the job's Wasm instances: the `[limits]` table, or the
    /// defaults.
    pub fn limits(&self) -> Result<Limits, LimitsError> {
        self.limits
            .as_ref()
            .map_or_else(|| Ok(Limits::default()), LimitsConfig::resolve)
    }

    /// The batch interval, if set.
    pub fn interval(&self) -> Option<Duration> {
        self.batch
            .interval
            .as_ref()
            .and_then(|i| parse_duration(i.get_ref()).ok())
    }
}

impl OperatorConfig {
    /// The name used in logs and errors.
    pub fn display_name(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        if let Some(p) = self.plugin.as_ref().or(self.reducer.as_ref()) {
            return p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| p.display().to_string());
        }
        self.builtin.clone().unwrap_or_default()
    }

    /// Checks that exactly one of `plugin`, `builtin` and `reducer` is set,
    /// and `mode` only with a valid `reducer`. The error gives the field at
    /// fault under `field` (`operators[i]`) and what is accepted.
    fn validate_kind(&self, field: &str) -> Result<(), (String, String)> {
        let set: Vec<&str> = [
            ("plugin", self.plugin.is_some()),
            ("builtin", self.builtin.is_some()),
            ("reducer", self.reducer.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, is_set)| is_set.then_some(name))
        .collect();
        match set.as_slice() {
            [_] => {}
            [] => {
                return Err((
                    field.to_string(),
                    format!(
                        "set `plugin` (a transform component), `reducer` (a reduce component) \
                         or `builtin` (one of: {})",
                        BUILTINS.join(", ")
                    ),
                ));
            }
            several => {
                return Err((
                    format!("{field}.{}", several[1]),
                    format!(
                        "set only one of `plugin`, `builtin` and `reducer` (this operator sets `{}`)",
                        several.join("` and `")
                    ),
                ));
            }
        }
        if let Some(mode) = &self.mode {
            let field = format!("{field}.mode");
            if self.reducer.is_none() {
                return Err((
                    field,
                    "`mode` applies only to a `reducer` (the built-in `aggregate` takes \
                     `mode` in its `config`)"
                        .into(),
                ));
            }
            mode.parse::<crate::wasm::ReduceMode>()
                .map_err(|m| (field, m))?;
        }
        Ok(())
    }

    /// The settings as the key/value strings `init` receives.
    pub fn config_pairs(&self) -> Vec<(String, String)> {
        self.config
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), v)
            })
            .collect()
    }
}

/// 1-based line number of byte `offset` in `text`.
pub fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

impl fmt::Display for PartitionBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PartitionBy::RoundRobin => "round-robin",
            PartitionBy::Key => "key",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<JobConfig, ConfigError> {
        JobConfig::from_str(text, Path::new("job.toml"))
    }

    const MINIMAL: &str = "[[sources]]\nkind = \"stdin\"\n[[sinks]]\nkind = \"stdout\"\n";

    #[test]
    fn minimal_job_parses() {
        let cfg = parse(MINIMAL).unwrap();
        assert_eq!(cfg.sources.len(), 1);
        assert_eq!(cfg.partition_by, PartitionBy::RoundRobin);
    }

    #[test]
    fn unknown_field_names_line_and_field() {
        let err =
            parse("[[sources]]\nkind = \"file\"\npaht = \"x\"\n[[sinks]]\nkind = \"stdout\"\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("job.toml"), "{err}");
        // The line of the `[[sources]]` table holding the field, and the field.
        assert!(err.contains("line 1"), "{err}");
        assert!(
            err.contains("unknown field `paht`, expected `path`"),
            "{err}"
        );
    }

    #[test]
    fn unknown_source_kind_lists_accepted() {
        let err = parse("[[sources]]\nkind = \"kafkaa\"\n[[sinks]]\nkind = \"stdout\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("kafkaa") && err.contains("generator"), "{err}");
    }

    #[test]
    fn bad_interval_names_field_and_line() {
        let err = parse(&format!("{MINIMAL}[batch]\ninterval = \"5 parsecs\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("job.toml:6: field `batch.interval`"),
            "{err}"
        );
        assert!(err.contains("ms, s, m, h"), "{err}");
    }

    #[test]
    fn operator_needs_plugin_or_builtin() {
        let err = parse(&format!("{MINIMAL}[[operators]]\nname = \"x\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("operators[0]") && err.contains("builtin"),
            "{err}"
        );
        let err = parse(&format!("{MINIMAL}[[operators]]\nbuiltin = \"sum\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown built-in \"sum\"") && err.contains("count"),
            "{err}"
        );
    }

    #[test]
    fn aggregate_settings_are_checked_with_field_names() {
        let job = |cfg: &str| {
            parse(&format!(
                "{MINIMAL}[[operators]]\nbuiltin = \"aggregate\"\nconfig = {{ {cfg} }}\n"
            ))
        };
        assert!(job("function = \"sum\", window = \"tumbling\", length = \"10s\"").is_ok());
        let err = job("function = \"median\"").unwrap_err().to_string();
        assert!(err.contains("job.toml:5: field `operators[0].config.function`: unknown aggregate \"median\" (accepted: count, sum, min, max, avg)"), "{err}");
        let err = job("function = \"count\", window = \"hopping\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("config.window`: unknown window kind \"hopping\" (accepted: tumbling, sliding, session)"), "{err}");
        let err =
            job("function = \"count\", window = \"sliding\", length = \"10s\", slide = \"30s\"")
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("config.slide`: 30s is larger than the window length 10s"),
            "{err}"
        );
        let err = job("function = \"count\", late = \"dead-letter\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("config.late`") && err.contains("[dead_letter]"),
            "{err}"
        );
    }

    #[test]
    fn reducer_fields_are_checked_with_field_names() {
        let job = |op: &str| parse(&format!("{MINIMAL}[[operators]]\n{op}\n"));
        let cfg = job("reducer = \"dir/sum.wasm\"\nmode = \"complete\"").unwrap();
        let op = cfg.operators[0].get_ref();
        assert_eq!(op.display_name(), "sum");
        assert_eq!(op.mode.as_deref(), Some("complete"));
        let err = job("reducer = \"sum.wasm\"\nplugin = \"a.wasm\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "field `operators[0].reducer`: set only one of `plugin`, `builtin` and `reducer`"
            ),
            "{err}"
        );
        let err = job("reducer = \"sum.wasm\"\nmode = \"final\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "field `operators[0].mode`: unknown mode \"final\" (accepted: update, complete)"
            ),
            "{err}"
        );
        let err = job("plugin = \"a.wasm\"\nmode = \"update\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("field `operators[0].mode`: `mode` applies only to a `reducer`"),
            "{err}"
        );
        let err = job("name = \"x\"").unwrap_err().to_string();
        assert!(err.contains("`reducer` (a reduce component)"), "{err}");
    }

    #[test]
    fn limits_parse_with_defaults_for_the_rest() {
        let cfg = parse(&format!(
            "{MINIMAL}[limits]\nmemory = \"64MiB\"\noutput_ratio = 10\n"
        ))
        .unwrap();
        let limits = cfg.limits().unwrap();
        assert_eq!(limits.memory, 64 << 20);
        assert_eq!(limits.output_ratio, Some(10.0));
        assert_eq!(limits.cpu_per_batch, Limits::default().cpu_per_batch);
        assert_eq!(limits.on_breach, OnBreach::Fail);
        let cfg = parse(&format!(
            "{MINIMAL}[limits]\ncpu_per_batch = \"200ms\"\non_breach = \"skip\"\n"
        ))
        .unwrap();
        let limits = cfg.limits().unwrap();
        assert_eq!(limits.cpu_per_batch, Some(Duration::from_millis(200)));
        assert_eq!(limits.on_breach, OnBreach::Skip);
        assert_eq!(parse(MINIMAL).unwrap().limits().unwrap(), Limits::default());
    }

    #[test]
    fn bad_limits_name_the_field_and_what_is_accepted() {
        let err = |limits: &str| {
            parse(&format!("{MINIMAL}[limits]\n{limits}\n"))
                .unwrap_err()
                .to_string()
        };
        let msg = err("memory = \"64MB\"");
        assert!(
            msg.starts_with("job.toml:6: field `limits.memory`: \"64MB\" has unknown unit")
                && msg.contains("KiB, MiB or GiB"),
            "{msg}"
        );
        let msg = err("memory = \"16KiB\"");
        assert!(
            msg.contains(
                "field `limits.memory`: 16 KiB is out of range (accepted: 1 MiB to 4 GiB)"
            ),
            "{msg}"
        );
        let msg = err("cpu_per_batch = \"soon\"");
        assert!(
            msg.contains("field `limits.cpu_per_batch`: \"soon\""),
            "{msg}"
        );
        let msg = err("output_ratio = -1");
        assert!(
            msg.contains("field `limits.output_ratio`: -1 is out of range"),
            "{msg}"
        );
        let msg = err("on_breach = \"ignore\"");
        assert!(
            msg.contains(
                "field `limits.on_breach`: unknown policy \"ignore\" (accepted: fail, skip, dead-letter)"
            ),
            "{msg}"
        );
        let msg = err("on_breach = \"dead-letter\"");
        assert!(
            msg.contains("field `limits.on_breach`: \"dead-letter\" needs a [dead_letter] path"),
            "{msg}"
        );
        let msg = err("cpu = \"2s\"");
        assert!(msg.contains("unknown field `cpu`"), "{msg}");
        let ok = parse(&format!(
            "{MINIMAL}[limits]\non_breach = \"dead-letter\"\n[dead_letter]\npath = \"d.jsonl\"\n"
        ));
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn zero_workers_rejected() {
        let err = parse(&format!("workers = 0\n{MINIMAL}"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("job.toml:1: field `workers`"), "{err}");
    }

    #[test]
    fn config_values_become_strings() {
        let cfg = parse(&format!("{MINIMAL}[[operators]]\nplugin = \"a.wasm\"\nconfig = {{ n = 3, flag = true, s = \"x\" }}\n")).unwrap();
        let mut pairs = cfg.operators[0].get_ref().config_pairs();
        pairs.sort();
        assert_eq!(
            pairs,
            [
                ("flag".into(), "true".into()),
                ("n".into(), "3".into()),
                ("s".into(), "x".into())
            ]
        );
    }
}
