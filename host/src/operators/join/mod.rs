//! The built-in `join`: an inner equi-join of two keyed streams within a
//! window (Flink's window join; Nexmark's people ⋈ auctions).
//!
//! Two records join when they come from the two named streams, have equal
//! keys and fall into the same window. A pair is emitted as soon as its
//! second record arrives, once per window the two share, so results do not
//! wait for the window to close. A window's records are forgotten once the
//! watermark has passed its end plus the allowed lateness; a record for such
//! a window is late (counted, and sent to the dead-letter file with
//! `late = "dead-letter"`).
//!
//! The output record has the join key, the later of the two timestamps and
//! the value `{"window_start":..,"window_end":..,"left":..,"right":..}`,
//! where a side that is valid JSON is embedded as it is and any other value
//! as a JSON string.
//!
//! State is held per partition; the exchange before the join puts all
//! records of a key, from both streams, in one partition. Two of the job's
//! limits hold it: `state`, the bytes of the records it buffers (with their
//! windows and keys), and `join_output`, the records it emits for one
//! micro-batch. A record that would take either past its limit is refused
//! ([`SideOutput::refuse`]): it is neither buffered nor paired, and the
//! records before and after it are joined as usual.
//!
//! A checkpoint holds one entry per buffered record ([`state`]).

mod state;

use crate::model::batch::{Batch, Headers, preview};
use crate::model::time::{TimeDomain, Window, WindowKind};
use crate::operators::budget::{StateBudget, entry_bytes};
use crate::operators::window::{SettingError, WindowSettings};
use crate::operators::{
    BatchContext, Changes, Operator, OperatorError, OperatorFactory, RejectedRecord, SideOutput,
    StateWriter, WatermarkRules,
};
use crate::spec::limits::{Limit, Limits};
use std::collections::BTreeMap;

/// Settings the operator accepts.
pub const SETTINGS: &[&str] = &[
    "left",
    "right",
    "window",
    "length",
    "slide",
    "gap",
    "time",
    "watermark_delay",
    "allowed_lateness",
    "late",
    "max_future",
    "idle_timeout",
];

/// A parsed `join` configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinConfig {
    /// The stream whose records are the left side.
    pub left: String,
    /// The stream whose records are the right side.
    pub right: String,
    /// The window both records must share.
    pub window: WindowKind,
    /// Clock, watermark and lateness.
    pub settings: WindowSettings,
}

impl JoinConfig {
    /// Parses the operator's settings, naming the setting at fault.
    pub fn parse(pairs: &[(String, String)]) -> Result<Self, SettingError> {
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        if let Some((k, _)) = pairs.iter().find(|(k, _)| !SETTINGS.contains(&k.as_str())) {
            return Err((
                k.clone(),
                format!("unknown setting (accepted: {})", SETTINGS.join(", ")),
            ));
        }
        let side = |k: &str| match get(k) {
            Some(s) if !s.is_empty() => Ok(s.to_string()),
            _ => Err((
                k.to_string(),
                "required: the name of a source (its `name`) or of an earlier join".to_string(),
            )),
        };
        let (left, right) = (side("left")?, side("right")?);
        if left == right {
            return Err((
                "right".into(),
                format!("joins {left:?} with itself; name two different streams"),
            ));
        }
        let settings = WindowSettings::parse(&get)?;
        let window = match settings.window {
            Some(w @ (WindowKind::Tumbling { .. } | WindowKind::Sliding { .. })) => w,
            Some(WindowKind::Session { .. }) => {
                return Err((
                    "window".into(),
                    "a join needs tumbling or sliding windows (accepted: tumbling, sliding)".into(),
                ));
            }
            None => {
                return Err((
                    "window".into(),
                    "required: a join pairs records within a window (accepted: tumbling, sliding)"
                        .into(),
                ));
            }
        };
        Ok(JoinConfig {
            left,
            right,
            window,
            settings,
        })
    }
}

