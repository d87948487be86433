//! Hostile operators are contained: each attack ends in the error that names
//! it (the limit and its value for a breach), the process goes on, the
//! `skip` and `dead-letter` policies set aside only the records at fault,
//! and a hostile job does not hurt a good job running beside it.

use crate::{lit, read_jsonl};
use sluice::exec::{Job, JobError, Summary};
use sluice::operators::OperatorError;
use sluice::spec::limits::{Limit, Limits, OnBreach};
use sluice::wasm::Runtime;
use sluice_tests::guests;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// `n` ordinary records, `record 0`..., with `poison` placed at the given
/// positions instead.
fn lines(n: usize, poison: &[(usize, &str)]) -> Vec<String> {
    (0..n)
        .map(|i| match poison.iter().find(|(at, _)| *at == i) {
            Some((_, p)) => p.to_string(),
            None => format!("record {i}"),
        })
        .collect()
}

/// A job file running the hostile fixture, as operator `hostile` on one
/// worker, over `input` (written to `in.txt`) into `out.jsonl`; `tables`
/// adds `[limits]`, `[batch]` or `[dead_letter]`.
fn hostile_job(dir: &Path, input: &[String], tables: &str) -> String {
    std::fs::write(dir.join("in.txt"), input.join("\n")).unwrap();
    format!(
        "workers = 1\n[[sources]]\nkind = \"file\"\npath = \"in.txt\"\n\
         [[operators]]\nname = \"hostile\"\nplugin = {}\n\
         [[sinks]]\nkind = \"jsonl\"\npath = \"out.jsonl\"\n{tables}\n",
        lit(guests::HOSTILE)
    )
}

/// Runs the job file text `toml` from `dir` on `runtime`; returns the outcome
/// and the number of records skipped.
async fn run(dir: &Path, runtime: &Runtime, toml: &str) -> (Result<Summary, JobError>, u64) {
    let path = sluice_tests::write_job(dir, "job.toml", toml);
    let job = match Job::from_file(&path, runtime) {
        Ok(job) => job,
        Err(e) => return (Err(e), 0),
    };
    let skipped = job.skip_count();
    let outcome = job.run_to_end().await;
    (outcome, skipped.get())
}

