//! The `discard` sink.

use super::Sink;
use crate::model::batch::Batch;

/// Drops every record; the job summary still counts them.
pub struct DiscardSink;

impl Sink for DiscardSink {
    fn describe(&self) -> String {
        "discard".into()
    }

    fn write(&mut self, _batch_no: u64, _parts: &[Batch]) -> std::io::Result<()> {
        Ok(())
    }
}
