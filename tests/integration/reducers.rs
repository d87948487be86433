//! Wasm keyed reducers (`reducer = "sluice_plugin_sum.wasm"`) in real jobs: the same
//! per-key results as the built-in `aggregate` and a plain reference
//! computation, at any worker count and in both modes; rejected values reach
//! the dead-letter file with the reducer's reason; a trap loses no state; a
//! component of the wrong world and records without keys are refused clearly.

use crate::{lit, read_jsonl, run_job};
use sluice::exec::JobError;
use sluice_tests::guests;
use std::collections::BTreeMap;
use std::path::Path;

/// Lines of 1 to 6 integers (from a pool of 41, some negative, some padded
/// with `+`), deterministic.
fn numbers(lines: usize) -> Vec<String> {
    let mut state = 2024u64;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as i64
    };
    (0..lines)
        .map(|_| {
            let n = 1 + next() % 6;
            (0..n)
                .map(|_| (next() % 41 - 20).to_string())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// What split-words then a sum per key give: each word is its own key and
/// value, so a key's sum is the number times its occurrences.
fn reference(lines: &[String]) -> BTreeMap<String, String> {
    let mut sums: BTreeMap<String, i64> = BTreeMap::new();
    for word in lines.iter().flat_map(|l| l.split_whitespace()) {
        *sums.entry(word.to_string()).or_default() += word.parse::<i64>().unwrap();
    }
    sums.into_iter().map(|(k, v)| (k, v.to_string())).collect()
}

/// `(key, value)` of every output record, in file order.
fn rows(path: &Path) -> Vec<(String, String)> {
    read_jsonl(path)
        .iter()
        .map(|r| {
            (
                r["key"].as_str().expect("keyed output").to_string(),
                r["value"].as_str().expect("text value").to_string(),
            )
        })
        .collect()
}

/// The last value written for each key.
fn last_per_key(rows: &[(String, String)]) -> BTreeMap<String, String> {
    rows.iter().cloned().collect()
}

/// A job reading `input.txt` from `dir`, splitting it into words and running
/// `op` over them, writing `out` (and `dead` as dead-letter file, if given).
fn words_job(workers: usize, batch: usize, op: &str, out: &Path, dead: Option<&Path>) -> String {
    let dead = dead
        .map(|d| format!("[dead_letter]\npath = {}\n", lit(d.to_str().unwrap())))
        .unwrap_or_default();
    format!(
        r#"
workers = {workers}
{dead}
[batch]
max_records = {batch}

[[sources]]
kind = "file"
path = "input.txt"

[[operators]]
plugin = {split}

[[operators]]
{op}

[[sinks]]
kind = "jsonl"
path = {out}
"#,
        split = lit(guests::SPLIT_WORDS),
        out = lit(out.to_str().unwrap()),
    )
}

fn write_input(dir: &Path, lines: &[String]) {
    std::fs::write(dir.join("input.txt"), lines.join("\n") + "\n").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sum_reducer_matches_aggregate_and_reference_in_both_modes() {
    let dir = tempfile::tempdir().unwrap();
    let lines = numbers(600);
    write_input(dir.path(), &lines);
    let want = reference(&lines);
    assert!(want.len() > 30, "{} keys", want.len());

    for workers in [1, 2] {
        // Built-in aggregate, for comparison.
        let agg_out = dir.path().join(format!("agg-{workers}.jsonl"));
        let op = "builtin = \"aggregate\"\nconfig = { function = \"sum\" }";
        run_job(dir.path(), &words_job(workers, 50, op, &agg_out, None))
            .await
            .unwrap();
        let aggregate = last_per_key(&rows(&agg_out));
        assert_eq!(aggregate, want, "aggregate at {workers} worker(s)");

        // Update mode: each batch emits the keys it touched.
        let out = dir.path().join(format!("update-{workers}.jsonl"));
        let op = format!("reducer = {}", lit(guests::SUM));
        let summary = run_job(dir.path(), &words_job(workers, 50, &op, &out, None))
            .await
            .unwrap();
        assert!(summary.batches >= 10, "{summary}");
        let update = rows(&out);
        assert_eq!(last_per_key(&update), want, "update at {workers} worker(s)");
        let words: usize = lines.iter().map(|l| l.split_whitespace().count()).sum();
        assert!(
            update.len() > want.len() && update.len() < words,
            "update mode emits touched keys per batch: {} rows for {} keys, {words} words",
            update.len(),
            want.len()
        );

        // Complete mode: every key after every batch, sorted per partition.
        let out = dir.path().join(format!("complete-{workers}.jsonl"));
        let op = format!("reducer = {}\nmode = \"complete\"", lit(guests::SUM));
        run_job(dir.path(), &words_job(workers, 50, &op, &out, None))
            .await
            .unwrap();
        let complete = rows(&out);
        assert_eq!(
            last_per_key(&complete),
            want,
            "complete at {workers} worker(s)"
        );
        let last_batch = &complete[complete.len() - want.len()..];
        assert_eq!(
            last_batch.iter().cloned().collect::<BTreeMap<_, _>>(),
            want,
            "the last batch holds every key once"
        );
        if workers == 1 {
            let keys: Vec<&String> = last_batch.iter().map(|(k, _)| k).collect();
            assert!(keys.is_sorted(), "{keys:?}");
        }
        assert!(complete.len() >= 10 * want.len() / 2, "{}", complete.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_values_reach_the_dead_letter_file_and_the_rest_is_summed() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = numbers(200);
    // A non-number among numbers, and a value that overflows its key's total
    // (the first occurrence fits, the second does not).
    lines[37] = format!("3 -4 abc {}", lines[37]);
    lines[90] = format!("{} 7 9223372036854775807", lines[90]);
    lines[150] = format!("9223372036854775807 {}", lines[150]);
    write_input(dir.path(), &lines);
    let out = dir.path().join("out.jsonl");
    let dead = dir.path().join("dead.jsonl");
    let op = format!("name = \"total\"\nreducer = {}", lit(guests::SUM));
    let summary = run_job(dir.path(), &words_job(2, 40, &op, &out, Some(&dead)))
        .await
        .unwrap();
    assert_eq!(summary.dead_lettered, 2, "{summary}");

    let dead = read_jsonl(&dead);
    let by_value: BTreeMap<&str, &serde_json::Value> = dead
        .iter()
        .map(|d| (d["value"].as_str().unwrap(), d))
        .collect();
    let abc = by_value["abc"];
    assert_eq!(abc["operator"], "total");
    assert_eq!(abc["key"], "abc");
    let reason = abc["reason"].as_str().unwrap();
    assert!(
        reason.contains("value \"abc\" is not a decimal integer"),
        "{reason}"
    );
    let reason = by_value["9223372036854775807"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("\"9223372036854775807\" would overflow the total 9223372036854775807"),
        "{reason}"
    );

    let numbers_only: Vec<String> = lines.iter().map(|l| l.replace("abc", "")).collect();
    assert_eq!(last_per_key(&rows(&out)), reference_with_max(&numbers_only));
}

/// [`reference`] for lines holding `i64::MAX` twice: the first occurrence is
/// the key's total, the second overflows and is rejected.
fn reference_with_max(lines: &[String]) -> BTreeMap<String, String> {
    let max = i64::MAX.to_string();
    let rest: Vec<String> = lines.iter().map(|l| l.replace(&max, "")).collect();
    let mut want = reference(&rest);
    want.insert(max.clone(), max);
    want
}

#[tokio::test]
async fn a_component_of_the_wrong_world_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    write_input(dir.path(), &numbers(3));
    let out = dir.path().join("out.jsonl");

    let op = format!("name = \"x\"\nreducer = {}", lit(guests::UPPERCASE));
    let err = run_job(dir.path(), &words_job(1, 10, &op, &out, None))
        .await
        .unwrap_err();
    assert!(matches!(err, JobError::Load { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "operator `x`: field `reducer`: {} implements the `transform` world, not `reduce`; \
             a reducer must export `sluice:operator/reducer@0.2.0`",
            guests::UPPERCASE
        )),
        "{msg}"
    );

    let op = format!("name = \"y\"\nplugin = {}", lit(guests::SUM));
    let msg = run_job(dir.path(), &words_job(1, 10, &op, &out, None))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        msg.starts_with(&format!(
            "operator `y`: field `plugin`: {} implements the `reduce` world, not `transform`; \
             a plugin must export `sluice:operator/transformer@0.2.0`",
            guests::SUM
        )),
        "{msg}"
    );
    assert!(msg.contains("as `reducer = `"), "{msg}");
}

#[tokio::test]
async fn records_without_keys_are_rejected_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    write_input(dir.path(), &["1".to_string(), "2".to_string()]);
    let out = dir.path().join("out.jsonl");
    let job = |extra: &str| {
        format!(
            "{extra}\n[[sources]]\nkind = \"file\"\npath = \"input.txt\"\n\
             [[operators]]\nreducer = {}\n[[sinks]]\nkind = \"jsonl\"\npath = {}\n",
            lit(guests::SUM),
            lit(out.to_str().unwrap())
        )
    };
    let err = run_job(dir.path(), &job("")).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, JobError::Rejected { .. })
            && msg.contains("operator `sluice_plugin_sum` rejected record 0")
            && msg.contains("the record has no key")
            && msg.contains("set keys upstream"),
        "{msg}"
    );

    let dead = dir.path().join("dead.jsonl");
    let summary = run_job(
        dir.path(),
        &job(&format!(
            "[dead_letter]\npath = {}",
            lit(dead.to_str().unwrap())
        )),
    )
    .await
    .unwrap();
    assert_eq!(summary.dead_lettered, 2, "{summary}");
    assert_eq!(summary.records_out, 0, "{summary}");
    let dead = read_jsonl(&dead);
    assert!(dead[0]["reason"].as_str().unwrap().contains("no key"));
}

