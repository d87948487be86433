//! The swappable operator: one partition's instance of a `plugin` operator
//! or a reducer, which runs the version its cell says, during a probe batch
//! the candidate beside it (built ahead, see [`Operator::prepare`]), and
//! during a rollback window keeps the version it replaced (see
//! [`crate::wasm::reload`]).

use super::cell::{CellState, Make, Version, VersionCell, View};
use super::replay::{Fallback, Making, Pending, Replay};
use crate::model::batch::Batch;
use crate::operators::{
    BatchContext, Combiner, Operator, OperatorError, OperatorFactory, SideOutput, StateWriter,
    WatermarkRules,
};
use crate::spec::ReduceMode;
use crate::spec::limits::{Limit, Limits};
use crate::wasm::{Plugin, World};
use std::sync::atomic::Ordering;
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
        instances: Default::default(),
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

    fn kind(&self) -> &'static str {
        self.first.kind()
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
        let active = current.factory.instantiate_limited(job, worker, limits)?;
        self.cell.instances.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(Swappable {
            cell: self.cell.clone(),
            making: Making {
                job: job.to_string(),
                worker,
                limits: limits.clone(),
                tracking: false,
                halt: crate::signal::Halt::current(),
            },
            active,
            version: current.number,
            shadow: None,
            pending: None,
            fallback: None,
            lost: None,
        }))
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
    /// How its instances are made; `tracking` is whether the job keeps
    /// checkpoints ([`Operator::track_changes`]): every instance of a
    /// version is told so.
    making: Making,
    active: Box<dyn Operator>,
    version: u64,
    /// During a probe batch, the candidate's instance.
    shadow: Option<(u64, Box<dyn Operator>)>,
    /// Before it, the candidate's instance being built.
    pending: Option<Pending>,
    /// During a rollback window, the replaced version's instance.
    fallback: Option<Fallback>,
    /// Why this partition cannot go on (it could not move to the version
    /// in force, or its state was lost).
    lost: Option<String>,
}

impl Swappable {
    /// The running instance's state, for version `to`. A state that could
    /// not be read is never replaced by an empty one: when the failed
    /// snapshot took the instance with it, the partition stops.
    fn snapshot_for(&mut self, to: u64) -> Result<Option<Vec<u8>>, String> {
        self.active.snapshot().map_err(|e| {
            if took_the_state(&e) {
                self.lost = Some(format!(
                    "version {} lost its state when its snapshot for version {to} failed: {e}",
                    self.version
                ));
            }
            format!("version {} gave no snapshot: {e}", self.version)
        })
    }

    /// A fresh instance of `to` holding the running instance's state.
    fn handover(&mut self, to: &Version) -> Result<Box<dyn Operator>, String> {
        let state = self.snapshot_for(to.number)?;
        self.making.instance(to, state.as_deref(), self.version)
    }

    /// Back to the replaced version after a rollback: any candidate took
    /// the failed version's state and is dropped (the cell refuses it).
    fn back_to(&mut self, fallback: Fallback) -> Result<(), OperatorError> {
        self.shadow = None;
        self.pending = None;
        self.version = fallback.version;
        self.active = fallback.catch_up()?;
        if self.making.tracking {
            self.active.track_changes();
        }
        Ok(())
    }

    /// Moves to the version the cell runs now: back to the fallback after
    /// a rollback, to the probed instance after an adoption (keeping the
    /// replaced one while the cell does), or by a handover.
    fn move_to(&mut self, view: &View) {
        let target = view.current.number;
        let replaced = self.version;
        if let Some(fallback) = self.fallback.take_if(|f| f.version == target) {
            if let Err(e) = self.back_to(fallback) {
                self.lost = Some(format!(
                    "cannot go back to version {target} of the operator: it failed on the \
                     input since its replacement: {e}"
                ));
            }
            return;
        }
        self.version = target;
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
                    replay: Replay::new(!old.stateless()),
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

    /// The candidate's instance for its probe batch: the one built ahead,
    /// brought up to date, or one handed the state now.
    fn candidate(&mut self, to: &Version) -> Result<Box<dyn Operator>, String> {
        match self.pending.take() {
            Some(p) if p.version == to.number => p.take(),
            _ => self.handover(to),
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
        fallback.replay.forget_last_call();
        let back = fallback.version;
        self.back_to(fallback).map_err(|e| {
            OperatorError::Host(format!(
                "{reason}, and version {back} could not be brought up to date to take its place: {e}"
            ))
        })?;
        tracing::warn!(
            job = %self.making.job,
            operator = %self.cell.operator,
            worker = self.making.worker,
            "{reason}; version {back} processes the call instead"
        );
        self.active.process_with(input, ctx)
    }

    /// Every instance kept beside the running one records `f`'s step.
    fn record(&mut self, f: impl Fn(&mut Replay)) {
        if let Some(fallback) = &mut self.fallback {
            f(&mut fallback.replay);
        }
        if let Some(pending) = &mut self.pending {
            f(&mut pending.replay);
        }
    }
}

impl Drop for Swappable {
    /// One instance fewer for a candidate to wait for.
    fn drop(&mut self) {
        self.cell.instances.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Operator for Swappable {
    fn memory_used(&self) -> Option<u64> {
        self.active.memory_used()
    }

    /// Starts building the instance of a candidate the job is about to
    /// probe, on a thread of its own from a snapshot taken now (between
    /// batches), so that the probe batch pays only for catching it up.
    fn prepare(&mut self) {
        let Some(next) = self.cell.waiting() else {
            return;
        };
        if self
            .pending
            .as_ref()
            .is_some_and(|p| p.version == next.number)
        {
            return;
        }
        let number = next.number;
        let state = match self.snapshot_for(number) {
            Ok(state) => state,
            Err(reason) => {
                self.cell.probe_failed(number, reason);
                self.cell.prepared(number);
                return;
            }
        };
        let cell = self.cell.clone();
        let started = self.making.start(next, state, self.version, move |made| {
            if let Err(reason) = made {
                cell.probe_failed(number, reason.clone());
            }
            cell.prepared(number);
        });
        match started {
            Ok(pending) => self.pending = Some(pending),
            // The probe batch hands the state over itself.
            Err(_) => self.cell.prepared(number),
        }
    }

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
        if self
            .pending
            .as_ref()
            .is_some_and(|p| view.candidate != Some(p.version))
        {
            self.pending = None;
        }
        let probe = view.probing.as_ref().map(|p| p.number);
        if self.shadow.as_ref().is_some_and(|(n, _)| Some(*n) != probe) {
            self.shadow = None;
        }
        if let Some(p) = view.probing
            && self.shadow.is_none()
        {
            match self.candidate(&p) {
                Ok(op) => self.shadow = Some((p.number, op)),
                Err(reason) => self.cell.probe_failed(p.number, reason),
            }
        }
        self.record(|r| r.begin(batch_no));
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
        self.record(|r| r.call(ctx, input));
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
        self.record(|r| r.finish(ctx));
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
        self.making.tracking = true;
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
