//! The vocabulary of the data path, used by every other module and using
//! none: the columnar [`batch`], the one key → partition function
//! ([`partition`]), [`time`] (window assignment, sessions, watermarks, the
//! clock), the [`units`] job files write durations and sizes in, and the
//! [`claim`] a process holds on a name among the processes of its host.

pub mod batch;
pub mod claim;
pub mod partition;
pub mod time;
pub mod units;
