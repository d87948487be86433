//! Operator state as the store holds it: per operator instance (operator
//! name and partition), a list of puts and deletes, encoded flat.

use crate::operators::StateWriter;
use std::collections::HashMap;

/// An operator instance: the operator's name and the partition it runs.
pub type Instance = (String, u32);

/// An instance's state: its entries by key.
pub type InstanceState = HashMap<Vec<u8>, Vec<u8>, rustc_hash::FxBuildHasher>;

const PUT: u8 = 1;
const DELETE: u8 = 0;

/// Collects an instance's changes as flat bytes: per entry a tag, the key
/// and (for a put) the value, each with a 32-bit length.
#[derive(Debug, Default)]
pub struct DeltaWriter {
    /// The encoded changes.
    pub bytes: Vec<u8>,
    /// How many changes.
    pub changes: u64,
}

impl StateWriter for DeltaWriter {
    fn put(&mut self, key: &[u8], value: &[u8]) {
        self.bytes.push(PUT);
        push_len(&mut self.bytes, key);
        push_len(&mut self.bytes, value);
        self.changes += 1;
    }
    fn delete(&mut self, key: &[u8]) {
        self.bytes.push(DELETE);
        push_len(&mut self.bytes, key);
        self.changes += 1;
    }
}

fn push_len(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Applies encoded changes to `state`; `Err` names what is wrong.
pub fn apply(state: &mut InstanceState, mut bytes: &[u8]) -> Result<(), String> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
        if bytes.len() < n {
            return Err("a state entry ends too soon".into());
        }
        let (head, tail) = bytes.split_at(n);
        *bytes = tail;
        Ok(head)
    }
    fn field<'a>(bytes: &mut &'a [u8]) -> Result<&'a [u8], String> {
        let n = u32::from_le_bytes(take(bytes, 4)?.try_into().expect("4 bytes")) as usize;
        take(bytes, n)
    }
    while !bytes.is_empty() {
        let tag = take(&mut bytes, 1)?[0];
        let key = field(&mut bytes)?;
        match tag {
            PUT => {
                let value = field(&mut bytes)?;
                state.insert(key.to_vec(), value.to_vec());
            }
            DELETE => {
                state.remove(key);
            }
            other => return Err(format!("unknown state entry tag {other}")),
        }
    }
    Ok(())
}

/// `state` as the changes that rebuild it from nothing.
pub fn encode(state: &InstanceState) -> Vec<u8> {
    let mut w = DeltaWriter::default();
    for (k, v) in state {
        w.put(k, v);
    }
    w.bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_apply_in_order_and_truncated_ones_are_refused() {
        let mut w = DeltaWriter::default();
        w.put(b"a", b"1");
        w.put(b"b", b"2");
        w.delete(b"a");
        w.put(b"c", b"");
        let mut state = InstanceState::default();
        apply(&mut state, &w.bytes).unwrap();
        let mut got: Vec<_> = state.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        got.sort();
        assert_eq!(
            got,
            [(b"b".to_vec(), b"2".to_vec()), (b"c".to_vec(), vec![])]
        );
        let mut again = InstanceState::default();
        apply(&mut again, &encode(&state)).unwrap();
        assert_eq!(again, state);
        assert!(apply(&mut InstanceState::default(), &w.bytes[..w.bytes.len() - 1]).is_err());
    }
}
