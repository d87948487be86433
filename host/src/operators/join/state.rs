//! A `join`'s state as checkpoint entries: one per buffered record, so
//! that a checkpoint writes the records buffered since the last one, and
//! the records of a window the watermark passed as deletes.
//!
//! - `R` end start key side index: a buffered record of the window
//!   `[start, end)` (both `i64`), of the join key `key` (bytes), of the left
//!   side or the right (`bool`: right), the `index`-th (`u64`) of its key,
//!   window and side — records pair in that order. Its value: the record's
//!   timestamp (`i64`) and value (bytes). A window and a key are held as
//!   long as they have records, so they need no entries of their own.
//! - `E`: the micro-batch (`u64`) the join last emitted pairs for and how
//!   many (`u64`), which `join_output` holds; no entry when none.

use super::{Join, Keys, Row, Sides, key_bytes, row_bytes, window_bytes};
use crate::model::batch::preview;
use crate::operators::changes::corrupt;
use crate::operators::{Changes, Decoder, OperatorError, StateWriter};
use std::collections::HashMap;

/// The kind of a buffered record's entry.
const ROW: u8 = b'R';
/// The kind of the entry of the pairs emitted for the batch.
const EMITTED: u8 = b'E';

/// Records that the `index`-th record of `key` on one side (`right`) of
/// `window` (end, start) was buffered or forgotten.
#[inline]
pub(super) fn touch_row(
    changes: &mut Changes,
    window: (i64, i64),
    key: &[u8],
    right: bool,
    index: usize,
) {
    changes.touch_built(|e| {
        e.tag(ROW)
            .i64(window.0)
            .i64(window.1)
            .bytes(key)
            .bool(right)
            .u64(index as u64);
    });
}

/// Records that every record of the window `window` (end, start) is
/// forgotten.
pub(super) fn touch_window(changes: &mut Changes, window: (i64, i64), keys: &Keys) {
    if !changes.is_on() {
        return;
    }
    for (key, sides) in &keys.keys {
        for (right, rows) in [(false, &sides.left), (true, &sides.right)] {
            for index in 0..rows.len() {
                touch_row(changes, window, key, right, index);
            }
        }
    }
}

/// Records that the count of pairs emitted for the batch changed.
#[inline]
pub(super) fn touch_emitted(changes: &mut Changes) {
    changes.touch(&[EMITTED]);
}

/// An entry's key, read back.
enum Entry<'a> {
    Row {
        window: (i64, i64),
        key: &'a [u8],
        right: bool,
        index: u64,
    },
    Emitted,
}

fn read_key(bytes: &[u8]) -> Result<Entry<'_>, OperatorError> {
    let mut d = Decoder(bytes);
    let entry = match d.tag()? {
        ROW => Entry::Row {
            window: (d.i64()?, d.i64()?),
            key: d.bytes()?,
            right: d.bool()?,
            index: d.u64()?,
        },
        EMITTED => Entry::Emitted,
        other => return Err(corrupt(&format!("unknown join entry kind {other}"))),
    };
    if !d.is_empty() {
        return Err(corrupt("a join entry's key is longer than its fields"));
    }
    Ok(entry)
}

impl Join {
    /// [`crate::operators::Operator::checkpoint`]: a put for each record
    /// buffered since the last call, a delete for each forgotten.
    pub(super) fn write_changes(&mut self, out: &mut dyn StateWriter) -> Result<(), OperatorError> {
        let mut keys = self.changes.take();
        keys.sort_unstable();
        let mut value = crate::operators::Encoder::new();
        for k in keys {
            match read_key(&k)? {
                Entry::Row {
                    window,
                    key,
                    right,
                    index,
                } => {
                    let row = self
                        .windows
                        .get(&window)
                        .and_then(|w| w.keys.get(key))
                        .and_then(|s| if right { &s.right } else { &s.left }.get(index as usize));
                    match row {
                        Some(row) => {
                            out.put(&k, &value.i64(row.timestamp).bytes(&row.value).finish())
                        }
                        None => out.delete(&k),
                    }
                }
                Entry::Emitted if self.emitted.1 == 0 => out.delete(&k),
                Entry::Emitted => {
                    out.put(&k, &value.u64(self.emitted.0).u64(self.emitted.1).finish())
                }
            }
        }
        Ok(())
    }

