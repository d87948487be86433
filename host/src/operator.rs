//! The host-side operator: what the pipeline calls once per partition batch.
//!
//! Wasm components ([`crate::runtime::WasmOperator`]) and native operators
//! ([`NativeOperator`], the built-in [`Count`]) implement the same trait, so
//! the pipeline is tested and benchmarked without Wasm as well.

use crate::batch::{Batch, Output};
use std::sync::Arc;

/// Why an operator call failed. A plugin's own error, a trap and a host
/// failure stay distinct all the way to the user.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OperatorError {
    /// The operator refused its settings.
    #[error("bad configuration: {0}")]
    BadConfig(String),
    /// The operator rejected these input records (by index).
    #[error("rejected {} record(s)", .0.len())]
    BadRecords(Vec<RejectedRecord>),
    /// The operator reported a failure of its own.
    #[error("operator failed: {0}")]
    Failed(String),
    /// The Wasm instance trapped; it has been discarded and re-created.
    #[error("trapped: {0}")]
    Trap(String),
    /// The host could not run the operator (instantiation, invalid output).
    #[error("{0}")]
    Host(String),
}

/// A record an operator rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedRecord {
    /// Index in the input batch.
    pub index: u32,
    /// The operator's reason.
    pub reason: String,
}

/// What an operator knows about the micro-batch being processed.
#[derive(Debug, Clone, Default)]
pub struct BatchContext {
    /// Micro-batch number.
    pub batch_no: u64,
    /// Largest event time that reached this stage before this batch.
    pub max_event_time_before: Option<i64>,
    /// Largest event time that reached this stage including this batch.
    pub max_event_time_after: Option<i64>,
    /// When the batch was cut, milliseconds since the Unix epoch.
    pub processing_time: i64,
    /// The input has ended (or the job is stopping): emit everything.
    pub end_of_input: bool,
}

/// Records an operator set aside instead of processing, and counts.
#[derive(Debug, Default)]
pub struct SideOutput {
    /// Records that arrived after their windows had closed.
    pub late: u64,
    /// Records to write to the dead-letter file.
    pub diverted: Vec<Diverted>,
}

/// A record an operator set aside, with the reason.
#[derive(Debug, Clone)]
pub struct Diverted {
    /// The record's key.
    pub key: Option<Vec<u8>>,
    /// The record's value.
    pub value: Vec<u8>,
    /// The record's timestamp.
    pub timestamp: i64,
    /// Why it was set aside.
    pub reason: String,
}

/// One instance of an operator, owned by one worker.
pub trait Operator: Send {
    /// Processes one partition batch. `input` is left as it was on return
    /// (implementations may borrow its buffers during the call).
    fn process(&mut self, input: &mut Batch) -> Result<Batch, OperatorError>;

    /// Like [`Operator::process`], with the batch's context; stateful
    /// operators (windows, watermarks) use it.
    fn process_with(
        &mut self,
        input: &mut Batch,
        _ctx: &BatchContext,
    ) -> Result<Batch, OperatorError> {
        self.process(input)
    }

    /// Tells the operator which micro-batch the next calls belong to (used
    /// to tag its log lines).
    fn begin_batch(&mut self, _batch_no: u64) {}

    /// Called once per partition after the batch's records: stateful
    /// operators emit the results that became final here.
    fn finish_batch(&mut self, _ctx: &BatchContext) -> Result<Batch, OperatorError> {
        Ok(Batch::new())
    }

    /// Takes what the operator set aside during the batch.
    fn side_output(&mut self) -> SideOutput {
        SideOutput::default()
    }
}

/// Creates one [`Operator`] instance per worker.
pub trait OperatorFactory: Send + Sync {
    /// The operator's name in the job.
    fn name(&self) -> &str;
    /// Whether the operator needs all records of a key in one partition; the
    /// pipeline inserts a hash exchange before it.
    fn keyed(&self) -> bool {
        false
    }
    /// Whether the operator keeps state across batches and must see every
    /// batch boundary, even of empty batches (to close windows on time).
    fn stateful(&self) -> bool {
        false
    }
    /// A new instance for `worker`.
    fn instantiate(&self, job: &str, worker: usize) -> Result<Box<dyn Operator>, OperatorError>;
}

type BatchFn = dyn Fn(&Batch, &mut Output) -> Result<(), String> + Send + Sync;

