//! Native operators from closures: the builder API's `map`, tests, and the
//! native twins that benchmarks measure Wasm operators against.

use crate::model::batch::{Batch, Output};
use crate::operators::{Operator, OperatorError, OperatorFactory, RejectedRecord};
use std::sync::Arc;

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

#[cfg(test)]
mod tests {
    use super::*;

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
