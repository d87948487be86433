//! Dead letters: records set aside with the operator and the reason, written
//! as JSON lines in the form of the `jsonl` sink.

use crate::operators::OwnedHeader;
use crate::sink::{JsonlSink, write_json_record};

/// A record diverted to the dead-letter file.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The operator that rejected it (or trapped or exceeded a limit on it).
    pub operator: String,
    /// The reason.
    pub reason: String,
    /// Micro-batch number.
    pub batch_no: u64,
    /// Partition.
    pub partition: usize,
    /// The record's key.
    pub key: Option<Vec<u8>>,
    /// The record's value.
    pub value: Vec<u8>,
    /// The record's timestamp.
    pub timestamp: i64,
    /// The record's headers.
    pub headers: Vec<OwnedHeader>,
}

pub(super) fn write_dead_letters(dlq: &mut JsonlSink, dead: &[DeadLetter]) -> std::io::Result<()> {
    let mut buf = Vec::new();
    for d in dead {
        write_json_record(
            &mut buf,
            d.key.as_deref(),
            &d.value,
            d.timestamp,
            d.headers
                .iter()
                .map(|(key, value)| crate::model::batch::Header {
                    key,
                    value: value.as_deref(),
                }),
            &[
                ("operator", &d.operator.as_str().into()),
                ("reason", &d.reason.as_str().into()),
                ("batch", &d.batch_no.into()),
                ("partition", &d.partition.into()),
            ],
        )?;
    }
    dlq.write_raw(&buf)
}
