//! An `aggregate`'s state as checkpoint entries: one per running total and
//! per window, so that a checkpoint writes the totals and windows that
//! changed since the last one, and a window the watermark passed as a
//! delete.
//!
//! An entry's key is its kind, the group's key as optional bytes (`None`:
//! the records without a key) and, for a window, its bounds:
//!
//! - `T` key: a running total;
//! - `W` key start end: a tumbling or sliding window;
//! - `S` key start end: one session window of a key.
//!
//! Its value is the accumulator — count (`u64`), sum, min and max (`f64`),
//! the latest timestamp (`i64`) — and the entry's flag (`bool`): for a total,
//! whether it changed in the batch; for a window, whether it changed since
//! it was last emitted (a closed window within the allowed lateness is
//! emitted again only if a record changes it).

use super::{
    Acc, Aggregate, Key, WindowState, key_name, session_bytes, session_key_bytes, total_bytes,
    window_bytes,
};
use crate::model::time::{Sessions, Window, WindowKind};
use crate::operators::changes::corrupt;
use crate::operators::{Changes, Decoder, Encoder, OperatorError, StateWriter};
use std::collections::HashMap;

/// The kind of a running total's entry.
pub(super) const TOTAL: u8 = b'T';
/// The kind of a tumbling or sliding window's entry.
pub(super) const WINDOW: u8 = b'W';
/// The kind of a session window's entry.
pub(super) const SESSION: u8 = b'S';

/// Records that the entry of `kind` for the group `key` (and the window
/// `w`) changed: nothing is built unless changes are tracked.
#[inline]
pub(super) fn touch(changes: &mut Changes, kind: u8, key: Option<&[u8]>, w: Option<Window>) {
    changes.touch_built(|e| {
        e.tag(kind).opt_bytes(key);
        if let Some(w) = w {
            e.i64(w.start).i64(w.end);
        }
    });
}

/// Records the sessions of `key` that a record at `ts` merges into one
/// ([`Sessions::add`]): they go, and the merged session takes their place.
pub(super) fn touch_merged(
    changes: &mut Changes,
    key: Option<&[u8]>,
    sessions: &Sessions<(Acc, bool)>,
    ts: i64,
    gap: i64,
) {
    if !changes.is_on() {
        return;
    }
    // The sessions `Sessions::overlapping` counts.
    let end = ts.saturating_add(gap);
    for (w, _) in &sessions.windows {
        if w.start < end && ts < w.end {
            touch(changes, SESSION, key, Some(*w));
        }
    }
}

/// An entry's key, read back.
struct EntryKey<'a> {
    kind: u8,
    key: Option<&'a [u8]>,
    window: Option<Window>,
}

fn read_key(bytes: &[u8]) -> Result<EntryKey<'_>, OperatorError> {
    let mut d = Decoder(bytes);
    let kind = d.tag()?;
    let key = d.opt_bytes()?;
    let window = match kind {
        TOTAL => None,
        WINDOW | SESSION => Some(Window {
            start: d.i64()?,
            end: d.i64()?,
        }),
        other => return Err(corrupt(&format!("unknown aggregate entry kind {other}"))),
    };
    if !d.is_empty() {
        return Err(corrupt(
            "an aggregate entry's key is longer than its fields",
        ));
    }
    Ok(EntryKey { kind, key, window })
}

fn write_value(acc: &Acc, flag: bool) -> Vec<u8> {
    let mut e = Encoder::new();
    put_value(&mut e, acc, flag);
    e.finish()
}

fn put_value(e: &mut Encoder, acc: &Acc, flag: bool) {
    e.u64(acc.count)
        .f64(acc.sum)
        .f64(acc.min)
        .f64(acc.max)
        .i64(acc.last_ts)
        .bool(flag);
}

fn read_value(bytes: &[u8]) -> Result<(Acc, bool), OperatorError> {
    let mut d = Decoder(bytes);
    let acc = Acc {
        count: d.u64()?,
        sum: d.f64()?,
        min: d.f64()?,
        max: d.f64()?,
        last_ts: d.i64()?,
    };
    let flag = d.bool()?;
    if !d.is_empty() {
        return Err(corrupt(
            "an aggregate entry's value is longer than its fields",
        ));
    }
    Ok((acc, flag))
}

fn kind_name(kind: u8) -> &'static str {
    match kind {
        TOTAL => "running totals",
        WINDOW => "tumbling or sliding windows",
        _ => "session windows",
    }
}

impl Aggregate {
    /// The kind of entries this instance keeps.
    fn kind(&self) -> u8 {
        match self.cfg.window {
            None => TOTAL,
            Some(WindowKind::Session { .. }) => SESSION,
            Some(_) => WINDOW,
        }
    }

