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
    /// End of each record's headers among the header entries; empty when no
    /// record has headers (then every `header_*` buffer is empty too). The
    /// `header_*` fields are the lists of the contract's `record-headers`
    /// (`ends`, `keys`, ...), which crosses the boundary only when some
    /// record has headers.
    pub header_ends: Vec<u32>,
    /// Key bytes of all header entries, concatenated (UTF-8 text).
    pub header_keys: Vec<u8>,
    /// End offset of each header entry's key in `header_keys`.
    pub header_key_ends: Vec<u32>,
    /// Value bytes of all header entries, concatenated.
    pub header_values: Vec<u8>,
    /// End offset of each header entry's value in `header_values`.
    pub header_value_ends: Vec<u32>,
    /// Per header entry, 0 when its value is null; empty when no header
    /// value is null.
    pub header_value_present: Vec<u8>,
}

/// Appends `s` to `v`, keys and values being often a few bytes long: a
/// `memcpy` of a few bytes is a call (in Wasm, `memory.copy` leaves the
/// compiled code for a runtime routine), so up to 16 bytes are copied as two
/// overlapping words of 8, 4 or 1 byte instead.
#[inline(always)]
fn extend_short(v: &mut Vec<u8>, s: &[u8]) {
    let (at, n) = (v.len(), s.len());
    if n == 0 || n > 16 {
        return v.extend_from_slice(s);
    }
    v.reserve(n);
    // SAFETY: `reserve` made room for `n` bytes past `at`; every store below
    // lies in `at..at + n` (the second word ends at `at + n`, the first starts
    // at `at`, and each is no longer than `n`), and together they write all
    // of it before the length covers it.
    unsafe {
        let d = v.as_mut_ptr().add(at);
        if n >= 8 {
            d.cast::<[u8; 8]>().write_unaligned(head(s));
            d.add(n - 8)
                .cast::<[u8; 8]>()
                .write_unaligned(head(&s[n - 8..]));
        } else if n >= 4 {
            d.cast::<[u8; 4]>().write_unaligned(head(s));
            d.add(n - 4)
                .cast::<[u8; 4]>()
                .write_unaligned(head(&s[n - 4..]));
        } else {
            d.write(s[0]);
            d.add(n / 2).write(s[n / 2]);
            d.add(n - 1).write(s[n - 1]);
        }
        v.set_len(at + n);
    }
}

/// The first `N` bytes of `s`, which has at least `N`.
#[inline]
fn head<const N: usize>(s: &[u8]) -> [u8; N] {
    s[..N].try_into().expect("N bytes")
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
    /// The record's headers (Kafka record headers), in order; usually none.
    pub headers: Headers<'a>,
}

/// One header of a record: a key and a value that may be null.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// The header's key (UTF-8 text, as Kafka's header keys are).
    pub key: &'a [u8],
    /// The header's value, or `None` when it is null (distinct from an
    /// empty value).
    pub value: Option<&'a [u8]>,
}

/// The headers of one record of a [`Batch`]: a view over the batch's header
/// columns.
///
/// ```
/// use sluice_sdk::{Batch, Header};
///
/// let mut b = Batch::new();
/// b.push(None, b"payload", 0);
/// b.push_header(b"trace", Some(b"abc"));
/// b.push_header(b"tombstone", None);
/// let r = b.get(0).unwrap();
/// assert_eq!(r.headers.len(), 2);
/// assert_eq!(r.headers.last(b"trace"), Some(Some(&b"abc"[..])));
/// let keys: Vec<&[u8]> = r.headers.iter().map(|h: Header<'_>| h.key).collect();
/// assert_eq!(keys, [&b"trace"[..], b"tombstone"]);
/// ```
#[derive(Clone, Copy)]
pub struct Headers<'a> {
    batch: Option<&'a Batch>,
    /// Entries `start..end` of the batch's header entries.
    start: u32,
    end: u32,
}

