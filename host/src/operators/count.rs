//! The built-in `count` and its map-side combiner.

use crate::model::batch::Batch;
use crate::operators::{Combiner, Operator, OperatorError, OperatorFactory};
use std::sync::Arc;

/// Counts records per key: each keyed record of the output stands for
/// [`partial_count`] records of that key, timestamped with the latest of
/// them. Records without a key pass unchanged (they count as one each), so
/// the exchange routes every record as it would have without combining.
#[derive(Debug, Clone, Copy, Default)]
pub struct CountCombiner;

impl Combiner for CountCombiner {
    fn combine(&self, input: &Batch) -> Batch {
        use std::hash::BuildHasher;
        if input.key_present.is_empty() {
            return input.clone(); // no keys: nothing to combine
        }
        // The output doubles as the table's key store: each group is one
        // output record (key, 8-byte count, latest timestamp), found through
        // a table of record indices. Comparing against this compact copy of
        // the distinct keys stays in cache, where the first occurrences in
        // the input would be scattered over the whole batch.
        let hasher = rustc_hash::FxBuildHasher;
        let mut groups: hashbrown::HashTable<u32> = hashbrown::HashTable::new();
        let mut out = Batch::new();
        let key_of = |out: &Batch, i: u32| -> std::ops::Range<usize> {
            let i = i as usize;
            let start = if i == 0 {
                0
            } else {
                out.key_ends[i - 1] as usize
            };
            start..out.key_ends[i] as usize
        };
        let (mut kstart, mut vstart) = (0usize, 0usize);
        for i in 0..input.len() {
            let (kend, vend) = (input.key_ends[i] as usize, input.value_ends[i] as usize);
            let ts = input.timestamps[i];
            if input.key_present[i] == 0 {
                out.push(None, &input.values[vstart..vend], ts);
            } else {
                let key = &input.keys[kstart..kend];
                let hash = hasher.hash_one(key);
                let found = groups
                    .find(hash, |&g| same_bytes(&out.keys[key_of(&out, g)], key))
                    .copied();
                match found {
                    Some(g) => {
                        let g = g as usize;
                        let end = out.value_ends[g] as usize;
                        let count = &mut out.values[end - 8..end];
                        let n = u64::from_le_bytes(count.try_into().expect("8 bytes")) + 1;
                        count.copy_from_slice(&n.to_le_bytes());
                        out.timestamps[g] = out.timestamps[g].max(ts);
                    }
                    None => {
                        let g = out.len() as u32;
                        groups.insert_unique(hash, g, |&h| {
                            hasher.hash_one(&out.keys[key_of(&out, h)])
                        });
                        out.push(Some(key), &1u64.to_le_bytes(), ts);
                    }
                }
            }
            (kstart, vstart) = (kend, vend);
        }
        out
    }
}

/// Slice equality for short keys, without a call to `memcmp` (which costs
/// more than comparing a word of a few bytes).
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// The number of records a record from [`CountCombiner`] stands for.
pub fn partial_count(key: Option<&[u8]>, value: &[u8]) -> u64 {
    match (key, <[u8; 8]>::try_from(value)) {
        (Some(_), Ok(n)) => u64::from_le_bytes(n),
        _ => 1,
    }
}

/// The built-in `count`: the number of records per key in each micro-batch
/// (Spark's `reduceByKey(_ + _)` on `(key, 1)` pairs). Records without a key
/// are counted under their value. Emits one record per key: the key, and the
/// count as decimal text, timestamped with the latest input timestamp.
#[derive(Debug, Clone)]
pub struct Count {
    name: String,
}

impl Count {
    /// A `count` operator called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Count { name: name.into() }
    }
}

impl OperatorFactory for Count {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "count"
    }
    fn keyed(&self) -> bool {
        true
    }
    fn combiner(&self) -> Option<Arc<dyn Combiner>> {
        Some(Arc::new(CountCombiner))
    }
    fn instantiate(&self, _job: &str, _worker: usize) -> Result<Box<dyn Operator>, OperatorError> {
        Ok(Box::new(CountInstance::default()))
    }
}

#[derive(Default)]
struct CountInstance {
    counts: hashbrown::HashMap<Vec<u8>, (u64, i64, usize), rustc_hash::FxBuildHasher>,
}

impl Operator for CountInstance {
    fn process(&mut self, input: &mut Batch) -> Result<Batch, OperatorError> {
        self.counts.clear();
        let mut order = 0;
        // Input comes from `CountCombiner`: keyed records carry counts.
        for r in input.iter() {
            let k = r.key.unwrap_or(r.value);
            let e = self.counts.entry_ref(k).or_insert_with(|| {
                order += 1;
                (0, r.timestamp, order)
            });
            e.0 += partial_count(r.key, r.value);
            e.1 = e.1.max(r.timestamp);
        }
        // Emit in first-seen order so output is deterministic.
        let mut rows: Vec<_> = self.counts.iter().collect();
        rows.sort_unstable_by_key(|(_, (_, _, o))| *o);
        let mut out = Batch::new();
        for (k, (n, ts, _)) in rows {
            out.push(Some(k), n.to_string().as_bytes(), *ts);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_groups_by_key_then_value() {
        let mut b = Batch::new();
        b.push(Some(b"a"), b"x", 1);
        b.push(Some(b"b"), b"x", 5);
        b.push(Some(b"a"), b"y", 3);
        b.push(None, b"a", 2);
        let mut b = CountCombiner.combine(&b);
        assert_eq!(b.len(), 3, "two keyed groups and the unkeyed record");
        let out = Count::new("count")
            .instantiate("j", 0)
            .unwrap()
            .process(&mut b)
            .unwrap();
        let rows: Vec<_> = out
            .iter()
            .map(|r| (r.key.unwrap(), r.value, r.timestamp))
            .collect();
        assert_eq!(rows, [(&b"a"[..], &b"3"[..], 3), (b"b", b"1", 5)]);
    }
}
