//! The `file` source: the lines of one text file.

use super::lines::{self, Tracked};
use super::position::Position;
use super::{CHUNK_RECORDS, Lines};
use std::io::{Seek, SeekFrom};
use std::path::PathBuf;
use tokio::sync::{mpsc, watch};

/// Reads the lines of `path` until its end or `stop`, from `resume` (a
/// checkpoint's position) if given.
pub(super) async fn read(
    path: PathBuf,
    tx: mpsc::Sender<Lines>,
    stop: watch::Receiver<bool>,
    max_line: usize,
    resume: Option<Position>,
) -> Result<(), String> {
    let mut file = std::fs::File::open(&path).map_err(|e| format!("cannot open: {e}"))?;
    let (offset, skip) = match resume {
        Some(Position::File { offset, skip }) => (offset, skip),
        _ => (0, 0),
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if offset > len {
        return Err(format!(
            "the checkpoint had read {offset} bytes of it, but it has only {len} now: it changed since (start afresh with --reset-state)"
        ));
    }
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| format!("cannot seek to byte {offset}: {e}"))?;
    let tracked = Tracked {
        offset,
        skip,
        at: Box::new(|offset| Position::File { offset, skip: 0 }),
    };
    tokio::task::spawn_blocking(move || {
        lines::read_lines(file, &tx, &stop, CHUNK_RECORDS, max_line, Some(tracked))
    })
    .await
    .map_err(|e| e.to_string())?
    .map(|_| ())
    .map_err(|e| format!("read failed: {e}"))
}
