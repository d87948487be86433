//! Which micro-batch a Kafka source's group last committed in a
//! transaction: an exactly-once sink commits the source offsets with the
//! metadata `sluice-batch=<n>` on every partition, `n` being the last
//! batch the transaction holds, so that a job restarted from a checkpoint
//! can tell whether that checkpoint's output is in.

use super::client_config;
use crate::model::units::parse_duration;
use crate::spec::KafkaSourceConfig;
#[cfg(test)]
use crate::spec::batch_metadata;
use crate::spec::parse_batch_metadata as parse_batch;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::time::Duration;

/// How long reading the committed offsets may take by default: a pending
/// transaction's offsets are read only once it is committed or aborted.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The number of the last batch whose transaction committed the offsets of
/// the source `cfg`'s group: the largest `sluice-batch=<n>` among the
/// committed offsets of all partitions of its topics; `None` if no
/// partition's offset carries one (never committed, or only outside
/// transactions). A transaction still open holds back the answer until it
/// ends (the brokers abort it after `transaction.timeout.ms`, or when a
/// producer with the same transactional id starts), up to the source's
/// `connect_timeout` (30 s by default).
pub fn committed_batch(cfg: &KafkaSourceConfig) -> Result<Option<u64>, String> {
    let timeout = cfg
        .connect_timeout
        .as_deref()
        .map(parse_duration)
        .transpose()?
        .unwrap_or(READ_TIMEOUT);
    // A plain consumer of the group: it never subscribes, so it never
    // joins the group nor disturbs its members.
    let consumer: BaseConsumer = client_config(cfg)
        .remove("group.instance.id")
        .create()
        .map_err(|e| format!("invalid Kafka settings: {e}"))?;
    let mut partitions = TopicPartitionList::new();
    for topic in &cfg.topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), timeout)
            .map_err(|e| format!("cannot read the partitions of `{topic}`: {e}"))?;
        for t in metadata.topics().iter().filter(|t| t.name() == topic) {
            if let Some(e) = t.error() {
                return Err(format!(
                    "cannot read the partitions of `{topic}`: {:?}",
                    rdkafka::types::RDKafkaErrorCode::from(e)
                ));
            }
            for p in t.partitions() {
                partitions.add_partition(topic, p.id());
            }
        }
    }
    if partitions.count() == 0 {
        return Ok(None);
    }
    let committed = consumer
        .committed_offsets(partitions, timeout)
        .map_err(|e| {
            format!(
                "cannot read the committed offsets of group `{}`: {e}",
                cfg.group
            )
        })?;
    Ok(committed
        .elements()
        .iter()
        .filter(|e| matches!(e.offset(), Offset::Offset(_)))
        .filter_map(|e| parse_batch(e.metadata()))
        .max())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_numbers_are_read_back_from_the_metadata_they_were_written_as() {
        assert_eq!(batch_metadata(7), "sluice-batch=7");
        assert_eq!(parse_batch(&batch_metadata(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_batch(""), None);
        assert_eq!(parse_batch("sluice-batch="), None);
        assert_eq!(parse_batch("sluice-batch=-1"), None);
        assert_eq!(parse_batch("other=3"), None);
    }
}
