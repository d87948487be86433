//! A tenant's job in the server: its status, and the supervisor that runs
//! it, restarts it with backoff when it fails, and pauses it when it fails
//! too often (the breaker).

use super::log::SharedRing;
use super::tenant::Breaker;
use crate::exec::{Job, JobError, JobStats, StatsSnapshot};
use crate::signal::{Halt, stopped};
use crate::spec::JobConfig;
use crate::wasm::Runtime;
use crate::wasm::reload::Reloader;
use serde::Serialize;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{Notify, watch};

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
    /// Server-wide unique id, hard to guess.
    pub id: String,
    /// The owner.
    pub tenant: String,
    /// The name the job file gave, or `job`.
    pub display_name: String,
    /// The job's name in the engine and the logs: `<tenant>/<id>`.
    pub engine_name: String,
    /// When it was submitted.
    pub submitted: SystemTime,
    /// Its dead-letter file.
    pub dead_letter: PathBuf,
    /// Its recent log lines.
    pub logs: SharedRing,
    state: Mutex<State>,
    stop: watch::Sender<bool>,
    /// Every run's halt.
    halt: Halt,
    resume: Notify,
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
    pub fn new(
        id: String,
        tenant: String,
        display_name: String,
        engine_name: String,
        dead_letter: PathBuf,
        logs: SharedRing,
    ) -> Arc<Self> {
        let (stop, _) = watch::channel(false);
        Arc::new(JobEntry {
            id,
            tenant,
            display_name,
            engine_name,
            submitted: SystemTime::now(),
            dead_letter,
            logs,
            state: Mutex::new(State {
                status: Status::Running,
                runs: 0,
                stats: None,
                previous: StatsSnapshot::default(),
                changed: Instant::now(),
                reloader: None,
                adopted: Vec::new(),
            }),
            stop,
            halt: Halt::default(),
            resume: Notify::new(),
        })
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
            id: self.id.clone(),
            name: self.display_name.clone(),
            status: s.status.clone(),
            runs: s.runs,
            submitted: self
                .submitted
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        }
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
            id: self.id.clone(),
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
    /// that a restart runs it too.
    pub fn adopted(&self, operator: &str, path: PathBuf) {
        let mut s = self.state();
        s.adopted.retain(|(op, _)| op != operator);
        s.adopted.push((operator.to_string(), path));
    }

    /// Asks the job to stop: the current batch is finished and the sinks
    /// flushed; a restarting or paused job stops at once.
    pub fn request_stop(&self) {
        self.stop.send_replace(true);
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

    fn log(&self, level: tracing::Level, message: &str) {
        let job = self.engine_name.as_str();
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

/// What the supervisor needs to build the job again after a failure.
pub struct Recipe {
    /// The vetted job file.
    pub config: JobConfig,
    /// The path relative paths would resolve against (the tenant's file
    /// area; every path is absolute by now).
    pub path: PathBuf,
    /// The runtime the job runs on.
    pub runtime: Runtime,
}

/// Runs `first` (already built from `recipe`), then restarts it after each
/// failure with backoff, until it finishes, is stopped, or fails
/// `breaker.failures` times within `breaker.window` and is paused.
pub async fn supervise(entry: Arc<JobEntry>, first: Job, recipe: Recipe, breaker: Breaker) {
    let mut stop = entry.stop.subscribe();
    let mut next = Some(first);
    let mut failures: VecDeque<Instant> = VecDeque::new();
    let mut backoff = breaker.backoff;
    loop {
        if entry.stop_requested() {
            entry.set(Status::Stopped);
            break;
        }
        let job = match next.take() {
            Some(job) => Ok(job),
            None => {
                let adopted = entry.state().adopted.clone();
                build(&recipe, &adopted).await
            }
        };
        let outcome: Result<(), String> = match job {
            Ok(job) => {
                let job = job.with_halt(entry.halt.clone());
                {
                    let mut s = entry.state();
                    s.runs += 1;
                    s.stats = Some(job.stats());
                    s.reloader = Some(job.reloader());
                    s.status = Status::Running;
                }
                // A panic in the job's task ends that task, not the server.
                let run = tokio::spawn(job.run(stop.clone())).await;
                let mut s = entry.state();
                if let Some(stats) = s.stats.take() {
                    s.previous = stats.snapshot();
                }
                s.reloader = None;
                drop(s);
                match run {
                    Ok(Ok(summary)) if summary.interrupted || entry.stop_requested() => {
                        entry.log(tracing::Level::INFO, &summary.to_string());
                        entry.set(Status::Stopped);
                        break;
                    }
                    Ok(Ok(summary)) => {
                        entry.log(tracing::Level::INFO, &summary.to_string());
                        entry.set(Status::Finished);
                        break;
                    }
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(e) => Err(format!("the job's task ended abnormally: {e}")),
                }
            }
            Err(BuildError::Permanent(reason)) => {
                entry.log(
                    tracing::Level::ERROR,
                    &format!("cannot start again: {reason}"),
                );
                entry.set(Status::Failed { reason });
                break;
            }
            Err(BuildError::Transient(reason)) => Err(reason),
        };
        let Err(reason) = outcome else { continue };
        if entry.stop_requested() {
            entry.log(
                tracing::Level::WARN,
                &format!("failed while stopping: {reason}"),
            );
            entry.set(Status::Stopped);
            break;
        }
        let now = Instant::now();
        failures.push_back(now);
        while failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > breaker.window)
        {
            failures.pop_front();
        }
        if failures.len() >= breaker.failures {
            let why = format!(
                "paused after {} failure(s) within {}: {reason}",
                failures.len(),
                crate::model::units::format_duration(breaker.window)
            );
            entry.log(tracing::Level::ERROR, &why);
            entry.set(Status::Paused { reason: why });
            tokio::select! {
                _ = entry.resume.notified() => {
                    entry.log(tracing::Level::INFO, "resumed");
                    failures.clear();
                    backoff = breaker.backoff;
                    continue;
                }
                _ = stopped(&mut stop) => {
                    entry.set(Status::Stopped);
                    break;
                }
            }
        }
        entry.log(
            tracing::Level::WARN,
            &format!(
                "run failed ({} of {} allowed within {}); restarting in {}: {reason}",
                failures.len(),
                breaker.failures,
                crate::model::units::format_duration(breaker.window),
                crate::model::units::format_duration(backoff)
            ),
        );
        entry.set(Status::Restarting {
            reason,
            in_ms: backoff.as_millis() as u64,
        });
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stopped(&mut stop) => {
                entry.set(Status::Stopped);
                break;
            }
        }
        backoff = (backoff * 2).min(breaker.max_backoff);
    }
}