    /// [`crate::operators::Operator::restore_entries`]: the records of
    /// `entries` replace the buffers, counted against the `state` limit as
    /// they were when they were buffered.
    pub(super) fn take_entries(
        &mut self,
        entries: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<(), OperatorError> {
        self.windows.clear();
        self.budget.clear();
        self.emitted = (0, 0);
        type Buffer<'a> = ((i64, i64), &'a [u8], bool);
        let mut rows: HashMap<Buffer<'_>, Vec<(u64, Row)>> = HashMap::new();
        for (k, v) in entries {
            let mut d = Decoder(v);
            match read_key(k)? {
                Entry::Row {
                    window,
                    key,
                    right,
                    index,
                } => {
                    let row = Row {
                        timestamp: d.i64()?,
                        value: d.bytes()?.to_vec(),
                    };
                    rows.entry((window, key, right))
                        .or_default()
                        .push((index, row));
                }
                Entry::Emitted => self.emitted = (d.u64()?, d.u64()?),
            }
            if !d.is_empty() {
                return Err(corrupt("a join entry's value is longer than its fields"));
            }
        }
        for ((window, key, right), mut list) in rows {
            list.sort_unstable_by_key(|(i, _)| *i);
            if list
                .iter()
                .enumerate()
                .any(|(i, (index, _))| i as u64 != *index)
            {
                return Err(corrupt(
                    "the records of a join key are not numbered in order",
                ));
            }
            let what = || format!("the checkpoint's records of key {}", preview(key));
            let mut bytes = list.iter().map(|(_, r)| row_bytes(r.value.len())).sum();
            let keys = match self.windows.get_mut(&window) {
                Some(keys) => keys,
                None => {
                    bytes += window_bytes();
                    self.windows.entry(window).or_insert(Keys {
                        bytes: 0,
                        keys: Default::default(),
                    })
                }
            };
            if !keys.keys.contains_key(key) {
                bytes += key_bytes(key.len());
            }
            self.budget.admit(bytes, what)?;
            keys.bytes += bytes;
            let sides: &mut Sides = keys.keys.entry_ref(key).or_default();
            *if right {
                &mut sides.right
            } else {
                &mut sides.left
            } = list.into_iter().map(|(_, r)| r).collect();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::JoinConfig;
    use super::*;
    use crate::model::batch::Batch;
    use crate::operators::changes::testing::{Merged, resume_matches};
    use crate::operators::{BatchContext, Operator};
    use crate::spec::limits::{Limit, Limits};

    fn config(settings: &[(&str, &str)]) -> JoinConfig {
        let mut pairs = vec![("left".to_string(), "l".to_string())];
        pairs.push(("right".into(), "r".into()));
        pairs.extend(settings.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        JoinConfig::parse(&pairs).unwrap()
    }

    fn limited(cfg: &JoinConfig, state: u64, join_output: u64) -> Join {
        let limits = Limits {
            state,
            join_output,
            ..Limits::default()
        };
        Join::new(cfg.clone(), &limits)
    }

    type Records = Vec<(String, String, i64)>;

    /// One micro-batch: the records of each side (key, value, event time)
    /// and the context.
    struct Step {
        left: Records,
        right: Records,
        ctx: BatchContext,
    }

    /// Batches of records of four keys on both sides, their event times
    /// moving on by 10ms a batch, out of order by up to 8ms and some by
    /// 20ms more (late, or within the allowed lateness), every fifth batch
    /// without records; then a batch far ahead, one that forgets every
    /// window before it, and one that changes nothing.
    fn steps() -> Vec<Step> {
        let mut x: u64 = 11;
        let mut next = move |n: u64| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 33) % n) as i64
        };
        let mut max: Option<i64> = None;
        let mut out = Vec::new();
        let mut push = |n: i64, left: Records, right: Records| {
            let before = max;
            max = max.max(left.iter().chain(&right).map(|r| r.2).max());
            let ctx = BatchContext {
                batch_no: n as u64,
                max_event_time_before: before,
                max_event_time_after: max,
                processing_time: n * 10,
                has_records: !(left.is_empty() && right.is_empty()),
                ..BatchContext::default()
            };
            out.push(Step { left, right, ctx });
        };
        for n in 0..14 {
            let (mut left, mut right) = (Vec::new(), Vec::new());
            if n % 5 != 3 {
                for i in 0..8 {
                    let key = format!("k{}", next(4));
                    let ts = n * 10 + next(17) - 8 - 20 * i64::from(next(6) == 0);
                    let side = if next(2) == 0 { &mut left } else { &mut right };
                    side.push((key, format!("{{\"n\":{n},\"i\":{i}}}"), ts));
                }
            }
            push(n, left, right);
        }
        push(14, vec![("k0".into(), "far".into(), 1000)], Vec::new());
        push(15, Vec::new(), Vec::new());
        push(16, Vec::new(), Vec::new());
        out
    }