/// Makes one [`Join`] state per partition.
pub struct JoinFactory {
    name: String,
    config: JoinConfig,
}

impl JoinFactory {
    /// A `join` operator called `name`. Its output is the stream `name`.
    pub fn new(name: impl Into<String>, config: JoinConfig) -> Self {
        JoinFactory {
            name: name.into(),
            config,
        }
    }
}

impl OperatorFactory for JoinFactory {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "join"
    }
    fn keyed(&self) -> bool {
        true
    }
    fn stateful(&self) -> bool {
        true
    }
    fn inputs(&self) -> Option<Vec<String>> {
        Some(vec![self.config.left.clone(), self.config.right.clone()])
    }
    fn output_stream(&self) -> Option<String> {
        Some(self.name.clone())
    }
    fn watermark_rules(&self) -> WatermarkRules {
        self.config.settings.watermark
    }
    fn instantiate(&self, job: &str, worker: usize) -> Result<Box<dyn Operator>, OperatorError> {
        self.instantiate_limited(job, worker, &Limits::default())
    }
    fn instantiate_limited(
        &self,
        _job: &str,
        _worker: usize,
        limits: &Limits,
    ) -> Result<Box<dyn Operator>, OperatorError> {
        Ok(Box::new(Join::new(self.config.clone(), limits)))
    }
}

/// One buffered record of one side.
struct Row {
    value: Vec<u8>,
    timestamp: i64,
}

/// The records of one key in one window, by side.
#[derive(Default)]
struct Sides {
    left: Vec<Row>,
    right: Vec<Row>,
}

/// The keys of one window, and the state bytes they and the window hold.
struct Keys {
    bytes: u64,
    keys: hashbrown::HashMap<Vec<u8>, Sides, rustc_hash::FxBuildHasher>,
}

/// The state bytes of a window.
fn window_bytes() -> u64 {
    entry_bytes(0, std::mem::size_of::<((i64, i64), Keys)>())
}

/// The state bytes of a key of `key` bytes in a window.
fn key_bytes(key: usize) -> u64 {
    entry_bytes(key, std::mem::size_of::<Sides>())
}

/// The state bytes of a buffered record with a value of `value` bytes.
fn row_bytes(value: usize) -> u64 {
    entry_bytes(0, std::mem::size_of::<Row>() + value)
}

/// One worker's join state: per window (ordered by end, so closed windows
/// are dropped from the front), per key, both sides' records.
pub struct Join {
    cfg: JoinConfig,
    windows: BTreeMap<(i64, i64), Keys>,
    side: SideOutput,
    scratch: Vec<Window>,
    /// The bytes of the windows, keys and records buffered.
    budget: StateBudget,
    /// The job's `join_output`.
    max_output: u64,
    /// The micro-batch being joined, and the records emitted for it so far
    /// (over the calls for both streams).
    emitted: (u64, u64),
    /// The entries changed since the last checkpoint ([`state`]).
    changes: Changes,
}

impl Join {
    fn new(cfg: JoinConfig, limits: &Limits) -> Self {
        Join {
            cfg,
            windows: BTreeMap::new(),
            side: SideOutput::default(),
            scratch: Vec::new(),
            budget: StateBudget::new(limits.state),
            max_output: limits.join_output,
            emitted: (0, 0),
            changes: Changes::default(),
        }
    }

    fn watermark(&self, max_event_time: Option<i64>) -> i64 {
        crate::model::time::watermark(max_event_time, self.cfg.settings.watermark_delay)
    }

    /// The watermark below which windows are closed for good, as of the
    /// start of this batch (the same for every record of the batch, whichever
    /// stream it comes from).
    fn closed_below(&self, ctx: &BatchContext) -> i64 {
        match self.cfg.settings.time {
            TimeDomain::Event => self.watermark(ctx.max_event_time_before),
            // Processing-time windows close with the clock; records of this
            // batch all carry the batch's time, so none is ever late.
            TimeDomain::Processing => i64::MIN,
        }
    }