/// A trap loses no state: the accumulators live in the host, the instance is
/// re-created, and the batch that trapped goes to the dead-letter file.
#[tokio::test]
async fn a_trap_keeps_the_accumulators() {
    let dir = tempfile::tempdir().unwrap();
    write_input(
        dir.path(),
        &["a a".to_string(), "b BOOM a".to_string(), "a b".to_string()],
    );
    let out = dir.path().join("out.jsonl");
    let dead = dir.path().join("dead.jsonl");
    let op = format!("name = \"counts\"\nreducer = {}", lit(guests::REDUCE_TRAP));
    let summary = run_job(dir.path(), &words_job(1, 1, &op, &out, Some(&dead)))
        .await
        .unwrap();
    assert_eq!(summary.dead_lettered, 3, "{summary}");
    let dead = read_jsonl(&dead);
    let reason = dead[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("trapped") && reason.contains("BOOM among the values of key"),
        "{reason}"
    );
    // "a" counts 2 before the trap and 1 after it; the trapped batch is gone.
    assert_eq!(
        rows(&out),
        [
            ("a".to_string(), "2".to_string()),
            ("a".to_string(), "3".to_string()),
            ("b".to_string(), "1".to_string()),
        ]
    );
}

#[test]
fn plugin_check_reports_the_reduce_world() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice-under-test"))
        .env(
            "SLUICE_CACHE_DIR",
            std::env::temp_dir().join("sluice-test-cache"),
        )
        .args(["plugin", "check", guests::SUM])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("implements world `reduce` of sluice:operator@0.2.0"),
        "{stdout}"
    );
}
