//! The swappable operator: one partition's instance of a `plugin` operator
//! or a reducer, which runs the version its cell says, during a probe batch
//! the candidate beside it, and during a rollback window keeps the version
//! it replaced (see [`crate::wasm::reload`]).

use super::cell::{CellState, Make, Version, VersionCell, View};
use crate::model::batch::Batch;
use crate::operators::{
    BatchContext, Combiner, Operator, OperatorError, OperatorFactory, SideOutput, StateWriter,
    WatermarkRules,
};
use crate::spec::ReduceMode;
use crate::spec::limits::{Limit, Limits};
use crate::wasm::{Plugin, World};
use std::sync::{Arc, Mutex};

/// Makes a `plugin` operator swappable: the factory of its first version,
/// behind a version cell.
pub(crate) fn swappable(
    plugin: &Plugin,
    name: String,
    config: Vec<(String, String)>,
) -> (Arc<dyn OperatorFactory>, Arc<VersionCell>) {
    let operator = name.clone();
    let make: Make = Box::new(move |p: &Plugin| -> Arc<dyn OperatorFactory> {
        Arc::new(p.factory(operator.clone(), config.clone()))
    });
    cell(plugin, name, World::Transform, make)
}

/// Makes a reducer swappable: a new version takes over the accumulators
/// the host keeps, unchanged.
pub(crate) fn swappable_reducer(
    plugin: &Plugin,
    name: String,
    config: Vec<(String, String)>,
    mode: ReduceMode,
) -> (Arc<dyn OperatorFactory>, Arc<VersionCell>) {
    let operator = name.clone();
    let make: Make = Box::new(move |p: &Plugin| -> Arc<dyn OperatorFactory> {
        Arc::new(super::WasmReducerFactory::new(
            operator.clone(),
            p.clone(),
            config.clone(),
            mode,
        ))
    });
    cell(plugin, name, World::Reduce, make)
}

fn cell(
    plugin: &Plugin,
    name: String,
    world: World,
    make: Make,
) -> (Arc<dyn OperatorFactory>, Arc<VersionCell>) {
    let label = plugin.info().sha256.chars().take(12).collect();
    let factory = make(plugin);
    let cell = Arc::new(VersionCell {
        operator: name,
        world,
        make,
        state: Mutex::new(CellState {
            current: Arc::new(Version {
                number: 1,
                factory: factory.clone(),
                label,
            }),
            candidate: None,
            next_number: 2,
            previous: None,
        }),
    });
    (
        Arc::new(SwappableFactory {
            cell: cell.clone(),
            first: factory,
        }),
        cell,
    )
}

/// Makes one [`Swappable`] instance per partition.
struct SwappableFactory {
    cell: Arc<VersionCell>,
    /// The first version's factory, which answers for the operator's shape.
    first: Arc<dyn OperatorFactory>,
}

impl OperatorFactory for SwappableFactory {
    fn name(&self) -> &str {
        &self.cell.operator
    }

    fn keyed(&self) -> bool {
        self.first.keyed()
    }

    fn stateful(&self) -> bool {
        self.first.stateful()
    }

    fn combiner(&self) -> Option<Arc<dyn Combiner>> {
        self.first.combiner()
    }

    fn unkeyed_together(&self) -> bool {
        self.first.unkeyed_together()
    }

    fn inputs(&self) -> Option<Vec<String>> {
        self.first.inputs()
    }

    fn output_stream(&self) -> Option<String> {
        self.first.output_stream()
    }

    fn watermark_rules(&self) -> WatermarkRules {
        self.first.watermark_rules()
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
            fallback: None,
            lost: None,
            tracking: false,
        }))
    }
}

/// What the running version was given since it replaced the fallback.
enum Step {
    Begin(u64),
    Call(BatchContext, Batch),
    Finish(BatchContext),
}

/// The instance of the version the running one replaced, as it was at
/// adoption, kept while the job may roll back to it.
struct Fallback {
    version: u64,
    op: Box<dyn Operator>,
    /// For a stateful operator, what the running version was given since,
    /// to bring this instance's state up to date on a rollback; a
    /// stateless one needs none.
    log: Option<Vec<Step>>,
}

impl Fallback {
    fn record(&mut self, step: impl FnOnce() -> Step) {
        if let Some(log) = &mut self.log {
            log.push(step());
        }
    }

    /// Runs the instance over what the running version was given since
    /// adoption, dropping its output (the running version's was kept), so
    /// that its state is what it would be had it run all along.
    fn catch_up(mut self) -> Result<Box<dyn Operator>, OperatorError> {
        for step in self.log.take().unwrap_or_default() {
            match step {
                Step::Begin(n) => self.op.begin_batch(n),
                Step::Call(ctx, mut input) => match self.op.process_with(&mut input, &ctx) {
                    // Records it rejects were not its to set aside.
                    Ok(_) | Err(OperatorError::BadRecords(_)) => {}
                    Err(e) => return Err(e),
                },
                Step::Finish(ctx) => {
                    self.op.finish_batch(&ctx)?;
                }
            }
            let _ = self.op.side_output();
        }
        Ok(self.op)
    }
}

/// Whether a failure of a version within its rollback window sends the
/// job back to the previous version: a trap, a breach, an error of the
/// whole call, but not records it rejects, nor a job that halts.
fn rolls_back(error: &OperatorError) -> bool {
    match error {
        OperatorError::BadRecords(_) => false,
        OperatorError::Host(m) => *m != super::sandbox::Halted.to_string(),
        _ => true,
    }
}

