//! Checkpoints: one consistent cut of a job at a micro-batch boundary —
//! its sources' positions, its operators' state, its watermarks, its batch
//! number and its sinks' progress — kept in a directory of files
//! ([`store`]) so that a restarted job goes on as if it had never stopped.
//!
//! Operator state reaches the store as the entries that changed since the
//! last checkpoint ([`crate::operators::StateWriter`]), so a checkpoint's
//! cost follows the change, not the state's size; the store merges them
//! into a full copy now and then, off the batch path. Uses
//! [`crate::model`], [`crate::operators`] (the state interface) and
//! [`crate::source`] (positions).

pub mod entries;
pub mod fingerprint;
pub mod store;

pub use entries::{DeltaWriter, Instance, InstanceState};
pub use fingerprint::{Fingerprint, Mismatch};
pub use store::{Loaded, Store, StoreError, Written};

use crate::source::position::Position;
use serde::{Deserialize, Serialize};

/// What a checkpoint holds besides operator state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// The job's name.
    pub job: String,
    /// The last micro-batch the checkpoint includes.
    pub batch: u64,
    /// The batch of the checkpoint this one's changes apply to (`None`:
    /// the first of the job).
    pub prev: Option<u64>,
    /// When it was taken, milliseconds since the Unix epoch.
    pub taken_at_ms: i64,
    /// What the job was made of (compared on resume).
    pub fingerprint: Fingerprint,
    /// Per source, in job order, where it is (`None`: a source that cannot
    /// seek, such as a socket).
    pub sources: Vec<Option<Position>>,
    /// The event-time watermarks of the stages.
    pub watermarks: Watermarks,
    /// Per sink, in job order, how far its output goes.
    pub sinks: Vec<serde_json::Value>,
    /// How far the dead-letter file goes.
    pub dead_letter: serde_json::Value,
    /// Per swappable operator, the version in force: `(operator, version
    /// number, start of the component's SHA-256)`.
    pub versions: Vec<(String, u64, String)>,
    /// Records read, written and dead-lettered so far (for the summary).
    pub counts: Counts,
}

/// The coordinator's event-time bookkeeping (see its fields of the same names).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Watermarks {
    /// Per stage and stream, the largest event time seen.
    pub stage_max_ts: Vec<Vec<Option<i64>>>,
    /// Per stage, the event time its watermark derives from.
    pub stage_watermark_base: Vec<Option<i64>>,
    /// Per stage and stream, the processing time of the last batch with records.
    pub stage_last_records: Vec<Vec<Option<i64>>>,
    /// The processing time of the job's first batch.
    pub first_batch_time: Option<i64>,
    /// Where round-robin partitioning goes on.
    pub rr_next: usize,
}

/// Running totals of a job across its runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Records read.
    pub records_in: u64,
    /// Records written.
    pub records_out: u64,
    /// Non-empty micro-batches.
    pub batches: u64,
}
