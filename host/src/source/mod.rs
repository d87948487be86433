//! Sources: tasks that read records and send them, in chunks, to the batcher.
//!
//! Each source runs on the async runtime (blocking file reads on its blocking
//! pool) and sends [`Batch`] chunks into a bounded channel, so a slow pipeline
//! slows the sources down instead of dropping data. Bounded sources (a file,
//! stdin, a generator with a record count) return when done; unbounded ones
//! run until the stop signal. One file per kind of source; uses only
//! [`crate::model`], [`crate::spec`] and [`crate::signal`].

mod directory;
mod file;
mod generator;
pub mod kafka;
mod lines;
pub mod position;
mod socket;
mod stdin;

pub use generator::Generator;

use crate::metrics::SourceMeter;
use crate::model::batch::Batch;
use crate::model::units::parse_duration;
use crate::spec::SourceConfig;
use position::Position;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Records per chunk sent to the batcher by line sources.
pub const CHUNK_RECORDS: usize = 4096;

/// What a source hands over: records, and where they came from — for a
/// Kafka source each record's offset, so that offsets commit once the
/// records are durable; for a file, a directory or the generator the span
/// of the input they cover, for checkpoints.
pub struct Chunk {
    /// The source's index in its job.
    pub source: usize,
    /// The stream of the source that read them.
    pub stream: usize,
    /// The records.
    pub records: Batch,
    /// Per record, its Kafka topic, partition and offset.
    pub offsets: Option<kafka::Positions>,
    /// Where the records are in the source's input (sources that can seek).
    pub span: Option<position::Span>,
}

/// Records of a source of plain records, with their span of its input.
pub(crate) struct Lines {
    pub(crate) records: Batch,
    pub(crate) span: Option<position::Span>,
}

impl From<Batch> for Lines {
    fn from(records: Batch) -> Self {
        Lines {
            records,
            span: None,
        }
    }
}

/// A source failed.
#[derive(Debug, thiserror::Error)]
#[error("source {source_name}: {message}")]
pub struct SourceError {
    /// Which source, e.g. `file data/in.txt`.
    pub source_name: String,
    /// What failed.
    pub message: String,
}

/// A short description of a source for messages.
pub fn describe(cfg: &SourceConfig) -> String {
    match cfg {
        SourceConfig::File { path } => format!("file {}", path.display()),
        SourceConfig::Directory { path, .. } => format!("directory {}", path.display()),
        SourceConfig::Socket { address } => format!("socket {address}"),
        SourceConfig::Stdin {} => "stdin".into(),
        SourceConfig::Generator { .. } => "generator".into(),
        SourceConfig::Kafka(k) => format!("kafka {} {}", k.brokers, k.topics.join(",")),
    }
}

/// Whether the source ends by itself.
pub fn is_bounded(cfg: &SourceConfig) -> bool {
    match cfg {
        SourceConfig::File { .. } | SourceConfig::Stdin {} => true,
        SourceConfig::Generator { records, .. } => records.is_some(),
        SourceConfig::Directory { .. } | SourceConfig::Socket { .. } | SourceConfig::Kafka(_) => {
            false
        }
    }
}

/// Resolves relative paths against the job file's directory.
pub fn resolve(cfg: SourceConfig, base: &Path) -> SourceConfig {
    match cfg {
        SourceConfig::File { path } => SourceConfig::File {
            path: base.join(path),
        },
        SourceConfig::Directory {
            path,
            poll,
            existing,
        } => SourceConfig::Directory {
            path: base.join(path),
            poll,
            existing,
        },
        other => other,
    }
}

