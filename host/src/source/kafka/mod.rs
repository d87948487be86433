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

use super::lines::MAX_CHUNK_BYTES;
use super::{CHUNK_RECORDS, Chunk};
use crate::metrics::SourceMeter;
use crate::model::batch::{self, Batch};
use crate::model::units::parse_duration;
use crate::spec::{KafkaSourceConfig, KafkaStart};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::types::RDKafkaErrorCode;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

mod committed;
mod membership;
mod ownership;
mod positions;
pub use committed::committed_batch;
use membership::Membership;
pub use membership::group_instance_id;
use ownership::{Ownership, Partition, SourceContext};
pub use positions::{Offsets, Positions};

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
pub fn create_consumer(cfg: &KafkaSourceConfig) -> Result<(), String> {
    create_consumer_for(cfg, Arc::default(), Membership::Dynamic, None).map(drop)
}

fn create_consumer_for(
    cfg: &KafkaSourceConfig,
    ownership: Arc<Ownership>,
    membership: Membership,
    meter: Option<Arc<SourceMeter>>,
) -> Result<SourceConsumer, String> {
    let mut config = client_config(cfg);
    // The client's statistics give the consumer lag per partition.
    if meter.is_some() && !cfg.config.contains_key("statistics.interval.ms") {
        config.set("statistics.interval.ms", LAG_EVERY_MS);
    }
    if let Some(id) = membership.derived_id() {
        config.set("group.instance.id", id);
    }
    let inner = config
        .create_with_context(SourceContext {
            ownership,
            meter,
            drain: ownership::drain_for(cfg.config.get("max.poll.interval.ms").map(String::as_str)),
        })
        .map_err(|e| format!("invalid Kafka settings: {e}"))?;
    Ok(SourceConsumer { inner, membership })
}

