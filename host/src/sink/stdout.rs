//! The `stdout` sink, like `DStream.print`.

use super::Sink;
use crate::model::batch::Batch;
use std::io::Write;

/// Prints the first `limit` records of each batch, like Spark's `DStream.print()`.
pub struct StdoutSink {
    limit: usize,
    broken: bool,
}

impl StdoutSink {
    /// Shows `limit` records per batch.
    pub fn new(limit: usize) -> Self {
        StdoutSink {
            limit,
            broken: false,
        }
    }
}

impl Sink for StdoutSink {
    fn describe(&self) -> String {
        "stdout".into()
    }

    fn write(&mut self, batch_no: u64, parts: &[Batch]) -> std::io::Result<()> {
        if self.broken {
            return Ok(());
        }
        let total: usize = parts.iter().map(Batch::len).sum();
        let mut out = std::io::stdout().lock();
        let result = (|| {
            writeln!(out, "-------- batch {batch_no}: {total} record(s) --------")?;
            for r in parts.iter().flat_map(|p| p.iter()).take(self.limit) {
                match r.key {
                    Some(k) => writeln!(out, "{}\t{}", text(k), text(r.value))?,
                    None => writeln!(out, "{}", text(r.value))?,
                }
            }
            if total > self.limit {
                writeln!(out, "... ({} more)", total - self.limit)?;
            }
            out.flush()
        })();
        match result {
            // A closed pipe (`sluice run job.toml | head`) is not an error: stop printing.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.broken = true;
                Ok(())
            }
            other => other,
        }
    }
}

/// Renders bytes as text for display: UTF-8 as is, otherwise lossily.
fn text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}
