//! The exchange: moves records to the partition that owns their key before a
//! keyed stage, after the keyed operator's map-side combiner, keeping the
//! order of records from each input partition.

use crate::model::batch::{self, Batch};
use crate::operators::Combiner;
use std::sync::Arc;

/// Moves every record of `stream` to the partition that owns its key,
/// keeping the order of records from each input partition (see
/// [`split_for_exchange`]).
pub(super) fn exchange(parts: Vec<Batch>, n: usize, stream: usize, how: &Exchange) -> Vec<Batch> {
    let mut out = vec![Batch::new(); n];
    for p in &parts {
        for (t, part) in split_for_exchange(p, n, stream, how).iter().enumerate() {
            batch::append(&mut out[t], part);
        }
    }
    out
}

/// How a stage's output is prepared for the exchange into a keyed stage.
pub(crate) struct Split {
    /// Partitions of the next stage.
    pub partitions: usize,
    /// How the next stage takes records.
    pub exchange: Exchange,
}

/// How records enter a keyed stage.
#[derive(Clone, Default)]
pub(crate) struct Exchange {
    /// The keyed operator's map-side combiner.
    pub(super) combine: Option<Combine>,
    /// Records without a key all go to partition 0 (else by value).
    pub(super) unkeyed_together: bool,
}

/// A keyed operator's combiner and the streams it applies to.
#[derive(Clone)]
pub(crate) struct Combine {
    pub(super) accepts: Option<Vec<usize>>,
    pub(super) combiner: Arc<dyn Combiner>,
}

impl Combine {
    pub(crate) fn applies_to(&self, stream: usize) -> bool {
        self.accepts.as_ref().is_none_or(|a| a.contains(&stream))
    }
}

/// Combines `batch` (of `stream`) when the combiner applies to the stream,
/// then splits it by key into `n` partitions.
pub(crate) fn split_for_exchange(
    batch: &Batch,
    n: usize,
    stream: usize,
    how: &Exchange,
) -> Vec<Batch> {
    match how.combine.as_ref().filter(|c| c.applies_to(stream)) {
        Some(c) => batch::split_by_key(&c.combiner.combine(batch), n, how.unkeyed_together),
        None => batch::split_by_key(batch, n, how.unkeyed_together),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::partition;
    use proptest::prelude::*;

    proptest! {
        /// The exchange loses nothing, puts each key in exactly one partition
        /// and keeps the relative order of records from the same input partition.
        #[test]
        fn exchange_partitions_by_key(records in proptest::collection::vec((0u8..20, 0usize..3), 0..200), n in 1usize..6) {
            let mut parts = vec![Batch::new(); 3];
            for (i, (k, p)) in records.iter().enumerate() {
                parts[*p].push(Some(&[*k]), &(i as u32).to_le_bytes(), i as i64);
                // Headers on some records: each must arrive with its record.
                for _ in 0..i % 3 {
                    parts[*p].push_header(b"i", Some(&(i as u32).to_le_bytes()));
                }
            }
            let out = exchange(parts.clone(), n, 0, &Exchange::default());
            prop_assert_eq!(out.iter().map(Batch::len).sum::<usize>(), records.len());
            for (p, b) in out.iter().enumerate() {
                prop_assert_eq!(b.validate(), Ok(()));
                let mut last_seen = [-1i64; 3];
                for r in b.iter() {
                    let i = r.timestamp as u32;
                    prop_assert_eq!(r.headers.len(), i as usize % 3);
                    prop_assert!(r.headers.iter().all(|h| h.value == Some(&i.to_le_bytes()[..])));
                    prop_assert_eq!(partition::for_key(r.key.unwrap(), n as u32) as usize, p);
                    let src = records[r.timestamp as usize].1;
                    prop_assert!(r.timestamp > last_seen[src]);
                    last_seen[src] = r.timestamp;
                }
            }
        }
    }
}
