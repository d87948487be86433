//! Kafka sources and sinks against a real broker (`scripts/kafka.sh`).

use sluice::exec::{Job, JobError, Summary};
use sluice_tests::{guests, kafka};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::watch;

/// A job reading `input` (group `group`), upper-casing the values with the
/// Wasm operator and writing to `output`.
fn job_toml(input: &str, output: &str, group: &str, extra_source: &str) -> String {
    format!(
        r#"
workers = 2
partitions = 4
partition_by = "key"
[batch]
interval = "200ms"
[[sources]]
kind = "kafka"
brokers = "{brokers}"
topics = ["{input}"]
group = "{group}"
{extra_source}
[[operators]]
plugin = {plugin:?}
[[sinks]]
kind = "kafka"
brokers = "{brokers}"
topic = "{output}"
"#,
        brokers = kafka::broker(),
        plugin = guests::UPPERCASE,
    )
}

/// Starts the job in the background; returns the stop switch and its handle.
fn start(
    dir: &std::path::Path,
    toml: &str,
) -> (
    watch::Sender<bool>,
    tokio::task::JoinHandle<Result<Summary, JobError>>,
) {
    let path = sluice_tests::write_job(dir, "job.toml", toml);
    let runtime = sluice_tests::runtime_in(dir);
    let job = Job::from_file(&path, &runtime).expect("job builds");
    let (stop, stop_rx) = watch::channel(false);
    (stop, tokio::spawn(job.run(stop_rx)))
}

async fn consume(topic: &str, want: usize) -> Vec<(Option<String>, String)> {
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || kafka::consume(&topic, want, Duration::from_secs(60)))
        .await
        .unwrap()
}

fn records(range: std::ops::Range<usize>) -> Vec<(Option<String>, String)> {
    range
        .map(|i| (Some(format!("k{}", i % 13)), format!("value {i}")))
        .collect()
}

/// How many different values `out` holds.
fn distinct(out: &[(Option<String>, String)]) -> usize {
    out.iter()
        .map(|(_, v)| v)
        .collect::<std::collections::BTreeSet<_>>()
        .len()
}