/// The values written to `out.jsonl` in `dir`.
fn output(dir: &Path) -> Vec<String> {
    read_jsonl(&dir.join("out.jsonl"))
        .iter()
        .map(|v| v["value"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Checks that `err` is a breach of `limit` by operator `hostile`, reported
/// with the limit's value; returns the message.
fn assert_breach(err: &JobError, limit: Limit, value: &str) -> String {
    let msg = err.to_string();
    match err {
        JobError::Operator {
            operator,
            error: OperatorError::Limit {
                limit: l, value: v, ..
            },
            ..
        } => {
            assert_eq!(operator, "hostile", "{msg}");
            assert_eq!((*l, v.as_str()), (limit, value), "{msg}");
        }
        other => panic!("expected a breach of `{limit}`, got {other:?}"),
    }
    let expected = format!("limit `{limit}` = {value} exceeded");
    assert!(msg.contains(&expected), "{msg}");
    msg
}

#[tokio::test]
async fn an_infinite_loop_is_interrupted_at_the_cpu_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = sluice_tests::runtime_in(dir.path());
    let toml = hostile_job(
        dir.path(),
        &lines(3, &[(1, "LOOP")]),
        "[limits]\ncpu_per_batch = \"200ms\"",
    );
    let started = Instant::now();
    let (outcome, _) = run(dir.path(), &runtime, &toml).await;
    let err = outcome.unwrap_err();
    let msg = assert_breach(&err, Limit::CpuPerBatch, "200ms");
    assert!(
        msg.starts_with("operator `hostile` failed on worker 0, batch 0, partition 0"),
        "{msg}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the loop was not stopped: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_deadline_needs_a_runtime_that_checks_deadlines() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::with_options(Some(dir.path().join("cache")), false).unwrap();
    assert!(!runtime.enforces_deadlines());
    let toml = hostile_job(
        dir.path(),
        &lines(3, &[]),
        "[limits]\ncpu_per_batch = \"200ms\"",
    );
    let (outcome, _) = run(dir.path(), &runtime, &toml).await;
    let msg = outcome.unwrap_err().to_string();
    assert!(
        msg.contains("`cpu_per_batch` = 200ms cannot be enforced"),
        "{msg}"
    );
    // Without a deadline the same runtime runs the job.
    let toml = hostile_job(dir.path(), &lines(3, &[]), "");
    let (outcome, _) = run(dir.path(), &runtime, &toml).await;
    assert_eq!(outcome.unwrap().records_out, 3);
}

#[tokio::test]
async fn a_memory_bomb_is_stopped_at_the_memory_limit() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = sluice_tests::runtime_in(dir.path());
    let toml = hostile_job(
        dir.path(),
        &lines(3, &[(2, "BOMB")]),
        "[limits]\nmemory = \"64MiB\"",
    );
    let (outcome, _) = run(dir.path(), &runtime, &toml).await;
    let msg = assert_breach(&outcome.unwrap_err(), Limit::Memory, "64 MiB");
    assert!(msg.contains("linear memory"), "{msg}");
}

#[tokio::test]
async fn a_huge_output_exceeds_the_output_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = sluice_tests::runtime_in(dir.path());
    let toml = hostile_job(
        dir.path(),
        &lines(3, &[(0, "HUGE 200")]),
        "[limits]\noutput_ratio = 10",
    );
    let (outcome, _) = run(dir.path(), &runtime, &toml).await;
    let msg = assert_breach(&outcome.unwrap_err(), Limit::OutputRatio, "10");
    assert!(
        msg.contains("the call tried to pass more than the 1.0 MiB it may pass to the host for 72 bytes of input (10 × input + 1 MiB)"),
        "{msg}"
    );
}

#[tokio::test]
async fn deep_recursion_is_an_ordinary_trap() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = sluice_tests::runtime_in(dir.path());
    let toml = hostile_job(dir.path(), &lines(3, &[(1, "DEEP")]), "");
    let (outcome, _) = run(dir.path(), &runtime, &toml).await;
    let err = outcome.unwrap_err();
    assert!(
        matches!(
            err,
            JobError::Operator {
                error: OperatorError::Trap(_),
                ..
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("stack overflow") || msg.contains("out-of-bounds memory access"),
        "{msg}"
    );
}

#[tokio::test]
async fn files_cannot_be_read() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = sluice_tests::runtime_in(dir.path());
    let toml = hostile_job(
        dir.path(),
        &[
            "READ /etc/passwd".to_string(),
            "READ in.txt".to_string(),
            "READ /".to_string(),
        ],
        "",
    );
    let (outcome, _) = run(dir.path(), &runtime, &toml).await;
    outcome.unwrap();
    let out = output(dir.path());
    assert_eq!(out.len(), 3, "{out:?}");
    for (got, path) in out.iter().zip(["/etc/passwd", "in.txt", "/"]) {
        assert!(got.starts_with(&format!("READ {path}: denied: ")), "{got}");
        assert!(!got.contains("root:"), "{got}");
    }
}

#[tokio::test]
async fn network_connections_are_denied() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = sluice_tests::runtime_in(dir.path());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = listener.local_addr().unwrap();
    let toml = hostile_job(dir.path(), &[format!("CONNECT {address}")], "");
    let (outcome, _) = run(dir.path(), &runtime, &toml).await;
    outcome.unwrap();
    let out = output(dir.path());
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(
        out[0].starts_with(&format!("CONNECT {address}: denied: ")),
        "{}",
        out[0]
    );
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the operator reached the listener: {other:?}"),
    }
}

/// With `on_breach = "skip"`, only the looping record is dropped: the batch
/// is re-run in halves until it is found, and its neighbours come out in
/// order.
#[tokio::test]
async fn skip_drops_only_the_record_that_breaches() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = sluice_tests::runtime_in(dir.path());
    let input = lines(16, &[(9, "LOOP")]);
    let toml = hostile_job(
        dir.path(),
        &input,
        "[limits]\ncpu_per_batch = \"100ms\"\non_breach = \"skip\"",
    );
    let (outcome, skipped) = run(dir.path(), &runtime, &toml).await;
    let summary = outcome.unwrap();
    assert_eq!(
        (
            summary.records_in,
            summary.records_out,
            summary.dead_lettered
        ),
        (16, 15, 0)
    );
    assert_eq!(skipped, 1);
    let expected: Vec<String> = input.into_iter().filter(|l| l != "LOOP").collect();
    assert_eq!(output(dir.path()), expected);
}

