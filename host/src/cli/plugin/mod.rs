//! Tools for operator authors: `sluice plugin new`, `build` and `test`.
//!
//! - [`scaffold`] creates an operator crate that builds and passes its test
//!   as generated.
//! - [`build`] compiles a crate into a component and checks it against the
//!   contract.
//! - [`sample`] runs a component over sample records and reports what came
//!   out, what was rejected and why, and how long it took.

pub mod build;
pub mod sample;
pub mod scaffold;
