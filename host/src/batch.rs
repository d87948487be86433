//! The columnar micro-batch. It is the contract's layout (`wit/operator.wit`),
//! shared with the guest SDK so host and guests agree on one definition.

pub use sluice_sdk::{Batch, Output, Record};

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
            out.push(r.key, r.value, r.timestamp);
        }
    }
    out
}

/// Appends all records of `from` to `to`.
pub fn append(to: &mut Batch, from: &Batch) {
    if from.key_present.is_empty() && to.key_present.is_empty() {
        // Fast path: unkeyed, shift offsets and copy buffers.
        let vbase = to.values.len() as u32;
        let kbase = to.keys.len() as u32;
        to.values.extend_from_slice(&from.values);
        to.value_ends
            .extend(from.value_ends.iter().map(|e| e + vbase));
        to.key_ends.extend(from.key_ends.iter().map(|e| e + kbase));
        to.keys.extend_from_slice(&from.keys);
        to.timestamps.extend_from_slice(&from.timestamps);
    } else {
        for r in from.iter() {
            to.push(r.key, r.value, r.timestamp);
        }
    }
}

/// Bytes held by the batch's buffers (keys + values).
pub fn payload_bytes(b: &Batch) -> usize {
    b.keys.len() + b.values.len()
}

#[cfg(test)]
mod tests {
    use super::*;

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
