//! The versions of one swappable operator of a job: the one running, the
//! candidate being tried, and the one it replaced while it may be rolled
//! back to (see [`crate::wasm::reload`]). Partition instances read it at
//! the start of each batch ([`VersionCell::view`]) and when asked to
//! prepare a candidate ([`VersionCell::waiting`]); the coordinator's
//! decisions between batches change it.

use super::reload::{Outcome, RolledBack};
use crate::operators::OperatorFactory;
use crate::wasm::{Plugin, World};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::oneshot;

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
    pub(super) probe: Option<u64>,
    /// Partition calls it ran during the probe.
    pub(super) ran: u64,
    /// Why it cannot be adopted, as soon as one partition knows.
    pub(super) failure: Option<String>,
    /// Whether the partitions were asked to prepare their instances of it.
    pub(super) requested: bool,
    /// Partitions whose instance of it is ready (or failed to be).
    pub(super) ready: usize,
    pub(super) done: Option<oneshot::Sender<Outcome>>,
    /// Told when its rollback window closes, once adopted.
    pub(super) window: Option<oneshot::Sender<Option<RolledBack>>>,
    pub(super) submitted: Instant,
}

/// The version the current one replaced, kept for a rollback while the
/// window is open.
pub(super) struct Previous {
    pub(super) version: Arc<Version>,
    /// The current version's first batch.
    pub(super) since: u64,
    pub(super) adopted: Instant,
    /// The current version's first failure in the window: the batch and why.
    pub(super) failure: Option<(u64, String)>,
    /// Told when the window closes: why the current version was rolled back,
    /// or `None` when it stays.
    pub(super) closed: Option<oneshot::Sender<Option<RolledBack>>>,
}

/// What a partition runs at the start of a batch.
pub(super) struct View {
    pub(super) current: Arc<Version>,
    /// The candidate to probe beside it, on its probe batch.
    pub(super) probing: Option<Arc<Version>>,
    /// The candidate's number, probed or not yet.
    pub(super) candidate: Option<u64>,
    /// The version the current one replaced, while it may be rolled back to.
    pub(super) previous: Option<u64>,
}

pub(super) struct CellState {
    pub(super) current: Arc<Version>,
    pub(super) candidate: Option<Candidate>,
    pub(super) next_number: u64,
    pub(super) previous: Option<Previous>,
}

/// Makes the factory of a version of an operator from its component.
pub(super) type Make = Box<dyn Fn(&Plugin) -> Arc<dyn OperatorFactory> + Send + Sync>;

/// The versions of one operator of a job.
pub(crate) struct VersionCell {
    pub(super) operator: String,
    /// The world every version implements.
    pub(super) world: World,
    /// A version's factory, with the operator's settings in the job file:
    /// every version starts with them.
    pub(super) make: Make,
    pub(super) state: Mutex<CellState>,
    /// Partition instances of the operator.
    pub(super) instances: std::sync::atomic::AtomicUsize,
}

impl VersionCell {
    pub(super) fn lock(&self) -> MutexGuard<'_, CellState> {
        // A panic while holding the lock leaves the state consistent: every
        // change under it is a single assignment.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What to run at `batch_no`: the current version, the candidate to
    /// probe beside it if this is its probe batch and it has not failed
    /// yet, and the version it may be rolled back to.
    pub(super) fn view(&self, batch_no: u64) -> View {
        let state = self.lock();
        let probing = state
            .candidate
            .as_ref()
            .filter(|c| c.probe == Some(batch_no) && c.failure.is_none())
            .map(|c| c.version.clone());
        View {
            current: state.current.clone(),
            probing,
            candidate: state.candidate.as_ref().map(|c| c.version.number),
            previous: state.previous.as_ref().map(|p| p.version.number),
        }
    }

    /// The candidate the partitions were asked to prepare and that waits
    /// for its probe batch.
    pub(super) fn waiting(&self) -> Option<Arc<Version>> {
        let state = self.lock();
        let c = state.candidate.as_ref()?;
        (c.requested && c.probe.is_none()).then(|| c.version.clone())
    }

    /// A partition's instance of candidate `version` is ready, or failed
    /// to be (then [`VersionCell::probe_failed`] said why).
    pub(super) fn prepared(&self, version: u64) {
        if let Some(c) = self.lock().candidate.as_mut()
            && c.version.number == version
        {
            c.ready += 1;
        }
    }

    /// A partition's report that the current version, `version`, failed
    /// on `batch_no` within its rollback window: the job goes back to the
    /// previous version after the batch. Whether the window is open.
    pub(super) fn failed_in_window(&self, version: u64, batch_no: u64, reason: &str) -> bool {
        let mut state = self.lock();
        if state.current.number != version {
            return false;
        }
        let Some(p) = state.previous.as_mut() else {
            return false;
        };
        p.failure
            .get_or_insert_with(|| (batch_no, reason.to_string()));
        true
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

impl Previous {
    /// Tells the deployer of the version that replaced this one that its
    /// window closed, and whether it was rolled back (`reason`).
    pub(super) fn close(&mut self, reason: Option<RolledBack>) {
        if let Some(tx) = self.closed.take() {
            let _ = tx.send(reason);
        }
    }
}
