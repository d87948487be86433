//! Recovery from checkpoints with the real broker: Kafka → windowed count
//! and Wasm reducer → Kafka (exactly-once) or jsonl, the job killed with
//! SIGKILL at random moments and started again. A `read_committed` reader
//! (or the file) sees each key's running totals grow, never repeat, up to
//! the input's count per key.

use crate::recovery::{Rng, events, job, kill_after, kills, last_per_key, totals};
use sluice_tests::kafka;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Produces the events (keyed by user, so each user's events stay in order).
fn produce_events(topic: &str, lines: &[String]) {
    let records: Vec<(Option<String>, String)> = lines
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (Some(v["user"].as_str().unwrap().to_string()), l.clone())
        })
        .collect();
    kafka::produce(topic, &records);
}

fn source(topic: &str, group: &str) -> String {
    format!(
        "[[sources]]\nkind = \"kafka\"\nbrokers = \"{}\"\ntopics = [\"{topic}\"]\ngroup = \"{group}\"\nstart = \"earliest\"",
        kafka::broker()
    )
}

/// `job`, named `name`, checkpointed every 300 ms rather than every other
/// batch: a checkpoint then also follows the last records, once the input
/// is all in. A name of its own: processes of jobs of one name on one host
/// take numbered member ids, and a restart could take another's.
fn timed(job: &str, name: &str) -> String {
    job.replace("every_batches = 2", "interval = \"300ms\"")
        .replace("name = \"recover\"", &format!("name = {name:?}"))
}

/// Kills the job again and again, then runs it with `--drain` until the
/// group has committed every input record (at a checkpoint), and stops it.
fn crash_and_finish(job: &Path, group: &str, input: &str, records: usize) {
    let mut rng = Rng(21);
    let mid_write = kill_after(job, kills(), &mut rng, 1_000..4_000);
    eprintln!("{mid_write} kill(s) during a checkpoint write");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice-under-test"))
        .args(["run", "--quiet", "--drain", job.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Its log, line by line; once its source reads, it also takes a stop.
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines_tx.send(line);
        }
    });
    let mut log = Vec::new();
    let started = std::time::Instant::now();
    while !log.iter().any(|l: &String| l.contains("reading [")) {
        if let Ok(line) = lines_rx.recv_timeout(Duration::from_millis(200)) {
            log.push(line);
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the last run did not start reading:\n{}",
            log.join("\n")
        );
    }
    while kafka::committed_total(group, input, 1) < records as i64 {
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "the input was not all committed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    reader.join().unwrap();
    log.extend(lines_rx.try_iter());
    let stderr = log.join("\n");
    assert!(status.success(), "{status:?}\n{stderr}");
    eprintln!("the last run:\n{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_to_kafka_exactly_once_with_state_survives_kills() {
    let _broker = kafka::BROKER_USE.read().await;
    let (input, output) = (kafka::unique_topic("rin"), kafka::unique_topic("rout"));
    let group = kafka::unique_topic("rgroup");
    // One input partition: event time comes in order, so no record is late
    // however the batches fall.
    kafka::create_topic(&input, 1).await;
    kafka::create_topic(&output, 3).await;
    let (lines, counts) = events(30_000, 20, 31);
    produce_events(&input, &lines);
    let dir = tempfile::tempdir().unwrap();
    let sink = format!(
        "[[sinks]]\nkind = \"kafka\"\nbrokers = \"{}\"\ntopic = \"{output}\"\ndelivery = \"exactly-once\"",
        kafka::broker()
    );
    let job = sluice_tests::write_job(
        dir.path(),
        "recover-kafka-eos.toml",
        &timed(&job(&source(&input, &group), false, &sink), "recover-eos"),
    );
    tokio::task::block_in_place(|| crash_and_finish(&job, &group, &input, lines.len()));
    let records = tokio::task::block_in_place(|| {
        kafka::consume(&output, usize::MAX, Duration::from_secs(15))
    });
    let got = totals(records.into_iter().map(|(k, v)| (k.unwrap(), v)));
    assert_eq!(got, counts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_to_jsonl_with_state_survives_kills() {
    let _broker = kafka::BROKER_USE.read().await;
    let input = kafka::unique_topic("rin");
    let group = kafka::unique_topic("rgroup");
    kafka::create_topic(&input, 1).await;
    let (lines, counts) = events(30_000, 20, 32);
    produce_events(&input, &lines);
    let dir = tempfile::tempdir().unwrap();
    let job = sluice_tests::write_job(
        dir.path(),
        "recover-kafka-jsonl.toml",
        &timed(
            &job(
                &source(&input, &group),
                false,
                "[[sinks]]\nkind = \"jsonl\"\npath = \"out.jsonl\"",
            ),
            "recover-jsonl",
        ),
    );
    tokio::task::block_in_place(|| crash_and_finish(&job, &group, &input, lines.len()));
    let got = last_per_key(&crate::read_jsonl(&dir.path().join("out.jsonl")));
    assert_eq!(got, counts);
}
