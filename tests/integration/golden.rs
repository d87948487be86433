//! One input through one job at several worker counts and batch sizes must
//! give the same multiset of outputs — and, with one worker and partition,
//! exactly the reference output in order.

use crate::{lit, read_jsonl, run_job};
use sluice_sdk::Batch;
use sluice_sdk::testing::Harness;
use sluice_tests::guests;

fn corpus() -> Vec<String> {
    let words = [
        "alpha", "beta", "gamma", "delta", "echo", "fox", "oak", "aura", "zeta", "queue",
    ];
    let mut state = 12345u64;
    (0..2000)
        .map(|i| {
            if i % 97 == 0 {
                return String::new();
            }
            let n = 1 + (i % 7);
            (0..n)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    words[(state >> 33) as usize % words.len()]
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// The same chain run natively through the plugins' own code, one batch.
fn reference(lines: &[String]) -> Vec<(String, String)> {
    let input = Batch::from_values(lines, 0);
    let mut up = Harness::<sluice_plugin_uppercase::Uppercase>::new(&[]).unwrap();
    let mut grep =
        Harness::<sluice_plugin_grep::Grep>::new(&[("pattern", "[AEIOU]{2}|FOX")]).unwrap();
    let mut split =
        Harness::<sluice_plugin_split_words::SplitWords>::new(&[("lowercase", "true")]).unwrap();
    let out = split
        .run(&grep.run(&up.run(&input).unwrap()).unwrap())
        .unwrap();
    out.iter()
        .map(|r| {
            (
                String::from_utf8(r.key.unwrap().to_vec()).unwrap(),
                String::from_utf8(r.value.to_vec()).unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_output_at_any_worker_count_and_batch_size() {
    let dir = tempfile::tempdir().unwrap();
    let lines = corpus();
    let input = dir.path().join("input.txt");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let want = reference(&lines);
    assert!(
        want.len() > 1000,
        "the reference must exercise the job: {} records",
        want.len()
    );
    let mut want_sorted = want.clone();
    want_sorted.sort();

    for workers in [1, 2, 4] {
        for batch in [1, 100, 10_000] {
            let out = dir.path().join(format!("out-{workers}-{batch}.jsonl"));
            let summary = run_job(
                dir.path(),
                &format!(
                    r#"
workers = {workers}
[batch]
max_records = {batch}
[[sources]]
kind = "file"
path = {input}
[[operators]]
plugin = {up}
[[operators]]
plugin = {grep}
config = {{ pattern = "[AEIOU]{{2}}|FOX" }}
[[operators]]
plugin = {split}
config = {{ lowercase = true }}
[[sinks]]
kind = "jsonl"
path = {out}
"#,
                    input = lit(input.to_str().unwrap()),
                    up = lit(guests::UPPERCASE),
                    grep = lit(guests::GREP),
                    split = lit(guests::SPLIT_WORDS),
                    out = lit(out.to_str().unwrap()),
                ),
            )
            .await
            .unwrap_or_else(|e| panic!("workers={workers} batch={batch}: {e}"));
            assert_eq!(summary.records_in, lines.len() as u64);
            assert_eq!(summary.records_out, want.len() as u64);
            let got: Vec<(String, String)> = read_jsonl(&out)
                .into_iter()
                .map(|v| {
                    (
                        v["key"].as_str().unwrap().to_string(),
                        v["value"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            if workers == 1 {
                assert_eq!(
                    got, want,
                    "one worker, one partition keeps input order (batch {batch})"
                );
            }
            let mut got = got;
            got.sort();
            assert_eq!(got, want_sorted, "workers={workers} batch={batch}");
            let expected_batches = lines.len().div_ceil(batch) as u64;
            assert_eq!(
                summary.batches, expected_batches,
                "workers={workers} batch={batch}"
            );
        }
    }
}

/// Order is kept within each partition: with a per-record sequence number in
/// the value, every partition's output must be increasing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_within_partition_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("seq.txt");
    let lines: Vec<String> = (0..5000)
        .map(|i| format!("{i:06} {}", ["a", "b", "c"][i % 3]))
        .collect();
    std::fs::write(&input, lines.join("\n")).unwrap();
    let out = dir.path().join("out");
    run_job(
        dir.path(),
        &format!(
            "workers = 3\npartitions = 3\n[batch]\nmax_records = 700\n[[sources]]\nkind = \"file\"\npath = {}\n[[operators]]\nplugin = {}\n[[sinks]]\nkind = \"directory\"\npath = {}\n",
            lit(input.to_str().unwrap()),
            lit(guests::UPPERCASE),
            lit(out.to_str().unwrap())
        ),
    )
    .await
    .unwrap();
    let mut files: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 5000usize.div_ceil(700));
    let mut all = Vec::new();
    for f in &files {
        let recs = read_jsonl(f);
        // The sink writes a batch's partitions one after another, so the
        // file is 3 increasing runs: at most 2 descents if order is kept.
        let seqs: Vec<u64> = recs
            .iter()
            .map(|v| v["value"].as_str().unwrap()[..6].parse().unwrap())
            .collect();
        let descents = seqs.windows(2).filter(|w| w[0] > w[1]).count();
        assert!(
            descents <= 2,
            "partition order broken in {}: {descents} descents",
            f.display()
        );
        all.extend(seqs);
    }
    all.sort();
    assert_eq!(all, (0..5000).collect::<Vec<u64>>());
}