enum BuildError {
    /// The job file no longer builds: restarting will not help.
    Permanent(String),
    /// Something outside the job file (a missing input, a broker).
    Transient(String),
}

/// Builds the job of `recipe`, with the operator versions it `adopted`.
async fn build(recipe: &Recipe, adopted: &[(String, PathBuf)]) -> Result<Job, BuildError> {
    let mut config = recipe.config.clone();
    for op in &mut config.operators {
        let op = op.get_mut();
        let name = op.display_name();
        if let Some((_, path)) = adopted.iter().find(|(n, _)| *n == name) {
            // The operator keeps its name, which came from the first file.
            op.name = Some(name);
            op.plugin = Some(path.clone());
        }
    }
    let path = recipe.path.clone();
    let runtime = recipe.runtime.clone();
    // Loading plugins compiles them (or reads the cache): not on the
    // async threads.
    match tokio::task::spawn_blocking(move || Job::from_config(config, &path, &runtime)).await {
        Ok(Ok(job)) => Ok(job),
        Ok(Err(e @ (JobError::Config(_) | JobError::Invalid(_) | JobError::Load { .. }))) => {
            Err(BuildError::Permanent(e.to_string()))
        }
        Ok(Err(e)) => Err(BuildError::Transient(e.to_string())),
        Err(e) => Err(BuildError::Transient(format!(
            "building the job ended abnormally: {e}"
        ))),
    }
}
