//! Sinks: where each micro-batch's output goes, in batch order.
//!
//! Sinks are called from one dedicated thread, batch after batch, with the
//! batch's partitions in partition order; a batch is complete once every sink
//! has returned from [`Sink::write`].

pub mod kafka;

use crate::model::batch::{Batch, Header};
use crate::spec::SinkConfig;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A destination for micro-batch output.
pub trait Sink: Send {
    /// A short description for messages, e.g. `jsonl out.jsonl`.
    fn describe(&self) -> String;
    /// Writes one micro-batch (all its partitions) durably enough for this sink.
    fn write(&mut self, batch_no: u64, parts: &[Batch]) -> std::io::Result<()>;
    /// Flushes and closes at the end of the job.
    fn close(&mut self) -> std::io::Result<()> {
        Ok(())
    }
    /// Whether the sink commits the sources' Kafka offsets together with
    /// its output, in one transaction (exactly-once).
    fn transactional(&self) -> bool {
        false
    }
    /// Writes one micro-batch and commits `offsets` (the Kafka offsets after
    /// the batch's input) with it. Only called on transactional sinks, for
    /// every batch, even one without output.
    fn write_transaction(
        &mut self,
        batch_no: u64,
        parts: &[Batch],
        _offsets: Option<&crate::source::kafka::Offsets>,
    ) -> std::io::Result<()> {
        self.write(batch_no, parts)
    }
}

/// Opens the sink `cfg`, resolving paths against `base`.
pub fn open(cfg: &SinkConfig, base: &Path) -> std::io::Result<Box<dyn Sink>> {
    Ok(match cfg {
        SinkConfig::Stdout { limit } => Box::new(StdoutSink::new(*limit)),
        SinkConfig::Jsonl { path } => Box::new(JsonlSink::create(&base.join(path))?),
        SinkConfig::Directory { path } => Box::new(DirectorySink::create(&base.join(path))?),
        SinkConfig::Discard {} => Box::new(DiscardSink),
        SinkConfig::Kafka(k) => Box::new(kafka::KafkaSink::create(k)?),
    })
}

/// A short description of a sink for messages, e.g. `jsonl out.jsonl`.
pub fn describe(cfg: &SinkConfig) -> String {
    match cfg {
        SinkConfig::Stdout { .. } => "stdout".into(),
        SinkConfig::Jsonl { path } => format!("jsonl {}", path.display()),
        SinkConfig::Directory { path } => format!("directory {}", path.display()),
        SinkConfig::Discard {} => "discard".into(),
        SinkConfig::Kafka(k) => format!("kafka {} {}", k.brokers, k.topic),
    }
}

/// Renders bytes as text for display: UTF-8 as is, otherwise lossily.
fn text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

/// Drops every record; the job summary still counts them.
pub struct DiscardSink;

impl Sink for DiscardSink {
    fn describe(&self) -> String {
        "discard".into()
    }

    fn write(&mut self, _batch_no: u64, _parts: &[Batch]) -> std::io::Result<()> {
        Ok(())
    }
}

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

/// Writes one record as a JSON object: `key` (absent when the record has
/// none), `value`, `timestamp`, and `headers` only when the record has
/// some: an array, in order, of `{"key": .., "value": ..}` objects (`value`
/// is `null` for a null value). Bytes that are not UTF-8 are written as
/// `key_base64` / `value_base64` instead, so nothing is altered.
pub fn write_json_record<'h>(
    out: &mut impl Write,
    key: Option<&[u8]>,
    value: &[u8],
    timestamp: i64,
    headers: impl IntoIterator<Item = Header<'h>>,
    extra: &[(&str, &serde_json::Value)],
) -> std::io::Result<()> {
    let mut obj = serde_json::Map::new();
    if let Some(k) = key {
        put_bytes(&mut obj, "key", k);
    }
    put_bytes(&mut obj, "value", value);
    obj.insert("timestamp".into(), timestamp.into());
    let headers: Vec<serde_json::Value> = headers
        .into_iter()
        .map(|h| {
            let mut entry = serde_json::Map::new();
            put_bytes(&mut entry, "key", h.key);
            match h.value {
                Some(v) => put_bytes(&mut entry, "value", v),
                None => {
                    entry.insert("value".into(), serde_json::Value::Null);
                }
            }
            serde_json::Value::Object(entry)
        })
        .collect();
    if !headers.is_empty() {
        obj.insert("headers".into(), headers.into());
    }
    for (k, v) in extra {
        obj.insert((*k).into(), (*v).clone());
    }
    serde_json::to_writer(&mut *out, &obj)?;
    out.write_all(b"\n")
}

fn put_bytes(obj: &mut serde_json::Map<String, serde_json::Value>, name: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(s) => {
            obj.insert(name.into(), s.into());
        }
        Err(_) => {
            obj.insert(format!("{name}_base64"), base64(bytes).into());
        }
    }
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= c.len() {
                s.push(A[(n >> shift) as usize & 63] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// Appends every record to a JSON-lines file, flushed at each batch end.
pub struct JsonlSink {
    path: PathBuf,
    out: BufWriter<File>,
}

impl JsonlSink {
    /// Creates (truncates) `path`, creating its directory if needed.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        Ok(JsonlSink {
            path: path.to_owned(),
            out: BufWriter::with_capacity(1 << 20, File::create(path)?),
        })
    }
}

impl JsonlSink {
    /// Appends pre-formatted JSON lines and flushes.
    pub fn write_raw(&mut self, lines: &[u8]) -> std::io::Result<()> {
        self.out.write_all(lines)?;
        self.out.flush()
    }
}

