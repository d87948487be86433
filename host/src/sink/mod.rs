//! Sinks: where each micro-batch's output goes, in batch order.
//!
//! Sinks are called from one dedicated thread, batch after batch, with the
//! batch's partitions in partition order; a batch is complete once every sink
//! has returned from [`Sink::write`]. One file per kind of sink; a sink that
//! commits a batch's input itself does so through [`Ack`], so sinks know no
//! source. Uses only [`crate::model`] and [`crate::spec`].

mod collect;
mod directory;
mod discard;
mod jsonl;
pub mod kafka;
mod stdout;

pub use collect::{CollectSink, OwnedRecord};
pub use directory::DirectorySink;
pub use discard::DiscardSink;
pub use jsonl::{JsonlSink, write_json_record};
pub use stdout::StdoutSink;

use crate::model::batch::Batch;
use crate::spec::SinkConfig;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::ConsumerGroupMetadata;
use std::path::Path;

/// A destination for micro-batch output.
pub trait Sink: Send {
    /// A short description for messages, e.g. `jsonl out.jsonl`.
    fn describe(&self) -> String;
    /// Writes one micro-batch (all its partitions) durably enough for this sink.
    fn write(&mut self, batch_no: u64, parts: &[Batch]) -> std::io::Result<()>;
    /// Flushes and closes at the end of the job.
    fn close(&mut self) -> std::io::Result<()> {
        Ok(())
    }
    /// Whether the sink commits the batch's input positions together with
    /// its output, in one transaction (exactly-once).
    fn transactional(&self) -> bool {
        false
    }
    /// Writes one micro-batch into the sink's open transaction (beginning
    /// one if none is open) and, with `commit`, commits the transaction with
    /// `input` (the positions after the input of every batch in it) and
    /// `batch_no` as the last batch it holds, so that a restarted job can
    /// tell which batches' output is in (the Kafka source's `committed_batch`).
    /// Only called on transactional sinks, for every batch, even one
    /// without output.
    fn write_transaction(
        &mut self,
        batch_no: u64,
        parts: &[Batch],
        _input: Option<&dyn Ack>,
        _commit: bool,
    ) -> std::io::Result<()> {
        self.write(batch_no, parts)
    }
    /// Makes everything written so far durable (synced to disk,
    /// acknowledged by the brokers) and says how far the output goes, for
    /// a checkpoint to record (a file's length, the next batch file).
    fn checkpoint(&mut self) -> std::io::Result<serde_json::Value> {
        Ok(serde_json::Value::Null)
    }
    /// Before the first batch: goes back to `progress`, what
    /// [`Sink::checkpoint`] said at the checkpoint the job resumes from,
    /// dropping output written after it; `None`: the job starts afresh
    /// with checkpoints, so earlier output goes.
    fn resume(&mut self, _progress: Option<&serde_json::Value>) -> std::io::Result<()> {
        Ok(())
    }
}

/// The input of a micro-batch as its sinks acknowledge it: the source
/// positions it was read from. Once every sink has the batch, the positions
/// are committed, by [`Ack::commit`] or, in a transactional sink, inside the
/// sink's own transaction.
pub trait Ack: Send + Sync {
    /// Commits the positions with their source: the records will not be
    /// read again.
    fn commit(&self);
    /// The positions as a Kafka consumer group's offsets and the group's
    /// metadata, for a producer transaction that commits them with the
    /// output.
    fn consumer_offsets(&self) -> Result<ConsumerOffsets, String>;
}

/// A Kafka consumer group's offsets to commit, and the group's metadata.
pub type ConsumerOffsets = (TopicPartitionList, ConsumerGroupMetadata);

/// Opens the sink `cfg`, resolving paths against `base`.
pub fn open(cfg: &SinkConfig, base: &Path) -> std::io::Result<Box<dyn Sink>> {
    Ok(match cfg {
        SinkConfig::Stdout { limit } => Box::new(StdoutSink::new(*limit)),
        SinkConfig::Jsonl { path } => Box::new(JsonlSink::create(&base.join(path))?),
        SinkConfig::Directory { path } => Box::new(DirectorySink::create(&base.join(path))?),
        SinkConfig::Discard {} => Box::new(DiscardSink),
        SinkConfig::Kafka(k) => Box::new(kafka::KafkaSink::create(k)?),
    })
}

/// A short description of a sink for messages, e.g. `jsonl out.jsonl`.
pub fn describe(cfg: &SinkConfig) -> String {
    match cfg {
        SinkConfig::Stdout { .. } => "stdout".into(),
        SinkConfig::Jsonl { path } => format!("jsonl {}", path.display()),
        SinkConfig::Directory { path } => format!("directory {}", path.display()),
        SinkConfig::Discard {} => "discard".into(),
        SinkConfig::Kafka(k) => format!("kafka {} {}", k.brokers, k.topic),
    }
}
