//! Hot reload: a new version of a Wasm operator, swapped into a running job
//! without losing or repeating a record.
//!
//! Every `plugin` operator and reducer of a job runs behind a version cell
//! shared by its partition instances. [`Reloader::deploy`] checks a new
//! component (world, `init`) off the hot path and makes it the cell's
//! candidate. Then:
//!
//! 1. **Prepare.** Between two batches the coordinator asks every partition
//!    to prepare ([`Operator::prepare`](crate::operators::Operator::prepare)):
//!    each takes a [`Operator::snapshot`](crate::operators::Operator::snapshot)
//!    of its running instance and, on a thread of its own,
//!    [`Operator::restore`](crate::operators::Operator::restore)s it into a
//!    fresh instance of the candidate while the job goes on.
//! 2. **Probe.** Once every partition's instance is ready, the coordinator
//!    picks the next micro-batch as the probe batch. At its start each
//!    partition catches its candidate instance up on what the running one
//!    processed since the snapshot; the candidate then processes the batch
//!    *beside* the running version: the running version's output is the one
//!    kept, so the probe batch is entirely the old version's.
//! 3. **Adopt or refuse.** When the probe batch is done, the coordinator
//!    adopts the candidate if no partition failed to restore it or to run
//!    it; from the next batch on, each partition runs the candidate
//!    instance, which has the state the old one had. Otherwise the
//!    candidate is dropped and the job goes on with the old version, and
//!    says why. Either way the decision falls between two batches, so every
//!    batch is processed by one version, and the versions follow each other
//!    in order.
//! 4. **Roll back.** The version it replaced stays loaded, its instances with
//!    their state as it was at adoption, for the job's rollback window
//!    (`[reload]`, 10 micro-batches by default). A stateful instance also
//!    keeps what the new version was given since. If the new version traps,
//!    fails as a whole or breaches a limit within the window, that
//!    partition brings the previous instance up to date by running it over
//!    that input (its output dropped: the new version's was kept) and has it
//!    process the failed call instead; the other partitions go back at the
//!    next batch the same way. Every partition batch is still one version's,
//!    and no record is lost or repeated. After the window the previous
//!    version is dropped, and a failure follows the job's error policy.
//!
//! Decisions are logged, recorded as [`VersionEvent`]s in the job's stats and
//! reported to the deployer ([`Deployment::outcome`]).

use super::cell::{Candidate, Previous, Version, VersionCell};
use crate::spec::RollbackWindow;
use crate::spec::limits::Limits;
use crate::wasm::Plugin;
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
    /// Whether the job went back from this version, adopted before, to
    /// the one it replaced (then `batch` is the batch it failed on).
    pub rolled_back: bool,
    /// Why the version was refused, or which version it replaced.
    pub detail: String,
}

/// Where a job keeps the [`VersionEvent`]s of its operators.
pub trait VersionLog: Send + Sync {
    /// Records one decision.
    fn record(&self, event: VersionEvent);
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
    /// The job has no such operator, or it is neither a `plugin` operator
    /// nor a reducer.
    #[error(
        "the job has no Wasm operator `{operator}` to swap (its `plugin` operators and reducers: {})",
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
    window: oneshot::Receiver<Option<RolledBack>>,
}

impl Deployment {
    /// Waits until the job adopted or refused the version. A job that ends
    /// first refuses it.
    pub async fn outcome(self) -> Outcome {
        self.decided().await.0
    }

    /// As [`Deployment::outcome`], with the version's rollback window: for
    /// an adopted version, [`Window::closed`] tells whether the job went
    /// back from it.
    pub async fn decided(self) -> (Outcome, Window) {
        let version = self.version;
        let outcome = self.rx.await.unwrap_or(Outcome::Refused {
            version,
            reason: "the job ended before the version was tried".into(),
        });
        (outcome, Window(self.window))
    }
}

/// The rollback window of an adopted version.
pub struct Window(oneshot::Receiver<Option<RolledBack>>);

impl Window {
    /// Waits until the window closes: how the job rolled the version back,
    /// or `None` when it keeps it (the window ran out, a newer version
    /// replaced it, or the job ended; a refused version has no window).
    pub async fn closed(self) -> Option<RolledBack> {
        self.0.await.ok().flatten()
    }
}

