//! The job file.
mod job;
pub mod limits;

pub use job::*;
