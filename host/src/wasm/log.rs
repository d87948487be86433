//! Where a guest's log lines, stdout and stderr go: the host log, tagged with
//! job, operator and worker, and rate-limited per batch call.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// Lines an instance may log during one call before the rest are dropped.
pub const MAX_LINES_PER_CALL: usize = 200;
/// Bytes of stdout/stderr kept per call; the rest is dropped and counted.
pub const MAX_OUTPUT_BYTES_PER_CALL: usize = 64 * 1024;
/// Lines per second an instance may log over time (after a burst of
/// [`MAX_LINES_PER_CALL`]); many small calls cannot flood the host either.
pub const LINES_PER_SECOND: f64 = 100.0;
/// At most one "logging too much" warning per instance per this period.
const DROP_REPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// How much of the most recent stderr text is kept to explain a trap.
const STDERR_TAIL: usize = 4096;

/// Identifies the emitter of a log line.
#[derive(Debug, Clone)]
pub struct LogTags {
    /// Job name.
    pub job: String,
    /// Operator name within the job.
    pub operator: String,
    /// Worker index.
    pub worker: usize,
}

#[derive(Default)]
struct Shared {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    stderr_tail: Vec<u8>,
    dropped_bytes: usize,
}

/// Collects one instance's output; [`GuestLog::flush`] forwards it.
#[derive(Clone)]
pub struct GuestLog {
    tags: Arc<LogTags>,
    shared: Arc<Mutex<Shared>>,
    /// Micro-batch being processed, shared by the clones of this log.
    batch: Arc<AtomicU64>,
    lines: usize,
    /// Token bucket for [`LINES_PER_SECOND`].
    tokens: f64,
    refilled: std::time::Instant,
    dropped_lines: usize,
    dropped_bytes: usize,
    reported: Option<std::time::Instant>,
}

/// The batch number logged while an instance initialises, before any batch.
const NO_BATCH: u64 = u64::MAX;

impl GuestLog {
    /// A log for one instance.
    pub fn new(tags: LogTags) -> Self {
        GuestLog {
            tags: Arc::new(tags),
            shared: Arc::default(),
            batch: Arc::new(AtomicU64::new(NO_BATCH)),
            lines: 0,
            tokens: MAX_LINES_PER_CALL as f64,
            refilled: std::time::Instant::now(),
            dropped_lines: 0,
            dropped_bytes: 0,
            reported: None,
        }
    }

    /// Tags the following lines with micro-batch `batch_no`.
    pub fn set_batch(&self, batch_no: u64) {
        self.batch.store(batch_no, Ordering::Relaxed);
    }

    /// The tags of this instance.
    pub fn tags(&self) -> &LogTags {
        &self.tags
    }

    /// A line from the `log` import.
    pub fn line(&mut self, level: tracing::Level, message: &str) {
        self.lines += 1;
        let now = std::time::Instant::now();
        let refill = now.duration_since(self.refilled).as_secs_f64() * LINES_PER_SECOND;
        self.tokens = (self.tokens + refill).min(MAX_LINES_PER_CALL as f64);
        self.refilled = now;
        if self.lines > MAX_LINES_PER_CALL || self.tokens < 1.0 {
            self.dropped_lines += 1;
            return;
        }
        self.tokens -= 1.0;
        let t = &self.tags;
        let batch = match self.batch.load(Ordering::Relaxed) {
            NO_BATCH => "init".to_string(),
            n => n.to_string(),
        };
        match level {
            tracing::Level::ERROR => {
                tracing::error!(target: "sluice::guest", job = %t.job, operator = %t.operator, worker = t.worker, batch = %batch, "{message}")
            }
            tracing::Level::WARN => {
                tracing::warn!(target: "sluice::guest", job = %t.job, operator = %t.operator, worker = t.worker, batch = %batch, "{message}")
            }
            tracing::Level::INFO => {
                tracing::info!(target: "sluice::guest", job = %t.job, operator = %t.operator, worker = t.worker, batch = %batch, "{message}")
            }
            tracing::Level::DEBUG => {
                tracing::debug!(target: "sluice::guest", job = %t.job, operator = %t.operator, worker = t.worker, batch = %batch, "{message}")
            }
            tracing::Level::TRACE => {
                tracing::trace!(target: "sluice::guest", job = %t.job, operator = %t.operator, worker = t.worker, batch = %batch, "{message}")
            }
        }
    }