/// A version the job went back from, within its rollback window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolledBack {
    /// The batch it failed on; from the next one on, every partition runs
    /// the version it had replaced (in this one, the partitions where it
    /// failed already did).
    pub batch: u64,
    /// Why.
    pub reason: String,
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
    /// How long a replaced version is kept for a rollback.
    window: Mutex<RollbackWindow>,
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
                window: Mutex::new(RollbackWindow::default()),
                events: Mutex::new(None),
                cells,
                ended: Default::default(),
            }),
        }
    }

    /// Ties the reloader to the job's limits, rollback window and counters
    /// (at build time).
    pub(crate) fn bind(
        &self,
        limits: &Limits,
        window: RollbackWindow,
        events: Arc<dyn VersionLog>,
    ) {
        *lock(&self.inner.limits) = limits.clone();
        *lock(&self.inner.window) = window;
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
    /// implement the operator's world (`transform` for a `plugin`
    /// operator, `reduce` for a reducer) and start (`init`) with the
    /// operator's settings; both are checked here, on the caller's thread,
    /// not on the job's. Then the job prepares it between batches, probes it
    /// on a micro-batch and adopts or refuses it; [`Deployment::outcome`]
    /// tells which, and [`Deployment::decided`] also whether it was rolled
    /// back later.
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
                rolled_back: false,
                detail: reason.clone(),
            });
            tracing::warn!(job = %self.inner.job, operator, "version {number} ({label}) refused: {reason}");
            DeployError::Refused {
                operator: operator.to_string(),
                version: number,
                reason,
            }
        };
        if plugin.world() != cell.world {
            return Err(refuse(format!(
                "the component implements the `{}` world; a `{}` operator needs `{}`",
                plugin.world(),
                cell.world.field(),
                cell.world
            )));
        }
        let factory = (cell.make)(plugin);
        // A version that cannot start is refused before the job sees it.
        let limits = lock(&self.inner.limits).clone();
        if let Err(e) = factory.instantiate_limited(&self.inner.job, 0, &limits) {
            return Err(refuse(format!("it does not start: {e}")));
        }
        let (tx, rx) = oneshot::channel();
        let (window_tx, window) = oneshot::channel();
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
            requested: false,
            ready: 0,
            done: Some(tx),
            window: Some(window_tx),
            submitted: Instant::now(),
        });
        tracing::info!(job = %self.inner.job, operator, "version {number} ({label}) ready; preparing it for a probe batch");
        Ok(Deployment {
            version: number,
            rx,
            window,
        })
    }

    fn record(&self, event: VersionEvent) {
        if let Some(events) = lock(&self.inner.events).as_ref() {
            events.record(event);
        }
    }

    /// Called by the coordinator between micro-batches: whether a new
    /// candidate waits for the partitions to prepare their instances of it
    /// ([`crate::operators::Operator::prepare`]); the coordinator then asks
    /// them, once.
    pub(crate) fn prepare_needed(&self) -> bool {
        let mut needed = false;
        for cell in &self.inner.cells {
            if let Some(c) = cell.lock().candidate.as_mut()
                && !c.requested
            {
                c.requested = true;
                needed = true;
            }
        }
        needed
    }

    /// Called by the coordinator before micro-batch `batch_no` runs: a
    /// candidate whose instances are ready in every partition (or that
    /// failed in one) is probed on it.
    pub(crate) fn begin_batch(&self, batch_no: u64) {
        for cell in &self.inner.cells {
            let instances = cell.instances.load(std::sync::atomic::Ordering::SeqCst);
            if let Some(c) = cell.lock().candidate.as_mut()
                && c.probe.is_none()
                && c.requested
                && (c.ready >= instances || c.failure.is_some())
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

    /// Refuses every waiting candidate and keeps every adopted version: the
    /// job has ended.
    pub(crate) fn close(&self, reason: &str) {
        self.inner
            .ended
            .store(true, std::sync::atomic::Ordering::SeqCst);
        for cell in &self.inner.cells {
            let (candidate, previous) = {
                let mut state = cell.lock();
                (state.candidate.take(), state.previous.take())
            };
            if let Some(mut p) = previous {
                p.close(None);
            }
            if let Some(c) = candidate {
                let batch = c.probe.unwrap_or(0);
                self.refuse(cell, c, batch, reason.to_string());
            }
        }
    }

    /// Records and reports the refusal of candidate `c` of `cell`, tried
    /// on `batch`, for `reason`.
    fn refuse(&self, cell: &VersionCell, mut c: Candidate, batch: u64, reason: String) {
        let number = c.version.number;
        self.record(VersionEvent {
            operator: cell.operator.clone(),
            version: number,
            batch,
            adopted: false,
            rolled_back: false,
            detail: reason.clone(),
        });
        if let Some(tx) = c.done.take() {
            let _ = tx.send(Outcome::Refused {
                version: number,
                reason,
            });
        }
    }

    /// Called by the coordinator once micro-batch `batch_no` is processed:
    /// a version that failed on it within its rollback window is rolled
    /// back, a window that ran out closes, and a candidate probed on it is
    /// adopted or refused.
    pub(crate) fn end_batch(&self, batch_no: u64) {
        let window = *lock(&self.inner.window);
        for cell in &self.inner.cells {
            if self.roll_back(cell, batch_no) {
                continue;
            }
            let mut state = cell.lock();
            if let Some(p) = &state.previous
                && window.closed((batch_no + 1).saturating_sub(p.since), p.adopted.elapsed())
                && let Some(mut p) = state.previous.take()
            {
                p.close(None);
            }
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
            if let Some(reason) = c.failure.take() {
                let current = state.current.number;
                drop(state);
                tracing::warn!(
                    job = %self.inner.job,
                    operator = %cell.operator,
                    "version {} ({}) refused after probing it on batch {batch_no}: {reason}; \
                     version {current} goes on",
                    c.version.number,
                    c.version.label
                );
                self.refuse(
                    cell,
                    c,
                    batch_no,
                    format!("{reason}; version {current} goes on"),
                );
                continue;
            }
            let number = c.version.number;
            let old = std::mem::replace(&mut state.current, c.version.clone());
            // A newer version closes the window of the one it replaces.
            if let Some(mut p) = state.previous.take() {
                p.close(None);
            }
            let mut closed = c.window.take();
            if !window.closed(0, Duration::ZERO) {
                state.previous = Some(Previous {
                    version: old.clone(),
                    since: batch_no + 1,
                    adopted: Instant::now(),
                    failure: None,
                    closed: closed.take(),
                });
            }
            drop(state);
            if let Some(tx) = closed {
                let _ = tx.send(None);
            }
            let after = c.submitted.elapsed();
            tracing::info!(
                job = %self.inner.job,
                operator = %cell.operator,
                "version {number} ({}) adopted from batch {}, replacing version {} ({}); {after:?} after deployment",
                c.version.label,
                batch_no + 1,
                old.number,
                old.label,
            );
            self.record(VersionEvent {
                operator: cell.operator.clone(),
                version: number,
                batch: batch_no + 1,
                adopted: true,
                rolled_back: false,
                detail: format!("replaced version {}", old.number),
            });
            if let Some(tx) = c.done.take() {
                let _ = tx.send(Outcome::Adopted {
                    version: number,
                    batch: batch_no + 1,
                    after,
                });
            }
        }
    }

    /// Goes back to the previous version of `cell` if the current one
    /// failed on micro-batch `batch_no` within its window; a candidate,
    /// which took the failed version's state, is refused.
    /// Whether it rolled back.
    fn roll_back(&self, cell: &VersionCell, batch_no: u64) -> bool {
        let mut state = cell.lock();
        let Some(mut p) = state
            .previous
            .take_if(|p| p.failure.as_ref().is_some_and(|(b, _)| *b == batch_no))
        else {
            return false;
        };
        let (_, reason) = p.failure.take().unwrap_or_default();
        let failed = std::mem::replace(&mut state.current, p.version.clone());
        let probed = state.candidate.take_if(|c| c.probe == Some(batch_no));
        drop(state);
        let back = p.version.number;
        tracing::warn!(
            job = %self.inner.job,
            operator = %cell.operator,
            "version {} ({}) rolled back: {reason}; version {back} ({}) processed the failed \
             call and goes on from batch {}",
            failed.number,
            failed.label,
            p.version.label,
            batch_no + 1
        );
        self.record(VersionEvent {
            operator: cell.operator.clone(),
            version: failed.number,
            batch: batch_no,
            adopted: false,
            rolled_back: true,
            detail: format!("rolled back to version {back}: {reason}"),
        });
        p.close(Some(RolledBack {
            batch: batch_no,
            reason,
        }));
        if let Some(c) = probed {
            self.refuse(
                cell,
                c,
                batch_no,
                format!(
                    "version {}, whose state it took, was rolled back; deploy it again",
                    failed.number
                ),
            );
        }
        true
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
