//! The columnar batch and the per-record views over it.

use crate::{Error, RecordError};

/// A micro-batch in the contract's columnar layout (see `wit/operator.wit`).
///
/// Fields are public so that whole-batch operators can work on the buffers
/// directly; [`Batch::iter`] and [`Batch::push`] are the convenient way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    /// Key bytes of all records, concatenated.
    pub keys: Vec<u8>,
    /// End offset of each record's key in `keys`.
    pub key_ends: Vec<u32>,
    /// Per record, 0 when its key is absent; empty when no record has a key.
    pub key_present: Vec<u8>,
    /// Value bytes of all records, concatenated.
    pub values: Vec<u8>,
    /// End offset of each record's value in `values`; defines the record count.
    pub value_ends: Vec<u32>,
    /// Event time of each record, milliseconds since the Unix epoch.
    pub timestamps: Vec<i64>,
}

/// A read-only view of one record of a [`Batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Position of the record in its input batch.
    pub index: u32,
    /// The key, or `None` when the record has none (distinct from an empty key).
    pub key: Option<&'a [u8]>,
    /// The value bytes.
    pub value: &'a [u8],
    /// Event time, milliseconds since the Unix epoch.
    pub timestamp: i64,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of records.
    #[inline]
    pub fn len(&self) -> usize {
        self.value_ends.len()
    }

    /// Whether the batch has no records.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.value_ends.is_empty()
    }

    /// Builds a batch of unkeyed records from values, all at `timestamp`.
    pub fn from_values<I, V>(values: I, timestamp: i64) -> Self
    where
        I: IntoIterator<Item = V>,
        V: AsRef<[u8]>,
    {
        let mut b = Batch::new();
        for v in values {
            b.push(None, v.as_ref(), timestamp);
        }
        b
    }

    /// Record `i`, or `None` past the end.
    #[inline]
    pub fn get(&self, i: usize) -> Option<Record<'_>> {
        let end = *self.value_ends.get(i)? as usize;
        let start = if i == 0 {
            0
        } else {
            self.value_ends[i - 1] as usize
        };
        let has_key = self.key_present.get(i).is_some_and(|p| *p != 0);
        let key = if has_key {
            let kend = self.key_ends[i] as usize;
            let kstart = if i == 0 {
                0
            } else {
                self.key_ends[i - 1] as usize
            };
            Some(&self.keys[kstart..kend])
        } else {
            None
        };
        Some(Record {
            index: i as u32,
            key,
            value: &self.values[start..end],
            timestamp: self.timestamps[i],
        })
    }

    /// The records in order.
    #[inline]
    pub fn iter(&self) -> impl Iterator<Item = Record<'_>> + '_ {
        // Walk the offset arrays once instead of recomputing starts per record.
        let mut vstart = 0usize;
        let mut kstart = 0usize;
        let keyed = !self.key_present.is_empty();
        (0..self.len()).map(move |i| {
            let vend = self.value_ends[i] as usize;
            let value = &self.values[vstart..vend];
            vstart = vend;
            let key = if keyed {
                let kend = self.key_ends[i] as usize;
                let k = &self.keys[kstart..kend];
                kstart = kend;
                (self.key_present[i] != 0).then_some(k)
            } else {
                None
            };
            Record {
                index: i as u32,
                key,
                value,
                timestamp: self.timestamps[i],
            }
        })
    }

    /// Appends a record.
    #[inline]
    pub fn push(&mut self, key: Option<&[u8]>, value: &[u8], timestamp: i64) {
        self.push_with(key, timestamp, |v| v.extend_from_slice(value));
    }

    /// Appends a record whose value is written by `write` straight into the
    /// value buffer, avoiding a temporary allocation.
    #[inline]
    pub fn push_with(
        &mut self,
        key: Option<&[u8]>,
        timestamp: i64,
        write: impl FnOnce(&mut Vec<u8>),
    ) {
        self.push_key(key);
        write(&mut self.values);
        self.value_ends.push(end_offset(self.values.len()));
        self.timestamps.push(timestamp);
    }

    #[inline]
    fn push_key(&mut self, key: Option<&[u8]>) {
        match key {
            Some(k) => {
                // First keyed record: materialise "absent" for the records before it.
                let n = self.value_ends.len();
                self.key_present.resize(n, 0);
                self.keys.extend_from_slice(k);
                self.key_present.push(1);
            }
            None if !self.key_present.is_empty() => self.key_present.push(0),
            None => {}
        }
        self.key_ends.push(end_offset(self.keys.len()));
    }

    /// Checks the layout rules of the contract.
    pub fn validate(&self) -> Result<(), String> {
        let n = self.len();
        if self.key_ends.len() != n {
            return Err(format!(
                "key-ends has {} entries for {n} records",
                self.key_ends.len()
            ));
        }
        if !self.key_present.is_empty() && self.key_present.len() != n {
            return Err(format!(
                "key-present has {} entries for {n} records",
                self.key_present.len()
            ));
        }
        if self.timestamps.len() != n {
            return Err(format!(
                "timestamps has {} entries for {n} records",
                self.timestamps.len()
            ));
        }
        check_ends("value-ends", &self.value_ends, self.values.len())?;
        check_ends("key-ends", &self.key_ends, self.keys.len())?;
        // An absent key has an empty span, so readers that ignore
        // `key-present` still see no key bytes for it.
        let mut start = 0;
        for (i, &end) in self.key_ends.iter().enumerate() {
            let present = self.key_present.get(i).is_some_and(|p| *p != 0);
            if !present && end != start {
                return Err(format!(
                    "record {i} has no key but a key span of {} byte(s)",
                    end - start
                ));
            }
            start = end;
        }
        Ok(())
    }
}

