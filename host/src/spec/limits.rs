//! What one operator instance of a job may use, and what happens when it
//! uses more.
//!
//! A job's [`Limits`] apply to every operator instance of the job (one per
//! operator and partition). For a Wasm instance: its linear memory, how long
//! one `process` or `reduce` call may run, and how much output a call may
//! return for its input; the runtime enforces them ([`crate::wasm`]). For
//! the keyed state the host holds for an operator — the windows and totals
//! of `aggregate`, the buffered records of `join`, a reducer's accumulators
//! — its size in bytes; and for `join`, the records it may emit for one
//! micro-batch. A breach is an [`crate::operators::OperatorError::Limit`],
//! and the job's [`OnBreach`] policy decides whether the job stops or the
//! records concerned are set aside. In a job file they are the `[limits]`
//! table:
//!
//! ```toml
//! [limits]
//! memory = "64MiB"          # linear memory per instance (default 1GiB)
//! cpu_per_batch = "2s"      # longest one call may run (default: no deadline)
//! output_ratio = 10         # output ≤ 10 × input + 1 MiB per call (default 100)
//! state = "256MiB"          # keyed state per instance (default 1GiB)
//! max_state = "128MiB"      # a stateful plugin's snapshot (default: its memory)
//! join_output = 100000      # records a join emits per batch and partition (default 1000000)
//! on_breach = "dead-letter" # "fail" (default), "skip" or "dead-letter"
//! ```
//!
//! State is counted as it changes, entry by entry: an entry's key and value
//! bytes plus [`STATE_ENTRY_OVERHEAD`] (see
//! [`crate::operators::budget::StateBudget`]).

use crate::model::units::{format_size, parse_duration, parse_size};
use serde::Deserialize;
use std::fmt;
use std::time::Duration;
use toml::Spanned;

/// Default linear memory per instance: 1 GiB.
pub const DEFAULT_MEMORY: u64 = 1 << 30;
/// Default output ratio: a call may return 100 times its input (plus
/// [`OUTPUT_ALLOWANCE`]).
pub const DEFAULT_OUTPUT_RATIO: f64 = 100.0;
/// Output bytes a call may return on top of `output_ratio` × its input, so
/// that small batches may grow.
pub const OUTPUT_ALLOWANCE: u64 = 1 << 20;
/// Smallest memory limit accepted: 1 MiB.
pub const MIN_MEMORY: u64 = 1 << 20;
/// Largest memory limit accepted: 4 GiB, all a 32-bit Wasm memory can hold.
pub const MAX_MEMORY: u64 = 4 << 30;
/// Largest output ratio accepted.
pub const MAX_OUTPUT_RATIO: f64 = 1e6;
/// Default keyed state per instance: 1 GiB.
pub const DEFAULT_STATE: u64 = 1 << 30;
/// Smallest state limit accepted: 1 KiB.
pub const MIN_STATE: u64 = 1 << 10;
/// Largest state limit accepted: 1024 GiB.
pub const MAX_STATE: u64 = 1 << 40;
/// Bytes an entry of keyed state counts on top of its key and value: the
/// table slot, the allocation and the bookkeeping around it.
pub const STATE_ENTRY_OVERHEAD: u64 = 64;
/// Default records a join instance may emit for one micro-batch.
pub const DEFAULT_JOIN_OUTPUT: u64 = 1_000_000;
/// Largest `join_output` accepted.
pub const MAX_JOIN_OUTPUT: u64 = 1_000_000_000;
/// Elements a table of an instance may hold (function tables).
pub const TABLE_ELEMENTS: usize = 1 << 20;
/// Core instances a component instance may create.
pub const INSTANCES: usize = 100;
/// Tables a component instance may create.
pub const TABLES: usize = 100;
/// Linear memories a component instance may create.
pub const MEMORIES: usize = 16;
/// Host resources (streams, pollables) an instance may hold at once.
pub const HOST_RESOURCES: usize = 100_000;