    fn purge(&mut self, watermark: i64) {
        let lateness = self.cfg.settings.allowed_lateness;
        while let Some((&(end, _), _)) = self.windows.first_key_value() {
            if end.saturating_add(lateness) > watermark {
                break;
            }
            if let Some((window, keys)) = self.windows.pop_first() {
                self.budget.release(keys.bytes);
                state::touch_window(&mut self.changes, window, &keys);
            }
        }
    }

    /// What taking a record of `key` with `value` bytes into the open
    /// windows `wins` would mean: the pairs it makes (with the records of
    /// the other side) and the state bytes it adds.
    fn cost(&self, wins: &[Window], key: &[u8], value: usize, from_left: bool) -> (u64, u64) {
        let (mut pairs, mut bytes) = (0, 0);
        for w in wins {
            bytes += row_bytes(value);
            match self.windows.get(&(w.end, w.start)) {
                None => bytes += window_bytes() + key_bytes(key.len()),
                Some(k) => match k.keys.get(key) {
                    None => bytes += key_bytes(key.len()),
                    Some(sides) => {
                        let other = if from_left { &sides.right } else { &sides.left };
                        pairs += other.len() as u64;
                    }
                },
            }
        }
        (pairs, bytes)
    }

    /// The breach of `join_output` that `pairs` more output records for
    /// the batch would be, if they do not fit.
    fn output_breach(&self, pairs: u64, key: &[u8]) -> Option<OperatorError> {
        let emitted = self.emitted.1;
        (emitted.saturating_add(pairs) > self.max_output).then(|| OperatorError::Limit {
            limit: Limit::JoinOutput,
            value: self.max_output.to_string(),
            detail: format!(
                "a record of key {} would add {pairs} pair(s) to the {emitted} record(s) \
                 the join already emitted for this batch and partition",
                preview(key)
            ),
        })
    }

    fn late(&mut self, key: &[u8], value: &[u8], ts: i64, headers: Headers<'_>, wm: i64) {
        let divert = self.cfg.settings.late_to_dead_letter;
        self.side
            .late_record(divert, Some(key), value, ts, headers, || {
                format!("late: every join window of timestamp {ts} closed at watermark {wm}")
            });
    }
}

impl Operator for Join {
    fn process(&mut self, input: &mut Batch) -> Result<Batch, OperatorError> {
        self.process_with(input, &BatchContext::default())
    }