    /// What a batch gives: the pairs of each side's call, the late count,
    /// the records set aside (with reasons) and those refused.
    type Seen = (Batch, Batch, u64, Vec<(Vec<u8>, String)>, Vec<Vec<u8>>);

    fn run(op: &mut dyn Operator, s: &Step) -> Seen {
        let mut outs = [Batch::new(), Batch::new()];
        for (input, records) in [&s.left, &s.right].into_iter().enumerate() {
            let mut batch = Batch::new();
            for (k, v, t) in records {
                batch.push(Some(k.as_bytes()), v.as_bytes(), *t);
            }
            let ctx = BatchContext {
                input,
                ..s.ctx.clone()
            };
            outs[input] = op.process_with(&mut batch, &ctx).unwrap();
        }
        let side = op.side_output();
        let diverted = side.diverted.into_iter().map(|d| (d.value, d.reason));
        let refused = side.refused.into_iter().map(|d| d.value);
        let [left, right] = outs;
        (
            left,
            right,
            side.late,
            diverted.collect(),
            refused.collect(),
        )
    }

    /// Not after these steps: some checkpoints hold several batches.
    fn checkpoint_after(n: usize) -> bool {
        ![2, 5, 8, 11].contains(&n)
    }

    #[test]
    fn a_resumed_join_goes_on_as_the_one_that_never_stopped() {
        let tumbling = [("window", "tumbling"), ("length", "10ms")];
        let sliding = [("window", "sliding"), ("length", "20ms"), ("slide", "5ms")];
        let lateness = [
            ("watermark_delay", "3ms"),
            ("allowed_lateness", "5ms"),
            ("late", "dead-letter"),
        ];
        for window in [&tumbling[..], &sliding[..]] {
            // Unlimited; few pairs per batch; little state.
            for (state, join_output) in [(u64::MAX, u64::MAX), (u64::MAX, 6), (3_000, u64::MAX)] {
                let mut settings = window.to_vec();
                settings.extend(lateness);
                let cfg = config(&settings);
                let make = || Box::new(limited(&cfg, state, join_output)) as Box<dyn Operator>;
                let steps = steps();
                let mut taken = Vec::new();
                for resume in (1..steps.len()).filter(|r| checkpoint_after(r - 1)) {
                    taken = resume_matches(&make, &steps, &run, &checkpoint_after, resume);
                }
                // Step 15 forgets every window before the one far ahead.
                let at = taken.iter().position(|t| t.step == 15).unwrap();
                let (before, purge, quiet) = (taken[at - 1], taken[at], taken[at + 1]);
                assert!(
                    purge.deletes > 0 && purge.entries < before.entries,
                    "{settings:?}: {before:?} then {purge:?}"
                );
                // The record far ahead, in each of its windows, and the
                // pairs of the last batch.
                let windows = if window == tumbling { 1 } else { 4 };
                assert!(purge.entries == windows || purge.entries == windows + 1);
                assert_eq!((quiet.puts, quiet.deletes), (0, 0), "{settings:?}");
            }
        }
    }

