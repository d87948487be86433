//! The Kafka source: a consumer-group member that hands records over in
//! chunks and commits a chunk's offsets only once the micro-batch holding it
//! is written by every sink (at-least-once).
//!
//! Keys, values, headers (in order, null values kept apart from empty ones)
//! and timestamps (create or log-append time, else the time of reading) are
//! kept. With `partition_by = "key"` and as many Sluice
//! partitions as Kafka partitions, a record keyed by a Kafka producer's
//! default partitioner lands in the Sluice partition of the same number:
//! both use murmur2 of the key ([`crate::model::partition::for_key`]).

use super::lines::{MAX_CHUNK_BYTES, MAX_LINE_BYTES};
use super::{CHUNK_RECORDS, Chunk};
use crate::model::batch::{self, Batch};
use crate::model::units::parse_duration;
use crate::spec::{KafkaSourceConfig, KafkaStart};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// How long brokers may stay unreachable at start by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The consumer's settings: ours, then the job's `config` table on top.
pub fn client_config(cfg: &KafkaSourceConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("group.id", &cfg.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set(
            "auto.offset.reset",
            match cfg.start {
                KafkaStart::Earliest => "earliest",
                KafkaStart::Latest => "latest",
            },
        )
        .set("allow.auto.create.topics", "false");
    for (k, v) in &cfg.config {
        c.set(k, v);
    }
    c
}

/// Creates the consumer, so that a malformed setting is reported before the
/// job starts.
pub fn create_consumer(cfg: &KafkaSourceConfig) -> Result<BaseConsumer, String> {
    client_config(cfg)
        .create::<BaseConsumer>()
        .map_err(|e| format!("invalid Kafka settings: {e}"))
}

/// Waits until the brokers answer and every topic exists, retrying with
/// backoff (and saying so) for up to the connect timeout.
fn await_topics(
    consumer: &BaseConsumer,
    cfg: &KafkaSourceConfig,
    stop: &watch::Receiver<bool>,
) -> Result<(), String> {
    let deadline = cfg
        .connect_timeout
        .as_deref()
        .map(parse_duration)
        .transpose()?
        .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    let started = Instant::now();
    let mut backoff = Duration::from_millis(250);
    let mut attempt = 1;
    loop {
        let error = match check_topics(consumer, &cfg.topics) {
            Ok(()) => return Ok(()),
            Err(TopicCheck::Missing(topic)) => {
                return Err(format!(
                    "topic `{topic}` does not exist on {}; create it first (topics are not created automatically)",
                    cfg.brokers
                ));
            }
            Err(TopicCheck::Unreachable(e)) => e,
        };
        if started.elapsed() >= deadline || *stop.borrow() {
            return Err(format!(
                "cannot reach the Kafka brokers at {} after {attempt} attempt(s) in {:.0?}: {error}",
                cfg.brokers,
                started.elapsed()
            ));
        }
        tracing::warn!(
            "cannot reach the Kafka brokers at {} (attempt {attempt}): {error}; retrying in {backoff:?}",
            cfg.brokers
        );
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(5));
        attempt += 1;
    }
}

enum TopicCheck {
    Missing(String),
    Unreachable(String),
}

fn check_topics(consumer: &BaseConsumer, topics: &[String]) -> Result<(), TopicCheck> {
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(3))
            .map_err(|e| TopicCheck::Unreachable(e.to_string()))?;
        let missing = metadata.topics().iter().any(|t| {
            t.name() == topic
                && (t.partitions().is_empty()
                    || t.error().is_some_and(|e| {
                        RDKafkaErrorCode::from(e) == RDKafkaErrorCode::UnknownTopicOrPartition
                    }))
        });
        if missing {
            return Err(TopicCheck::Missing(topic.clone()));
        }
    }
    Ok(())
}

/// Reads until `stop`; runs on a blocking thread.
pub fn run(
    cfg: KafkaSourceConfig,
    stream: usize,
    tx: mpsc::Sender<Chunk>,
    stop: watch::Receiver<bool>,
) -> Result<(), String> {
    let consumer = Arc::new(create_consumer(&cfg)?);
    await_topics(&consumer, &cfg, &stop)?;
    let topics: Vec<&str> = cfg.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|e| format!("cannot subscribe to {topics:?}: {e}"))?;
    tracing::info!(
        "reading {topics:?} from {} as group `{}`",
        cfg.brokers,
        cfg.group
    );
    let mut chunk = Batch::new();
    let mut positions = Positions::new(consumer.clone());
    loop {
        let stopping = *stop.borrow();
        let polled = if stopping {
            None
        } else {
            consumer.poll(Duration::from_millis(100))
        };
        match polled {
            Some(Ok(m)) => {
                // A record is bounded like a line: a batch's offsets are
                // 32-bit, and one record must never come near them.
                let size = m.key().map_or(0, <[u8]>::len)
                    + m.payload().map_or(0, <[u8]>::len)
                    + m.headers().map_or(0, |h| {
                        h.iter()
                            .map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len))
                            .sum()
                    });
                if size > MAX_LINE_BYTES {
                    return Err(format!(
                        "the record at {}/{} offset {} holds {} bytes, more than max_line_bytes = {}",
                        m.topic(),
                        m.partition(),
                        m.offset(),
                        size,
                        crate::model::units::format_size(MAX_LINE_BYTES as u64)
                    ));
                }
                let ts = m
                    .timestamp()
                    .to_millis()
                    .unwrap_or_else(crate::model::time::now_ms);
                chunk.push(m.key(), m.payload().unwrap_or_default(), ts);
                if let Some(headers) = m.headers() {
                    for h in headers.iter() {
                        chunk.push_header(h.key.as_bytes(), h.value);
                    }
                }
                positions.push(m.topic(), m.partition(), m.offset());
                // A chunk is bounded in bytes as well as in records.
                if chunk.len() < CHUNK_RECORDS && batch::held_bytes(&chunk) < MAX_CHUNK_BYTES {
                    continue;
                }
            }
            Some(Err(e)) => {
                if is_fatal(&e) {
                    return Err(format!("consumer failed: {e}"));
                }
                // Transient (a broker restarting, a rebalance): the client
                // reconnects by itself.
                tracing::warn!("kafka: {e}");
            }
            None => {}
        }
        if !chunk.is_empty() {
            let records = std::mem::take(&mut chunk);
            let offsets = std::mem::replace(&mut positions, Positions::new(consumer.clone()));
            if tx
                .blocking_send(Chunk {
                    stream,
                    records,
                    offsets: Some(offsets),
                })
                .is_err()
            {
                return Ok(());
            }
        }
        if stopping {
            return Ok(());
        }
    }
}

