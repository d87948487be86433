//! Unbounded sources: a watched directory, a TCP socket, a rate-limited generator.

use sluice::exec::{Job, JobBuilder, JobError, Summary};
use sluice::operators::aggregate::{AggregateConfig, AggregateFactory};
use sluice::sink::CollectSink;
use sluice::spec::{SinkConfig, SourceConfig};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

async fn wait_for(sink: &CollectSink, n: usize) {
    for _ in 0..200 {
        if sink.records().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "timed out waiting for {n} records, have {:?}",
        sink.values()
    );
}

/// A job reading from a TCP server of the test's own: `build` makes it of
/// the socket source and a sink it must write to; the job runs in the
/// background until the returned switch turns true.
async fn socket_job(
    build: impl FnOnce(SourceConfig, CollectSink) -> JobBuilder,
) -> (
    tokio::net::TcpListener,
    CollectSink,
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<Result<Summary, JobError>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let sink = CollectSink::new();
    let job = build(SourceConfig::Socket { address }, sink.clone())
        .build()
        .unwrap();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let handle = tokio::spawn(job.run(stop_rx));
    (listener, sink, stop_tx, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_source_reads_new_files_once() {
    let dir = tempfile::tempdir().unwrap();
    let watched = dir.path().join("in");
    std::fs::create_dir(&watched).unwrap();
    std::fs::write(watched.join("old.txt"), "old\n").unwrap();
    let sink = CollectSink::new();
    let job = Job::builder("dir")
        .source(SourceConfig::Directory {
            path: watched.clone(),
            poll: Some("50ms".into()),
            existing: false,
        })
        .sink_boxed(Box::new(sink.clone()))
        .interval(Duration::from_millis(50))
        .build()
        .unwrap();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let handle = tokio::spawn(job.run(stop_rx));
    tokio::time::sleep(Duration::from_millis(150)).await;
    // Publish atomically: write under a temporary name, then rename.
    std::fs::write(watched.join("a.txt.tmp"), "a1\na2\n").unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(
        sink.records().is_empty(),
        "a .tmp file is not read: {:?}",
        sink.values()
    );
    std::fs::rename(watched.join("a.txt.tmp"), watched.join("a.txt")).unwrap();
    wait_for(&sink, 2).await;
    std::fs::write(watched.join("b.txt"), "b1").unwrap();
    wait_for(&sink, 3).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop_tx.send(true).unwrap();
    let summary = handle.await.unwrap().unwrap();
    assert!(summary.interrupted);
    assert_eq!(
        sink.values(),
        ["a1", "a2", "b1"],
        "old files are skipped, new ones read exactly once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_source_reconnects() {
    let (listener, sink, stop_tx, handle) = socket_job(|source, sink| {
        Job::builder("sock")
            .source(source)
            .sink_boxed(Box::new(sink))
            .interval(Duration::from_millis(50))
    })
    .await;
    let (mut conn, _) = listener.accept().await.unwrap();
    conn.write_all(b"first\nsecond\n").await.unwrap();
    wait_for(&sink, 2).await;
    drop(conn); // the server goes away; the source must reconnect
    let (mut conn, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
        .await
        .expect("source reconnected")
        .unwrap();
    conn.write_all(b"third\n").await.unwrap();
    wait_for(&sink, 3).await;
    stop_tx.send(true).unwrap();
    handle.await.unwrap().unwrap();
    assert_eq!(sink.values(), ["first", "second", "third"]);
}

/// With only `max_records` set there was no clock: records read before the
/// input paused waited for more input for ever (and with them windows and
/// Kafka commits). Now a pause of a tick cuts them into a batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_only_max_records_a_pause_in_the_input_still_cuts_a_batch() {
    let (listener, sink, stop_tx, handle) = socket_job(|source, sink| {
        Job::builder("sock")
            .source(source)
            .sink_boxed(Box::new(sink))
            .max_records(1000)
    })
    .await;
    let (mut conn, _) = listener.accept().await.unwrap();
    conn.write_all(b"a\nb\nc\n").await.unwrap();
    // Far fewer than 1000 records, and nothing more: within the 5 s
    // wait_for allows, a pause of one tick (1 s) cuts them.
    wait_for(&sink, 3).await;
    stop_tx.send(true).unwrap();
    handle.await.unwrap().unwrap();
    assert_eq!(sink.values(), ["a", "b", "c"]);
}

/// A stream without records once pinned the watermark of every stage it
/// entered, so windows of the other streams never closed (and their state
/// grew) until it had a record. With `idle_timeout` it stops holding the
/// watermark back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_stream_stops_holding_the_watermark_after_idle_timeout() {
    let quiet = tempfile::tempdir().unwrap();
    let cfg = AggregateConfig::parse(&[
        ("function".into(), "count".into()),
        ("window".into(), "tumbling".into()),
        ("length".into(), "1s".into()),
        ("idle_timeout".into(), "500ms".into()),
    ])
    .unwrap();
    let (listener, sink, stop_tx, handle) = socket_job(|source, sink| {
        Job::builder("idle")
            .named_source("busy", source)
            .named_source(
                "quiet",
                SourceConfig::Directory {
                    path: quiet.path().to_path_buf(),
                    poll: None,
                    existing: false,
                },
            )
            .operator(crate::parse_lines())
            .operator(AggregateFactory::new("count", cfg))
            .sink_boxed(Box::new(sink))
            .interval(Duration::from_millis(100))
    })
    .await;
    let (mut conn, _) = listener.accept().await.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // The second record's event time passes the end of the first's window.
    let lines = format!("k,{},1\nk,{},1\n", now - 5_000, now);
    conn.write_all(lines.as_bytes()).await.unwrap();
    // The first window is emitted while the job runs, the quiet stream
    // notwithstanding.
    wait_for(&sink, 1).await;
    stop_tx.send(true).unwrap();
    handle.await.unwrap().unwrap();
    let (key, value, _) = &sink.records()[0];
    assert_eq!(key.as_deref(), Some(&b"k"[..]));
    let v: serde_json::Value = serde_json::from_slice(value).unwrap();
    let start = (now - 5_000) - (now - 5_000).rem_euclid(1_000);
    assert_eq!(v["window_start"], start);
    assert_eq!(v["count"], 1);
}

/// A server that sends bytes and never a newline once made the socket
/// source hold all of them, until memory ran out. The lines before it go
/// through; the endless one fails the job, naming the setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_never_sends_a_newline_fails_the_job_naming_max_line_bytes() {
    let (listener, sink, _stop_tx, handle) = socket_job(|source, sink| {
        Job::builder("sock")
            .source(source)
            .sink_boxed(Box::new(sink))
            .interval(Duration::from_millis(50))
    })
    .await;
    let (mut conn, _) = listener.accept().await.unwrap();
    conn.write_all(b"fine\n").await.unwrap();
    wait_for(&sink, 1).await;
    let block = vec![b'x'; 1 << 20];
    // 17 MiB without a newline; the source stops reading at 16 MiB.
    for _ in 0..17 {
        if conn.write_all(&block).await.is_err() {
            break;
        }
    }
    let result = tokio::time::timeout(Duration::from_secs(30), handle)
        .await
        .expect("the job ends")
        .unwrap();
    let err = result
        .expect_err("an endless line fails the job")
        .to_string();
    assert!(err.contains("max_line_bytes = 16 MiB"), "{err}");
    assert_eq!(sink.values(), ["fine"]);
}

/// `max_line_bytes` was a fixed 16 MiB; a job now sets its own, and a line
/// one byte past it fails the job while one of exactly that size passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_sets_its_own_max_line_bytes() {
    let (listener, sink, _stop_tx, handle) = socket_job(|source, sink| {
        Job::builder("sock")
            .source(source)
            .sink_boxed(Box::new(sink))
            .interval(Duration::from_millis(50))
            .max_line_bytes(4096)
    })
    .await;
    let (mut conn, _) = listener.accept().await.unwrap();
    let mut exact = vec![b'a'; 4096];
    exact.push(b'\n');
    conn.write_all(&exact).await.unwrap();
    wait_for(&sink, 1).await;
    let _ = conn.write_all(&vec![b'b'; 4097]).await;
    let result = tokio::time::timeout(Duration::from_secs(30), handle)
        .await
        .expect("the job ends")
        .unwrap();
    let err = result.expect_err("a longer line fails the job").to_string();
    assert!(err.contains("batch.max_line_bytes = 4 KiB"), "{err}");
    assert_eq!(sink.values(), ["a".repeat(4096)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generator_is_deterministic_and_bounded() {
    let run = || async {
        let sink = CollectSink::new();
        Job::builder("gen")
            .source(SourceConfig::Generator {
                records: Some(10_000),
                rate: None,
                value_size: 50,
                keys: Some(7),
                seed: 3,
            })
            .sink_boxed(Box::new(sink.clone()))
            .workers(2)
            .max_records(999)
            .build()
            .unwrap()
            .run_to_end()
            .await
            .unwrap();
        let mut recs: Vec<_> = sink.records().into_iter().map(|(k, v, _)| (k, v)).collect();
        recs.sort();
        recs
    };
    let a = run().await;
    assert_eq!(a.len(), 10_000);
    assert!(a.iter().all(|(k, v)| k.is_some() && v.len() == 50));
    assert_eq!(a, run().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generator_rate_is_respected() {
    let sink = CollectSink::new();
    let started = std::time::Instant::now();
    Job::builder("rate")
        .source(SourceConfig::Generator {
            records: Some(3000),
            rate: Some(6000),
            value_size: 20,
            keys: None,
            seed: 1,
        })
        .sink(SinkConfig::Stdout { limit: 0 })
        .sink_boxed(Box::new(sink.clone()))
        .interval(Duration::from_millis(100))
        .build()
        .unwrap()
        .run_to_end()
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(sink.records().len(), 3000);
    // 3000 records at 6000/s need about half a second; far less means the rate was ignored.
    assert!(took >= Duration::from_millis(400), "took {took:?}");
    assert!(sink.batches() >= 3, "interval batches: {}", sink.batches());
}
