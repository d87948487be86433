//! A tenant's job in the server: its status, and the supervisor that runs
//! it, restarts it with backoff when it fails, and pauses it when it fails
//! too often (the breaker).

use super::lock;
use super::log::SharedRing;
use super::persist::{self, AdoptedRecord, JobRecord, RecordState};
use super::tenant::Breaker;
use crate::exec::{Job, JobError, JobStats, StatsSnapshot};
use crate::signal::{Halt, stopped};
use crate::spec::{DEFAULT_CHECKPOINT_INTERVAL, Every, JobConfig};
use crate::wasm::Runtime;
use crate::wasm::reload::Reloader;
use serde::Serialize;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{Notify, watch};

mod supervise;
pub use supervise::{BuildError, Recipe, supervise};

/// Where a job is in its life.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum Status {
    /// Processing records.
    Running,
    /// Failed; waiting to be started again.
    Restarting {
        /// Why the last run failed.
        reason: String,
        /// Milliseconds until the restart.
        in_ms: u64,
    },
    /// Its sources ended and everything was written.
    Finished,
    /// It could not be started again (its configuration no longer builds).
    Failed {
        /// Why.
        reason: String,
    },
    /// Stopped on request.
    Stopped,
    /// Failed too often; waits for `POST /v1/jobs/{id}/resume` or a stop.
    Paused {
        /// How often it failed, and the last error (a limit breach names
        /// the limit and its value).
        reason: String,
    },
}

impl Status {
    /// Whether the job holds resources (counts against `max_jobs`): a
    /// paused job does too, until it is stopped.
    pub fn is_active(&self) -> bool {
        matches!(
            self,
            Status::Running | Status::Restarting { .. } | Status::Paused { .. }
        )
    }

    /// Whether the job is over for good.
    pub fn is_ended(&self) -> bool {
        matches!(
            self,
            Status::Finished | Status::Failed { .. } | Status::Stopped
        )
    }
}

/// A job the server runs for a tenant.
pub struct JobEntry {
    /// Who it is: id, number, owner, names, submission time, directory.
    pub who: Identity,
    /// Its dead-letter file.
    pub dead_letter: PathBuf,
    /// Its recent log lines.
    pub logs: SharedRing,
    state: Mutex<State>,
    stop: watch::Sender<bool>,
    /// Every run's halt.
    halt: Halt,
    resume: Notify,
    /// Its tenant stopped it: it stays stopped after a restart.
    tenant_stop: AtomicBool,
    /// The server stopped it, on its way down: its record keeps the state
    /// before, so a restart starts it again.
    server_stop: AtomicBool,
    /// The stop asked for drains the job (`stop?drain=true`).
    drain: AtomicBool,
    /// The record last written; held while one is written, so that records
    /// reach the disk in the order of the states they hold.
    saved: Mutex<Option<Vec<u8>>>,
}

/// Who a job is: what [`JobEntry::new`] needs.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The job's id: server-wide unique, hard to guess.
    pub id: String,
    /// Its number among the server's jobs (kept across restarts).
    pub seq: u64,
    /// The owner.
    pub tenant: String,
    /// The job file's name, or `job`.
    pub display_name: String,
    /// The job's name in the engine and the logs: `<tenant>/<id>`.
    pub engine_name: String,
    /// When it was submitted.
    pub submitted: SystemTime,
    /// Its directory (`tenants/<tenant>/jobs/<id>`): job file, record,
    /// checkpoints, versions, dead letters.
    pub dir: PathBuf,
}

struct State {
    status: Status,
    /// Runs started so far (1 for the first).
    runs: u64,
    /// The current (or last) run's counters.
    stats: Option<Arc<JobStats>>,
    /// The last run's counters when it ended (a restart starts from zero).
    previous: StatsSnapshot,
    /// When the job last ended, or started again.
    changed: Instant,
    /// The current run's handle for new operator versions.
    reloader: Option<Reloader>,
    /// The current run's drain flag.
    drain: Option<Arc<AtomicBool>>,
    /// Operator versions adopted while the job ran, by operator: a restart
    /// builds the job with these.
    adopted: Vec<(String, PathBuf)>,
}

