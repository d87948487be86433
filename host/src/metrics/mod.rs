//! Metrics: the live figures of running jobs and their two readings, the
//! Prometheus exposition (`expose.rs`) and the dashboard's JSON
//! (`view.rs`). The pipeline adds to its meters (`meters.rs`,
//! `histogram.rs`) once per chunk, partition batch or micro-batch, never
//! per record, so that watching a job costs it nothing measurable; the
//! families' names are in `families.rs`. Uses no
//! other module of the host: the layers above hand it plain figures.

mod expose;
pub mod families;
mod histogram;
mod meters;
mod view;

pub use expose::{CONTENT_TYPE, Scope, encode};
pub use histogram::{BUCKETS, Histogram, HistogramView};
pub use meters::{
    CallFigures, Count, JobMeters, LimitSpec, OperatorMeter, RECENT_BATCHES, RECENT_DEAD_LETTERS,
    Recent, SinkMeter, SourceMeter, StageMeter,
};
pub use view::{
    BatchRow, CheckpointView, DeadLetterRow, JobFigures, JobMetricsView, LimitUse, OperatorView,
    PartitionLag, PartitionView, SinkView, SourceView, StageView, Totals, VersionRow, WatermarkRow,
};
