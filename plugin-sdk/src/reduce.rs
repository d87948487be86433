//! Keyed reducers: the groups the host sends in one `reduce` call, the
//! per-key views over them, and the glue that runs a [`Reducer`] over all of
//! them at once.

use crate::batch::check_ends;
use crate::{Config, Error, RecordError};

/// A keyed reducer (Spark's `reduceByKey` / `updateStateByKey`).
///
/// The host keeps every key's accumulator and groups each partition batch by
/// key; one `reduce` call of the component hands over every key of the batch.
/// The SDK calls [`Reducer::reduce`] once per key of that call, in key order.
/// The reducer holds no per-key state of its own: whatever must survive goes
/// into the accumulator it writes.
pub trait Reducer: 'static {
    /// Builds the reducer from its settings in the job file.
    ///
    /// Return [`Error::BadConfig`] (for example through [`Config::require`] or
    /// [`Config::allow_only`]) to refuse them.
    fn init(config: &Config) -> Result<Self, Error>
    where
        Self: Sized;

    /// Folds the new values of one key into its accumulator and appends the
    /// new accumulator to `out`, which starts empty.
    ///
    /// [`Group::accumulator`] is `None` the first time the host sees the key.
    /// To reject values, return [`Error::BadRecords`] with their
    /// [`Value::index`]; the SDK goes on with the other keys and reports every
    /// rejected value of the call at once. The host then keeps all
    /// accumulators as they were and calls again without those values.
    fn reduce(&mut self, group: &Group<'_>, out: &mut Vec<u8>) -> Result<(), Error>;
}

/// The argument of one `reduce` call in the contract's layout (see the
/// `groups` record of `wit/operator.wit`): distinct keys, each key's
/// accumulator so far, and the new values grouped by key in key order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Groups {
    /// Key bytes of the distinct keys, concatenated.
    pub keys: Vec<u8>,
    /// End offset of each key in `keys`.
    pub key_ends: Vec<u32>,
    /// Accumulator bytes of the keys, concatenated in key order.
    pub accumulators: Vec<u8>,
    /// End offset of each key's accumulator in `accumulators`.
    pub accumulator_ends: Vec<u32>,
    /// Per key, 0 when the key has no accumulator yet.
    pub has_accumulator: Vec<u8>,
    /// Value bytes, grouped by key in key order.
    pub values: Vec<u8>,
    /// End offset of each value in `values`.
    pub value_ends: Vec<u32>,
    /// Per key, the exclusive end of its values in `value_ends`.
    pub group_ends: Vec<u32>,
}

/// The new accumulators of one `reduce` call: one per key, in key order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accumulators {
    /// Accumulator bytes, concatenated in key order.
    pub data: Vec<u8>,
    /// End offset of each accumulator in `data`.
    pub ends: Vec<u32>,
}

/// One key of a `reduce` call: the key, its accumulator so far and its new
/// values.
#[derive(Debug, Clone, Copy)]
pub struct Group<'a> {
    key: &'a [u8],
    accumulator: Option<&'a [u8]>,
    /// The whole call's value bytes and ends; this group's values are
    /// `value_ends[first..end]`.
    values: &'a [u8],
    value_ends: &'a [u32],
    first: usize,
    end: usize,
}

/// One new value of a [`Group`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Value<'a> {
    /// Position of the value in the call (its index in `value-ends`); give it
    /// in a [`RecordError`] to reject the value.
    pub index: u32,
    /// The value bytes.
    pub bytes: &'a [u8],
}

impl<'a> Group<'a> {
    /// The key.
    pub fn key(&self) -> &'a [u8] {
        self.key
    }

    /// The accumulator so far, or `None` when the key is new.
    pub fn accumulator(&self) -> Option<&'a [u8]> {
        self.accumulator
    }

    /// Number of new values (at least one when the host calls).
    pub fn len(&self) -> usize {
        self.end - self.first
    }

    /// Whether the group has no new values.
    pub fn is_empty(&self) -> bool {
        self.end == self.first
    }

    /// The new values, in the order their records arrived.
    pub fn values(&self) -> impl Iterator<Item = Value<'a>> + 'a {
        let (values, ends) = (self.values, self.value_ends);
        let mut start = start_of(ends, self.first);
        (self.first..self.end).map(move |i| {
            let end = ends[i] as usize;
            let bytes = &values[start..end];
            start = end;
            Value {
                index: i as u32,
                bytes,
            }
        })
    }
}

