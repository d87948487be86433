//! The host-side operator: what a job calls once per partition batch, and
//! the built-ins a job file names ([`registry`]).
//!
//! Wasm components (`crate::wasm::WasmOperator`) and native operators
//! ([`NativeOperator`], the built-in [`Count`]) implement the same trait, so
//! the engine is tested and benchmarked without Wasm as well. Uses only
//! [`crate::model`] and [`crate::spec`].

pub mod aggregate;
pub mod budget;
pub mod changes;
mod count;
pub mod join;
mod native;
pub mod registry;
pub mod window;

pub use changes::{Changes, Decoder, Encoder, StateWriter};
pub use count::{Count, CountCombiner, partial_count};
pub use native::NativeOperator;

use crate::model::batch::{Batch, Headers, Record};
use crate::spec::limits::{Limit, Limits};
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
    /// The operator exceeded one of the job's limits. A Wasm instance past
    /// `memory`, `cpu_per_batch` or `output_ratio` has been discarded and
    /// re-created; one whose state is past `max_state` goes on as it was.
    #[error("limit `{limit}` = {value} exceeded: {detail}")]
    Limit {
        /// Which limit.
        limit: Limit,
        /// The limit's value, as a job file writes it (`64 MiB`, `200ms`).
        value: String,
        /// What the instance did.
        detail: String,
    },
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
    /// The micro-batch brought records from the sources (to any partition);
    /// false for the empty batches that only mark time for stateful stages.
    pub has_records: bool,
    /// For an operator that reads named streams ([`OperatorFactory::inputs`]),
    /// the position in that list of the stream this batch belongs to.
    pub input: usize,
}

/// Records an operator set aside instead of processing, and counts.
#[derive(Debug, Default)]
pub struct SideOutput {
    /// Records that arrived after their windows had closed.
    pub late: u64,
    /// Records to write to the dead-letter file.
    pub diverted: Vec<Diverted>,
    /// Records the operator did not take because taking them would have
    /// exceeded one of the job's limits (`state`, `join_output`), each with
    /// the breach as its reason; the job's `on_breach` decides whether they
    /// go to the dead-letter file, are dropped, or stop the job.
    pub refused: Vec<Diverted>,
    /// The first of those breaches.
    pub breach: Option<OperatorError>,
}

impl SideOutput {
    /// Sets `r` aside unprocessed: taking it would have been `breach`.
    pub fn refuse(&mut self, r: &Record<'_>, breach: OperatorError) {
        self.refused.push(Diverted {
            key: r.key.map(<[u8]>::to_vec),
            value: r.value.to_vec(),
            timestamp: r.timestamp,
            headers: owned_headers(r.headers),
            reason: format!("operator set this record aside: {breach}"),
        });
        self.breach.get_or_insert(breach);
    }

    /// Sets `r` aside when its event time is further ahead of the batch's
    /// `processing_time` than `rules` allow: it goes to the dead-letter file
    /// with the reason, and into no window. Returns whether it did.
    pub fn set_aside_if_far_ahead(
        &mut self,
        rules: WatermarkRules,
        r: &Record<'_>,
        processing_time: i64,
    ) -> bool {
        let Some(max_future) = rules
            .max_future
            .filter(|_| rules.too_far_ahead(r.timestamp, processing_time))
        else {
            return false;
        };
        self.divert(r.key, r.value, r.timestamp, r.headers, format!(
            "event time {} is more than max_future = {max_future}ms ahead of the processing time {processing_time}",
            r.timestamp
        ));
        true
    }

    fn divert(
        &mut self,
        key: Option<&[u8]>,
        value: &[u8],
        timestamp: i64,
        headers: Headers<'_>,
        reason: String,
    ) {
        self.diverted.push(Diverted {
            key: key.map(<[u8]>::to_vec),
            value: value.to_vec(),
            timestamp,
            headers: owned_headers(headers),
            reason,
        });
    }

    /// Counts a record that arrived after its windows closed and, with
    /// `divert`, sets it aside for the dead-letter file with `reason`.
    pub fn late_record(
        &mut self,
        divert: bool,
        key: Option<&[u8]>,
        value: &[u8],
        timestamp: i64,
        headers: Headers<'_>,
        reason: impl FnOnce() -> String,
    ) {
        self.late += 1;
        if divert {
            self.divert(key, value, timestamp, headers, reason());
        }
    }
}

