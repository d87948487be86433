//! Sluice integration tests: real components, real files, real processes.

mod bad_input;
mod cli;
mod golden;
mod guide;
mod hostile;
mod joins;
mod kafka;
mod plugins;
mod reducers;
mod sources;
mod windows;

use sluice::pipeline::{Job, JobError, Summary};
use std::path::Path;

/// Runs the job file text `toml` from `dir` to the end of its input.
pub async fn run_job(dir: &Path, toml: &str) -> Result<Summary, JobError> {
    let path = sluice_tests::write_job(dir, "job.toml", toml);
    let runtime = sluice_tests::runtime_in(dir);
    Job::from_file(&path, &runtime)?.run_to_end().await
}

/// Reads a JSON-lines file into values.
pub fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).expect("valid JSON line"))
        .collect()
}

/// TOML string literal for a path.
pub fn lit(path: &str) -> String {
    format!("{path:?}")
}
