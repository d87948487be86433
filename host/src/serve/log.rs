//! Each job's recent log lines, for `GET /v1/jobs/{id}/logs`.
//!
//! Guest log lines (and the server's own lines about a job) are `tracing`
//! events with a `job` field holding the job's name, which the server makes
//! unique (`<tenant>/<id>`). [`LogCapture`] is a tracing layer that copies
//! the events of registered jobs into one bounded ring buffer per job, so a
//! tenant reads its own job's lines and never another's.

use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{Filtered, Targets};
use tracing_subscriber::layer::Context;

/// Lines kept per job; older ones are dropped.
pub const LINES_PER_JOB: usize = 1000;
/// Longest line kept, in bytes; longer ones are cut.
pub const MAX_LINE: usize = 4096;

/// One captured line.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LogLine {
    /// Milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// `ERROR`, `WARN`, `INFO`, `DEBUG` or `TRACE`.
    pub level: String,
    /// The operator that logged it, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    /// The message.
    pub message: String,
}

/// A job's recent lines.
#[derive(Debug, Default)]
pub struct Ring {
    lines: VecDeque<LogLine>,
    dropped: u64,
}

impl Ring {
    /// Appends a line, dropping the oldest beyond [`LINES_PER_JOB`].
    pub fn push(&mut self, line: LogLine) {
        if self.lines.len() == LINES_PER_JOB {
            self.lines.pop_front();
            self.dropped += 1;
        }
        self.lines.push_back(line);
    }

    /// The last `n` lines, oldest first.
    pub fn tail(&self, n: usize) -> Vec<LogLine> {
        let skip = self.lines.len().saturating_sub(n);
        self.lines.iter().skip(skip).cloned().collect()
    }

    /// Lines dropped so far to keep the bound.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// A shared handle on one job's lines.
pub type SharedRing = Arc<Mutex<Ring>>;

/// The tracing layer that fills the rings of registered jobs. Clones share
/// the registrations.
#[derive(Clone, Default)]
pub struct LogCapture {
    jobs: Arc<RwLock<HashMap<String, SharedRing>>>,
}

impl LogCapture {
    /// A capture with no jobs registered.
    pub fn new() -> Self {
        Self::default()
    }

    /// The layer to install, taking events of Sluice's own targets at
    /// `DEBUG` and above (guest lines are `sluice::guest`), so that the
    /// engine's and libraries' chatter costs nothing.
    pub fn layer<S>(&self) -> Filtered<LogCapture, Targets, S>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        self.clone()
            .with_filter(Targets::new().with_target("sluice", tracing::Level::DEBUG))
    }

    /// Starts keeping the lines of job `name`; returns its ring.
    pub fn register(&self, name: &str) -> SharedRing {
        let ring = SharedRing::default();
        write(&self.jobs).insert(name.to_string(), ring.clone());
        ring
    }

    /// Stops keeping the lines of job `name`.
    pub fn unregister(&self, name: &str) {
        write(&self.jobs).remove(name);
    }
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Locks a ring, whatever a panicking holder left.
pub fn lock(ring: &SharedRing) -> std::sync::MutexGuard<'_, Ring> {
    ring.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn cut(mut s: String) -> String {
    if s.len() > MAX_LINE {
        let mut end = MAX_LINE;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

#[derive(Default)]
struct Fields {
    job: Option<String>,
    operator: Option<String>,
    message: String,
    extra: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record(field, value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record(field, format!("{value:?}"));
    }
}

impl Fields {
    fn record(&mut self, field: &Field, value: String) {
        match field.name() {
            "job" => self.job = Some(value),
            "operator" => self.operator = Some(value),
            "message" => self.message = value,
            "worker" | "batch" => {}
            other => {
                if self.extra.len() < MAX_LINE {
                    self.extra.push_str(&format!(" {other}={value}"));
                }
            }
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for LogCapture {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        // Cheap test first: most events carry no `job` field.
        if event.metadata().fields().field("job").is_none() {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let Some(job) = fields.job else { return };
        let ring = {
            let jobs = self
                .jobs
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match jobs.get(&job) {
                Some(r) => r.clone(),
                None => return,
            }
        };
        let message = cut(fields.message + &fields.extra);
        lock(&ring).push(LogLine {
            time_ms: now_ms(),
            level: event.metadata().level().to_string(),
            operator: fields.operator,
            message,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn lines_go_to_their_own_jobs_ring_only() {
        let capture = LogCapture::new();
        let a = capture.register("acme/1");
        let b = capture.register("other/2");
        let subscriber = tracing_subscriber::registry().with(capture.layer());
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "sluice::guest", job = %"acme/1", operator = %"up", worker = 0, "hello");
            tracing::warn!(target: "sluice::guest", job = %"other/2", "from b");
            tracing::info!(target: "sluice::guest", job = %"unknown/3", "nobody's");
            tracing::info!(target: "wasmtime", job = %"acme/1", "not ours");
        });
        let a = lock(&a).tail(10);
        assert_eq!(a.len(), 1, "{a:?}");
        assert_eq!(a[0].message, "hello");
        assert_eq!(a[0].operator.as_deref(), Some("up"));
        assert_eq!(a[0].level, "INFO");
        let b = lock(&b).tail(10);
        assert_eq!(b.len(), 1, "{b:?}");
        assert_eq!(b[0].message, "from b");
    }

    #[test]
    fn the_ring_is_bounded() {
        let mut ring = Ring::default();
        for i in 0..LINES_PER_JOB + 5 {
            ring.push(LogLine {
                time_ms: 0,
                level: "INFO".into(),
                operator: None,
                message: i.to_string(),
            });
        }
        assert_eq!(ring.dropped(), 5);
        let tail = ring.tail(2);
        assert_eq!(tail[1].message, (LINES_PER_JOB + 4).to_string());
        assert_eq!(ring.tail(usize::MAX).len(), LINES_PER_JOB);
        assert_eq!(cut("é".repeat(MAX_LINE)).len(), MAX_LINE + '…'.len_utf8());
    }
}
