//! The swappable operator: one partition's instance of a `plugin`
//! operator, which runs the version its cell says and, during a probe
//! batch, the candidate beside it (see [`crate::wasm::reload`]).

use super::reload::{CellState, Version, VersionCell};
use crate::model::batch::Batch;
use crate::operators::{
    BatchContext, Operator, OperatorError, OperatorFactory, SideOutput, StateWriter,
};
use crate::spec::limits::Limits;
use crate::wasm::Plugin;
use std::sync::{Arc, Mutex};

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
            tracking: false,
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
    /// Whether the job keeps checkpoints ([`Operator::track_changes`]):
    /// every instance of a version is told so.
    tracking: bool,
}

impl Swappable {
    /// A fresh instance of `to` holding the running instance's state.
    fn handover(&mut self, to: &Version) -> Result<Box<dyn Operator>, String> {
        let mut next = to
            .factory
            .instantiate_limited(&self.job, self.worker, &self.limits)
            .map_err(|e| format!("it does not start: {e}"))?;
        if self.tracking {
            next.track_changes();
        }
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

    fn process(&mut self, input: &mut Batch) -> Result<Batch, OperatorError> {
        self.process_with(input, &BatchContext::default())
    }

    fn process_with(
        &mut self,
        input: &mut Batch,
        ctx: &BatchContext,
    ) -> Result<Batch, OperatorError> {
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

    fn finish_batch(&mut self, ctx: &BatchContext) -> Result<Batch, OperatorError> {
        self.active.finish_batch(ctx)
    }

    fn side_output(&mut self) -> SideOutput {
        self.active.side_output()
    }

    fn snapshot(&mut self) -> Result<Option<Vec<u8>>, OperatorError> {
        self.active.snapshot()
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), OperatorError> {
        self.active.restore(state)
    }

    fn track_changes(&mut self) {
        self.tracking = true;
        self.active.track_changes();
        if let Some((_, shadow)) = &mut self.shadow {
            shadow.track_changes();
        }
    }

    /// The running version's: a `plugin` operator's checkpoint holds its
    /// state whole, so after a swap the new version's first checkpoint
    /// replaces the old version's entry.
    fn checkpoint(&mut self, out: &mut dyn StateWriter) -> Result<(), OperatorError> {
        self.active.checkpoint(out)
    }

    fn restore_entries(&mut self, entries: &[(Vec<u8>, Vec<u8>)]) -> Result<(), OperatorError> {
        self.active.restore_entries(entries)
    }

    /// As the running version: a batch re-run in parts (to find the
    /// records at fault) reaches the candidate only in the parts the running
    /// version processed, so it sees every record once too.
    fn stateless(&self) -> bool {
        self.active.stateless()
    }
}
