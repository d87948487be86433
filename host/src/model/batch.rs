//! The columnar micro-batch. It is the contract's layout (`wit/operator.wit`),
//! shared with the guest SDK so host and guests agree on one definition.

pub use sluice_sdk::{Batch, Header, Headers, Output, Record};

/// Copies the records of `input` at positions not in `drop` (sorted or not)
/// into a new batch, keeping order.
pub fn without(input: &Batch, drop: &[u32]) -> Batch {
    let mut mask = vec![false; input.len()];
    for &i in drop {
        if let Some(m) = mask.get_mut(i as usize) {
            *m = true;
        }
    }
    let mut out = Batch::new();
    for r in input.iter() {
        if !mask[r.index as usize] {
            out.push_record(r);
        }
    }
    out
}

/// Appends all records of `from` to `to`.
pub fn append(to: &mut Batch, from: &Batch) {
    // Bulk copies with shifted offsets; presence bytes are materialised only
    // when one side has keys.
    let n_to = to.len();
    let keyed = !from.key_present.is_empty() || !to.key_present.is_empty();
    if keyed {
        to.key_present.resize(n_to, 0);
        if from.key_present.is_empty() {
            to.key_present.resize(n_to + from.len(), 0);
        } else {
            to.key_present.extend_from_slice(&from.key_present);
        }
    }
    let vbase = offset(to.values.len());
    let kbase = offset(to.keys.len());
    to.values.extend_from_slice(&from.values);
    to.value_ends
        .extend(from.value_ends.iter().map(|e| e + vbase));
    to.keys.extend_from_slice(&from.keys);
    to.key_ends.extend(from.key_ends.iter().map(|e| e + kbase));
    to.timestamps.extend_from_slice(&from.timestamps);
    if to.has_headers() || from.has_headers() {
        append_headers(to, n_to, from);
    }
}

/// The header columns of [`append`]: `to` had `n_to` records before `from`'s
/// were added. Like presence bytes, the per-record ends (and the null-value
/// bytes) are materialised only when one side has them.
fn append_headers(to: &mut Batch, n_to: usize, from: &Batch) {
    let entries_to = to.header_count();
    let base = offset(entries_to);
    // A batch without header ends has no header entries.
    to.header_ends.resize(n_to, 0);
    if from.has_headers() {
        to.header_ends
            .extend(from.header_ends.iter().map(|e| e + base));
    } else {
        to.header_ends.resize(n_to + from.len(), base);
    }
    if !to.header_value_present.is_empty() || !from.header_value_present.is_empty() {
        to.header_value_present.resize(entries_to, 1);
        if from.header_value_present.is_empty() {
            to.header_value_present
                .resize(entries_to + from.header_count(), 1);
        } else {
            to.header_value_present
                .extend_from_slice(&from.header_value_present);
        }
    }
    let kbase = offset(to.header_keys.len());
    let vbase = offset(to.header_values.len());
    to.header_keys.extend_from_slice(&from.header_keys);
    to.header_key_ends
        .extend(from.header_key_ends.iter().map(|e| e + kbase));
    to.header_values.extend_from_slice(&from.header_values);
    to.header_value_ends
        .extend(from.header_value_ends.iter().map(|e| e + vbase));
}