/// With `on_breach = "dead-letter"`, the record that breaches the memory
/// limit goes to the dead-letter file with the limit named, and every other
/// record of its batch is processed.
#[tokio::test]
async fn dead_letter_isolates_the_record_that_breaches() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = sluice_tests::runtime_in(dir.path());
    let input = lines(40, &[(29, "BOMB")]);
    let toml = hostile_job(
        dir.path(),
        &input,
        "[limits]\nmemory = \"64MiB\"\non_breach = \"dead-letter\"\n[dead_letter]\npath = \"dead.jsonl\"",
    );
    let (outcome, skipped) = run(dir.path(), &runtime, &toml).await;
    let summary = outcome.unwrap();
    assert_eq!(
        (
            summary.records_in,
            summary.records_out,
            summary.dead_lettered
        ),
        (40, 39, 1)
    );
    assert_eq!(skipped, 0);
    let expected: Vec<String> = input.into_iter().filter(|l| l != "BOMB").collect();
    assert_eq!(output(dir.path()), expected);
    let dead = read_jsonl(&dir.path().join("dead.jsonl"));
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["value"], "BOMB");
    assert_eq!(dead[0]["operator"], "hostile");
    let reason = dead[0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("operator failed on this record: limit `memory` = 64 MiB exceeded"),
        "{reason}"
    );
}

/// A trap with a dead-letter file is isolated the same way: the poison
/// records of a batch are dead-lettered, one by one, and their neighbours
/// processed.
#[tokio::test]
async fn traps_are_isolated_to_the_poison_records() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = sluice_tests::runtime_in(dir.path());
    let input = lines(100, &[(3, "DEEP"), (64, "DEEP 2")]);
    let toml = hostile_job(dir.path(), &input, "[dead_letter]\npath = \"dead.jsonl\"");
    let (outcome, _) = run(dir.path(), &runtime, &toml).await;
    let summary = outcome.unwrap();
    assert_eq!(
        (
            summary.records_in,
            summary.records_out,
            summary.dead_lettered
        ),
        (100, 98, 2)
    );
    let expected: Vec<String> = input
        .into_iter()
        .filter(|l| !l.starts_with("DEEP"))
        .collect();
    assert_eq!(output(dir.path()), expected);
    let dead = read_jsonl(&dir.path().join("dead.jsonl"));
    let values: Vec<&str> = dead.iter().map(|d| d["value"].as_str().unwrap()).collect();
    assert_eq!(values, ["DEEP", "DEEP 2"]);
    assert!(
        dead.iter().all(|d| d["reason"]
            .as_str()
            .unwrap()
            .starts_with("operator trapped on this record: ")),
        "{dead:?}"
    );
}

/// The search for the records at fault is bounded: when every record of a
/// batch traps, the first ones are found one by one, and once the failures
/// allowed are spent the rest of the batch is set aside in parts, with a
/// reason that says so.
#[tokio::test]
async fn the_search_for_poison_records_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = sluice_tests::runtime_in(dir.path());
    let input: Vec<String> = (0..64).map(|i| format!("DEEP {i}")).collect();
    let toml = hostile_job(dir.path(), &input, "[dead_letter]\npath = \"dead.jsonl\"");
    let (outcome, _) = run(dir.path(), &runtime, &toml).await;
    let summary = outcome.unwrap();
    assert_eq!(
        (
            summary.records_in,
            summary.records_out,
            summary.dead_lettered
        ),
        (64, 0, 64)
    );
    let dead = read_jsonl(&dir.path().join("dead.jsonl"));
    let values: Vec<&str> = dead.iter().map(|d| d["value"].as_str().unwrap()).collect();
    assert_eq!(values, input, "every record, in order");
    let reasons: Vec<&str> = dead.iter().map(|d| d["reason"].as_str().unwrap()).collect();
    let alone = reasons
        .iter()
        .filter(|r| r.starts_with("operator trapped on this record: "))
        .count();
    let stopped = reasons
        .iter()
        .filter(|r| r.contains("not searched further after"))
        .count();
    assert!(alone > 0 && stopped > 0, "{reasons:?}");
    assert_eq!(alone + stopped, 64, "{reasons:?}");
}

/// A breach stops the job when `on_breach` is `fail` (the default), even
/// with a dead-letter file.
#[tokio::test]
async fn fail_is_the_default_even_with_a_dead_letter_file() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = sluice_tests::runtime_in(dir.path());
    let toml = hostile_job(
        dir.path(),
        &lines(4, &[(0, "BOMB")]),
        "[limits]\nmemory = \"32MiB\"\n[dead_letter]\npath = \"dead.jsonl\"",
    );
    let (outcome, _) = run(dir.path(), &runtime, &toml).await;
    assert_breach(&outcome.unwrap_err(), Limit::Memory, "32 MiB");
}