/// A record header as owned bytes: key, and value (`None`: null).
pub type OwnedHeader = (Vec<u8>, Option<Vec<u8>>);

/// Copies `headers` out of their batch (no allocation when there are none).
pub fn owned_headers(headers: Headers<'_>) -> Vec<OwnedHeader> {
    headers
        .iter()
        .map(|h| (h.key.to_vec(), h.value.map(<[u8]>::to_vec)))
        .collect()
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
    /// The record's headers.
    pub headers: Vec<OwnedHeader>,
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

    /// The operator's state, for the next version of the operator to take
    /// over on a hot swap; `None` when it keeps none.
    fn snapshot(&mut self) -> Result<Option<Vec<u8>>, OperatorError> {
        Ok(None)
    }

    /// Takes over `state`, a [`Operator::snapshot`] of the instance of the
    /// version this one replaces, before the first batch.
    fn restore(&mut self, _state: &[u8]) -> Result<(), OperatorError> {
        Err(OperatorError::Host(
            "this operator cannot take over the state of another version".into(),
        ))
    }

    /// Between batches, when the job is about to try a new version of the
    /// operator: does ahead of the probe batch what the change of version
    /// needs (a swappable operator takes its snapshot and builds the
    /// candidate's instance on a thread of its own). Most operators have
    /// nothing to do.
    fn prepare(&mut self) {}

    /// The bytes of linear memory the operator's Wasm instance holds, for
    /// its metrics; `None` for a native operator.
    fn memory_used(&self) -> Option<u64> {
        None
    }

    /// Starts recording which entries of the state change, so that each
    /// [`Operator::checkpoint`] writes only those (called before the first
    /// batch when the job keeps checkpoints, and again on an instance that
    /// takes over from another version after a rollback: then what it holds
    /// counts as changed).
    fn track_changes(&mut self) {}

    /// Writes to `out` the entries of the state that changed since the
    /// last call (since [`Operator::track_changes`] for the first): a put
    /// for each entry set or updated, a delete for each removed. Called
    /// between batches, never during one. An operator that keeps no state
    /// writes nothing.
    fn checkpoint(&mut self, _out: &mut dyn StateWriter) -> Result<(), OperatorError> {
        Ok(())
    }

    /// Takes back the state of a checkpoint — every entry its
    /// [`Operator::checkpoint`] calls left — before the first batch.
    fn restore_entries(&mut self, entries: &[(Vec<u8>, Vec<u8>)]) -> Result<(), OperatorError> {
        if entries.is_empty() {
            return Ok(());
        }
        Err(OperatorError::Host(
            "this operator keeps no state, but the checkpoint holds some for it".into(),
        ))
    }

    /// Whether the operator keeps nothing from one call to the next that
    /// changes its output, so that a batch processed in parts, in order,
    /// gives the same output as the whole batch. The pipeline then re-runs
    /// a batch that made it trap or exceed a limit in halves, to find the
    /// records at fault.
    fn stateless(&self) -> bool {
        false
    }
}

/// How the coordinator keeps the event-time watermark of a stage for an
/// operator: which records may move it and which streams may hold it back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WatermarkRules {
    /// A record whose event time is more than this many milliseconds ahead
    /// of the batch's processing time does not move the watermark (the
    /// operator sets it aside for the dead-letter file).
    pub max_future: Option<i64>,
    /// A stream without records for this many milliseconds of processing
    /// time stops holding the watermark back.
    pub idle_timeout: Option<i64>,
}

impl WatermarkRules {
    /// The rules of a stage of operators with `self` and `other`: the
    /// stricter bound of each.
    pub fn and(self, other: WatermarkRules) -> WatermarkRules {
        let min = |a: Option<i64>, b: Option<i64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        WatermarkRules {
            max_future: min(self.max_future, other.max_future),
            idle_timeout: min(self.idle_timeout, other.idle_timeout),
        }
    }