/// Splits `input` into `n` batches by [`crate::model::partition::for_key`] of each
/// record's key, keeping record order. A record without a key goes by its
/// value, or to batch 0 with `unkeyed_together`.
///
/// Two passes over the offsets: the first picks each record's partition and
/// sizes the outputs, the second copies into buffers allocated once.
pub fn split_by_key(input: &Batch, n: usize, unkeyed_together: bool) -> Vec<Batch> {
    if n == 1 {
        return vec![input.clone()];
    }
    let len = input.len();
    let keyed = !input.key_present.is_empty();
    let mut target = Vec::with_capacity(len);
    let mut records = vec![0usize; n];
    let mut value_bytes = vec![0usize; n];
    let mut key_bytes = vec![0usize; n];
    let (mut vstart, mut kstart) = (0usize, 0usize);
    for i in 0..len {
        let vend = input.value_ends[i] as usize;
        let kend = input.key_ends[i] as usize;
        let present = keyed && input.key_present[i] != 0;
        let k = if present {
            &input.keys[kstart..kend]
        } else {
            &input.values[vstart..vend]
        };
        let t = if !present && unkeyed_together {
            0
        } else {
            crate::model::partition::for_key(k, n as u32) as usize
        };
        target.push(t as u32);
        records[t] += 1;
        value_bytes[t] += vend - vstart;
        key_bytes[t] += kend - kstart;
        vstart = vend;
        kstart = kend;
    }
    let headed = input.has_headers();
    let mut out: Vec<Batch> = (0..n)
        .map(|t| Batch {
            keys: Vec::with_capacity(key_bytes[t]),
            key_ends: Vec::with_capacity(records[t]),
            key_present: Vec::with_capacity(if keyed { records[t] } else { 0 }),
            values: Vec::with_capacity(value_bytes[t]),
            value_ends: Vec::with_capacity(records[t]),
            timestamps: Vec::with_capacity(records[t]),
            header_ends: Vec::with_capacity(if headed { records[t] } else { 0 }),
            ..Batch::default()
        })
        .collect();
    let (mut vstart, mut kstart) = (0usize, 0usize);
    for (i, &t) in target.iter().enumerate() {
        let o = &mut out[t as usize];
        let vend = input.value_ends[i] as usize;
        let kend = input.key_ends[i] as usize;
        o.values.extend_from_slice(&input.values[vstart..vend]);
        o.value_ends.push(o.values.len() as u32);
        // An absent key has an empty span, so copying it copies nothing.
        o.keys.extend_from_slice(&input.keys[kstart..kend]);
        o.key_ends.push(o.keys.len() as u32);
        if keyed {
            o.key_present.push(input.key_present[i]);
        }
        o.timestamps.push(input.timestamps[i]);
        if headed {
            // Every part gets header ends when the input has them, as with
            // presence bytes; a record's entries follow its end.
            o.header_ends.push(offset(o.header_count()));
            for h in input.headers(i) {
                o.push_header(h.key, h.value);
            }
        }
        vstart = vend;
        kstart = kend;
    }
    out
}

/// Records `range` of `input` as a new batch, copied in bulk.
pub fn slice(input: &Batch, range: std::ops::Range<usize>) -> Batch {
    let (a, b) = (range.start, range.end.min(input.len()));
    if a >= b {
        return Batch::new();
    }
    let vstart = if a == 0 { 0 } else { input.value_ends[a - 1] };
    let kstart = if a == 0 { 0 } else { input.key_ends[a - 1] };
    let vend = input.value_ends[b - 1];
    let kend = input.key_ends[b - 1];
    let mut out = Batch {
        keys: input.keys[kstart as usize..kend as usize].to_vec(),
        key_ends: input.key_ends[a..b].iter().map(|e| e - kstart).collect(),
        key_present: if input.key_present.is_empty() {
            Vec::new()
        } else {
            input.key_present[a..b].to_vec()
        },
        values: input.values[vstart as usize..vend as usize].to_vec(),
        value_ends: input.value_ends[a..b].iter().map(|e| e - vstart).collect(),
        timestamps: input.timestamps[a..b].to_vec(),
        ..Batch::default()
    };
    if input.has_headers() {
        let hstart = if a == 0 { 0 } else { input.header_ends[a - 1] };
        let hend = input.header_ends[b - 1];
        let (h0, h1) = (hstart as usize, hend as usize);
        let ks = if h0 == 0 {
            0
        } else {
            input.header_key_ends[h0 - 1]
        };
        let vs = if h0 == 0 {
            0
        } else {
            input.header_value_ends[h0 - 1]
        };
        let ke = if h1 == 0 {
            0
        } else {
            input.header_key_ends[h1 - 1]
        };
        let ve = if h1 == 0 {
            0
        } else {
            input.header_value_ends[h1 - 1]
        };
        out.header_ends = input.header_ends[a..b].iter().map(|e| e - hstart).collect();
        out.header_keys = input.header_keys[ks as usize..ke as usize].to_vec();
        out.header_key_ends = input.header_key_ends[h0..h1]
            .iter()
            .map(|e| e - ks)
            .collect();
        out.header_values = input.header_values[vs as usize..ve as usize].to_vec();
        out.header_value_ends = input.header_value_ends[h0..h1]
            .iter()
            .map(|e| e - vs)
            .collect();
        if !input.header_value_present.is_empty() {
            out.header_value_present = input.header_value_present[h0..h1].to_vec();
        }
    }
    out
}