/// Whether a failed call took the instance, and the state in it: after a
/// trap or a breach of `memory`, `cpu_per_batch` or `output_ratio` the
/// instance is re-created empty.
fn took_the_state(error: &OperatorError) -> bool {
    match error {
        OperatorError::Trap(_) => true,
        OperatorError::Limit { limit, .. } => *limit != Limit::MaxState,
        _ => false,
    }
}

/// One partition's instance of a swappable operator.
struct Swappable {
    cell: Arc<VersionCell>,
    job: String,
    worker: usize,
    limits: Limits,
    active: Box<dyn Operator>,
    version: u64,
    /// During a probe batch, the candidate's instance.
    shadow: Option<(u64, Box<dyn Operator>)>,
    /// During a rollback window, the replaced version's instance.
    fallback: Option<Fallback>,
    /// Why this partition cannot go on (it could not move to the version
    /// in force, or its state was lost).
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
        let state = match self.active.snapshot() {
            Ok(state) => state,
            Err(e) => {
                // A state that could not be read is never replaced by an
                // empty one: a partition that lost it stops.
                if took_the_state(&e) {
                    self.lost = Some(format!(
                        "version {} lost its state when its snapshot failed: {e}",
                        self.version
                    ));
                }
                return Err(format!("version {} gave no snapshot: {e}", self.version));
            }
        };
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

    /// Moves to the version the cell runs now: back to the fallback after
    /// a rollback, to the probed instance after an adoption (keeping the
    /// replaced one while the cell does), or by a handover.
    fn move_to(&mut self, view: &View) {
        let target = view.current.number;
        let replaced = self.version;
        self.version = target;
        if let Some(fallback) = self.fallback.take_if(|f| f.version == target) {
            self.shadow = None;
            match fallback.catch_up() {
                Ok(op) => {
                    self.active = op;
                    if self.tracking {
                        self.active.track_changes();
                    }
                }
                Err(e) => {
                    self.lost = Some(format!(
                        "cannot go back to version {target} of the operator: it failed on the \
                         input since its replacement: {e}"
                    ))
                }
            }
            return;
        }
        let next = match self.shadow.take() {
            Some((n, op)) if n == target => Ok(op),
            // This partition had no records in the probe batch: it takes
            // the state over now.
            _ => self.handover(&view.current),
        };
        match next {
            Ok(op) => {
                let old = std::mem::replace(&mut self.active, op);
                self.fallback = (view.previous == Some(replaced)).then(|| Fallback {
                    version: replaced,
                    log: (!old.stateless()).then(Vec::new),
                    op: old,
                });
            }
            Err(reason) => {
                self.lost.get_or_insert(format!(
                    "cannot move to version {target} of the operator: {reason}"
                ));
            }
        }
    }

    /// The running version failed with `error` on `input` within its
    /// rollback window: the fallback, brought up to date, processes it
    /// instead and runs from now on.
    fn roll_back(
        &mut self,
        input: &mut Batch,
        ctx: &BatchContext,
        error: OperatorError,
    ) -> Result<Batch, OperatorError> {
        let failed = self.version;
        let reason = format!("version {failed} failed on batch {}: {error}", ctx.batch_no);
        let Some(mut fallback) = self.fallback.take() else {
            return Err(error);
        };
        if !self.cell.failed_in_window(failed, ctx.batch_no, &reason) {
            return Err(error);
        }
        // The failed call is the previous version's to make now.
        if let Some(log) = &mut fallback.log {
            log.pop();
        }
        let back = fallback.version;
        if let Some((n, _)) = self.shadow.take() {
            self.cell.probe_failed(
                n,
                format!("version {failed}, whose state it took, was rolled back"),
            );
        }
        self.active = fallback.catch_up().map_err(|e| {
            OperatorError::Host(format!(
                "{reason}, and version {back} could not be brought up to date to take its place: {e}"
            ))
        })?;
        if self.tracking {
            self.active.track_changes();
        }
        self.version = back;
        tracing::warn!(
            job = %self.job,
            operator = %self.cell.operator,
            worker = self.worker,
            "{reason}; version {back} processes the call instead"
        );
        self.active.process_with(input, ctx)
    }
}

impl Operator for Swappable {
    fn begin_batch(&mut self, batch_no: u64) {
        let view = self.cell.view(batch_no);
        if view.current.number != self.version {
            self.move_to(&view);
        }
        if self
            .fallback
            .as_ref()
            .is_some_and(|f| view.previous != Some(f.version))
        {
            self.fallback = None;
        }
        if let Some(f) = &mut self.fallback {
            f.record(|| Step::Begin(batch_no));
        }
        let probe = view.probing.as_ref().map(|p| p.number);
        if self.shadow.as_ref().is_some_and(|(n, _)| Some(*n) != probe) {
            self.shadow = None;
        }
        if let Some(p) = view.probing
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
        if let Some(f) = &mut self.fallback {
            f.record(|| Step::Call(ctx.clone(), input.clone()));
        }
        let out = match self.active.process_with(input, ctx) {
            Ok(out) => out,
            Err(e) if self.fallback.is_some() && rolls_back(&e) => {
                return self.roll_back(input, ctx, e);
            }
            Err(e) => return Err(e),
        };
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
        let out = self.active.finish_batch(ctx)?;
        if let Some(f) = &mut self.fallback {
            f.record(|| Step::Finish(ctx.clone()));
        }
        Ok(out)
    }

    fn side_output(&mut self) -> SideOutput {
        if let Some((_, shadow)) = &mut self.shadow {
            let _ = shadow.side_output();
        }
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
    /// replaces the old version's entry; a reducer's new version goes on
    /// with the accumulators, so its changes follow the old one's.
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
