//! Fuzzing the parts that read what users, tenants and guests hand the
//! host: the job-file parser and validator, the server's vetting of a
//! tenant's job, the validator of batches returned by guests, the line
//! splitting of the line sources and the JSON-lines samples of `sluice
//! plugin test`. Each target runs for a time budget, `SLUICE_FUZZ_SECONDS`
//! (default 30 s, as in CI; set it to 600 for a long run), on inputs drawn
//! by proptest, and must neither panic nor hang; the line splitter must also
//! agree with a plain split.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use sluice::cli::plugin::sample::{SampleFormat, read_sample};
use sluice::exec::Job;
use sluice::model::batch::Batch;
use sluice::operators::registry::BUILTINS;
use sluice::serve::spec::{Places, vet};
use sluice::serve::tenant::Tenant;
use sluice::sink::CollectSink;
use sluice::spec::{JobConfig, SourceConfig};
use std::path::Path;
use std::time::{Duration, Instant};

fn budget() -> Duration {
    let secs = std::env::var("SLUICE_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    Duration::from_secs(secs)
}

/// Runs `check` on values of `strategy` until the budget is spent; a panic
/// is reported with the input that caused it.
fn fuzz<T: std::fmt::Debug + Clone + std::panic::RefUnwindSafe>(
    name: &str,
    strategy: impl Strategy<Value = T>,
    check: impl Fn(&T) + std::panic::RefUnwindSafe,
) {
    let deadline = Instant::now() + budget();
    let mut runner = TestRunner::deterministic();
    let mut cases = 0u64;
    while Instant::now() < deadline {
        let value = strategy.new_tree(&mut runner).unwrap().current();
        if let Err(panic) = std::panic::catch_unwind(|| check(&value)) {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("fuzz {name}: panicked on {value:?}: {message}");
        }
        cases += 1;
    }
    eprintln!("fuzz {name}: {cases} cases in {:?}", budget());
    assert!(cases > 0);
}

/// Values that have broken parsers before: extremes of time and size,
/// zeros, negatives, empty and odd strings.
const ODD_VALUES: &[&str] = &[
    "0",
    "-1",
    "\"\"",
    "\"0s\"",
    "\"0ms\"",
    "\"1ms\"",
    "\"100h\"",
    "\"9223372036854775807ms\"",
    "\"1e308s\"",
    "\"NaNs\"",
    "\"-5s\"",
    "9223372036854775807",
    "18446744073709551615",
    "1e999",
    "\"../../etc/passwd\"",
    "\"/etc/shadow\"",
    "\"10.0.0.7:9092\"",
    "\"sliding\"",
    "\"session\"",
    "\"dead-letter\"",
    "true",
    "[]",
    "{}",
    "\"4GiB\"",
    "\"1KiB\"",
];

/// Lines that, added anywhere, make a job file interesting.
const ODD_LINES: &[&str] = &[
    "[[operators]]",
    "builtin = \"aggregate\"",
    "builtin = \"join\"",
    "builtin = \"count\"",
    "config = { function = \"count\", window = \"sliding\", length = \"100h\", slide = \"1ms\" }",
    "config = { left = \"a\", right = \"a\", window = \"tumbling\", length = \"1s\" }",
    "config = { function = \"sum\", window = \"session\", gap = \"0s\", max_future = \"1h\" }",
    "[[sources]]",
    "kind = \"kafka\"",
    "kind = \"socket\"",
    "[[sinks]]",
    "kind = \"kafka\"",
    "delivery = \"exactly-once\"",
    "[limits]",
    "memory = \"1GiB\"",
    "on_breach = \"dead-letter\"",
    "[dead_letter]",
    "path = \"d.jsonl\"",
    "[batch]",
    "max_bytes = \"1KiB\"",
    "input = \"nowhere\"",
    "name = \"\"",
];

/// A job file: one of the examples, changed a few times.
fn job_files() -> impl Strategy<Value = String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut examples: Vec<String> = std::fs::read_dir(&dir)
        .expect("examples")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| std::fs::read_to_string(p).expect("example"))
        .collect();
    examples.sort();
    let edits = proptest::collection::vec(
        (
            0u8..4,
            any::<prop::sample::Index>(),
            any::<prop::sample::Index>(),
        ),
        1..6,
    );
    (prop::sample::select(examples), edits, ".{0,40}").prop_map(|(text, edits, noise)| {
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        for (op, at, pick) in edits {
            if lines.is_empty() {
                lines.push(String::new());
            }
            let i = at.index(lines.len());
            match op {
                // A value replaced by an odd one.
                0 => {
                    if let Some((key, _)) = lines[i].split_once('=') {
                        lines[i] = format!("{key}= {}", pick.get(ODD_VALUES));
                    }
                }
                1 => {
                    lines.remove(i);
                }
                2 => lines.insert(i, pick.get(ODD_LINES).to_string()),
                _ => lines.insert(i, noise.clone()),
            }
        }
        lines.join("\n")
    })
}

#[test]
fn fuzz_the_job_file_parser_and_validator() {
    fuzz(
        "job file",
        prop_oneof![
            job_files(),
            ".{0,300}",
            any::<Vec<u8>>().prop_map(|b| String::from_utf8_lossy(&b).into_owned())
        ],
        |text| {
            let _ = JobConfig::from_str(text, Path::new("job.toml"), &BUILTINS);
        },
    );
}

