//! The accumulators a reducer's host keeps, per key: the table a
//! [`WasmReducer`](super::WasmReducer) stores each call's results in, held
//! to the `state` limit, and its form in checkpoints and hand-overs.

use super::{FxMap, Grouping};
use crate::model::batch::{Batch, preview};
use crate::operators::budget::{StateBudget, entry_bytes};
use crate::operators::changes::corrupt;
use crate::operators::{Changes, Decoder, Encoder, OperatorError, SideOutput, StateWriter};
use crate::spec::ReduceMode;
use sluice_sdk::Accumulators;

/// What the host keeps per key.
#[derive(Debug, Clone)]
pub(super) struct KeyState {
    pub(super) accumulator: Vec<u8>,
    /// The latest event time of the key's records so far.
    pub(super) timestamp: i64,
}

/// A checkpoint holds one entry per key: its key is the record key as it
/// is; its value the latest event time of the key's records (`i64`) and the
/// accumulator (bytes).
pub(super) struct Table {
    pub(super) keys: FxMap<Vec<u8>, KeyState>,
    /// The bytes of the keys and accumulators held.
    pub(super) budget: StateBudget,
    /// The keys whose accumulators changed since the last checkpoint.
    pub(super) changes: Changes,
}

impl Table {
    pub(super) fn new(state: u64) -> Self {
        Table {
            keys: FxMap::default(),
            budget: StateBudget::new(state),
            changes: Changes::default(),
        }
    }

    /// Stores the new accumulators and returns the update-mode output. A
    /// key whose accumulator does not fit the state limit keeps the one it
    /// had, and its records of `input` are refused into `side`.
    pub(super) fn store(
        &mut self,
        mode: ReduceMode,
        input: &Batch,
        grouping: &Grouping<'_>,
        out: &Accumulators,
        side: &mut SideOutput,
    ) -> Batch {
        let mut emitted = Batch::new();
        // The records of the keys refused, set aside in input order.
        let mut refused: Vec<(u32, OperatorError)> = Vec::new();
        for (k, key) in grouping.keys.iter().enumerate() {
            let accumulator = out.get(k).unwrap_or_default();
            let ts = grouping.timestamps[k];
            let held = self.keys.get(*key).map(|s| s.accumulator.len());
            let (grows, shrinks) = match held {
                None => (entry_bytes(key.len(), accumulator.len()), 0),
                Some(old) => (
                    accumulator.len().saturating_sub(old) as u64,
                    old.saturating_sub(accumulator.len()) as u64,
                ),
            };
            let what = || match held {
                None => format!("the accumulator of new key {}", preview(key)),
                Some(_) => format!("the longer accumulator of key {}", preview(key)),
            };
            if let Err(breach) = self.budget.admit(grows, what) {
                refused.extend(grouping.records(k).iter().map(|&i| (i, breach.clone())));
                continue;
            }
            self.budget.release(shrinks);
            self.changes.touch(key);
            let state = match self.keys.get_mut(*key) {
                Some(s) => {
                    s.accumulator.clear();
                    s.accumulator.extend_from_slice(accumulator);
                    s.timestamp = s.timestamp.max(ts);
                    s
                }
                None => self.keys.entry(key.to_vec()).or_insert(KeyState {
                    accumulator: accumulator.to_vec(),
                    timestamp: ts,
                }),
            };
            if mode == ReduceMode::Update {
                emitted.push(Some(key), &state.accumulator, state.timestamp);
            }
        }
        refused.sort_unstable_by_key(|(i, _)| *i);
        for (i, breach) in refused {
            if let Some(r) = input.get(i as usize) {
                side.refuse(&r, breach);
            }
        }
        emitted
    }

    /// Every key with its accumulator, in key order (complete mode).
    pub(super) fn all(&self) -> Batch {
        let mut rows: Vec<(&Vec<u8>, &KeyState)> = self.keys.iter().collect();
        rows.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut out = Batch::new();
        for (key, state) in rows {
            out.push(Some(key), &state.accumulator, state.timestamp);
        }
        out
    }

    /// [`Operator::checkpoint`]: a put for each key whose accumulator
    /// changed since the last call.
    pub(super) fn write_changes(&mut self, out: &mut dyn StateWriter) {
        let mut keys = self.changes.take();
        keys.sort_unstable();
        let mut value = Encoder::new();
        for key in keys {
            match self.keys.get(&key) {
                Some(s) => out.put(&key, &value.i64(s.timestamp).bytes(&s.accumulator).finish()),
                // Keys are never forgotten; a delete keeps the contract.
                None => out.delete(&key),
            }
        }
    }

    /// Records every key held as changed, so the next checkpoint writes the
    /// whole table (after it was taken over from another version).
    pub(super) fn touch_all(&mut self) {
        for key in self.keys.keys() {
            self.changes.touch(key);
        }
    }

    /// [`Operator::snapshot`]: every key with its event time and
    /// accumulator, for a new version of the reducer to take over.
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut out = Encoder::new();
        out.u64(self.keys.len() as u64);
        for (key, s) in &self.keys {
            out.bytes(key).i64(s.timestamp).bytes(&s.accumulator);
        }
        out.finish()
    }

    /// [`Operator::restore`]: the keys of an [`Table::encode`]d table
    /// replace those held, counted against the `state` limit.
    pub(super) fn take_over(&mut self, state: &[u8]) -> Result<(), OperatorError> {
        self.clear();
        let mut d = Decoder(state);
        for _ in 0..d.u64()? {
            let key = d.bytes()?;
            let timestamp = d.i64()?;
            let accumulator = d.bytes()?;
            self.hold(
                key,
                timestamp,
                accumulator,
                "the previous version's accumulator",
            )?;
        }
        if !d.is_empty() {
            return Err(corrupt("a reducer's state is longer than its keys"));
        }
        self.touch_all();
        Ok(())
    }

    /// [`Operator::restore_entries`]: the accumulators of `entries` replace
    /// those held, counted against the `state` limit as they were when
    /// they were stored.
    pub(super) fn take_entries(
        &mut self,
        entries: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<(), OperatorError> {
        self.clear();
        for (key, v) in entries {
            let mut d = Decoder(v);
            let timestamp = d.i64()?;
            let accumulator = d.bytes()?;
            if !d.is_empty() {
                return Err(corrupt("a reducer entry's value is longer than its fields"));
            }
            self.hold(key, timestamp, accumulator, "the checkpoint's accumulator")?;
        }
        Ok(())
    }

    /// Forgets every key.
    fn clear(&mut self) {
        self.keys.clear();
        self.budget.clear();
    }

    /// Holds `key`'s accumulator from elsewhere (`what` it is, for a
    /// breach), counted against the `state` limit.
    fn hold(
        &mut self,
        key: &[u8],
        timestamp: i64,
        accumulator: &[u8],
        what: &str,
    ) -> Result<(), OperatorError> {
        self.budget
            .admit(entry_bytes(key.len(), accumulator.len()), || {
                format!("{what} of key {}", preview(key))
            })?;
        let state = KeyState {
            accumulator: accumulator.to_vec(),
            timestamp,
        };
        self.keys.insert(key.to_vec(), state);
        Ok(())
    }
}
