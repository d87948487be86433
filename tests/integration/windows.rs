//! Windowed aggregation against a plain reference computation: random input,
//! out of order within the watermark bound, with some records later than
//! that; the same results at 1, 2 and 4 workers.

use crate::parse_lines;
use proptest::prelude::*;
use sluice::exec::{Job, Summary};
use sluice::model::time::{Window, WindowKind};
use sluice::operators::NativeOperator;
use sluice::operators::aggregate::{AggregateConfig, AggregateFactory};
use sluice::sink::CollectSink;
use sluice::spec::SourceConfig;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
struct Rec {
    key: u8,
    ts: i64,
    value: i64,
}

type Results = BTreeMap<(String, i64, i64), i64>;

/// Runs the job and returns, per (key, window), the last value emitted.
fn run(
    records: &[Rec],
    settings: &[(&str, String)],
    workers: usize,
    batch: usize,
) -> (Results, Summary) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    let text: String = records
        .iter()
        .map(|r| format!("{},{},{}\n", r.key, r.ts, r.value))
        .collect();
    std::fs::write(&input, text).unwrap();
    let pairs: Vec<(String, String)> = settings
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let cfg = AggregateConfig::parse(&pairs).unwrap();
    let sink = CollectSink::new();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let summary = rt
        .block_on(
            Job::builder("windows")
                .source(SourceConfig::File { path: input })
                .operator(parse_lines())
                .operator(AggregateFactory::new("agg", cfg))
                .sink_boxed(Box::new(sink.clone()))
                .workers(workers)
                .max_records(batch)
                .build()
                .unwrap()
                .run_to_end(),
        )
        .unwrap();
    let mut out = Results::new();
    for (k, v, _) in sink.records() {
        let v: serde_json::Value = serde_json::from_slice(&v).unwrap();
        let value = v["sum"].as_f64().or(v["count"].as_f64()).unwrap() as i64;
        let key = String::from_utf8(k.unwrap()).unwrap();
        out.insert(
            (
                key,
                v["window_start"].as_i64().unwrap(),
                v["window_end"].as_i64().unwrap(),
            ),
            value,
        );
    }
    (out, summary)
}

/// The reference: the batch-by-batch watermark rule, computed directly.
fn reference(
    records: &[Rec],
    kind: WindowKind,
    delay: i64,
    lateness: i64,
    batch: usize,
    sum: bool,
) -> (Results, u64) {
    let mut acc = Results::new();
    let mut late = 0;
    let mut max_ts: Option<i64> = None;
    let mut wins = Vec::new();
    for chunk in records.chunks(batch) {
        let wm = max_ts.map(|m| m - delay).unwrap_or(i64::MIN);
        for r in chunk {
            kind.assign(r.ts, &mut wins);
            let open: Vec<Window> = wins
                .iter()
                .copied()
                .filter(|w| w.end + lateness > wm)
                .collect();
            if open.is_empty() {
                late += 1;
            }
            for w in open {
                *acc.entry((r.key.to_string(), w.start, w.end)).or_insert(0) +=
                    if sum { r.value } else { 1 };
            }
        }
        max_ts = chunk.iter().map(|r| r.ts).chain(max_ts).max();
    }
    (acc, late)
}

