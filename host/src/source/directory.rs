//! The `directory` source: lines of the files that appear in a directory,
//! like Spark's `textFileStream`.

use super::lines::{self, Tracked};
use super::position::Position;
use super::{CHUNK_RECORDS, Lines};
use std::collections::{BTreeSet, HashSet};
use std::io::{Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Whether a directory entry is ready to read: writers publish files by
/// renaming them from a hidden or `.tmp` name.
fn is_published(name: &str) -> bool {
    !(name.starts_with('.') || name.ends_with(".tmp") || name.ends_with("._COPYING_"))
}

/// Watches `dir`, reading each published file once, in name order per
/// poll. From `resume` (a checkpoint's position), the files it lists as
/// read are skipped — one that has gone since is no error — the one being
/// read goes on where it was, and every other file is new.
pub(super) async fn watch_directory(
    dir: PathBuf,
    poll: Duration,
    existing: bool,
    tx: mpsc::Sender<Lines>,
    mut stop: watch::Receiver<bool>,
    max_line: usize,
    resume: Option<Position>,
) -> Result<(), String> {
    let (mut done, mut current) = match resume {
        Some(Position::Directory { done, current }) => (done, current),
        _ => (Arc::new(BTreeSet::new()), None),
    };
    let resumed = !done.is_empty() || current.is_some();
    let mut seen: HashSet<String> = done.iter().cloned().collect();
    let mut first = true;
    loop {
        let mut fresh = Vec::new();
        if let Some((name, offset, skip)) = current.take() {
            seen.insert(name.clone());
            if dir.join(&name).is_file() {
                fresh.push((name, offset, skip));
            } else {
                tracing::warn!(
                    "directory source: {} was being read at the checkpoint and has gone; going on without it",
                    dir.join(&name).display()
                );
            }
        }
        let mut entries = tokio::fs::read_dir(&dir)
            .await
            .map_err(|e| format!("cannot list: {e}"))?;
        let mut listed = Vec::new();
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
            if is_file
                && is_published(&name)
                && seen.insert(name.clone())
                && (existing || !first || resumed)
            {
                listed.push((name, 0, 0));
            }
        }
        first = false;
        listed.sort();
        fresh.extend(listed);
        for (name, offset, skip) in fresh {
            let path = dir.join(&name);
            tracing::info!("reading new file {}", path.display());
            let tx = tx.clone();
            let stop2 = stop.clone();
            let so_far = done.clone();
            let file_name = name.clone();
            let tracked = Tracked {
                offset,
                skip,
                at: Box::new(move |offset| Position::Directory {
                    done: so_far.clone(),
                    current: Some((file_name.clone(), offset, 0)),
                }),
            };
            let result = tokio::task::spawn_blocking(move || {
                let mut file = std::fs::File::open(&path)?;
                file.seek(SeekFrom::Start(offset))?;
                lines::read_lines(file, &tx, &stop2, CHUNK_RECORDS, max_line, Some(tracked))
            })
            .await
            .map_err(|e| e.to_string())?;
            match result {
                Ok(true) => {
                    let mut names = (*done).clone();
                    names.insert(name);
                    done = Arc::new(names);
                }
                // Stopped within the file: the checkpoint has where.
                Ok(false) => return Ok(()),
                Err(e) => {
                    tracing::warn!("skipping unreadable file in {}: {e}", dir.display());
                    let mut names = (*done).clone();
                    names.insert(name);
                    done = Arc::new(names);
                }
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