#[tokio::test]
async fn limits_are_checked_before_the_job_starts() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = sluice_tests::runtime_in(dir.path());
    let toml = hostile_job(
        dir.path(),
        &lines(1, &[]),
        "[limits]\non_breach = \"dead-letter\"",
    );
    let (outcome, _) = run(dir.path(), &runtime, &toml).await;
    let msg = outcome.unwrap_err().to_string();
    assert!(
        msg.ends_with(
            "job.toml:12: field `limits.on_breach`: \"dead-letter\" needs a [dead_letter] path in the job (or use \"skip\" or \"fail\")"
        ),
        "{msg}"
    );
    let err = Job::builder("x")
        .source(sluice::spec::SourceConfig::Stdin {})
        .sink(sluice::spec::SinkConfig::Discard {})
        .limits(Limits {
            memory: 1 << 10,
            ..Limits::default()
        })
        .build()
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "invalid job: limits.memory: 1 KiB is out of range (accepted: 1 MiB to 4 GiB)"
    );
    let err = Job::builder("x")
        .source(sluice::spec::SourceConfig::Stdin {})
        .sink(sluice::spec::SinkConfig::Discard {})
        .limits(Limits {
            on_breach: OnBreach::DeadLetter,
            ..Limits::default()
        })
        .build()
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("needs a dead-letter file"),
        "{err}"
    );
}

/// Two jobs on one runtime, at the same time: the good one's output is
/// complete and correct while the hostile one loops, is interrupted and fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_job_does_not_hurt_a_good_job_beside_it() {
    let good_dir = tempfile::tempdir().unwrap();
    let bad_dir = tempfile::tempdir().unwrap();
    let runtime = sluice_tests::runtime_in(good_dir.path());
    let input: Vec<String> = (0..50_000).map(|i| format!("line {i}")).collect();
    std::fs::write(good_dir.path().join("in.txt"), input.join("\n")).unwrap();
    let good = sluice_tests::write_job(
        good_dir.path(),
        "good.toml",
        &format!(
            "workers = 1\n[batch]\nmax_records = 5000\n[[sources]]\nkind = \"file\"\npath = \"in.txt\"\n\
             [[operators]]\nplugin = {}\n[[sinks]]\nkind = \"jsonl\"\npath = \"out.jsonl\"\n",
            lit(guests::UPPERCASE)
        ),
    );
    let bad = sluice_tests::write_job(
        bad_dir.path(),
        "bad.toml",
        &hostile_job(
            bad_dir.path(),
            &lines(4, &[(0, "LOOP"), (3, "BOMB")]),
            "[batch]\nmax_records = 2\n[limits]\ncpu_per_batch = \"300ms\"\nmemory = \"64MiB\"",
        ),
    );
    let good = Job::from_file(&good, &runtime).unwrap();
    let bad = Job::from_file(&bad, &runtime).unwrap();
    let (good, bad) = tokio::join!(good.run_to_end(), bad.run_to_end());
    assert_breach(&bad.unwrap_err(), Limit::CpuPerBatch, "300ms");
    let good = good.unwrap();
    assert_eq!((good.records_in, good.records_out), (50_000, 50_000));
    let expected: Vec<String> = input.iter().map(|l| l.to_uppercase()).collect();
    assert_eq!(output(good_dir.path()), expected);
}

/// A stop lets the batch in progress finish, which a looping call can make
/// last its whole deadline; a raised halt ends that call (and so the job)
/// within a fraction of a second, naming the halt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halt_ends_a_call_that_a_stop_waits_for() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = sluice_tests::runtime_in(dir.path());
    let toml = hostile_job(
        dir.path(),
        &lines(3, &[(1, "LOOP")]),
        "[limits]\ncpu_per_batch = \"120s\"",
    );
    let path = sluice_tests::write_job(dir.path(), "job.toml", &toml);
    let job = Job::from_file(&path, &runtime).unwrap();
    let halt = job.halt();
    let stats = job.stats();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let mut run = tokio::spawn(job.run(stop_rx));
    // The looping record has been read: the batch is in the call.
    let started = Instant::now();
    while stats.snapshot().records_in < 3 {
        assert!(started.elapsed() < Duration::from_secs(30), "no input read");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send_replace(true);
    let waited = tokio::time::timeout(Duration::from_secs(3), &mut run).await;
    assert!(
        waited.is_err(),
        "the looping call ended by itself: {waited:?}"
    );
    let halted = Instant::now();
    halt.raise();
    let outcome = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the halted job did not end")
        .unwrap();
    assert!(
        halted.elapsed() < Duration::from_secs(2),
        "{:?}",
        halted.elapsed()
    );
    let msg = outcome.unwrap_err().to_string();
    assert!(
        msg.starts_with(
            "operator `hostile` failed on worker 0, batch 0, partition 0: the job was halted"
        ),
        "{msg}"
    );
}

