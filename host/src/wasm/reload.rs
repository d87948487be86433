//! Hot reload: a new version of a Wasm operator, swapped into a running job
//! without losing or repeating a record.
//!
//! Every `plugin` operator of a job runs behind a version cell shared by its
//! partition instances. [`Reloader::deploy`] checks a new component (world,
//! `init`) off the hot path and makes it the cell's candidate. Then:
//!
//! 1. **Probe.** The coordinator picks the next micro-batch as the probe
//!    batch. At its start, each partition takes a [`Operator::snapshot`](crate::operators::Operator::snapshot) of
//!    its running instance and [`Operator::restore`](crate::operators::Operator::restore)s it into a fresh
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
//! Decisions are logged, recorded as [`VersionEvent`]s in the job's stats and
//! reported to the deployer ([`Deployment::outcome`]).

use crate::operators::OperatorFactory;
use crate::spec::limits::Limits;
use crate::wasm::{Plugin, World};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// What became of one new version of an operator (hot reload).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct VersionEvent {
    /// The operator's name in the job.
    pub operator: String,
    /// The version number: 1 is the version the job started with.
    pub version: u64,
    /// The first micro-batch the version processed (adopted), or the batch
    /// it was tried on (refused).
    pub batch: u64,
    /// Whether the job adopted the version.
    pub adopted: bool,
    /// Why the version was refused, or which version it replaced.
    pub detail: String,
}

/// Where a job keeps the [`VersionEvent`]s of its operators.
pub trait VersionLog: Send + Sync {
    /// Records one decision.
    fn record(&self, event: VersionEvent);
}

/// One version of an operator.
pub(super) struct Version {
    pub(super) number: u64,
    pub(super) factory: Arc<dyn OperatorFactory>,
    /// The start of the component's SHA-256, to tell versions apart in logs.
    pub(super) label: String,
}

/// A version waiting to be probed or being probed.
pub(super) struct Candidate {
    pub(super) version: Arc<Version>,
    /// The micro-batch it is probed on, once the coordinator chose one.
    probe: Option<u64>,
    /// Partition calls it ran during the probe.
    ran: u64,
    /// Why it cannot be adopted, as soon as one partition knows.
    failure: Option<String>,
    done: Option<oneshot::Sender<Outcome>>,
    submitted: Instant,
}

pub(super) struct CellState {
    pub(super) current: Arc<Version>,
    pub(super) candidate: Option<Candidate>,
    pub(super) next_number: u64,
}

/// The versions of one operator of a job.
pub(crate) struct VersionCell {
    pub(super) operator: String,
    /// The operator's settings in the job file; every version starts with them.
    pub(super) config: Vec<(String, String)>,
    pub(super) state: Mutex<CellState>,
}

impl VersionCell {
    pub(super) fn lock(&self) -> MutexGuard<'_, CellState> {
        // A panic while holding the lock leaves the state consistent: every
        // change under it is a single assignment.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The version to run at `batch_no`, and the candidate to probe beside
    /// it, if this is its probe batch and it has not failed yet.
    pub(super) fn view(&self, batch_no: u64) -> (Arc<Version>, Option<Arc<Version>>) {
        let state = self.lock();
        let probing = state
            .candidate
            .as_ref()
            .filter(|c| c.probe == Some(batch_no) && c.failure.is_none())
            .map(|c| c.version.clone());
        (state.current.clone(), probing)
    }

    pub(super) fn probe_ran(&self, version: u64) {
        if let Some(c) = self.lock().candidate.as_mut()
            && c.version.number == version
        {
            c.ran += 1;
        }
    }

    pub(super) fn probe_failed(&self, version: u64, reason: String) {
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
    /// Where decisions are recorded besides the log (the job's stats).
    events: Mutex<Option<Arc<dyn VersionLog>>>,
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
                events: Mutex::new(None),
                cells,
                ended: Default::default(),
            }),
        }
    }

    /// Ties the reloader to the job's limits and counters (at build time).
    pub(crate) fn bind(&self, limits: &Limits, events: Arc<dyn VersionLog>) {
        *lock(&self.inner.limits) = limits.clone();
        *lock(&self.inner.events) = Some(events);
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
        if let Some(events) = lock(&self.inner.events).as_ref() {
            events.record(event);
        }
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

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
