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
/// highest file already there, so a restarted job never overwrites output.
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
            let name = entry?.file_name();
            let n = name
                .to_str()
                .and_then(|n| n.strip_prefix("batch-"))
                .and_then(|n| n.strip_suffix(".jsonl"))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(n) = n {
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
