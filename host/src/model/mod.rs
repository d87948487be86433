//! The vocabulary of the data path.
pub mod batch;
pub mod partition;
pub mod time;
pub mod units;
