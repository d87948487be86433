//! Sources: tasks that read records and send them, in chunks, to the batcher.
//!
//! Each source runs on the async runtime (blocking file reads on its blocking
//! pool) and sends [`Batch`] chunks into a bounded channel, so a slow pipeline
//! slows the sources down instead of dropping data. Bounded sources (a file,
//! stdin, a generator with a record count) return when done; unbounded ones
//! run until the stop signal.

mod generator;
pub mod kafka;
pub(crate) mod lines;

pub use generator::Generator;

use crate::model::batch::Batch;
use crate::model::units::parse_duration;
use crate::spec::SourceConfig;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Records per chunk sent to the batcher by line sources.
pub const CHUNK_RECORDS: usize = 4096;

/// What a source hands over: records, and for a Kafka source where each
/// record came from, so that offsets commit once the records are durable.
pub struct Chunk {
    /// The stream of the source that read them.
    pub stream: usize,
    /// The records.
    pub records: Batch,
    /// Per record, its Kafka topic, partition and offset.
    pub offsets: Option<kafka::Positions>,
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

/// Runs one source until it ends or `stop` turns true.
pub async fn run(
    cfg: SourceConfig,
    stream: usize,
    tx: mpsc::Sender<Chunk>,
    stop: watch::Receiver<bool>,
) -> Result<(), SourceError> {
    if let SourceConfig::Kafka(k) = cfg {
        let name = describe(&SourceConfig::Kafka(k.clone()));
        return tokio::task::spawn_blocking(move || kafka::run(k, stream, tx, stop))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r)
            .map_err(|message| SourceError {
                source_name: name,
                message,
            });
    }
    // Sources of plain records: every chunk is durable once written.
    let (records_tx, mut records_rx) = mpsc::channel::<Batch>(4);
    let forward = async move {
        while let Some(records) = records_rx.recv().await {
            if tx
                .send(Chunk {
                    stream,
                    records,
                    offsets: None,
                })
                .await
                .is_err()
            {
                break;
            }
        }
    };
    let (result, ()) = tokio::join!(run_records(cfg, records_tx, stop), forward);
    result
}

async fn run_records(
    cfg: SourceConfig,
    tx: mpsc::Sender<Batch>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), SourceError> {
    let name = describe(&cfg);
    let err = |message: String| SourceError {
        source_name: name.clone(),
        message,
    };
    match cfg {
        SourceConfig::File { path } => {
            let file = std::fs::File::open(&path).map_err(|e| err(format!("cannot open: {e}")))?;
            let stop = stop.clone();
            tokio::task::spawn_blocking(move || lines::read_lines(file, &tx, &stop, CHUNK_RECORDS))
                .await
                .map_err(|e| err(e.to_string()))?
                .map_err(|e| err(format!("read failed: {e}")))
        }
        SourceConfig::Stdin {} => {
            // A plain thread, not the blocking pool: a read from a terminal
            // cannot be cancelled, and must not keep the runtime from shutting
            // down once the job has stopped. Every read is sent at once (live
            // input), so nothing waits in a buffer when the job stops.
            let stop = stop.clone();
            let (done_tx, done_rx) = tokio::sync::oneshot::channel();
            std::thread::Builder::new()
                .name("sluice-stdin".into())
                .spawn(move || {
                    let result = lines::read_lines(std::io::stdin().lock(), &tx, &stop, 1);
                    let _ = done_tx.send(result);
                })
                .map_err(|e| err(format!("cannot start reader thread: {e}")))?;
            done_rx
                .await
                .map_err(|_| err("reader thread stopped".into()))?
                .map_err(|e| err(format!("read failed: {e}")))
        }
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
            watch_directory(path, poll, existing, tx, stop)
                .await
                .map_err(err)
        }
        SourceConfig::Socket { address } => {
            lines::read_socket(&address, &tx, &mut stop).await;
            Ok(())
        }
        SourceConfig::Generator {
            records,
            rate,
            value_size,
            keys,
            seed,
        } => {
            let generator = Generator::new(seed, value_size, keys);
            generator.run(records, rate, &tx, &mut stop).await;
            Ok(())
        }
        SourceConfig::Kafka(_) => unreachable!("handled by `run`"),
    }
}

/// Whether a directory entry is ready to read: writers publish files by
/// renaming them from a hidden or `.tmp` name.
fn is_published(name: &str) -> bool {
    !(name.starts_with('.') || name.ends_with(".tmp") || name.ends_with("._COPYING_"))
}

async fn watch_directory(
    dir: PathBuf,
    poll: Duration,
    existing: bool,
    tx: mpsc::Sender<Batch>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    let mut first = true;
    loop {
        let mut fresh = Vec::new();
        let mut entries = tokio::fs::read_dir(&dir)
            .await
            .map_err(|e| format!("cannot list: {e}"))?;
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
            if is_file && is_published(&name) && seen.insert(name.clone()) && (existing || !first) {
                fresh.push(entry.path());
            }
        }
        first = false;
        fresh.sort();
        for path in fresh {
            tracing::info!("reading new file {}", path.display());
            let tx = tx.clone();
            let stop2 = stop.clone();
            let result = tokio::task::spawn_blocking(move || {
                let file = std::fs::File::open(&path)?;
                lines::read_lines(file, &tx, &stop2, CHUNK_RECORDS)
            })
            .await
            .map_err(|e| e.to_string())?;
            if let Err(e) = result {
                tracing::warn!("skipping unreadable file in {}: {e}", dir.display());
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
