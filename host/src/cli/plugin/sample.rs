//! `sluice plugin test`: run a component over sample records and show what
//! it does with them.

use crate::model::batch::preview;
use crate::model::batch::{self, Batch};
use crate::operators::{Operator, OperatorError};
use crate::wasm::{LogTags, Plugin};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How sample records are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleFormat {
    /// One record per line; the line is the value.
    Lines,
    /// One JSON object per line: `{"value": "...", "key": "...", "timestamp": 0}`;
    /// only `value` is required.
    Jsonl,
}

impl SampleFormat {
    /// JSON lines for `.jsonl` / `.ndjson` files, text lines otherwise.
    pub fn for_path(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some("jsonl" | "ndjson") => SampleFormat::Jsonl,
            _ => SampleFormat::Lines,
        }
    }
}

/// Why a sample run failed.
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    /// The sample file could not be read.
    #[error("cannot read sample {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// A sample line is not in the expected format.
    #[error("{path}:{line}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong and what is accepted.
        message: String,
    },
    /// The operator refused its settings.
    #[error("operator `{operator}` refused its configuration: {message}")]
    Config {
        /// Operator name.
        operator: String,
        /// The operator's message.
        message: String,
    },
    /// The operator trapped.
    #[error("operator `{operator}` trapped{}: {reason}", match (index, value) {
        (Some(i), Some(v)) => format!(" on record {i} (value {v})"),
        _ => String::new(),
    })]
    Trap {
        /// Operator name.
        operator: String,
        /// Index of the first record that traps on its own, when found.
        index: Option<usize>,
        /// Preview of that record's value.
        value: Option<String>,
        /// Trap kind, the guest's panic message and backtrace.
        reason: String,
    },
    /// The operator failed otherwise.
    #[error("operator `{operator}` failed: {error}")]
    Failed {
        /// Operator name.
        operator: String,
        /// The error.
        error: OperatorError,
    },
}

const JSONL_SHAPE: &str = r#"each line must be a JSON object like {"value": "text", "key": "k", "timestamp": 1700000000000}; only "value" is required"#;

/// Reads sample records from `path`.
pub fn read_sample(path: &Path, format: SampleFormat) -> Result<Batch, SampleError> {
    let text = std::fs::read(path).map_err(|error| SampleError::Read {
        path: path.to_owned(),
        error,
    })?;
    let mut out = Batch::new();
    let body = text.strip_suffix(b"\n").unwrap_or(&text);
    if body.is_empty() {
        return Ok(out);
    }
    for (i, line) in body.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match format {
            SampleFormat::Lines => out.push(None, line, 0),
            SampleFormat::Jsonl => {
                let err = |message: String| SampleError::Format {
                    path: path.to_owned(),
                    line: i + 1,
                    message,
                };
                let v: serde_json::Value = serde_json::from_slice(line)
                    .map_err(|e| err(format!("not JSON ({e}); {JSONL_SHAPE}")))?;
                let obj = v
                    .as_object()
                    .ok_or_else(|| err(format!("not a JSON object; {JSONL_SHAPE}")))?;
                if let Some(k) = obj
                    .keys()
                    .find(|k| !["value", "key", "timestamp"].contains(&k.as_str()))
                {
                    return Err(err(format!("unknown field {k:?}; {JSONL_SHAPE}")));
                }
                let value = obj
                    .get("value")
                    .and_then(|v| v.as_str())
                    .ok_or_else(|| err(format!("missing string field \"value\"; {JSONL_SHAPE}")))?;
                let key = match obj.get("key") {
                    None | Some(serde_json::Value::Null) => None,
                    Some(serde_json::Value::String(s)) => Some(s.as_bytes()),
                    Some(_) => {
                        return Err(err(format!(
                            "\"key\" must be a string or null; {JSONL_SHAPE}"
                        )));
                    }
                };
                let ts = match obj.get("timestamp") {
                    None => 0,
                    Some(t) => t.as_i64().ok_or_else(|| {
                        err(format!(
                            "\"timestamp\" must be an integer (milliseconds); {JSONL_SHAPE}"
                        ))
                    })?,
                };
                out.push(key, value.as_bytes(), ts);
            }
        }
    }
    Ok(out)
}

/// What the operator did with the sample.
#[derive(Debug)]
pub struct Report {
    /// Records it emitted.
    pub output: Batch,
    /// Input records it rejected: (index in the sample, reason).
    pub rejected: Vec<(usize, String)>,
    /// Input record count.
    pub records: usize,
    /// Time spent in `process` calls.
    pub elapsed: Duration,
}