    /// Whether a record at event time `ts` is too far ahead of
    /// `processing_time` to count.
    pub fn too_far_ahead(&self, ts: i64, processing_time: i64) -> bool {
        self.max_future
            .is_some_and(|f| ts > processing_time.saturating_add(f))
    }
}

/// Creates one [`Operator`] instance per partition (the pipeline calls
/// [`OperatorFactory::instantiate`] on the worker thread that runs it).
pub trait OperatorFactory: Send + Sync {
    /// The operator's name in the job.
    fn name(&self) -> &str;
    /// Its kind, as a job file writes it (`plugin`, `reducer`, `count`,
    /// `aggregate`, `join`), or `native` for an operator built in code.
    fn kind(&self) -> &'static str {
        "native"
    }
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
    /// A map-side combiner: when set, the pipeline runs it over every
    /// partition batch before the exchange into this (keyed) operator, so
    /// many records of a key cross the exchange as one partial record, and
    /// the operator receives combined records only.
    fn combiner(&self) -> Option<Arc<dyn Combiner>> {
        None
    }
    /// Whether the exchange into this keyed operator sends all records
    /// without a key to one partition (the operator treats them as one
    /// group) rather than spreading them by value (as `count` groups them by
    /// value).
    fn unkeyed_together(&self) -> bool {
        false
    }
    /// The streams the operator reads, by name (a source's `name`, or an
    /// earlier join's); records of other streams pass it untouched. `None`:
    /// every record that reaches it.
    fn inputs(&self) -> Option<Vec<String>> {
        None
    }
    /// The stream its output belongs to; `None`: its input's stream.
    fn output_stream(&self) -> Option<String> {
        None
    }
    /// How a stateful operator's stage keeps its watermark.
    fn watermark_rules(&self) -> WatermarkRules {
        WatermarkRules::default()
    }
    /// A new instance for `worker`.
    fn instantiate(&self, job: &str, worker: usize) -> Result<Box<dyn Operator>, OperatorError>;
    /// A new instance for `worker`, held to the job's `limits`. Operators
    /// that run no untrusted code have nothing to limit and make a plain
    /// instance (the default).
    fn instantiate_limited(
        &self,
        job: &str,
        worker: usize,
        _limits: &Limits,
    ) -> Result<Box<dyn Operator>, OperatorError> {
        self.instantiate(job, worker)
    }
}

/// An operator applied to one named stream only (the job file's `input`).
pub struct OnStream {
    stream: String,
    inner: Arc<dyn OperatorFactory>,
}

impl OnStream {
    /// `inner`, applied to the records of `stream` only.
    pub fn new(stream: impl Into<String>, inner: Arc<dyn OperatorFactory>) -> Self {
        OnStream {
            stream: stream.into(),
            inner,
        }
    }
}

impl OperatorFactory for OnStream {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn keyed(&self) -> bool {
        self.inner.keyed()
    }
    fn stateful(&self) -> bool {
        self.inner.stateful()
    }
    fn inputs(&self) -> Option<Vec<String>> {
        Some(vec![self.stream.clone()])
    }
    fn output_stream(&self) -> Option<String> {
        self.inner.output_stream()
    }
    fn combiner(&self) -> Option<Arc<dyn Combiner>> {
        self.inner.combiner()
    }
    fn unkeyed_together(&self) -> bool {
        self.inner.unkeyed_together()
    }
    fn watermark_rules(&self) -> WatermarkRules {
        self.inner.watermark_rules()
    }
    fn instantiate(&self, job: &str, worker: usize) -> Result<Box<dyn Operator>, OperatorError> {
        self.inner.instantiate(job, worker)
    }
    fn instantiate_limited(
        &self,
        job: &str,
        worker: usize,
        limits: &Limits,
    ) -> Result<Box<dyn Operator>, OperatorError> {
        self.inner.instantiate_limited(job, worker, limits)
    }
}

/// Pre-aggregates one partition's records before the exchange, as Spark's
/// `reduceByKey` combines on the map side. See [`OperatorFactory::combiner`].
pub trait Combiner: Send + Sync {
    /// The combined form of `input`.
    fn combine(&self, input: &Batch) -> Batch;
}
