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
//! [limits]                    # what each operator instance may use; see [`crate::spec::limits`]
//! memory = "64MiB"
//! cpu_per_batch = "2s"
//! output_ratio = 10
//! state = "256MiB"
//! join_output = 100000
//! on_breach = "fail"
//! ```
//!
//! Parsing is strict: an unknown field, a wrong type or an unusable value is
//! an error naming the file, line, field and what is accepted.

use super::limits::{Limits, LimitsConfig, LimitsError, OnBreach};
use super::operator::{Builtins, OperatorConfig, Shape};
use super::sink::{Delivery, SinkConfig};
use super::source::{SourceConfig, SourceEntry};
use crate::model::units::{format_size, parse_duration, parse_size};
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
    /// Where and how often the job keeps checkpoints of its state and
    /// input positions. Without it, a restarted job starts afresh.
    pub checkpoint: Option<super::checkpoint::CheckpointConfig>,
    /// How long a new version of a Wasm operator may still be rolled back
    /// after adoption. Default: 10 micro-batches.
    pub reload: Option<super::reload::ReloadConfig>,
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
    /// Cut a batch when its records are held in this many bytes, e.g.
    /// `"64MiB"` (payload and 17 bytes per record; default and most: 1 GiB).
    pub max_bytes: Option<Spanned<String>>,
    /// The longest line (and the largest Kafka record) a source takes, e.g.
    /// `"1MiB"` (default 16 MiB): a longer one fails the job, naming this
    /// setting.
    pub max_line_bytes: Option<Spanned<String>>,
}

/// The most `batch.max_bytes` may be, and its default: 1 GiB.
pub const MAX_BATCH_BYTES: u64 = 1 << 30;
/// The least `batch.max_bytes` may be: 1 KiB.
pub const MIN_BATCH_BYTES: u64 = 1 << 10;
/// The default `batch.max_line_bytes`: 16 MiB. It may be from
/// [`MIN_BATCH_BYTES`] to [`MAX_BATCH_BYTES`].
pub const DEFAULT_MAX_LINE_BYTES: u64 = 16 << 20;

/// The dead-letter file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterConfig {
    /// JSON-lines file receiving rejected records and reasons, relative to the job file.
    pub path: PathBuf,
}

