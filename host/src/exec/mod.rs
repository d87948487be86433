//! Runs jobs.
mod job;
mod stats;
mod worker;

pub use crate::wasm::reload::VersionEvent;
pub use job::*;
pub use stats::{JobStats, SkipCount, StatsSnapshot};
pub use worker::DeadLetter;
