//! The windowed join against a plain nested-loop reference: two named
//! streams read from two files at once, out of order within the watermark
//! bound; the same pairs at 1, 2 and 4 workers. Then the job-file form, with
//! Wasm key-by operators scoped to each stream, and its errors.

use crate::{lit, parse_lines, read_jsonl, run_job};
use sluice::exec::Job;
use sluice::model::time::{Window, WindowKind};
use sluice::operators::join::{JoinConfig, JoinFactory};
use sluice::sink::CollectSink;
use sluice::spec::SourceConfig;
use sluice_tests::guests;

/// (key, window start, window end, left value, right value)
type Pair = (String, i64, i64, String, String);

/// `key,timestamp,value` lines; timestamps rise by 10 with a jitter below
/// `bound`, so they are out of order by less than `bound`.
fn side(seed: u64, n: usize, keys: u64, bound: i64, tag: &str) -> Vec<(String, i64, String)> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|i| {
            let key = format!("k{}", next() % keys);
            let ts = 1_000 + i as i64 * 10 + (next() % bound as u64) as i64;
            (key, ts, format!("{tag}{i}"))
        })
        .collect()
}

fn reference(
    left: &[(String, i64, String)],
    right: &[(String, i64, String)],
    kind: WindowKind,
) -> Vec<Pair> {
    let windows = |ts: i64| {
        let mut w: Vec<Window> = Vec::new();
        kind.assign(ts, &mut w);
        w
    };
    let mut out = Vec::new();
    for (lk, lt, lv) in left {
        for (rk, rt, rv) in right {
            if lk != rk {
                continue;
            }
            let rw = windows(*rt);
            for w in windows(*lt).into_iter().filter(|w| rw.contains(w)) {
                out.push((lk.clone(), w.start, w.end, lv.clone(), rv.clone()));
            }
        }
    }
    out.sort();
    out
}

