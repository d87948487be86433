//! The vocabulary of the data path, used by every other module and using
//! none: the columnar [`batch`], the one key → partition function
//! ([`partition`]), [`time`] (window assignment, sessions, watermarks, the
//! clock) and the [`units`] job files write durations and sizes in.

pub mod batch;
pub mod partition;
pub mod time;
pub mod units;
