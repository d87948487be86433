//! The `sluice` command as a real process.

use crate::lit;
use sluice_tests::guests;
use std::process::{Command, Stdio};
use std::time::Duration;

fn sluice() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sluice-under-test"));
    c.env(
        "SLUICE_CACHE_DIR",
        std::env::temp_dir().join("sluice-test-cache"),
    );
    c
}

#[test]
fn plugin_check_reports_world_and_version() {
    let out = sluice()
        .args(["plugin", "check", guests::SPLIT_WORDS])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("implements world `transform` of sluice:operator@0.2.0"),
        "{stdout}"
    );
}

/// `sluice plugin check x.wasm | head -1` closes the pipe before `sluice`
/// writes its second line; that once panicked ("failed printing to stdout:
/// Broken pipe").
#[test]
fn plugin_check_into_a_closed_pipe_does_not_panic() {
    let mut child = sluice()
        .args(["plugin", "check", guests::SPLIT_WORDS])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before the component is even loaded.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
}

#[test]
fn plugin_check_tells_a_stateful_transformer() {
    let out = sluice()
        .args(["plugin", "check", guests::COUNTER_A])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("implements world `stateful-transform` of sluice:operator@"),
        "{stdout}"
    );
}

#[test]
fn plugin_check_explains_rejection() {
    let out = sluice()
        .args(["plugin", "check", guests::WRONG_VERSION])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("sluice:operator@0.9.0"), "{stderr}");
    let out = sluice()
        .args(["plugin", "check", "/no/such/file.wasm"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read plugin /no/such/file.wasm"));
}

#[test]
fn run_prints_batches_and_summary() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("in.txt"),
        "to be or not to be\nthat is the question\n",
    )
    .unwrap();
    let job = sluice_tests::write_job(
        dir.path(),
        "wc.toml",
        &format!(
            "[[sources]]\nkind = \"file\"\npath = \"in.txt\"\n[[operators]]\nplugin = {}\n[[operators]]\nbuiltin = \"count\"\n[[sinks]]\nkind = \"stdout\"\nlimit = 100\n",
            lit(guests::SPLIT_WORDS)
        ),
    );
    let out = sluice()
        .args(["run", job.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("-------- batch 0: 8 record(s) --------"),
        "{stdout}"
    );
    for line in ["to\t2", "be\t2", "question\t1"] {
        assert!(
            stdout.lines().any(|l| l == line),
            "missing {line:?} in {stdout}"
        );
    }
    assert!(
        stderr.contains("job `wc` finished: 2 record(s) in, 8 out"),
        "{stderr}"
    );
}

