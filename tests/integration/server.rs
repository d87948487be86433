//! A `sluice serve` process for the tests that drive the server over
//! HTTP: started on a free port with a tenants file, asked as a tenant or
//! the admin, polled until a condition holds, restarted on the same data
//! directory, killed when dropped.

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long any condition polled for may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(90);

/// A running `sluice serve`, killed when dropped.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub address: String,
    pub dir: tempfile::TempDir,
    pub agent: ureq::Agent,
}

/// A response: status, headers we look at, and the body as JSON (or a
/// JSON string when it is not JSON).
pub struct Reply {
    pub status: u16,
    pub www_authenticate: Option<String>,
    pub body: Value,
    pub text: String,
}

impl Server {
    pub fn start(tenants_toml: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("tenants.toml");
        std::fs::write(&config, tenants_toml).unwrap();
        let (child, base) = spawn(dir.path());
        let address = base.trim_start_matches("http://").to_string();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Server {
            child,
            base,
            address,
            dir,
            agent,
        }
    }

    /// Ends the server with `signal` (`libc::SIGTERM`: it stops its jobs
    /// and exits; `libc::SIGKILL`: it is killed on the spot), then starts
    /// it again with the same tenants file and data directory, on a new
    /// port.
    pub fn restart(&mut self, signal: i32) {
        let pid = self.child.id() as i32;
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill {pid}");
        let status = self.child.wait().unwrap();
        if signal == libc::SIGTERM {
            assert!(status.success(), "{status}; {}", self.log());
        }
        let (child, base) = spawn(self.dir.path());
        self.child = child;
        self.address = base.trim_start_matches("http://").to_string();
        self.base = base;
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&[u8]>,
    ) -> Reply {
        let url = format!("{}{path}", self.base);
        let mut req = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let req = req.body(body.unwrap_or_default().to_vec()).unwrap();
        let mut resp = self
            .agent
            .run(req)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let www_authenticate = resp
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.clone()));
        Reply {
            status,
            www_authenticate,
            body,
            text,
        }
    }

    pub fn get(&self, path: &str, token: &str) -> Reply {
        self.request("GET", path, Some(token), None)
    }

    pub fn post(&self, path: &str, token: &str, body: &[u8]) -> Reply {
        self.request("POST", path, Some(token), Some(body))
    }

    pub fn put(&self, path: &str, token: &str, body: &[u8]) -> Reply {
        self.request("PUT", path, Some(token), Some(body))
    }

    /// Uploads a fixture component as plugin `name`; it must be accepted.
    pub fn upload(&self, token: &str, name: &str, wasm: &str) {
        let r = self.put(
            &format!("/v1/plugins/{name}"),
            token,
            &std::fs::read(wasm).unwrap(),
        );
        assert_eq!(r.status, 201, "{}", r.text);
    }

    /// Submits a job file; it must be accepted. Returns the job's id.
    pub fn submit(&self, token: &str, job: &str) -> String {
        let r = self.post("/v1/jobs", token, job.as_bytes());
        assert_eq!(r.status, 201, "{}", r.text);
        r.body["id"].as_str().unwrap().to_string()
    }

    pub fn status(&self, token: &str, id: &str) -> Value {
        let r = self.get(&format!("/v1/jobs/{id}"), token);
        assert_eq!(r.status, 200, "{}", r.text);
        r.body["status"].clone()
    }

    pub fn metric(&self, token: &str, id: &str, name: &str) -> u64 {
        let r = self.get(&format!("/v1/jobs/{id}/metrics"), token);
        assert_eq!(r.status, 200, "{}", r.text);
        r.body[name]
            .as_u64()
            .unwrap_or_else(|| panic!("{}", r.text))
    }

    /// Polls until the job's state is `state`; returns its status.
    pub fn wait_for_state(&self, token: &str, id: &str, state: &str) -> Value {
        let mut last = Value::Null;
        let found = poll(|| {
            last = self.status(token, id);
            last["state"] == state
        });
        assert!(
            found,
            "job {id} never reached `{state}`: last {last}; {}",
            self.log()
        );
        last
    }

    /// Polls until `metric` of the job is above `floor`; returns it.
    pub fn wait_for_metric_above(&self, token: &str, id: &str, metric: &str, floor: u64) -> u64 {
        let mut last = 0;
        let found = poll(|| {
            last = self.metric(token, id, metric);
            last > floor
        });
        assert!(
            found,
            "{metric} of job {id} stayed at {last}; {}",
            self.log()
        );
        last
    }

    /// How many of the server's threads have a name starting with `prefix`
    /// (a job's workers are `sluice-worker-N`, and live while it runs).
    pub fn threads(&self, prefix: &str) -> usize {
        let tasks = format!("/proc/{}/task", self.child.id());
        std::fs::read_dir(tasks)
            .unwrap()
            .flatten()
            .filter(|t| {
                std::fs::read_to_string(t.path().join("comm"))
                    .is_ok_and(|name| name.starts_with(prefix))
            })
            .count()
    }

    pub fn log(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        format!(
            "server log (last lines):\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    }
}

/// Starts `sluice serve` with `dir`'s `tenants.toml` and `data`, its
/// stderr appended to `server.log`; returns it and its base URL.
fn spawn(dir: &std::path::Path) -> (Child, String) {
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice-under-test"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(dir.join("tenants.toml"))
        .arg("--data")
        .arg(dir.join("data"))
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let Some(base) = line.trim().strip_prefix("listening on ") else {
        let _ = child.kill();
        let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
        panic!("no address from the server: {line:?}; stderr: {log}");
    };
    (child, base.to_string())
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Calls `check` until it returns true or [`PATIENCE`] runs out.
pub fn poll(mut check: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < PATIENCE {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// A TCP server on loopback that writes `lines` to every connection and
/// closes it (the socket source reconnects). Returns its address.
pub fn line_server(lines: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let _ = conn.write_all(lines.as_bytes());
            // Hold the connection a moment so the lines are read before
            // the reconnect.
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    address
}

/// One attack on the sandbox by a tenant's job, and what must come of it.
pub struct Attack {
    /// The uploaded component that makes it: `hostile` or `trap`.
    pub plugin: &'static str,
    /// The job's input, one record per line.
    pub input: String,
    /// Text the job's output, dead letters or log must hold (one of).
    pub evidence: &'static [&'static str],
    /// Where to look: `out`, `dead` or `logs`.
    pub place: &'static str,
}

/// The attacks of the `hostile` and `trap` fixtures that a job under
/// `on_breach = "dead-letter"` survives to the end of its input: deep
/// recursion, reading `/etc/passwd`, connecting to `address`, a huge
/// output, a panic, a log flood.
pub fn contained_attacks(address: SocketAddr) -> Vec<Attack> {
    let chatty: Vec<String> = (0..20).map(|i| format!("CHATTY {i}")).collect();
    vec![
        Attack {
            plugin: "hostile",
            input: "before\nDEEP\nafter\n".into(),
            evidence: &["stack overflow", "out-of-bounds memory access"],
            place: "dead",
        },
        Attack {
            plugin: "hostile",
            input: "READ /etc/passwd\n".into(),
            evidence: &["READ /etc/passwd: denied: "],
            place: "out",
        },
        Attack {
            plugin: "hostile",
            input: format!("CONNECT {address}\n"),
            evidence: &["denied: "],
            place: "out",
        },
        Attack {
            plugin: "hostile",
            input: "before\nHUGE 8\nafter\n".into(),
            evidence: &["limit `output_ratio`"],
            place: "dead",
        },
        Attack {
            plugin: "trap",
            input: "before\nBOOM here\nafter\n".into(),
            evidence: &["found the marker"],
            place: "dead",
        },
        Attack {
            plugin: "trap",
            input: chatty.join("\n"),
            evidence: &["operator is logging too much: dropped"],
            place: "logs",
        },
    ]
}

impl Server {
    /// Runs `attack` as a job of the tenant of `token` (which has uploaded
    /// the attack's plugin) over the file `<name>.txt`, into
    /// `out-<name>.jsonl`, with a dead-letter file and `on_breach =
    /// "dead-letter"`; checks that the job finishes with the evidence, never
    /// with a line of `/etc/passwd`, and that of a `dead` attack only the
    /// record at fault is set aside. Returns the job's id.
    pub fn contain(&self, token: &str, name: &str, attack: &Attack) -> String {
        let file = format!("{name}.txt");
        let put = self.put(&format!("/v1/files/{file}"), token, attack.input.as_bytes());
        assert_eq!(put.status, 201, "{}", put.text);
        let id = self.submit(
            token,
            &format!(
                "workers = 1\n[limits]\non_breach = \"dead-letter\"\n\
                 [[sources]]\nkind = \"file\"\npath = \"{file}\"\n\
                 [[operators]]\nplugin = \"{}\"\n\
                 [[sinks]]\nkind = \"jsonl\"\npath = \"out-{name}.jsonl\"\n\
                 [dead_letter]\npath = \"dead.jsonl\"\n",
                attack.plugin
            ),
        );
        self.wait_for_state(token, &id, "finished");
        let evidence = match attack.place {
            "out" => self.get(&format!("/v1/files/out-{name}.jsonl"), token).text,
            "dead" => self.get(&format!("/v1/jobs/{id}/dead-letters"), token).text,
            _ => {
                self.get(&format!("/v1/jobs/{id}/logs?lines=1000"), token)
                    .text
            }
        };
        assert!(
            attack.evidence.iter().any(|e| evidence.contains(e)),
            "{name} ({}): none of {:?} in its {}: {evidence}",
            attack.input.lines().next().unwrap_or_default(),
            attack.evidence,
            attack.place
        );
        assert!(!evidence.contains("root:"), "{evidence}");
        if attack.place == "dead" {
            // Only the record at fault is set aside; its neighbours go on.
            assert_eq!(self.metric(token, &id, "dead_lettered"), 1);
            assert_eq!(self.metric(token, &id, "records_out"), 2);
        }
        id
    }
}