/// Where each record of a chunk came from, and the consumer that read it.
pub struct Positions {
    consumer: Arc<BaseConsumer>,
    /// The (topic, partition) pairs the records come from.
    partitions: Vec<(String, i32)>,
    /// Per record: index into `partitions`, and offset.
    records: Vec<(u32, i64)>,
}

impl Positions {
    fn new(consumer: Arc<BaseConsumer>) -> Self {
        Positions {
            consumer,
            partitions: Vec::new(),
            records: Vec::new(),
        }
    }

    fn push(&mut self, topic: &str, partition: i32, offset: i64) {
        let i = match self
            .partitions
            .iter()
            .position(|(t, p)| *p == partition && t == topic)
        {
            Some(i) => i,
            None => {
                self.partitions.push((topic.to_string(), partition));
                self.partitions.len() - 1
            }
        };
        self.records.push((i as u32, offset));
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Splits off the positions of the first `n` records (a chunk cut
    /// between two micro-batches).
    pub fn split_first(&mut self, n: usize) -> Positions {
        let rest = self.records.split_off(n.min(self.records.len()));
        Positions {
            consumer: self.consumer.clone(),
            partitions: self.partitions.clone(),
            records: std::mem::replace(&mut self.records, rest),
        }
    }
}

/// The offsets to commit after a micro-batch: per consumer (one per Kafka
/// source, each of its own group) and (topic, partition), the offset after
/// the batch's last record from it.
pub struct Offsets {
    by_consumer: Vec<ConsumerOffsets>,
}

/// One consumer's offsets of a micro-batch.
struct ConsumerOffsets {
    consumer: Arc<BaseConsumer>,
    next: BTreeMap<(String, i32), i64>,
}

impl ConsumerOffsets {
    /// As a partition list for a commit.
    fn list(&self) -> Result<TopicPartitionList, String> {
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in &self.next {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))
                .map_err(|e| format!("cannot list {topic}/{partition}: {e}"))?;
        }
        Ok(tpl)
    }
}

impl Offsets {
    /// The offsets after all of `positions`, if any, kept apart by the
    /// consumer that read them.
    pub fn after<'a>(positions: impl IntoIterator<Item = &'a Positions>) -> Option<Offsets> {
        let mut by_consumer: Vec<ConsumerOffsets> = Vec::new();
        for p in positions {
            let i = match by_consumer
                .iter()
                .position(|c| Arc::ptr_eq(&c.consumer, &p.consumer))
            {
                Some(i) => i,
                None => {
                    by_consumer.push(ConsumerOffsets {
                        consumer: p.consumer.clone(),
                        next: BTreeMap::new(),
                    });
                    by_consumer.len() - 1
                }
            };
            let next = &mut by_consumer[i].next;
            for &(i, offset) in &p.records {
                let e = next.entry(p.partitions[i as usize].clone()).or_insert(0);
                *e = (*e).max(offset + 1);
            }
        }
        by_consumer.retain(|c| !c.next.is_empty());
        (!by_consumer.is_empty()).then_some(Offsets { by_consumer })
    }

    /// The one consumer a transaction commits for (exactly-once takes a job
    /// with a single Kafka source).
    fn single(&self) -> Result<&ConsumerOffsets, String> {
        match self.by_consumer.as_slice() {
            [one] => Ok(one),
            several => Err(format!(
                "the batch holds records of {} Kafka sources; a transaction commits the offsets of one",
                several.len()
            )),
        }
    }

    /// As a partition list for a commit, of the job's single Kafka source.
    pub fn list(&self) -> Result<TopicPartitionList, String> {
        self.single()?.list()
    }

    /// The consumer group's metadata, for a transaction, of the job's single
    /// Kafka source.
    pub fn group_metadata(&self) -> Option<rdkafka::consumer::ConsumerGroupMetadata> {
        self.single().ok()?.consumer.group_metadata()
    }

    /// Commits each source's offsets through its own consumer, so that each
    /// group resumes where it stopped. A failed commit (a rebalance moved
    /// the partition, the broker is restarting) only means the records may
    /// be read again, so it is logged, not fatal.
    pub fn commit(&self) {
        for c in &self.by_consumer {
            let result = c.list().and_then(|tpl| {
                c.consumer
                    .commit(&tpl, CommitMode::Sync)
                    .map_err(|e| e.to_string())
            });
            if let Err(e) = result {
                tracing::warn!(
                    "kafka: offsets not committed ({e}); those records may be read again"
                );
            }
        }
    }
}

fn is_fatal(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::Fatal
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::GroupAuthorizationFailed
        )
    )
}
