//! Shared helpers for Sluice's integration tests and benchmarks: paths of the
//! guest components built by `build.rs`, and small utilities.

/// Paths of the Wasm components built for the tests.
pub mod guests {
    include!(concat!(env!("OUT_DIR"), "/guests.rs"));
}

use std::path::Path;

/// A runtime whose compiled-component cache lives in `dir`.
pub fn runtime_in(dir: &Path) -> sluice::wasm::Runtime {
    sluice::wasm::Runtime::with_cache_dir(Some(dir.join("cache"))).expect("wasm engine")
}

/// Writes a job file into `dir` and returns its path.
pub fn write_job(dir: &Path, name: &str, toml: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, toml).expect("write job file");
    path
}

pub mod kafka;

pub mod swap_soak;
