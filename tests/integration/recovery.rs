//! Recovery from checkpoints, tried for real: `sluice run` processes killed
//! with SIGKILL at random moments and started again, until one runs to the
//! end. The output is compared with a run of the same job without kills
//! and with a plain re-computation from the input.
//!
//! `SLUICE_RECOVERY_KILLS` sets the kills per pipeline (default 5).

use crate::{lit, read_jsonl};
use sluice_tests::guests;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn kills() -> usize {
    std::env::var("SLUICE_RECOVERY_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
}

fn sluice() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sluice-under-test"))
}

/// A small deterministic generator of kill moments and event keys.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `n` JSON events in event-time order, 5 ms apart, of `users` users; and
/// the number of events per user.
pub fn events(n: usize, users: u64, seed: u64) -> (Vec<String>, BTreeMap<String, u64>) {
    let mut rng = Rng(seed);
    let mut counts = BTreeMap::new();
    let lines = (0..n)
        .map(|i| {
            let user = format!("u{}", rng.below(users));
            *counts.entry(user.clone()).or_insert(0) += 1;
            format!(
                r#"{{"user":"{user}","ts":{},"n":1}}"#,
                1_700_000_000_000i64 + 5 * i as i64
            )
        })
        .collect();
    (lines, counts)
}

/// Per user and window of `length` ms, the number of events: what the windowed count
/// must emit, computed plainly.
fn windows_of(lines: &[String], length: i64) -> BTreeMap<(String, i64), u64> {
    let mut w = BTreeMap::new();
    for l in lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let ts = v["ts"].as_i64().unwrap();
        let key = (
            v["user"].as_str().unwrap().to_string(),
            ts - ts.rem_euclid(length),
        );
        *w.entry(key).or_insert(0) += 1;
    }
    w
}

