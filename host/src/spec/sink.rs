//! The `[[sinks]]` entries of a job file.

use serde::Deserialize;
use std::path::PathBuf;

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
    /// The producer's transactional id in exactly-once mode; by default one
    /// unique to the job, the sink and the process, so that nothing fences
    /// it but its own consumer group. A name of one's own (distinct per
    /// process) lets a restarted run abort the crashed run's open
    /// transaction at once instead of after `transaction.timeout.ms`.
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

/// The prefix of the consumer-offset metadata with which an exactly-once
/// sink names the last batch of a transaction (`sluice-batch=<n>`).
pub const BATCH_METADATA: &str = "sluice-batch=";

/// The offset metadata of a transaction whose last batch is `batch_no`.
pub fn batch_metadata(batch_no: u64) -> String {
    format!("{BATCH_METADATA}{batch_no}")
}

/// The batch number in offset metadata, if it names one.
pub fn parse_batch_metadata(metadata: &str) -> Option<u64> {
    metadata.strip_prefix(BATCH_METADATA)?.parse().ok()
}
