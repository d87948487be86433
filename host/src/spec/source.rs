//! The `[[sources]]` entries of a job file.

use serde::Deserialize;
use std::path::PathBuf;

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
    /// `{ "session.timeout.ms" = "10000" }`. A `group.instance.id` here
    /// replaces the one derived from [`KafkaSourceConfig::job`].
    #[serde(default)]
    pub config: std::collections::BTreeMap<String, String>,
    /// The name of the job the source reads for, filled in when the job
    /// is built (not read from the job file). With it the consumer joins
    /// its group as a static member (KIP-345), `group.instance.id =
    /// sluice-<job>-<source>-<host>` (characters Kafka does not take
    /// replaced by `_`; see
    /// [`crate::source::kafka::group_instance_id`]), so that a process
    /// restarted after a crash takes its partitions back at once instead of
    /// waiting out the dead member's `session.timeout.ms`. A second
    /// process of the same job on the same host claims the next free
    /// number, `sluice-<job>-<source>-<host>_1` and so on (by a lock file
    /// in the temporary directory, released when the process ends).
    ///
    /// Two processes that derive the same id fence each other: the later
    /// one takes the earlier one's partitions and the earlier one fails.
    /// That happens to two jobs of the same name reading with the same
    /// group from hosts of the same name (containers sharing a hostname),
    /// or from one host with different temporary directories (`TMPDIR`);
    /// give such jobs distinct names, or set `group.instance.id` in
    /// `config` yourself. A derived id leaves the group when the job stops
    /// cleanly, so that the others take its partitions over at once; an id
    /// set in `config` keeps Kafka's static-member behaviour and does not
    /// (its partitions wait for its return, or its session timeout).
    /// `None`: a dynamic member, as a consumer outside a job is.
    #[serde(skip)]
    pub job: Option<String>,
    /// Where a checkpoint the job resumes from had got to: `(topic,
    /// partition, next offset)`, filled in by the job (not read from the
    /// job file). Records of a partition below its offset are dropped as
    /// they are read: their output is in the checkpoint. The group's
    /// committed offsets may be behind these (a crash between the
    /// checkpoint and the commit), never ahead.
    #[serde(skip)]
    pub resume: Vec<(String, i32, i64)>,
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

fn default_value_size() -> usize {
    100
}
fn default_seed() -> u64 {
    1
}