/// The windows a job wrote to `path`: per user and window start, its count.
fn emitted_windows(path: &Path) -> BTreeMap<(String, i64), u64> {
    read_jsonl(path)
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l["value"].as_str().unwrap()).unwrap();
            (
                (
                    l["key"].as_str().unwrap().to_string(),
                    v["window_start"].as_i64().unwrap(),
                ),
                v["count"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The operators: key and event time from the JSON, a count per user and
/// 1 s window, the window's count as the value, and a Wasm reducer adding
/// the counts up per user (its running totals are the output). With
/// `windows_only`, the windows are the output.
pub fn chain(windows_only: bool) -> String {
    let mut ops = format!(
        r#"
[[operators]]
name = "key"
plugin = {json}
config = {{ field = "user", timestamp = "ts" }}

[[operators]]
name = "windows"
builtin = "aggregate"
config = {{ function = "count", window = "tumbling", length = "1s" }}
"#,
        json = lit(guests::JSON_FIELD)
    );
    if !windows_only {
        ops += &format!(
            r#"
[[operators]]
name = "count"
plugin = {json}
config = {{ value = "count" }}

[[operators]]
name = "total"
reducer = {sum}
"#,
            json = lit(guests::JSON_FIELD),
            sum = lit(guests::SUM)
        );
    }
    ops
}

/// A job file of `sources`, the chain and `sinks`, checkpointed every
/// other batch.
pub fn job(sources: &str, windows_only: bool, sinks: &str) -> String {
    format!(
        "name = \"recover\"\nworkers = 2\npartitions = 3\n[batch]\nmax_records = 700\ninterval = \"50ms\"\n{sources}\n{}\n{sinks}\n[checkpoint]\npath = \"state\"\nevery_batches = 2\n",
        chain(windows_only)
    )
}

fn start(job: &Path) -> Child {
    sluice()
        .args(["run", "--quiet", job.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Kills `job` `kills` times, each after a random moment; returns how many
/// kills struck while a checkpoint was being written.
pub fn kill_repeatedly(job: &Path, kills: usize, rng: &mut Rng) -> usize {
    kill_after(job, kills, rng, 150..1250)
}

/// Like [`kill_repeatedly`], each kill a random number of milliseconds in
/// `range` after the start.
pub fn kill_after(job: &Path, kills: usize, rng: &mut Rng, range: std::ops::Range<u64>) -> usize {
    let state = job.parent().unwrap().join("state");
    let writing = || {
        std::fs::read_dir(&state)
            .map(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            })
            .unwrap_or(false)
    };
    let mut mid_write = 0;
    for k in 0..kills {
        let mut child = start(job);
        let at = Duration::from_millis(range.start + rng.below(range.end - range.start));
        let started = Instant::now();
        let mut struck_writing = false;
        if k % 2 == 1 {
            // Every other kill waits for a checkpoint being written (its
            // file still under its temporary name) and strikes then.
            while started.elapsed() < at * 3 {
                struck_writing = writing();
                if struck_writing {
                    break;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        } else {
            std::thread::sleep(at);
        }
        child.kill().unwrap();
        let out = child.wait_with_output().unwrap();
        if out.status.code().is_some() {
            // It ended by itself (too fast): nothing was cut short.
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{stderr}");
        }
        // Struck within microseconds of seeing the write, or left it half done.
        mid_write += usize::from(struck_writing || writing());
    }
    mid_write
}

/// Runs `job` to its end and checks it succeeded.
fn run_to_end(job: &Path) {
    let out = start(job).wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The last value written per key: a reducer's final totals.
pub fn last_per_key(lines: &[serde_json::Value]) -> BTreeMap<String, u64> {
    totals(lines.iter().map(|l| {
        (
            l["key"].as_str().unwrap().to_string(),
            l["value"].as_str().unwrap().to_string(),
        )
    }))
}

/// The last of each key's running totals, checking that each key's totals
/// only grow: a batch whose output was written twice would repeat one.
pub fn totals(records: impl IntoIterator<Item = (String, String)>) -> BTreeMap<String, u64> {
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    for (key, value) in records {
        let v: u64 = value.parse().unwrap();
        if let Some(before) = last.insert(key.clone(), v) {
            assert!(v > before, "key {key}: total {v} after {before}");
        }
    }
    last
}

/// The lines of a directory sink's files, in batch order.
fn directory_lines(dir: &Path) -> Vec<serde_json::Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    files.iter().flat_map(|f| read_jsonl(f)).collect()
}

fn sorted_lines(path: &Path) -> Vec<String> {
    let mut lines: Vec<String> = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

/// File → windowed count and Wasm reducer → jsonl: killed again and again,
/// the final totals equal those of a run without kills and the input's
/// counts; and the windows alone, line for line.
#[test]
fn a_file_job_killed_at_random_moments_ends_as_a_run_without_kills() {
    let (lines, counts) = events(60_000, 40, 11);
    let mut rng = Rng(7);
    for windows_only in [false, true] {
        let mut out = Vec::new();
        for killed in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("in.jsonl"), lines.join("\n")).unwrap();
            let job = sluice_tests::write_job(
                dir.path(),
                "job.toml",
                &job(
                    "[[sources]]\nkind = \"file\"\npath = \"in.jsonl\"",
                    windows_only,
                    "[[sinks]]\nkind = \"jsonl\"\npath = \"out.jsonl\"",
                ),
            );
            let mid_write = if killed {
                kill_repeatedly(&job, kills(), &mut rng)
            } else {
                0
            };
            run_to_end(&job);
            eprintln!(
                "windows_only={windows_only} killed={killed}: {mid_write} kill(s) during a checkpoint write"
            );
            out.push(dir.path().join("out.jsonl"));
            std::mem::forget(dir);
        }
        if windows_only {
            let (clean, killed) = (sorted_lines(&out[0]), sorted_lines(&out[1]));
            assert_same_lines(&killed, &clean);
            let emitted = emitted_windows(&out[1]);
            assert_eq!(emitted, windows_of(&lines, 1000));
            assert_eq!(killed.len(), emitted.len(), "each window once");
        } else {
            let clean = last_per_key(&read_jsonl(&out[0]));
            let killed = last_per_key(&read_jsonl(&out[1]));
            assert_eq!(clean, counts, "the run without kills");
            assert_eq!(killed, counts, "the run with kills");
        }
        for o in out {
            let _ = std::fs::remove_dir_all(o.parent().unwrap());
        }
    }
}

/// Directory → windowed count and Wasm reducer → directory sink: killed
/// again and again while it reads its files, the final totals are the
/// input's counts.
#[test]
fn a_directory_job_killed_at_random_moments_loses_and_repeats_nothing() {
    let (lines, counts) = events(40_000, 30, 12);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    for (i, part) in lines.chunks(5000).enumerate() {
        std::fs::write(input.join(format!("part-{i:03}.jsonl")), part.join("\n")).unwrap();
    }
    let job = sluice_tests::write_job(
        dir.path(),
        "job.toml",
        &job(
            "[[sources]]\nkind = \"directory\"\npath = \"in\"\nexisting = true\npoll = \"100ms\"",
            false,
            "[[sinks]]\nkind = \"directory\"\npath = \"out\"",
        ),
    );
    let mut rng = Rng(8);
    let mid_write = kill_repeatedly(&job, kills(), &mut rng);
    eprintln!("{mid_write} kill(s) during a checkpoint write");
    // The last run reads on until the input is all in (no checkpoint for
    // a second), then drains: the last windows close at its stop.
    let child = sluice()
        .args(["run", "--quiet", "--drain", job.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until_checkpoints_settle(&dir.path().join("state"));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait_with_output().unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let out = dir.path().join("out");
    assert_eq!(last_per_key(&directory_lines(&out)), counts);
}

/// A windows-only job over `in.jsonl` into `out.jsonl`, checkpointed every
/// batch, with windows of `length`.
fn windows_job(dir: &Path, length: &str) -> PathBuf {
    let text = job(
        "[[sources]]\nkind = \"file\"\npath = \"in.jsonl\"",
        true,
        "[[sinks]]\nkind = \"jsonl\"\npath = \"out.jsonl\"",
    )
    .replace("every_batches = 2", "every_batches = 1")
    .replace("length = \"1s\"", &format!("length = {length:?}"));
    sluice_tests::write_job(dir, "job.toml", &text)
}

fn run_output(job: &Path, args: &[&str]) -> std::process::Output {
    let mut c = sluice();
    c.arg("run").arg("--quiet").args(args).arg(job);
    c.output().unwrap()
}

/// The newest checkpoint damaged (a byte flipped, as by a torn write or a
/// bad disk) after a crash: the job warns, resumes from the one before, and
/// its output is still that of a run without the crash.
#[test]
fn a_damaged_newest_checkpoint_gives_way_to_the_previous_one() {
    let (lines, _) = events(60_000, 10, 13);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.jsonl"), lines.join("\n")).unwrap();
    let job = windows_job(dir.path(), "1s");
    let state = dir.path().join("state");
    let checkpoints = || -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&state)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.retain(|f| !f.to_string_lossy().ends_with(".tmp"));
        files.sort();
        files
    };
    let mut child = start(&job);
    let started = Instant::now();
    while checkpoints().len() < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no checkpoints"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    let _ = child.wait();
    let newest = checkpoints().last().unwrap().clone();
    let mut bytes = std::fs::read(&newest).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x55;
    std::fs::write(&newest, bytes).unwrap();
    let out = run_output(&job, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("is damaged") && stderr.contains("using the one before it"),
        "{stderr}"
    );
    let clean = tempfile::tempdir().unwrap();
    std::fs::write(clean.path().join("in.jsonl"), lines.join("\n")).unwrap();
    assert!(
        run_output(&windows_job(clean.path(), "1s"), &[])
            .status
            .success()
    );
    assert_same_lines(
        &sorted_lines(&dir.path().join("out.jsonl")),
        &sorted_lines(&clean.path().join("out.jsonl")),
    );
}

/// Two sorted outputs are the same, line for line; a failure shows the
/// counts and the first difference only.
fn assert_same_lines(got: &[String], want: &[String]) {
    if got == want {
        return;
    }
    let first = got.iter().zip(want).position(|(a, b)| a != b);
    panic!(
        "{} line(s), expected {}; first difference at {first:?}: {:?} vs {:?}",
        got.len(),
        want.len(),
        first.and_then(|i| got.get(i)),
        first.and_then(|i| want.get(i)),
    );
}

/// A job file changed incompatibly with its checkpoint (another window
/// length) is refused, naming the setting and both values; with
/// `--reset-state` it starts afresh.
#[test]
fn an_incompatible_job_file_is_refused_until_reset_state() {
    let (lines, _) = events(3_000, 5, 14);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.jsonl"), lines.join("\n")).unwrap();
    assert!(
        run_output(&windows_job(dir.path(), "1s"), &[])
            .status
            .success()
    );
    let job = windows_job(dir.path(), "2s");
    let out = run_output(&job, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("changed incompatibly with its checkpoint")
            && stderr.contains("`operators[1].config.length` was \"1s\", is now \"2s\"")
            && stderr.contains("--reset-state"),
        "{stderr}"
    );
    let out = run_output(&job, &["--reset-state"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let clean = tempfile::tempdir().unwrap();
    std::fs::write(clean.path().join("in.jsonl"), lines.join("\n")).unwrap();
    assert!(
        run_output(&windows_job(clean.path(), "2s"), &[])
            .status
            .success()
    );
    assert_same_lines(
        &sorted_lines(&dir.path().join("out.jsonl")),
        &sorted_lines(&clean.path().join("out.jsonl")),
    );
}

/// Waits until the checkpoint directory has had no new checkpoint for a
/// second: the job has taken in all its input.
pub fn wait_until_checkpoints_settle(state: &Path) {
    wait_until_quiet(state, Duration::from_secs(1));
}

/// Waits until no new checkpoint has appeared in `state` for `quiet`, and
/// at least 2 s more than that since the call, so that a job still starting
/// is waited for.
pub fn wait_until_quiet(state: &Path, quiet: Duration) {
    let newest = || {
        std::fs::read_dir(state)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.ends_with(".tmp"))
                    .max()
            })
            .unwrap_or_default()
    };
    let started = Instant::now();
    let mut last = (newest(), Instant::now());
    loop {
        let now = newest();
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.0.is_some()
            && last.1.elapsed() > quiet
            // A job still starting (a loaded machine) has taken nothing yet.
            && started.elapsed() > quiet + Duration::from_secs(2)
        {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no checkpoint"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERM on a checkpointed job emits no open window; after the resume
/// they are emitted once the watermark passes them, and `--drain` emits the
/// rest at its stop: each window once, with all its records.
#[test]
fn a_stop_keeps_open_windows_for_the_resume_and_drain_emits_them() {
    let (lines, _) = events(2_000, 5, 15);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let (first, second) = lines.split_at(1_000);
    std::fs::write(input.join("a.jsonl"), first.join("\n")).unwrap();
    let text = job(
        "[[sources]]\nkind = \"directory\"\npath = \"in\"\nexisting = true\npoll = \"100ms\"",
        true,
        "[[sinks]]\nkind = \"jsonl\"\npath = \"out.jsonl\"",
    )
    .replace("length = \"1s\"", "length = \"1m\"");
    let job = sluice_tests::write_job(dir.path(), "job.toml", &text);
    let stop = |child: Child| {
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let out = dir.path().join("out.jsonl");
    let child = start(&job);
    wait_until_checkpoints_settle(&dir.path().join("state"));
    stop(child);
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "",
        "no window was closed"
    );
    // The rest of the events come, the read file goes (a landing directory
    // with retention: no error), and the resumed job drains at its stop.
    std::fs::write(input.join("b.jsonl"), second.join("\n")).unwrap();
    std::fs::remove_file(input.join("a.jsonl")).unwrap();
    let child = sluice()
        .args(["run", "--quiet", "--drain", job.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until_checkpoints_settle(&dir.path().join("state"));
    stop(child);
    let emitted = emitted_windows(&out);
    let want = windows_of(&lines, 60_000);
    assert_eq!(emitted, want);
    assert_eq!(read_jsonl(&out).len(), want.len(), "each window once");
}

/// A stateful Wasm operator (the counter fixture: each record's output
/// carries how many records the instance has counted) killed again and
/// again: `restore` gives it its count back from each checkpoint's
/// `snapshot`, so the output is that of one uninterrupted instance.
#[test]
fn a_stateful_plugin_counts_on_across_kills() {
    let n = 40_000;
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    std::fs::write(dir.path().join("in.txt"), lines.join("\n")).unwrap();
    let job = sluice_tests::write_job(
        dir.path(),
        "job.toml",
        &format!(
            "name = \"counter\"\nworkers = 1\npartitions = 1\n[batch]\nmax_records = 300\n\
             [[sources]]\nkind = \"file\"\npath = \"in.txt\"\n\
             [[operators]]\nplugin = {}\n\
             [[sinks]]\nkind = \"jsonl\"\npath = \"out.jsonl\"\n\
             [checkpoint]\npath = \"state\"\nevery_batches = 1\n",
            lit(guests::COUNTER_A)
        ),
    );
    let mut rng = Rng(9);
    kill_repeatedly(&job, kills(), &mut rng);
    run_to_end(&job);
    let got: Vec<String> = read_jsonl(&dir.path().join("out.jsonl"))
        .iter()
        .map(|l| l["value"].as_str().unwrap().to_string())
        .collect();
    let want: Vec<String> = (0..n).map(|i| format!("a|0|{}|{i}", i + 1)).collect();
    assert_same_lines(&got, &want);
}