    fn process_with(
        &mut self,
        input: &mut Batch,
        ctx: &BatchContext,
    ) -> Result<Batch, OperatorError> {
        // Check every record before touching state: a batch with rejected
        // records is retried without them and must not join twice.
        let unkeyed: Vec<RejectedRecord> = input
            .iter()
            .filter(|r| r.key.is_none())
            .map(|r| RejectedRecord {
                index: r.index,
                reason: "a joined record needs a key: set one upstream (for example with \
                         the json-field operator)"
                    .into(),
            })
            .collect();
        if !unkeyed.is_empty() {
            return Err(OperatorError::BadRecords(unkeyed));
        }
        let closed = self.closed_below(ctx);
        self.purge(closed);
        if self.emitted.0 != ctx.batch_no {
            if self.emitted.1 != 0 {
                state::touch_emitted(&mut self.changes);
            }
            self.emitted = (ctx.batch_no, 0);
        }
        let from_left = ctx.input == 0;
        let lateness = self.cfg.settings.allowed_lateness;
        let mut out = Batch::new();
        let mut value = Vec::new();
        let rules = self.cfg.settings.watermark;
        for r in input.iter() {
            let key = r.key.unwrap_or_default();
            if self.cfg.settings.time == TimeDomain::Event
                && self
                    .side
                    .set_aside_if_far_ahead(rules, &r, ctx.processing_time)
            {
                continue;
            }
            let ts = match self.cfg.settings.time {
                TimeDomain::Event => r.timestamp,
                TimeDomain::Processing => ctx.processing_time,
            };
            let mut wins = std::mem::take(&mut self.scratch);
            self.cfg.window.assign(ts, &mut wins);
            // Windows closed for good take nothing.
            wins.retain(|w| w.end.saturating_add(lateness) > closed);
            if wins.is_empty() {
                self.scratch = wins;
                self.late(key, r.value, r.timestamp, r.headers, closed);
                continue;
            }
            // All of the record's pairs and windows, or none of them.
            let (pairs, bytes) = self.cost(&wins, key, r.value.len(), from_left);
            let admitted = match self.output_breach(pairs, key) {
                Some(breach) => Err(breach),
                None => self.budget.admit(bytes, || {
                    format!("buffering a record of key {}", preview(key))
                }),
            };
            if let Err(breach) = admitted {
                self.scratch = wins;
                self.side.refuse(&r, breach);
                continue;
            }
            self.emitted.1 += pairs;
            if pairs != 0 {
                state::touch_emitted(&mut self.changes);
            }
            for w in &wins {
                let keys = self
                    .windows
                    .entry((w.end, w.start))
                    .or_insert_with(|| Keys {
                        bytes: window_bytes(),
                        keys: Default::default(),
                    });
                if !keys.keys.contains_key(key) {
                    keys.bytes += key_bytes(key.len());
                }
                keys.bytes += row_bytes(r.value.len());
                let sides = keys.keys.entry_ref(key).or_default();
                let (own, other) = if from_left {
                    (&mut sides.left, &sides.right)
                } else {
                    (&mut sides.right, &sides.left)
                };
                for o in other {
                    let (l, r_) = if from_left {
                        ((r.value, r.timestamp), (o.value.as_slice(), o.timestamp))
                    } else {
                        ((o.value.as_slice(), o.timestamp), (r.value, r.timestamp))
                    };
                    value.clear();
                    write_joined(&mut value, *w, l.0, r_.0);
                    out.push(Some(key), &value, l.1.max(r_.1));
                }
                own.push(Row {
                    value: r.value.to_vec(),
                    timestamp: r.timestamp,
                });
                let index = own.len() - 1;
                state::touch_row(&mut self.changes, (w.end, w.start), key, !from_left, index);
            }
            self.scratch = wins;
        }
        Ok(out)
    }

    // No `finish_batch`: pairs leave as they are made, and windows are
    // forgotten only as the watermark passes them, never at the end of the
    // input — the last batch is passed once per stream, and the records of
    // a later stream must still meet those of an earlier one.

    fn side_output(&mut self) -> SideOutput {
        std::mem::take(&mut self.side)
    }

    fn track_changes(&mut self) {
        self.changes.track();
    }

    fn checkpoint(&mut self, out: &mut dyn StateWriter) -> Result<(), OperatorError> {
        self.write_changes(out)
    }

    fn restore_entries(&mut self, entries: &[(Vec<u8>, Vec<u8>)]) -> Result<(), OperatorError> {
        self.take_entries(entries)
    }
}

/// Writes `{"window_start":..,"window_end":..,"left":..,"right":..}`.
fn write_joined(out: &mut Vec<u8>, w: Window, left: &[u8], right: &[u8]) {
    use std::io::Write;
    let _ = write!(
        out,
        "{{\"window_start\":{},\"window_end\":{},\"left\":",
        w.start, w.end
    );
    write_json_value(out, left);
    out.extend_from_slice(b",\"right\":");
    write_json_value(out, right);
    out.push(b'}');
}