#[test]
fn fuzz_the_servers_vetting_of_tenant_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let places = Places {
        plugins: dir.path().join("plugins"),
        files: dir.path().join("files"),
        dead_letter: dir.path().join("dead.jsonl"),
        job: "acme/1".into(),
    };
    let tenant = Tenant {
        name: "acme".into(),
        token_sha256: [0; 32],
        max_jobs: 2,
        max_workers: 2,
        max_partitions: 4,
        limits: Default::default(),
    };
    let tenant = std::panic::AssertUnwindSafe(tenant);
    fuzz("vetting", prop_oneof![job_files(), ".{0,300}"], |text| {
        let _ = vet(text, &tenant, &places);
    });
}

/// A batch as a guest might return it: columns of any lengths and ends.
fn guest_batches() -> impl Strategy<Value = Batch> {
    let ends = || proptest::collection::vec(prop_oneof![0u32..64, any::<u32>()], 0..12);
    let bytes = || proptest::collection::vec(any::<u8>(), 0..64);
    (
        (
            ends(),
            bytes(),
            proptest::collection::vec(0u8..3, 0..12),
            ends(),
            bytes(),
        ),
        proptest::collection::vec(any::<i64>(), 0..12),
        (
            ends(),
            bytes(),
            ends(),
            bytes(),
            ends(),
            proptest::collection::vec(0u8..3, 0..12),
        ),
    )
        .prop_map(
            |((key_ends, keys, key_present, value_ends, values), timestamps, headers)| {
                let (
                    header_ends,
                    header_keys,
                    header_key_ends,
                    header_values,
                    header_value_ends,
                    header_value_present,
                ) = headers;
                Batch {
                    keys,
                    key_ends,
                    key_present,
                    values,
                    value_ends,
                    timestamps,
                    header_ends,
                    header_keys,
                    header_key_ends,
                    header_values,
                    header_value_ends,
                    header_value_present,
                }
            },
        )
}

#[test]
fn fuzz_the_validator_of_guest_batches() {
    fuzz("guest batch", guest_batches(), |b| {
        if b.validate().is_ok() {
            // A batch that passes is safe to read in full.
            let mut bytes = 0;
            for r in b.iter() {
                bytes += r.key.map_or(0, <[u8]>::len) + r.value.len();
                for h in r.headers.iter() {
                    bytes += h.key.len() + h.value.map_or(0, <[u8]>::len);
                }
            }
            assert!(
                bytes
                    <= b.keys.len() + b.values.len() + b.header_keys.len() + b.header_values.len()
            );
        }
    });
}

/// Text of lines: mostly short runs of a few bytes, line breaks and
/// carriage returns, sometimes anything.
fn line_text() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![
            4 => prop::sample::select(vec![b'a', b'b', b'\n', b'\r', b' ']),
            1 => any::<u8>(),
        ],
        0..400,
    )
}

#[test]
fn fuzz_line_splitting_against_a_plain_split() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let rt = std::panic::AssertUnwindSafe(rt);
    let file = dir.path().join("in.txt");
    fuzz("lines", line_text(), |text| {
        std::fs::write(&file, text).unwrap();
        let sink = CollectSink::new();
        let summary = rt
            .block_on(
                Job::builder("lines")
                    .source(SourceConfig::File { path: file.clone() })
                    .sink_boxed(Box::new(sink.clone()))
                    .workers(1)
                    .build()
                    .unwrap()
                    .run_to_end(),
            )
            .unwrap();
        // The reference: split at every line break, the last piece a line
        // only when it is not empty, each line without one trailing `\r`.
        let mut want: Vec<Vec<u8>> = text.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
        if want.last().is_some_and(Vec::is_empty) {
            want.pop();
        }
        for line in &mut want {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        let got: Vec<Vec<u8>> = sink.records().into_iter().map(|(_, v, _)| v).collect();
        assert_eq!(got, want);
        assert_eq!(summary.records_in, want.len() as u64);
    });
}

/// JSON lines a plugin author might write: valid objects, broken ones,
/// odd values.
fn sample_lines() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        Just(r#"{"value": "text", "key": "k", "timestamp": 1700000000000}"#.to_string()),
        Just(r#"{"value": ""}"#.to_string()),
        Just(r#"{"value": 1}"#.to_string()),
        Just(r#"{"value": "x", "timestamp": 9223372036854775808}"#.to_string()),
        Just(r#"{"value": "x", "timestamp": -1e300}"#.to_string()),
        Just(r#"{"key": null}"#.to_string()),
        Just(r#"[1, 2, 3]"#.to_string()),
        Just(String::new()),
        ".{0,60}",
    ];
    proptest::collection::vec(line, 0..20).prop_map(|l| l.join("\n"))
}

#[test]
fn fuzz_the_json_lines_samples() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sample.jsonl");
    fuzz("json lines", sample_lines(), |text| {
        std::fs::write(&file, text).unwrap();
        if let Ok(batch) = read_sample(&file, SampleFormat::Jsonl) {
            assert!(batch.len() <= text.lines().count());
            assert_eq!(batch.validate(), Ok(()));
        }
    });
}
