//! A real Kafka broker for tests and benchmarks, started by
//! `scripts/kafka.sh` (once per test process; it keeps running afterwards,
//! `bash scripts/kafka.sh stop` stops it), and small client helpers.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The class path of Kafka's jars, which `scripts/kafka.sh` fetches (its
/// tools among them, such as `ProducerPerformance`).
pub fn classpath() -> String {
    repo().join(".cache/kafka/libs/*").display().to_string()
}

/// The bootstrap address of the test broker, starting it if needed.
pub fn broker() -> String {
    static ADDRESS: OnceLock<String> = OnceLock::new();
    ADDRESS
        .get_or_init(|| {
            let out = Command::new("bash")
                .arg(repo().join("scripts/kafka.sh"))
                .arg("start")
                .output()
                .expect("run scripts/kafka.sh");
            assert!(
                out.status.success(),
                "scripts/kafka.sh start failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            // The script prints the address alone on its last line.
            let stdout = String::from_utf8_lossy(&out.stdout);
            let address = stdout.lines().last().unwrap_or_default().trim().to_string();
            assert!(
                address.rsplit_once(':').is_some_and(|(host, port)| {
                    !host.is_empty()
                        && port.parse::<u16>().is_ok()
                        && host
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b".-[]:".contains(&b))
                }),
                "scripts/kafka.sh start printed {stdout:?}, not a host:port"
            );
            warm_up(&address);
            address
        })
        .clone()
}

/// Admin requests get this long per attempt: a broker that has just
/// started on a 2-core machine running the whole test suite can take tens
/// of seconds to create its first topics.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Attempts at creating a topic, each with a new admin client, so that no
/// attempt inherits the connection state of one that timed out.
const ADMIN_ATTEMPTS: u32 = 6;

/// Creates and deletes a topic, so that the broker's controller has done
/// its first work before any test waits on it. A broker that answers
/// metadata requests may still be too slow to create topics for a while
/// after it started, above all while the rest of the suite loads the
/// machine; every Kafka test waits for this (it runs inside [`broker`]).
fn warm_up(address: &str) {
    let address = address.to_string();
    // On a thread of its own: the callers are inside async tests.
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let topic = unique_topic("warm-up");
            let started = Instant::now();
            create_topics(&address, &topic, 1).await;
            let _ = admin_client(&address)
                .delete_topics(&[topic.as_str()], &admin_options())
                .await;
            eprintln!(
                "kafka: broker at {address} took {:?} to create its first topic",
                started.elapsed()
            );
        });
    })
    .join()
    .expect("warm-up thread");
}

fn admin_client(address: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", address)
        .create()
        .expect("admin client")
}

fn admin_options() -> AdminOptions {
    AdminOptions::new()
        .operation_timeout(Some(ADMIN_TIMEOUT))
        .request_timeout(Some(ADMIN_TIMEOUT))
}

/// Creates `topic`, trying again when the broker is too slow to answer
/// in time (a topic created by an attempt that timed out counts).
async fn create_topics(address: &str, topic: &str, partitions: i32) {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = admin_client(address)
            .create_topics(
                &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
                &admin_options(),
            )
            .await;
        let timed_out = match &result {
            Err(e) => Some(e.to_string()),
            Ok(results) => match results.first() {
                Some(Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)))
                    if attempt > 1 =>
                {
                    return;
                }
                Some(Err((_, e @ rdkafka::types::RDKafkaErrorCode::RequestTimedOut)))
                | Some(Err((_, e @ rdkafka::types::RDKafkaErrorCode::OperationTimedOut))) => {
                    Some(e.to_string())
                }
                Some(Err((t, e))) => panic!("create topic {t}: {e}"),
                _ => return,
            },
        };
        match timed_out {
            Some(e) if attempt < ADMIN_ATTEMPTS => {
                eprintln!("create topic {topic}: {e}; trying again with a new client")
            }
            Some(e) => panic!("create topic {topic}: {e} after {attempt} attempts"),
            None => return,
        }
    }
}

