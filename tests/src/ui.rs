//! `sluice run --ui` as a real process: a job fed through its stdin, whose
//! dashboard and metrics are served on a free loopback port.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `sluice run JOB --ui 127.0.0.1:0`.
pub struct UiJob {
    pub child: Child,
    /// Where it serves, `http://127.0.0.1:PORT`.
    pub base: String,
    /// The job's input, while it is open.
    pub stdin: Option<ChildStdin>,
    /// Its stderr lines so far, read on a thread of their own.
    pub stderr: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl UiJob {
    /// Starts `sluice` (the binary at `bin`) on the job file `job`, and
    /// waits until it says where its dashboard is.
    pub fn start(bin: &Path, job: &Path) -> UiJob {
        let mut child = Command::new(bin)
            .args(["run", "--quiet", "--ui", "127.0.0.1:0"])
            .arg(job)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sluice run --ui");
        let stdin = child.stdin.take();
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = BufReader::new(child.stderr.take().expect("stderr"));
        let kept = stderr.clone();
        std::thread::spawn(move || {
            for line in lines.lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("dashboard on http://") {
                    let addr = rest.split('/').next().unwrap_or_default().to_string();
                    let _ = tx.send(addr);
                }
                kept.lock().unwrap().push(line);
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                panic!("no dashboard address; stderr: {:?}", stderr.lock().unwrap())
            });
        UiJob {
            child,
            base: format!("http://{addr}"),
            stdin,
            stderr,
        }
    }

    /// Writes `lines` to the job's input.
    pub fn feed(&mut self, lines: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(lines.as_bytes()).expect("feed the job");
        stdin.flush().expect("flush");
    }

    /// GETs `path`, as text.
    pub fn get(&self, path: &str) -> String {
        ureq::get(format!("{}{path}", self.base))
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
            .body_mut()
            .read_to_string()
            .expect("body")
    }

    /// The job's dashboard figures.
    pub fn figures(&self) -> serde_json::Value {
        let list: serde_json::Value =
            serde_json::from_str(&self.get("/v1/jobs")).expect("job list");
        let id = list["jobs"][0]["id"].as_str().expect("the job's id");
        serde_json::from_str(&self.get(&format!("/v1/jobs/{id}/dashboard"))).expect("figures")
    }

    /// Waits until `done(figures)` holds, for up to `within`.
    pub fn wait_for(
        &self,
        within: Duration,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let started = Instant::now();
        loop {
            let f = self.figures();
            if done(&f) {
                return f;
            }
            assert!(started.elapsed() < within, "figures never got there: {f:#}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Closes the input and waits for the job to end.
    pub fn finish(mut self) -> std::process::ExitStatus {
        drop(self.stdin.take());
        self.child.wait().expect("wait for sluice")
    }
}

impl Drop for UiJob {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
