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
        if input.key_present.is_empty() {
            return input.clone(); // no keys: nothing to combine
        }
        // Each group is one output record (key, 8-byte count, latest
        // timestamp). The table holds the group's key inline as two words
        // (which identify keys of up to 16 bytes exactly), its running count
        // and timestamp, so a repeated word costs one probe that touches one
        // entry; the counts are written into the output once, at the end.
        let mut groups: hashbrown::HashTable<Group> = hashbrown::HashTable::new();
        let mut out = Batch::new();
        let (mut kstart, mut vstart) = (0usize, 0usize);
        for i in 0..input.len() {
            let (kend, vend) = (input.key_ends[i] as usize, input.value_ends[i] as usize);
            let ts = input.timestamps[i];
            if input.key_present[i] == 0 {
                out.push(None, &input.values[vstart..vend], ts);
            } else {
                let key = &input.keys[kstart..kend];
                let (a, b) = key_words(&input.keys, kstart, key.len());
                let hash = group_hash(a, b, key.len());
                let same = |g: &Group| {
                    g.a == a
                        && g.b == b
                        && g.len as usize == key.len()
                        && (key.len() <= INLINE
                            || out.get(g.record as usize).and_then(|r| r.key) == Some(key))
                };
                match groups.find_mut(hash, same) {
                    Some(g) => {
                        g.count += 1;
                        g.timestamp = g.timestamp.max(ts);
                    }
                    None => {
                        let record = out.len() as u32;
                        out.push(Some(key), &[0; 8], ts);
                        let group = Group {
                            a,
                            b,
                            len: key.len() as u32,
                            record,
                            count: 1,
                            timestamp: ts,
                        };
                        groups.insert_unique(hash, group, |g| group_hash(g.a, g.b, g.len as usize));
                    }
                }
            }
            (kstart, vstart) = (kend, vend);
        }
        for g in groups {
            let r = g.record as usize;
            let end = out.value_ends[r] as usize;
            out.values[end - 8..end].copy_from_slice(&g.count.to_le_bytes());
            out.timestamps[r] = g.timestamp;
        }
        out
    }
}

/// Keys up to this many bytes are identified by their two words alone.
const INLINE: usize = 16;

/// One key's group in [`CountCombiner`]'s table.
struct Group {
    /// The key's first 16 bytes as two words (see [`key_words`]).
    a: u64,
    b: u64,
    len: u32,
    /// The group's record in the output.
    record: u32,
    count: u64,
    timestamp: i64,
}

/// The first 16 bytes of the `len`-byte key at `at` in `keys`, as two
/// little-endian words with the bytes past the key zeroed: with the length,
/// equal words mean equal keys of up to [`INLINE`] bytes.
#[inline]
fn key_words(keys: &[u8], at: usize, len: usize) -> (u64, u64) {
    (
        word(keys, at, len.min(8)),
        word(keys, at + 8, len.saturating_sub(8).min(8)),
    )
}

/// The `n` (at most 8) bytes at `at` as a little-endian word, loaded as one
/// 8-byte read where the buffer has room for it.
#[inline]
fn word(bytes: &[u8], at: usize, n: usize) -> u64 {
    if let Some(w) = bytes.get(at..at + 8) {
        let w = u64::from_le_bytes(w.try_into().expect("8 bytes"));
        let mask = if n >= 8 {
            u64::MAX
        } else {
            (1u64 << (8 * n)) - 1
        };
        w & mask
    } else {
        let mut w = [0u8; 8];
        // Near the end (`at` may lie past it when `n` is 0).
        w[..n].copy_from_slice(&bytes.get(at..).unwrap_or_default()[..n]);
        u64::from_le_bytes(w)
    }
}

/// A hash of a key from its two words and length: one folded 64x64-bit
/// multiply, which mixes every input bit into both the high bits (the
/// table's tags) and the low bits (its bucket index).
#[inline]
fn group_hash(a: u64, b: u64, len: usize) -> u64 {
    const K1: u64 = 0x243f_6a88_85a3_08d3;
    const K2: u64 = 0x1319_8a2e_0370_7344;
    let p = u128::from(a ^ K1) * u128::from(b ^ K2 ^ ((len as u64) << 57));
    (p as u64) ^ ((p >> 64) as u64)
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

    /// Keys of every length from 0 to 40 bytes that differ only in a late
    /// byte or in length, zero bytes (the table's padding) included.
    fn key(n: usize, variant: u8) -> Vec<u8> {
        let mut k = vec![0u8; n];
        for (i, b) in k.iter_mut().enumerate() {
            *b = if i % 3 == 0 { 0 } else { b'a' + (i % 26) as u8 };
        }
        if let Some(last) = k.last_mut() {
            *last = variant;
        }
        k
    }

    proptest::proptest! {
        #[test]
        fn combine_counts_like_a_plain_map(
            picks in proptest::collection::vec((0usize..41, 0u8..3, -50i64..50, 0u8..8), 0..400),
        ) {
            let mut input = Batch::new();
            for &(n, variant, ts, die) in &picks {
                let k = key(n, variant);
                // One record in 8 has no key (its value is the key bytes).
                input.push((die != 0).then_some(&k[..]), &k, ts);
            }
            // The reference: records in first-seen order, each key's group
            // with its number of records and latest timestamp.
            let mut want: Vec<(Option<Vec<u8>>, Vec<u8>, i64)> = Vec::new();
            let mut group_of = std::collections::HashMap::new();
            for r in input.iter() {
                match r.key {
                    None => want.push((None, r.value.to_vec(), r.timestamp)),
                    Some(k) => match group_of.get(k) {
                        Some(&g) => {
                            let w: &mut (Option<Vec<u8>>, Vec<u8>, i64) = &mut want[g];
                            let n = u64::from_le_bytes(w.1[..].try_into().unwrap()) + 1;
                            w.1 = n.to_le_bytes().to_vec();
                            w.2 = w.2.max(r.timestamp);
                        }
                        None => {
                            group_of.insert(k.to_vec(), want.len());
                            want.push((Some(k.to_vec()), 1u64.to_le_bytes().to_vec(), r.timestamp));
                        }
                    },
                }
            }
            let out = CountCombiner.combine(&input);
            out.validate().unwrap();
            let got: Vec<_> = out
                .iter()
                .map(|r| (r.key.map(<[u8]>::to_vec), r.value.to_vec(), r.timestamp))
                .collect();
            proptest::prop_assert_eq!(got, want);
        }
    }

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
