//! The supervisor of one server job: builds it (from its [`Recipe`],
//! checkpointed under the server's data directory unless its file names a
//! path), runs it, and builds and runs it again after a failure, behind
//! the breaker.

use super::*;

/// What the supervisor needs to build the job again after a failure.
pub struct Recipe {
    /// The vetted job file.
    pub config: JobConfig,
    /// The path relative paths would resolve against (the tenant's file
    /// area; every path is absolute by now).
    pub path: PathBuf,
    /// The runtime the job runs on.
    pub runtime: Runtime,
    /// Where the job keeps its checkpoints unless its `[checkpoint]` names
    /// a path (`tenants/<tenant>/jobs/<id>/checkpoints`).
    pub checkpoints: PathBuf,
}

/// Runs the job of `recipe` (`first`, if already built from it), then
/// restarts it after each failure with backoff, until it finishes, is
/// stopped, or fails `breaker.failures` times within `breaker.window` and
/// is paused. Every run is built with the same checkpoint directory, so a
/// restarted job resumes from its last checkpoint. A job restored paused
/// waits for a resume first.
pub async fn supervise(entry: Arc<JobEntry>, first: Option<Job>, recipe: Recipe, breaker: Breaker) {
    let mut stop = entry.stop.subscribe();
    let mut next = first;
    let mut failures: VecDeque<Instant> = VecDeque::new();
    let mut backoff = breaker.backoff;
    if matches!(entry.status(), Status::Paused { .. }) {
        tokio::select! {
            _ = entry.resume.notified() => entry.log(tracing::Level::INFO, "resumed"),
            _ = stopped(&mut stop) => {
                entry.settle(Status::Stopped).await;
                return;
            }
        }
    }
    loop {
        if entry.stop_requested() {
            entry.settle(Status::Stopped).await;
            break;
        }
        let job = match next.take() {
            Some(job) => Ok(job),
            None => {
                let adopted = entry.state().adopted.clone();
                recipe.build(&adopted).await
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
                    let drain = job.drain_flag();
                    if entry.drain.load(Ordering::SeqCst) {
                        drain.store(true, Ordering::SeqCst);
                    }
                    s.drain = Some(drain);
                    s.status = Status::Running;
                }
                // A panic in the job's task ends that task, not the server.
                let run = tokio::spawn(job.run(stop.clone())).await;
                {
                    let mut s = entry.state();
                    if let Some(stats) = s.stats.take() {
                        s.previous = stats.snapshot();
                    }
                    s.reloader = None;
                    s.drain = None;
                }
                match run {
                    Ok(Ok(summary)) if summary.interrupted || entry.stop_requested() => {
                        entry.log(tracing::Level::INFO, &summary.to_string());
                        entry.settle(Status::Stopped).await;
                        break;
                    }
                    Ok(Ok(summary)) => {
                        entry.log(tracing::Level::INFO, &summary.to_string());
                        entry.settle(Status::Finished).await;
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
                entry.settle(Status::Failed { reason }).await;
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
            entry.settle(Status::Stopped).await;
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
            entry.settle(Status::Paused { reason: why }).await;
            tokio::select! {
                _ = entry.resume.notified() => {
                    entry.log(tracing::Level::INFO, "resumed");
                    failures.clear();
                    backoff = breaker.backoff;
                    continue;
                }
                _ = stopped(&mut stop) => {
                    entry.settle(Status::Stopped).await;
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
                entry.settle(Status::Stopped).await;
                break;
            }
        }
        backoff = (backoff * 2).min(breaker.max_backoff);
    }
}

/// Why a job could not be built.
#[derive(Debug)]
pub enum BuildError {
    /// The job file no longer builds: restarting will not help.
    Permanent(String),
    /// Something outside the job file (a missing input, a broker).
    Transient(String),
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildError::Permanent(m) | BuildError::Transient(m) => f.write_str(m),
        }
    }
}

impl Recipe {
    /// Builds the job, with the operator versions it `adopted`, and
    /// checkpointed: where its `[checkpoint]` says, else in
    /// [`Recipe::checkpoints`] (every [`DEFAULT_CHECKPOINT_INTERVAL`], or as
    /// its `[checkpoint]` says). Never with its state reset: a job whose
    /// checkpoint directory holds a checkpoint resumes from it.
    pub async fn build(&self, adopted: &[(String, PathBuf)]) -> Result<Job, BuildError> {
        let mut config = self.config.clone();
        for op in &mut config.operators {
            let op = op.get_mut();
            let name = op.display_name();
            if let Some((_, path)) = adopted.iter().find(|(n, _)| *n == name) {
                // The operator keeps its name, which came from the first file.
                op.name = Some(name);
                match op.reducer {
                    Some(_) => op.reducer = Some(path.clone()),
                    None => op.plugin = Some(path.clone()),
                }
            }
        }
        let path = self.path.clone();
        let runtime = self.runtime.clone();
        let checkpoints = self.checkpoints.clone();
        // Loading plugins compiles them (or reads the cache): not on the
        // async threads.
        let built = tokio::task::spawn_blocking(move || {
            let named = config.checkpoint.as_ref().is_some_and(|c| c.path.is_some());
            Job::from_config(config, &path, &runtime)
                .map(|job| checkpointed(job, named, &checkpoints))
        })
        .await;
        match built {
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
}

/// `job` with its checkpoints in `dir`, unless its file `named` a path.
fn checkpointed(job: Job, named: bool, dir: &Path) -> Job {
    if named {
        return job;
    }
    let every = job
        .checkpointing()
        .map_or(Every::Interval(DEFAULT_CHECKPOINT_INTERVAL), |c| c.every);
    job.with_checkpoint(dir, every)
}
