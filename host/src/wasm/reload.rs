//! Hot reload: a new version of a Wasm operator, swapped into a running job
//! without losing or repeating a record.
//!
//! Every `plugin` operator of a job runs behind a version cell shared by its
//! partition instances. [`Reloader::deploy`] checks a new component (world,
//! `init`) off the hot path and makes it the cell's candidate. Then:
//!
//! 1. **Probe.** The coordinator picks the next micro-batch as the probe
//!    batch. At its start, each partition takes a [`Operator::snapshot`] of
//!    its running instance and [`Operator::restore`]s it into a fresh
//!    instance of the candidate, which then processes the batch *beside* the
//!    running version: the running version's output is the one kept, so the
//!    probe batch is entirely the old version's.
//! 2. **Adopt or refuse.** When the probe batch is done, the coordinator
//!    adopts the candidate if no partition failed to restore it or to run
//!    it; from the next batch on, each partition runs the candidate
//!    instance, which has the state the old one had. Otherwise the
//!    candidate is dropped and the job goes on with the old version, and
//!    says why. Either way the decision falls between two batches, so every
//!    batch is processed by one version, and the versions follow each other
//!    in order.
//!
//! Decisions are logged, counted in [`JobStats`] ([`VersionEvent`]) and
//! reported to the deployer ([`Deployment::outcome`]).

use crate::exec::{JobStats, VersionEvent};
use crate::operators::{BatchContext, Operator, OperatorError, OperatorFactory};
use crate::spec::limits::Limits;
use crate::wasm::{Plugin, Runtime, World};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

/// One version of an operator.
struct Version {
    number: u64,
    factory: Arc<dyn OperatorFactory>,
    /// The start of the component's SHA-256, to tell versions apart in logs.
    label: String,
}

/// A version waiting to be probed or being probed.
struct Candidate {
    version: Arc<Version>,
    /// The micro-batch it is probed on, once the coordinator chose one.
    probe: Option<u64>,
    /// Partition calls it ran during the probe.
    ran: u64,
    /// Why it cannot be adopted, as soon as one partition knows.
    failure: Option<String>,
    done: Option<oneshot::Sender<Outcome>>,
    submitted: Instant,
}

struct CellState {
    current: Arc<Version>,
    candidate: Option<Candidate>,
    next_number: u64,
}

/// The versions of one operator of a job.
pub(crate) struct VersionCell {
    operator: String,
    /// The operator's settings in the job file; every version starts with them.
    config: Vec<(String, String)>,
    state: Mutex<CellState>,
}

impl VersionCell {
    fn lock(&self) -> MutexGuard<'_, CellState> {
        // A panic while holding the lock leaves the state consistent: every
        // change under it is a single assignment.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The version to run at `batch_no`, and the candidate to probe beside
    /// it, if this is its probe batch and it has not failed yet.
    fn view(&self, batch_no: u64) -> (Arc<Version>, Option<Arc<Version>>) {
        let state = self.lock();
        let probing = state
            .candidate
            .as_ref()
            .filter(|c| c.probe == Some(batch_no) && c.failure.is_none())
            .map(|c| c.version.clone());
        (state.current.clone(), probing)
    }

    fn probe_ran(&self, version: u64) {
        if let Some(c) = self.lock().candidate.as_mut()
            && c.version.number == version
        {
            c.ran += 1;
        }
    }

    fn probe_failed(&self, version: u64, reason: String) {
        if let Some(c) = self.lock().candidate.as_mut()
            && c.version.number == version
            && c.failure.is_none()
        {
            c.failure = Some(reason);
        }
    }
}

/// What became of a deployed version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The job runs the version from micro-batch `batch` on.
    Adopted {
        /// The version number.
        version: u64,
        /// The first batch it processed.
        batch: u64,
        /// Time from the deployment to the decision.
        after: Duration,
    },
    /// The job kept its previous version.
    Refused {
        /// The version number.
        version: u64,
        /// Why.
        reason: String,
    },
}

/// Why a version cannot even be tried.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The job has no such operator, or it is not a Wasm `plugin` operator.
    #[error(
        "the job has no plugin operator `{operator}` (its plugin operators: {})",
        if known.is_empty() { "none".to_string() } else { known.join(", ") }
    )]
    UnknownOperator {
        /// The name asked for.
        operator: String,
        /// The operators that can be swapped.
        known: Vec<String>,
    },
    /// The component is not a transformer.
    #[error("operator `{operator}`: version {version} refused: {reason}")]
    Refused {
        /// The operator.
        operator: String,
        /// The number the version would have had.
        version: u64,
        /// Why.
        reason: String,
    },
    /// Another version of the operator is being tried.
    #[error(
        "operator `{operator}`: version {pending} is still being tried; deploy again once it is adopted or refused"
    )]
    Busy {
        /// The operator.
        operator: String,
        /// The version being tried.
        pending: u64,
    },
}