/// Waits until the brokers answer and every topic exists, retrying with
/// backoff (and saying so) for up to the connect timeout.
fn await_topics(
    consumer: &SourceConsumer,
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

fn check_topics(consumer: &SourceConsumer, topics: &[String]) -> Result<(), TopicCheck> {
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

/// Reads until `stop`; runs on a blocking thread. `source` is the
/// source's index in the job (its checkpointed positions are kept by it),
/// `stream` the stream it feeds.
pub fn run(
    cfg: KafkaSourceConfig,
    source: usize,
    stream: usize,
    tx: mpsc::Sender<Chunk>,
    stop: watch::Receiver<bool>,
    max_record: usize,
    meter: Arc<SourceMeter>,
) -> Result<(), String> {
    let ownership = Arc::new(Ownership::default());
    let membership = membership::claim(&cfg, source);
    let member = match &membership {
        Membership::Derived { id, .. } => format!(" as static member `{id}`"),
        Membership::Configured => " as the static member set in its config".into(),
        Membership::Dynamic => String::new(),
    };
    let consumer = Arc::new(create_consumer_for(
        &cfg,
        ownership.clone(),
        membership,
        Some(meter.clone()),
    )?);
    await_topics(&consumer, &cfg, &stop)?;
    let topics: Vec<&str> = cfg.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|e| format!("cannot subscribe to {topics:?}: {e}"))?;
    tracing::info!(
        "reading {topics:?} from {} as group `{}`{member}",
        cfg.brokers,
        cfg.group
    );
    let origin = Origin {
        consumer,
        ownership,
        source,
        resume: Arc::new(resume_offsets(&cfg.resume)),
    };
    let mut reader = Reader {
        positions: Positions::new(&origin),
        origin,
        stream,
        tx,
        runtime: tokio::runtime::Handle::current(),
        max_record,
        chunk: Batch::new(),
        pending: None,
        paused: false,
        generation: 0,
        meter,
    };
    let consumer = reader.origin.consumer.clone();
    loop {
        if *stop.borrow() {
            return reader.finish();
        }
        if !reader.offer() {
            return Ok(());
        }
        let polled = consumer.poll(if reader.pending.is_some() {
            Duration::ZERO
        } else {
            POLL
        });
        reader.follow_rebalance();
        match polled {
            Some(Ok(m)) => {
                reader.push(&m)?;
                // A chunk is bounded in bytes as well as in records.
                if reader.chunk.len() < CHUNK_RECORDS
                    && batch::held_bytes(&reader.chunk) < MAX_CHUNK_BYTES
                {
                    continue;
                }
                if reader.pending.is_some() {
                    // Two chunks held: nothing more until the job takes one.
                    reader.pause();
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
        if reader.pending.is_none() {
            reader.pending = reader.take_chunk();
        }
    }
}

/// How long a poll waits for a record.
const POLL: Duration = Duration::from_millis(100);

/// How often the client reports its statistics, the consumer lag among
/// them, in milliseconds.
const LAG_EVERY_MS: &str = "1000";

/// How long the job may push back before the source pauses its partitions
/// and polls while it waits: far below any `max.poll.interval.ms` (at least
/// the group's smallest session timeout, 6 s by default).
const PAUSE_AFTER: Duration = Duration::from_secs(1);

/// The reading side of a Kafka source.
///
/// A chunk the job has no room for stays `pending`; once that lasts
/// [`PAUSE_AFTER`], the consumer keeps polling with its partitions paused,
/// so that the group keeps the member (`max.poll.interval.ms`) and
/// rebalances are served however long the job pushes back.
struct Reader {
    // Fields drop in order: the leases of the positions before the
    // consumer, whose close waits for leased records.
    /// The chunk being read, and its positions.
    chunk: Batch,
    positions: Positions,
    /// A full chunk waiting for room in the job.
    pending: Option<(Batch, Positions)>,
    origin: Origin,
    stream: usize,
    tx: mpsc::Sender<Chunk>,
    runtime: tokio::runtime::Handle,
    /// The largest record taken (`batch.max_line_bytes`).
    max_record: usize,
    paused: bool,
    /// The assignment generation the chunks were last checked against.
    generation: u64,
    /// What the source hands over, and how long it waits to.
    meter: Arc<SourceMeter>,
}

impl Reader {
    /// Adds a record to the chunk, unless the checkpoint the job resumed
    /// from holds it already.
    fn push(&mut self, m: &BorrowedMessage<'_>) -> Result<(), String> {
        let Some(at) = self.positions.admit(m.topic(), m.partition(), m.offset()) else {
            return Ok(());
        };
        // A record is bounded like a line: a batch's offsets are 32-bit,
        // and one record must never come near them.
        let size = m.key().map_or(0, <[u8]>::len)
            + m.payload().map_or(0, <[u8]>::len)
            + m.headers().map_or(0, |h| {
                h.iter()
                    .map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len))
                    .sum()
            });
        if size > self.max_record {
            return Err(format!(
                "the record at {}/{} offset {} holds {} bytes, more than batch.max_line_bytes = {}",
                m.topic(),
                m.partition(),
                m.offset(),
                size,
                crate::model::units::format_size(self.max_record as u64)
            ));
        }
        let ts = m
            .timestamp()
            .to_millis()
            .unwrap_or_else(crate::model::time::now_ms);
        self.chunk
            .push(m.key(), m.payload().unwrap_or_default(), ts);
        if let Some(headers) = m.headers() {
            for h in headers.iter() {
                self.chunk.push_header(h.key.as_bytes(), h.value);
            }
        }
        self.positions.push_at(at, m.offset());
        Ok(())
    }

    fn take_chunk(&mut self) -> Option<(Batch, Positions)> {
        if self.chunk.is_empty() {
            return None;
        }
        let fresh = Positions::new(&self.origin);
        Some((
            std::mem::take(&mut self.chunk),
            std::mem::replace(&mut self.positions, fresh),
        ))
    }

    /// After a rebalance: drops the records of revoked partitions that the
    /// job does not have yet (their next owner reads them), and pauses any
    /// partitions newly assigned while the job pushes back.
    fn follow_rebalance(&mut self) {
        let generation = self.origin.ownership.generation();
        if generation == self.generation {
            return;
        }
        self.generation = generation;
        self.chunk = self.positions.keep_owned(&self.chunk);
        if let Some((records, positions)) = &mut self.pending {
            *records = positions.keep_owned(records);
            if records.is_empty() {
                self.pending = None;
            }
        }
        if self.paused {
            self.paused = false;
            self.pause();
        }
    }

    /// Hands the pending chunk to the job. While the job has no room, the
    /// source first just waits, up to [`PAUSE_AFTER`]; past that it pauses
    /// the partitions and returns after each poll's wait, so that the
    /// caller polls. False once the job takes no more chunks.
    fn offer(&mut self) -> bool {
        let Some((records, positions)) = self.pending.take() else {
            return true;
        };
        let tx = self.tx.clone();
        let waiting = Instant::now();
        let permit = loop {
            match self
                .runtime
                .block_on(tokio::time::timeout(POLL, tx.reserve()))
            {
                Ok(Ok(permit)) => break permit,
                Ok(Err(_)) => return false,
                Err(_) if self.paused || waiting.elapsed() >= PAUSE_AFTER => {
                    // Pausing drops what the client fetched ahead, so a
                    // short wait is only waited out.
                    self.pause();
                    self.pending = Some((records, positions));
                    return true;
                }
                Err(_) => {}
            }
        };
        self.origin.ownership.handed(positions.next_offsets());
        self.meter.sent(records.len(), waiting.elapsed());
        permit.send(Chunk {
            source: self.origin.source,
            stream: self.stream,
            records,
            offsets: Some(positions),
            span: None,
        });
        self.resume();
        true
    }

    /// At stop: hands over what was read, waiting for room.
    fn finish(mut self) -> Result<(), String> {
        let chunks = [self.pending.take(), self.take_chunk()];
        for (records, positions) in chunks.into_iter().flatten() {
            self.origin.ownership.handed(positions.next_offsets());
            self.meter.sent(records.len(), Duration::ZERO);
            let chunk = Chunk {
                source: self.origin.source,
                stream: self.stream,
                records,
                offsets: Some(positions),
                span: None,
            };
            if self.tx.blocking_send(chunk).is_err() {
                break;
            }
        }
        Ok(())
    }

    fn pause(&mut self) {
        self.set_paused(true);
    }

    fn resume(&mut self) {
        self.set_paused(false);
    }

    /// Pauses or resumes every assigned partition, unless already so.
    fn set_paused(&mut self, paused: bool) {
        if self.paused == paused {
            return;
        }
        let done = self.origin.consumer.assignment().and_then(|a| {
            if paused {
                self.origin.consumer.pause(&a)
            } else {
                self.origin.consumer.resume(&a)
            }
        });
        match done {
            Ok(()) => self.paused = paused,
            Err(e) => tracing::warn!(
                "kafka: cannot {} the partitions: {e}",
                if paused { "pause" } else { "resume" }
            ),
        }
    }
}

/// What the positions of a source's records share: its consumer, the
/// ownership of its partitions, its index in the job and the offsets it
/// resumed from.
#[derive(Clone)]
pub(super) struct Origin {
    consumer: Arc<SourceConsumer>,
    ownership: Arc<Ownership>,
    /// The source's index in the job.
    source: usize,
    /// Per partition, the offset below which records are dropped as read:
    /// the checkpoint the job resumed from holds their output.
    resume: Arc<HashMap<Partition, i64>>,
}

/// A checkpoint's offsets by partition (the largest, should one repeat).
fn resume_offsets(resume: &[(String, i32, i64)]) -> HashMap<Partition, i64> {
    let mut by_partition = HashMap::with_capacity(resume.len());
    for (topic, partition, next) in resume {
        let e = by_partition
            .entry((topic.clone(), *partition))
            .or_insert(*next);
        *e = (*e).max(*next);
    }
    by_partition
}

/// A source's consumer, with its rebalance callbacks, and its claim on its
/// `group.instance.id`.
pub(super) struct SourceConsumer {
    // The consumer closes before the claim on its id ends.
    inner: BaseConsumer<SourceContext>,
    membership: Membership,
}

impl std::ops::Deref for SourceConsumer {
    type Target = BaseConsumer<SourceContext>;

    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

/// How long a static member that stops waits for its leave request to be
/// sent before it closes anyway.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(5);

impl Drop for SourceConsumer {
    /// A static member does not leave its group when it closes (KIP-345):
    /// its partitions would wait for its session timeout. One with a
    /// derived id unsubscribes first, which leaves, so that a clean stop
    /// hands the partitions over at once as a dynamic member's does.
    fn drop(&mut self) {
        if !self.membership.leaves_on_close() {
            return;
        }
        self.inner.unsubscribe();
        let deadline = Instant::now() + LEAVE_TIMEOUT;
        // The revocation runs in a poll; the leave request goes once it
        // has, and the member id is forgotten then. Closing before would
        // not send it.
        while member_id(&self.inner).is_some_and(|id| !id.is_empty()) && Instant::now() < deadline {
            let _ = self.inner.poll(Duration::from_millis(20));
        }
    }
}

/// The consumer's member id in its group (empty before it joined and once
/// it left).
fn member_id(consumer: &BaseConsumer<SourceContext>) -> Option<String> {
    use rdkafka::bindings::{rd_kafka_mem_free, rd_kafka_memberid};
    let rk = consumer.client().native_ptr();
    // SAFETY: `rk` is a live client handle; librdkafka returns a
    // NUL-terminated string it allocated (or null), which is copied and
    // then freed with its own allocator.
    unsafe {
        let id = rd_kafka_memberid(rk);
        if id.is_null() {
            return None;
        }
        let owned = std::ffi::CStr::from_ptr(id).to_string_lossy().into_owned();
        rd_kafka_mem_free(rk, id.cast());
        Some(owned)
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