    /// The total or window an entry's key names, if it is still held.
    fn held(&self, e: &EntryKey<'_>) -> Option<(Acc, bool)> {
        let owned = || e.key.map(<[u8]>::to_vec);
        match (e.kind, e.window) {
            (TOTAL, _) => match e.key {
                Some(k) => self.totals.get(k).copied(),
                None => self.unkeyed,
            },
            (WINDOW, Some(w)) => self.windows.get(&(owned(), w)).map(|s| (s.acc, s.dirty)),
            (SESSION, Some(w)) => self
                .sessions
                .get(&owned())?
                .windows
                .iter()
                .find(|(sw, _)| *sw == w)
                .map(|(_, a)| *a),
            _ => None,
        }
    }

    /// [`crate::operators::Operator::checkpoint`]: a put for each total or
    /// window changed since the last call, a delete for each forgotten.
    pub(super) fn write_changes(&mut self, out: &mut dyn StateWriter) -> Result<(), OperatorError> {
        // Two buffers for every entry: no allocation per entry, and no
        // order (the store merges by key).
        let (mut key, mut value) = (Encoder::new(), Encoder::new());
        for (k, w) in std::mem::take(&mut self.window_log) {
            key.0.clear();
            key.tag(WINDOW)
                .opt_bytes(k.as_deref())
                .i64(w.start)
                .i64(w.end);
            match self.windows.get_mut(&(k, w)) {
                Some(st) => {
                    st.logged = false;
                    value.0.clear();
                    put_value(&mut value, &st.acc, st.dirty);
                    out.put(&key.0, &value.0);
                }
                None => out.delete(&key.0),
            }
        }
        for k in self.changes.take() {
            match self.held(&read_key(&k)?) {
                Some((acc, flag)) => out.put(&k, &write_value(&acc, flag)),
                None => out.delete(&k),
            }
        }
        Ok(())
    }

    /// [`crate::operators::Operator::restore_entries`]: the totals or
    /// windows of `entries` replace the state, counted against the `state`
    /// limit as they were when they were made.
    pub(super) fn take_entries(
        &mut self,
        entries: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<(), OperatorError> {
        self.totals.clear();
        self.unkeyed = None;
        self.windows.clear();
        self.sessions.clear();
        self.budget.clear();
        let kind = self.kind();
        let mut sessions: HashMap<Key, Sessions<(Acc, bool)>> = HashMap::new();
        for (k, v) in entries {
            let e = read_key(k)?;
            if e.kind != kind {
                return Err(corrupt(&format!(
                    "an entry of {} in the state of an aggregate of {}",
                    kind_name(e.kind),
                    kind_name(kind)
                )));
            }
            let (acc, flag) = read_value(v)?;
            let len = e.key.map_or(0, <[u8]>::len);
            match e.window {
                None => {
                    self.budget.admit(total_bytes(len), || {
                        format!("the checkpoint's total for {}", key_name(e.key))
                    })?;
                    match e.key {
                        Some(key) => {
                            self.totals.insert(key.to_vec(), (acc, flag));
                        }
                        None => self.unkeyed = Some((acc, flag)),
                    }
                }
                Some(w) if kind == WINDOW => {
                    self.budget.admit(window_bytes(len), || {
                        format!("the checkpoint's window of {}", key_name(e.key))
                    })?;
                    let st = WindowState {
                        acc,
                        dirty: flag,
                        logged: false,
                    };
                    self.windows.insert((e.key.map(<[u8]>::to_vec), w), st);
                }
                Some(w) => sessions
                    .entry(e.key.map(<[u8]>::to_vec))
                    .or_insert_with(|| Sessions {
                        windows: Vec::new(),
                    })
                    .windows
                    .push((w, (acc, flag))),
            }
        }
        for (key, mut held) in sessions {
            let bytes = session_key_bytes(key.as_ref().map_or(0, Vec::len))
                + held.windows.len() as u64 * session_bytes();
            self.budget.admit(bytes, || {
                format!("the checkpoint's sessions of {}", key_name(key.as_deref()))
            })?;
            held.windows.sort_unstable_by_key(|(w, _)| w.start);
            self.sessions.insert(key, held);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::AggregateConfig;
    use super::*;
    use crate::model::batch::Batch;
    use crate::operators::changes::testing::{Merged, Taken, resume_matches};
    use crate::operators::{BatchContext, Operator};
    use crate::spec::limits::{Limit, Limits};

    fn config(settings: &[(&str, &str)]) -> AggregateConfig {
        let pairs: Vec<(String, String)> = settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        AggregateConfig::parse(&pairs).unwrap()
    }

    fn limited(cfg: &AggregateConfig, state: u64) -> Aggregate {
        let limits = Limits {
            state,
            ..Limits::default()
        };
        Aggregate::new(cfg.clone(), &limits)
    }

    /// One micro-batch: its records (key, value, event time) and context.
    struct Step {
        records: Vec<(Option<String>, String, i64)>,
        ctx: BatchContext,
    }

    fn step(max: &mut Option<i64>, n: i64, records: Vec<(Option<String>, String, i64)>) -> Step {
        let before = *max;
        *max = (*max).max(records.iter().map(|r| r.2).max());
        let ctx = BatchContext {
            batch_no: n as u64,
            max_event_time_before: before,
            max_event_time_after: *max,
            processing_time: n * 10,
            has_records: !records.is_empty(),
            ..BatchContext::default()
        };
        Step { records, ctx }
    }

    /// Batches of records of four keys and none, their event times moving
    /// on by 10ms a batch, out of order by up to 8ms and some by 20ms more
    /// (late, or within the allowed lateness of a window already emitted),
    /// every fifth batch without records; then a batch far ahead that
    /// closes every window, one that changes nothing, and the end.
    fn steps() -> Vec<Step> {
        let mut x: u64 = 7;
        let mut next = move |n: u64| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 33) % n) as i64
        };
        let mut max = None;
        let mut out = Vec::new();
        for n in 0..14 {
            let mut records = Vec::new();
            if n % 5 != 3 {
                for _ in 0..6 {
                    let k = next(5);
                    let key = (k < 4).then(|| format!("k{k}"));
                    let ts = n * 10 + next(17) - 8 - 20 * i64::from(next(6) == 0);
                    records.push((key, (next(9) + 1).to_string(), ts));
                }
            }
            out.push(step(&mut max, n, records));
        }
        let far = vec![(Some("k0".to_string()), "1".to_string(), 1000)];
        out.push(step(&mut max, 14, far));
        out.push(step(&mut max, 15, Vec::new()));
        let mut end = step(&mut max, 16, Vec::new());
        end.ctx.end_of_input = true;
        out.push(end);
        out
    }

