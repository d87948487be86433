//! The settings of `aggregate`: which function, when results are emitted,
//! and the windowing it shares with `join`.

use crate::model::time::{TimeDomain, WindowKind};
use crate::operators::WatermarkRules;
use crate::operators::window::{SettingError, WindowSettings};

/// Aggregate functions.
pub const FUNCTIONS: &[&str] = &["count", "sum", "min", "max", "avg"];
/// Settings the operator accepts.
pub const SETTINGS: &[&str] = &[
    "function",
    "mode",
    "window",
    "length",
    "slide",
    "gap",
    "time",
    "watermark_delay",
    "allowed_lateness",
    "late",
    "max_future",
    "idle_timeout",
];

/// What to compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// Records per key.
    Count,
    /// Sum of the values.
    Sum,
    /// Smallest value.
    Min,
    /// Largest value.
    Max,
    /// Mean of the values.
    Avg,
}

/// When results are emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Keys (or windows) whose result changed in the batch, every batch.
    Update,
    /// Every key, every batch (not windowed only).
    Complete,
    /// Each window once, when the watermark passes its end (again if a
    /// record within the allowed lateness changes it).
    Final,
}

/// A parsed `aggregate` configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregateConfig {
    /// What to compute.
    pub function: Function,
    /// When to emit.
    pub mode: Mode,
    /// Windowing, if any.
    pub window: Option<WindowKind>,
    /// Which clock.
    pub time: TimeDomain,
    /// Bound on out-of-orderness: the watermark trails the largest event
    /// time seen by this much (milliseconds).
    pub watermark_delay: i64,
    /// How long after the watermark passes a window's end records still
    /// update it (milliseconds).
    pub allowed_lateness: i64,
    /// Send late records to the dead-letter file (else only count them).
    pub late_to_dead_letter: bool,
    /// `max_future` and `idle_timeout`.
    pub watermark: WatermarkRules,
}

impl AggregateConfig {
    /// Parses the operator's settings, naming the setting at fault.
    pub fn parse(pairs: &[(String, String)]) -> Result<Self, SettingError> {
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        let err = |k: &str, m: String| Err((k.to_string(), m));
        if let Some((k, _)) = pairs.iter().find(|(k, _)| !SETTINGS.contains(&k.as_str())) {
            return err(
                k,
                format!("unknown setting (accepted: {})", SETTINGS.join(", ")),
            );
        }
        let function = match get("function") {
            None => {
                return err(
                    "function",
                    format!("missing (accepted: {})", FUNCTIONS.join(", ")),
                );
            }
            Some("count") => Function::Count,
            Some("sum") => Function::Sum,
            Some("min") => Function::Min,
            Some("max") => Function::Max,
            Some("avg") => Function::Avg,
            Some(other) => {
                return err(
                    "function",
                    format!(
                        "unknown aggregate {other:?} (accepted: {})",
                        FUNCTIONS.join(", ")
                    ),
                );
            }
        };
        let WindowSettings {
            window,
            time,
            watermark_delay,
            allowed_lateness,
            late_to_dead_letter,
            watermark,
        } = WindowSettings::parse(&get)?;
        let mode = match (get("mode"), window.is_some()) {
            (None, true) => Mode::Final,
            (None, false) => Mode::Update,
            (Some("update"), _) => Mode::Update,
            (Some("complete"), false) => Mode::Complete,
            (Some("final"), true) => Mode::Final,
            (Some(m @ ("complete" | "final")), w) => {
                return err(
                    "mode",
                    format!(
                        "{m:?} does not apply {} a window (accepted: {})",
                        if w { "with" } else { "without" },
                        if w {
                            "update, final"
                        } else {
                            "update, complete"
                        }
                    ),
                );
            }
            (Some(other), _) => {
                return err(
                    "mode",
                    format!("unknown mode {other:?} (accepted: update, complete, final)"),
                );
            }
        };
        Ok(AggregateConfig {
            function,
            mode,
            window,
            time,
            watermark_delay,
            allowed_lateness,
            late_to_dead_letter,
            watermark,
        })
    }
}