impl Value<'_> {
    /// A [`RecordError`] rejecting this value with `reason`, for
    /// [`Error::BadRecords`].
    pub fn reject(&self, reason: impl Into<String>) -> RecordError {
        RecordError {
            index: self.index,
            reason: reason.into(),
        }
    }
}

/// Where entry `i` of an ends list starts.
fn start_of(ends: &[u32], i: usize) -> usize {
    if i == 0 { 0 } else { ends[i - 1] as usize }
}

impl Groups {
    /// Number of keys.
    pub fn len(&self) -> usize {
        self.key_ends.len()
    }

    /// Whether the call has no keys.
    pub fn is_empty(&self) -> bool {
        self.key_ends.is_empty()
    }

    /// Empties every buffer, keeping their capacity.
    pub fn clear(&mut self) {
        self.keys.clear();
        self.key_ends.clear();
        self.accumulators.clear();
        self.accumulator_ends.clear();
        self.has_accumulator.clear();
        self.values.clear();
        self.value_ends.clear();
        self.group_ends.clear();
    }

    /// Appends a key with its accumulator so far and its new values.
    pub fn push<V: AsRef<[u8]>>(
        &mut self,
        key: &[u8],
        accumulator: Option<&[u8]>,
        values: impl IntoIterator<Item = V>,
    ) {
        self.keys.extend_from_slice(key);
        self.key_ends.push(end_offset(self.keys.len()));
        if let Some(a) = accumulator {
            self.accumulators.extend_from_slice(a);
        }
        self.accumulator_ends
            .push(end_offset(self.accumulators.len()));
        self.has_accumulator.push(u8::from(accumulator.is_some()));
        for v in values {
            self.values.extend_from_slice(v.as_ref());
            self.value_ends.push(end_offset(self.values.len()));
        }
        self.group_ends.push(end_offset(self.value_ends.len()));
    }

    /// Checks the layout rules of the contract.
    pub fn validate(&self) -> Result<(), String> {
        let n = self.len();
        for (name, len) in [
            ("accumulator-ends", self.accumulator_ends.len()),
            ("has-accumulator", self.has_accumulator.len()),
            ("group-ends", self.group_ends.len()),
        ] {
            if len != n {
                return Err(format!("{name} has {len} entries for {n} keys"));
            }
        }
        check_ends("key-ends", &self.key_ends, self.keys.len())?;
        check_ends(
            "accumulator-ends",
            &self.accumulator_ends,
            self.accumulators.len(),
        )?;
        check_ends("value-ends", &self.value_ends, self.values.len())?;
        check_ends("group-ends", &self.group_ends, self.value_ends.len())?;
        // A new key has an empty accumulator span.
        let mut start = 0;
        for (k, &end) in self.accumulator_ends.iter().enumerate() {
            if self.has_accumulator[k] == 0 && end != start {
                return Err(format!(
                    "key {k} has no accumulator but an accumulator span of {} byte(s)",
                    end - start
                ));
            }
            start = end;
        }
        Ok(())
    }

    /// Key `k` with its accumulator and values; `k` must be below
    /// [`Groups::len`] and the groups valid ([`Groups::validate`]).
    pub fn group(&self, k: usize) -> Group<'_> {
        let key = &self.keys[start_of(&self.key_ends, k)..self.key_ends[k] as usize];
        let accumulator = (self.has_accumulator[k] != 0).then(|| {
            &self.accumulators
                [start_of(&self.accumulator_ends, k)..self.accumulator_ends[k] as usize]
        });
        Group {
            key,
            accumulator,
            values: &self.values,
            value_ends: &self.value_ends,
            first: start_of(&self.group_ends, k),
            end: self.group_ends[k] as usize,
        }
    }

    /// The keys in order.
    pub fn iter(&self) -> impl Iterator<Item = Group<'_>> + '_ {
        (0..self.len()).map(|k| self.group(k))
    }
}

impl Accumulators {
    /// Accumulator `k`, or `None` past the end.
    pub fn get(&self, k: usize) -> Option<&[u8]> {
        let end = *self.ends.get(k)? as usize;
        self.data.get(start_of(&self.ends, k)..end)
    }
}

fn end_offset(len: usize) -> u32 {
    // A partition batch is far below 4 GiB; the host bounds batch sizes.
    u32::try_from(len).expect("buffer larger than 4 GiB")
}

