//! Runs jobs, and is the only module that puts the others together: a job's
//! plan of stages (`plan.rs`), the micro-batcher that cuts the sources'
//! records into batches (`batcher.rs`), the coordinator that partitions each
//! batch and runs it stage by stage on the worker threads (`coordinator.rs`,
//! `worker.rs`), moving the stateful stages' watermarks (`watermarks.rs`),
//! with a hash exchange before keyed operators (`exchange.rs`)
//! and the isolation of records that make an operator fail
//! (`isolation.rs`), then the commit of each batch to the sinks, the
//! dead-letter file and the sources' offsets (`commit.rs`,
//! `dead_letter.rs`), and the job's live figures (`stats.rs`, and the
//! run's meters laid out as its plan in `meters.rs`). Uses every
//! module below it: `model`, `metrics`, `spec`, `operators`, `wasm`,
//! `source`, `sink` and `signal`.
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
mod checkpoint;
mod commit;
mod coordinator;
mod dead_letter;
mod exchange;
mod isolation;
mod job;
mod meters;
mod plan;
mod stats;
mod watermarks;
mod worker;

pub use crate::wasm::reload::VersionEvent;
pub use checkpoint::Checkpointing;
pub use dead_letter::DeadLetter;
pub use job::{
    DEFAULT_INTERVAL, Job, JobBuilder, JobError, MAX_BATCH_BYTES, STOP_GRACE, Summary,
    default_workers,
};
pub use stats::{JobStats, MAX_VERSION_EVENTS, SkipCount, StatsSnapshot};

/// Tunes the C allocator for batch-sized buffers; call it once, before any
/// other thread starts (`sluice` does, first thing).
///
/// glibc's malloc serves every allocation over 128 KiB with its own `mmap`
/// and gives it back with `munmap` when freed, so each batch's buffers would
/// cost a page fault per 4 KiB touched, on every batch. Raising the mapping
/// and trimming thresholds keeps freed buffers in the heap for the next
/// batch. (mimalloc as the global allocator instead made
/// `benches/wordcount.sh` about a third slower, 10.6–11.8 M words/s against
/// 14–21 M with glibc's malloc.)
pub fn tune_allocator() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes the allocator's thresholds; the caller
    // runs it before other threads exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
    }
}
