//! The job file's `[reload]` table: how long a new version of a Wasm
//! operator may still be rolled back once the job adopted it.
//!
//! ```toml
//! [reload]
//! rollback_batches = 10    # keep the replaced version for 10 micro-batches (the default)
//! # rollback_window = "30s" # or for this long instead; 0 keeps none
//! ```

use crate::model::units::parse_duration;
use serde::Deserialize;
use std::time::Duration;
use toml::Spanned;

/// Micro-batches a replaced version is kept for when the job file says
/// nothing.
pub const DEFAULT_ROLLBACK_BATCHES: u64 = 10;

/// `[reload]`: the rollback window.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadConfig {
    /// Keep the replaced version this many micro-batches after adoption.
    pub rollback_batches: Option<Spanned<u64>>,
    /// Keep it this long after adoption instead, e.g. `"30s"`.
    pub rollback_window: Option<Spanned<String>>,
}

/// How long after adoption a new version that fails goes back to the
/// version it replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollbackWindow {
    /// For this many micro-batches; 0: no rollback.
    Batches(u64),
    /// For this long.
    Duration(Duration),
}

impl Default for RollbackWindow {
    fn default() -> Self {
        RollbackWindow::Batches(DEFAULT_ROLLBACK_BATCHES)
    }
}

impl RollbackWindow {
    /// Whether the window is over `batches` micro-batches and `elapsed`
    /// after adoption.
    pub fn closed(self, batches: u64, elapsed: Duration) -> bool {
        match self {
            RollbackWindow::Batches(n) => batches >= n,
            RollbackWindow::Duration(d) => elapsed >= d,
        }
    }
}

impl ReloadConfig {
    /// The window this table sets, or the field at fault and why.
    pub fn window(&self) -> Result<RollbackWindow, (&'static str, std::ops::Range<usize>, String)> {
        match (&self.rollback_batches, &self.rollback_window) {
            (Some(b), Some(_)) => Err((
                "rollback_batches",
                b.span(),
                "set either `rollback_batches` or `rollback_window`, not both".into(),
            )),
            (Some(b), None) => Ok(RollbackWindow::Batches(*b.get_ref())),
            (None, Some(w)) => parse_duration(w.get_ref())
                .map(RollbackWindow::Duration)
                .map_err(|m| ("rollback_window", w.span(), m)),
            (None, None) => Ok(RollbackWindow::default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ReloadConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn the_window_is_batches_or_a_duration_never_both() {
        assert_eq!(
            parse("").window().unwrap(),
            RollbackWindow::Batches(DEFAULT_ROLLBACK_BATCHES)
        );
        assert_eq!(
            parse("rollback_batches = 3").window().unwrap(),
            RollbackWindow::Batches(3)
        );
        assert_eq!(
            parse("rollback_window = \"2s\"").window().unwrap(),
            RollbackWindow::Duration(Duration::from_secs(2))
        );
        let (field, _, m) = parse("rollback_batches = 3\nrollback_window = \"2s\"")
            .window()
            .unwrap_err();
        assert_eq!(field, "rollback_batches");
        assert!(m.contains("not both"), "{m}");
        let (field, _, _) = parse("rollback_window = \"soon\"").window().unwrap_err();
        assert_eq!(field, "rollback_window");
    }

    #[test]
    fn a_window_closes_after_its_batches_or_its_time() {
        let w = RollbackWindow::Batches(2);
        assert!(!w.closed(1, Duration::from_secs(60)));
        assert!(w.closed(2, Duration::ZERO));
        assert!(RollbackWindow::Batches(0).closed(0, Duration::ZERO));
        let d = RollbackWindow::Duration(Duration::from_secs(1));
        assert!(!d.closed(1000, Duration::from_millis(999)));
        assert!(d.closed(0, Duration::from_secs(1)));
    }
}