fn offset(len: usize) -> u32 {
    // The pipeline cuts batches well below 4 GiB (`MAX_BATCH_BYTES`).
    u32::try_from(len).expect("batch payload below 4 GiB")
}

/// Bytes held by the batch's data buffers (keys, values and headers).
pub fn payload_bytes(b: &Batch) -> usize {
    b.keys.len() + b.values.len() + b.header_keys.len() + b.header_values.len()
}

/// Bytes a record of a batch is held in per record whatever its content:
/// its key and value ends (4 each), key flag (1) and timestamp (8).
pub const RECORD_OVERHEAD: usize = 17;

/// Bytes a header of a record is held in besides its key and value: its key
/// and value ends (4 each) and value flag (1).
pub const HEADER_OVERHEAD: usize = 9;

/// Bytes held by all the batch's buffers: its payload and, per record and
/// per header, the offsets and flags that place it. Empty records cost
/// memory too, so this is what bounds a batch.
pub fn held_bytes(b: &Batch) -> usize {
    payload_bytes(b)
        + RECORD_OVERHEAD * b.len()
        + 4 * b.header_ends.len()
        + HEADER_OVERHEAD * b.header_key_ends.len()
}

/// How many records from the front of `b` fit in `bytes`, counted as
/// [`held_bytes`] counts them; at least one when `at_least_one` (so that a
/// record larger than the bound still moves on, alone).
pub fn fitting(b: &Batch, bytes: usize, at_least_one: bool) -> usize {
    if held_bytes(b) <= bytes {
        return b.len();
    }
    let mut used = 0usize;
    let mut n = 0;
    for r in b.iter() {
        let size = RECORD_OVERHEAD
            + r.key.map_or(0, <[u8]>::len)
            + r.value.len()
            + if b.header_ends.is_empty() { 0 } else { 4 }
            + r.headers
                .iter()
                .map(|h| HEADER_OVERHEAD + h.key.len() + h.value.map_or(0, <[u8]>::len))
                .sum::<usize>();
        used += size;
        if used > bytes {
            break;
        }
        n += 1;
    }
    if at_least_one {
        n.max(1).min(b.len())
    } else {
        n
    }
}