impl Sink for JsonlSink {
    fn describe(&self) -> String {
        format!("jsonl {}", self.path.display())
    }

    fn write(&mut self, _batch_no: u64, parts: &[Batch]) -> std::io::Result<()> {
        for r in parts.iter().flat_map(|p| p.iter()) {
            write_json_record(&mut self.out, r.key, r.value, r.timestamp, r.headers, &[])?;
        }
        self.out.flush()
    }

    fn close(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        self.out.get_ref().sync_all()
    }
}

/// Writes each batch to `batch-NNNNNNNNN.jsonl` in a directory, atomically:
/// the file is written under a hidden temporary name, synced, then renamed,
/// so a reader never sees a partial batch file. Numbers continue after the
/// highest file already there, so a restarted job never overwrites output.
pub struct DirectorySink {
    dir: PathBuf,
    next: u64,
}

impl DirectorySink {
    /// Uses `dir`, creating it if needed.
    pub fn create(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut next = 0;
        for entry in std::fs::read_dir(dir)? {
            let name = entry?.file_name();
            let n = name
                .to_str()
                .and_then(|n| n.strip_prefix("batch-"))
                .and_then(|n| n.strip_suffix(".jsonl"))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(n) = n {
                next = next.max(n + 1);
            }
        }
        Ok(DirectorySink {
            dir: dir.to_owned(),
            next,
        })
    }
}

impl Sink for DirectorySink {
    fn describe(&self) -> String {
        format!("directory {}", self.dir.display())
    }

    fn write(&mut self, _batch_no: u64, parts: &[Batch]) -> std::io::Result<()> {
        let name = format!("batch-{:09}.jsonl", self.next);
        self.next += 1;
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let mut out = BufWriter::new(File::create(&tmp)?);
        for r in parts.iter().flat_map(|p| p.iter()) {
            write_json_record(&mut out, r.key, r.value, r.timestamp, r.headers, &[])?;
        }
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, self.dir.join(name))
    }
}

/// An owned record: (key, value, timestamp).
pub type OwnedRecord = (Option<Vec<u8>>, Vec<u8>, i64);

/// Keeps every output record in memory, for tests and embedding.
#[derive(Clone, Default)]
pub struct CollectSink {
    records: Arc<Mutex<Vec<OwnedRecord>>>,
    batches: Arc<Mutex<u64>>,
}

impl CollectSink {
    /// An empty collector; clones share the same storage.
    pub fn new() -> Self {
        Self::default()
    }

    /// The records collected so far, as (key, value, timestamp).
    pub fn records(&self) -> Vec<OwnedRecord> {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The values collected so far, as text.
    pub fn values(&self) -> Vec<String> {
        self.records()
            .into_iter()
            .map(|(_, v, _)| String::from_utf8_lossy(&v).into_owned())
            .collect()
    }

    /// Number of non-empty batches written.
    pub fn batches(&self) -> u64 {
        *self.batches.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Sink for CollectSink {
    fn describe(&self) -> String {
        "memory".into()
    }

    fn write(&mut self, _batch_no: u64, parts: &[Batch]) -> std::io::Result<()> {
        let mut recs = self.records.lock().unwrap_or_else(|p| p.into_inner());
        for r in parts.iter().flat_map(|p| p.iter()) {
            recs.push((r.key.map(<[u8]>::to_vec), r.value.to_vec(), r.timestamp));
        }
        *self.batches.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_records_keep_bytes() {
        let mut out = Vec::new();
        write_json_record(&mut out, None, b"hi", 5, [], &[]).unwrap();
        write_json_record(&mut out, Some(b"k"), &[0xff, 0x00, 0x41], 6, [], &[]).unwrap();
        let headers = [
            Header {
                key: b"h",
                value: Some(b"1"),
            },
            Header {
                key: b"h",
                value: Some(b""),
            },
            Header {
                key: b"n",
                value: None,
            },
            Header {
                key: b"b",
                value: Some(&[0xff]),
            },
        ];
        write_json_record(&mut out, None, b"v", 7, headers, &[]).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0], serde_json::json!({"value": "hi", "timestamp": 5}));
        assert_eq!(
            lines[1],
            serde_json::json!({"key": "k", "value_base64": "/wBB", "timestamp": 6})
        );
        assert_eq!(
            lines[2],
            serde_json::json!({"value": "v", "timestamp": 7, "headers": [
                {"key": "h", "value": "1"},
                {"key": "h", "value": ""},
                {"key": "n", "value": null},
                {"key": "b", "value_base64": "/w=="},
            ]})
        );
        // Records without headers keep the exact line they always had.
        assert_eq!(
            text.lines().next().unwrap(),
            r#"{"timestamp":5,"value":"hi"}"#
        );
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"a"), "YQ==");
    }

    #[test]
    fn directory_sink_writes_one_file_per_batch() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("batch-000000002.jsonl"), "").unwrap();
        let mut sink = DirectorySink::create(dir.path()).unwrap();
        let parts = [Batch::from_values(["a"], 1), Batch::from_values(["b"], 2)];
        sink.write(0, &parts).unwrap();
        let body = std::fs::read_to_string(dir.path().join("batch-000000003.jsonl")).unwrap();
        assert_eq!(body.lines().count(), 2);
        // A second run continues the numbering instead of overwriting.
        let mut again = DirectorySink::create(dir.path()).unwrap();
        again.write(0, &[Batch::from_values(["c"], 3)]).unwrap();
        assert!(dir.path().join("batch-000000004.jsonl").exists());
        let files = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(files, 3, "no temporary files left behind");
    }
}