impl JobConfig {
    /// Reads and parses a job file.
    pub fn from_file(path: &Path, builtins: &dyn Builtins) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        Self::from_str(&text, path, builtins)
    }

    /// Parses job-file text; `path` is used in messages. The settings of
    /// built-in operators are checked by `builtins`.
    pub fn from_str(text: &str, path: &Path, builtins: &dyn Builtins) -> Result<Self, ConfigError> {
        let cfg: JobConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_string(),
        })?;
        cfg.validate(text, path, builtins)?;
        Ok(cfg)
    }

    fn validate(
        &self,
        text: &str,
        path: &Path,
        builtins: &dyn Builtins,
    ) -> Result<(), ConfigError> {
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
        for (setting, field) in [
            (&self.batch.max_bytes, "batch.max_bytes"),
            (&self.batch.max_line_bytes, "batch.max_line_bytes"),
        ] {
            let Some(b) = setting else { continue };
            let bytes = parse_size(b.get_ref()).map_err(|m| invalid(b.span(), field, m))?;
            if !(MIN_BATCH_BYTES..=MAX_BATCH_BYTES).contains(&bytes) {
                return Err(invalid(
                    b.span(),
                    field,
                    format!(
                        "{} is out of range (accepted: {} to {})",
                        format_size(bytes),
                        format_size(MIN_BATCH_BYTES),
                        format_size(MAX_BATCH_BYTES)
                    ),
                ));
            }
        }
        if let Some(c) = &self.checkpoint {
            c.every()
                .map_err(|(field, span, m)| invalid(span, &format!("checkpoint.{field}"), m))?;
        }
        if let Some(r) = &self.reload {
            r.window()
                .map_err(|(field, span, m)| invalid(span, &format!("reload.{field}"), m))?;
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
        // What each built-in's settings make of it, for the stream checks.
        let mut shapes = Vec::with_capacity(self.operators.len());
        for (i, op) in self.operators.iter().enumerate() {
            let o = op.get_ref();
            let field = format!("operators[{i}]");
            o.validate_kind(&field, builtins)
                .map_err(|(field, m)| invalid(op.span(), &field, m))?;
            let shape = match (&o.plugin, &o.builtin) {
                (None, Some(b)) if !builtins.names().contains(&b.as_str()) => {
                    return Err(invalid(
                        op.span(),
                        &format!("{field}.builtin"),
                        format!(
                            "unknown built-in {b:?} (accepted: {})",
                            builtins.names().join(", ")
                        ),
                    ));
                }
                (None, Some(b)) => {
                    let shape = builtins.check(b, &o.config_pairs()).map_err(|(key, m)| {
                        let setting = match key.as_str() {
                            "" => format!("{field}.config"),
                            key => format!("{field}.config.{key}"),
                        };
                        invalid(op.span(), &setting, m)
                    })?;
                    if shape.late_to_dead_letter && self.dead_letter.is_none() {
                        return Err(invalid(
                            op.span(),
                            &format!("{field}.config.late"),
                            "\"dead-letter\" needs a [dead_letter] path in the job".into(),
                        ));
                    }
                    shape
                }
                _ => Shape::default(),
            };
            shapes.push(shape);
        }
        self.validate_streams(&shapes, &invalid)?;
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
        shapes: &[Shape],
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
        for (i, (op, shape)) in self.operators.iter().zip(shapes).enumerate() {
            let o = op.get_ref();
            let builtin = o.builtin.as_deref().unwrap_or_default();
            let mut reads = Vec::new();
            if let Some(input) = &o.input {
                if !shape.reads.is_empty() {
                    let settings: Vec<String> =
                        shape.reads.iter().map(|(k, _)| format!("`{k}`")).collect();
                    return Err(invalid(
                        op.span(),
                        &format!("operators[{i}].input"),
                        format!(
                            "a {builtin} reads the streams named by its {} settings",
                            settings.join(" and ")
                        ),
                    ));
                }
                reads.push((format!("operators[{i}].input"), input.clone()));
            }
            for (setting, stream) in &shape.reads {
                reads.push((format!("operators[{i}].config.{setting}"), stream.clone()));
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
            if shape.starts_stream {
                let name = o.display_name();
                if streams.contains(&name) {
                    return Err(invalid(
                        op.span(),
                        &format!("operators[{i}].name"),
                        format!(
                            "a {builtin}'s output is the stream {name:?}, which a source already feeds; give the {builtin} another `name`"
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

    /// The byte bound of a batch, if set.
    pub fn max_batch_bytes(&self) -> Option<usize> {
        let b = self.batch.max_bytes.as_ref()?;
        parse_size(b.get_ref()).ok().map(|n| n as usize)
    }

    /// The longest line a source takes, if set.
    pub fn max_line_bytes(&self) -> Option<usize> {
        let b = self.batch.max_line_bytes.as_ref()?;
        parse_size(b.get_ref()).ok().map(|n| n as usize)
    }

    /// The batch interval, if set.
    pub fn interval(&self) -> Option<Duration> {
        self.batch
            .interval
            .as_ref()
            .and_then(|i| parse_duration(i.get_ref()).ok())
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
    use crate::spec::SettingError;

    /// No built-ins: these tests are of the job file's own checks (the
    /// built-ins' settings are tested with the operators' registry).
    struct NoBuiltins;

    impl Builtins for NoBuiltins {
        fn names(&self) -> &[&'static str] {
            &[]
        }
        fn check(&self, name: &str, _: &[(String, String)]) -> Result<Shape, SettingError> {
            Err((
                String::new(),
                format!("no built-in {name:?} in these tests"),
            ))
        }
    }

    fn parse(text: &str) -> Result<JobConfig, ConfigError> {
        JobConfig::from_str(text, Path::new("job.toml"), &NoBuiltins)
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
        let cfg = parse(&format!(
            "{MINIMAL}[limits]\nstate = \"4KiB\"\njoin_output = 50\n"
        ))
        .unwrap();
        let limits = cfg.limits().unwrap();
        assert_eq!((limits.state, limits.join_output), (4 << 10, 50));
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
        let msg = err("state = \"lots\"");
        assert!(
            msg.contains("field `limits.state`: \"lots\" is not a size"),
            "{msg}"
        );
        let msg = err("state = \"100\"");
        assert!(
            msg.contains(
                "field `limits.state`: 100 bytes is out of range (accepted: 1 KiB to 1024 GiB)"
            ),
            "{msg}"
        );
        for bad in ["0", "-3"] {
            let msg = err(&format!("join_output = {bad}"));
            assert!(
                msg.contains(&format!(
                    "field `limits.join_output`: {bad} is out of range (accepted: a number of records from 1 to 1000000000)"
                )),
                "{msg}"
            );
        }
        let msg = err("join_output = \"many\"");
        assert!(
            msg.contains("line 6") && msg.contains("join_output = \"many\""),
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
    fn batch_bytes_parse_as_sizes_within_bounds() {
        let cfg = parse(&format!("{MINIMAL}[batch]\nmax_bytes = \"64MiB\"\n")).unwrap();
        assert_eq!(cfg.max_batch_bytes(), Some(64 << 20));
        let err = parse(&format!("{MINIMAL}[batch]\nmax_bytes = \"2GiB\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "field `batch.max_bytes`: 2 GiB is out of range (accepted: 1 KiB to 1 GiB)"
            ),
            "{err}"
        );
        let err = parse(&format!("{MINIMAL}[batch]\nmax_bytes = \"lots\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("field `batch.max_bytes`: \"lots\" is not a size"),
            "{err}"
        );
    }

    #[test]
    fn max_line_bytes_parses_as_a_size_within_bounds() {
        let cfg = parse(&format!("{MINIMAL}[batch]\nmax_line_bytes = \"1MiB\"\n")).unwrap();
        assert_eq!(cfg.max_line_bytes(), Some(1 << 20));
        let err = parse(&format!("{MINIMAL}[batch]\nmax_line_bytes = \"1B\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "field `batch.max_line_bytes`: 1 bytes is out of range (accepted: 1 KiB to 1 GiB)"
            ),
            "{err}"
        );
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