/// The start of a record's value, quoted, for error messages.
pub fn preview(value: &[u8]) -> String {
    const MAX: usize = 80;
    let text = String::from_utf8_lossy(&value[..value.len().min(MAX)]).into_owned();
    if value.len() > MAX {
        format!("{text:?}...")
    } else {
        format!("{text:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// A batch's held bytes are its records' sizes, each its key, value
        /// and headers plus the offsets placing them; `fitting` takes the
        /// longest prefix within a bound.
        #[test]
        fn records_fit_the_byte_bound_with_their_overhead(
            records in proptest::collection::vec(
                (proptest::option::of(0usize..5), 0usize..40, proptest::collection::vec((0usize..4, proptest::option::of(0usize..6)), 0..3)),
                0..30,
            ),
            bytes in 0usize..1500,
            at_least_one: bool,
        ) {
            let mut b = Batch::new();
            for (key, value, headers) in &records {
                let key = key.map(|n| vec![b'k'; n]);
                b.push(key.as_deref(), &vec![b'v'; *value], 0);
                for (hk, hv) in headers {
                    let hv = hv.map(|n| vec![b'h'; n]);
                    b.push_header(&vec![b'n'; *hk], hv.as_deref());
                }
            }
            let headed = records.iter().any(|(_, _, h)| !h.is_empty());
            let sizes: Vec<usize> = records
                .iter()
                .map(|(k, v, h)| {
                    17 + k.unwrap_or(0)
                        + v
                        + if headed { 4 } else { 0 }
                        + h.iter().map(|(hk, hv)| 9 + hk + hv.unwrap_or(0)).sum::<usize>()
                })
                .collect();
            prop_assert_eq!(held_bytes(&b), sizes.iter().sum::<usize>());
            let mut want = 0;
            let mut used = 0;
            for s in &sizes {
                used += s;
                if used > bytes {
                    break;
                }
                want += 1;
            }
            if at_least_one && !records.is_empty() {
                want = want.max(1);
            }
            prop_assert_eq!(fitting(&b, bytes, at_least_one), want);
        }
    }

    #[test]
    fn without_keeps_order_and_keys() {
        let mut b = Batch::new();
        for (i, v) in ["a", "b", "c", "d"].iter().enumerate() {
            b.push((i % 2 == 0).then_some(v.as_bytes()), v.as_bytes(), i as i64);
        }
        let out = without(&b, &[3, 1, 99]);
        out.validate().unwrap();
        let got: Vec<_> = out.iter().map(|r| (r.key, r.value, r.timestamp)).collect();
        type Row<'a> = (Option<&'a [u8]>, &'a [u8], i64);
        let want: [Row; 2] = [(Some(b"a"), b"a", 0), (Some(b"c"), b"c", 2)];
        assert_eq!(got, want);
    }

    #[test]
    fn slices_join_back() {
        let mut b = Batch::new();
        for i in 0..10u8 {
            b.push(
                (i % 2 == 0).then_some(&[i][..]),
                &vec![i; i as usize],
                i as i64,
            );
        }
        let mut joined = Batch::new();
        for r in [0..3, 3..3, 3..9, 9..20] {
            let part = slice(&b, r);
            part.validate().unwrap();
            append(&mut joined, &part);
        }
        assert_eq!(joined, b);
    }

    #[test]
    fn split_by_key_then_append_keeps_everything() {
        let mut b = Batch::new();
        for i in 0..100u32 {
            let k = (i % 7).to_string();
            b.push(
                (i % 3 != 0).then_some(k.as_bytes()),
                &i.to_le_bytes(),
                i as i64,
            );
        }
        let parts = split_by_key(&b, 4, false);
        let mut joined = Batch::new();
        for p in &parts {
            p.validate().unwrap();
            append(&mut joined, p);
        }
        joined.validate().unwrap();
        assert_eq!(joined.len(), 100);
        let mut got: Vec<i64> = joined.timestamps.clone();
        got.sort();
        assert_eq!(got, (0..100).collect::<Vec<i64>>());
    }

    type Row = (
        Option<Vec<u8>>,
        Vec<u8>,
        i64,
        Vec<(Vec<u8>, Option<Vec<u8>>)>,
    );

    fn rows(b: &Batch) -> Vec<Row> {
        b.iter()
            .map(|r| {
                let headers = r
                    .headers
                    .iter()
                    .map(|h| (h.key.to_vec(), h.value.map(<[u8]>::to_vec)))
                    .collect();
                (
                    r.key.map(<[u8]>::to_vec),
                    r.value.to_vec(),
                    r.timestamp,
                    headers,
                )
            })
            .collect()
    }

    /// `n` records; record `i` has `i % 4` headers (a repeated key, an empty
    /// value and, for every fifth record, a null value), keys on odd records.
    fn headed(n: u32) -> Batch {
        let mut b = Batch::new();
        for i in 0..n {
            let k = (i % 5).to_string();
            b.push(
                (i % 2 == 1).then_some(k.as_bytes()),
                &i.to_le_bytes(),
                i as i64,
            );
            for j in 0..i % 4 {
                let value = match j {
                    0 => Some(format!("v{i}")),
                    1 => Some(String::new()),
                    _ => (i % 5 != 0).then(|| format!("w{i}")),
                };
                b.push_header(b"h", value.as_deref().map(str::as_bytes));
            }
        }
        b.validate().unwrap();
        b
    }

    #[test]
    fn without_keeps_headers_with_their_records() {
        let b = headed(12);
        let out = without(&b, &[0, 3, 7, 11]);
        out.validate().unwrap();
        let want: Vec<Row> = rows(&b)
            .into_iter()
            .enumerate()
            .filter(|(i, _)| ![0, 3, 7, 11].contains(i))
            .map(|(_, r)| r)
            .collect();
        assert_eq!(rows(&out), want);
    }

    #[test]
    fn slices_with_headers_join_back() {
        let b = headed(17);
        assert!(
            !b.header_value_present.is_empty(),
            "the input has null values"
        );
        for cuts in [vec![0, 1, 17], vec![0, 5, 5, 9, 16, 40], vec![0, 17]] {
            let mut joined = Batch::new();
            for w in cuts.windows(2) {
                let part = slice(&b, w[0]..w[1]);
                part.validate().unwrap();
                assert_eq!(rows(&part), rows(&b)[w[0]..w[1].min(17)]);
                append(&mut joined, &part);
            }
            joined.validate().unwrap();
            assert_eq!(joined, b, "cuts {cuts:?}");
        }
    }

    #[test]
    fn split_by_key_keeps_headers_with_their_records() {
        let b = headed(100);
        for unkeyed_together in [false, true] {
            let parts = split_by_key(&b, 4, unkeyed_together);
            let mut got = Vec::new();
            for p in &parts {
                p.validate().unwrap();
                got.extend(rows(p));
            }
            got.sort_by_key(|r| r.2);
            assert_eq!(got, rows(&b));
        }
    }

    #[test]
    fn append_mixes_batches_with_and_without_headers() {
        let plain = Batch::from_values(["x", "yy"], 1);
        let mut a = plain.clone();
        append(&mut a, &headed(6));
        append(&mut a, &plain);
        a.validate().unwrap();
        let want: Vec<Row> = [rows(&plain), rows(&headed(6)), rows(&plain)].concat();
        assert_eq!(rows(&a), want);
        // Null values on the left only, then on the right only.
        let mut nulls = Batch::new();
        nulls.push(None, b"n", 9);
        nulls.push_header(b"gone", None);
        let mut left = nulls.clone();
        append(&mut left, &headed(4));
        left.validate().unwrap();
        assert_eq!(rows(&left), [rows(&nulls), rows(&headed(4))].concat());
        let mut right = headed(4);
        append(&mut right, &nulls);
        right.validate().unwrap();
        assert_eq!(rows(&right), [rows(&headed(4)), rows(&nulls)].concat());
        // No headers on either side: no header columns.
        let mut none = plain.clone();
        append(&mut none, &plain);
        assert!(!none.has_headers() && none.header_value_present.is_empty());
    }

    #[test]
    fn append_mixes_keyed_and_unkeyed() {
        let mut a = Batch::from_values(["x", "yy"], 1);
        let mut k = Batch::new();
        k.push(Some(b"k"), b"z", 2);
        append(&mut a, &k);
        append(&mut a, &Batch::from_values(["w"], 3));
        a.validate().unwrap();
        let got: Vec<_> = a.iter().map(|r| (r.key, r.value)).collect();
        let want: [(Option<&[u8]>, &[u8]); 4] = [
            (None, b"x"),
            (None, b"yy"),
            (Some(b"k"), b"z"),
            (None, b"w"),
        ];
        assert_eq!(got, want);
    }
}
