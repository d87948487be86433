//! The Kafka sink: an idempotent producer, flushed at the end of every
//! micro-batch; a record the brokers refuse fails the batch. In
//! exactly-once mode a transaction holds the output of one batch, or of
//! every batch up to a checkpoint, and commits with the Kafka source's
//! offsets after their input. Records keep their key, value, timestamp and
//! headers.

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
use std::time::{Duration, Instant};

/// How long the end of a batch outside a transaction waits for the brokers
/// to acknowledge it.
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

/// How long a transaction's begin, offsets and commit calls may take.
pub const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Writes records to one topic.
pub struct KafkaSink {
    topic: String,
    brokers: String,
    producer: BaseProducer<Deliveries>,
    deliveries: Deliveries,
    exactly_once: bool,
    /// The brokers' `transaction.timeout.ms` for this producer.
    transaction_timeout: Duration,
    /// When the open transaction began, if one is open.
    open: Option<Instant>,
    /// The transactional id, held against other sinks of this process.
    held_id: Option<String>,
}

impl Drop for KafkaSink {
    fn drop(&mut self) {
        if let Some(id) = &self.held_id {
            crate::model::claim::let_go(id);
        }
    }
}

/// The transactional id of sink number `sink` of job `job` in
/// exactly-once mode: the sink's `transactional_id`, else
/// [`default_transactional_id`].
pub fn transactional_id(cfg: &KafkaSinkConfig, job: &str, sink: usize) -> String {
    cfg.transactional_id
        .clone()
        .unwrap_or_else(|| default_transactional_id(job, sink, &cfg.topic))
}

/// The transactional id of a sink that names none:
/// `sluice-<job>-<sink>-<topic>-<host>`, numbered `_1`, `_2`... for the
/// second and later processes of one job on one host ([`crate::model::claim`]),
/// so that neither two jobs writing one topic nor two processes of one job
/// fence each other, while a process restarted after a crash takes its id
/// back: its `init_transactions` aborts the transaction the crashed run left
/// open at once, instead of after `transaction.timeout.ms`, during which
/// `read_committed` readers of the topic would wait. A job built again in
/// the same process (a supervisor's restart) keeps its id; two sinks of one
/// name running at once in one process get two (a sink holds its id while
/// it lives).
///
/// A run killed mid-transaction is also fenced by its consumer group (each
/// transaction commits the source offsets with the group's member id,
/// which the brokers check).
pub fn default_transactional_id(job: &str, sink: usize, topic: &str) -> String {
    use crate::model::claim;
    let base = claim::kafka_name(&format!(
        "sluice-{job}-{sink}-{topic}-{}",
        claim::hostname()
    ));
    claim::name_for(&base).unwrap_or_else(|| {
        // No claim to be had: an id of this process alone, whose open
        // transaction the brokers abort after its timeout.
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        format!(
            "{base}-{:x}{:08x}",
            std::process::id(),
            started.subsec_nanos()
        )
    })
}

/// How long a transaction may stay open by default
/// (`transaction.timeout.ms`): a run killed mid-transaction holds back
/// `read_committed` readers of the topic for at most this long.
pub const DEFAULT_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(30);

/// A transaction's time as the sink spends it: two thirds of
/// `transaction.timeout.ms`, from its begin, for the batches it holds to
/// be written and the brokers to acknowledge their records (and as the
/// records' delivery timeout), the rest for adding the offsets and
/// committing, so that the brokers never abort a transaction that is still
/// committing.
fn flush_budget(transaction_timeout: Duration) -> Duration {
    transaction_timeout * 2 / 3
}

/// How long the batches of one transaction may take to be written: a
/// checkpoint interval (one transaction per checkpoint) must stay within it.
pub fn transaction_budget(cfg: &KafkaSinkConfig) -> Result<Duration, String> {
    transaction_timeout(cfg).map(flush_budget)
}

