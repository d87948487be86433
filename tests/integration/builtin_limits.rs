//! The keyed state the host holds for built-in operators and reducers is
//! bounded by `[limits]`: a join's cartesian output by `join_output`, the
//! totals of `aggregate`, the buffers of `join` and the accumulators of a
//! reducer by `state`. A breach stops the job naming the limit (`fail`), or
//! sets aside exactly the records that did not fit (`skip`, `dead-letter`)
//! while everything else comes out as a plain reference computes it.

use crate::{lit, read_jsonl, run_job};
use sluice::exec::JobError;
use sluice::operators::OperatorError;
use sluice::spec::limits::Limit;
use sluice_tests::guests;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Checks that `err` is a breach of `limit` = `value` by `operator`.
fn assert_breach(err: &JobError, operator: &str, limit: Limit, value: &str) {
    let msg = err.to_string();
    match err {
        JobError::Operator {
            operator: o,
            error: OperatorError::Limit {
                limit: l, value: v, ..
            },
            ..
        } => assert_eq!(
            (o.as_str(), *l, v.as_str()),
            (operator, limit, value),
            "{msg}"
        ),
        other => panic!("expected a breach of `{limit}`, got {other:?}"),
    }
    assert!(
        msg.contains(&format!("limit `{limit}` = {value} exceeded")),
        "{msg}"
    );
}

