//! The `file` source: the lines of one text file.

use super::{CHUNK_RECORDS, lines};
use crate::model::batch::Batch;
use std::path::PathBuf;
use tokio::sync::{mpsc, watch};

/// Reads the lines of `path` until its end or `stop`.
pub(super) async fn read(
    path: PathBuf,
    tx: mpsc::Sender<Batch>,
    stop: watch::Receiver<bool>,
    max_line: usize,
) -> Result<(), String> {
    let file = std::fs::File::open(&path).map_err(|e| format!("cannot open: {e}"))?;
    tokio::task::spawn_blocking(move || {
        lines::read_lines(file, &tx, &stop, CHUNK_RECORDS, max_line)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("read failed: {e}"))
}
