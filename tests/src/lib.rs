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

/// Loads the component at `path`.
pub fn load(runtime: &sluice::wasm::Runtime, path: &str) -> sluice::wasm::Plugin {
    runtime
        .load(Path::new(path))
        .unwrap_or_else(|e| panic!("cannot load {path}: {e}"))
}

/// A sink that notes, per micro-batch, its number and how long its oldest
/// record waited, in ms: from its timestamp (a generator's records carry
/// the time they were made) to the sink.
#[derive(Clone, Default)]
pub struct Waits(pub std::sync::Arc<std::sync::Mutex<Vec<(u64, i64)>>>);

impl sluice::sink::Sink for Waits {
    fn describe(&self) -> String {
        "waits".into()
    }

    fn write(
        &mut self,
        batch_no: u64,
        parts: &[sluice::model::batch::Batch],
    ) -> std::io::Result<()> {
        let now = sluice::model::time::now_ms();
        if let Some(oldest) = parts.iter().flat_map(|p| p.timestamps.iter()).min() {
            self.0.lock().unwrap().push((batch_no, now - oldest));
        }
        Ok(())
    }
}

/// Writes a job file into `dir` and returns its path.
pub fn write_job(dir: &Path, name: &str, toml: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, toml).expect("write job file");
    path
}

pub mod kafka;

pub mod swap_soak;

pub mod browser;

pub mod ui;