/// When one partition's call fails, the job ends once its other calls have
/// returned, since its worker threads are joined; that wait blocked an
/// async thread, so in the server every request and job on that thread
/// waited for another job's looping call. Here the runtime has one thread,
/// and a timer on it must keep ticking while the job waits for the loop.
#[tokio::test(flavor = "current_thread")]
async fn a_failed_batch_waits_for_its_other_calls_off_the_async_threads() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = sluice_tests::runtime_in(dir.path());
    // Two workers, one record each: DEEP traps at once, LOOP runs 3 s.
    let toml = hostile_job(
        dir.path(),
        &lines(2, &[(0, "DEEP"), (1, "LOOP")]),
        "[batch]\nmax_records = 2\n[limits]\ncpu_per_batch = \"3s\"",
    )
    .replace("workers = 1", "workers = 2");
    let path = sluice_tests::write_job(dir.path(), "job.toml", &toml);
    let job = Job::from_file(&path, &runtime).unwrap();
    let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let ticker = tokio::spawn({
        let ticks = ticks.clone();
        async move {
            let mut every = tokio::time::interval(Duration::from_millis(50));
            loop {
                every.tick().await;
                ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    let started = Instant::now();
    let msg = job.run_to_end().await.unwrap_err().to_string();
    let elapsed = started.elapsed();
    ticker.abort();
    assert!(msg.contains("trapped"), "{msg}");
    assert!(elapsed >= Duration::from_secs(2), "{elapsed:?}: {msg}");
    let ticks = ticks.load(std::sync::atomic::Ordering::Relaxed);
    let expected = elapsed.as_millis() as u64 / 50;
    assert!(
        ticks * 2 >= expected,
        "the timer ticked {ticks} times in {elapsed:?} (about {expected} expected)"
    );
}

fn sluice() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sluice-under-test"));
    c.env(
        "SLUICE_CACHE_DIR",
        std::env::temp_dir().join("sluice-test-cache"),
    );
    c
}

/// The `sluice` process reports a breach as an error and exits with code 1.
#[test]
fn the_process_survives_and_reports_the_breach() {
    let dir = tempfile::tempdir().unwrap();
    let toml = hostile_job(
        dir.path(),
        &lines(2, &[(0, "LOOP")]),
        "[limits]\ncpu_per_batch = \"250ms\"",
    );
    let job = sluice_tests::write_job(dir.path(), "loop.toml", &toml);
    let out = sluice()
        .args(["run", "--quiet", job.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("operator `hostile` failed on worker 0, batch 0, partition 0: limit `cpu_per_batch` = 250ms exceeded"),
        "{stderr}"
    );
}

/// A flood of log lines from every record of a job is cut to the per-call
/// budget, and the job's output is complete.
#[test]
fn a_log_flood_is_rate_limited() {
    let dir = tempfile::tempdir().unwrap();
    let input: Vec<String> = (0..20).map(|i| format!("CHATTY {i}")).collect();
    std::fs::write(dir.path().join("in.txt"), input.join("\n")).unwrap();
    let job = sluice_tests::write_job(
        dir.path(),
        "chatty.toml",
        &format!(
            "workers = 1\n[[sources]]\nkind = \"file\"\npath = \"in.txt\"\n\
             [[operators]]\nplugin = {}\n[[sinks]]\nkind = \"jsonl\"\npath = \"out.jsonl\"\n",
            lit(guests::TRAP)
        ),
    );
    let out = sluice()
        .args(["run", "--quiet", job.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let shown = stderr.lines().filter(|l| l.contains("chatty line")).count();
    assert!(
        (1..=200).contains(&shown),
        "{shown} of 20,000 chatty lines reached the log"
    );
    assert!(
        stderr.contains("operator is logging too much: dropped"),
        "{stderr}"
    );
    assert_eq!(output(dir.path()), input);
}
