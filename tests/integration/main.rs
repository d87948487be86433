//! Sluice integration tests: real components, real files, real processes.

mod bad_input;
mod builtin_limits;
mod cli;
mod dashboard;
mod fuzz;
mod golden;
mod guide;
mod hostile;
mod joins;
mod kafka;
mod languages;
mod layout;
mod observe;
mod plugins;
mod recovery;
mod recovery_kafka;
mod reducers;
mod reload;
mod rollback;
mod scaffolds;
mod serve;
mod serve_persist;
mod server;
mod sources;
mod windows;

use sluice::exec::{Job, JobError, Summary};
use sluice::operators::NativeOperator;
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

/// Parses `key,timestamp,value` lines into keyed, timestamped records.
pub fn parse_lines() -> NativeOperator {
    NativeOperator::new("parse", |input, out| {
        for r in input.iter() {
            let text = std::str::from_utf8(r.value).map_err(|e| e.to_string())?;
            let mut f = text.splitn(3, ',');
            let (Some(k), Some(ts), Some(v)) = (f.next(), f.next(), f.next()) else {
                return Err(format!("bad line {text:?}"));
            };
            let ts = ts
                .parse()
                .map_err(|_| format!("bad timestamp in {text:?}"))?;
            out.emit(Some(k.as_bytes()), v.as_bytes(), ts);
        }
        Ok(())
    })
}
