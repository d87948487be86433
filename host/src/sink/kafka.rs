//! The Kafka sink: an idempotent producer, flushed at the end of every
//! micro-batch; a record the brokers refuse fails the batch. In
//! exactly-once mode every batch is one transaction holding its output and
//! the Kafka source's offsets after the batch's input. Records keep their
//! key, value, timestamp and headers.

use super::{Ack, Sink};
use crate::model::batch::{Batch, Headers, Record};
use crate::spec::{Delivery, KafkaSinkConfig};
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long the end of a batch waits for the brokers to acknowledge it.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// Delivery failures reported by the producer's callbacks.
#[derive(Default, Clone)]
struct Deliveries {
    failed: Arc<Mutex<Failures>>,
}

#[derive(Default)]
struct Failures {
    count: u64,
    first: Option<String>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result
            && let Ok(mut f) = self.failed.lock()
        {
            f.count += 1;
            f.first.get_or_insert_with(|| e.to_string());
        }
    }
}

/// How long a transaction's begin, offsets and commit may take.
pub const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Writes records to one topic.
pub struct KafkaSink {
    topic: String,
    brokers: String,
    producer: BaseProducer<Deliveries>,
    deliveries: Deliveries,
    exactly_once: bool,
}

/// The producer's transactional id in exactly-once mode: the sink's
/// `transactional_id`, by default `sluice-<topic>`.
pub fn transactional_id(cfg: &KafkaSinkConfig) -> String {
    cfg.transactional_id
        .clone()
        .unwrap_or_else(|| format!("sluice-{}", cfg.topic))
}

/// The producer's settings: ours, then the job's `config` table on top.
pub fn client_config(cfg: &KafkaSinkConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        // The same partition for a key as Java clients choose.
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000");
    if cfg.delivery == Delivery::ExactlyOnce {
        c.set("transactional.id", transactional_id(cfg))
            // A crashed run's open transaction blocks read_committed
            // readers until it times out (or a restart fences it off).
            .set("transaction.timeout.ms", "10000")
            .set("message.timeout.ms", "10000");
    }
    for (k, v) in &cfg.config {
        c.set(k, v);
    }
    c
}

impl KafkaSink {
    /// A producer for `cfg`; a malformed setting is an error here.
    pub fn create(cfg: &KafkaSinkConfig) -> std::io::Result<Self> {
        let deliveries = Deliveries::default();
        let producer: BaseProducer<Deliveries> = client_config(cfg)
            .create_with_context(deliveries.clone())
            .map_err(|e| std::io::Error::other(format!("invalid Kafka settings: {e}")))?;
        let exactly_once = cfg.delivery == Delivery::ExactlyOnce;
        if exactly_once {
            // Fences off an earlier producer with the same id and aborts
            // the transaction it left open.
            producer
                .init_transactions(TRANSACTION_TIMEOUT)
                .map_err(|e| {
                    std::io::Error::other(format!(
                        "cannot start transactions on {}: {e}",
                        cfg.brokers
                    ))
                })?;
        }
        Ok(KafkaSink {
            topic: cfg.topic.clone(),
            brokers: cfg.brokers.clone(),
            producer,
            deliveries,
            exactly_once,
        })
    }

    /// One batch as one transaction: its records and the offsets after its
    /// input commit together, or neither does.
    fn transaction(&mut self, parts: &[Batch], input: Option<&dyn Ack>) -> std::io::Result<()> {
        let topic = self.topic.clone();
        let fail = move |what: &str, e: KafkaError| {
            std::io::Error::other(format!("transaction on `{topic}`: {what}: {e}"))
        };
        self.producer
            .begin_transaction()
            .map_err(|e| fail("cannot begin", e))?;
        let result = (|| {
            for r in parts.iter().flat_map(|p| p.iter()) {
                self.send(r)?;
            }
            self.flush()?;
            if let Some(input) = input {
                let (list, metadata) = input.consumer_offsets().map_err(std::io::Error::other)?;
                self.producer
                    .send_offsets_to_transaction(&list, &metadata, TRANSACTION_TIMEOUT)
                    .map_err(|e| fail("cannot add the source offsets", e))?;
            }
            self.producer
                .commit_transaction(TRANSACTION_TIMEOUT)
                .map_err(|e| fail("cannot commit", e))
        })();
        if result.is_err() {
            let _ = self.producer.abort_transaction(TRANSACTION_TIMEOUT);
        }
        result
    }

    fn send(&self, r: Record<'_>) -> std::io::Result<()> {
        loop {
            let mut record = BaseRecord::to(&self.topic)
                .payload(r.value)
                .timestamp(r.timestamp);
            if let Some(k) = r.key {
                record = record.key(k);
            }
            if !r.headers.is_empty() {
                record = record.headers(self.headers(r.headers)?);
            }
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    // Back-pressure: let deliveries drain the local queue.
                    self.producer.poll(Duration::from_millis(50));
                }
                Err((e, _)) => {
                    return Err(std::io::Error::other(format!(
                        "cannot produce to `{}`: {e}",
                        self.topic
                    )));
                }
            }
        }
    }

    /// A record's headers for the producer. Header keys are UTF-8 text in
    /// Kafka; the host refuses operator output with any other key, so only
    /// a native operator could make one, and that fails the batch.
    fn headers(&self, headers: Headers<'_>) -> std::io::Result<OwnedHeaders> {
        let mut owned = OwnedHeaders::new_with_capacity(headers.len());
        for h in headers {
            let key = std::str::from_utf8(h.key).map_err(|_| {
                std::io::Error::other(format!(
                    "cannot produce to `{}`: header key {:?} is not UTF-8 text",
                    self.topic,
                    String::from_utf8_lossy(h.key)
                ))
            })?;
            owned = owned.insert(Header {
                key,
                value: h.value,
            });
        }
        Ok(owned)
    }

    /// Waits for every record sent so far and reports refused ones.
    fn flush(&mut self) -> std::io::Result<()> {
        self.producer.flush(FLUSH_TIMEOUT).map_err(|e| {
            std::io::Error::other(format!(
                "records for `{}` not acknowledged by {} within {FLUSH_TIMEOUT:?}: {e}",
                self.topic, self.brokers
            ))
        })?;
        let mut failed = self
            .deliveries
            .failed
            .lock()
            .map_err(|_| std::io::Error::other("delivery report lock poisoned"))?;
        if failed.count > 0 {
            let count = std::mem::take(&mut failed.count);
            let first = failed.first.take().unwrap_or_default();
            return Err(std::io::Error::other(format!(
                "{count} record(s) not delivered to `{}`; first error: {first}",
                self.topic
            )));
        }
        Ok(())
    }
}

impl Sink for KafkaSink {
    fn describe(&self) -> String {
        format!("kafka {} {}", self.brokers, self.topic)
    }

    fn write(&mut self, _batch_no: u64, parts: &[Batch]) -> std::io::Result<()> {
        for r in parts.iter().flat_map(|p| p.iter()) {
            self.send(r)?;
        }
        self.flush()
    }

    fn close(&mut self) -> std::io::Result<()> {
        self.flush()
    }

    fn transactional(&self) -> bool {
        self.exactly_once
    }

    fn write_transaction(
        &mut self,
        _batch_no: u64,
        parts: &[Batch],
        input: Option<&dyn Ack>,
    ) -> std::io::Result<()> {
        if input.is_none() && parts.iter().all(Batch::is_empty) {
            return Ok(());
        }
        self.transaction(parts, input)
    }
}
