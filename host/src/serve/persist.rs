//! What the server keeps on disk so that tenants added through the API,
//! uploaded plugins and submitted jobs outlive it. Everything is under the
//! data directory (`--data`):
//!
//! ```text
//! cache/                              compiled components
//! tenants/<tenant>/
//!     tenant.json                     a tenant added through the API: its entry (token as SHA-256)
//!     removing                        the tenant was removed; its data is being deleted
//!     plugins/<plugin>.wasm           uploaded components
//!     files/...                       the tenant's file area
//!     jobs/<id>/job.toml              the job file as submitted
//!     jobs/<id>/job.json              the job's record: id, tenant, state, adopted versions
//!     jobs/<id>/checkpoints/          its checkpoints (unless its [checkpoint] names a path)
//!     jobs/<id>/versions/<sha256>.wasm  operator versions deployed into it
//!     jobs/<id>/dead-letters.jsonl    its dead letters
//! ```
//!
//! Records are written whole and durably ([`write_atomically`]): a reader
//! (the next start) finds the old record or the new one, never half of one.
//! A tenant of the tenants file has no `tenant.json`: the file says who it
//! is. On start the server deletes what a removal left ([`REMOVING`]),
//! loads the tenants and the jobs, and starts again the jobs that were
//! running (they resume from their checkpoints).

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

/// The record of a tenant added through the API, in its directory.
pub const TENANT_RECORD: &str = "tenant.json";
/// The marker of a removed tenant whose data is being deleted.
pub const REMOVING: &str = "removing";
/// A job's file as submitted, in its directory.
pub const JOB_FILE: &str = "job.toml";
/// A job's record, in its directory.
pub const JOB_RECORD: &str = "job.json";
/// A job's checkpoints by default, in its directory.
pub const CHECKPOINTS: &str = "checkpoints";
/// The version of the record format.
pub const FORMAT: u32 = 1;

/// Where a job should be after a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecordState {
    /// Started again (running or restarting when the server stopped).
    Running,
    /// Paused by the breaker: waits for a resume or a stop.
    Paused,
    /// Stopped by its tenant: not started again.
    Stopped,
    /// Its input ended.
    Finished,
    /// It could not be started again.
    Failed,
}

/// A version of a `plugin` operator the job adopted while it ran; a
/// restart builds the job with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdoptedRecord {
    /// The operator.
    pub operator: String,
    /// The component's file in the job's `versions/` directory.
    pub file: String,
}

/// A job's record (`job.json`); the job file is beside it (`job.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// [`FORMAT`].
    pub format: u32,
    /// The job's id (also its directory's name).
    pub id: String,
    /// Its tenant (also the directory it is in).
    pub tenant: String,
    /// Its number among the server's jobs: numbering goes on after a
    /// restart.
    pub seq: u64,
    /// The job file's `name`, or `job`.
    pub name: String,
    /// When it was submitted, milliseconds since the Unix epoch.
    pub submitted_ms: u64,
    /// Where it should be after a restart.
    pub state: RecordState,
    /// Why it is paused or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Operator versions it adopted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adopted: Vec<AdoptedRecord>,
}

/// Writes `bytes` to `path` whole: into a temporary file beside it, synced,
/// renamed over `path`, and the directory synced, so that readers (and the
/// next start after a crash) find the old content or the new, never half.
/// The temporary name starts with `.` (a directory source skips it) and is
/// unique per process and write. Creates the directory if `create_dir`.
/// Blocking.
pub fn write_atomically(path: &Path, bytes: &[u8], create_dir: bool) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    if create_dir {
        std::fs::create_dir_all(dir)?;
    }
    // A name of its own per write: two writes to one path do not share a
    // temporary file.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(format!(".{}-{n}.upload", std::process::id()));
    let tmp = path.with_file_name(name);
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        sync(&f)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir)
}

/// Syncs a file; one that cannot be synced (a FIFO) is taken as it is.
fn sync(f: &std::fs::File) -> std::io::Result<()> {
    match f.sync_all() {
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => Ok(()),
        other => other,
    }
}

/// Syncs a directory, so that a rename or removal in it is on disk.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    sync(&std::fs::File::open(dir)?)
}

/// Removes `path` if it is there, and syncs its directory. Blocking.
pub fn remove_file(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => sync_dir(path.parent().unwrap_or(Path::new("."))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes the directory `path` and all in it, if it is there. Blocking.
pub fn remove_dir(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The names of the directories in `dir` that are usable names (tenants,
/// job ids), sorted; none if `dir` does not exist. Blocking.
pub fn subdirs(dir: &Path) -> std::io::Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        if let Some(name) = entry.file_name().to_str()
            && super::tenant::check_name(name).is_ok()
        {
            names.push(name.to_string());
        }
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let record = JobRecord {
            format: FORMAT,
            id: "0123456789abcdef".into(),
            tenant: "acme".into(),
            seq: 7,
            name: "shout".into(),
            submitted_ms: 1_700_000_000_000,
            state: RecordState::Paused,
            reason: Some("paused after 3 failure(s)".into()),
            adopted: vec![AdoptedRecord {
                operator: "upper".into(),
                file: "ab.wasm".into(),
            }],
        };
        let path = dir.path().join("jobs/x").join(JOB_RECORD);
        assert!(
            write_atomically(&path, b"{}", false).is_err(),
            "no directory"
        );
        let json = serde_json::to_vec(&record).unwrap();
        write_atomically(&path, &json, true).unwrap();
        write_atomically(&path, &json, true).unwrap();
        let back: JobRecord = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(back, record);
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [JOB_RECORD]);
        assert!(
            String::from_utf8(json)
                .unwrap()
                .contains(r#""state":"paused""#)
        );
    }

    #[test]
    fn only_usable_names_are_listed() {
        let dir = tempfile::tempdir().unwrap();
        for d in ["b", "a", ".hidden", "with space"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        std::fs::write(dir.path().join("c"), b"").unwrap();
        assert_eq!(subdirs(dir.path()).unwrap(), ["a", "b"]);
        assert!(subdirs(&dir.path().join("none")).unwrap().is_empty());
    }
}
