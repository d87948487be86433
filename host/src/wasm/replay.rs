//! What a swappable operator keeps beside its running instance: the
//! instance of the version it replaced, for a rollback ([`Fallback`]), and
//! the candidate's instance being built ahead of its probe ([`Pending`]).
//! Both were handed a state at some batch boundary and miss what the
//! running instance processed since; a [`Replay`] of that input brings them
//! up to date when they take over.

use super::cell::Version;
use crate::model::batch::Batch;
use crate::operators::{BatchContext, Operator, OperatorError};
use crate::signal::Halt;
use crate::spec::limits::Limits;
use std::sync::Arc;
use std::sync::mpsc;

/// One thing the running instance was given.
enum Step {
    Begin(u64),
    Call(Box<(BatchContext, Batch)>),
    Finish(BatchContext),
}

/// What the running instance was given since another instance took its
/// state; nothing for a stateless operator, whose instances need no
/// catching up.
pub(super) struct Replay(Option<Vec<Step>>);

impl Replay {
    /// A replay that records steps only when the instances keep state.
    pub(super) fn new(stateful: bool) -> Self {
        Replay(stateful.then(Vec::new))
    }

    pub(super) fn begin(&mut self, batch_no: u64) {
        if let Some(log) = &mut self.0 {
            log.push(Step::Begin(batch_no));
        }
    }

    pub(super) fn call(&mut self, ctx: &BatchContext, input: &Batch) {
        if let Some(log) = &mut self.0 {
            log.push(Step::Call(Box::new((ctx.clone(), input.clone()))));
        }
    }

    pub(super) fn finish(&mut self, ctx: &BatchContext) {
        if let Some(log) = &mut self.0 {
            log.push(Step::Finish(ctx.clone()));
        }
    }

    /// Forgets the last call recorded: another instance makes it instead.
    pub(super) fn forget_last_call(&mut self) {
        if let Some(log) = &mut self.0
            && matches!(log.last(), Some(Step::Call(..)))
        {
            log.pop();
        }
    }

    /// Runs `op` over the recorded steps, dropping its output (the running
    /// instance's was kept), so that its state is what it would be had it
    /// run all along.
    pub(super) fn onto(self, op: &mut dyn Operator) -> Result<(), OperatorError> {
        for step in self.0.unwrap_or_default() {
            match step {
                Step::Begin(n) => op.begin_batch(n),
                Step::Call(call) => {
                    let (ctx, mut input) = *call;
                    match op.process_with(&mut input, &ctx) {
                        // Records it rejects were not its to set aside.
                        Ok(_) | Err(OperatorError::BadRecords(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
                Step::Finish(ctx) => {
                    op.finish_batch(&ctx)?;
                }
            }
            let _ = op.side_output();
        }
        Ok(())
    }
}

/// The instance of the version the running one replaced, as it was at
/// adoption, kept while the job may roll back to it.
pub(super) struct Fallback {
    pub(super) version: u64,
    pub(super) op: Box<dyn Operator>,
    /// What the running version was given since adoption.
    pub(super) replay: Replay,
}

impl Fallback {
    /// The instance, brought up to date.
    pub(super) fn catch_up(self) -> Result<Box<dyn Operator>, OperatorError> {
        let mut op = self.op;
        self.replay.onto(op.as_mut())?;
        Ok(op)
    }
}

/// A candidate's instance, built and given the running instance's state on
/// a thread of its own while the job goes on.
pub(super) struct Pending {
    pub(super) version: u64,
    made: mpsc::Receiver<Result<Box<dyn Operator>, String>>,
    /// What the running instance was given since the snapshot.
    pub(super) replay: Replay,
}

/// How a partition's instance is made: for the job, the worker and its
/// limits, recording its changes when the job keeps checkpoints.
#[derive(Clone)]
pub(super) struct Making {
    pub(super) job: String,
    pub(super) worker: usize,
    pub(super) limits: Limits,
    pub(super) tracking: bool,
    /// The job's halt, installed on the threads that build instances.
    pub(super) halt: Option<Halt>,
}

impl Making {
    /// A fresh instance of `to` holding `state`, the snapshot of version
    /// `from`.
    pub(super) fn instance(
        &self,
        to: &Version,
        state: Option<&[u8]>,
        from: u64,
    ) -> Result<Box<dyn Operator>, String> {
        let mut next = to
            .factory
            .instantiate_limited(&self.job, self.worker, &self.limits)
            .map_err(|e| format!("it does not start: {e}"))?;
        if self.tracking {
            next.track_changes();
        }
        if let Some(state) = state {
            next.restore(state)
                .map_err(|e| format!("it cannot restore the state of version {from}: {e}"))?;
        }
        Ok(next)
    }

    /// Starts building an instance of `to` holding `state` on a thread of
    /// its own; `done` runs there once it is built or failed.
    pub(super) fn start(
        &self,
        to: Arc<Version>,
        state: Option<Vec<u8>>,
        from: u64,
        done: impl FnOnce(&Result<Box<dyn Operator>, String>) + Send + 'static,
    ) -> Result<Pending, String> {
        let (tx, made) = mpsc::channel();
        let making = self.clone();
        let version = to.number;
        let replay = Replay::new(state.is_some());
        std::thread::Builder::new()
            .name(format!("sluice-prepare-{}", self.worker))
            .spawn(move || {
                if let Some(halt) = &making.halt {
                    halt.install();
                }
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    making.instance(&to, state.as_deref(), from)
                }))
                .unwrap_or_else(|_| Err("building it panicked".into()));
                done(&result);
                let _ = tx.send(result);
            })
            .map_err(|e| format!("cannot start a thread to build it: {e}"))?;
        Ok(Pending {
            version,
            made,
            replay,
        })
    }
}

impl Pending {
    /// The built instance, brought up to date (waits for it if need be).
    pub(super) fn take(self) -> Result<Box<dyn Operator>, String> {
        let mut op = self
            .made
            .recv()
            .map_err(|_| "building it ended abnormally".to_string())??;
        self.replay
            .onto(op.as_mut())
            .map_err(|e| format!("it failed on the input since its snapshot: {e}"))?;
        Ok(op)
    }
}