/// What `GET /v1/jobs/{id}` returns.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    /// The job's id.
    pub id: String,
    /// The job file's `name`.
    pub name: String,
    /// Status; `state` is one of `running`, `restarting`, `finished`,
    /// `failed`, `stopped`, `paused`, with `reason` where there is one.
    pub status: Status,
    /// Runs started (restarts + 1).
    pub runs: u64,
    /// Seconds since the Unix epoch when it was submitted.
    pub submitted: u64,
}

/// What `GET /v1/jobs/{id}/metrics` returns.
#[derive(Debug, Clone, Serialize)]
pub struct Metrics {
    /// The job's id.
    pub id: String,
    /// The state, as in [`JobView`].
    pub state: String,
    /// Runs started.
    pub runs: u64,
    /// The current run's counters (the last run's when none is running).
    #[serde(flatten)]
    pub stats: StatsSnapshot,
}

impl JobEntry {
    /// A job about to start.
    pub fn new(who: Identity, logs: SharedRing) -> Arc<Self> {
        let (stop, _) = watch::channel(false);
        Arc::new(JobEntry {
            dead_letter: who.dir.join("dead-letters.jsonl"),
            who,
            logs,
            state: Mutex::new(State {
                status: Status::Running,
                runs: 0,
                stats: None,
                previous: StatsSnapshot::default(),
                changed: Instant::now(),
                reloader: None,
                drain: None,
                adopted: Vec::new(),
            }),
            stop,
            halt: Halt::default(),
            resume: Notify::new(),
            tenant_stop: AtomicBool::new(false),
            server_stop: AtomicBool::new(false),
            drain: AtomicBool::new(false),
            saved: Mutex::new(None),
        })
    }