#[test]
fn run_reads_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let job = sluice_tests::write_job(
        dir.path(),
        "stdin.toml",
        &format!(
            "[[sources]]\nkind = \"stdin\"\n[[operators]]\nplugin = {}\n[[sinks]]\nkind = \"jsonl\"\npath = \"out.jsonl\"\n",
            lit(guests::UPPERCASE)
        ),
    );
    let mut child = sluice()
        .args(["run", "--quiet", job.to_str().unwrap()])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"one\ntwo\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
    let got = crate::read_jsonl(&dir.path().join("out.jsonl"));
    assert_eq!(
        got.iter()
            .map(|v| v["value"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["ONE", "TWO"]
    );
}

#[test]
fn bad_job_file_exits_nonzero_with_message() {
    let dir = tempfile::tempdir().unwrap();
    let job = sluice_tests::write_job(
        dir.path(),
        "bad.toml",
        "[[sources]]\nkind = \"carrier-pigeon\"\n[[sinks]]\nkind = \"stdout\"\n",
    );
    let out = sluice()
        .args(["run", job.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.toml")
            && stderr.contains("carrier-pigeon")
            && stderr.contains("generator"),
        "{stderr}"
    );
}

/// SIGTERM stops an unbounded job gracefully: every record read is processed
/// and written before the process exits.
#[test]
fn sigterm_stops_gracefully_without_losing_records() {
    let dir = tempfile::tempdir().unwrap();
    let job = sluice_tests::write_job(
        dir.path(),
        "gen.toml",
        &format!(
            "workers = 2\n[batch]\ninterval = \"100ms\"\n[[sources]]\nkind = \"generator\"\nrate = 20000\n[[operators]]\nplugin = {}\n[[sinks]]\nkind = \"jsonl\"\npath = \"out.jsonl\"\n",
            lit(guests::UPPERCASE)
        ),
    );
    let child = sluice()
        .args(["run", job.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let summary = stderr
        .lines()
        .find(|l| l.contains("job `gen` stopped"))
        .unwrap_or_else(|| panic!("no summary in {stderr}"));
    let records_in: u64 = summary
        .split(": ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let written = std::fs::read_to_string(dir.path().join("out.jsonl"))
        .unwrap()
        .lines()
        .count() as u64;
    assert!(records_in > 1000, "{summary}");
    assert_eq!(
        written, records_in,
        "every record read was written: {summary}"
    );
}

fn sample(dir: &std::path::Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn plugin_test_shows_output_rejections_and_timing() {
    let dir = tempfile::tempdir().unwrap();
    let input = sample(
        dir.path(),
        "s.jsonl",
        "{\"value\":\"{\\\"id\\\":\\\"a\\\"}\",\"timestamp\":7}\n{\"value\":\"nope\"}\n",
    );
    let out = sluice()
        .args([
            "plugin",
            "test",
            guests::JSON_FIELD,
            "--input",
            &input,
            "--config",
            "field=id",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("2 record(s) in, 1 out, 1 rejected"),
        "{stdout}"
    );
    assert!(
        stdout.contains(r#"[0] key="a" value="{\"id\":\"a\"}" ts=7"#),
        "{stdout}"
    );
    assert!(
        stdout.contains("record 1 (value \"nope\"): invalid JSON"),
        "{stdout}"
    );
    assert!(stdout.contains("µs per record"), "{stdout}");
}

#[test]
fn plugin_test_names_the_record_that_traps() {
    let dir = tempfile::tempdir().unwrap();
    let input = sample(
        dir.path(),
        "s.txt",
        "fine\nstill fine\nBOOM\nnever reached\n",
    );
    let out = sluice()
        .args(["plugin", "test", guests::TRAP, "--input", &input])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("operator `sluice_fixture_trap` trapped on record 2 (value \"BOOM\")"),
        "{stderr}"
    );
    assert!(
        stderr.contains("panicked at") && stderr.contains("found the marker in record 2"),
        "{stderr}"
    );
    let error = stderr.lines().find(|l| l.starts_with("error:")).unwrap();
    assert!(
        error.contains("; in sluice_"),
        "a demangled guest backtrace: {error}"
    );
    assert!(
        !error.contains("_ZN") && !error.contains("RUST_BACKTRACE"),
        "{error}"
    );
    // The operator's own log line reached the host log, tagged.
    assert!(
        stderr.contains("trap fixture initialised")
            && stderr.contains("operator=sluice_fixture_trap"),
        "{stderr}"
    );
}

#[test]
fn plugin_test_bad_sample_and_bad_config_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let input = sample(dir.path(), "s.jsonl", "just text\n");
    let out = sluice()
        .args(["plugin", "test", guests::UPPERCASE, "--input", &input])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("s.jsonl:1: not JSON") && stderr.contains("\"value\""),
        "{stderr}"
    );

    let input = sample(dir.path(), "s.txt", "x\n");
    let out = sluice()
        .args([
            "plugin",
            "test",
            guests::GREP,
            "--input",
            &input,
            "--config",
            "patern=x",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "refused its configuration: unknown setting `patern` (accepted: pattern, invert)"
        ),
        "{stderr}"
    );

    let out = sluice()
        .args([
            "plugin",
            "test",
            guests::GREP,
            "--input",
            &input,
            "--config",
            "novalue",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"novalue\" is not KEY=VALUE"));
}

#[test]
fn plugin_new_refuses_bad_names_and_existing_directories() {
    let dir = tempfile::tempdir().unwrap();
    let out = sluice()
        .args(["plugin", "new", "2fast"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("\"2fast\" is not a valid operator name: it must start with an ASCII letter")
    );
    std::fs::create_dir(dir.path().join("taken")).unwrap();
    let out = sluice()
        .args(["plugin", "new", "taken"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("taken already exists"));
}

#[test]
fn chatty_operator_is_rate_limited() {
    let dir = tempfile::tempdir().unwrap();
    let input = sample(dir.path(), "s.txt", "CHATTY\n");
    let out = sluice()
        .args(["plugin", "test", guests::TRAP, "--input", &input])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let shown = stderr.lines().filter(|l| l.contains("chatty line")).count();
    assert!(
        (1..=200).contains(&shown),
        "{shown} chatty lines reached the log"
    );
    assert!(
        stderr.contains("operator is logging too much: dropped"),
        "{stderr}"
    );
    assert!(
        stderr.contains("batch=0"),
        "lines carry the batch: {stderr}"
    );
}

/// SIGTERM while stdin stays open: the lines already typed are processed and
/// the process exits, although the read from stdin cannot be cancelled.
#[test]
fn sigterm_with_open_stdin_keeps_typed_lines_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let job = sluice_tests::write_job(
        dir.path(),
        "live.toml",
        &format!(
            "[batch]\ninterval = \"10s\"\n[[sources]]\nkind = \"stdin\"\n[[operators]]\nplugin = {}\n[[sinks]]\nkind = \"jsonl\"\npath = \"out.jsonl\"\n",
            lit(guests::UPPERCASE)
        ),
    );
    let mut child = sluice()
        .args(["run", "--quiet", job.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    use std::io::Write;
    stdin.write_all(b"typed one\ntyped two\n").unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(Duration::from_millis(800));
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let started = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "exited in {:?}",
        started.elapsed()
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = crate::read_jsonl(&dir.path().join("out.jsonl"));
    assert_eq!(
        got.iter()
            .map(|v| v["value"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["TYPED ONE", "TYPED TWO"]
    );
}
