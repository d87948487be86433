//! `transform` components as operators: the batch moves into guest memory
//! as a few flat buffers, once per call.

use super::component::{Plugin, STATEFUL_EXPORT};
use super::log::LogTags;
use super::sandbox;
use super::store::{Session, TransformBindings};
use super::{wit, wit_types};
use crate::model::batch::Batch;
use crate::operators::changes::corrupt;
use crate::operators::{Operator, OperatorError, OperatorFactory, StateWriter};
use crate::spec::limits::Limits;

/// Makes one [`WasmOperator`] per partition.
pub struct WasmOperatorFactory {
    pub(super) name: String,
    pub(super) plugin: Plugin,
    pub(super) config: Vec<(String, String)>,
}

impl OperatorFactory for WasmOperatorFactory {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "plugin"
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
        let tags = LogTags {
            job: job.to_string(),
            operator: self.name.clone(),
            worker,
        };
        Ok(Box::new(self.plugin.instantiate_limited(
            tags,
            &self.config,
            limits,
        )?))
    }
}

/// One instance of a `transform` component, owned by one worker.
pub struct WasmOperator {
    pub(super) session: Session<TransformBindings>,
}

impl Operator for WasmOperator {
    fn memory_used(&self) -> Option<u64> {
        self.session.memory_used()
    }

    fn begin_batch(&mut self, batch_no: u64) {
        self.session.begin_batch(batch_no);
    }

    fn process(&mut self, input: &mut Batch) -> Result<Batch, OperatorError> {
        // Move the buffers into the binding's record for the call and back
        // afterwards: lowering copies them into guest memory once, and the
        // host never clones a batch.
        let size = sandbox::boundary_bytes(input);
        let arg = batch_to_wit(input);
        let result = self.session.call(size, |bindings, store| {
            bindings
                .transform
                .sluice_operator_transformer()
                .call_process(store, &arg)
        });
        *input = batch_from_wit(arg);
        let out = batch_from_wit(result?);
        out.validate().map_err(|m| {
            OperatorError::Host(format!("the operator returned a malformed batch: {m}"))
        })?;
        self.session
            .check_output(size, sandbox::boundary_bytes(&out))?;
        Ok(out)
    }

    /// A `transform` component keeps nothing that must survive a call (see
    /// the operator contract), unless it exports its state.
    fn stateless(&self) -> bool {
        !self.session.plugin.info().stateful
    }

    /// The instance's state, read from the running instance, which goes on
    /// as it was: a `snapshot` that returns an error leaves it and its
    /// state in place. (One that traps or passes `memory` or
    /// `cpu_per_batch` loses the instance, as any call does.)
    fn snapshot(&mut self) -> Result<Option<Vec<u8>>, OperatorError> {
        if !self.session.plugin.info().stateful {
            return Ok(None);
        }
        self.session
            .call_for_state(|bindings, store| match &bindings.state {
                Some(state) => state.call_snapshot(store),
                None => Ok(Err(wit_types::Error::Failed(
                    "the instance has no `stateful` exports".into(),
                ))),
            })
            .map(Some)
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), OperatorError> {
        if !self.session.plugin.info().stateful {
            return Err(OperatorError::Host(format!(
                "`{}` cannot take over the state of the version it replaces: it does not \
                 export `{STATEFUL_EXPORT}` (world `stateful-transform`)",
                self.session.plugin.name()
            )));
        }
        self.session
            .check_state(state.len(), "the state to restore")?;
        self.session
            .call(state.len(), |bindings, store| match &bindings.state {
                Some(s) => s.call_restore(store, state),
                None => Ok(Err(wit_types::Error::Failed(
                    "the instance has no `stateful` exports".into(),
                ))),
            })
    }

    /// A component's state is opaque to the host, so every checkpoint of a
    /// stateful one writes it whole: its [`Operator::snapshot`], as one
    /// entry under the empty key (what it costs follows the state's size,
    /// not its change). A stateless component writes nothing.
    fn checkpoint(&mut self, out: &mut dyn StateWriter) -> Result<(), OperatorError> {
        if let Some(state) = self.snapshot()? {
            out.put(WHOLE_STATE, &state);
        }
        Ok(())
    }

    /// Hands the entry [`Operator::checkpoint`] wrote to the fresh
    /// instance's `restore`.
    fn restore_entries(&mut self, entries: &[(Vec<u8>, Vec<u8>)]) -> Result<(), OperatorError> {
        match entries {
            [] => Ok(()),
            _ if !self.session.plugin.info().stateful => Err(OperatorError::Host(format!(
                "the checkpoint holds state for `{}`, which keeps none: it does not export \
                 `{STATEFUL_EXPORT}` (world `stateful-transform`)",
                self.session.plugin.name()
            ))),
            [(key, state)] if key.as_slice() == WHOLE_STATE => self.restore(state),
            _ => Err(corrupt(
                "a plugin's state is one entry, under the empty key",
            )),
        }
    }
}

/// The key of a stateful component's state in a checkpoint.
const WHOLE_STATE: &[u8] = b"";

/// Moves `batch`'s buffers into the contract's record, leaving it empty.
/// Without headers only the option's tag crosses the boundary.
fn batch_to_wit(batch: &mut Batch) -> wit::Batch {
    let headers = batch.has_headers().then(|| wit_types::RecordHeaders {
        ends: std::mem::take(&mut batch.header_ends),
        keys: std::mem::take(&mut batch.header_keys),
        key_ends: std::mem::take(&mut batch.header_key_ends),
        values: std::mem::take(&mut batch.header_values),
        value_ends: std::mem::take(&mut batch.header_value_ends),
        value_present: std::mem::take(&mut batch.header_value_present),
    });
    wit::Batch {
        keys: std::mem::take(&mut batch.keys),
        key_ends: std::mem::take(&mut batch.key_ends),
        key_present: std::mem::take(&mut batch.key_present),
        values: std::mem::take(&mut batch.values),
        value_ends: std::mem::take(&mut batch.value_ends),
        timestamps: std::mem::take(&mut batch.timestamps),
        headers,
    }
}

/// The contract's record as a [`Batch`], moving its buffers.
fn batch_from_wit(w: wit::Batch) -> Batch {
    let mut batch = Batch {
        keys: w.keys,
        key_ends: w.key_ends,
        key_present: w.key_present,
        values: w.values,
        value_ends: w.value_ends,
        timestamps: w.timestamps,
        ..Batch::default()
    };
    if let Some(h) = w.headers {
        batch.header_ends = h.ends;
        batch.header_keys = h.keys;
        batch.header_key_ends = h.key_ends;
        batch.header_values = h.values;
        batch.header_value_ends = h.value_ends;
        batch.header_value_present = h.value_present;
    }
    batch
}
