//! Sluice: a stream processor whose transformations are WebAssembly components.
//!
//! A job reads records from sources, cuts them into micro-batches, spreads
//! each batch over partitions, runs every partition batch through a chain of
//! operators on a pool of CPU workers — one call into a Wasm component per
//! partition batch, never per record — and writes the results to sinks.
//!
//! The modules follow the data path, each using only the ones listed
//! before it (`docs/architecture.md` has the map):
//!
//! - [`signal`]: the stop flag and the signals that raise it.
//! - [`model`]: the columnar batch, the one key → partition function, time, units.
//! - [`metrics`]: live figures of running jobs, their Prometheus exposition and the dashboard's JSON.
//! - [`spec`]: the job file, its validation and its `[limits]`.
//! - [`operators`]: the host-side operator traits and the built-ins.
//! - [`wasm`]: Wasm components as operators and reducers, their sandbox, hot reload.
//! - [`source`], [`sink`]: where records come from and go to.
//! - [`state`]: checkpoints of positions and operator state, and recovery from them.
//! - [`exec`]: builds and runs jobs (also from code, with [`exec::Job::builder`]).
//! - [`serve`]: `sluice serve`, the multi-tenant HTTP server, and the dashboard (also for `sluice run --ui`).
//! - [`cli`]: the `sluice` command line, with `sluice plugin` for operator authors.

#![warn(missing_docs)]

pub mod cli;
pub mod exec;
pub mod metrics;
pub mod model;
pub mod operators;
pub mod serve;
pub mod signal;
pub mod sink;
pub mod source;
pub mod spec;
pub mod state;
pub mod wasm;
