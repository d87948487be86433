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
        stdout.contains("implements world `transform` of sluice:operator@0.1.0"),
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