    /// A job loaded from its record after a restart, in the state the
    /// record gives (`running` jobs are started by [`supervise`]); `saved`
    /// is the record as read.
    pub fn restored(
        who: Identity,
        logs: SharedRing,
        record: &JobRecord,
        saved: Vec<u8>,
    ) -> Arc<Self> {
        let entry = Self::new(who, logs);
        let reason = record.reason.clone().unwrap_or_default();
        let status = match record.state {
            RecordState::Running => Status::Running,
            RecordState::Paused => Status::Paused { reason },
            RecordState::Stopped => Status::Stopped,
            RecordState::Finished => Status::Finished,
            RecordState::Failed => Status::Failed { reason },
        };
        if record.state == RecordState::Stopped {
            entry.tenant_stop.store(true, Ordering::Relaxed);
        }
        let ended = status.is_ended();
        entry.set(status);
        if ended {
            // When it ended is not kept: taken as when it was submitted, so
            // the oldest go first when ended jobs are forgotten.
            let age = SystemTime::now()
                .duration_since(entry.who.submitted)
                .unwrap_or_default();
            let mut s = entry.state();
            s.changed = Instant::now().checked_sub(age).unwrap_or(s.changed);
        }
        let versions = entry.who.dir.join("versions");
        entry.state().adopted = record
            .adopted
            .iter()
            .map(|a| (a.operator.clone(), versions.join(&a.file)))
            .collect();
        *lock(&entry.saved) = Some(saved);
        entry
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The current status.
    pub fn status(&self) -> Status {
        self.state().status.clone()
    }

    /// How long ago the job ended (for pruning), `None` while it has not.
    pub fn ended_for(&self) -> Option<Duration> {
        let s = self.state();
        s.status.is_ended().then(|| s.changed.elapsed())
    }

    /// The status view.
    pub fn view(&self) -> JobView {
        let s = self.state();
        JobView {
            id: self.who.id.clone(),
            name: self.who.display_name.clone(),
            status: s.status.clone(),
            runs: s.runs,
            submitted: self
                .who
                .submitted
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        }
    }

    /// The current (or last) run's figures, for the dashboard and the
    /// Prometheus route; `None` before a run has started.
    pub fn figures(&self) -> Option<crate::metrics::JobFigures> {
        let s = self.state();
        let state = serde_json::to_value(&s.status)
            .ok()
            .and_then(|v| v["state"].as_str().map(str::to_string))
            .unwrap_or_default();
        s.stats.as_ref()?.figures(&self.who.display_name, &state)
    }

    /// The counters.
    pub fn metrics(&self) -> Metrics {
        let s = self.state();
        let stats = match &s.stats {
            Some(stats) => stats.snapshot(),
            None => s.previous.clone(),
        };
        let state = serde_json::to_value(&s.status)
            .ok()
            .and_then(|v| v["state"].as_str().map(str::to_string))
            .unwrap_or_default();
        Metrics {
            id: self.who.id.clone(),
            state,
            runs: s.runs,
            stats,
        }
    }

    /// The running job's handle for new operator versions; `None` when no
    /// run is going on.
    pub fn reloader(&self) -> Option<Reloader> {
        self.state().reloader.clone()
    }

    /// Notes that the job adopted the component at `path` as `operator`, so
    /// that a restart runs it too (also after the server's: call
    /// [`JobEntry::save`]).
    /// Returns the file it replaces, `None` for the job file's own.
    pub fn adopted(&self, operator: &str, path: PathBuf) -> Option<PathBuf> {
        let mut s = self.state();
        let replaced = s
            .adopted
            .iter()
            .position(|(op, _)| op == operator)
            .map(|i| s.adopted.remove(i).1);
        s.adopted.push((operator.to_string(), path));
        replaced
    }

    /// Notes that the job went back from the version it adopted last for
    /// `operator` to `to` (what [`JobEntry::adopted`] returned).
    pub fn rolled_back(&self, operator: &str, to: Option<PathBuf>) {
        let mut s = self.state();
        s.adopted.retain(|(op, _)| op != operator);
        if let Some(path) = to {
            s.adopted.push((operator.to_string(), path));
        }
    }

    /// Asks the job to stop: the current batch is finished and the sinks
    /// flushed; a restarting or paused job stops at once.
    pub fn request_stop(&self) {
        self.stop.send_replace(true);
    }

    /// The tenant's stop: as [`JobEntry::request_stop`], and the job stays
    /// stopped after a restart (call [`JobEntry::save`]). With `drain`, the
    /// running job emits every open window before it stops; without, a
    /// checkpointed job keeps them in its last checkpoint.
    pub fn stop_by_tenant(&self, drain: bool) {
        if drain {
            // Before the stop, in the state's lock: a run that starts now
            // finds the flag, one already running gets it.
            let s = self.state();
            self.drain.store(true, Ordering::SeqCst);
            if let Some(flag) = &s.drain {
                flag.store(true, Ordering::SeqCst);
            }
        }
        self.tenant_stop.store(true, Ordering::SeqCst);
        self.request_stop();
    }

    /// The server's stop on its way down: as [`JobEntry::request_stop`],
    /// but the record keeps the state before (a restart starts the job
    /// again, from its checkpoint).
    pub fn stop_by_server(&self) {
        self.server_stop.store(true, Ordering::SeqCst);
        self.request_stop();
    }

    /// Stops the job by force, for a job that was asked to stop and has
    /// not: its operator calls fail within about 100 ms (the batch in
    /// progress is lost, the sinks keep what they had written), and it
    /// ends as `stopped`.
    pub fn halt(&self) {
        self.request_stop();
        self.halt.raise();
    }

    /// Whether a stop was asked for.
    pub fn stop_requested(&self) -> bool {
        *self.stop.borrow()
    }

    /// Starts a paused job again, with its failure count cleared. Returns
    /// false if the job is not paused.
    pub fn resume(&self) -> bool {
        let mut s = self.state();
        if !matches!(s.status, Status::Paused { .. }) {
            return false;
        }
        s.status = Status::Running;
        drop(s);
        self.resume.notify_one();
        true
    }

    fn set(&self, status: Status) {
        let mut s = self.state();
        s.status = status;
        s.changed = Instant::now();
    }

    /// Marks a job loaded from its record that can no longer be started
    /// as failed, in its record too. Blocking file I/O.
    pub fn cannot_restore(&self, reason: String) -> std::io::Result<()> {
        self.save_as(Some(Status::Failed { reason }))
    }

    /// The record of the job in `status`.
    fn record(&self, status: &Status) -> JobRecord {
        let (state, reason) = match status {
            Status::Finished => (RecordState::Finished, None),
            Status::Failed { reason } => (RecordState::Failed, Some(reason.clone())),
            _ if self.tenant_stop.load(Ordering::SeqCst) => (RecordState::Stopped, None),
            Status::Stopped => (RecordState::Stopped, None),
            Status::Paused { reason } => (RecordState::Paused, Some(reason.clone())),
            Status::Running | Status::Restarting { .. } => (RecordState::Running, None),
        };
        let adopted = self
            .state()
            .adopted
            .iter()
            .filter_map(|(operator, path)| {
                Some(AdoptedRecord {
                    operator: operator.clone(),
                    file: path.file_name()?.to_str()?.to_string(),
                })
            })
            .collect();
        JobRecord {
            format: persist::FORMAT,
            id: self.who.id.clone(),
            tenant: self.who.tenant.clone(),
            seq: self.who.seq,
            name: self.who.display_name.clone(),
            submitted_ms: self
                .who
                .submitted
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            state,
            reason,
            adopted,
        }
    }

    /// Writes the job's record (`job.json` in its directory) if it changed.
    /// A job whose directory is gone (its tenant's data was deleted) writes
    /// nothing. Blocking file I/O.
    pub fn save(&self) -> std::io::Result<()> {
        self.save_as(None)
    }

    /// Writes the record of the job in `status` (else its current status),
    /// then makes `status` the job's, both in the record's lock.
    fn save_as(&self, status: Option<Status>) -> std::io::Result<()> {
        let mut saved = lock(&self.saved);
        let current = status.clone().unwrap_or_else(|| self.status());
        let mut written = Ok(());
        // The server's own stop leaves the record as it was.
        let keep = matches!(current, Status::Stopped)
            && self.server_stop.load(Ordering::SeqCst)
            && !self.tenant_stop.load(Ordering::SeqCst);
        if !keep {
            let json =
                serde_json::to_vec_pretty(&self.record(&current)).map_err(std::io::Error::other)?;
            if saved.as_deref() != Some(json.as_slice()) {
                written = match persist::write_atomically(
                    &self.who.dir.join(persist::JOB_RECORD),
                    &json,
                    false,
                ) {
                    Ok(()) => {
                        *saved = Some(json);
                        Ok(())
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(e),
                };
            }
        }
        if let Some(status) = status {
            self.set(status);
        }
        written
    }

    /// Makes `status` the job's, its record written first (off the async
    /// threads); a record that cannot be written is logged.
    async fn settle(self: &Arc<Self>, status: Status) {
        let (entry, then) = (self.clone(), status.clone());
        let saved = tokio::task::spawn_blocking(move || entry.save_as(Some(then))).await;
        match saved {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.log(
                tracing::Level::WARN,
                &format!("cannot write the job's record: {e}"),
            ),
            Err(e) => {
                self.log(
                    tracing::Level::WARN,
                    &format!("writing the job's record ended abnormally: {e}"),
                );
                self.set(status);
            }
        }
    }

    fn log(&self, level: tracing::Level, message: &str) {
        let job = self.who.engine_name.as_str();
        match level {
            tracing::Level::ERROR => {
                tracing::error!(target: "sluice::serve", job = %job, "{message}")
            }
            tracing::Level::WARN => {
                tracing::warn!(target: "sluice::serve", job = %job, "{message}")
            }
            _ => tracing::info!(target: "sluice::serve", job = %job, "{message}"),
        }
    }
}