impl<'a> Headers<'a> {
    /// No headers.
    pub const NONE: Headers<'static> = Headers {
        batch: None,
        start: 0,
        end: 0,
    };

    /// Number of headers.
    #[inline]
    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    /// Whether there are none.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// The headers in order.
    #[inline]
    pub fn iter(&self) -> HeaderIter<'a> {
        HeaderIter {
            batch: self.batch,
            next: self.start,
            end: self.end,
        }
    }

    /// The value of the last header with key `key` (Kafka's `lastHeader`):
    /// `None` when there is none, `Some(None)` when its value is null.
    pub fn last(&self, key: &[u8]) -> Option<Option<&'a [u8]>> {
        self.iter().filter(|h| h.key == key).last().map(|h| h.value)
    }
}

impl<'a> IntoIterator for Headers<'a> {
    type Item = Header<'a>;
    type IntoIter = HeaderIter<'a>;

    #[inline]
    fn into_iter(self) -> HeaderIter<'a> {
        self.iter()
    }
}

/// Iterator over a record's [`Headers`].
#[derive(Debug, Clone)]
pub struct HeaderIter<'a> {
    batch: Option<&'a Batch>,
    next: u32,
    end: u32,
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = Header<'a>;

    #[inline]
    fn next(&mut self) -> Option<Header<'a>> {
        if self.next >= self.end {
            return None;
        }
        let h = self.next as usize;
        self.next += 1;
        self.batch.map(|b| b.header_entry(h))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = (self.end - self.next) as usize;
        (n, Some(n))
    }
}

impl ExactSizeIterator for HeaderIter<'_> {}

impl PartialEq for Headers<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Headers<'_> {}