    #[test]
    fn a_checkpoint_writes_the_records_buffered_since_the_last_only() {
        let cfg = config(&[("window", "tumbling"), ("length", "1s")]);
        let mut a = limited(&cfg, u64::MAX, u64::MAX);
        a.track_changes();
        let mut merged = Merged::default();
        let mut batch = Batch::new();
        for k in 0..1000 {
            batch.push(Some(format!("key-{k}").as_bytes()), b"L", 1);
        }
        a.process_with(&mut batch, &BatchContext::default())
            .unwrap();
        assert_eq!(merged.checkpoint(&mut a), (1000, 0));
        let mut batch = Batch::new();
        for k in 500..510 {
            batch.push(Some(format!("key-{k}").as_bytes()), b"R", 2);
        }
        let right = BatchContext {
            input: 1,
            batch_no: 1,
            ..BatchContext::default()
        };
        let out = a.process_with(&mut batch, &right).unwrap();
        assert_eq!(out.len(), 10);
        // Ten records, and the count of the batch's pairs.
        assert_eq!(merged.checkpoint(&mut a), (11, 0));
        assert_eq!(merged.checkpoint(&mut a), (0, 0));
        assert_eq!(merged.entries.len(), 1011);
    }

    #[test]
    fn a_restored_join_keeps_its_counts_of_state_and_output() {
        let cfg = config(&[("window", "tumbling"), ("length", "10ms")]);
        let mut a = limited(&cfg, u64::MAX, 7);
        a.track_changes();
        let mut merged = Merged::default();
        let left = BatchContext::default();
        let right = BatchContext {
            input: 1,
            ..left.clone()
        };
        let mut l = Batch::new();
        for (v, t) in [("L1", 1), ("L2", 2), ("L3", 3)] {
            l.push(Some(b"k"), v.as_bytes(), t);
        }
        a.process_with(&mut l, &left).unwrap();
        let mut r = Batch::new();
        for (v, t) in [("R1", 4), ("R2", 5)] {
            r.push(Some(b"k"), v.as_bytes(), t);
        }
        assert_eq!(a.process_with(&mut r, &right).unwrap().len(), 6);
        merged.checkpoint(&mut a);
        let held = a.budget.held();
        let mut b = limited(&cfg, held, 7);
        b.restore_entries(&merged.entries()).unwrap();
        assert_eq!(b.budget.held(), held);
        assert_eq!(b.emitted, (0, 6));
        // Within the same batch a record of three more pairs passes 7 in
        // both, and a new record passes the restored state limit.
        for op in [&mut a, &mut b] {
            let mut r = Batch::new();
            r.push(Some(b"k"), b"R3", 6);
            assert!(op.process_with(&mut r, &right).unwrap().is_empty());
            let side = op.side_output();
            assert!(matches!(
                side.breach,
                Some(OperatorError::Limit {
                    limit: Limit::JoinOutput,
                    ..
                })
            ));
        }
        let mut l = Batch::new();
        l.push(Some(b"k"), b"L4", 7);
        b.process_with(
            &mut l,
            &BatchContext {
                batch_no: 1,
                ..left
            },
        )
        .unwrap();
        assert!(matches!(
            b.side_output().breach,
            Some(OperatorError::Limit {
                limit: Limit::State,
                ..
            })
        ));
        let err = limited(&cfg, held - 1, 7)
            .restore_entries(&merged.entries())
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("the checkpoint's records of key \"k\""),
            "{err}"
        );
        // A gap in a key's records is refused.
        let mut entries = merged.entries();
        entries.retain(|(_, v)| !v.ends_with(b"L2"));
        let err = limited(&cfg, u64::MAX, 7)
            .restore_entries(&entries)
            .unwrap_err();
        assert!(err.to_string().contains("not numbered in order"), "{err}");
    }
}