/// Every input record appears in the output exactly once, upper-cased, with
/// its key; offsets are committed once the output is written.
fn assert_exactly(out: &[(Option<String>, String)], range: std::ops::Range<usize>) {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (k, v) in out {
        *seen.entry(v.clone()).or_default() += 1;
        let i: usize = v.trim_start_matches("VALUE ").parse().unwrap();
        assert_eq!(k.as_deref(), Some(format!("k{}", i % 13).as_str()), "{v}");
    }
    for i in range.clone() {
        assert_eq!(seen.get(&format!("VALUE {i}")), Some(&1), "record {i}");
    }
    assert_eq!(out.len(), range.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_to_wasm_to_kafka_commits_after_the_sink_and_resumes() {
    let _broker = kafka::BROKER_USE.read().await;
    let (input, output) = (kafka::unique_topic("in"), kafka::unique_topic("out"));
    let group = kafka::unique_topic("group");
    kafka::create_topic(&input, 4).await;
    kafka::create_topic(&output, 4).await;
    kafka::produce(&input, &records(0..1000));

    let dir = tempfile::tempdir().unwrap();
    let toml = job_toml(&input, &output, &group, "");
    let (stop, job) = start(dir.path(), &toml);
    let out = consume(&output, 1000).await;
    stop.send(true).unwrap();
    let summary = job.await.unwrap().unwrap();
    assert_eq!(summary.records_in, 1000);
    assert_exactly(&out, 0..1000);
    assert_eq!(kafka::committed_total(&group, &input, 4), 1000);

    // A second run of the same group starts after the committed offsets.
    kafka::produce(&input, &records(1000..1500));
    let (stop, job) = start(dir.path(), &toml);
    let out = consume(&output, 1500).await;
    stop.send(true).unwrap();
    let summary = job.await.unwrap().unwrap();
    assert_eq!(summary.records_in, 500, "only the new records");
    assert_exactly(&out, 0..1500);
    assert_eq!(kafka::committed_total(&group, &input, 4), 1500);
}

/// With two Kafka sources every commit once went through the first
/// source's consumer: the second group never committed and read everything
/// again on restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_kafka_sources_each_group_commits_its_own_offsets() {
    let _broker = kafka::BROKER_USE.read().await;
    let (first, second, output) = (
        kafka::unique_topic("in-a"),
        kafka::unique_topic("in-b"),
        kafka::unique_topic("out"),
    );
    let (group_a, group_b) = (
        kafka::unique_topic("group-a"),
        kafka::unique_topic("group-b"),
    );
    kafka::create_topic(&first, 2).await;
    kafka::create_topic(&second, 2).await;
    kafka::create_topic(&output, 2).await;
    kafka::produce(&first, &records(0..300));
    kafka::produce(&second, &records(300..500));
    // The usual job on the first topic, and a second Kafka source.
    let toml = job_toml(&first, &output, &group_a, "")
        + &format!(
            "[[sources]]\nkind = \"kafka\"\nbrokers = \"{}\"\ntopics = [\"{second}\"]\ngroup = \"{group_b}\"\n",
            kafka::broker()
        );
    let dir = tempfile::tempdir().unwrap();
    let (stop, job) = start(dir.path(), &toml);
    let out = consume(&output, 500).await;
    stop.send(true).unwrap();
    job.await.unwrap().unwrap();
    assert_exactly(&out, 0..500);
    assert_eq!(kafka::committed_total(&group_a, &first, 2), 300);
    assert_eq!(kafka::committed_total(&group_b, &second, 2), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_mid_run_loses_nothing() {
    let _broker = kafka::BROKER_USE.write().await;
    let (input, output) = (kafka::unique_topic("in"), kafka::unique_topic("out"));
    let group = kafka::unique_topic("group");
    kafka::create_topic(&input, 4).await;
    kafka::create_topic(&output, 4).await;
    kafka::produce(&input, &records(0..300));
    let dir = tempfile::tempdir().unwrap();
    let (stop, job) = start(dir.path(), &job_toml(&input, &output, &group, ""));
    assert_eq!(consume(&output, 300).await.len(), 300);

    tokio::task::spawn_blocking(kafka::restart_broker)
        .await
        .unwrap();
    kafka::produce(&input, &records(300..600));
    let out = consume(&output, 600).await;
    stop.send(true).unwrap();
    job.await.unwrap().unwrap();
    // At-least-once: nothing lost; a record may repeat only if its batch
    // was cut off by the restart, which the exact check would show.
    assert_eq!(distinct(&out), 600, "every record arrived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_kafka_settings_are_explained() {
    let _broker = kafka::BROKER_USE.read().await;
    let dir = tempfile::tempdir().unwrap();
    let topic = kafka::unique_topic("exists");
    kafka::create_topic(&topic, 1).await;

    // Unreachable brokers: retried with backoff, then a clear error.
    let toml = job_toml(&topic, &topic, "g", r#"connect_timeout = "2s""#).replacen(
        &kafka::broker(),
        "127.0.0.1:1",
        1,
    );
    let (_stop, job) = start(dir.path(), &toml);
    let err = job.await.unwrap().unwrap_err().to_string();
    assert!(
        err.contains("cannot reach the Kafka brokers at 127.0.0.1:1 after"),
        "{err}"
    );

    // A topic that does not exist.
    let (_stop, job) = start(dir.path(), &job_toml("no-such-topic", &topic, "g", ""));
    let err = job.await.unwrap().unwrap_err().to_string();
    assert!(
        err.contains("topic `no-such-topic` does not exist"),
        "{err}"
    );

    // A malformed client setting fails before the job starts.
    let toml = job_toml(
        &topic,
        &topic,
        "g",
        r#"config = { "session.timeout.ms" = "soon" }"#,
    );
    let path = sluice_tests::write_job(dir.path(), "bad.toml", &toml);
    let err = Job::from_file(&path, &sluice_tests::runtime_in(dir.path()))
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("invalid Kafka settings") && err.contains("session.timeout.ms"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_of_one_job_share_the_partitions_and_take_over() {
    let _broker = kafka::BROKER_USE.read().await;
    let (input, output) = (kafka::unique_topic("in"), kafka::unique_topic("out"));
    let group = kafka::unique_topic("group");
    kafka::create_topic(&input, 4).await;
    kafka::create_topic(&output, 4).await;
    let toml = job_toml(&input, &output, &group, "");
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (stop_a, job_a) = start(dir_a.path(), &toml);
    let (stop_b, job_b) = start(dir_b.path(), &toml);
    // Both members joined: the group's partitions are split between them.
    tokio::time::sleep(Duration::from_secs(3)).await;
    kafka::produce(&input, &records(0..1000));
    let out = consume(&output, 1000).await;
    assert_eq!(distinct(&out), 1000);

    // One run stops; the other takes its partitions over.
    stop_a.send(true).unwrap();
    let a = job_a.await.unwrap().unwrap();
    kafka::produce(&input, &records(1000..2000));
    let out = consume(&output, 2000).await;
    stop_b.send(true).unwrap();
    let b = job_b.await.unwrap().unwrap();
    assert_eq!(distinct(&out), 2000, "nothing lost across the takeover");
    assert!(
        a.records_in > 0 && b.records_in > 0,
        "both runs read: {} and {}",
        a.records_in,
        b.records_in
    );
    assert!(
        b.records_in >= 1000,
        "the remaining run read every new record"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_survives_sigkill_and_restart() {
    let _broker = kafka::BROKER_USE.read().await;
    let (input, output) = (kafka::unique_topic("in"), kafka::unique_topic("out"));
    let group = kafka::unique_topic("group");
    kafka::create_topic(&input, 4).await;
    kafka::create_topic(&output, 4).await;
    kafka::produce(&input, &records(0..3000));
    let dir = tempfile::tempdir().unwrap();
    let toml = job_toml(&input, &output, &group, "").replace(
        "[[sinks]]\nkind = \"kafka\"",
        &format!(
            "[batch.max_records]\n[[sinks]]\nkind = \"kafka\"\ndelivery = \"exactly-once\"\ntransactional_id = \"{group}\""
        ),
    );
    // Small batches: many transactions, so the kill lands mid-stream.
    let toml = toml.replace("[batch.max_records]\n", "").replace(
        "interval = \"200ms\"",
        "interval = \"100ms\"\nmax_records = 100",
    );
    let job = sluice_tests::write_job(dir.path(), "job.toml", &toml);
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_sluice-under-test"))
            .args(["run", "--quiet"])
            .arg(&job)
            .env("SLUICE_CACHE_DIR", dir.path().join("cache"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut first = run();
    let seen = consume(&output, 500).await.len();
    assert!(seen >= 500, "the first run wrote {seen} record(s)");
    first.kill().unwrap(); // SIGKILL: no chance to finish its transaction
    first.wait().unwrap();
    let done = kafka::committed_total(&group, &input, 4);
    assert!(done < 3000, "killed mid-stream, after {done} record(s)");

    let mut second = run();
    let group2 = group.clone();
    let input2 = input.clone();
    tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        while kafka::committed_total(&group2, &input2, 4) < 3000 {
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "the restarted run did not finish the input"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    })
    .await
    .unwrap();
    unsafe { libc::kill(second.id() as i32, libc::SIGTERM) };
    let status = second.wait().unwrap();
    assert!(status.success(), "{status:?}");
    // read_committed: aborted transactions of the killed run are invisible.
    let output2 = output.clone();
    let out = tokio::task::spawn_blocking(move || {
        kafka::consume(&output2, 3001, Duration::from_secs(10))
    })
    .await
    .unwrap();
    assert_exactly(&out, 0..3000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_process_of_a_job_moves_its_partitions_to_the_other() {
    let _broker = kafka::BROKER_USE.read().await;
    let (input, output) = (kafka::unique_topic("in"), kafka::unique_topic("out"));
    let group = kafka::unique_topic("group");
    kafka::create_topic(&input, 4).await;
    kafka::create_topic(&output, 4).await;
    // A short session: the group notices a killed member within seconds.
    let toml = job_toml(
        &input,
        &output,
        &group,
        r#"config = { "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "1000" }"#,
    );
    let dir = tempfile::tempdir().unwrap();
    let job = sluice_tests::write_job(dir.path(), "job.toml", &toml);
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_sluice-under-test"))
            .args(["run", "--quiet"])
            .arg(&job)
            .env("SLUICE_CACHE_DIR", dir.path().join("cache"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let (mut a, mut b) = (run(), run());
    tokio::time::sleep(Duration::from_secs(5)).await;
    kafka::produce(&input, &records(0..1000));
    assert_eq!(distinct(&consume(&output, 1000).await), 1000);

    a.kill().unwrap(); // SIGKILL: it neither commits nor leaves the group
    a.wait().unwrap();
    kafka::produce(&input, &records(1000..2000));
    let output2 = output.clone();
    let out = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        loop {
            let out = kafka::consume(&output2, usize::MAX, Duration::from_secs(5));
            if distinct(&out) >= 2000 || started.elapsed() > Duration::from_secs(60) {
                return out;
            }
        }
    })
    .await
    .unwrap();
    unsafe { libc::kill(b.id() as i32, libc::SIGTERM) };
    assert!(b.wait().unwrap().success());
    // At-least-once: the killed run's uncommitted records may repeat, but
    // every record arrives.
    assert_eq!(distinct(&out), 2000, "nothing lost after the kill");
}

/// Record `i`'s headers, by `i % 5`: none; one; a repeated key; an empty
/// and a null value; bytes that are not UTF-8.
fn headers_of(i: usize) -> kafka::Headers {
    let h = |k: &str, v: Option<&[u8]>| (k.to_string(), v.map(<[u8]>::to_vec));
    match i % 5 {
        0 => vec![],
        1 => vec![h("trace", Some(format!("t-{i}").as_bytes()))],
        2 => vec![
            h("h", Some(b"first")),
            h("h", Some(format!("second {i}").as_bytes())),
        ],
        3 => vec![h("empty", Some(b"")), h("null", None)],
        _ => vec![
            h("bin", Some(&[0, 0x9f, 0x92, 0x96, i as u8])),
            h("trace", Some(b"x")),
        ],
    }
}

/// Record `i`'s key: none for every seventh.
fn key_of(i: usize) -> Option<String> {
    (!i.is_multiple_of(7)).then(|| format!("k{}", i % 13))
}

/// Records with headers, keyed by [`key_of`].
fn headed_records(range: std::ops::Range<usize>) -> Vec<kafka::HeadedRecord> {
    range
        .map(|i| (key_of(i), format!("value {i}"), headers_of(i)))
        .collect()
}

/// Every input record arrived once, upper-cased, with its key and exactly
/// its headers, in order.
fn assert_headers_kept(out: &[kafka::HeadedRecord], range: std::ops::Range<usize>) {
    let mut seen = std::collections::BTreeSet::new();
    for (k, v, headers) in out {
        let i: usize = v.trim_start_matches("VALUE ").parse().unwrap();
        assert!(seen.insert(i), "record {i} arrived twice");
        assert_eq!(k, &key_of(i), "key of record {i}");
        assert_eq!(headers, &headers_of(i), "headers of record {i}");
    }
    assert_eq!(seen.len(), range.len(), "every record arrived");
}

async fn consume_with_headers(topic: &str, want: usize) -> Vec<kafka::HeadedRecord> {
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        kafka::consume_with_headers(&topic, want, Duration::from_secs(60))
    })
    .await
    .unwrap()
}

/// Records spread over 4 partitions by key (keyless ones round robin), through
/// the Wasm `uppercase`, to a Kafka sink: each keeps its headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_go_from_the_kafka_source_through_wasm_to_the_kafka_sink() {
    let _broker = kafka::BROKER_USE.read().await;
    let (input, output) = (kafka::unique_topic("in"), kafka::unique_topic("out"));
    let group = kafka::unique_topic("group");
    kafka::create_topic(&input, 4).await;
    kafka::create_topic(&output, 4).await;
    kafka::produce_with_headers(&input, &headed_records(0..500));

    let dir = tempfile::tempdir().unwrap();
    let (stop, job) = start(dir.path(), &job_toml(&input, &output, &group, ""));
    let out = consume_with_headers(&output, 500).await;
    stop.send(true).unwrap();
    let summary = job.await.unwrap().unwrap();
    assert_eq!(summary.records_in, 500);
    assert_eq!(out.len(), 500);
    assert_headers_kept(&out, 0..500);
}

/// The same through the transactional (exactly-once) sink, with 3
/// partitions on 2 workers and small batches, so chunks are cut between
/// batches and records change partitions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_survive_the_exactly_once_sink_and_small_batches() {
    let _broker = kafka::BROKER_USE.read().await;
    let (input, output) = (kafka::unique_topic("in"), kafka::unique_topic("out"));
    let group = kafka::unique_topic("group");
    kafka::create_topic(&input, 2).await;
    kafka::create_topic(&output, 3).await;
    kafka::produce_with_headers(&input, &headed_records(0..700));

    let toml = job_toml(&input, &output, &group, "")
        .replace("partitions = 4", "partitions = 3")
        .replace("interval = \"200ms\"", "interval = \"100ms\"\nmax_records = 64")
        .replace(
            "[[sinks]]\nkind = \"kafka\"",
            &format!(
                "[[sinks]]\nkind = \"kafka\"\ndelivery = \"exactly-once\"\ntransactional_id = \"{group}\""
            ),
        );
    assert!(toml.contains("exactly-once") && toml.contains("max_records = 64"));
    let dir = tempfile::tempdir().unwrap();
    let (stop, job) = start(dir.path(), &toml);
    let out = consume_with_headers(&output, 700).await;
    stop.send(true).unwrap();
    let summary = job.await.unwrap().unwrap();
    assert_eq!(summary.records_in, 700);
    assert!(summary.batches >= 700 / 64, "{} batches", summary.batches);
    assert_eq!(out.len(), 700);
    assert_headers_kept(&out, 0..700);
}

/// Runs a job reading `input` in `group` (`max.poll.interval.ms` 6 s) and
/// printing every record, in a process whose output waits in a pipe until
/// the test reads it: the sink, then the whole job, push back on the
/// source.
fn start_printing(dir: &std::path::Path, input: &str, group: &str) -> std::process::Child {
    let toml = job_toml(input, "unused", group, "")
        .replace(
            "group = ",
            "config = { \"max.poll.interval.ms\" = \"6000\", \"session.timeout.ms\" = \"6000\" }\ngroup = ",
        )
        .split("[[sinks]]")
        .next()
        .unwrap()
        .to_string()
        + "[[sinks]]\nkind = \"stdout\"\nlimit = 1000000\n";
    let job = sluice_tests::write_job(dir, "job.toml", &toml);
    std::process::Command::new(env!("CARGO_BIN_EXE_sluice-under-test"))
        .args(["run", "--quiet"])
        .arg(&job)
        .env("SLUICE_CACHE_DIR", dir.join("cache"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// The record numbers in printed lines `k\tVALUE <i> ...`, with how often
/// each was printed, until `want` distinct ones or the end.
fn printed(stdout: impl std::io::Read, want: usize) -> BTreeMap<usize, usize> {
    use std::io::BufRead;
    let mut seen: BTreeMap<usize, usize> = BTreeMap::new();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let Some(value) = line.split('\t').nth(1) else {
            continue;
        };
        let i: usize = value.split(' ').nth(1).unwrap().parse().unwrap();
        *seen.entry(i).or_default() += 1;
        if seen.len() == want {
            break;
        }
    }
    seen
}

/// Records numbered `range`, padded to about 60 bytes.
fn padded(range: std::ops::Range<usize>) -> Vec<(Option<String>, String)> {
    let pad = "x".repeat(40);
    range
        .map(|i| (Some(format!("k{}", i % 13)), format!("value {i} {pad}")))
        .collect()
}

/// The source once waited in a blocking send without polling: held back by
/// its job for longer than `max.poll.interval.ms`, it was evicted from the
/// group, its commits were refused, and it read records again. Now it
/// keeps polling with its partitions paused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_held_back_longer_than_max_poll_interval_keeps_its_partitions() {
    let _broker = kafka::BROKER_USE.read().await;
    let input = kafka::unique_topic("in");
    let group = kafka::unique_topic("group");
    kafka::create_topic(&input, 4).await;
    // More than the job buffers between the source and the sink (64 chunks
    // of 4,096 records), so that the source itself is held back.
    const N: usize = 400_000;
    kafka::produce(&input, &padded(0..N));
    let dir = tempfile::tempdir().unwrap();
    let mut child = start_printing(dir.path(), &input, &group);
    tokio::time::sleep(Duration::from_secs(14)).await;
    let stdout = child.stdout.take().unwrap();
    let seen = tokio::task::spawn_blocking(move || printed(stdout, N));
    let seen = tokio::time::timeout(Duration::from_secs(90), seen)
        .await
        .expect("every record printed")
        .unwrap();
    // Committed offsets reach the end of the input.
    let (g, t) = (group.clone(), input.clone());
    tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        while kafka::committed_total(&g, &t, 4) < N as i64 {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "offsets committed"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    })
    .await
    .unwrap();
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}\n{stderr}", out.status);
    let twice: Vec<_> = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(i, _)| i)
        .collect();
    assert!(
        twice.is_empty(),
        "{} record(s) read twice, e.g. {:?}\n{stderr}",
        twice.len(),
        &twice[..twice.len().min(5)]
    );
    assert_eq!(seen.len(), N);
    assert!(
        !stderr.contains("not committed"),
        "a commit was refused:\n{stderr}"
    );
}

/// Every exactly-once sink was `sluice-<topic>` by default: two jobs writing
/// one topic fenced each other's producer and one of them failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_exactly_once_jobs_writing_one_topic_do_not_fence_each_other() {
    let _broker = kafka::BROKER_USE.read().await;
    let (first, second, output) = (
        kafka::unique_topic("in-a"),
        kafka::unique_topic("in-b"),
        kafka::unique_topic("out"),
    );
    for t in [&first, &second, &output] {
        kafka::create_topic(t, 2).await;
    }
    kafka::produce(&first, &records(0..2000));
    kafka::produce(&second, &records(2000..4000));
    let exactly_once = |input: &str| {
        job_toml(input, &output, &kafka::unique_topic("group"), "")
            .replace("partitions = 4", "partitions = 2")
            .replace(
                "interval = \"200ms\"",
                "interval = \"100ms\"\nmax_records = 200",
            )
            + "delivery = \"exactly-once\"\n"
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (stop_a, job_a) = start(dir_a.path(), &exactly_once(&first));
    let (stop_b, job_b) = start(dir_b.path(), &exactly_once(&second));
    let out = consume(&output, 4000).await;
    stop_a.send(true).unwrap();
    stop_b.send(true).unwrap();
    let a = job_a.await.unwrap();
    let b = job_b.await.unwrap();
    assert!(a.is_ok() && b.is_ok(), "{:?} / {:?}", a.err(), b.err());
    assert_exactly(&out, 0..4000);
}

/// A member held back by its job while the group moved its partitions to a
/// new member once committed, late, the offsets of the records it had read
/// before: the new owner's commits went back, and records were read again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_commits_of_a_member_that_lost_its_partitions_do_not_roll_back_the_group() {
    let _broker = kafka::BROKER_USE.read().await;
    let (input, output) = (kafka::unique_topic("in"), kafka::unique_topic("out"));
    let group = kafka::unique_topic("group");
    kafka::create_topic(&input, 4).await;
    kafka::create_topic(&output, 4).await;
    const N: usize = 400_000;
    kafka::produce(&input, &padded(0..N));
    let dir_a = tempfile::tempdir().unwrap();
    let mut a = start_printing(dir_a.path(), &input, &group);
    let a_started = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // A second member joins while the first is held back.
    let dir_b = tempfile::tempdir().unwrap();
    let (stop_b, job_b) = start(dir_b.path(), &job_toml(&input, &output, &group, ""));
    // The group's committed offsets, sampled until both have finished.
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (g, t, sampling) = (group.clone(), input.clone(), sampling.clone());
        std::thread::spawn(move || {
            let (mut highest, mut drops) = (0, Vec::new());
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                let now = kafka::committed_total(&g, &t, 4);
                if now < highest {
                    drops.push((highest, now));
                }
                highest = highest.max(now);
                std::thread::sleep(Duration::from_millis(100));
            }
            (highest, drops)
        })
    };
    tokio::time::sleep(Duration::from_secs(14).saturating_sub(a_started.elapsed())).await;
    let stdout = a.stdout.take().unwrap();
    let printed_by_a = std::thread::spawn(move || printed(stdout, usize::MAX));
    let (g, t) = (group.clone(), input.clone());
    tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        while kafka::committed_total(&g, &t, 4) < N as i64 {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the group finished the input"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    })
    .await
    .unwrap();
    // A little longer: late commits would land now.
    tokio::time::sleep(Duration::from_secs(3)).await;
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let (highest, drops) = sampler.join().unwrap();
    stop_b.send(true).unwrap();
    job_b.await.unwrap().unwrap();
    unsafe { libc::kill(a.id() as i32, libc::SIGTERM) };
    let status = a.wait().unwrap();
    let by_a = printed_by_a.join().unwrap();
    // B wrote only part of the input: read what there is.
    let by_b =
        tokio::task::spawn_blocking(move || kafka::consume(&output, N, Duration::from_secs(15)))
            .await
            .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(drops.is_empty(), "committed offsets went back: {drops:?}");
    assert_eq!(highest, N as i64);
    let mut all: std::collections::BTreeSet<usize> = by_a.into_keys().collect();
    for (_, v) in &by_b {
        all.insert(v.split(' ').nth(1).unwrap().parse().unwrap());
    }
    assert_eq!(
        all.len(),
        N,
        "every record was written by one member or the other"
    );
}

/// A chunk was bounded only by its record count, and a record by nothing:
/// large messages could overflow a batch's 32-bit offsets and crash the
/// job, again at every restart. Now a record past `batch.max_line_bytes`
/// fails the job, naming the setting and the record, before it is
/// committed: a run with a larger setting reads it, and the large records
/// go through in batches cut at `batch.max_bytes`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_record_past_max_line_bytes_fails_the_job_naming_it_and_is_not_committed() {
    let _broker = kafka::BROKER_USE.read().await;
    let (input, output) = (kafka::unique_topic("in"), kafka::unique_topic("out"));
    let group = kafka::unique_topic("group");
    kafka::create_topic(&input, 1).await;
    kafka::create_topic(&output, 1).await;
    let big = "b".repeat(200 << 10);
    let mut inputs: Vec<_> = (0..40)
        .map(|i| (Some(format!("k{}", i % 13)), format!("value {i} {big}")))
        .collect();
    inputs.push((None, format!("value 40 {}", "t".repeat(300 << 10))));
    kafka::produce(&input, &inputs);
    let dir = tempfile::tempdir().unwrap();
    let job = |max_line: &str| {
        job_toml(&input, &output, &group, "").replace(
            "interval = \"200ms\"",
            &format!("interval = \"200ms\"\nmax_bytes = \"1MiB\"\nmax_line_bytes = \"{max_line}\""),
        )
    };
    let (_stop, run) = start(dir.path(), &job("256KiB"));
    let result = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the job ends")
        .unwrap();
    let err = result
        .expect_err("the large record fails the job")
        .to_string();
    assert!(
        err.contains(&format!(
            "the record at {input}/0 offset 40 holds {} bytes",
            9 + (300 << 10)
        )) && err.contains("batch.max_line_bytes = 256 KiB"),
        "{err}"
    );
    assert!(
        kafka::committed_total(&group, &input, 1) <= 40,
        "the large record was committed"
    );

    let (stop, run) = start(dir.path(), &job("512KiB"));
    let out = consume(&output, 41).await;
    stop.send(true).unwrap();
    run.await.unwrap().unwrap();
    assert!(
        out.iter().any(|(_, v)| v.starts_with("VALUE 40 TTT")),
        "the large record went through"
    );
    assert_eq!(distinct(&out), 41);
    assert_eq!(kafka::committed_total(&group, &input, 1), 41);
}

/// A job killed by SIGKILL and started again read nothing for about 45 s:
/// the group waited for the dead member's session (`session.timeout.ms`)
/// to time out before it gave the partitions to the new one. Now each
/// source joins as a static member named after the job, the source and the
/// host, and the restarted process takes the partitions back at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_restarted_after_sigkill_takes_its_partitions_back_at_once() {
    let _broker = kafka::BROKER_USE.read().await;
    let (input, output) = (kafka::unique_topic("in"), kafka::unique_topic("out"));
    let group = kafka::unique_topic("group");
    kafka::create_topic(&input, 4).await;
    kafka::create_topic(&output, 4).await;
    kafka::produce(&input, &records(0..1000));
    const SESSION: Duration = Duration::from_secs(45);
    let toml = job_toml(
        &input,
        &output,
        &group,
        &format!(
            "config = {{ \"session.timeout.ms\" = \"{}\" }}",
            SESSION.as_millis()
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    // A job name of its own: no other test's processes share its ids.
    let job = sluice_tests::write_job(dir.path(), "restarted-after-sigkill.toml", &toml);
    let run = |log: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_sluice-under-test"))
            .args(["run", "--quiet"])
            .arg(&job)
            .env("SLUICE_CACHE_DIR", dir.path().join("cache"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join(log)).unwrap())
            .spawn()
            .unwrap()
    };
    let logs = |dir: &std::path::Path| {
        ["first.log", "second.log"]
            .map(|l| std::fs::read_to_string(dir.join(l)).unwrap_or_default())
            .join("\n--- restarted ---\n")
    };
    let follower = kafka::Follower::new(&output);
    let number = |v: &str| -> usize { v.trim_start_matches("VALUE ").parse().unwrap() };
    let mut first = run("first.log");
    // It makes progress.
    let mut seen = 0;
    while seen < 300 {
        let next = tokio::task::block_in_place(|| follower.next(Duration::from_secs(60)));
        assert!(
            next.is_some(),
            "the first run wrote {seen} record(s)\n{}",
            logs(dir.path())
        );
        seen += 1;
    }
    first.kill().unwrap(); // SIGKILL: it does not leave the group
    first.wait().unwrap();
    kafka::produce(&input, &records(1000..1100));

    let restarted = std::time::Instant::now();
    let mut second = run("second.log");
    // The first output of a record produced after the kill: only the
    // restarted run can have written it.
    let first_new = tokio::task::block_in_place(|| {
        loop {
            match follower.next(SESSION + Duration::from_secs(30)) {
                Some((at, v)) if number(&v) >= 1000 => break Some(at),
                Some(_) => {}
                None => break None,
            }
        }
    });
    let first_new = first_new.unwrap_or_else(|| panic!("no new output\n{}", logs(dir.path())));
    let took = first_new.duration_since(restarted);
    eprintln!(
        "restart to first new output: {took:?} (session.timeout.ms = {:?})",
        SESSION
    );
    assert!(
        took < Duration::from_secs(10),
        "the restarted run wrote its first new record after {took:?}\n{}",
        logs(dir.path())
    );
    // And it goes on to read everything.
    let mut new: std::collections::BTreeSet<usize> = std::collections::BTreeSet::new();
    tokio::task::block_in_place(|| {
        while new.len() < 99 {
            let Some((_, v)) = follower.next(Duration::from_secs(60)) else {
                break;
            };
            if number(&v) >= 1000 {
                new.insert(number(&v));
            }
        }
    });
    unsafe { libc::kill(second.id() as i32, libc::SIGTERM) };
    let status = second.wait().unwrap();
    assert!(status.success(), "{status:?}\n{}", logs(dir.path()));
    assert_eq!(new.len(), 99, "the rest of the new records after the first");
    let log = logs(dir.path());
    assert!(!log.contains("ERROR"), "{log}");
}

/// A static member does not leave its group when it closes (KIP-345): a
/// job stopped cleanly kept its partitions from the other runs of the job
/// until its session timed out. A derived `group.instance.id` leaves the
/// group at a clean stop, so the other run takes over at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_stopped_cleanly_hands_its_partitions_over_at_once() {
    let _broker = kafka::BROKER_USE.read().await;
    let (input, output) = (kafka::unique_topic("in"), kafka::unique_topic("out"));
    let group = kafka::unique_topic("group");
    kafka::create_topic(&input, 4).await;
    kafka::create_topic(&output, 4).await;
    let toml = job_toml(
        &input,
        &output,
        &group,
        r#"config = { "session.timeout.ms" = "45000" }"#,
    );
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (stop_a, job_a) = start(dir_a.path(), &toml);
    let (stop_b, job_b) = start(dir_b.path(), &toml);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let follower = kafka::Follower::new(&output);
    let mut seen = std::collections::BTreeSet::new();
    let mut wait_for = |range: std::ops::Range<usize>| {
        tokio::task::block_in_place(|| {
            while !range.clone().all(|i| seen.contains(&i)) {
                let Some((_, v)) = follower.next(Duration::from_secs(90)) else {
                    break;
                };
                seen.insert(v.trim_start_matches("VALUE ").parse::<usize>().unwrap());
            }
        });
        range.clone().filter(|i| seen.contains(i)).count()
    };
    kafka::produce(&input, &records(0..400));
    assert_eq!(wait_for(0..400), 400);
    stop_a.send(true).unwrap();
    let a = job_a.await.unwrap().unwrap();
    let stopped = std::time::Instant::now();
    kafka::produce(&input, &records(400..800));
    assert_eq!(wait_for(400..800), 400, "nothing lost across the takeover");
    let took = stopped.elapsed();
    eprintln!("clean stop to the other run's taking over: {took:?} (session.timeout.ms = 45s)");
    stop_b.send(true).unwrap();
    let b = job_b.await.unwrap().unwrap();
    assert!(a.records_in > 0 && b.records_in >= 400);
    assert!(
        took < Duration::from_secs(20),
        "the remaining run read all new records only after {took:?}"
    );
}

/// The input of a hand-made transaction: the offsets to commit, with the
/// group's metadata from a consumer that never joins it.
struct TestInput {
    consumer: rdkafka::consumer::BaseConsumer,
    offsets: Vec<(String, i32, i64)>,
}

impl sluice::sink::Ack for TestInput {
    fn commit(&self) {
        unreachable!("the transaction commits the offsets");
    }

    fn consumer_offsets(&self) -> Result<sluice::sink::ConsumerOffsets, String> {
        use rdkafka::consumer::Consumer;
        let mut tpl = rdkafka::TopicPartitionList::new();
        for (topic, partition, offset) in &self.offsets {
            tpl.add_partition_offset(topic, *partition, rdkafka::Offset::Offset(*offset))
                .map_err(|e| e.to_string())?;
        }
        let metadata = self.consumer.group_metadata().ok_or("no group metadata")?;
        Ok((tpl, metadata))
    }
}

/// A transaction commits its source offsets marked with the number of the
/// last batch it holds, and `committed_batch` reads that back; a
/// transaction left open does not count, whether its producer just went
/// away or a new one with its id took over. One transaction may hold
/// several batches (a checkpoint interval).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_batch_a_transaction_committed_is_read_back_and_an_open_one_does_not_count() {
    use rdkafka::consumer::{CommitMode, Consumer};
    use sluice::model::batch::Batch;
    use sluice::sink::Sink;
    use sluice::sink::kafka::KafkaSink;
    use sluice::source::kafka::committed_batch;
    use sluice::spec::{Delivery, KafkaSinkConfig, KafkaSourceConfig, KafkaStart};
    let _broker = kafka::BROKER_USE.read().await;
    let (input, output) = (kafka::unique_topic("in"), kafka::unique_topic("out"));
    let group = kafka::unique_topic("group");
    kafka::create_topic(&input, 2).await;
    kafka::create_topic(&output, 1).await;
    let source = KafkaSourceConfig {
        brokers: kafka::broker(),
        topics: vec![input.clone()],
        group: group.clone(),
        start: KafkaStart::Earliest,
        connect_timeout: None,
        config: BTreeMap::new(),
        job: None,
        resume: Vec::new(),
    };
    let sink = KafkaSinkConfig {
        brokers: kafka::broker(),
        topic: output.clone(),
        delivery: Delivery::ExactlyOnce,
        transactional_id: Some(kafka::unique_topic("txn")),
        config: BTreeMap::new(),
    };
    let (input2, output2, group2) = (input.clone(), output.clone(), group.clone());
    let out = tokio::task::spawn_blocking(move || {
        let (input, group) = (input2, group2);
        let member = || -> rdkafka::consumer::BaseConsumer {
            rdkafka::ClientConfig::new()
                .set("bootstrap.servers", kafka::broker())
                .set("group.id", &group)
                .create()
                .unwrap()
        };
        let at = |offsets: &[(i32, i64)]| TestInput {
            consumer: member(),
            offsets: offsets
                .iter()
                .map(|&(p, o)| (input.clone(), p, o))
                .collect(),
        };
        let batch = |value: &str| {
            let mut b = Batch::new();
            b.push(None, value.as_bytes(), 0);
            vec![b]
        };
        assert_eq!(committed_batch(&source), Ok(None), "nothing committed");
        // A commit outside a transaction names no batch.
        let mut plain = rdkafka::TopicPartitionList::new();
        plain
            .add_partition_offset(&input, 0, rdkafka::Offset::Offset(1))
            .unwrap();
        member().commit(&plain, CommitMode::Sync).unwrap();
        assert_eq!(committed_batch(&source), Ok(None), "a plain commit");

        let mut producer = KafkaSink::create(&sink).unwrap();
        producer
            .write_transaction(7, &batch("seven"), Some(&at(&[(0, 3), (1, 2)])), true)
            .unwrap();
        assert_eq!(committed_batch(&source), Ok(Some(7)));

        // Left open, then the producer goes away: not committed.
        producer
            .write_transaction(8, &batch("eight"), Some(&at(&[(0, 5), (1, 4)])), false)
            .unwrap();
        assert_eq!(committed_batch(&source), Ok(Some(7)), "an open transaction");
        drop(producer);
        assert_eq!(committed_batch(&source), Ok(Some(7)), "its producer gone");
        // A new producer with the same id aborts it.
        let mut producer = KafkaSink::create(&sink).unwrap();
        assert_eq!(committed_batch(&source), Ok(Some(7)), "aborted");
        assert_eq!(kafka::committed_total(&group, &input, 2), 5);

        // Two batches, one transaction, committed at the second.
        producer
            .write_transaction(9, &batch("nine"), None, false)
            .unwrap();
        assert_eq!(committed_batch(&source), Ok(Some(7)));
        producer
            .write_transaction(10, &batch("ten"), Some(&at(&[(0, 6), (1, 4)])), true)
            .unwrap();
        assert_eq!(committed_batch(&source), Ok(Some(10)));
        assert_eq!(kafka::committed_total(&group, &input, 2), 10);
        producer.close().unwrap();
        kafka::consume(&output2, 3, Duration::from_secs(30))
    })
    .await
    .unwrap();
    let values: Vec<&str> = out.iter().map(|(_, v)| v.as_str()).collect();
    // read_committed: the aborted batch never shows.
    assert_eq!(values, ["seven", "nine", "ten"]);
}