/// A value that is JSON as it is; anything else as a JSON string.
fn write_json_value(out: &mut Vec<u8>, v: &[u8]) {
    if serde_json::from_slice::<serde::de::IgnoredAny>(v).is_ok() {
        out.extend_from_slice(v.trim_ascii());
    } else {
        let text = String::from_utf8_lossy(v);
        // Serialising a string cannot fail.
        let _ = serde_json::to_writer(&mut *out, &*text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Result<JoinConfig, SettingError> {
        JoinConfig::parse(
            &pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>(),
        )
    }

    fn batch(rows: &[(&str, &str, i64)]) -> Batch {
        let mut b = Batch::new();
        for (k, v, t) in rows {
            b.push(Some(k.as_bytes()), v.as_bytes(), *t);
        }
        b
    }

    fn values(b: &Batch) -> Vec<String> {
        b.iter()
            .map(|r| String::from_utf8(r.value.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn settings_errors_name_the_setting() {
        let base = [("left", "a"), ("right", "b")];
        let err = |extra: &[(&str, &str)]| {
            let mut p = base.to_vec();
            p.extend_from_slice(extra);
            cfg(&p).unwrap_err().0
        };
        assert_eq!(err(&[]), "window");
        assert_eq!(err(&[("window", "session"), ("gap", "1s")]), "window");
        assert_eq!(err(&[("window", "hopping")]), "window");
        assert_eq!(err(&[("window", "tumbling")]), "length");
        assert_eq!(
            err(&[("window", "tumbling"), ("length", "1s"), ("on", "x")]),
            "on"
        );
        assert_eq!(cfg(&[("left", "a")]).unwrap_err().0, "right");
        assert_eq!(
            cfg(&[
                ("left", "a"),
                ("right", "a"),
                ("window", "tumbling"),
                ("length", "1s")
            ])
            .unwrap_err()
            .0,
            "right"
        );
        let ok = cfg(&[
            ("left", "a"),
            ("right", "b"),
            ("window", "tumbling"),
            ("length", "1s"),
        ])
        .unwrap();
        assert_eq!(ok.window, WindowKind::Tumbling { length: 1000 });
    }

    #[test]
    fn pairs_within_a_window_join_once_whichever_side_comes_first() {
        let c = cfg(&[
            ("left", "p"),
            ("right", "a"),
            ("window", "tumbling"),
            ("length", "10ms"),
        ])
        .unwrap();
        let mut j = JoinFactory::new("j", c).instantiate("t", 0).unwrap();
        let left = BatchContext::default();
        let right = BatchContext {
            input: 1,
            ..BatchContext::default()
        };
        let out = j
            .process_with(&mut batch(&[("k", "{\"id\":1}", 1), ("x", "L", 2)]), &left)
            .unwrap();
        assert!(out.is_empty());
        let out = j
            .process_with(
                &mut batch(&[("k", "r1", 5), ("k", "late-window", 12), ("y", "R", 3)]),
                &right,
            )
            .unwrap();
        assert_eq!(
            values(&out),
            [r#"{"window_start":0,"window_end":10,"left":{"id":1},"right":"r1"}"#]
        );
        assert_eq!(out.get(0).unwrap().timestamp, 5);
        let out = j
            .process_with(&mut batch(&[("k", "L2", 9)]), &left)
            .unwrap();
        assert_eq!(
            values(&out),
            [r#"{"window_start":0,"window_end":10,"left":"L2","right":"r1"}"#]
        );
    }

    #[test]
    fn closed_windows_are_forgotten_and_their_records_late() {
        let c = cfg(&[
            ("left", "p"),
            ("right", "a"),
            ("window", "tumbling"),
            ("length", "10ms"),
            ("late", "dead-letter"),
        ])
        .unwrap();
        let mut j = JoinFactory::new("j", c).instantiate("t", 0).unwrap();
        let ctx = |input, before| BatchContext {
            input,
            max_event_time_before: before,
            ..BatchContext::default()
        };
        j.process_with(&mut batch(&[("k", "L", 1)]), &ctx(0, None))
            .unwrap();
        // The watermark reached 10: window [0, 10) is closed.
        let out = j
            .process_with(
                &mut batch(&[("k", "R", 2), ("k", "R2", 15)]),
                &ctx(1, Some(10)),
            )
            .unwrap();
        assert!(out.is_empty());
        let side = j.side_output();
        assert_eq!(side.late, 1);
        assert_eq!(side.diverted[0].value, b"R");
    }

    #[test]
    fn sliding_windows_emit_a_pair_per_shared_window() {
        let c = cfg(&[
            ("left", "p"),
            ("right", "a"),
            ("window", "sliding"),
            ("length", "10ms"),
            ("slide", "5ms"),
        ])
        .unwrap();
        let mut j = JoinFactory::new("j", c).instantiate("t", 0).unwrap();
        j.process_with(&mut batch(&[("k", "1", 6)]), &BatchContext::default())
            .unwrap();
        let right = BatchContext {
            input: 1,
            ..BatchContext::default()
        };
        // 6 and 7 share [0,10) and [5,15); 6 and 12 share only [5,15).
        let out = j
            .process_with(&mut batch(&[("k", "2", 7), ("k", "3", 12)]), &right)
            .unwrap();
        assert_eq!(
            values(&out),
            [
                r#"{"window_start":0,"window_end":10,"left":1,"right":2}"#,
                r#"{"window_start":5,"window_end":15,"left":1,"right":2}"#,
                r#"{"window_start":5,"window_end":15,"left":1,"right":3}"#,
            ]
        );
    }

    fn limited(join_output: u64, state: u64) -> Join {
        let c = cfg(&[
            ("left", "p"),
            ("right", "a"),
            ("window", "tumbling"),
            ("length", "10ms"),
        ])
        .unwrap();
        let limits = Limits {
            state,
            join_output,
            ..Limits::default()
        };
        Join::new(c, &limits)
    }

    fn ctx(batch_no: u64, input: usize) -> BatchContext {
        BatchContext {
            batch_no,
            input,
            ..BatchContext::default()
        }
    }

    #[test]
    fn records_whose_pairs_pass_join_output_are_refused_whole() {
        let mut j = limited(7, u64::MAX);
        j.process_with(
            &mut batch(&[("k", "L1", 1), ("k", "L2", 2), ("k", "L3", 3)]),
            &ctx(0, 0),
        )
        .unwrap();
        // Each right record pairs with the three on the left: two fit in 7.
        let out = j
            .process_with(
                &mut batch(&[
                    ("k", "R1", 4),
                    ("k", "R2", 5),
                    ("k", "R3", 6),
                    ("k", "R4", 7),
                ]),
                &ctx(0, 1),
            )
            .unwrap();
        assert_eq!(out.len(), 6);
        let side = j.side_output();
        let refused: Vec<&[u8]> = side.refused.iter().map(|d| &d.value[..]).collect();
        assert_eq!(refused, [&b"R3"[..], b"R4"]);
        assert!(
            matches!(
                &side.breach,
                Some(OperatorError::Limit { limit: Limit::JoinOutput, value, .. }) if value == "7"
            ),
            "{:?}",
            side.breach
        );
        // Refused records were not buffered, and the next batch starts its
        // count afresh: a new left record meets R1 and R2 only.
        let out = j
            .process_with(&mut batch(&[("k", "L4", 8)]), &ctx(1, 0))
            .unwrap();
        assert_eq!(
            values(&out),
            [
                r#"{"window_start":0,"window_end":10,"left":"L4","right":"R1"}"#,
                r#"{"window_start":0,"window_end":10,"left":"L4","right":"R2"}"#,
            ]
        );
        assert!(j.side_output().refused.is_empty());
    }

    #[test]
    fn records_that_pass_the_state_limit_are_refused_and_closed_windows_give_it_back() {
        // A first record holds a window, a key and a row; one more row of
        // the same size fits, a third does not.
        // The sizes docs/threat-model.md gives.
        assert_eq!(
            (window_bytes(), key_bytes(1), row_bytes(2)),
            (56 + 64, 1 + 48 + 64, 2 + 32 + 64)
        );
        let first = window_bytes() + key_bytes(1) + row_bytes(2);
        let mut j = limited(u64::MAX, first + row_bytes(2));
        j.process_with(
            &mut batch(&[("k", "L1", 1), ("k", "L2", 2), ("k", "L3", 3)]),
            &ctx(0, 0),
        )
        .unwrap();
        let side = j.side_output();
        let refused: Vec<&[u8]> = side.refused.iter().map(|d| &d.value[..]).collect();
        assert_eq!(refused, [&b"L3"[..]]);
        assert!(
            side.refused[0]
                .reason
                .contains("exceeded: buffering a record of key \"k\""),
            "{}",
            side.refused[0].reason
        );
        // Once the window has closed, its bytes are free again.
        let closed = BatchContext {
            max_event_time_before: Some(10),
            ..ctx(1, 0)
        };
        j.process_with(&mut batch(&[("k", "L5", 11), ("k", "L6", 12)]), &closed)
            .unwrap();
        assert!(j.side_output().refused.is_empty());
        assert_eq!(j.budget.held(), first + row_bytes(2));
    }

    proptest::proptest! {
        /// The bytes counted as records are buffered and windows close are
        /// the bytes of what is held.
        #[test]
        fn the_state_count_follows_the_buffers(
            batches in proptest::collection::vec(
                proptest::collection::vec(
                    (0u8..4, 0i64..30, 0usize..12, proptest::bool::ANY),
                    0..16,
                ),
                1..8,
            ),
        ) {
            let c = cfg(&[
                ("left", "p"),
                ("right", "a"),
                ("window", "sliding"),
                ("length", "20ms"),
                ("slide", "5ms"),
            ])
            .unwrap();
            let mut j = Join::new(c, &Limits::default());
            let mut max_ts: Option<i64> = None;
            for (n, records) in batches.iter().enumerate() {
                for left in [true, false] {
                    let mut input = Batch::new();
                    for (k, dt, len, _) in records.iter().filter(|r| r.3 == left) {
                        let key = format!("k{k}");
                        input.push(Some(key.as_bytes()), &vec![b'v'; *len], n as i64 * 15 + dt);
                    }
                    let before = max_ts;
                    max_ts = max_ts.max(input.timestamps.iter().copied().max());
                    let ctx = BatchContext {
                        batch_no: n as u64,
                        input: usize::from(!left),
                        max_event_time_before: before,
                        ..BatchContext::default()
                    };
                    j.process_with(&mut input, &ctx).unwrap();
                    let mut held = 0;
                    for keys in j.windows.values() {
                        let mut bytes = window_bytes();
                        for (k, sides) in &keys.keys {
                            bytes += key_bytes(k.len());
                            for row in sides.left.iter().chain(&sides.right) {
                                bytes += row_bytes(row.value.len());
                            }
                        }
                        proptest::prop_assert_eq!(keys.bytes, bytes);
                        held += bytes;
                    }
                    proptest::prop_assert_eq!(j.budget.held(), held);
                }
            }
            j.purge(i64::MAX);
            proptest::prop_assert_eq!(j.budget.held(), 0);
        }
    }

    #[test]
    fn unkeyed_records_are_rejected_before_any_state_changes() {
        let c = cfg(&[
            ("left", "p"),
            ("right", "a"),
            ("window", "tumbling"),
            ("length", "1s"),
        ])
        .unwrap();
        let mut j = JoinFactory::new("j", c).instantiate("t", 0).unwrap();
        let mut b = batch(&[("k", "L", 1)]);
        b.push(None, b"no key", 1);
        let err = j
            .process_with(&mut b, &BatchContext::default())
            .unwrap_err();
        assert!(
            matches!(err, OperatorError::BadRecords(ref r) if r[0].index == 1),
            "{err:?}"
        );
        let right = BatchContext {
            input: 1,
            ..BatchContext::default()
        };
        let out = j
            .process_with(&mut batch(&[("k", "R", 2)]), &right)
            .unwrap();
        assert!(
            out.is_empty(),
            "the rejected batch must not have been buffered"
        );
    }
}
