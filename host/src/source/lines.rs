//! Line splitting shared by the file, stdin, directory and socket sources,
//! and the blocking line reader of the first three.

use crate::model::batch::Batch;
use crate::model::time::now_ms;
use std::io::Read;
use tokio::sync::{mpsc, watch};

/// Bytes after which a source sends its chunk whatever its record count.
pub(crate) const MAX_CHUNK_BYTES: usize = 16 << 20;

/// The error of a line longer than `max` bytes.
fn line_too_long(max: usize) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!(
            "a line is longer than batch.max_line_bytes = {} (no line break within that many bytes)",
            crate::model::units::format_size(max as u64)
        ),
    )
}

/// Accumulates bytes and cuts them into line records.
pub(crate) struct LineSplitter {
    partial: Vec<u8>,
    chunk: Batch,
    /// The longest line taken (`batch.max_line_bytes`). A line still
    /// without its end past that (a socket that never sends a newline)
    /// fails the source, naming the setting, instead of exhausting memory.
    max: usize,
}

impl LineSplitter {
    /// A splitter of lines up to `max` bytes.
    pub(crate) fn new(max: usize) -> Self {
        LineSplitter {
            partial: Vec::new(),
            chunk: Batch::new(),
            max,
        }
    }

    /// Appends bytes; complete lines become records. A line longer than
    /// the most is an error.
    pub(crate) fn push(&mut self, data: &[u8], ts: i64) -> std::io::Result<()> {
        let mut rest = data;
        while let Some(pos) = memchr::memchr(b'\n', rest) {
            let (line, tail) = rest.split_at(pos);
            if self.partial.len() + line.len() > self.max {
                return Err(line_too_long(self.max));
            }
            if self.partial.is_empty() {
                self.chunk.push(None, trim_cr(line), ts);
            } else {
                self.partial.extend_from_slice(line);
                let whole = std::mem::take(&mut self.partial);
                self.chunk.push(None, trim_cr(&whole), ts);
            }
            rest = &tail[1..];
        }
        if self.partial.len() + rest.len() > self.max {
            return Err(line_too_long(self.max));
        }
        self.partial.extend_from_slice(rest);
        Ok(())
    }

    /// Takes the complete records so far if there are at least `min`, or
    /// if they hold [`MAX_CHUNK_BYTES`] or more.
    pub(crate) fn take_if(&mut self, min: usize) -> Option<Batch> {
        let full = self.chunk.values.len() >= MAX_CHUNK_BYTES;
        (!self.chunk.is_empty() && (self.chunk.len() >= min.max(1) || full))
            .then(|| std::mem::take(&mut self.chunk))
    }

    /// Ends the input: a last line without a newline becomes a record.
    pub(crate) fn finish(&mut self, ts: i64) -> Option<Batch> {
        if !self.partial.is_empty() {
            let whole = std::mem::take(&mut self.partial);
            self.chunk.push(None, trim_cr(&whole), ts);
        }
        self.take_if(1)
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Reads lines from a blocking reader until end of input or `stop`, sending
/// a chunk once it holds `min_chunk` lines (1 for live input such as stdin,
/// so nothing waits in a buffer) or [`MAX_CHUNK_BYTES`].
pub(crate) fn read_lines(
    mut reader: impl Read,
    tx: &mpsc::Sender<Batch>,
    stop: &watch::Receiver<bool>,
    min_chunk: usize,
    max_line: usize,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    let mut splitter = LineSplitter::new(max_line);
    loop {
        if *stop.borrow() {
            // Hand over the complete lines already read; they count as read.
            if let Some(chunk) = splitter.take_if(1) {
                let _ = tx.blocking_send(chunk);
            }
            return Ok(());
        }
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        splitter.push(&buf[..n], now_ms())?;
        if let Some(chunk) = splitter.take_if(min_chunk)
            && tx.blocking_send(chunk).is_err()
        {
            return Ok(()); // pipeline gone: shutting down
        }
    }
    if let Some(chunk) = splitter.finish(now_ms()) {
        let _ = tx.blocking_send(chunk);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = crate::spec::DEFAULT_MAX_LINE_BYTES as usize;

    #[test]
    fn splits_across_pushes_and_strips_cr() {
        let mut s = LineSplitter::new(MAX);
        s.push(b"ab", 1).unwrap();
        s.push(b"c\r\nd\n\ne", 2).unwrap();
        let b = s.finish(3).unwrap();
        let vals: Vec<_> = b.iter().map(|r| r.value.to_vec()).collect();
        assert_eq!(
            vals,
            [b"abc".to_vec(), b"d".to_vec(), b"".to_vec(), b"e".to_vec()]
        );
    }

    /// A peer that never sends a newline once grew the partial line until
    /// memory ran out.
    #[test]
    fn a_line_without_end_is_bounded() {
        let mut s = LineSplitter::new(MAX);
        let block = vec![b'x'; 1 << 20];
        let mut pushed = 0;
        let err = loop {
            match s.push(&block, 0) {
                Ok(()) => pushed += block.len(),
                Err(e) => break e,
            }
            assert!(pushed <= MAX, "took {pushed} bytes of one line");
        };
        assert!(err.to_string().contains("max_line_bytes = 16 MiB"), "{err}");
        // A line of exactly the bound, then its end, is a record.
        let mut s = LineSplitter::new(MAX);
        s.push(&vec![b'y'; MAX], 0).unwrap();
        s.push(b"\n", 0).unwrap();
        assert_eq!(s.finish(0).unwrap().len(), 1);
    }
}
