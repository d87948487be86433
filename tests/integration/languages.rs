//! Operators written in C, Python, JavaScript and Go against the Rust ones.
//!
//! Each language's `uppercase` and `split-words` examples
//! (`plugin-sdk/LANG/examples/`) are built with `sluice plugin build` and run
//! through `sluice run` on the same input, at several batch sizes; their
//! output must equal the Rust plugin's byte for byte. Bad settings must be
//! refused with the Rust plugin's messages.

use sluice_tests::guests;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

/// The `sluice` under test, with a compiled-component cache shared by the
/// tests of this run (interpreted guests compile once).
pub fn sluice() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sluice-under-test"));
    c.env(
        "SLUICE_CACHE_DIR",
        std::env::temp_dir().join("sluice-test-cache"),
    );
    c
}

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Components built so far in this test run, by project directory.
static BUILT: Mutex<Option<HashMap<PathBuf, PathBuf>>> = Mutex::new(None);

/// Builds the project in `dir` with `sluice plugin build` (once per test
/// run; builds run one at a time, as they each take both cores) and returns
/// the component.
pub fn build(dir: &Path) -> PathBuf {
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let built = built.get_or_insert_with(HashMap::new);
    if let Some(path) = built.get(dir) {
        return path.clone();
    }
    let out = sluice()
        .args(["plugin", "build"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sluice plugin build {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let path = stdout
        .split_whitespace()
        .find(|w| w.ends_with(".wasm"))
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("no component named in {stdout:?}"));
    assert!(path.is_file(), "{} was not written", path.display());
    built.insert(dir.to_owned(), path.clone());
    path
}

/// The component of example `name` in `lang`.
pub fn example(lang: &str, name: &str) -> PathBuf {
    build(
        &repo()
            .join("plugin-sdk")
            .join(lang)
            .join("examples")
            .join(name),
    )
}

/// Input records as JSON lines: a value with every kind of separator,
/// non-ASCII text and punctuation, a key on most of them, and an event time.
fn corpus() -> String {
    let words = [
        "the",
        "Quick",
        "brown",
        "FOX",
        "café",
        "naïve",
        "don't",
        "--",
        "x",
        "Ünïcode",
        "a1b2",
        "jumps!",
        "\"quoted\"",
        "über-cool",
        "日本語",
        "e\u{301}",
    ];
    let gaps = [
        " ", "  ", "\t", "\n", "\r", "\u{b}", "\u{c}", " \t ", "", ", ",
    ];
    let mut state = 0x5eed_u64;
    let mut next = |n: usize| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as usize % n
    };
    let mut out = String::new();
    for i in 0..3000 {
        let mut line = String::new();
        if i % 41 != 0 {
            let n = 1 + next(12) + if i % 500 == 7 { 800 } else { 0 };
            for _ in 0..n {
                line.push_str(gaps[next(gaps.len())]);
                line.push_str(words[next(words.len())]);
            }
            line.push_str(gaps[next(gaps.len())]);
        }
        let record = match i % 5 {
            0 => serde_json::json!({ "line": line, "ts": 1_700_000_000_000i64 + i }),
            _ => serde_json::json!({ "line": line, "k": format!("k{}", i % 13), "ts": -5 + i }),
        };
        out.push_str(&record.to_string());
        out.push('\n');
    }
    out
}

/// Runs `operator` (a job file's operator entry, without its name) over
/// `input` (JSON lines, see [`corpus`]) in batches of `batch` records, with a
/// dead-letter file, and returns the output and the dead letters as bytes, or
/// the failed run.
fn run_job(
    dir: &Path,
    input: &str,
    operator: &str,
    batch: usize,
) -> Result<(Vec<u8>, Vec<u8>), Output> {
    std::fs::write(dir.join("input.jsonl"), input).unwrap();
    for file in ["out.jsonl", "dead.jsonl"] {
        let _ = std::fs::remove_file(dir.join(file));
    }
    let job = format!(
        r#"name = "golden"
workers = 1
[batch]
max_records = {batch}
interval = "60s"
[dead_letter]
path = "dead.jsonl"
[[sources]]
kind = "file"
path = "input.jsonl"
[[operators]]
name = "fields"
plugin = {fields:?}
config = {{ field = "k", value = "line", timestamp = "ts", missing = "keep" }}
[[operators]]
name = "op"
{operator}
[[sinks]]
kind = "jsonl"
path = "out.jsonl"
"#,
        fields = guests::JSON_FIELD,
    );
    let path = dir.join("job.toml");
    std::fs::write(&path, job).unwrap();
    let result = sluice().arg("run").arg(&path).output().unwrap();
    if !result.status.success() {
        return Err(result);
    }
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap_or_default();
    Ok((read("out.jsonl"), read("dead.jsonl")))
}

/// Runs the transformer `component` with `settings` (a TOML inline table)
/// over the corpus in batches of `batch` records and returns the output.
fn run(dir: &Path, component: &Path, settings: &str, batch: usize) -> Result<Vec<u8>, Output> {
    let operator = format!(
        "plugin = {:?}\nconfig = {settings}",
        component.display().to_string()
    );
    run_job(dir, &corpus(), &operator, batch).map(|(out, _)| out)
}

/// Where two outputs first differ, for a failure message.
fn first_difference(got: &[u8], expected: &[u8]) -> String {
    let line = got
        .split(|b| *b == b'\n')
        .zip(expected.split(|b| *b == b'\n'))
        .position(|(a, b)| a != b);
    format!(
        "{} bytes against Rust's {}, first differing line {line:?}",
        got.len(),
        expected.len()
    )
}

/// The settings each example is checked with.
const CASES: [(&str, &str); 5] = [
    ("uppercase", "{}"),
    ("split-words", "{}"),
    (
        "split-words",
        r#"{ split_on = "non-alphanumeric", lowercase = true }"#,
    ),
    ("split-words", "{ keyed = false }"),
    (
        "split-words",
        r#"{ lowercase = false, keyed = true, split_on = "whitespace" }"#,
    ),
];

fn rust(name: &str) -> PathBuf {
    PathBuf::from(match name {
        "uppercase" => guests::UPPERCASE,
        "split-words" => guests::SPLIT_WORDS,
        other => panic!("no Rust plugin {other}"),
    })
}

fn same_output_as_rust(lang: &str) {
    let dir = tempfile::tempdir().unwrap();
    for (name, settings) in CASES {
        let theirs = example(lang, name);
        for batch in [1, 7, 1024] {
            let expected = run(dir.path(), &rust(name), settings, batch).expect("the Rust run");
            assert!(expected.len() > 10_000, "the Rust plugin wrote output");
            let got = run(dir.path(), &theirs, settings, batch).unwrap_or_else(|o| {
                panic!(
                    "{lang} {name} {settings} failed:\n{}",
                    String::from_utf8_lossy(&o.stderr)
                )
            });
            assert!(
                got == expected,
                "{lang} {name} {settings} at batch {batch}: {}",
                first_difference(&got, &expected)
            );
        }
    }
}

/// What `sluice run` says when it refuses `settings`.
fn refusal(dir: &Path, component: &Path, settings: &str) -> String {
    let failed = run(dir, component, settings, 100).expect_err("the settings are refused");
    let stderr = String::from_utf8_lossy(&failed.stderr).to_string();
    // The message, without the component's path.
    stderr
        .lines()
        .find(|l| l.contains("setting"))
        .unwrap_or_else(|| panic!("no message about the setting in {stderr}"))
        .rsplit(": bad config: ")
        .next()
        .unwrap()
        .to_string()
}

fn bad_settings_as_rust(lang: &str) {
    let dir = tempfile::tempdir().unwrap();
    for (name, settings) in [
        ("uppercase", r#"{ shout = "yes" }"#),
        ("split-words", r#"{ split_on = "commas" }"#),
        ("split-words", r#"{ lowercase = "yes" }"#),
        ("split-words", r#"{ keyed = "1" }"#),
        ("split-words", r#"{ lower = "true" }"#),
    ] {
        let expected = refusal(dir.path(), &rust(name), settings);
        let got = refusal(dir.path(), &example(lang, name), settings);
        assert_eq!(got, expected, "{lang} {name} {settings}");
    }
}

macro_rules! per_language {
    ($($lang:ident),*) => {$(
        mod $lang {
            #[test]
            fn examples_write_what_the_rust_plugins_write() {
                super::same_output_as_rust(stringify!($lang));
            }

            #[test]
            fn bad_settings_are_refused_as_the_rust_plugins_refuse_them() {
                super::bad_settings_as_rust(stringify!($lang));
            }
        }
    )*};
}

per_language!(c, python, js, go);

/// Records for `sum`: integers in decimal text, some padded, signed or too
/// large, and some that are not integers at all, on a dozen keys.
fn numbers() -> String {
    let values = [
        "1",
        "42",
        " 7 ",
        "-3",
        "+5",
        "0",
        "x",
        "",
        "1e3",
        "9223372036854775807",
        "-9223372036854775808",
        "12\t",
        "٣",
        "3.0",
        "\u{a0}8",
        "100",
    ];
    (0..2400)
        .map(|i| {
            let v = values[(i * 7 + i / 5) % values.len()];
            serde_json::json!({ "line": v, "k": format!("k{}", i % 11), "ts": i }).to_string()
                + "\n"
        })
        .collect()
}

/// `sum` in `lang` against the Rust `sum`: the same totals per batch, and
/// the same values dead-lettered with the same reasons.
fn sum_as_rust(lang: &str) {
    let dir = tempfile::tempdir().unwrap();
    let reducer = |path: &Path| format!("reducer = {:?}", path.display().to_string());
    let theirs = example(lang, "sum");
    for batch in [1, 7, 1024] {
        let input = numbers();
        let (want, want_dead) =
            run_job(dir.path(), &input, &reducer(Path::new(guests::SUM)), batch)
                .expect("the Rust run");
        assert!(
            !want.is_empty() && !want_dead.is_empty(),
            "totals and rejections"
        );
        let (got, got_dead) =
            run_job(dir.path(), &input, &reducer(&theirs), batch).unwrap_or_else(|o| {
                panic!("{lang} sum failed:\n{}", String::from_utf8_lossy(&o.stderr))
            });
        assert!(
            got == want,
            "{lang} sum at batch {batch}: {}",
            first_difference(&got, &want)
        );
        assert!(
            got_dead == want_dead,
            "{lang} sum's dead letters at batch {batch}: {}",
            first_difference(&got_dead, &want_dead)
        );
    }
}

/// The running count of each record's key in `out` (JSON lines), computed
/// here: what `running-count` must write.
fn check_running_count(out: &[u8], records: usize, what: &str) {
    let mut seen: HashMap<Option<String>, u64> = HashMap::new();
    let rows: Vec<serde_json::Value> = out
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(rows.len(), records, "{what}: one output per input record");
    for row in rows {
        let key = row["key"].as_str().map(str::to_string);
        let n = seen.entry(key).or_default();
        *n += 1;
        assert_eq!(
            row["value"].as_str(),
            Some(n.to_string().as_str()),
            "{what}: {row}"
        );
    }
}

/// `running-count` in `lang` through `sluice run`, and across a snapshot
/// handed to a fresh instance, as a hot swap does.
fn running_count(lang: &str) {
    let dir = tempfile::tempdir().unwrap();
    let component = example(lang, "running-count");
    let operator = format!("plugin = {:?}", component.display().to_string());
    for batch in [1, 100] {
        let (out, _) = run_job(dir.path(), &corpus(), &operator, batch).unwrap_or_else(|o| {
            panic!(
                "{lang} running-count failed:\n{}",
                String::from_utf8_lossy(&o.stderr)
            )
        });
        check_running_count(&out, 3000, &format!("{lang} at batch {batch}"));
    }

    use sluice::operators::Operator;
    let runtime = sluice_tests::runtime_in(dir.path());
    let plugin = sluice_tests::load(&runtime, component.to_str().unwrap());
    let tags = |worker| sluice::wasm::LogTags {
        job: "swap".into(),
        operator: "running-count".into(),
        worker,
    };
    let mut input = sluice::model::batch::Batch::new();
    for i in 0..600 {
        input.push(Some(format!("k{}", i % 7).as_bytes()), b"x", i);
    }
    let mut old = plugin.instantiate(tags(0), &[]).unwrap();
    let first = old.process(&mut input.clone()).unwrap();
    let state = old
        .snapshot()
        .unwrap()
        .expect("a stateful operator has a snapshot");
    let mut new = plugin.instantiate(tags(1), &[]).unwrap();
    new.restore(&state).unwrap();
    let second = new.process(&mut input).unwrap();
    let values = |b: &sluice::model::batch::Batch| {
        b.iter()
            .map(|r| String::from_utf8(r.value.to_vec()).unwrap())
            .collect::<Vec<_>>()
    };
    // Counted here: every key's count goes on from where the first
    // instance left it.
    let mut counts: HashMap<usize, u64> = HashMap::new();
    let mut want = |i: usize| {
        let n = counts.entry(i % 7).or_default();
        *n += 1;
        n.to_string()
    };
    let want_first: Vec<String> = (0..600).map(&mut want).collect();
    let want_second: Vec<String> = (0..600).map(&mut want).collect();
    assert_eq!(
        values(&first),
        want_first,
        "{lang}: the first instance counts"
    );
    assert_eq!(
        values(&second),
        want_second,
        "{lang}: the new instance goes on counting"
    );
    assert!(
        new.restore(b"not a snapshot").is_err(),
        "{lang}: a foreign snapshot is refused"
    );
}

#[test]
fn c_sum_totals_and_rejects_as_the_rust_sum() {
    sum_as_rust("c");
}

#[test]
fn python_sum_totals_and_rejects_as_the_rust_sum() {
    sum_as_rust("python");
}

#[test]
fn js_sum_totals_and_rejects_as_the_rust_sum() {
    sum_as_rust("js");
}

#[test]
fn python_running_count_counts_and_hands_its_state_over() {
    running_count("python");
}

#[test]
fn go_running_count_counts_and_hands_its_state_over() {
    running_count("go");
}