/// The values `on_breach` accepts.
pub const ON_BREACH: &[&str] = &["fail", "skip", "dead-letter"];

/// Limits on every operator instance of a job.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Linear memory of one instance, in bytes (all its memories together).
    pub memory: u64,
    /// Longest one call (`init`, `process`, `reduce`) may run, in wall-clock
    /// time; `None`: no deadline.
    pub cpu_per_batch: Option<Duration>,
    /// A call may pass at most this times its input's size to the host,
    /// plus [`OUTPUT_ALLOWANCE`] (sizes as they cross the boundary: keys,
    /// values, and 17 bytes per record); `None`: not checked.
    pub output_ratio: Option<f64>,
    /// Bytes of keyed state the host may hold for one instance: the windows
    /// and totals of `aggregate`, the records `join` buffers, the
    /// accumulators of a reducer.
    pub state: u64,
    /// Bytes a stateful Wasm operator's state may have when it crosses the
    /// boundary whole (`snapshot` for a checkpoint or a new version,
    /// `restore`); `None`: its `memory`, which holds it anyway. Neither
    /// call is held to `output_ratio`: the state is no batch's output.
    pub max_state: Option<u64>,
    /// Records one `join` instance may emit for one micro-batch.
    pub join_output: u64,
    /// What happens to the job and the records when a limit is exceeded.
    pub on_breach: OnBreach,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: DEFAULT_MEMORY,
            cpu_per_batch: None,
            output_ratio: Some(DEFAULT_OUTPUT_RATIO),
            state: DEFAULT_STATE,
            max_state: None,
            join_output: DEFAULT_JOIN_OUTPUT,
            on_breach: OnBreach::Fail,
        }
    }
}

impl Limits {
    /// Checks every limit. The error gives the setting at fault (`memory`,
    /// ...) and says what is wrong with its value and what is accepted.
    pub fn validate(&self) -> Result<(), (Limit, String)> {
        if !(MIN_MEMORY..=MAX_MEMORY).contains(&self.memory) {
            return Err((
                Limit::Memory,
                format!(
                    "{} is out of range (accepted: {} to {})",
                    format_size(self.memory),
                    format_size(MIN_MEMORY),
                    format_size(MAX_MEMORY)
                ),
            ));
        }
        if let Some(d) = self.cpu_per_batch
            && d < Duration::from_millis(1)
        {
            return Err((
                Limit::CpuPerBatch,
                format!("{d:?} is too short (accepted: 1ms or more)"),
            ));
        }
        if let Some(r) = self.output_ratio {
            check_ratio(r).map_err(|m| (Limit::OutputRatio, m))?;
        }
        if !(MIN_STATE..=MAX_STATE).contains(&self.state) {
            return Err((
                Limit::State,
                format!(
                    "{} is out of range (accepted: {} to {})",
                    format_size(self.state),
                    format_size(MIN_STATE),
                    format_size(MAX_STATE)
                ),
            ));
        }
        if let Some(m) = self.max_state
            && !(MIN_STATE..=MAX_MEMORY).contains(&m)
        {
            return Err((
                Limit::MaxState,
                format!(
                    "{} is out of range (accepted: {} to {})",
                    format_size(m),
                    format_size(MIN_STATE),
                    format_size(MAX_MEMORY)
                ),
            ));
        }
        if !(1..=MAX_JOIN_OUTPUT).contains(&self.join_output) {
            return Err((Limit::JoinOutput, join_output_range(self.join_output)));
        }
        Ok(())
    }

    /// The most bytes a stateful instance's state may have when it crosses
    /// the boundary whole: `max_state`, never more than `memory`.
    pub fn state_allowed(&self) -> u64 {
        self.max_state.unwrap_or(self.memory).min(self.memory)
    }

