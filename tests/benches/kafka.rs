//! Kafka -> Wasm transform -> Kafka, beside a plain librdkafka
//! consume -> produce pipe and Kafka's own `ProducerPerformance` (the
//! broker's producing ceiling, from the jars `scripts/kafka.sh` fetched) in
//! the same run, on the test broker: records/s, MB/s and the ratios.
//!
//!     cargo bench -p sluice-tests --bench kafka [-- records]

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use sluice::exec::Job;
use sluice_tests::{guests, kafka};
use std::time::{Duration, Instant};

const VALUE_BYTES: usize = 100;

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(500_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let input = kafka::unique_topic("bench-in");
    let (plain_out, sluice_out) = (
        kafka::unique_topic("bench-plain"),
        kafka::unique_topic("bench-sluice"),
    );
    rt.block_on(async {
        for t in [&input, &plain_out, &sluice_out] {
            kafka::create_topic(t, 4).await;
        }
    });
    eprintln!("producing {n} records of {VALUE_BYTES} bytes to {input} ...");
    let records: Vec<(Option<String>, String)> = (0..n)
        .map(|i| {
            let mut v = format!("record {i} ");
            v.extend(std::iter::repeat_n(
                'x',
                VALUE_BYTES.saturating_sub(v.len()),
            ));
            (Some(format!("key-{}", i % 1000)), v)
        })
        .collect();
    kafka::produce(&input, &records);
    let mb = (n * VALUE_BYTES) as f64 / 1e6;

    let ceiling = kafka::unique_topic("bench-ceiling");
    rt.block_on(kafka::create_topic(&ceiling, 4));
    let producer_perf = producer_performance(&ceiling, n);
    let plain = plain_pipe(&input, &plain_out, n);
    let sluice = sluice_job(&rt, &input, &sluice_out, n);
    let line = |name: &str, d: Duration| {
        let s = d.as_secs_f64();
        println!(
            "{name:<28} {:>10.0} records/s {:>7.1} MB/s ({s:.2} s)",
            n as f64 / s,
            mb / s
        );
    };
    println!(
        "{:<28} {producer_perf:>10.0} records/s {:>7.1} MB/s (acks=all, linger.ms=5, batch.size=262144)",
        "kafka ProducerPerformance",
        producer_perf * VALUE_BYTES as f64 / 1e6
    );
    line("plain rdkafka pipe", plain);
    line("sluice (uppercase, Wasm)", sluice);
    let sluice_rate = n as f64 / sluice.as_secs_f64();
    println!(
        "ratio sluice / plain pipe: {:.2}",
        plain.as_secs_f64() / sluice.as_secs_f64()
    );
    println!(
        "ratio sluice / ProducerPerformance: {:.2} (target >= 0.75)",
        sluice_rate / producer_perf
    );
}

/// Records `ProducerPerformance` writes at least: fewer measure the JVM's
/// warm-up more than the broker.
const CEILING_RECORDS: usize = 2_000_000;

/// Kafka's own producer benchmark writing `n` records of [`VALUE_BYTES`]
/// (at least [`CEILING_RECORDS`]) to `topic` as fast as it can: its
/// records/s.
fn producer_performance(topic: &str, n: usize) -> f64 {
    let n = n.max(CEILING_RECORDS);
    let out = std::process::Command::new("java")
        .arg("-cp")
        .arg(kafka::classpath())
        .arg("org.apache.kafka.tools.ProducerPerformance")
        .args(["--topic", topic, "--num-records", &n.to_string()])
        .args([
            "--record-size",
            &VALUE_BYTES.to_string(),
            "--throughput",
            "-1",
        ])
        .arg("--producer-props")
        .arg(format!("bootstrap.servers={}", kafka::broker()))
        .args(["acks=all", "linger.ms=5", "batch.size=262144"])
        .output()
        .expect("java runs Kafka's ProducerPerformance (scripts/kafka.sh fetches its jars)");
    let text = String::from_utf8_lossy(&out.stdout);
    // The last line: "N records sent, R records/sec (M MB/sec), ...".
    text.lines()
        .rev()
        .find_map(|l| {
            let (_, rest) = l.split_once("records sent, ")?;
            rest.split_once(" records/sec")?.0.parse().ok()
        })
        .unwrap_or_else(|| {
            panic!(
                "no result from ProducerPerformance: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

/// Consumes every record of `input` and produces it to `output` unchanged,
/// with the producer settings of Sluice's sink; until all are acknowledged.
fn plain_pipe(input: &str, output: &str, n: usize) -> Duration {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka::broker())
        .set("group.id", kafka::unique_topic("bench-plain"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka::broker())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    consumer.subscribe(&[input]).expect("subscribe");
    let started = Instant::now();
    let mut moved = 0;
    while moved < n {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let mut record = BaseRecord::to(output).payload(m.payload().unwrap_or_default());
        if let Some(k) = m.key() {
            record = record.key(k);
        }
        if let Some(ts) = m.timestamp().to_millis() {
            record = record.timestamp(ts);
        }
        let mut record = record;
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    producer.poll(Duration::from_millis(10));
                    record = back;
                }
            }
        }
        moved += 1;
    }
    producer
        .flush(Duration::from_secs(60))
        .expect("records acknowledged");
    started.elapsed()
}

/// Runs the job until `output` holds `n` records.
fn sluice_job(rt: &tokio::runtime::Runtime, input: &str, output: &str, n: usize) -> Duration {
    let dir = tempfile::tempdir().expect("temp dir");
    let toml = format!(
        r#"
workers = 2
[batch]
interval = "100ms"
[[sources]]
kind = "kafka"
brokers = "{brokers}"
topics = ["{input}"]
group = "{group}"
[[operators]]
plugin = {plugin:?}
[[sinks]]
kind = "kafka"
brokers = "{brokers}"
topic = "{output}"
"#,
        brokers = kafka::broker(),
        group = kafka::unique_topic("bench-sluice"),
        plugin = guests::UPPERCASE,
    );
    let path = sluice_tests::write_job(dir.path(), "job.toml", &toml);
    let runtime = sluice_tests::runtime_in(dir.path());
    // Compile (or load from cache) before the clock starts.
    let job = Job::from_file(&path, &runtime).expect("job builds");
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let handle = rt.spawn(job.run(stop_rx));
    let watcher: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka::broker())
        .create()
        .expect("consumer");
    loop {
        let total: i64 = (0..4)
            .map(|p| {
                watcher
                    .fetch_watermarks(output, p, Duration::from_secs(5))
                    .map(|(_, high)| high)
                    .unwrap_or(0)
            })
            .sum();
        if total as usize >= n {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let elapsed = started.elapsed();
    let _ = stop.send(true);
    rt.block_on(handle)
        .expect("job task")
        .expect("job succeeded");
    elapsed
}