fn records(n: usize, bound: i64, seed: u64) -> Vec<Rec> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..n as i64)
        .map(|i| {
            let r = next();
            let jitter = if r % 20 == 0 {
                bound * 3 + (r >> 8) as i64 % (bound * 5 + 1)
            } else {
                (r >> 8) as i64 % (bound + 1)
            };
            Rec {
                key: (r >> 32) as u8 % 4,
                ts: 1_000_000 + i * 10 - jitter,
                value: (r >> 40) as i64 % 100,
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn windowed_results_match_reference(
        n in 20usize..300,
        seed in any::<u64>(),
        bound in 1i64..60,
        kind in prop_oneof![
            (1i64..4).prop_map(|k| WindowKind::Tumbling { length: k * 50 }),
            (1i64..4, 1i64..3).prop_map(|(k, s)| WindowKind::Sliding { length: k * 60, slide: 30 * s.min(k * 2) }),
        ],
        lateness in prop_oneof![Just(0i64), Just(40i64)],
        batch in prop_oneof![Just(1usize), Just(13usize), Just(100usize)],
        sum in any::<bool>(),
    ) {
        let input = records(n, bound, seed);
        let mut settings = vec![
            ("function", if sum { "sum" } else { "count" }.to_string()),
            ("watermark_delay", format!("{bound}ms")),
            ("allowed_lateness", format!("{}ms", lateness.max(1))),
        ];
        let lateness = lateness.max(1);
        match kind {
            WindowKind::Tumbling { length } => {
                settings.push(("window", "tumbling".into()));
                settings.push(("length", format!("{length}ms")));
            }
            WindowKind::Sliding { length, slide } => {
                settings.push(("window", "sliding".into()));
                settings.push(("length", format!("{length}ms")));
                settings.push(("slide", format!("{slide}ms")));
            }
            WindowKind::Session { .. } => unreachable!(),
        }
        let (want, want_late) = reference(&input, kind, bound, lateness, batch, sum);
        prop_assert!(!want.is_empty());
        let mut first = None;
        for workers in [1, 2, 4] {
            let (got, summary) = run(&input, &settings, workers, batch);
            prop_assert_eq!(&got, &want, "workers {}", workers);
            prop_assert_eq!(summary.late, want_late, "late records, workers {}", workers);
            match &first {
                None => first = Some(got),
                Some(f) => prop_assert_eq!(f, &got),
            }
        }
    }
}

/// Session windows: with the watermark bound covering all disorder, each
/// key's sessions are its sorted timestamps split where gaps reach `gap`.
#[test]
fn session_windows_match_reference() {
    let input = records(400, 30, 7);
    let input: Vec<Rec> = input
        .into_iter()
        .filter(|r| r.ts >= 1_000_000 - 30)
        .collect(); // no very late ones
    let gap = 25;
    let mut by_key: BTreeMap<u8, Vec<&Rec>> = BTreeMap::new();
    for r in &input {
        by_key.entry(r.key).or_default().push(r);
    }
    let mut want = Results::new();
    for (k, mut rs) in by_key {
        rs.sort_by_key(|r| r.ts);
        let mut start = rs[0].ts;
        let mut end = start + gap;
        let mut count = 0;
        for r in rs {
            if r.ts >= end {
                want.insert((k.to_string(), start, end), count);
                start = r.ts;
                count = 0;
            }
            end = end.max(r.ts + gap);
            count += 1;
        }
        want.insert((k.to_string(), start, end), count);
    }
    let settings = [
        ("function", "count".to_string()),
        ("window", "session".to_string()),
        ("gap", format!("{gap}ms")),
        ("watermark_delay", "1s".to_string()),
    ];
    for workers in [1, 2, 4] {
        let (got, summary) = run(&input, &settings, workers, 17);
        assert_eq!(got, want, "workers {workers}");
        assert_eq!(summary.late, 0);
    }
}

/// A record at either end of time — an event time of `i64::MAX`, which a
/// JSON field can carry, or `i64::MIN` — once made sliding-window assignment
/// wrap and spin for ever on a worker, so that not even SIGTERM ended the
/// job. Now it gets the windows that reach it, cut at the end of the range,
/// and the job ends.
#[test]
fn a_timestamp_near_i64_max_ends_the_job() {
    let input = [
        Rec {
            key: 1,
            ts: 1_000,
            value: 1,
        },
        Rec {
            key: 1,
            ts: i64::MAX,
            value: 1,
        },
        Rec {
            key: 2,
            ts: i64::MIN,
            value: 1,
        },
    ];
    let settings = [
        ("function", "count".to_string()),
        ("window", "sliding".to_string()),
        ("length", "10s".to_string()),
        ("slide", "5s".to_string()),
    ];
    // Windows start at multiples of 5 s: i64::MAX is 807 ms past
    // 9223372036854775000, i64::MIN 4192 ms past -9223372036854780000.
    let want: Results = [
        (("1", -5_000, 5_000), 1),
        (("1", 0, 10_000), 1),
        (("1", 9_223_372_036_854_770_000, i64::MAX), 1),
        (("1", 9_223_372_036_854_775_000, i64::MAX), 1),
        (("2", i64::MIN, -9_223_372_036_854_775_000), 1),
        (("2", i64::MIN, -9_223_372_036_854_770_000), 1),
    ]
    .into_iter()
    .map(|((k, s, e), n)| ((k.to_string(), s, e), n))
    .collect();
    let (got, summary) = run(&input, &settings, 2, 10);
    assert_eq!(got, want);
    assert_eq!(summary.records_in, 3);
}

/// One record with a far-future event time once moved the watermark so far
/// that every later record was late and dropped. With `max_future` it goes
/// to the dead-letter file instead, and moves nothing.
#[test]
fn a_far_future_timestamp_does_not_make_later_records_late() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let ten_years = 10 * 365 * 24 * 3_600_000;
    let input = [
        Rec {
            key: 1,
            ts: now - 20_000,
            value: 1,
        },
        Rec {
            key: 1,
            ts: now + ten_years,
            value: 1,
        },
        Rec {
            key: 1,
            ts: now - 15_000,
            value: 1,
        },
        Rec {
            key: 2,
            ts: now - 10_000,
            value: 1,
        },
    ];
    let settings = [
        ("function", "count".to_string()),
        ("window", "tumbling".to_string()),
        ("length", "10s".to_string()),
        ("max_future", "1h".to_string()),
    ];
    // A plain count per key and 10 s window of the believable records.
    let mut want = Results::new();
    for r in input.iter().filter(|r| r.ts < now + 3_600_000) {
        let start = r.ts - r.ts.rem_euclid(10_000);
        *want
            .entry((r.key.to_string(), start, start + 10_000))
            .or_default() += 1;
    }
    // One record per batch: the far-future one comes before the others.
    let (got, summary) = run(&input, &settings, 2, 1);
    assert_eq!(got, want);
    assert_eq!(summary.late, 0);
    assert_eq!(summary.dead_lettered, 1);
}

/// A record whose every window has closed is counted as late, not added.
#[test]
fn late_records_are_counted_and_diverted() {
    let input = vec![
        Rec {
            key: 0,
            ts: 1000,
            value: 1,
        },
        Rec {
            key: 0,
            ts: 5000,
            value: 1,
        },
        Rec {
            key: 0,
            ts: 1500,
            value: 1,
        }, // its window [1000, 2000) closed at watermark 5000
        Rec {
            key: 0,
            ts: 5100,
            value: 1,
        },
    ];
    let settings = [
        ("function", "count".to_string()),
        ("window", "tumbling".to_string()),
        ("length", "1s".to_string()),
    ];
    let (got, summary) = run(&input, &settings, 2, 1);
    assert_eq!(summary.late, 1);
    assert_eq!(got.get(&("0".to_string(), 1000, 2000)), Some(&1));
    assert_eq!(got.get(&("0".to_string(), 5000, 6000)), Some(&2));
}

/// Event time from the records, a late record diverted with its reason, all
/// from a job file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_time_job_file_with_late_records() {
    let dir = tempfile::tempdir().unwrap();
    let events = [
        r#"{"user":"a","ts":1000}"#,
        r#"{"user":"a","ts":5000}"#,
        r#"{"user":"a","ts":1500}"#,
        r#"{"user":"b","ts":5100}"#,
    ];
    std::fs::write(dir.path().join("events.jsonl"), events.join("\n")).unwrap();
    let job = format!(
        r#"
workers = 2
[batch]
max_records = 1
[[sources]]
kind = "file"
path = "events.jsonl"
[[operators]]
name = "by-user"
plugin = {plugin:?}
config = {{ field = "user", timestamp = "ts" }}
[[operators]]
name = "clicks"
builtin = "aggregate"
config = {{ function = "count", window = "tumbling", length = "1s", late = "dead-letter" }}
[[sinks]]
kind = "jsonl"
path = "out.jsonl"
[dead_letter]
path = "dead.jsonl"
"#,
        plugin = sluice_tests::guests::JSON_FIELD
    );
    let summary = crate::run_job(dir.path(), &job).await.unwrap();
    assert_eq!(
        (summary.records_in, summary.late, summary.dead_lettered),
        (4, 1, 1)
    );
    let mut got: Vec<(String, String)> = crate::read_jsonl(&dir.path().join("out.jsonl"))
        .iter()
        .map(|v| {
            (
                v["key"].as_str().unwrap().to_string(),
                v["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            (
                "a".to_string(),
                r#"{"window_start":1000,"window_end":2000,"count":1}"#.to_string()
            ),
            (
                "a".to_string(),
                r#"{"window_start":5000,"window_end":6000,"count":1}"#.to_string()
            ),
            (
                "b".to_string(),
                r#"{"window_start":5000,"window_end":6000,"count":1}"#.to_string()
            ),
        ]
    );
    let dead = crate::read_jsonl(&dir.path().join("dead.jsonl"));
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["timestamp"], 1500);
    assert_eq!(dead[0]["operator"], "clicks");
    assert!(
        dead[0]["reason"].as_str().unwrap().starts_with("late:"),
        "{}",
        dead[0]
    );
}