    /// What a batch gives: what `process` and `finish_batch` return, the
    /// late count, the records set aside (with reasons) and those refused.
    type Seen = (Batch, Batch, u64, Vec<(Vec<u8>, String)>, Vec<Vec<u8>>);

    fn run(op: &mut dyn Operator, s: &Step) -> Seen {
        let mut input = Batch::new();
        for (k, v, t) in &s.records {
            input.push(k.as_deref().map(str::as_bytes), v.as_bytes(), *t);
        }
        let processed = op.process_with(&mut input, &s.ctx).unwrap();
        let finished = op.finish_batch(&s.ctx).unwrap();
        let side = op.side_output();
        let diverted = side.diverted.into_iter().map(|d| (d.value, d.reason));
        let refused = side.refused.into_iter().map(|d| d.value);
        (
            processed,
            finished,
            side.late,
            diverted.collect(),
            refused.collect(),
        )
    }

    /// Not after these steps: some checkpoints hold several batches.
    fn checkpoint_after(n: usize) -> bool {
        ![2, 5, 8, 11].contains(&n)
    }

    /// Resumes after every checkpoint, each time comparing with the
    /// uninterrupted run; returns the checkpoints of the last run.
    fn resume_everywhere(settings: &[(&str, &str)], state: u64) -> Vec<Taken> {
        let cfg = config(settings);
        let make = || Box::new(limited(&cfg, state)) as Box<dyn Operator>;
        let steps = steps();
        let mut taken = Vec::new();
        for resume in (1..steps.len()).filter(|r| checkpoint_after(r - 1)) {
            taken = resume_matches(&make, &steps, &run, &checkpoint_after, resume);
        }
        // Nothing changes in step 15.
        let quiet = taken.iter().find(|t| t.step == 15).unwrap();
        assert_eq!((quiet.puts, quiet.deletes), (0, 0), "{settings:?}");
        taken
    }

    /// Step 14 closes every window: its checkpoint deletes them.
    fn assert_purged_windows_are_deleted(taken: &[Taken], settings: &[(&str, &str)]) {
        let at = taken.iter().position(|t| t.step == 14).unwrap();
        let (before, purge) = (taken[at - 1], taken[at]);
        assert!(
            purge.deletes > 0 && purge.entries < before.entries,
            "{settings:?}: {before:?} then {purge:?}"
        );
        let end = taken.last().unwrap();
        assert_eq!((end.step, end.entries), (16, 0), "{settings:?}");
    }

    #[test]
    fn a_resumed_window_aggregate_goes_on_as_the_one_that_never_stopped() {
        let tumbling = [("window", "tumbling"), ("length", "10ms")];
        let sliding = [("window", "sliding"), ("length", "20ms"), ("slide", "5ms")];
        for window in [&tumbling[..], &sliding[..]] {
            for mode in ["final", "update"] {
                for state in [u64::MAX, 2_000] {
                    let mut settings = window.to_vec();
                    settings.extend([
                        ("function", "sum"),
                        ("mode", mode),
                        ("watermark_delay", "3ms"),
                        ("allowed_lateness", "5ms"),
                        ("late", "dead-letter"),
                    ]);
                    let taken = resume_everywhere(&settings, state);
                    assert_purged_windows_are_deleted(&taken, &settings);
                }
            }
        }
    }