/// Runs `plugin` (as operator `name`, with `config`) over `input`, handling
/// rejections the way a job with a dead-letter file does.
pub fn run(
    plugin: &Plugin,
    name: &str,
    config: &[(String, String)],
    input: Batch,
) -> Result<Report, SampleError> {
    let tags = LogTags {
        job: "plugin-test".into(),
        operator: name.into(),
        worker: 0,
    };
    let mut op = plugin.instantiate(tags, config).map_err(|e| match e {
        OperatorError::BadConfig(message) => SampleError::Config {
            operator: name.into(),
            message,
        },
        OperatorError::Trap(reason) => SampleError::Trap {
            operator: name.into(),
            index: None,
            value: None,
            reason: format!("in init: {reason}"),
        },
        error => SampleError::Failed {
            operator: name.into(),
            error,
        },
    })?;
    op.begin_batch(0);
    let records = input.len();
    // `origin[i]` is the sample index of record i of the current input.
    let mut origin: Vec<usize> = (0..records).collect();
    let mut current = input.clone();
    let mut rejected = Vec::new();
    let mut elapsed = Duration::ZERO;
    for _round in 0..=3 {
        let started = Instant::now();
        let result = op.process(&mut current);
        elapsed += started.elapsed();
        match result {
            Ok(output) => {
                rejected.sort();
                return Ok(Report {
                    output,
                    rejected,
                    records,
                    elapsed,
                });
            }
            Err(OperatorError::BadRecords(mut rs)) => {
                // The same checks as a job: one entry per record, in range.
                rs.sort_by_key(|r| r.index);
                rs.dedup_by_key(|r| r.index);
                if rs.is_empty() || rs.iter().any(|r| r.index as usize >= current.len()) {
                    return Err(SampleError::Failed {
                        operator: name.into(),
                        error: OperatorError::Host(format!(
                            "the operator reported bad records inconsistently ({} rejection(s) for {} record(s))",
                            rs.len(),
                            current.len()
                        )),
                    });
                }
                let mut drop = Vec::new();
                for r in rs {
                    if let Some(&o) = origin.get(r.index as usize) {
                        rejected.push((o, r.reason));
                        drop.push(r.index);
                    }
                }
                current = batch::without(&current, &drop);
                let mut keep = vec![true; origin.len()];
                for d in drop {
                    keep[d as usize] = false;
                }
                origin = origin
                    .into_iter()
                    .zip(keep)
                    .filter(|(_, k)| *k)
                    .map(|(o, _)| o)
                    .collect();
            }
            Err(OperatorError::Trap(reason)) => {
                let index = find_trapping_record(&mut op, &input);
                return Err(SampleError::Trap {
                    operator: name.into(),
                    value: index.and_then(|i| input.get(i)).map(|r| preview(r.value)),
                    index,
                    reason,
                });
            }
            Err(error) => {
                return Err(SampleError::Failed {
                    operator: name.into(),
                    error,
                });
            }
        }
    }
    Err(SampleError::Failed {
        operator: name.into(),
        error: OperatorError::Host(
            "the operator kept rejecting records it had not been given before".into(),
        ),
    })
}

/// Runs the records one at a time (a trapped instance is re-created each
/// time) and returns the index of the first that traps by itself.
fn find_trapping_record(op: &mut dyn Operator, input: &Batch) -> Option<usize> {
    for r in input.iter() {
        let mut one = Batch::new();
        one.push_record(r);
        if let Err(OperatorError::Trap(_)) = op.process(&mut one) {
            return Some(r.index as usize);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn reads_lines_and_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        let b = read_sample(&write(dir.path(), "s.txt", "a\n\nb\n"), SampleFormat::Lines).unwrap();
        assert_eq!(
            b.iter().map(|r| r.value).collect::<Vec<_>>(),
            [b"a" as &[u8], b"", b"b"]
        );
        let p = write(
            dir.path(),
            "s.jsonl",
            "{\"value\":\"v\",\"key\":\"k\",\"timestamp\":5}\n{\"value\":\"w\"}\n",
        );
        assert_eq!(SampleFormat::for_path(&p), SampleFormat::Jsonl);
        let b = read_sample(&p, SampleFormat::Jsonl).unwrap();
        assert_eq!(b.get(0).unwrap().key, Some(&b"k"[..]));
        assert_eq!(b.get(0).unwrap().timestamp, 5);
        assert_eq!(b.get(1).unwrap().key, None);
    }

    #[test]
    fn wrong_format_names_line_and_shape() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "s.jsonl", "{\"value\":\"ok\"}\nplain text\n");
        let err = read_sample(&p, SampleFormat::Jsonl)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("s.jsonl:2: not JSON") && err.contains("only \"value\" is required"),
            "{err}"
        );
        let p = write(dir.path(), "t.jsonl", "{\"val\":\"x\"}\n");
        let err = read_sample(&p, SampleFormat::Jsonl)
            .unwrap_err()
            .to_string();
        assert!(err.contains("t.jsonl:1: unknown field \"val\""), "{err}");
    }
}