/// The consumer lag per partition, from the Kafka client's statistics: it
/// shows how far a source is behind while it catches up (fetching small
/// slices), and falls to 0 on every partition once all is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_lag_shows_per_partition_and_falls_to_zero() {
    let _broker = kafka::BROKER_USE.read().await;
    let input = kafka::unique_topic("lag");
    let group = kafka::unique_topic("group");
    kafka::create_topic(&input, 3).await;
    let total = 30_000;
    kafka::produce(&input, &records(0..total));
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "workers = 2\n[batch]\ninterval = \"100ms\"\n\
         [[sources]]\nkind = \"kafka\"\nbrokers = \"{}\"\ntopics = [\"{input}\"]\ngroup = \"{group}\"\n\
         config = {{ \"message.max.bytes\" = \"2048\", \"fetch.max.bytes\" = \"2048\", \"max.partition.fetch.bytes\" = \"1024\", \"queued.max.messages.kbytes\" = \"16\" }}\n\
         [[sinks]]\nkind = \"discard\"\n",
        kafka::broker()
    );
    let path = sluice_tests::write_job(dir.path(), "job.toml", &toml);
    let runtime = sluice_tests::runtime_in(dir.path());
    let job = Job::from_file(&path, &runtime).expect("job builds");
    let stats = job.stats();
    let (stop, stop_rx) = watch::channel(false);
    let run = tokio::spawn(job.run(stop_rx));
    let lag_of = |f: &sluice::metrics::JobFigures| -> Vec<(String, i32, i64)> {
        let lag = f.meters.kafka_lag.iter();
        lag.map(|l| (l.topic.clone(), l.partition, l.lag)).collect()
    };
    let started = std::time::Instant::now();
    let mut most_behind = 0;
    loop {
        let f = stats.figures("lag", "running");
        if let Some(f) = &f {
            let lag = lag_of(f);
            let behind: i64 = lag.iter().map(|l| l.2).sum();
            assert!(behind <= total as i64, "{lag:?}");
            most_behind = most_behind.max(behind);
            if f.totals.records_in == total as u64 && lag.len() == 3 && behind == 0 {
                let partitions: Vec<i32> = lag.iter().map(|l| l.1).collect();
                assert_eq!(partitions, [0, 1, 2], "{lag:?}");
                assert!(lag.iter().all(|l| l.0 == input), "{lag:?}");
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "last figures: {f:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(most_behind > 0, "the lag never showed the source behind");
    stop.send(true).unwrap();
    let summary = run.await.unwrap().unwrap();
    assert_eq!(summary.records_in, total as u64);
    eprintln!("most behind: {most_behind} records");
}