fn run(
    left: &[(String, i64, String)],
    right: &[(String, i64, String)],
    settings: &[(&str, &str)],
    workers: usize,
) -> (Vec<Pair>, u64) {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, rows: &[(String, i64, String)]| {
        let path = dir.path().join(name);
        let text: String = rows
            .iter()
            .map(|(k, t, v)| format!("{k},{t},{v}\n"))
            .collect();
        std::fs::write(&path, text).unwrap();
        path
    };
    let pairs: Vec<(String, String)> = settings
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let sink = CollectSink::new();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let summary = rt
        .block_on(
            Job::builder("joins")
                .named_source(
                    "people",
                    SourceConfig::File {
                        path: write("people.txt", left),
                    },
                )
                .named_source(
                    "auctions",
                    SourceConfig::File {
                        path: write("auctions.txt", right),
                    },
                )
                .operator(parse_lines())
                .operator(JoinFactory::new("j", JoinConfig::parse(&pairs).unwrap()))
                .sink_boxed(Box::new(sink.clone()))
                .workers(workers)
                .max_records(37)
                .build()
                .unwrap()
                .run_to_end(),
        )
        .unwrap();
    let mut got: Vec<Pair> = sink
        .records()
        .into_iter()
        .map(|(k, v, _)| {
            let v: serde_json::Value = serde_json::from_slice(&v).unwrap();
            (
                String::from_utf8(k.unwrap()).unwrap(),
                v["window_start"].as_i64().unwrap(),
                v["window_end"].as_i64().unwrap(),
                v["left"].as_str().unwrap().to_string(),
                v["right"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort();
    (got, summary.late)
}

#[test]
fn windowed_join_equals_nested_loop_reference_at_1_2_4_workers() {
    let cases: [(&[(&str, &str)], WindowKind); 2] = [
        (
            &[("window", "tumbling"), ("length", "200ms")],
            WindowKind::Tumbling { length: 200 },
        ),
        (
            &[
                ("window", "sliding"),
                ("length", "300ms"),
                ("slide", "100ms"),
            ],
            WindowKind::Sliding {
                length: 300,
                slide: 100,
            },
        ),
    ];
    for seed in 1..=3 {
        // The right side is longer, so one file is read well ahead of the other.
        let left = side(seed, 300, 12, 50, "p");
        let right = side(seed + 100, 900, 12, 50, "a");
        for (settings, kind) in &cases {
            let mut settings = settings.to_vec();
            settings.extend([
                ("left", "people"),
                ("right", "auctions"),
                ("watermark_delay", "50ms"),
            ]);
            let want = reference(&left, &right, *kind);
            assert!(want.len() > 100, "the case joins little: {}", want.len());
            for workers in [1, 2, 4] {
                let (got, late) = run(&left, &right, &settings, workers);
                assert_eq!(late, 0, "seed {seed}, {kind:?}, {workers} workers");
                assert_eq!(
                    got.len(),
                    want.len(),
                    "seed {seed}, {kind:?}, {workers} workers"
                );
                assert_eq!(got, want, "seed {seed}, {kind:?}, {workers} workers");
            }
        }
    }
}

fn write_people_and_auctions(dir: &std::path::Path) {
    let people: String = (0..20)
        .map(|i| {
            format!(
                "{{\"id\":{i},\"name\":\"person{i}\",\"ts\":{}}}\n",
                1000 + i * 100
            )
        })
        .collect();
    // Auctions 2i and 2i + 1 are sold by person i, shortly after the person
    // appeared (persons 20..24 do not exist).
    let auctions: String = (0..50)
        .map(|i| {
            format!(
                "{{\"id\":{},\"seller\":{},\"ts\":{}}}\n",
                100 + i,
                i / 2,
                1000 + (i / 2) * 100 + 30 + (i % 2) * 10
            )
        })
        .collect();
    std::fs::write(dir.join("people.jsonl"), people).unwrap();
    std::fs::write(dir.join("auctions.jsonl"), auctions).unwrap();
}

#[tokio::test]
async fn job_file_join_with_operators_scoped_to_each_stream() {
    let dir = tempfile::tempdir().unwrap();
    write_people_and_auctions(dir.path());
    let toml = format!(
        r#"
workers = 2
[batch]
max_records = 7
[[sources]]
name = "people"
kind = "file"
path = "people.jsonl"
[[sources]]
name = "auctions"
kind = "file"
path = "auctions.jsonl"
[[operators]]
name = "person-by-id"
input = "people"
plugin = {json}
config = {{ field = "id", timestamp = "ts" }}
[[operators]]
name = "auction-by-seller"
input = "auctions"
plugin = {json}
config = {{ field = "seller", timestamp = "ts" }}
[[operators]]
name = "sellers"
builtin = "join"
config = {{ left = "people", right = "auctions", window = "tumbling", length = "100ms" }}
[[sinks]]
kind = "jsonl"
path = "out.jsonl"
"#,
        json = lit(guests::JSON_FIELD)
    );
    let summary = run_job(dir.path(), &toml).await.unwrap();
    assert_eq!(summary.records_in, 70);
    let out = read_jsonl(&dir.path().join("out.jsonl"));
    // Persons 0..19 each sold two auctions.
    assert_eq!(out.len(), 40, "{out:?}");
    for rec in &out {
        let v: serde_json::Value = serde_json::from_str(rec["value"].as_str().unwrap()).unwrap();
        let (person, auction) = (&v["left"], &v["right"]);
        assert_eq!(person["id"], auction["seller"], "{rec}");
        assert_eq!(rec["key"], person["id"].to_string(), "{rec}");
    }
}

#[tokio::test]
async fn join_errors_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    write_people_and_auctions(dir.path());
    let job = |op: &str| {
        format!(
            r#"
[[sources]]
name = "people"
kind = "file"
path = "people.jsonl"
[[sources]]
name = "auctions"
kind = "file"
path = "auctions.jsonl"
[[operators]]
{op}
[[sinks]]
kind = "discard"
"#
        )
    };
    let cases = [
        (
            r#"builtin = "join"
config = { left = "people", right = "bids", window = "tumbling", length = "1s" }"#,
            "field `operators[0].config.right`: no source or earlier join is called \"bids\" (known streams: \"people\", \"auctions\")",
        ),
        (
            r#"builtin = "join"
config = { left = "people", right = "auctions" }"#,
            "field `operators[0].config.window`: required",
        ),
        (
            r#"builtin = "join"
config = { left = "people", right = "auctions", window = "session", gap = "1s" }"#,
            "field `operators[0].config.window`: a join needs tumbling or sliding windows",
        ),
        (
            r#"builtin = "count"
input = "people2""#,
            "field `operators[0].input`: no source or earlier join is called \"people2\"",
        ),
        (
            r#"name = "people"
builtin = "join"
config = { left = "people", right = "auctions", window = "tumbling", length = "1s" }"#,
            "field `operators[0].name`: a join's output is the stream \"people\"",
        ),
    ];
    for (op, want) in cases {
        let err = run_job(dir.path(), &job(op)).await.unwrap_err().to_string();
        assert!(err.contains(want), "{op}\n got: {err}\nwant: {want}");
    }
}

/// The last batch of a job is passed to the join once per stream: records
/// of the second stream in it must still meet those of the first, which
/// once were forgotten at the end of the input. Here the whole input is that
/// one batch (the interval outlasts it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_streams_of_the_last_batch_still_pair() {
    let dir = tempfile::tempdir().unwrap();
    write_people_and_auctions(dir.path());
    let toml = format!(
        r#"
[batch]
interval = "1h"
[[sources]]
name = "people"
kind = "file"
path = "people.jsonl"
[[sources]]
name = "auctions"
kind = "file"
path = "auctions.jsonl"
[[operators]]
input = "people"
name = "person-by-id"
plugin = {json}
config = {{ field = "id" }}
[[operators]]
input = "auctions"
name = "auction-by-seller"
plugin = {json}
config = {{ field = "seller" }}
[[operators]]
builtin = "join"
config = {{ left = "people", right = "auctions", window = "tumbling", length = "1h", time = "processing" }}
[[sinks]]
kind = "jsonl"
path = "out.jsonl"
"#,
        json = lit(guests::JSON_FIELD)
    );
    let summary = run_job(dir.path(), &toml).await.unwrap();
    assert_eq!((summary.records_in, summary.batches), (70, 1));
    // Persons 0..19 each sold two auctions.
    assert_eq!(read_jsonl(&dir.path().join("out.jsonl")).len(), 40);
}