/// A deployed version on its way into the job.
pub struct Deployment {
    /// The number the version got.
    pub version: u64,
    rx: oneshot::Receiver<Outcome>,
}

impl Deployment {
    /// Waits until the job adopted or refused the version. A job that ends
    /// first refuses it.
    pub async fn outcome(self) -> Outcome {
        let version = self.version;
        self.rx.await.unwrap_or(Outcome::Refused {
            version,
            reason: "the job ended before the version was tried".into(),
        })
    }
}

/// The swappable operators of one job; cheap to clone. Get it with
/// [`crate::exec::Job::reloader`] before running the job.
#[derive(Clone)]
pub struct Reloader {
    inner: Arc<Registry>,
}

struct Registry {
    job: String,
    limits: Mutex<Limits>,
    stats: Mutex<Arc<JobStats>>,
    cells: Vec<Arc<VersionCell>>,
    /// The job has ended: no version can be tried any more.
    ended: std::sync::atomic::AtomicBool,
}

impl Reloader {
    pub(crate) fn new(job: &str, cells: Vec<Arc<VersionCell>>) -> Self {
        Reloader {
            inner: Arc::new(Registry {
                job: job.to_string(),
                limits: Mutex::new(Limits::default()),
                stats: Mutex::new(Arc::new(JobStats::default())),
                cells,
                ended: Default::default(),
            }),
        }
    }

    /// Ties the reloader to the job's limits and counters (at build time).
    pub(crate) fn bind(&self, limits: &Limits, stats: &Arc<JobStats>) {
        *lock(&self.inner.limits) = limits.clone();
        *lock(&self.inner.stats) = stats.clone();
    }

    /// The operators that can be swapped, by name.
    pub fn operators(&self) -> Vec<String> {
        self.inner
            .cells
            .iter()
            .map(|c| c.operator.clone())
            .collect()
    }

    /// The version number `operator` runs now.
    pub fn current_version(&self, operator: &str) -> Option<u64> {
        self.cell(operator).map(|c| c.lock().current.number)
    }

    fn cell(&self, operator: &str) -> Option<&Arc<VersionCell>> {
        self.inner.cells.iter().find(|c| c.operator == operator)
    }

    /// Offers `plugin` as the next version of `operator`. The component must
    /// implement the `transform` world and start (`init`) with the
    /// operator's settings; both are checked here, on the caller's thread,
    /// not on the job's. Then the job probes it on its next micro-batch and
    /// adopts or refuses it; [`Deployment::outcome`] tells which.
    pub fn deploy(&self, operator: &str, plugin: &Plugin) -> Result<Deployment, DeployError> {
        let cell = self
            .cell(operator)
            .ok_or_else(|| DeployError::UnknownOperator {
                operator: operator.to_string(),
                known: self.operators(),
            })?;
        let number = {
            let mut state = cell.lock();
            if let Some(c) = &state.candidate {
                return Err(DeployError::Busy {
                    operator: operator.to_string(),
                    pending: c.version.number,
                });
            }
            let number = state.next_number;
            state.next_number += 1;
            number
        };
        let label = plugin.info().sha256.chars().take(12).collect::<String>();
        let refuse = |reason: String| {
            self.record(VersionEvent {
                operator: operator.to_string(),
                version: number,
                batch: 0,
                adopted: false,
                detail: reason.clone(),
            });
            tracing::warn!(job = %self.inner.job, operator, "version {number} ({label}) refused: {reason}");
            DeployError::Refused {
                operator: operator.to_string(),
                version: number,
                reason,
            }
        };
        if plugin.world() != World::Transform {
            return Err(refuse(format!(
                "the component implements the `{}` world; a `plugin` operator needs `transform`",
                plugin.world()
            )));
        }
        let factory: Arc<dyn OperatorFactory> =
            Arc::new(plugin.factory(operator, cell.config.clone()));
        // A version that cannot start is refused before the job sees it.
        let limits = lock(&self.inner.limits).clone();
        if let Err(e) = factory.instantiate_limited(&self.inner.job, 0, &limits) {
            return Err(refuse(format!("it does not start: {e}")));
        }
        let (tx, rx) = oneshot::channel();
        let mut state = cell.lock();
        // Checked under the cell's lock, which `close` takes after setting it.
        if self.inner.ended.load(std::sync::atomic::Ordering::SeqCst) {
            drop(state);
            return Err(refuse("the job has ended".into()));
        }
        if let Some(c) = &state.candidate {
            return Err(DeployError::Busy {
                operator: operator.to_string(),
                pending: c.version.number,
            });
        }
        state.candidate = Some(Candidate {
            version: Arc::new(Version {
                number,
                factory,
                label: label.clone(),
            }),
            probe: None,
            ran: 0,
            failure: None,
            done: Some(tx),
            submitted: Instant::now(),
        });
        tracing::info!(job = %self.inner.job, operator, "version {number} ({label}) ready; probing it on the next batch");
        Ok(Deployment {
            version: number,
            rx,
        })
    }