    #[test]
    fn a_resumed_session_aggregate_goes_on_as_the_one_that_never_stopped() {
        for mode in ["final", "update"] {
            for state in [u64::MAX, 1_500] {
                let settings = [
                    ("function", "max"),
                    ("mode", mode),
                    ("window", "session"),
                    ("gap", "6ms"),
                    ("allowed_lateness", "4ms"),
                ];
                let taken = resume_everywhere(&settings, state);
                assert_purged_windows_are_deleted(&taken, &settings);
            }
        }
    }

    #[test]
    fn resumed_running_totals_go_on_as_the_ones_that_never_stopped() {
        for (function, mode) in [("sum", "update"), ("avg", "complete"), ("count", "update")] {
            for state in [u64::MAX, 400] {
                let settings = [("function", function), ("mode", mode)];
                let taken = resume_everywhere(&settings, state);
                // Totals are never forgotten.
                assert!(taken.iter().all(|t| t.deletes == 0), "{taken:?}");
            }
        }
    }

    /// Runs a batch of records of keys `keys` at `ts` through `a`.
    fn keys_at(a: &mut Aggregate, keys: std::ops::Range<u32>, ts: i64) {
        let mut input = Batch::new();
        for k in keys {
            input.push(Some(format!("key-{k}").as_bytes()), b"2", ts);
        }
        let ctx = BatchContext {
            max_event_time_after: Some(ts),
            has_records: true,
            ..BatchContext::default()
        };
        a.process_with(&mut input, &ctx).unwrap();
        a.finish_batch(&ctx).unwrap();
    }

    #[test]
    fn a_checkpoint_writes_the_entries_that_changed_only() {
        let windowed = [
            ("function", "sum"),
            ("window", "tumbling"),
            ("length", "1s"),
        ];
        let settings: [&[(&str, &str)]; 3] = [
            &[("function", "sum")],
            &[("function", "sum"), ("mode", "complete")],
            &windowed,
        ];
        for settings in settings {
            let mut a = limited(&config(settings), u64::MAX);
            a.track_changes();
            let mut merged = Merged::default();
            keys_at(&mut a, 0..1000, 10);
            assert_eq!(merged.checkpoint(&mut a), (1000, 0), "{settings:?}");
            keys_at(&mut a, 500..510, 20);
            assert_eq!(merged.checkpoint(&mut a), (10, 0), "{settings:?}");
            assert_eq!(merged.entries.len(), 1000);
            keys_at(&mut a, 0..0, 30);
            assert_eq!(merged.checkpoint(&mut a), (0, 0), "{settings:?}");
        }
    }

    #[test]
    fn restored_entries_count_against_the_state_limit() {
        let cfg = config(&[("function", "count"), ("window", "session"), ("gap", "5ms")]);
        let mut a = limited(&cfg, u64::MAX);
        a.track_changes();
        let mut merged = Merged::default();
        let mut input = Batch::new();
        for (k, ts) in [("a", 1), ("a", 20), ("b", 3), ("a", 4)] {
            input.push(Some(k.as_bytes()), b"x", ts);
        }
        a.process(&mut input).unwrap();
        a.finish_batch(&BatchContext::default()).unwrap();
        merged.checkpoint(&mut a);
        // Three sessions of two keys.
        assert_eq!(merged.entries.len(), 3);
        let held = a.budget.held();
        assert_eq!(held, 2 * session_key_bytes(1) + 3 * session_bytes());
        let mut b = limited(&cfg, held);
        b.restore_entries(&merged.entries()).unwrap();
        assert_eq!(b.budget.held(), held);
        let err = limited(&cfg, held - 1)
            .restore_entries(&merged.entries())
            .unwrap_err();
        assert!(
            matches!(&err, OperatorError::Limit { limit: Limit::State, detail, .. }
                if detail.contains("the checkpoint's sessions of key")),
            "{err:?}"
        );
        // Entries of another kind of aggregate, or cut short, are refused.
        let totals = config(&[("function", "count")]);
        let err = limited(&totals, u64::MAX)
            .restore_entries(&merged.entries())
            .unwrap_err();
        assert!(
            err.to_string().contains(
                "an entry of session windows in the state of an aggregate of running totals"
            ),
            "{err}"
        );
        let (k, v) = merged.entries().remove(0);
        let short = [(k, v[..v.len() - 1].to_vec())];
        assert!(limited(&cfg, u64::MAX).restore_entries(&short).is_err());
    }
}
