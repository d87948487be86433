//! Sluice: a stream processor whose transformations are WebAssembly components.
//!
//! A job reads records from sources, cuts them into micro-batches, spreads
//! each batch over partitions, runs every partition batch through a chain of
//! operators on a pool of CPU workers — one call into a Wasm component per
//! partition batch, never per record — and writes the results to sinks.
//!
//! - [`config`]: the job file.
//! - [`pipeline`]: builds and runs jobs (also from code, with [`pipeline::Job::builder`]).
//! - [`runtime`]: the Wasm side — loading, checking, caching and instantiating components.
//! - [`reload`]: hot reload — a new operator version swapped into a running job.
//! - [`limits`]: memory, time and output limits on every Wasm instance of a job.
//! - [`operator`]: the host-side operator trait, native operators and built-ins.
//! - [`aggregate`], [`join`], [`window`]: keyed aggregation, windowed joins, windows, watermarks.
//! - [`source`], [`sink`]: where records come from and go to.
//! - [`partition`]: the one key → partition function.
//! - [`batch`]: the columnar micro-batch, shared with the guest SDK.
//! - [`devkit`]: `sluice plugin new / build / test` for operator authors.
//! - [`serve`]: `sluice serve`, the multi-tenant HTTP server.

#![warn(missing_docs)]

pub mod cli;
pub mod exec;
pub mod model;
pub mod operators;
pub mod serve;
pub mod signal;
pub mod sink;
pub mod source;
pub mod spec;
pub mod wasm;
