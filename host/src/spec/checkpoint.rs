//! The job file's `[checkpoint]` table: where a job keeps its checkpoints
//! and how often it takes one.

use crate::model::units::parse_duration;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;
use toml::Spanned;

/// How often a checkpoint is taken when the job file says nothing: every 10 s.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(10);

/// `[checkpoint]`: where and how often.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    /// The directory of the job's checkpoints, relative to the job file.
    /// Default: `checkpoints/<job name>` beside the job file.
    pub path: Option<PathBuf>,
    /// Take a checkpoint at the first batch boundary this long after the
    /// last one, e.g. `"10s"` (the default).
    pub interval: Option<Spanned<String>>,
    /// Take a checkpoint every this many micro-batches instead.
    pub every_batches: Option<Spanned<u64>>,
}

/// When a checkpoint is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Every {
    /// At the first batch boundary this long after the last checkpoint.
    Interval(Duration),
    /// Every this many micro-batches.
    Batches(u64),
}

impl CheckpointConfig {
    /// When checkpoints are taken, or the field at fault (`interval`,
    /// `every_batches`) and why.
    pub fn every(&self) -> Result<Every, (&'static str, std::ops::Range<usize>, String)> {
        match (&self.interval, &self.every_batches) {
            (Some(i), Some(_)) => Err((
                "interval",
                i.span(),
                "set either `interval` or `every_batches`, not both".into(),
            )),
            (Some(i), None) => parse_duration(i.get_ref())
                .map(Every::Interval)
                .map_err(|m| ("interval", i.span(), m)),
            (None, Some(n)) if *n.get_ref() == 0 => {
                Err(("every_batches", n.span(), "must be at least 1".into()))
            }
            (None, Some(n)) => Ok(Every::Batches(*n.get_ref())),
            (None, None) => Ok(Every::Interval(DEFAULT_CHECKPOINT_INTERVAL)),
        }
    }
}