/// `(value, reason)` of every dead letter in `dir`'s `dead.jsonl`, in order.
fn dead_letters(dir: &Path) -> Vec<(String, String)> {
    read_jsonl(&dir.join("dead.jsonl"))
        .iter()
        .map(|d| {
            (
                d["value"].as_str().unwrap().to_string(),
                d["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The `[limits]` and `[dead_letter]` tables for `policy` with `caps`.
fn limits(caps: &str, policy: &str) -> String {
    let dead = if policy == "dead-letter" {
        "[dead_letter]\npath = \"dead.jsonl\"\n"
    } else {
        ""
    };
    format!("[limits]\n{caps}\non_breach = \"{policy}\"\n{dead}")
}

// ---- join ----------------------------------------------------------------

/// `{"k":"a","v":"<tag><i>"}` lines: `n` records, all of key `a`.
fn same_key(tag: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{{\"k\":\"a\",\"v\":\"{tag}{i}\"}}"))
        .collect()
}

/// A job joining `left.jsonl` with `right.jsonl` by their field `k` in one
/// processing-time window, the whole input in one micro-batch (the interval
/// outlasts the input), into `out.jsonl`; `tables` adds `[limits]` and more.
fn join_job(dir: &Path, left: &[String], right: &[String], tables: &str) -> String {
    std::fs::write(dir.join("left.jsonl"), left.join("\n") + "\n").unwrap();
    std::fs::write(dir.join("right.jsonl"), right.join("\n") + "\n").unwrap();
    format!(
        r#"
workers = 2
[batch]
interval = "1h"
[[sources]]
name = "left"
kind = "file"
path = "left.jsonl"
[[sources]]
name = "right"
kind = "file"
path = "right.jsonl"
[[operators]]
name = "left-by-k"
input = "left"
plugin = {json}
config = {{ field = "k" }}
[[operators]]
name = "right-by-k"
input = "right"
plugin = {json}
config = {{ field = "k" }}
[[operators]]
name = "pairs"
builtin = "join"
config = {{ left = "left", right = "right", window = "tumbling", length = "1h", time = "processing" }}
[[sinks]]
kind = "jsonl"
path = "out.jsonl"
{tables}
"#,
        json = lit(guests::JSON_FIELD)
    )
}

/// `(left v, right v)` of every joined record in `dir`'s `out.jsonl`, sorted.
fn joined(dir: &Path) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = read_jsonl(&dir.join("out.jsonl"))
        .iter()
        .map(|rec| {
            let v: serde_json::Value =
                serde_json::from_str(rec["value"].as_str().unwrap()).unwrap();
            (
                v["left"]["v"].as_str().unwrap().to_string(),
                v["right"]["v"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    pairs.sort();
    pairs
}

/// The value of field `v` of a `same_key` line.
fn v_of(line: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    v["v"].as_str().unwrap().to_string()
}

/// A join of 30 × 40 records of one key in one window asks for 1,200 pairs;
/// `join_output = 100` lets `sluice run` fail on it, naming the limit, and
/// write none of the batch.
#[test]
fn a_cartesian_join_past_join_output_fails_the_run_naming_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let toml = join_job(
        dir.path(),
        &same_key("l", 30),
        &same_key("r", 40),
        &limits("join_output = 100", "fail"),
    );
    let job = sluice_tests::write_job(dir.path(), "job.toml", &toml);
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-under-test"))
        .env(
            "SLUICE_CACHE_DIR",
            std::env::temp_dir().join("sluice-test-cache"),
        )
        .args(["run", "--quiet", job.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("operator `pairs` failed on worker")
            && stderr.contains("limit `join_output` = 100 exceeded: a record of key \"a\" would add 30 pair(s) to the 90 record(s)"),
        "{stderr}"
    );
    assert!(joined(dir.path()).is_empty());
}

/// Under `dead-letter` and `skip`, the right records whose 30 pairs would
/// take the batch's output past 100 are set aside whole; the output holds
/// every pair of the others, as a nested loop with the same cap gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cartesian_join_past_join_output_sets_aside_the_records_that_do_not_fit() {
    let (left, right) = (same_key("l", 30), same_key("r", 40));
    // Left records come first in the batch and meet no right one; then
    // each right record meets all 30: it is taken while its pairs fit.
    let mut want = Vec::new();
    let mut refused = Vec::new();
    for r in &right {
        if want.len() + left.len() <= 100 {
            want.extend(left.iter().map(|l| (v_of(l), v_of(r))));
        } else {
            refused.push(r.clone());
        }
    }
    want.sort();
    assert_eq!((want.len(), refused.len()), (90, 37));
    for policy in ["dead-letter", "skip"] {
        let dir = tempfile::tempdir().unwrap();
        let toml = join_job(
            dir.path(),
            &left,
            &right,
            &limits("join_output = 100", policy),
        );
        let summary = run_job(dir.path(), &toml).await.unwrap();
        assert_eq!(joined(dir.path()), want, "{policy}");
        assert_eq!(summary.records_out, 90, "{policy}");
        if policy == "skip" {
            assert_eq!((summary.skipped, summary.dead_lettered), (37, 0));
            continue;
        }
        assert_eq!((summary.skipped, summary.dead_lettered), (0, 37));
        let dead = dead_letters(dir.path());
        let values: Vec<&String> = dead.iter().map(|(v, _)| v).collect();
        assert_eq!(values, refused.iter().collect::<Vec<_>>());
        for (_, reason) in &dead {
            assert!(
                reason.starts_with(
                    "operator set this record aside: limit `join_output` = 100 exceeded"
                ),
                "{reason}"
            );
        }
    }
}

/// A join's buffered records count against `state`: with 8 KiB, the ten
/// left records fit and then right records until the buffers are full;
/// the rest of the right records are set aside in order, and the output is
/// exactly the pairs of the records kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_buffers_past_the_state_limit_set_aside_the_records_that_do_not_fit() {
    let (left, right) = (same_key("l", 10), same_key("r", 200));
    let dir = tempfile::tempdir().unwrap();
    let toml = join_job(
        dir.path(),
        &left,
        &right,
        &limits("state = \"8KiB\"", "fail"),
    );
    let err = run_job(dir.path(), &toml).await.unwrap_err();
    assert_breach(&err, "pairs", Limit::State, "8 KiB");

    let dir = tempfile::tempdir().unwrap();
    let toml = join_job(
        dir.path(),
        &left,
        &right,
        &limits("state = \"8KiB\"", "dead-letter"),
    );
    let summary = run_job(dir.path(), &toml).await.unwrap();
    let dead = dead_letters(dir.path());
    // Every record is some 100 bytes of state: tens of them fit in 8 KiB.
    let kept = right.len() - dead.len();
    assert!((20..100).contains(&kept), "{kept} right records kept");
    let values: Vec<&String> = dead.iter().map(|(v, _)| v).collect();
    assert_eq!(values, right[kept..].iter().collect::<Vec<_>>());
    assert!(
        dead.iter().all(|(_, reason)| reason
            .contains("limit `state` = 8 KiB exceeded: buffering a record of key \"a\"")),
        "{dead:?}"
    );
    let mut want: Vec<(String, String)> = left
        .iter()
        .flat_map(|l| right[..kept].iter().map(|r| (v_of(l), v_of(r))))
        .collect();
    want.sort();
    assert_eq!(joined(dir.path()), want);
    assert_eq!(summary.records_out as usize, want.len());
}

// ---- aggregate and reducer -----------------------------------------------

/// A job splitting `input.txt` into words (each word its own key and value)
/// and running `op` over them on one worker, 50 words a batch, into
/// `out.jsonl`.
fn words_job(dir: &Path, words: &[String], op: &str, tables: &str) -> String {
    std::fs::write(dir.join("input.txt"), words.join("\n") + "\n").unwrap();
    format!(
        r#"
workers = 1
[batch]
max_records = 50
[[sources]]
kind = "file"
path = "input.txt"
[[operators]]
plugin = {split}
[[operators]]
name = "agg"
{op}
[[sinks]]
kind = "jsonl"
path = "out.jsonl"
{tables}
"#,
        split = lit(guests::SPLIT_WORDS)
    )
}

/// The last value written for each key of `dir`'s `out.jsonl`.
fn last_per_key(dir: &Path) -> BTreeMap<String, String> {
    read_jsonl(&dir.join("out.jsonl"))
        .iter()
        .map(|r| {
            (
                r["key"].as_str().unwrap().to_string(),
                r["value"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// What a keyed fold held to room for `room` keys gives: the first `room`
/// distinct words are kept (folded with `fold`), every occurrence of any
/// other word is set aside, in order.
fn first_keys_fit(
    words: &[String],
    room: usize,
    fold: impl Fn(Option<&String>, &str) -> String,
) -> (BTreeMap<String, String>, Vec<String>) {
    let mut kept: BTreeMap<String, String> = BTreeMap::new();
    let mut order: Vec<&String> = Vec::new();
    let mut refused = Vec::new();
    for w in words {
        if !order.contains(&w) && order.len() < room {
            order.push(w);
        }
        if order.contains(&w) {
            let next = fold(kept.get(w), w);
            kept.insert(w.clone(), next);
        } else {
            refused.push(w.clone());
        }
    }
    (kept, refused)
}

/// 200 distinct four-letter words, each one to three times, mixed.
fn many_words() -> Vec<String> {
    let mut words = Vec::new();
    for round in 0..3 {
        for i in 0..200 {
            if i % 3 >= round {
                words.push(format!("w{:03}", (i * 7) % 200));
            }
        }
    }
    words
}

/// `aggregate` keeps a total per key in host memory. With `state = 4KiB`
/// there is room for 35 totals of four-byte keys (each 4 key bytes, 48 of
/// accumulator, 64 of overhead): `fail` stops the job naming the limit;
/// `dead-letter` and `skip` set aside every record of the other keys — the
/// records themselves, not combined counts — and count the rest exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aggregate_over_many_keys_is_held_to_the_state_limit() {
    let words = many_words();
    let (want, refused) = first_keys_fit(&words, 4096 / (4 + 48 + 64), |n, _| {
        (n.map_or(0, |n| n.parse::<u64>().unwrap()) + 1).to_string()
    });
    assert_eq!(want.len(), 35);
    let op = "builtin = \"aggregate\"\nconfig = { function = \"count\" }";

    let dir = tempfile::tempdir().unwrap();
    let toml = words_job(dir.path(), &words, op, &limits("state = \"4KiB\"", "fail"));
    let err = run_job(dir.path(), &toml).await.unwrap_err();
    assert_breach(&err, "agg", Limit::State, "4 KiB");

    for policy in ["dead-letter", "skip"] {
        let dir = tempfile::tempdir().unwrap();
        let toml = words_job(dir.path(), &words, op, &limits("state = \"4KiB\"", policy));
        let summary = run_job(dir.path(), &toml).await.unwrap();
        assert_eq!(last_per_key(dir.path()), want, "{policy}");
        if policy == "skip" {
            assert_eq!(summary.skipped as usize, refused.len());
            continue;
        }
        let dead = dead_letters(dir.path());
        let values: Vec<&String> = dead.iter().map(|(v, _)| v).collect();
        assert_eq!(values, refused.iter().collect::<Vec<_>>());
        assert!(
            dead[0].1.starts_with(
                "operator set this record aside: limit `state` = 4 KiB exceeded: a new total for key"
            ),
            "{}",
            dead[0].1
        );
    }
}

/// A reducer's accumulators are held by the host, outside the instance's
/// `memory`: `state` bounds them. With 1 KiB there is room for 14 keys of
/// three digits with three-digit totals (3 + 3 + 64 bytes each); the
/// records of the other keys are set aside, and the kept keys' totals are
/// right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reducer_is_held_to_the_state_limit() {
    // 30 numbers, twice over: every total stays three digits long.
    let words: Vec<String> = (0..60).map(|i| (100 + i % 30).to_string()).collect();
    let (want, refused) = first_keys_fit(&words, 1024 / (3 + 3 + 64), |total, w| {
        (total.map_or(0, |t| t.parse::<i64>().unwrap()) + w.parse::<i64>().unwrap()).to_string()
    });
    assert_eq!((want.len(), refused.len()), (14, 32));
    let op = format!("reducer = {}", lit(guests::SUM));

    let dir = tempfile::tempdir().unwrap();
    let toml = words_job(dir.path(), &words, &op, &limits("state = \"1KiB\"", "fail"));
    let err = run_job(dir.path(), &toml).await.unwrap_err();
    assert_breach(&err, "agg", Limit::State, "1 KiB");

    let dir = tempfile::tempdir().unwrap();
    let toml = words_job(
        dir.path(),
        &words,
        &op,
        &limits("state = \"1KiB\"", "dead-letter"),
    );
    let summary = run_job(dir.path(), &toml).await.unwrap();
    assert_eq!(last_per_key(dir.path()), want);
    assert_eq!(summary.dead_lettered as usize, refused.len());
    let dead = dead_letters(dir.path());
    let values: Vec<&String> = dead.iter().map(|(v, _)| v).collect();
    assert_eq!(values, refused.iter().collect::<Vec<_>>());
    assert!(
        dead[0]
            .1
            .contains("limit `state` = 1 KiB exceeded: the accumulator of new key \"114\""),
        "{}",
        dead[0].1
    );
}