impl std::fmt::Debug for Headers<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
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
            headers: self.headers(i),
        })
    }

    /// The headers of record `i` (none past the end), without looking at
    /// the rest of the record.
    #[inline]
    pub fn headers(&self, i: usize) -> Headers<'_> {
        match self.header_ends.get(i) {
            None => Headers::NONE,
            Some(&end) => Headers {
                batch: Some(self),
                start: if i == 0 { 0 } else { self.header_ends[i - 1] },
                end,
            },
        }
    }

    /// Header entry `h` of the batch.
    #[inline]
    fn header_entry(&self, h: usize) -> Header<'_> {
        let kstart = if h == 0 {
            0
        } else {
            self.header_key_ends[h - 1] as usize
        };
        let key = &self.header_keys[kstart..self.header_key_ends[h] as usize];
        let present = self.header_value_present.get(h).is_none_or(|p| *p != 0);
        let value = present.then(|| {
            let vstart = if h == 0 {
                0
            } else {
                self.header_value_ends[h - 1] as usize
            };
            &self.header_values[vstart..self.header_value_ends[h] as usize]
        });
        Header { key, value }
    }

    /// Whether some record of the batch may have headers (the header
    /// columns are in use).
    #[inline]
    pub fn has_headers(&self) -> bool {
        !self.header_ends.is_empty()
    }

    /// Number of header entries, over all records.
    #[inline]
    pub fn header_count(&self) -> usize {
        self.header_key_ends.len()
    }

    /// The records in order.
    #[inline]
    pub fn iter(&self) -> impl Iterator<Item = Record<'_>> + '_ {
        // Walk the offset arrays once instead of recomputing starts per record.
        let mut vstart = 0usize;
        let mut kstart = 0usize;
        let keyed = !self.key_present.is_empty();
        let headed = self.has_headers();
        let mut hstart = 0u32;
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
            let headers = if headed {
                let end = self.header_ends[i];
                let h = Headers {
                    batch: Some(self),
                    start: hstart,
                    end,
                };
                hstart = end;
                h
            } else {
                Headers::NONE
            };
            Record {
                index: i as u32,
                key,
                value,
                timestamp: self.timestamps[i],
                headers,
            }
        })
    }

    /// Appends a record without headers.
    #[inline]
    pub fn push(&mut self, key: Option<&[u8]>, value: &[u8], timestamp: i64) {
        self.push_with(key, timestamp, |v| extend_short(v, value));
    }

    /// Appends a record with `headers`.
    ///
    /// ```
    /// use sluice_sdk::{Batch, Header};
    ///
    /// let mut b = Batch::new();
    /// let headers = [Header { key: b"source", value: Some(b"web") }];
    /// b.push_with_headers(Some(b"k"), b"v", 1, headers);
    /// b.push(None, b"plain", 2);
    /// assert_eq!(b.get(0).unwrap().headers.iter().collect::<Vec<_>>(), headers);
    /// assert!(b.get(1).unwrap().headers.is_empty());
    /// ```
    pub fn push_with_headers<'h>(
        &mut self,
        key: Option<&[u8]>,
        value: &[u8],
        timestamp: i64,
        headers: impl IntoIterator<Item = Header<'h>>,
    ) {
        self.push(key, value, timestamp);
        for h in headers {
            self.push_header(h.key, h.value);
        }
    }

    /// Appends a copy of `record`, headers included (from this batch or
    /// another).
    #[inline]
    pub fn push_record(&mut self, record: Record<'_>) {
        self.push(record.key, record.value, record.timestamp);
        for h in record.headers {
            self.push_header(h.key, h.value);
        }
    }

    /// Adds a header to the last record pushed; `value` `None` is a null
    /// value. The key SHOULD be UTF-8 text: the host refuses an output batch
    /// with a header key that is not.
    ///
    /// # Panics
    ///
    /// When the batch has no record yet.
    pub fn push_header(&mut self, key: &[u8], value: Option<&[u8]>) {
        let n = self.len();
        assert!(
            n > 0,
            "push_header on an empty batch: push the record first"
        );
        // First header of the batch: materialise "no headers" for the
        // records before this one (there are no entries yet).
        self.header_ends.resize(n, 0);
        self.header_keys.extend_from_slice(key);
        self.header_key_ends
            .push(end_offset(self.header_keys.len()));
        match value {
            Some(v) => {
                self.header_values.extend_from_slice(v);
                if !self.header_value_present.is_empty() {
                    self.header_value_present.push(1);
                }
            }
            None => {
                // First null value: materialise "present" for the entries before it.
                let entries = self.header_value_ends.len();
                self.header_value_present.resize(entries, 1);
                self.header_value_present.push(0);
            }
        }
        self.header_value_ends
            .push(end_offset(self.header_values.len()));
        self.header_ends[n - 1] = end_offset(self.header_key_ends.len());
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
        if !self.header_ends.is_empty() {
            self.header_ends
                .push(end_offset(self.header_key_ends.len()));
        }
    }

    #[inline]
    fn push_key(&mut self, key: Option<&[u8]>) {
        match key {
            Some(k) => {
                // First keyed record: materialise "absent" for the records before it.
                let n = self.value_ends.len();
                self.key_present.resize(n, 0);
                extend_short(&mut self.keys, k);
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
        self.validate_headers()
    }

    fn validate_headers(&self) -> Result<(), String> {
        let n = self.len();
        let entries = self.header_key_ends.len();
        if self.header_ends.is_empty() {
            if entries != 0 || !self.header_value_ends.is_empty() {
                return Err(format!(
                    "headers.ends is empty but there are {} header entries",
                    entries.max(self.header_value_ends.len())
                ));
            }
        } else if self.header_ends.len() != n {
            return Err(format!(
                "headers.ends has {} entries for {n} records",
                self.header_ends.len()
            ));
        }
        if self.header_value_ends.len() != entries {
            return Err(format!(
                "headers.value-ends has {} entries for {entries} header entries",
                self.header_value_ends.len()
            ));
        }
        if !self.header_value_present.is_empty() && self.header_value_present.len() != entries {
            return Err(format!(
                "headers.value-present has {} entries for {entries} header entries",
                self.header_value_present.len()
            ));
        }
        check_ends("headers.ends", &self.header_ends, entries)?;
        check_ends(
            "headers.key-ends",
            &self.header_key_ends,
            self.header_keys.len(),
        )?;
        check_ends(
            "headers.value-ends",
            &self.header_value_ends,
            self.header_values.len(),
        )?;
        let mut start = 0;
        for (h, &end) in self.header_key_ends.iter().enumerate() {
            let key = &self.header_keys[start as usize..end as usize];
            if std::str::from_utf8(key).is_err() {
                return Err(format!("header key {h} is not UTF-8 text"));
            }
            start = end;
        }
        let mut start = 0;
        for (h, &end) in self.header_value_ends.iter().enumerate() {
            let null = self.header_value_present.get(h).is_some_and(|p| *p == 0);
            if null && end != start {
                return Err(format!(
                    "header {h} has a null value but a value span of {} byte(s)",
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
            header_ends: Vec::with_capacity(input.header_ends.len()),
            header_keys: Vec::with_capacity(input.header_keys.len()),
            header_key_ends: Vec::with_capacity(input.header_key_ends.len()),
            header_values: Vec::with_capacity(input.header_values.len()),
            header_value_ends: Vec::with_capacity(input.header_value_ends.len()),
            header_value_present: Vec::with_capacity(input.header_value_present.len()),
        };
        Output {
            batch,
            rejected: Vec::new(),
        }
    }

    /// Emits a record without headers.
    #[inline]
    pub fn emit(&mut self, key: Option<&[u8]>, value: &[u8], timestamp: i64) {
        self.batch.push(key, value, timestamp);
    }

    /// Emits a record with `headers` (for example `record.headers` of the
    /// input record it comes from).
    #[inline]
    pub fn emit_with_headers<'h>(
        &mut self,
        key: Option<&[u8]>,
        value: &[u8],
        timestamp: i64,
        headers: impl IntoIterator<Item = Header<'h>>,
    ) {
        self.batch.push_with_headers(key, value, timestamp, headers);
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

    /// Emits `record` unchanged, headers included (a filter keeping it).
    #[inline]
    pub fn forward(&mut self, record: Record<'_>) {
        self.batch.push_record(record);
    }

    /// Emits `record` with a new value that `write` appends to the given
    /// buffer; its key, timestamp and headers are kept (a map of values).
    #[inline]
    pub fn forward_with(&mut self, record: Record<'_>, write: impl FnOnce(&mut Vec<u8>)) {
        self.batch.push_with(record.key, record.timestamp, write);
        for h in record.headers {
            self.batch.push_header(h.key, h.value);
        }
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
    fn short_appends_equal_plain_concatenation() {
        // Every length around the word sizes, after prefixes of every
        // alignment, against `Vec::extend_from_slice`'s result.
        let text: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
        for prefix in 0..9 {
            for n in 0..40 {
                let (mut got, mut want) = (text[..prefix].to_vec(), text[..prefix].to_vec());
                extend_short(&mut got, &text[3..3 + n]);
                want.extend_from_slice(&text[3..3 + n]);
                assert_eq!(got, want, "prefix {prefix}, length {n}");
            }
        }
    }

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

    type OwnedHeaders = Vec<(Vec<u8>, Option<Vec<u8>>)>;

    fn headers_of(r: &Record<'_>) -> OwnedHeaders {
        r.headers
            .iter()
            .map(|h| (h.key.to_vec(), h.value.map(<[u8]>::to_vec)))
            .collect()
    }

    /// Records 0 and 3 without headers, 1 with a repeated key, an empty
    /// and a null value, 2 with one header.
    fn with_headers() -> Batch {
        let mut b = Batch::new();
        b.push(None, b"a", 1);
        b.push(Some(b"k"), b"b", 2);
        b.push_header(b"h", Some(b"1"));
        b.push_header(b"h", Some(b""));
        b.push_header(b"n", None);
        b.push_with_headers(
            None,
            b"c",
            3,
            [Header {
                key: b"x",
                value: Some(b"y"),
            }],
        );
        b.push(None, b"d", 4);
        b
    }

    #[test]
    fn headers_belong_to_their_records() {
        let b = with_headers();
        b.validate().unwrap();
        assert_eq!(b.header_ends, [0, 3, 4, 4]);
        assert_eq!(b.header_value_present, [1, 1, 0, 1]);
        let via_iter: Vec<OwnedHeaders> = b.iter().map(|r| headers_of(&r)).collect();
        let via_get: Vec<OwnedHeaders> = (0..b.len())
            .map(|i| headers_of(&b.get(i).unwrap()))
            .collect();
        assert_eq!(via_iter, via_get);
        let h =
            |k: &str, v: Option<&str>| (k.as_bytes().to_vec(), v.map(|v| v.as_bytes().to_vec()));
        assert_eq!(
            via_iter,
            [
                vec![],
                vec![h("h", Some("1")), h("h", Some("")), h("n", None)],
                vec![h("x", Some("y"))],
                vec![],
            ]
        );
        let r = b.get(1).unwrap();
        assert_eq!(r.headers.last(b"h"), Some(Some(&b""[..])));
        assert_eq!(r.headers.last(b"n"), Some(None));
        assert_eq!(r.headers.last(b"x"), None);
    }

    #[test]
    fn batches_without_headers_have_no_header_columns() {
        let mut b = Batch::new();
        b.push(Some(b"k"), b"v", 1);
        b.push(None, b"w", 2);
        assert!(!b.has_headers());
        assert!(b.header_ends.is_empty() && b.header_key_ends.is_empty());
        assert!(b.iter().all(|r| r.headers.is_empty()));
        // Headers only on the last record: the earlier ones get empty spans.
        b.push(None, b"x", 3);
        b.push_header(b"h", Some(b"v"));
        b.validate().unwrap();
        assert_eq!(b.header_ends, [0, 0, 1]);
        assert!(b.header_value_present.is_empty(), "no null value");
    }

    #[test]
    fn forward_keeps_headers_and_emit_makes_none() {
        let input = with_headers();
        let mut out = Output::with_capacity_for(&input);
        for r in input.iter() {
            out.forward(r);
            out.emit(r.key, r.value, r.timestamp);
            out.forward_with(r, |v| v.extend(r.value.iter().map(u8::to_ascii_uppercase)));
        }
        let out = out.finish().unwrap();
        out.validate().unwrap();
        assert_eq!(out.len(), 3 * input.len());
        for (i, r) in input.iter().enumerate() {
            let forwarded = out.get(3 * i).unwrap();
            assert_eq!(forwarded.headers, r.headers);
            assert_eq!((forwarded.key, forwarded.value), (r.key, r.value));
            assert!(out.get(3 * i + 1).unwrap().headers.is_empty());
            let mapped = out.get(3 * i + 2).unwrap();
            assert_eq!(headers_of(&mapped), headers_of(&r));
            assert_eq!(mapped.value, r.value.to_ascii_uppercase());
        }
    }

    #[test]
    fn validate_catches_broken_headers() {
        let mut b = with_headers();
        b.header_ends[1] = 9;
        assert!(b.validate().unwrap_err().contains("headers.ends"));

        let mut b = with_headers();
        b.header_ends.pop();
        assert!(
            b.validate()
                .unwrap_err()
                .contains("headers.ends has 3 entries for 4 records")
        );

        let mut b = with_headers();
        b.header_value_present[0] = 0;
        assert!(
            b.validate()
                .unwrap_err()
                .contains("null value but a value span")
        );

        let mut b = with_headers();
        b.header_keys[0] = 0xff;
        assert!(b.validate().unwrap_err().contains("not UTF-8"));

        let mut b = Batch::from_values(["a"], 0);
        b.header_keys = b"k".to_vec();
        b.header_key_ends = vec![1];
        b.header_value_ends = vec![0];
        assert!(
            b.validate()
                .unwrap_err()
                .contains("headers.ends is empty but there are 1 header entries")
        );
    }

    #[test]
    fn validate_catches_broken_offsets() {
        let mut b = Batch::from_values(["abc"], 0);
        b.value_ends[0] = 5;
        assert!(b.validate().unwrap_err().contains("value-ends"));
    }
}
