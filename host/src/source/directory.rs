//! The `directory` source: lines of the files that appear in a directory,
//! like Spark's `textFileStream`.

use super::CHUNK_RECORDS;
use super::lines;
use crate::model::batch::Batch;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Whether a directory entry is ready to read: writers publish files by
/// renaming them from a hidden or `.tmp` name.
fn is_published(name: &str) -> bool {
    !(name.starts_with('.') || name.ends_with(".tmp") || name.ends_with("._COPYING_"))
}

pub(super) async fn watch_directory(
    dir: PathBuf,
    poll: Duration,
    existing: bool,
    tx: mpsc::Sender<Batch>,
    mut stop: watch::Receiver<bool>,
    max_line: usize,
) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    let mut first = true;
    loop {
        let mut fresh = Vec::new();
        let mut entries = tokio::fs::read_dir(&dir)
            .await
            .map_err(|e| format!("cannot list: {e}"))?;
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|e| format!("cannot list: {e}"))?
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_file = entry
                .file_type()
                .await
                .map(|t| t.is_file())
                .unwrap_or(false);
            if is_file && is_published(&name) && seen.insert(name.clone()) && (existing || !first) {
                fresh.push(entry.path());
            }
        }
        first = false;
        fresh.sort();
        for path in fresh {
            tracing::info!("reading new file {}", path.display());
            let tx = tx.clone();
            let stop2 = stop.clone();
            let result = tokio::task::spawn_blocking(move || {
                let file = std::fs::File::open(&path)?;
                lines::read_lines(file, &tx, &stop2, CHUNK_RECORDS, max_line)
            })
            .await
            .map_err(|e| e.to_string())?;
            if let Err(e) = result {
                tracing::warn!("skipping unreadable file in {}: {e}", dir.display());
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = crate::signal::stopped(&mut stop) => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_wait() {
        assert!(is_published("part-0001.txt"));
        assert!(!is_published(".part-0001.txt"));
        assert!(!is_published("part-0001.txt.tmp"));
    }
}