/// Runs `reducer` over every key of one call: the one place that turns
/// per-key results and rejections into the contract's result. The Wasm
/// export and the native test harness both use it.
///
/// Rejections of all keys are collected into one [`Error::BadRecords`];
/// any other error stops at the key that returned it.
pub fn reduce_all<R: Reducer>(reducer: &mut R, input: &Groups) -> Result<Accumulators, Error> {
    input
        .validate()
        .map_err(|m| Error::Failed(format!("the host sent malformed groups: {m}")))?;
    let mut out = Accumulators {
        data: Vec::with_capacity(input.accumulators.len()),
        ends: Vec::with_capacity(input.len()),
    };
    let mut rejected = Vec::new();
    let mut scratch = Vec::new();
    for group in input.iter() {
        scratch.clear();
        match reducer.reduce(&group, &mut scratch) {
            Ok(()) => {
                out.data.extend_from_slice(&scratch);
                out.ends.push(end_offset(out.data.len()));
            }
            Err(Error::BadRecords(rs)) => rejected.extend(rs),
            Err(other) => return Err(other),
        }
    }
    if rejected.is_empty() {
        Ok(out)
    } else {
        Err(Error::BadRecords(rejected))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Concatenates values onto the accumulator; rejects the value "bad".
    struct Concat;

    impl Reducer for Concat {
        fn init(_: &Config) -> Result<Self, Error> {
            Ok(Concat)
        }

        fn reduce(&mut self, group: &Group<'_>, out: &mut Vec<u8>) -> Result<(), Error> {
            out.extend_from_slice(group.accumulator().unwrap_or(b"<new>"));
            let mut rejected = Vec::new();
            for v in group.values() {
                if v.bytes == b"bad" {
                    rejected.push(v.reject(format!("{} is bad", v.index)));
                }
                out.extend_from_slice(v.bytes);
            }
            if rejected.is_empty() {
                Ok(())
            } else {
                Err(Error::BadRecords(rejected))
            }
        }
    }

    #[test]
    fn every_key_is_reduced_in_one_call() {
        let mut g = Groups::default();
        g.push(b"a", None, ["1", "2"]);
        g.push(b"b", Some(b"x"), ["3"]);
        g.push(b"", Some(b""), [""]);
        g.validate().unwrap();
        let out = reduce_all(&mut Concat, &g).unwrap();
        assert_eq!(out.ends.len(), 3);
        assert_eq!(out.get(0), Some(&b"<new>12"[..]));
        assert_eq!(out.get(1), Some(&b"x3"[..]));
        assert_eq!(out.get(2), Some(&b""[..]));
        assert_eq!(out.get(3), None);
    }

    #[test]
    fn groups_expose_keys_accumulators_and_indexed_values() {
        let mut g = Groups::default();
        g.push(b"k1", None, ["a", "bc"]);
        g.push(b"k2", Some(b"acc"), ["d"]);
        let first = g.group(0);
        assert_eq!(first.key(), b"k1");
        assert_eq!(first.accumulator(), None);
        assert_eq!(first.len(), 2);
        let second = g.group(1);
        assert_eq!(second.accumulator(), Some(&b"acc"[..]));
        let values: Vec<_> = second.values().collect();
        assert_eq!(
            values,
            [Value {
                index: 2,
                bytes: b"d"
            }]
        );
    }

    #[test]
    fn rejections_of_all_keys_come_back_together() {
        let mut g = Groups::default();
        g.push(b"a", None, ["bad", "ok"]);
        g.push(b"b", None, ["fine"]);
        g.push(b"c", None, ["ok", "bad"]);
        let Err(Error::BadRecords(rs)) = reduce_all(&mut Concat, &g) else {
            panic!("values must be rejected");
        };
        let indices: Vec<u32> = rs.iter().map(|r| r.index).collect();
        assert_eq!(indices, [0, 4]);
        assert_eq!(rs[1].reason, "4 is bad");
    }

    #[test]
    fn malformed_groups_are_refused() {
        let mut g = Groups::default();
        g.push(b"a", None, ["1"]);
        g.group_ends[0] = 2;
        assert!(g.validate().unwrap_err().contains("group-ends"));
        let err = reduce_all(&mut Concat, &g).unwrap_err();
        assert!(
            matches!(&err, Error::Failed(m) if m.contains("malformed groups")),
            "{err:?}"
        );
        g.group_ends.clear();
        assert!(
            g.validate()
                .unwrap_err()
                .contains("group-ends has 0 entries for 1 keys")
        );
    }
}
