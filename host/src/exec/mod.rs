//! Runs jobs: a job's [plan](plan) of stages, the [micro-batcher](batcher)
//! that cuts the sources' records into batches, the [coordinator] that
//! partitions each batch and runs it stage by stage on the [worker] threads
//! (with a hash [exchange] before keyed operators, and the [isolation] of
//! records that make an operator fail), then [commits](commit) it: sinks,
//! [dead letters](dead_letter), source offsets, and the job's [stats].
//!
//! Jobs come from a job file ([`Job::from_file`]) or from code:
//!
//! ```no_run
//! # async fn demo() -> Result<(), sluice::exec::JobError> {
//! use sluice::spec::{SinkConfig, SourceConfig};
//! use sluice::operators::{Count, NativeOperator};
//! use sluice::exec::Job;
//!
//! let summary = Job::builder("wordcount")
//!     .source(SourceConfig::File { path: "book.txt".into() })
//!     .operator(NativeOperator::new("split", |input, out| {
//!         for line in input.iter() {
//!             for w in line.value.split(|b| *b == b' ').filter(|w| !w.is_empty()) {
//!                 out.emit(Some(w), w, line.timestamp);
//!             }
//!         }
//!         Ok(())
//!     }))
//!     .operator(Count::new("count"))
//!     .sink(SinkConfig::Stdout { limit: 10 })
//!     .workers(2)
//!     .max_records(100_000)
//!     .build()?
//!     .run_to_end()
//!     .await?;
//! println!("{summary}");
//! # Ok(()) }
//! ```

mod batcher;
mod commit;
mod coordinator;
mod dead_letter;
mod exchange;
mod isolation;
mod job;
mod plan;
mod stats;
mod worker;

pub use crate::wasm::reload::VersionEvent;
pub use dead_letter::DeadLetter;
pub use job::{
    DEFAULT_INTERVAL, Job, JobBuilder, JobError, MAX_BATCH_BYTES, STOP_GRACE, Summary,
    default_workers,
};
pub use stats::{JobStats, SkipCount, StatsSnapshot};