    fn record(&self, event: VersionEvent) {
        lock(&self.inner.stats).version_event(event);
    }

    /// Called by the coordinator before micro-batch `batch_no` runs: a
    /// waiting candidate is probed on it.
    pub(crate) fn begin_batch(&self, batch_no: u64) {
        for cell in &self.inner.cells {
            if let Some(c) = cell.lock().candidate.as_mut()
                && c.probe.is_none()
            {
                c.probe = Some(batch_no);
            }
        }
    }

    /// Whether a candidate is probed on micro-batch `batch_no`: then every
    /// partition must see the batch, with records or without, so that each
    /// one hands its state to the candidate.
    pub(crate) fn probing(&self, batch_no: u64) -> bool {
        self.inner.cells.iter().any(|c| {
            c.lock()
                .candidate
                .as_ref()
                .is_some_and(|c| c.probe == Some(batch_no))
        })
    }

    /// Refuses every waiting candidate: the job has ended.
    pub(crate) fn close(&self, reason: &str) {
        self.inner
            .ended
            .store(true, std::sync::atomic::Ordering::SeqCst);
        for cell in &self.inner.cells {
            let Some(mut c) = cell.lock().candidate.take() else {
                continue;
            };
            let number = c.version.number;
            self.record(VersionEvent {
                operator: cell.operator.clone(),
                version: number,
                batch: c.probe.unwrap_or(0),
                adopted: false,
                detail: reason.to_string(),
            });
            if let Some(tx) = c.done.take() {
                let _ = tx.send(Outcome::Refused {
                    version: number,
                    reason: reason.to_string(),
                });
            }
        }
    }