/// Non-windowed running totals: update mode emits changed keys each batch,
/// and state carries across batches (like `updateStateByKey`).
#[test]
fn running_totals_carry_across_batches() {
    let input: Vec<Rec> = [(1, 5), (2, 1), (1, 7), (1, 1)]
        .iter()
        .enumerate()
        .map(|(i, &(k, v))| Rec {
            key: k,
            ts: i as i64,
            value: v,
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.txt");
    std::fs::write(
        &path,
        input
            .iter()
            .map(|r| format!("{},{},{}\n", r.key, r.ts, r.value))
            .collect::<String>(),
    )
    .unwrap();
    let cfg = AggregateConfig::parse(&[("function".into(), "sum".into())]).unwrap();
    let sink = CollectSink::new();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(
        Job::builder("totals")
            .source(SourceConfig::File { path })
            .operator(parse_lines())
            .operator(AggregateFactory::new("sum", cfg))
            .sink_boxed(Box::new(sink.clone()))
            .workers(2)
            .max_records(2)
            .build()
            .unwrap()
            .run_to_end(),
    )
    .unwrap();
    let got: Vec<(String, String)> = sink
        .records()
        .into_iter()
        .map(|(k, v, _)| {
            (
                String::from_utf8(k.unwrap()).unwrap(),
                String::from_utf8(v).unwrap(),
            )
        })
        .collect();
    let mut first: Vec<_> = got[..2].to_vec();
    first.sort();
    assert_eq!(
        first,
        [
            ("1".to_string(), "5".to_string()),
            ("2".to_string(), "1".to_string())
        ]
    );
    assert_eq!(
        got[2..],
        [("1".to_string(), "13".to_string())],
        "only key 1 changed in the second batch"
    );
}

/// The example job files load: their plugins exist and their settings are valid.
#[test]
fn example_jobs_load() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = sluice_tests::runtime_in(dir.path());
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    for name in [
        "wordcount.toml",
        "windowed-wordcount.toml",
        "sellers-join.toml",
    ] {
        if let Err(e) = Job::from_file(&examples.join(name), &runtime) {
            panic!("{name}: {e}");
        }
    }
}

/// With more partitions than workers, a worker runs several partitions; each
/// has its own state, so complete mode lists every key exactly once per
/// batch, and records without a key form one total.
#[test]
fn more_partitions_than_workers_emit_each_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.txt");
    let words: Vec<String> = (0..200).map(|i| format!("w{}", i % 17)).collect();
    std::fs::write(&path, words.join("\n") + "\n").unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let run = |keyed: bool, mode: &str| {
        let cfg = AggregateConfig::parse(&[
            ("function".into(), "count".into()),
            ("mode".into(), mode.into()),
        ])
        .unwrap();
        let sink = CollectSink::new();
        let key_by = NativeOperator::new("key-by", move |input, out| {
            for r in input.iter() {
                out.emit(keyed.then_some(r.value), r.value, r.timestamp);
            }
            Ok(())
        });
        let summary = rt
            .block_on(
                Job::builder("partitions")
                    .source(SourceConfig::File { path: path.clone() })
                    .operator(key_by)
                    .operator(AggregateFactory::new("count", cfg))
                    .sink_boxed(Box::new(sink.clone()))
                    .workers(2)
                    .partitions(5)
                    .max_records(200)
                    .build()
                    .unwrap()
                    .run_to_end(),
            )
            .unwrap();
        assert_eq!(summary.batches, 1);
        let mut got: Vec<(Option<String>, String)> = sink
            .records()
            .into_iter()
            .map(|(k, v, _)| {
                (
                    k.map(|k| String::from_utf8(k).unwrap()),
                    String::from_utf8(v).unwrap(),
                )
            })
            .collect();
        got.sort();
        got
    };
    let want: Vec<(Option<String>, String)> = {
        let mut w: Vec<_> = (0..17)
            .map(|i| {
                let n = (0..200).filter(|j| j % 17 == i).count();
                (Some(format!("w{i}")), n.to_string())
            })
            .collect();
        w.sort();
        w
    };
    assert_eq!(run(true, "complete"), want);
    assert_eq!(run(true, "update"), want);
    assert_eq!(run(false, "update"), [(None, "200".to_string())]);
}
