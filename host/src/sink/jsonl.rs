//! The `jsonl` sink: every record as a JSON object per line, also the
//! form of dead letters.

use super::Sink;
use crate::model::batch::{Batch, Header};
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

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
/// Opening keeps what the file holds; the job then [`Sink::resume`]s it:
/// back to the length a checkpoint recorded, or empty for a fresh start.
pub struct JsonlSink {
    path: PathBuf,
    out: BufWriter<File>,
}

/// The key of a jsonl file's progress in a checkpoint: its length in bytes.
const LEN: &str = "len";

impl JsonlSink {
    /// Opens `path` for appending, creating it and its directory if needed.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(path)?;
        file.seek(SeekFrom::End(0))?;
        Ok(JsonlSink {
            path: path.to_owned(),
            out: BufWriter::with_capacity(1 << 20, file),
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

    fn checkpoint(&mut self) -> std::io::Result<serde_json::Value> {
        self.out.flush()?;
        let file = self.out.get_mut();
        file.sync_data()?;
        let len = file.stream_position()?;
        Ok(serde_json::json!({ LEN: len }))
    }

    fn resume(&mut self, progress: Option<&serde_json::Value>) -> std::io::Result<()> {
        let len = match progress {
            None => 0,
            Some(p) => p.get(LEN).and_then(|l| l.as_u64()).ok_or_else(|| {
                std::io::Error::other(format!(
                    "the checkpoint's progress of this file is {p}, not a length"
                ))
            })?,
        };
        self.out.flush()?;
        let file = self.out.get_mut();
        let now = file.metadata()?.len();
        if now < len {
            return Err(std::io::Error::other(format!(
                "holds {now} bytes, fewer than the {len} its checkpoint recorded: it was changed outside the job (start afresh with --reset-state)"
            )));
        }
        // What was written after the checkpoint is written again.
        file.set_len(len)?;
        file.seek(SeekFrom::Start(len))?;
        file.sync_data()
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
}