/// The `transaction.timeout.ms` a sink's producer runs with.
fn transaction_timeout(cfg: &KafkaSinkConfig) -> Result<Duration, String> {
    match cfg.config.get("transaction.timeout.ms") {
        None => Ok(DEFAULT_TRANSACTION_TIMEOUT),
        Some(ms) => ms
            .parse::<u64>()
            .ok()
            .filter(|&ms| ms >= 1000)
            .map(Duration::from_millis)
            .ok_or_else(|| {
                format!(
                    "config.\"transaction.timeout.ms\" = {ms:?}: expected a number of milliseconds, at least 1000"
                )
            }),
    }
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
        let timeout = transaction_timeout(cfg).unwrap_or(DEFAULT_TRANSACTION_TIMEOUT);
        c.set("transactional.id", transactional_id(cfg, "sluice", 0))
            .set("transaction.timeout.ms", timeout.as_millis().to_string())
            .set(
                "message.timeout.ms",
                flush_budget(timeout).as_millis().to_string(),
            );
    }
    for (k, v) in &cfg.config {
        c.set(k, v);
    }
    c
}

impl KafkaSink {
    /// A producer for `cfg`; a malformed setting is an error here.
    pub fn create(cfg: &KafkaSinkConfig) -> std::io::Result<Self> {
        let transaction_timeout = transaction_timeout(cfg).map_err(std::io::Error::other)?;
        let deliveries = Deliveries::default();
        let producer: BaseProducer<Deliveries> = client_config(cfg)
            .create_with_context(deliveries.clone())
            .map_err(|e| std::io::Error::other(format!("invalid Kafka settings: {e}")))?;
        let exactly_once = cfg.delivery == Delivery::ExactlyOnce;
        let held_id = cfg.transactional_id.clone().filter(|_| exactly_once);
        if let Some(id) = &held_id {
            crate::model::claim::hold(id);
        }
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
            transaction_timeout,
            open: None,
            held_id,
        })
    }

    /// Writes one batch into the open transaction, beginning one if none
    /// is open, and with `commit` commits it: its records and the offsets
    /// after its input (marked with `batch_no`, see
    /// the source's `committed_batch`) commit together, or
    /// neither does. On an error the caller aborts.
    fn transaction(
        &mut self,
        batch_no: u64,
        parts: &[Batch],
        input: Option<&dyn Ack>,
        commit: bool,
    ) -> std::io::Result<()> {
        let began = match self.open {
            Some(began) => began,
            None => {
                self.producer
                    .begin_transaction()
                    .map_err(|e| self.fail("cannot begin", e))?;
                *self.open.insert(Instant::now())
            }
        };
        for r in parts.iter().flat_map(|p| p.iter()) {
            self.send(r)?;
        }
        let budget = flush_budget(self.transaction_timeout);
        if !commit {
            // Deliveries drain while the transaction stays open; a refused
            // record fails the batch now rather than at the commit.
            self.producer.poll(Duration::ZERO);
            self.delivery_failures()?;
            if began.elapsed() >= budget {
                return Err(self.over_budget(began));
            }
            return Ok(());
        }
        self.flush(budget.saturating_sub(began.elapsed()))
            .map_err(|e| {
                std::io::Error::other(format!("{e} ({})", self.budget_explained(began)))
            })?;
        if let Some(input) = input {
            let (list, metadata) = input.consumer_offsets().map_err(std::io::Error::other)?;
            let marker = crate::spec::batch_metadata(batch_no);
            for mut e in list.elements() {
                e.set_metadata(marker.as_str());
            }
            self.producer
                .send_offsets_to_transaction(&list, &metadata, TRANSACTION_TIMEOUT)
                .map_err(|e| self.fail("cannot add the source offsets", e))?;
        }
        self.producer
            .commit_transaction(TRANSACTION_TIMEOUT)
            .map_err(|e| self.fail("cannot commit", e))?;
        self.open = None;
        Ok(())
    }

    /// Aborts the open transaction, if any.
    fn abort(&mut self) {
        if self.open.take().is_some()
            && let Err(e) = self.producer.abort_transaction(TRANSACTION_TIMEOUT)
        {
            tracing::warn!(
                "kafka: cannot abort the transaction on `{}`: {e}",
                self.topic
            );
        }
    }

    fn fail(&self, what: &str, e: KafkaError) -> std::io::Error {
        std::io::Error::other(format!("transaction on `{}`: {what}: {e}", self.topic))
    }

    /// What the flush budget is, and how to get more.
    fn budget_explained(&self, began: Instant) -> String {
        format!(
            "the transaction has been open for {:.1?}; a transaction leaves two thirds of transaction.timeout.ms = {:?}, from its begin, for its batches and their records; raise that in the sink's config, or checkpoint more often",
            began.elapsed(),
            self.transaction_timeout
        )
    }

    fn over_budget(&self, began: Instant) -> std::io::Error {
        std::io::Error::other(format!(
            "transaction on `{}` not committed in time: {}",
            self.topic,
            self.budget_explained(began)
        ))
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

    /// Waits up to `timeout` for every record sent so far and reports
    /// refused ones.
    fn flush(&mut self, timeout: Duration) -> std::io::Result<()> {
        self.producer.flush(timeout).map_err(|e| {
            std::io::Error::other(format!(
                "records for `{}` not acknowledged by {} within {timeout:?}: {e}",
                self.topic, self.brokers
            ))
        })?;
        self.delivery_failures()
    }

    /// Reports the records refused since the last report.
    fn delivery_failures(&self) -> std::io::Result<()> {
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
        self.flush(FLUSH_TIMEOUT)
    }

    fn close(&mut self) -> std::io::Result<()> {
        if self.open.is_some() {
            // Its input's offsets were never committed: the records are
            // read again, so their output must not show.
            tracing::warn!(
                "kafka: the job ended with a transaction open on `{}`; it is aborted",
                self.topic
            );
            self.abort();
        }
        self.flush(FLUSH_TIMEOUT)
    }

    fn transactional(&self) -> bool {
        self.exactly_once
    }

    fn write_transaction(
        &mut self,
        batch_no: u64,
        parts: &[Batch],
        input: Option<&dyn Ack>,
        commit: bool,
    ) -> std::io::Result<()> {
        let nothing = parts.iter().all(Batch::is_empty) && (input.is_none() || !commit);
        if self.open.is_none() && nothing {
            return Ok(());
        }
        let result = self.transaction(batch_no, parts, input, commit);
        if result.is_err() {
            self.abort();
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(config: &[(&str, &str)]) -> KafkaSinkConfig {
        let mut text = String::from(
            "brokers = \"127.0.0.1:9\"\ntopic = \"out\"\ndelivery = \"exactly-once\"\n[config]\n",
        );
        for (k, v) in config {
            text.push_str(&format!("{k:?} = {v:?}\n"));
        }
        toml::from_str(&text).unwrap()
    }

    fn millis(c: &ClientConfig, key: &str) -> u64 {
        c.get(key).unwrap().parse().unwrap()
    }

    /// The transaction once timed out after 10 s while the end of a batch
    /// waited up to 60 s for the brokers.
    #[test]
    fn a_transaction_outlasts_the_wait_for_its_records() {
        for config in [vec![], vec![("transaction.timeout.ms", "120000")]] {
            let cfg = sink(&config);
            let c = client_config(&cfg);
            let transaction = millis(&c, "transaction.timeout.ms");
            let delivery = millis(&c, "message.timeout.ms");
            let wait = flush_budget(transaction_timeout(&cfg).unwrap()).as_millis() as u64;
            assert!(delivery < transaction, "{delivery} ms vs {transaction} ms");
            assert!(wait < transaction, "{wait} ms vs {transaction} ms");
            // Room to add the offsets and commit after the records.
            assert!(transaction - wait >= transaction / 4);
        }
        let refused = transaction_timeout(&sink(&[("transaction.timeout.ms", "soon")]));
        assert!(refused.unwrap_err().contains("transaction.timeout.ms"));
    }

    /// `sluice-<topic>` was every job's id: two jobs writing one topic, or
    /// two processes of one job, fenced each other's producers.
    #[test]
    fn default_transactional_ids_differ_per_job_and_sink_and_stay_per_process() {
        let cfg = sink(&[]);
        let a = transactional_id(&cfg, "orders", 0);
        let b = transactional_id(&cfg, "orders", 0);
        let c = transactional_id(&cfg, "billing", 1);
        let host = crate::model::claim::hostname();
        assert!(a.starts_with("sluice-orders-0-out-"), "{a}");
        assert!(a.contains(&crate::model::claim::kafka_name(&host)), "{a}");
        assert!(c.starts_with("sluice-billing-1-out-"), "{c}");
        assert_ne!(a, c);
        // Built again in this process, the job keeps its id; another
        // process on this host claims the next number (model::claim tests).
        assert_eq!(a, b);
        let named = KafkaSinkConfig {
            transactional_id: Some("mine".into()),
            ..cfg
        };
        assert_eq!(transactional_id(&named, "orders", 0), "mine");
    }
}