pub(crate) fn check_ends(name: &str, ends: &[u32], data_len: usize) -> Result<(), String> {
    let mut prev = 0u32;
    for (i, &e) in ends.iter().enumerate() {
        if e < prev {
            return Err(format!(
                "{name}[{i}] = {e} is below the previous end {prev}"
            ));
        }
        prev = e;
    }
    if prev as usize != data_len {
        return Err(format!(
            "{name} ends at {prev} but its buffer has {data_len} bytes"
        ));
    }
    Ok(())
}

#[inline]
fn end_offset(len: usize) -> u32 {
    // A partition batch is far below 4 GiB; the host bounds batch sizes.
    u32::try_from(len).expect("batch buffer larger than 4 GiB")
}

/// Where an operator writes its output records and its rejections.
#[derive(Debug, Default)]
pub struct Output {
    /// The output batch being built. Whole-batch operators may fill it directly.
    pub batch: Batch,
    rejected: Vec<RecordError>,
}

impl Output {
    /// An empty output with buffers sized after `input`.
    pub fn with_capacity_for(input: &Batch) -> Self {
        let batch = Batch {
            keys: Vec::with_capacity(input.keys.len()),
            key_ends: Vec::with_capacity(input.len()),
            key_present: Vec::with_capacity(input.key_present.len()),
            values: Vec::with_capacity(input.values.len()),
            value_ends: Vec::with_capacity(input.len()),
            timestamps: Vec::with_capacity(input.len()),
        };
        Output {
            batch,
            rejected: Vec::new(),
        }
    }

    /// Emits a record.
    #[inline]
    pub fn emit(&mut self, key: Option<&[u8]>, value: &[u8], timestamp: i64) {
        self.batch.push(key, value, timestamp);
    }

    /// Emits a record whose value `write` appends to the given buffer.
    #[inline]
    pub fn emit_with(
        &mut self,
        key: Option<&[u8]>,
        timestamp: i64,
        write: impl FnOnce(&mut Vec<u8>),
    ) {
        self.batch.push_with(key, timestamp, write);
    }

    /// Emits `record` unchanged (a filter keeping it).
    #[inline]
    pub fn forward(&mut self, record: Record<'_>) {
        self.batch.push(record.key, record.value, record.timestamp);
    }

    /// Rejects input record `index` with `reason`.
    pub fn reject(&mut self, index: u32, reason: impl Into<String>) {
        self.rejected.push(RecordError {
            index,
            reason: reason.into(),
        });
    }

    /// The output batch, or the rejections when there are any.
    pub fn finish(self) -> Result<Batch, Error> {
        if self.rejected.is_empty() {
            Ok(self.batch)
        } else {
            Err(Error::BadRecords(self.rejected))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_and_empty_keys_stay_distinct() {
        let mut b = Batch::new();
        b.push(None, b"a", 1);
        b.push(Some(b""), b"b", 2);
        b.push(Some(b"k"), b"c", 3);
        b.push(None, b"d", 4);
        b.validate().unwrap();
        let keys: Vec<_> = b.iter().map(|r| r.key).collect();
        assert_eq!(keys, [None, Some(&b""[..]), Some(&b"k"[..]), None]);
        assert_eq!(b.get(2).unwrap().value, b"c");
        assert_eq!(b.get(3).unwrap().timestamp, 4);
    }

    #[test]
    fn unkeyed_batch_has_no_presence_bytes() {
        let b = Batch::from_values(["x", "yz"], 0);
        b.validate().unwrap();
        assert!(b.key_present.is_empty());
        assert_eq!(b.key_ends, [0, 0]);
        assert_eq!(
            b.iter().map(|r| r.value).collect::<Vec<_>>(),
            [b"x" as &[u8], b"yz"]
        );
    }

    #[test]
    fn validate_catches_key_bytes_without_key() {
        let mut b = Batch::from_values(["a"], 0);
        b.keys = b"k".to_vec();
        b.key_ends = vec![1];
        assert!(b.validate().unwrap_err().contains("no key but a key span"));
    }

    #[test]
    fn validate_catches_broken_offsets() {
        let mut b = Batch::from_values(["abc"], 0);
        b.value_ends[0] = 5;
        assert!(b.validate().unwrap_err().contains("value-ends"));
    }
}
