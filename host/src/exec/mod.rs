//! Runs jobs.
mod job;
mod stats;
mod worker;

pub use job::*;
pub use stats::{JobStats, SkipCount, StatsSnapshot, VersionEvent};
pub use worker::DeadLetter;