/// A native operator from a closure over whole batches, for the builder API,
/// tests and benchmark baselines.
#[derive(Clone)]
pub struct NativeOperator {
    name: String,
    f: Arc<BatchFn>,
}

impl NativeOperator {
    /// An operator called as `f(input, output)` per batch. Return `Err` to fail.
    pub fn new(
        name: impl Into<String>,
        f: impl Fn(&Batch, &mut Output) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        NativeOperator {
            name: name.into(),
            f: Arc::new(f),
        }
    }
}

impl Operator for NativeOperator {
    fn process(&mut self, input: &mut Batch) -> Result<Batch, OperatorError> {
        let mut out = Output::with_capacity_for(input);
        (self.f)(input, &mut out).map_err(OperatorError::Failed)?;
        out.finish().map_err(|e| match e {
            sluice_sdk::Error::BadRecords(rs) => OperatorError::BadRecords(
                rs.into_iter()
                    .map(|r| RejectedRecord {
                        index: r.index,
                        reason: r.reason,
                    })
                    .collect(),
            ),
            other => OperatorError::Failed(other.to_string()),
        })
    }
}

impl OperatorFactory for NativeOperator {
    fn name(&self) -> &str {
        &self.name
    }
    fn instantiate(&self, _job: &str, _worker: usize) -> Result<Box<dyn Operator>, OperatorError> {
        Ok(Box::new(self.clone()))
    }
}

/// The built-in `count`: the number of records per key in each micro-batch
/// (Spark's `reduceByKey(_ + _)` on `(key, 1)` pairs). Records without a key
/// are counted under their value. Emits one record per key: the key, and the
/// count as decimal text, timestamped with the latest input timestamp.
#[derive(Debug, Clone)]
pub struct Count {
    name: String,
}

impl Count {
    /// A `count` operator called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Count { name: name.into() }
    }
}

impl OperatorFactory for Count {
    fn name(&self) -> &str {
        &self.name
    }
    fn keyed(&self) -> bool {
        true
    }
    fn instantiate(&self, _job: &str, _worker: usize) -> Result<Box<dyn Operator>, OperatorError> {
        Ok(Box::new(CountInstance::default()))
    }
}

#[derive(Default)]
struct CountInstance {
    counts: hashbrown::HashMap<Vec<u8>, (u64, i64, usize), rustc_hash::FxBuildHasher>,
}

impl Operator for CountInstance {
    fn process(&mut self, input: &mut Batch) -> Result<Batch, OperatorError> {
        self.counts.clear();
        let mut order = 0;
        for r in input.iter() {
            let k = r.key.unwrap_or(r.value);
            let e = self.counts.entry_ref(k).or_insert_with(|| {
                order += 1;
                (0, r.timestamp, order)
            });
            e.0 += 1;
            e.1 = e.1.max(r.timestamp);
        }
        // Emit in first-seen order so output is deterministic.
        let mut rows: Vec<_> = self.counts.iter().collect();
        rows.sort_unstable_by_key(|(_, (_, _, o))| *o);
        let mut out = Batch::new();
        for (k, (n, ts, _)) in rows {
            out.push(Some(k), n.to_string().as_bytes(), *ts);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_groups_by_key_then_value() {
        let mut b = Batch::new();
        b.push(Some(b"a"), b"x", 1);
        b.push(Some(b"b"), b"x", 5);
        b.push(Some(b"a"), b"y", 3);
        b.push(None, b"a", 2);
        let out = Count::new("count")
            .instantiate("j", 0)
            .unwrap()
            .process(&mut b)
            .unwrap();
        let rows: Vec<_> = out
            .iter()
            .map(|r| (r.key.unwrap(), r.value, r.timestamp))
            .collect();
        assert_eq!(rows, [(&b"a"[..], &b"3"[..], 3), (b"b", b"1", 5)]);
    }

    #[test]
    fn native_operator_rejections_become_bad_records() {
        let op = NativeOperator::new("even", |input, out| {
            for r in input.iter() {
                if r.value.len() % 2 == 0 {
                    out.forward(r);
                } else {
                    out.reject(r.index, "odd length");
                }
            }
            Ok(())
        });
        let mut b = Batch::from_values(["ab", "abc"], 0);
        let err = op.instantiate("j", 0).unwrap().process(&mut b).unwrap_err();
        assert!(
            matches!(err, OperatorError::BadRecords(ref r) if r[0].index == 1),
            "{err:?}"
        );
    }
}
