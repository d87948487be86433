//! Line splitting shared by the file, stdin, directory and socket sources,
//! and the blocking line reader of the first three.

use super::Lines;
use super::position::{Position, Span};
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
    /// Byte offset just past the last complete line taken.
    pos: u64,
    /// Byte offset of the first line in `chunk`.
    chunk_start: u64,
    /// Lines still to drop (a resumed source had taken them).
    skip: u64,
}

impl LineSplitter {
    /// A splitter of lines up to `max` bytes.
    pub(crate) fn new(max: usize) -> Self {
        LineSplitter {
            partial: Vec::new(),
            chunk: Batch::new(),
            max,
            pos: 0,
            chunk_start: 0,
            skip: 0,
        }
    }

    /// A splitter of input that starts at byte `offset` (a line start), of
    /// which the first `skip` lines are dropped.
    pub(crate) fn resumed(max: usize, offset: u64, skip: u64) -> Self {
        LineSplitter {
            pos: offset,
            chunk_start: offset,
            skip,
            ..Self::new(max)
        }
    }

    /// Takes a complete line of `raw` bytes (with its terminator).
    fn line(&mut self, line: &[u8], raw: u64, ts: i64) {
        self.pos += raw;
        if self.skip > 0 {
            self.skip -= 1;
            if self.chunk.is_empty() {
                self.chunk_start = self.pos;
            }
            return;
        }
        self.chunk.push(None, trim_cr(line), ts);
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
                self.line(line, line.len() as u64 + 1, ts);
            } else {
                self.partial.extend_from_slice(line);
                let whole = std::mem::take(&mut self.partial);
                self.line(&whole, whole.len() as u64 + 1, ts);
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
        self.take_span_if(min).map(|(b, _)| b)
    }

    /// Like [`LineSplitter::take_if`], with the byte offsets of the first
    /// line taken and just past the last.
    pub(crate) fn take_span_if(&mut self, min: usize) -> Option<(Batch, (u64, u64))> {
        let full = self.chunk.values.len() >= MAX_CHUNK_BYTES;
        if self.chunk.is_empty() || (self.chunk.len() < min.max(1) && !full) {
            return None;
        }
        let span = (self.chunk_start, self.pos);
        self.chunk_start = self.pos;
        Some((std::mem::take(&mut self.chunk), span))
    }

    /// Ends the input: a last line without a newline becomes a record.
    pub(crate) fn finish(&mut self, ts: i64) -> Option<Batch> {
        self.finish_span(ts).map(|(b, _)| b)
    }

    /// Like [`LineSplitter::finish`], with the chunk's byte offsets.
    pub(crate) fn finish_span(&mut self, ts: i64) -> Option<(Batch, (u64, u64))> {
        if !self.partial.is_empty() {
            let whole = std::mem::take(&mut self.partial);
            self.line(&whole, whole.len() as u64, ts);
        }
        self.take_span_if(1)
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Where a line reader's chunks are in their input: what a checkpoint records.
pub(crate) struct Tracked {
    /// The byte offset the reader starts at (a line start).
    pub(crate) offset: u64,
    /// Lines after it already taken.
    pub(crate) skip: u64,
    /// The position of a byte offset (a line start) of this input.
    pub(crate) at: Box<dyn Fn(u64) -> Position + Send>,
}

/// Reads lines from a blocking reader until end of input or `stop`, sending
/// a chunk once it holds `min_chunk` lines (1 for live input such as stdin,
/// so nothing waits in a buffer) or [`MAX_CHUNK_BYTES`]. With `tracked`,
/// the reader has been placed at `tracked.offset` and each chunk carries
/// its span; returns whether the input was read to its end.
pub(crate) fn read_lines(
    mut reader: impl Read,
    tx: &mpsc::Sender<Lines>,
    stop: &watch::Receiver<bool>,
    min_chunk: usize,
    max_line: usize,
    tracked: Option<Tracked>,
) -> std::io::Result<bool> {
    let mut buf = vec![0u8; 1 << 20];
    let mut splitter = match &tracked {
        Some(t) => LineSplitter::resumed(max_line, t.offset, t.skip),
        None => LineSplitter::new(max_line),
    };
    let lines = |(records, (start, end)): (Batch, (u64, u64))| Lines {
        records,
        span: tracked.as_ref().map(|t| Span {
            start: (t.at)(start),
            end: (t.at)(end),
        }),
    };
    loop {
        if *stop.borrow() {
            // Hand over the complete lines already read; they count as read.
            if let Some(chunk) = splitter.take_span_if(1) {
                let _ = tx.blocking_send(lines(chunk));
            }
            return Ok(false);
        }
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        splitter.push(&buf[..n], now_ms())?;
        if let Some(chunk) = splitter.take_span_if(min_chunk)
            && tx.blocking_send(lines(chunk)).is_err()
        {
            return Ok(false); // pipeline gone: shutting down
        }
    }
    if let Some(chunk) = splitter.finish_span(now_ms()) {
        let _ = tx.blocking_send(lines(chunk));
    }
    Ok(true)
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

    /// Offsets count raw bytes (with `\r\n`), and a resumed splitter drops
    /// the lines it was told to skip.
    #[test]
    fn spans_count_raw_bytes_and_skipped_lines_are_dropped() {
        let text = b"ab\r\ncd\nef\ngh";
        let mut s = LineSplitter::new(MAX);
        s.push(text, 0).unwrap();
        let (b, span) = s.take_span_if(1).unwrap();
        assert_eq!((b.len(), span), (3, (0, 10)));
        let (b, span) = s.finish_span(0).unwrap();
        assert_eq!((b.len(), span), (1, (10, 12)));
        let mut r = LineSplitter::resumed(MAX, 4, 1);
        r.push(&text[4..], 0).unwrap();
        let (b, span) = r.finish_span(0).unwrap();
        let vals: Vec<_> = b.iter().map(|r| r.value.to_vec()).collect();
        assert_eq!(vals, [b"ef".to_vec(), b"gh".to_vec()]);
        assert_eq!(span, (7, 12));
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