/// Checks what can be checked before the job starts (files exist, ...).
pub fn preflight(cfg: &SourceConfig) -> Result<(), SourceError> {
    let err = |message: String| SourceError {
        source_name: describe(cfg),
        message,
    };
    match cfg {
        SourceConfig::File { path } => {
            let meta = std::fs::metadata(path).map_err(|e| err(format!("cannot open: {e}")))?;
            if !meta.is_file() {
                return Err(err("is not a regular file".into()));
            }
        }
        SourceConfig::Directory { path, .. } => {
            let meta = std::fs::metadata(path).map_err(|e| err(format!("cannot open: {e}")))?;
            if !meta.is_dir() {
                return Err(err("is not a directory".into()));
            }
        }
        SourceConfig::Kafka(k) => {
            kafka::create_consumer(k).map_err(err)?;
        }
        _ => {}
    }
    Ok(())
}

/// Where a source's chunks go, and what counts them.
pub struct Feed {
    /// The source's index in the job.
    pub source: usize,
    /// The stream it feeds.
    pub stream: usize,
    /// The job's input channel.
    pub tx: mpsc::Sender<Chunk>,
    /// The source's meter: what it handed over and how long it waited to.
    pub meter: Arc<SourceMeter>,
}

/// Runs one source until it ends or `stop` turns true, handing its chunks
/// to `feed`; a source that can seek starts at `resume` (a checkpoint's
/// position of it).
pub async fn run(
    cfg: SourceConfig,
    feed: Feed,
    stop: watch::Receiver<bool>,
    max_line: usize,
    resume: Option<Position>,
) -> Result<(), SourceError> {
    let Feed {
        source,
        stream,
        tx,
        meter,
    } = feed;
    if let SourceConfig::Kafka(mut k) = cfg {
        if let Some(Position::Kafka { offsets }) = resume {
            k.resume = offsets;
        }
        let name = describe(&SourceConfig::Kafka(k.clone()));
        return tokio::task::spawn_blocking(move || {
            kafka::run(k, source, stream, tx, stop, max_line, meter)
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r)
        .map_err(|message| SourceError {
            source_name: name,
            message,
        });
    }
    // Sources of plain records: every chunk is durable once written.
    let (records_tx, mut records_rx) = mpsc::channel::<Lines>(4);
    let forward = async move {
        while let Some(Lines { records, span }) = records_rx.recv().await {
            let (n, waiting) = (records.len(), std::time::Instant::now());
            let chunk = Chunk {
                source,
                stream,
                records,
                offsets: None,
                span,
            };
            if tx.send(chunk).await.is_err() {
                break;
            }
            meter.sent(n, waiting.elapsed());
        }
    };
    let (result, ()) = tokio::join!(
        run_records(cfg, records_tx, stop, max_line, resume),
        forward
    );
    result
}

async fn run_records(
    cfg: SourceConfig,
    tx: mpsc::Sender<Lines>,
    mut stop: watch::Receiver<bool>,
    max_line: usize,
    resume: Option<Position>,
) -> Result<(), SourceError> {
    let name = describe(&cfg);
    let err = |message: String| SourceError {
        source_name: name.clone(),
        message,
    };
    match cfg {
        SourceConfig::File { path } => file::read(path, tx, stop.clone(), max_line, resume)
            .await
            .map_err(err),
        SourceConfig::Stdin {} => stdin::read(tx, stop.clone(), max_line).await.map_err(err),
        SourceConfig::Directory {
            path,
            poll,
            existing,
        } => {
            let poll = poll
                .as_deref()
                .map(parse_duration)
                .transpose()
                .map_err(err)?
                .unwrap_or(Duration::from_secs(1));
            directory::watch_directory(path, poll, existing, tx, stop, max_line, resume)
                .await
                .map_err(err)
        }
        SourceConfig::Socket { address } => socket::read_socket(&address, &tx, &mut stop, max_line)
            .await
            .map_err(err),
        SourceConfig::Generator {
            records,
            rate,
            value_size,
            keys,
            seed,
        } => {
            let generator = Generator::new(seed, value_size, keys);
            let from = match resume {
                Some(Position::Generator { next }) => next,
                _ => 0,
            };
            generator.run(from, records, rate, &tx, &mut stop).await;
            Ok(())
        }
        SourceConfig::Kafka(_) => unreachable!("handled by `run`"),
    }
}
