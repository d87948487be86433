//! The `stdin` source: lines of standard input, until end of file.

use super::{Lines, lines};
use tokio::sync::{mpsc, watch};

/// Reads the lines of standard input until its end or `stop`.
pub(super) async fn read(
    tx: mpsc::Sender<Lines>,
    stop: watch::Receiver<bool>,
    max_line: usize,
) -> Result<(), String> {
    // A plain thread, not the blocking pool: a read from a terminal
    // cannot be cancelled, and must not keep the runtime from shutting
    // down once the job has stopped. Every read is sent at once (live
    // input), so nothing waits in a buffer when the job stops.
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("sluice-stdin".into())
        .spawn(move || {
            let result = lines::read_lines(std::io::stdin().lock(), &tx, &stop, 1, max_line, None);
            let _ = done_tx.send(result);
        })
        .map_err(|e| format!("cannot start reader thread: {e}"))?;
    done_rx
        .await
        .map_err(|_| "reader thread stopped".to_string())?
        .map(|_| ())
        .map_err(|e| format!("read failed: {e}"))
}