    /// The most bytes a call with `input` bytes of input may pass to the
    /// host, or `None` when output is not checked.
    pub fn output_allowed(&self, input: usize) -> Option<u64> {
        self.output_ratio
            .map(|r| (r * input as f64) as u64 + OUTPUT_ALLOWANCE)
    }
}

/// Why `n` is not a usable `join_output`.
fn join_output_range(n: impl fmt::Display) -> String {
    format!("{n} is out of range (accepted: a number of records from 1 to {MAX_JOIN_OUTPUT})")
}

/// Checks an output ratio: a finite number above zero, at most
/// [`MAX_OUTPUT_RATIO`].
pub fn check_ratio(ratio: f64) -> Result<(), String> {
    if ratio.is_finite() && ratio > 0.0 && ratio <= MAX_OUTPUT_RATIO {
        Ok(())
    } else {
        Err(format!(
            "{ratio} is out of range (accepted: a number above 0 and at most {MAX_OUTPUT_RATIO})"
        ))
    }
}

/// What happens when an instance exceeds a limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnBreach {
    /// The job stops with the breach as its error.
    #[default]
    Fail,
    /// The records that caused the breach are dropped for that operator and
    /// counted; the job goes on.
    Skip,
    /// The records that caused the breach go to the dead-letter file with the
    /// breach as the reason; the job goes on. Needs a dead-letter file.
    DeadLetter,
}

impl std::str::FromStr for OnBreach {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fail" => Ok(OnBreach::Fail),
            "skip" => Ok(OnBreach::Skip),
            "dead-letter" => Ok(OnBreach::DeadLetter),
            other => Err(format!(
                "unknown policy {other:?} (accepted: {})",
                ON_BREACH.join(", ")
            )),
        }
    }
}

impl fmt::Display for OnBreach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OnBreach::Fail => "fail",
            OnBreach::Skip => "skip",
            OnBreach::DeadLetter => "dead-letter",
        })
    }
}

/// One of the limits, named as in the job file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `memory`: linear memory per instance.
    Memory,
    /// `cpu_per_batch`: the deadline of one call.
    CpuPerBatch,
    /// `output_ratio`: output bytes per input byte of one call.
    OutputRatio,
    /// `state`: bytes of keyed state the host holds for one instance.
    State,
    /// `max_state`: bytes of a stateful Wasm instance's state, whole.
    MaxState,
    /// `join_output`: records one join instance emits for one micro-batch.
    JoinOutput,
}

