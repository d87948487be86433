//! The `directory` sink: one file per micro-batch, published atomically.

use super::Sink;
use super::jsonl::write_json_record;
use crate::model::batch::Batch;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

/// Writes each batch to `batch-NNNNNNNNN.jsonl` in a directory, atomically:
/// the file is written under a hidden temporary name, synced, then renamed,
/// so a reader never sees a partial batch file. Numbers continue after the
/// highest file already there, so a restarted job never overwrites output;
/// a job resumed from a checkpoint goes back to the number it recorded,
/// removing the files after it, which it writes again.
pub struct DirectorySink {
    dir: PathBuf,
    next: u64,
}

impl DirectorySink {
    /// Uses `dir`, creating it if needed.
    pub fn create(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut next = 0;
        for entry in std::fs::read_dir(dir)? {
            if let Some(n) = batch_number(&entry?.file_name()) {
                next = next.max(n + 1);
            }
        }
        Ok(DirectorySink {
            dir: dir.to_owned(),
            next,
        })
    }
}

impl Sink for DirectorySink {
    fn describe(&self) -> String {
        format!("directory {}", self.dir.display())
    }

    fn checkpoint(&mut self) -> std::io::Result<serde_json::Value> {
        // Each file was synced before its rename; the renames need the
        // directory synced.
        File::open(&self.dir)?.sync_all()?;
        Ok(serde_json::json!({ "next": self.next }))
    }

    fn resume(&mut self, progress: Option<&serde_json::Value>) -> std::io::Result<()> {
        let Some(p) = progress else {
            return Ok(());
        };
        let next = p.get("next").and_then(|n| n.as_u64()).ok_or_else(|| {
            std::io::Error::other(format!(
                "the checkpoint's progress of this directory is {p}, not a batch file number"
            ))
        })?;
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            if batch_number(&entry.file_name()).is_some_and(|n| n >= next) {
                std::fs::remove_file(entry.path())?;
            }
        }
        File::open(&self.dir)?.sync_all()?;
        self.next = next;
        Ok(())
    }

    fn write(&mut self, _batch_no: u64, parts: &[Batch]) -> std::io::Result<()> {
        let name = format!("batch-{:09}.jsonl", self.next);
        self.next += 1;
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let mut out = BufWriter::new(File::create(&tmp)?);
        for r in parts.iter().flat_map(|p| p.iter()) {
            write_json_record(&mut out, r.key, r.value, r.timestamp, r.headers, &[])?;
        }
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, self.dir.join(name))
    }
}

/// The number of a batch file's name.
fn batch_number(name: &std::ffi::OsStr) -> Option<u64> {
    name.to_str()
        .and_then(|n| n.strip_prefix("batch-"))
        .and_then(|n| n.strip_suffix(".jsonl"))
        .and_then(|n| n.parse::<u64>().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_sink_writes_one_file_per_batch() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("batch-000000002.jsonl"), "").unwrap();
        let mut sink = DirectorySink::create(dir.path()).unwrap();
        let parts = [Batch::from_values(["a"], 1), Batch::from_values(["b"], 2)];
        sink.write(0, &parts).unwrap();
        let body = std::fs::read_to_string(dir.path().join("batch-000000003.jsonl")).unwrap();
        assert_eq!(body.lines().count(), 2);
        // A second run continues the numbering instead of overwriting.
        let mut again = DirectorySink::create(dir.path()).unwrap();
        again.write(0, &[Batch::from_values(["c"], 3)]).unwrap();
        assert!(dir.path().join("batch-000000004.jsonl").exists());
        let files = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(files, 3, "no temporary files left behind");
    }
}