/// Tests that use the broker hold this shared; a test that restarts it
/// holds it exclusively, so no other test sees the restart.
pub static BROKER_USE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// Restarts the test broker (same port, same data).
pub fn restart_broker() {
    let out = Command::new("bash")
        .arg(repo().join("scripts/kafka.sh"))
        .arg("restart")
        .output()
        .expect("run scripts/kafka.sh");
    assert!(
        out.status.success(),
        "scripts/kafka.sh restart failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A topic name no other test uses.
pub fn unique_topic(prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{prefix}-{}-{nanos}-{n}", std::process::id())
}

/// Creates `topic` with `partitions` partitions.
pub async fn create_topic(topic: &str, partitions: i32) {
    create_topics(&broker(), topic, partitions).await;
}

/// Produces `(key, value)` records to `topic` and waits for them.
pub fn produce(topic: &str, records: &[(Option<String>, String)]) {
    let headed: Vec<HeadedRecord> = records
        .iter()
        .map(|(k, v)| (k.clone(), v.clone(), Headers::new()))
        .collect();
    produce_with_headers(topic, &headed);
}

/// A record's headers as a client sees them: key, and value (`None`: null).
pub type Headers = Vec<(String, Option<Vec<u8>>)>;

/// A record with headers: key, value and headers.
pub type HeadedRecord = (Option<String>, String, Headers);

/// Produces records with headers to `topic` and waits for them.
pub fn produce_with_headers(topic: &str, records: &[HeadedRecord]) {
    use rdkafka::message::{Header, OwnedHeaders};
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker())
        .set("partitioner", "murmur2_random")
        .create()
        .expect("producer");
    for (k, v, headers) in records {
        let mut owned = OwnedHeaders::new();
        for (hk, hv) in headers {
            owned = owned.insert(Header {
                key: hk,
                value: hv.as_deref(),
            });
        }
        let mut r = BaseRecord::to(topic).payload(v.as_bytes());
        if !headers.is_empty() {
            r = r.headers(owned);
        }
        if let Some(k) = k {
            r = r.key(k.as_bytes());
        }
        loop {
            match producer.send(r) {
                Ok(()) => break,
                Err((_, back)) => {
                    producer.poll(Duration::from_millis(20));
                    r = back;
                }
            }
        }
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("records acknowledged");
}

/// Like [`consume`], with each record's headers.
pub fn consume_with_headers(topic: &str, want: usize, timeout: Duration) -> Vec<HeadedRecord> {
    use rdkafka::message::Headers as _;
    let consumer = reader(topic);
    let mut out = Vec::new();
    let started = Instant::now();
    while out.len() < want && started.elapsed() < timeout {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let headers = m
                .headers()
                .map(|hs| {
                    hs.iter()
                        .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                        .collect()
                })
                .unwrap_or_default();
            out.push((
                m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                headers,
            ));
        }
    }
    out
}

/// A `read_committed` consumer of `topic` from its start, in a group of
/// its own.
fn reader(topic: &str) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker())
        .set("group.id", unique_topic("reader"))
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    consumer
}

/// Follows `topic` from its start (`read_committed`), on a thread of its
/// own, until dropped: each record's value, with when it arrived.
pub struct Follower {
    arrived: std::sync::mpsc::Receiver<(Instant, String)>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Follower {
    /// Starts following `topic`.
    pub fn new(topic: &str) -> Follower {
        let consumer = reader(topic);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (tx, arrived) = std::sync::mpsc::channel();
        let stopped = stop.clone();
        std::thread::spawn(move || {
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                    let value = String::from_utf8_lossy(m.payload().unwrap_or_default());
                    if tx.send((Instant::now(), value.into_owned())).is_err() {
                        return;
                    }
                }
            }
        });
        Follower { arrived, stop }
    }

    /// The next value to arrive within `timeout`, with when it arrived.
    pub fn next(&self, timeout: Duration) -> Option<(Instant, String)> {
        self.arrived.recv_timeout(timeout).ok()
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Reads `topic` from the start until `want` records arrived or `timeout`
/// passed; returns `(key, value)` pairs.
pub fn consume(topic: &str, want: usize, timeout: Duration) -> Vec<(Option<String>, String)> {
    consume_with_headers(topic, want, timeout)
        .into_iter()
        .map(|(k, v, _)| (k, v))
        .collect()
}

/// The group's committed offsets summed over `topic`'s partitions.
pub fn committed_total(group: &str, topic: &str, partitions: i32) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker())
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    // A loaded machine (the whole suite at once) can be slow to answer.
    let mut attempts = 0;
    let committed = loop {
        match consumer.committed_offsets(tpl.clone(), Duration::from_secs(15)) {
            Ok(c) => break c,
            Err(e) if attempts < 4 => {
                attempts += 1;
                eprintln!("committed offsets of {group}: {e}; retrying");
            }
            Err(e) => panic!("committed offsets of {group}: {e}"),
        }
    };
    committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            rdkafka::Offset::Offset(o) => Some(o),
            _ => None,
        })
        .sum()
}