    /// A stream for the guest's stdout (`is_stderr == false`) or stderr.
    pub fn stream(&self, is_stderr: bool) -> GuestStream {
        GuestStream {
            shared: self.shared.clone(),
            is_stderr,
        }
    }

    /// Forwards buffered stdout/stderr lines to the host log and reports what
    /// was dropped (at most once a second). Called after every call into the
    /// guest.
    pub fn flush(&mut self) {
        let (stdout, stderr, dropped_bytes) = {
            let mut s = self.shared.lock().unwrap_or_else(|p| p.into_inner());
            (
                std::mem::take(&mut s.stdout),
                std::mem::take(&mut s.stderr),
                std::mem::take(&mut s.dropped_bytes),
            )
        };
        for (text, level) in [
            (stdout, tracing::Level::INFO),
            (stderr, tracing::Level::WARN),
        ] {
            for line in String::from_utf8_lossy(&text)
                .lines()
                .filter(|l| !l.trim().is_empty())
            {
                self.line(level, line);
            }
        }
        self.dropped_bytes += dropped_bytes;
        self.lines = 0;
        let due = self
            .reported
            .is_none_or(|at| at.elapsed() >= DROP_REPORT_EVERY);
        if (self.dropped_lines > 0 || self.dropped_bytes > 0) && due {
            let t = &self.tags;
            tracing::warn!(
                target: "sluice::guest",
                job = %t.job, operator = %t.operator, worker = t.worker,
                "operator is logging too much: dropped {} line(s) and {} byte(s) of output (limits: {} lines and {} bytes per call, {} lines per second)",
                self.dropped_lines, self.dropped_bytes, MAX_LINES_PER_CALL, MAX_OUTPUT_BYTES_PER_CALL, LINES_PER_SECOND
            );
            self.dropped_lines = 0;
            self.dropped_bytes = 0;
            self.reported = Some(std::time::Instant::now());
        }
    }

    /// The last stderr text the guest wrote (a Rust panic message, typically),
    /// then cleared.
    pub fn take_stderr_tail(&self) -> String {
        let mut s = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        let tail = std::mem::take(&mut s.stderr_tail);
        String::from_utf8_lossy(&tail).trim().to_string()
    }
}

/// One of a guest's output streams.
#[derive(Clone)]
pub struct GuestStream {
    shared: Arc<Mutex<Shared>>,
    is_stderr: bool,
}

impl GuestStream {
    fn append(&self, bytes: &[u8]) {
        let mut s = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        let used = s.stdout.len() + s.stderr.len();
        let room = MAX_OUTPUT_BYTES_PER_CALL.saturating_sub(used);
        let keep = bytes.len().min(room);
        s.dropped_bytes += bytes.len() - keep;
        if self.is_stderr {
            s.stderr.extend_from_slice(&bytes[..keep]);
            s.stderr_tail.extend_from_slice(bytes);
            let excess = s.stderr_tail.len().saturating_sub(STDERR_TAIL);
            s.stderr_tail.drain(..excess);
        } else {
            s.stdout.extend_from_slice(&bytes[..keep]);
        }
    }
}

impl IsTerminal for GuestStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for GuestStream {
    async fn ready(&mut self) {}
}

#[async_trait::async_trait]
impl OutputStream for GuestStream {
    fn write(&mut self, bytes: bytes::Bytes) -> Result<(), StreamError> {
        // Never fail the guest for writing: excess output is dropped and counted.
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for GuestStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.append(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