impl Limit {
    /// The setting's name in the `[limits]` table.
    pub fn name(self) -> &'static str {
        match self {
            Limit::Memory => "memory",
            Limit::CpuPerBatch => "cpu_per_batch",
            Limit::OutputRatio => "output_ratio",
            Limit::State => "state",
            Limit::MaxState => "max_state",
            Limit::JoinOutput => "join_output",
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The `[limits]` table; every setting is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Linear memory per instance, e.g. `"64MiB"` (`B`, `KiB`, `MiB`, `GiB`).
    pub memory: Option<Spanned<String>>,
    /// Longest one call may run, e.g. `"2s"`.
    pub cpu_per_batch: Option<Spanned<String>>,
    /// A call may pass the host at most this many bytes per byte of its
    /// input, plus 1 MiB.
    pub output_ratio: Option<Spanned<f64>>,
    /// Keyed state per instance, e.g. `"256MiB"`.
    pub state: Option<Spanned<String>>,
    /// A stateful plugin's state, whole, e.g. `"128MiB"`.
    pub max_state: Option<Spanned<String>>,
    /// Records one join instance may emit per micro-batch, e.g. `100000`.
    pub join_output: Option<Spanned<i64>>,
    /// What a breach does: `"fail"`, `"skip"` or `"dead-letter"`.
    pub on_breach: Option<Spanned<String>>,
}

/// A `[limits]` setting Sluice cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {message}")]
pub struct LimitsError {
    /// Dotted path of the field, `limits.memory`.
    pub field: String,
    /// Where its value is in the job file.
    pub span: std::ops::Range<usize>,
    /// What is wrong and what would be accepted.
    pub message: String,
}

impl LimitsConfig {
    /// The limits this table sets, the defaults for those it leaves out.
    pub fn resolve(&self) -> Result<Limits, LimitsError> {
        let error = |field: &str, span: std::ops::Range<usize>, message: String| LimitsError {
            field: format!("limits.{field}"),
            span,
            message,
        };
        let mut out = Limits::default();
        if let Some(m) = &self.memory {
            out.memory = parse_size(m.get_ref())
                .map_err(|msg| error(Limit::Memory.name(), m.span(), msg))?;
        }
        if let Some(c) = &self.cpu_per_batch {
            out.cpu_per_batch = Some(
                parse_duration(c.get_ref())
                    .map_err(|msg| error(Limit::CpuPerBatch.name(), c.span(), msg))?,
            );
        }
        if let Some(r) = &self.output_ratio {
            out.output_ratio = Some(*r.get_ref());
        }
        if let Some(st) = &self.state {
            out.state = parse_size(st.get_ref())
                .map_err(|msg| error(Limit::State.name(), st.span(), msg))?;
        }
        if let Some(m) = &self.max_state {
            out.max_state = Some(
                parse_size(m.get_ref())
                    .map_err(|msg| error(Limit::MaxState.name(), m.span(), msg))?,
            );
        }
        if let Some(j) = &self.join_output {
            out.join_output = u64::try_from(*j.get_ref()).map_err(|_| {
                error(
                    Limit::JoinOutput.name(),
                    j.span(),
                    join_output_range(j.get_ref()),
                )
            })?;
        }
        if let Some(p) = &self.on_breach {
            out.on_breach = p
                .get_ref()
                .parse()
                .map_err(|msg| error("on_breach", p.span(), msg))?;
        }
        out.validate().map_err(|(limit, msg)| {
            let span = match limit {
                Limit::Memory => self.memory.as_ref().map(Spanned::span),
                Limit::CpuPerBatch => self.cpu_per_batch.as_ref().map(Spanned::span),
                Limit::OutputRatio => self.output_ratio.as_ref().map(Spanned::span),
                Limit::State => self.state.as_ref().map(Spanned::span),
                Limit::MaxState => self.max_state.as_ref().map(Spanned::span),
                Limit::JoinOutput => self.join_output.as_ref().map(Spanned::span),
            };
            error(limit.name(), span.unwrap_or_default(), msg)
        })?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_setting() {
        assert!(Limits::default().validate().is_ok());
        let small = Limits {
            memory: 1000,
            ..Limits::default()
        };
        let (limit, err) = small.validate().unwrap_err();
        assert_eq!(limit, Limit::Memory);
        assert!(err.starts_with("1000 bytes is out of range"), "{err}");
        let ratio = Limits {
            output_ratio: Some(0.0),
            ..Limits::default()
        };
        let (limit, err) = ratio.validate().unwrap_err();
        assert_eq!(limit, Limit::OutputRatio);
        assert!(err.starts_with("0 is out of range"), "{err}");
        let state = Limits {
            state: 100,
            ..Limits::default()
        };
        assert_eq!(
            state.validate(),
            Err((
                Limit::State,
                "100 bytes is out of range (accepted: 1 KiB to 1024 GiB)".into()
            ))
        );
        let join = Limits {
            join_output: 0,
            ..Limits::default()
        };
        assert_eq!(join.validate().unwrap_err().0, Limit::JoinOutput);
    }

    #[test]
    fn output_allowance_is_added_to_the_ratio() {
        let limits = Limits {
            output_ratio: Some(2.0),
            ..Limits::default()
        };
        assert_eq!(limits.output_allowed(1000), Some(2000 + OUTPUT_ALLOWANCE));
        let unchecked = Limits {
            output_ratio: None,
            ..Limits::default()
        };
        assert_eq!(unchecked.output_allowed(1000), None);
    }
}
