//! Where a source is in its input: what a checkpoint records after each
//! micro-batch and what a resumed source starts from.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::Arc;

/// A source's position: the records before it have been taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Position {
    /// A file: the byte `offset` of a line start, then `skip` lines after it.
    File {
        /// Byte offset of the start of a line.
        offset: u64,
        /// Lines from `offset` already taken.
        skip: u64,
    },
    /// A directory: the files read to their end, and the one being read.
    Directory {
        /// Names of the files read to their end.
        done: Arc<BTreeSet<String>>,
        /// The file being read, and where in it.
        current: Option<(String, u64, u64)>,
    },
    /// The generator: the number of the next record.
    Generator {
        /// The next record's number.
        next: u64,
    },
    /// A Kafka source: per topic and partition, the offset of the next record.
    Kafka {
        /// `(topic, partition, next offset)`.
        offsets: Vec<(String, i32, i64)>,
    },
}

impl Position {
    /// The position `n` records after `self` within the same chunk of lines
    /// (a chunk never spans two files, nor a gap in the generator's sequence).
    pub fn advanced(&self, n: u64) -> Position {
        match self {
            Position::File { offset, skip } => Position::File {
                offset: *offset,
                skip: skip + n,
            },
            Position::Directory { done, current } => Position::Directory {
                done: done.clone(),
                current: current
                    .as_ref()
                    .map(|(name, offset, skip)| (name.clone(), *offset, skip + n)),
            },
            Position::Generator { next } => Position::Generator { next: next + n },
            Position::Kafka { .. } => self.clone(),
        }
    }

    /// `self` updated by the offsets of `later` (Kafka positions of partitions
    /// absent from `later` stay as they were).
    pub fn merged(self, later: Position) -> Position {
        match (self, later) {
            (Position::Kafka { offsets: mut old }, Position::Kafka { offsets: new }) => {
                for (topic, partition, next) in new {
                    match old
                        .iter_mut()
                        .find(|(t, p, _)| *t == topic && *p == partition)
                    {
                        Some(o) => o.2 = o.2.max(next),
                        None => old.push((topic, partition, next)),
                    }
                }
                old.sort();
                Position::Kafka { offsets: old }
            }
            (_, later) => later,
        }
    }
}

/// Where a chunk of records starts: the position before its first record.
/// The position after its first `n` records is `start.advanced(n)`; after all
/// of them, `end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// The position before the chunk's first record.
    pub start: Position,
    /// The position after its last record.
    pub end: Position,
}

impl Span {
    /// The position after the first `n` of the chunk's `len` records.
    pub fn after(&self, n: usize, len: usize) -> Position {
        if n >= len {
            self.end.clone()
        } else {
            self.start.advanced(n as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_advance_within_a_chunk_and_kafka_offsets_merge() {
        let span = Span {
            start: Position::File {
                offset: 10,
                skip: 0,
            },
            end: Position::File {
                offset: 40,
                skip: 0,
            },
        };
        assert_eq!(
            span.after(2, 5),
            Position::File {
                offset: 10,
                skip: 2
            }
        );
        assert_eq!(
            span.after(5, 5),
            Position::File {
                offset: 40,
                skip: 0
            }
        );
        let a = Position::Kafka {
            offsets: vec![("t".into(), 0, 5), ("t".into(), 1, 7)],
        };
        let b = Position::Kafka {
            offsets: vec![("t".into(), 1, 9), ("u".into(), 0, 1)],
        };
        assert_eq!(
            a.merged(b),
            Position::Kafka {
                offsets: vec![("t".into(), 0, 5), ("t".into(), 1, 9), ("u".into(), 0, 1)]
            }
        );
    }
}