    /// Called by the coordinator once micro-batch `batch_no` is processed:
    /// a candidate probed on it is adopted or refused.
    pub(crate) fn end_batch(&self, batch_no: u64) {
        for cell in &self.inner.cells {
            let mut state = cell.lock();
            let Some(c) = state
                .candidate
                .as_mut()
                .filter(|c| c.probe == Some(batch_no))
            else {
                continue;
            };
            if c.failure.is_none() && c.ran == 0 {
                // No partition of this batch reached the operator: probe
                // again on the next one.
                c.probe = None;
                continue;
            }
            let Some(mut c) = state.candidate.take() else {
                continue;
            };
            let number = c.version.number;
            let (outcome, event) = match c.failure.take() {
                None => {
                    let old = std::mem::replace(&mut state.current, c.version.clone());
                    tracing::info!(
                        job = %self.inner.job,
                        operator = %cell.operator,
                        "version {number} ({}) adopted from batch {}, replacing version {} ({}); {:?} after deployment",
                        c.version.label,
                        batch_no + 1,
                        old.number,
                        old.label,
                        c.submitted.elapsed()
                    );
                    (
                        Outcome::Adopted {
                            version: number,
                            batch: batch_no + 1,
                            after: c.submitted.elapsed(),
                        },
                        VersionEvent {
                            operator: cell.operator.clone(),
                            version: number,
                            batch: batch_no + 1,
                            adopted: true,
                            detail: format!("replaced version {}", old.number),
                        },
                    )
                }
                Some(reason) => {
                    let current = state.current.number;
                    tracing::warn!(
                        job = %self.inner.job,
                        operator = %cell.operator,
                        "version {number} ({}) refused after probing it on batch {batch_no}: {reason}; \
                         version {current} goes on",
                        c.version.label
                    );
                    (
                        Outcome::Refused {
                            version: number,
                            reason: reason.clone(),
                        },
                        VersionEvent {
                            operator: cell.operator.clone(),
                            version: number,
                            batch: batch_no,
                            adopted: false,
                            detail: format!("{reason}; version {current} goes on"),
                        },
                    )
                }
            };
            drop(state);
            self.record(event);
            if let Some(tx) = c.done.take() {
                let _ = tx.send(outcome);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Makes a `plugin` operator swappable: the factory of its first version,
/// behind a version cell.
pub(crate) fn swappable(
    plugin: &Plugin,
    name: String,
    config: Vec<(String, String)>,
) -> (Arc<dyn OperatorFactory>, Arc<VersionCell>) {
    let label = plugin.info().sha256.chars().take(12).collect();
    let factory = Arc::new(plugin.factory(name.clone(), config.clone()));
    let cell = Arc::new(VersionCell {
        operator: name,
        config,
        state: Mutex::new(CellState {
            current: Arc::new(Version {
                number: 1,
                factory,
                label,
            }),
            candidate: None,
            next_number: 2,
        }),
    });
    (Arc::new(SwappableFactory { cell: cell.clone() }), cell)
}

/// Makes one [`Swappable`] instance per partition.
struct SwappableFactory {
    cell: Arc<VersionCell>,
}

impl OperatorFactory for SwappableFactory {
    fn name(&self) -> &str {
        &self.cell.operator
    }

    fn instantiate(&self, job: &str, worker: usize) -> Result<Box<dyn Operator>, OperatorError> {
        self.instantiate_limited(job, worker, &Limits::default())
    }

    fn instantiate_limited(
        &self,
        job: &str,
        worker: usize,
        limits: &Limits,
    ) -> Result<Box<dyn Operator>, OperatorError> {
        let current = self.cell.lock().current.clone();
        Ok(Box::new(Swappable {
            cell: self.cell.clone(),
            job: job.to_string(),
            worker,
            limits: limits.clone(),
            active: current.factory.instantiate_limited(job, worker, limits)?,
            version: current.number,
            shadow: None,
            lost: None,
        }))
    }
}

/// One partition's instance of a swappable operator: the running version,
/// and during a probe batch the candidate beside it.
struct Swappable {
    cell: Arc<VersionCell>,
    job: String,
    worker: usize,
    limits: Limits,
    active: Box<dyn Operator>,
    version: u64,
    shadow: Option<(u64, Box<dyn Operator>)>,
    /// Why this partition could not move to the adopted version.
    lost: Option<String>,
}

impl Swappable {
    /// A fresh instance of `to` holding the running instance's state.
    fn handover(&mut self, to: &Version) -> Result<Box<dyn Operator>, String> {
        let mut next = to
            .factory
            .instantiate_limited(&self.job, self.worker, &self.limits)
            .map_err(|e| format!("it does not start: {e}"))?;
        let state = self
            .active
            .snapshot()
            .map_err(|e| format!("version {} gave no snapshot: {e}", self.version))?;
        if let Some(state) = state {
            next.restore(&state).map_err(|e| {
                format!(
                    "it cannot restore the state of version {}: {e}",
                    self.version
                )
            })?;
        }
        Ok(next)
    }
}

impl Operator for Swappable {
    fn begin_batch(&mut self, batch_no: u64) {
        let (current, probing) = self.cell.view(batch_no);
        if current.number != self.version {
            match self.shadow.take() {
                Some((n, op)) if n == current.number => self.active = op,
                // This partition had no records in the probe batch: it takes
                // the state over now.
                _ => match self.handover(&current) {
                    Ok(op) => self.active = op,
                    Err(reason) => {
                        self.lost = Some(format!(
                            "cannot move to version {} of the operator: {reason}",
                            current.number
                        ))
                    }
                },
            }
            self.version = current.number;
        }
        let probe = probing.as_ref().map(|p| p.number);
        if self.shadow.as_ref().is_some_and(|(n, _)| Some(*n) != probe) {
            self.shadow = None;
        }
        if let Some(p) = probing
            && self.shadow.is_none()
        {
            match self.handover(&p) {
                Ok(op) => self.shadow = Some((p.number, op)),
                Err(reason) => self.cell.probe_failed(p.number, reason),
            }
        }
        self.active.begin_batch(batch_no);
        if let Some((_, shadow)) = &mut self.shadow {
            shadow.begin_batch(batch_no);
        }
    }

    fn process(
        &mut self,
        input: &mut crate::model::batch::Batch,
    ) -> Result<crate::model::batch::Batch, OperatorError> {
        self.process_with(input, &BatchContext::default())
    }

    fn process_with(
        &mut self,
        input: &mut crate::model::batch::Batch,
        ctx: &BatchContext,
    ) -> Result<crate::model::batch::Batch, OperatorError> {
        if let Some(e) = &self.lost {
            return Err(OperatorError::Host(e.clone()));
        }
        let out = self.active.process_with(input, ctx)?;
        if let Some((n, shadow)) = &mut self.shadow {
            let n = *n;
            match shadow.process_with(input, ctx) {
                Ok(_) => self.cell.probe_ran(n),
                Err(e) => {
                    self.cell
                        .probe_failed(n, format!("it failed on batch {}: {e}", ctx.batch_no));
                    self.shadow = None;
                }
            }
        }
        Ok(out)
    }

    fn finish_batch(
        &mut self,
        ctx: &BatchContext,
    ) -> Result<crate::model::batch::Batch, OperatorError> {
        self.active.finish_batch(ctx)
    }

    fn side_output(&mut self) -> crate::operators::SideOutput {
        self.active.side_output()
    }

    fn snapshot(&mut self) -> Result<Option<Vec<u8>>, OperatorError> {
        self.active.snapshot()
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), OperatorError> {
        self.active.restore(state)
    }

    /// As the running version: a batch re-run in parts (to find the
    /// records at fault) reaches the candidate only in the parts the running
    /// version processed, so it sees every record once too.
    fn stateless(&self) -> bool {
        self.active.stateless()
    }
}

/// Watches the component files of a job's `plugin` operators and deploys a
/// file whose content changed (by SHA-256), once it has stayed the same for
/// one more poll, so a file being written is not read half-way. Runs until
/// `stop` turns true.
pub async fn watch(
    reloader: Reloader,
    runtime: Runtime,
    files: Vec<(String, PathBuf)>,
    poll: Duration,
    mut stop: watch::Receiver<bool>,
) {
    struct Watched {
        operator: String,
        path: PathBuf,
        deployed: Option<String>,
        seen: Option<String>,
    }
    let digest = |bytes: &[u8]| -> String {
        use sha2::Digest;
        crate::wasm::hex(&sha2::Sha256::digest(bytes))
    };
    let mut watched: Vec<Watched> = files
        .into_iter()
        .map(|(operator, path)| {
            let hash = std::fs::read(&path).ok().map(|b| digest(&b));
            Watched {
                operator,
                path,
                deployed: hash.clone(),
                seen: hash,
            }
        })
        .collect();
    for w in &watched {
        tracing::info!(
            "watching {} (operator `{}`) for new versions",
            w.path.display(),
            w.operator
        );
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = crate::signal::stopped(&mut stop) => return,
        }
        for w in &mut watched {
            let bytes = std::fs::read(&w.path).ok();
            let now = bytes.as_deref().map(digest);
            let settled = now.is_some() && now == w.seen;
            w.seen = now.clone();
            let (true, Some(bytes)) = (settled && now != w.deployed, bytes) else {
                continue;
            };
            w.deployed = now;
            // The bytes that were hashed are the bytes loaded.
            let (rt, path) = (runtime.clone(), w.path.clone());
            let loaded = tokio::task::spawn_blocking(move || rt.load_bytes(&bytes, &path)).await;
            let plugin = match loaded {
                Ok(Ok(p)) => p,
                Ok(Err(e)) => {
                    tracing::warn!(operator = %w.operator, "new version not deployed: {e}");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(operator = %w.operator, "new version not deployed: {e}");
                    continue;
                }
            };
            let (r, op) = (reloader.clone(), w.operator.clone());
            match tokio::task::spawn_blocking(move || r.deploy(&op, &plugin)).await {
                Ok(Ok(d)) => {
                    let operator = w.operator.clone();
                    tokio::spawn(async move {
                        match d.outcome().await {
                            Outcome::Adopted { .. } => {}
                            Outcome::Refused { version, reason } => tracing::warn!(
                                %operator,
                                "version {version} refused: {reason}"
                            ),
                        }
                    });
                }
                Ok(Err(DeployError::Busy { .. })) => {
                    // Try again at the next poll.
                    w.deployed = None;
                }
                Ok(Err(e)) => tracing::warn!("{e}"),
                Err(e) => tracing::warn!(operator = %w.operator, "new version not deployed: {e}"),
            }
        }
    }
}
