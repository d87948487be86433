//! Watching a job: `sluice run --ui` scraped by a real Prometheus server,
//! whose answers must match what the test fed the job, and the `--ui`
//! address refused clearly when it is taken.

use serde_json::Value;
use sluice_tests::guests;
use sluice_tests::ui::UiJob;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PATIENCE: Duration = Duration::from_secs(60);

fn sluice() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_sluice-under-test"))
}

/// A Prometheus server scraping `target` every second, killed when dropped.
struct Prometheus {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        let binary = ["prometheus", "/usr/bin/prometheus"]
            .into_iter()
            .find(|b| Command::new(b).arg("--version").output().is_ok())
            .expect("prometheus not found: install Debian's `prometheus` package (`.ci/run` does)");
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        // `honor_labels`: the series keep Sluice's own `job` label.
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: sluice\n    \
                 honor_labels: true\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        let p = Prometheus {
            child,
            base: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        let started = Instant::now();
        while ureq::get(format!("{}/-/ready", p.base)).call().is_err() {
            assert!(started.elapsed() < PATIENCE, "prometheus did not get ready");
            std::thread::sleep(Duration::from_millis(200));
        }
        p
    }

    fn api(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let mut req = ureq::get(format!("{}{path}", self.base));
        for (k, v) in query {
            req = req.query(*k, *v);
        }
        let text = req.call().unwrap().body_mut().read_to_string().unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// The value of the one series `promql` gives, if there is one.
    fn value(&self, promql: &str) -> Option<f64> {
        let answer = self.api("/api/v1/query", &[("query", promql)]);
        assert_eq!(answer["status"], "success", "{promql}: {answer}");
        let result = answer["data"]["result"].as_array()?;
        assert!(result.len() <= 1, "{promql} gives several series: {answer}");
        result.first()?["value"][1].as_str()?.parse().ok()
    }

    /// Waits until `promql` gives `want`.
    fn wait_for(&self, promql: &str, want: f64) {
        let started = Instant::now();
        loop {
            let got = self.value(promql);
            if got == Some(want) {
                return;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "{promql}: {got:?}, want {want}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn prometheus_scrapes_a_running_job_and_its_answers_add_up() {
    let dir = tempfile::tempdir().unwrap();
    let job = sluice_tests::write_job(
        dir.path(),
        "observed.toml",
        &format!(
            "name = \"observed\"\npartitions = 2\n[batch]\ninterval = \"100ms\"\n\
             [[sources]]\nkind = \"stdin\"\n\
             [[operators]]\nname = \"keyed\"\nplugin = \"{}\"\nconfig = {{ field = \"user\" }}\n\
             [[sinks]]\nkind = \"jsonl\"\npath = \"out.jsonl\"\n\
             [dead_letter]\npath = \"dead.jsonl\"\n",
            guests::JSON_FIELD
        ),
    );
    let mut running = UiJob::start(sluice(), &job);
    let prometheus = Prometheus::start(running.base.trim_start_matches("http://"));

    // Every seventh line is not JSON: the operator rejects it.
    let lines: Vec<String> = (0..700)
        .map(|i| match i % 7 {
            3 => format!("not json {i}"),
            _ => format!("{{\"user\":\"u{}\",\"n\":{i}}}", i % 5),
        })
        .collect();
    let bad = lines.iter().filter(|l| l.starts_with("not json")).count() as f64;
    let good = lines.len() as f64 - bad;
    for chunk in lines.chunks(100) {
        running.feed(&(chunk.join("\n") + "\n"));
        std::thread::sleep(Duration::from_millis(150));
    }
    let fed = lines.len() as f64;

    let up = prometheus.api("/api/v1/targets", &[]);
    let target = &up["data"]["activeTargets"][0];
    prometheus.wait_for("up{instance=~\"127.0.0.1:.*\"}", 1.0);
    prometheus.wait_for("sluice_source_records_total{job=\"observed\"}", fed);
    prometheus.wait_for(
        "sum(sluice_operator_records_in_total{operator=\"keyed\"})",
        fed,
    );
    prometheus.wait_for(
        "sum(sluice_operator_records_out_total{operator=\"keyed\"})",
        good,
    );
    prometheus.wait_for(
        "sluice_operator_rejected_records_total{operator=\"keyed\"}",
        bad,
    );
    prometheus.wait_for("sluice_dead_letters_total", bad);
    prometheus.wait_for("sluice_sink_records_total", good);
    let targets = prometheus.api("/api/v1/targets", &[]);
    assert_eq!(
        targets["data"]["activeTargets"][0]["lastError"], "",
        "{target}"
    );
    // Both partitions had records.
    for p in ["0", "1"] {
        let q = format!("sluice_operator_records_in_total{{operator=\"keyed\",partition=\"{p}\"}}");
        assert!(prometheus.value(&q).unwrap() > 0.0, "{q}");
    }
    // Every batch with records is in the delay histograms once.
    let batches = prometheus.value("sluice_batches_total").unwrap();
    assert!(batches >= 7.0, "{batches} batches for 7 feeds 150 ms apart");
    for h in ["scheduling_delay", "processing", "total_delay"] {
        let count = prometheus
            .value(&format!("sluice_batch_{h}_seconds_count"))
            .unwrap();
        assert_eq!(count, batches, "{h}");
        let p99 = prometheus
            .value(&format!(
                "histogram_quantile(0.99, sluice_batch_{h}_seconds_bucket)"
            ))
            .unwrap();
        assert!(p99.is_finite() && p99 >= 0.0, "{h} p99 {p99}");
    }
    // A batch waits for its interval before it is cut: its total delay is
    // at least its processing time, and the total delay's median is within
    // reach of the 100 ms interval.
    let total = prometheus
        .value("sluice_batch_total_delay_seconds_sum")
        .unwrap();
    let processing = prometheus
        .value("sluice_batch_processing_seconds_sum")
        .unwrap();
    assert!(
        total >= processing,
        "total {total} < processing {processing}"
    );
    let calls = prometheus
        .value("sluice_operator_call_seconds_count{operator=\"keyed\"}")
        .unwrap();
    assert!(calls >= batches, "{calls} calls for {batches} batches");
    assert_eq!(
        prometheus.value("sluice_operator_version{operator=\"keyed\"}"),
        Some(1.0)
    );
    let memory = prometheus
        .value("sluice_operator_limit_used{operator=\"keyed\",limit=\"memory\"}")
        .unwrap();
    assert!(memory > 0.0, "a Wasm instance holds memory");

    // The dashboard's figures tell the same, with the latest dead letters.
    let figures = running.figures();
    assert_eq!(figures["totals"]["records_in"], fed as u64, "{figures:#}");
    let dead = figures["dead_letters"].as_array().unwrap();
    let kept = (bad as usize).min(sluice::metrics::RECENT_DEAD_LETTERS);
    assert_eq!(dead.len(), kept, "{figures:#}");
    let last_bad = lines.iter().rfind(|l| l.starts_with("not json")).unwrap();
    assert_eq!(dead[kept - 1]["value"], last_bad.as_str(), "{figures:#}");
    assert!(
        dead.iter()
            .all(|d| d["value"].as_str().unwrap().starts_with("not json"))
    );
    assert!(
        !dead[0]["reason"].as_str().unwrap().is_empty(),
        "{figures:#}"
    );
    // And the files on disk agree with both.
    let status = running.finish();
    assert!(status.success(), "{status}");
    let out = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap();
    assert_eq!(out.lines().count() as f64, good);
    let dead = std::fs::read_to_string(dir.path().join("dead.jsonl")).unwrap();
    assert_eq!(dead.lines().count() as f64, bad);
}

#[test]
fn a_taken_ui_address_is_refused_naming_it() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let job = sluice_tests::write_job(
        dir.path(),
        "job.toml",
        "name = \"j\"\n[[sources]]\nkind = \"stdin\"\n[[sinks]]\nkind = \"discard\"\n",
    );
    let out = Command::new(sluice())
        .args(["run", "--quiet", "--ui", &addr.to_string()])
        .arg(&job)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!("--ui: cannot serve the dashboard on {addr}"))
            && err.contains("choose a free port"),
        "{err}"
    );
}

/// Runs the job file text `toml` from `dir` to its end, in this process;
/// returns its summary, its figures (as the dashboard reads them) and its
/// Prometheus exposition, taken after the end.
async fn run_watched(dir: &Path, toml: &str) -> (sluice::exec::Summary, Value, String) {
    let path = sluice_tests::write_job(dir, "job.toml", toml);
    let runtime = sluice::wasm::Runtime::with_options(Some(dir.join("cache")), true).unwrap();
    let job = sluice::exec::Job::from_file(&path, &runtime).unwrap();
    let stats = job.stats();
    let summary = job.run_to_end().await.unwrap();
    let figures = stats
        .figures("watched", "finished")
        .expect("figures after the run");
    let text = sluice::metrics::encode(vec![sluice::metrics::Scope {
        labels: vec![("job", "watched".into())],
        figures: figures.clone(),
    }]);
    (summary, serde_json::to_value(&figures).unwrap(), text)
}

/// The value of the one sample of `series` (its name and labels, as
/// written) in the exposition `text`.
fn sample(text: &str, series: &str) -> f64 {
    let line = text
        .lines()
        .find(|l| l.rsplit_once(' ').is_some_and(|(s, _)| s == series))
        .unwrap_or_else(|| panic!("no {series} in {text}"));
    line.rsplit_once(' ').unwrap().1.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traps_breaches_and_restarts_are_counted_where_they_happen() {
    let dir = tempfile::tempdir().unwrap();
    // Twenty plain lines, one that makes `hostile` allocate without bound
    // and one that makes `trap` panic.
    let mut lines: Vec<String> = (0..20).map(|i| format!("ok {i}")).collect();
    lines.insert(7, "BOMB".into());
    lines.insert(15, "has BOOM inside".into());
    std::fs::write(dir.path().join("in.txt"), lines.join("\n") + "\n").unwrap();
    let (summary, figures, text) = run_watched(
        dir.path(),
        &format!(
            "name = \"attacked\"\nworkers = 1\npartitions = 1\n\
             [[sources]]\nkind = \"file\"\npath = \"in.txt\"\n\
             [[operators]]\nname = \"hostile\"\nplugin = \"{}\"\n\
             [[operators]]\nname = \"trap\"\nplugin = \"{}\"\n\
             [[sinks]]\nkind = \"discard\"\n\
             [dead_letter]\npath = \"dead.jsonl\"\n\
             [limits]\nmemory = \"16MiB\"\non_breach = \"dead-letter\"\n",
            guests::HOSTILE,
            guests::TRAP
        ),
    )
    .await;
    assert_eq!(
        (summary.records_out, summary.dead_lettered),
        (20, 2),
        "{summary}"
    );
    let ops = &figures["stages"][0]["operators"];
    let (hostile, trap) = (&ops[0], &ops[1]);
    assert_eq!(
        (hostile["name"].as_str(), trap["name"].as_str()),
        (Some("hostile"), Some("trap"))
    );
    // The bomb breaches `memory` in every call it is part of while the
    // batch is bisected, and each breach costs the instance.
    let breaches = hostile["breaches"]["memory"].as_u64().unwrap();
    assert!(breaches >= 1, "{hostile:#}");
    assert_eq!(hostile["restarts"], breaches, "{hostile:#}");
    assert_eq!(
        (hostile["traps"].as_u64(), hostile["dead_letters"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(hostile["records_in"], 22);
    assert_eq!(hostile["records_out"], 21);
    let traps = trap["traps"].as_u64().unwrap();
    assert!(traps >= 1, "{trap:#}");
    assert_eq!(trap["restarts"], traps, "{trap:#}");
    assert_eq!(trap["breaches"], serde_json::json!({}));
    assert_eq!(
        (trap["records_in"].as_u64(), trap["records_out"].as_u64()),
        (Some(21), Some(20))
    );
    assert_eq!(trap["dead_letters"], 1);
    // The exposition says the same.
    let op = |name: &str, more: &str| {
        format!("{{job=\"watched\",stage=\"0\",operator=\"{name}\"{more}}}")
    };
    let limit = op("hostile", ",limit=\"memory\"");
    assert_eq!(
        sample(
            &text,
            &format!("sluice_operator_limit_breaches_total{limit}")
        ),
        breaches as f64
    );
    assert_eq!(
        sample(
            &text,
            &format!("sluice_operator_traps_total{}", op("trap", ""))
        ),
        traps as f64
    );
    assert_eq!(
        sample(&text, &format!("sluice_operator_limit{limit}")),
        16.0 * 1024.0 * 1024.0
    );
    let used = sample(&text, &format!("sluice_operator_limit_used{limit}"));
    assert!(used > 0.0 && used <= 16.0 * 1024.0 * 1024.0, "{used}");
    // Both dead letters, with their reasons.
    let dead = figures["dead_letters"].as_array().unwrap();
    let reasons: Vec<(&str, &str)> = dead
        .iter()
        .map(|d| {
            (
                d["value"].as_str().unwrap(),
                d["operator"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        [("BOMB", "hostile"), ("has BOOM inside", "trap")],
        "{figures:#}"
    );
    assert!(
        dead[0]["reason"].as_str().unwrap().contains("memory"),
        "{figures:#}"
    );
    assert!(
        dead[1]["reason"].as_str().unwrap().contains("trapped"),
        "{figures:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watermarks_and_checkpoints_are_shown_as_they_stand() {
    let dir = tempfile::tempdir().unwrap();
    // Event times 1 s apart from a fixed start; the largest is the last.
    let start = 1_700_000_000_000_i64;
    let events: Vec<String> = (0..40)
        .map(|i| format!("{{\"user\":\"u{}\",\"ts\":{}}}", i % 3, start + i * 1000))
        .collect();
    std::fs::write(dir.path().join("events.jsonl"), events.join("\n") + "\n").unwrap();
    let (summary, figures, text) = run_watched(
        dir.path(),
        &format!(
            "name = \"timed\"\nworkers = 2\n[batch]\nmax_records = 5\n\
             [[sources]]\nkind = \"file\"\npath = \"events.jsonl\"\n\
             [[operators]]\nname = \"by-user\"\nplugin = \"{}\"\nconfig = {{ field = \"user\", timestamp = \"ts\" }}\n\
             [[operators]]\nname = \"clicks\"\nbuiltin = \"aggregate\"\n\
             config = {{ function = \"count\", window = \"tumbling\", length = \"10s\" }}\n\
             [[sinks]]\nkind = \"jsonl\"\npath = \"out.jsonl\"\n\
             [checkpoint]\npath = \"state\"\nevery_batches = 2\n",
            guests::JSON_FIELD
        ),
    )
    .await;
    let last = start + 39 * 1000;
    let marks = figures["watermarks"].as_array().unwrap();
    assert_eq!(marks.len(), 1, "{figures:#}");
    assert_eq!(marks[0]["stage"], 1, "{figures:#}");
    assert_eq!(marks[0]["event_time_ms"], last, "{figures:#}");
    assert_eq!(marks[0]["watermark_ms"], last, "{figures:#}");
    let lag = marks[0]["lag_ms"].as_i64().unwrap();
    let behind = sluice::model::time::now_ms() - last;
    assert!(
        lag > 0 && lag <= behind,
        "lag {lag} ms, the events are {behind} ms old"
    );
    assert_eq!(
        sample(
            &text,
            "sluice_watermark_seconds{job=\"watched\",stage=\"1\",stream=\"(default)\"}"
        ),
        last as f64 / 1e3
    );
    // Every checkpoint the run wrote is counted, its size that of the last.
    let c = &figures["checkpoints"];
    assert!(summary.checkpoints >= 4, "{summary}");
    assert_eq!(c["count"], summary.checkpoints, "{figures:#}");
    assert_eq!(
        sample(&text, "sluice_checkpoints_total{job=\"watched\"}"),
        summary.checkpoints as f64
    );
    assert_eq!(
        sample(
            &text,
            "sluice_checkpoint_duration_seconds_count{job=\"watched\"}"
        ),
        summary.checkpoints as f64
    );
    let newest = std::fs::read_dir(dir.path().join("state"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .collect::<Vec<_>>();
    let size = c["last_bytes"].as_u64().unwrap();
    assert!(
        newest.contains(&size),
        "{size} is not the size of a file in state/: {newest:?}"
    );
    assert!(c["age_s"].as_f64().unwrap() < 60.0);
}

/// `docs/metrics.md` lists every family the exposition writes, and no other.
#[test]
fn the_metrics_document_lists_every_family_and_only_those() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/metrics.md"))
            .unwrap();
    let exposed: std::collections::BTreeSet<String> = sluice::metrics::families::ALL
        .iter()
        .map(|f| f.series())
        .collect();
    let documented: std::collections::BTreeSet<String> = doc
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("sluice_"))
        // A histogram's series as PromQL names them.
        .map(|w| w.trim_end_matches("_bucket").to_string())
        .collect();
    let missing: Vec<_> = exposed.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&exposed).collect();
    assert!(missing.is_empty(), "not in docs/metrics.md: {missing:?}");
    assert!(
        unknown.is_empty(),
        "in docs/metrics.md but not exposed: {unknown:?}"
    );
}
