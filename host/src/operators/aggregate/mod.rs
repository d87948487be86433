//! The built-in `aggregate`: keyed `count`, `sum`, `min`, `max` and `avg`,
//! over all time or in tumbling, sliding or session windows, in event or
//! processing time, with watermarks and allowed lateness.
//!
//! State is held per partition: the exchange before the operator puts all
//! records of a key in one partition, each partition has its own instance,
//! and a partition always runs on the same worker, so no state is shared
//! between threads. It is held to the job's `state` limit: a record that
//! would need a new total or window past the limit is refused
//! ([`SideOutput::refuse`]) and changes nothing; records of totals and
//! windows already held are always taken.
//!
//! A checkpoint holds one entry per total and window ([`state`]).

mod config;
mod state;

use crate::model::batch::{Batch, Headers, preview};
pub use crate::model::time::TimeDomain;
use crate::model::time::{Sessions, Window, WindowKind};
use crate::operators::budget::{StateBudget, entry_bytes};
pub use crate::operators::window::SettingError;
use crate::operators::{
    BatchContext, Changes, Combiner, CountCombiner, Operator, OperatorError, OperatorFactory,
    RejectedRecord, SideOutput, StateWriter, WatermarkRules, partial_count,
};
use crate::spec::limits::Limits;
pub use config::{AggregateConfig, FUNCTIONS, Function, Mode, SETTINGS};
use std::collections::{HashMap, HashSet};

/// Makes one [`Aggregate`] state per partition.
pub struct AggregateFactory {
    name: String,
    config: AggregateConfig,
}

impl AggregateFactory {
    fn combines(&self) -> bool {
        self.config.function == Function::Count && self.config.window.is_none()
    }

    /// An `aggregate` operator called `name`.
    pub fn new(name: impl Into<String>, config: AggregateConfig) -> Self {
        AggregateFactory {
            name: name.into(),
            config,
        }
    }
}

impl OperatorFactory for AggregateFactory {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "aggregate"
    }
    fn watermark_rules(&self) -> WatermarkRules {
        self.config.watermark
    }
    fn keyed(&self) -> bool {
        true
    }
    fn stateful(&self) -> bool {
        true
    }
    /// Records without a key form one group, on one partition.
    fn unkeyed_together(&self) -> bool {
        true
    }
    fn combiner(&self) -> Option<std::sync::Arc<dyn Combiner>> {
        // Running counts combine on the map side; windowed state needs each
        // record's own timestamp, and other functions may reject values.
        self.combines()
            .then(|| std::sync::Arc::new(CountCombiner) as std::sync::Arc<dyn Combiner>)
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
        Ok(Box::new(Aggregate::new(self.config.clone(), limits)))
    }
}

/// Running values of one group.
#[derive(Debug, Clone, Copy)]
struct Acc {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    last_ts: i64,
}

impl Acc {
    fn new() -> Self {
        Acc {
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            last_ts: i64::MIN,
        }
    }
    /// Adds `n` records of value 1 (a count from [`CountCombiner`]).
    fn add_ones(&mut self, n: u64, ts: i64) {
        self.count += n;
        self.sum += n as f64;
        self.min = self.min.min(1.0);
        self.max = self.max.max(1.0);
        self.last_ts = self.last_ts.max(ts);
    }
    fn add(&mut self, x: f64, ts: i64) {
        self.count += 1;
        self.sum += x;
        self.min = self.min.min(x);
        self.max = self.max.max(x);
        self.last_ts = self.last_ts.max(ts);
    }
    fn merge(&mut self, o: Acc) {
        self.count += o.count;
        self.sum += o.sum;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        self.last_ts = self.last_ts.max(o.last_ts);
    }
    fn value(&self, f: Function) -> String {
        match f {
            Function::Count => self.count.to_string(),
            Function::Sum => self.sum.to_string(),
            Function::Min => self.min.to_string(),
            Function::Max => self.max.to_string(),
            Function::Avg => (self.sum / self.count.max(1) as f64).to_string(),
        }
    }
}

type Key = Option<Vec<u8>>;

struct WindowState {
    acc: Acc,
    /// Changed since it was last emitted.
    dirty: bool,
    /// In `window_log`: changed since the last checkpoint.
    logged: bool,
}

/// One worker's aggregation state.
pub struct Aggregate {
    cfg: AggregateConfig,
    /// Running totals per key (not windowed), with a "changed in this
    /// batch" flag; looked up by borrowed key so a hit allocates nothing.
    totals: hashbrown::HashMap<Vec<u8>, (Acc, bool), rustc_hash::FxBuildHasher>,
    /// The running total of records without a key.
    unkeyed: Option<(Acc, bool)>,
    windows: HashMap<(Key, Window), WindowState>,
    /// Per key: session windows with their accumulator and dirty flag.
    sessions: HashMap<Key, Sessions<(Acc, bool)>>,
    changed: HashSet<Key>,
    side: SideOutput,
    scratch: Vec<Window>,
    /// A record's open windows, each with whether the state holds it yet.
    slots: Vec<((Key, Window), bool)>,
    /// The bytes of the totals, windows and sessions held.
    budget: StateBudget,
    /// The totals and sessions changed since the last checkpoint, by their
    /// keys in the checkpoint ([`state`]).
    changes: Changes,
    /// The tumbling and sliding windows changed or forgotten since the last
    /// checkpoint, each once (its `logged` flag says whether it is here), so
    /// a record of a window already logged costs one flag test.
    window_log: Vec<(Key, Window)>,
}

/// The state bytes of a running total of a key with `key` bytes.
fn total_bytes(key: usize) -> u64 {
    entry_bytes(key, std::mem::size_of::<(Acc, bool)>())
}

/// The state bytes of a (tumbling or sliding) window of a key with `key`
/// bytes.
fn window_bytes(key: usize) -> u64 {
    entry_bytes(key, std::mem::size_of::<(Window, WindowState)>())
}

/// The state bytes of one session window (its key is counted once, by
/// [`session_key_bytes`]).
fn session_bytes() -> u64 {
    entry_bytes(0, std::mem::size_of::<(Window, (Acc, bool))>())
}

/// The state bytes of a key's list of sessions.
fn session_key_bytes(key: usize) -> u64 {
    entry_bytes(key, std::mem::size_of::<Sessions<(Acc, bool)>>())
}

/// How a key is named in a breach.
fn key_name(key: Option<&[u8]>) -> String {
    match key {
        Some(k) => format!("key {}", preview(k)),
        None => "the records without a key".into(),
    }
}

fn function_name(f: Function) -> &'static str {
    match f {
        Function::Count => "count",
        Function::Sum => "sum",
        Function::Min => "min",
        Function::Max => "max",
        Function::Avg => "avg",
    }
}

impl Aggregate {
    fn new(cfg: AggregateConfig, limits: &Limits) -> Self {
        Aggregate {
            cfg,
            totals: hashbrown::HashMap::default(),
            unkeyed: None,
            windows: HashMap::new(),
            sessions: HashMap::new(),
            changed: HashSet::new(),
            side: SideOutput::default(),
            scratch: Vec::new(),
            slots: Vec::new(),
            budget: StateBudget::new(limits.state),
            changes: Changes::default(),
            window_log: Vec::new(),
        }
    }

    fn watermark(&self, max_event_time: Option<i64>) -> i64 {
        crate::model::time::watermark(max_event_time, self.cfg.watermark_delay)
    }

    fn emit_window(&self, out: &mut Batch, key: &Key, w: Window, acc: &Acc) {
        let value = format!(
            "{{\"window_start\":{},\"window_end\":{},\"{}\":{}}}",
            w.start,
            w.end,
            function_name(self.cfg.function),
            acc.value(self.cfg.function)
        );
        out.push(key.as_deref(), value.as_bytes(), w.start);
    }
}

impl Operator for Aggregate {
    fn process(&mut self, input: &mut Batch) -> Result<Batch, OperatorError> {
        // Records are folded into state here; results leave in `finish_batch`.
        self.process_in(input, &BatchContext::default())
    }

    fn process_with(
        &mut self,
        input: &mut Batch,
        ctx: &BatchContext,
    ) -> Result<Batch, OperatorError> {
        self.process_in(input, ctx)
    }

    fn finish_batch(&mut self, ctx: &BatchContext) -> Result<Batch, OperatorError> {
        let mut out = Batch::new();
        let f = self.cfg.function;
        if self.cfg.window.is_none() {
            // Complete mode: the whole table after every batch that brought
            // records; batches that only mark time emit nothing.
            let all = self.cfg.mode == Mode::Complete && ctx.has_records;
            let mut rows: Vec<(Option<&[u8]>, Acc)> = Vec::new();
            let changes = &mut self.changes;
            if let Some((acc, changed)) = &mut self.unkeyed
                && (all || *changed)
            {
                rows.push((None, *acc));
                if std::mem::take(changed) {
                    state::touch(changes, state::TOTAL, None, None);
                }
            }
            for (k, (acc, changed)) in &mut self.totals {
                if all || *changed {
                    rows.push((Some(k.as_slice()), *acc));
                    if std::mem::take(changed) {
                        state::touch(changes, state::TOTAL, Some(k.as_slice()), None);
                    }
                }
            }
            rows.sort_by(|a, b| a.0.cmp(&b.0));
            for (k, acc) in rows {
                out.push(k, acc.value(f).as_bytes(), acc.last_ts);
            }
            return Ok(out);
        }
        let wm = match (ctx.end_of_input, self.cfg.time) {
            (true, _) => i64::MAX,
            (false, TimeDomain::Event) => self.watermark(ctx.max_event_time_after),
            (false, TimeDomain::Processing) => ctx.processing_time,
        };
        let lateness = self.cfg.allowed_lateness;
        let update = self.cfg.mode == Mode::Update;
        // Emit a window when it changed and is closed (or at every change in
        // update mode); forget it once no record can reach it any more.
        let mut rows: Vec<(Window, Key, Acc)> = Vec::new();
        let budget = &mut self.budget;
        let changes = &mut self.changes;
        for (k, sessions) in &mut self.sessions {
            for (w, (acc, dirty)) in &mut sessions.windows {
                if *dirty && (update || w.end <= wm) {
                    rows.push((*w, k.clone(), *acc));
                    *dirty = false;
                    state::touch(changes, state::SESSION, k.as_deref(), Some(*w));
                }
            }
            let before = sessions.windows.len();
            sessions.windows.retain(|(w, _)| {
                let keep = w.end.saturating_add(lateness) > wm;
                if !keep {
                    state::touch(changes, state::SESSION, k.as_deref(), Some(*w));
                }
                keep
            });
            budget.release((before - sessions.windows.len()) as u64 * session_bytes());
        }
        self.sessions.retain(|k, s| {
            let keep = !s.windows.is_empty();
            if !keep {
                budget.release(session_key_bytes(k.as_ref().map_or(0, Vec::len)));
            }
            keep
        });
        let tracking = changes.is_on();
        let log = &mut self.window_log;
        for ((k, w), st) in &mut self.windows {
            if st.dirty && (update || w.end <= wm) {
                rows.push((*w, k.clone(), st.acc));
                st.dirty = false;
                if tracking && !std::mem::replace(&mut st.logged, true) {
                    log.push((k.clone(), *w));
                }
            }
        }
        self.windows.retain(|(k, w), st| {
            let keep = w.end.saturating_add(lateness) > wm;
            if !keep {
                budget.release(window_bytes(k.as_ref().map_or(0, Vec::len)));
                if tracking && !st.logged {
                    log.push((k.clone(), *w));
                }
            }
            keep
        });
        self.changed.clear();
        rows.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        for (w, k, acc) in rows {
            self.emit_window(&mut out, &k, w, &acc);
        }
        Ok(out)
    }

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

impl Aggregate {
    fn process_in(
        &mut self,
        input: &mut Batch,
        ctx: &BatchContext,
    ) -> Result<Batch, OperatorError> {
        let f = self.cfg.function;
        // Parse every value before touching state: a batch with rejected
        // records is retried without them and must not count twice.
        let mut values = Vec::with_capacity(input.len());
        let mut rejected = Vec::new();
        for r in input.iter() {
            if f == Function::Count {
                values.push(1.0);
                continue;
            }
            match std::str::from_utf8(r.value)
                .ok()
                .and_then(|s| s.trim().parse::<f64>().ok())
                .filter(|x| x.is_finite())
            {
                Some(x) => values.push(x),
                None => rejected.push(RejectedRecord {
                    index: r.index,
                    reason: format!(
                        "value {} is not a number",
                        crate::model::batch::preview(r.value)
                    ),
                }),
            }
        }
        if !rejected.is_empty() {
            return Err(OperatorError::BadRecords(rejected));
        }
        let wm_before = self.watermark(ctx.max_event_time_before);
        let lateness = self.cfg.allowed_lateness;
        let rules = self.cfg.watermark;
        for (r, &x) in input.iter().zip(&values) {
            // Too far ahead to be believed: into no window (nor the
            // watermark, which the coordinator keeps by the same rule).
            if self.cfg.window.is_some()
                && self.cfg.time == TimeDomain::Event
                && self
                    .side
                    .set_aside_if_far_ahead(rules, &r, ctx.processing_time)
            {
                continue;
            }
            if self.cfg.window.is_none() {
                let held = match r.key {
                    Some(k) => self.totals.contains_key(k),
                    None => self.unkeyed.is_some(),
                };
                if !held {
                    let bytes = total_bytes(r.key.map_or(0, <[u8]>::len));
                    if let Err(breach) = self
                        .budget
                        .admit(bytes, || format!("a new total for {}", key_name(r.key)))
                    {
                        self.side.refuse(&r, breach);
                        continue;
                    }
                }
                let slot = match r.key {
                    Some(k) => self.totals.entry_ref(k).or_insert((Acc::new(), false)),
                    None => self.unkeyed.get_or_insert((Acc::new(), false)),
                };
                if f == Function::Count {
                    // Combined before the exchange: a keyed record carries a count.
                    slot.0.add_ones(partial_count(r.key, r.value), r.timestamp);
                } else {
                    slot.0.add(x, r.timestamp);
                }
                slot.1 = true;
                state::touch(&mut self.changes, state::TOTAL, r.key, None);
                continue;
            }
            let key: Key = r.key.map(<[u8]>::to_vec);
            let ts = match self.cfg.time {
                TimeDomain::Event => r.timestamp,
                TimeDomain::Processing => ctx.processing_time,
            };
            match self.cfg.window {
                None => unreachable!("handled above"),
                Some(WindowKind::Session { gap }) => {
                    if self.cfg.time == TimeDomain::Event
                        && ts.saturating_add(gap).saturating_add(lateness) <= wm_before
                    {
                        self.late(r.key, r.value, r.timestamp, r.headers, wm_before);
                        continue;
                    }
                    // A record opens a session or merges those it overlaps.
                    let (known, merged) = match self.sessions.get(&key) {
                        Some(s) => (true, s.overlapping(ts, gap)),
                        None => (false, 0),
                    };
                    let mut bytes = if merged == 0 { session_bytes() } else { 0 };
                    if !known {
                        bytes += session_key_bytes(r.key.map_or(0, <[u8]>::len));
                    }
                    if let Err(breach) = self.budget.admit(bytes, || {
                        format!("a new session window of {}", key_name(r.key))
                    }) {
                        self.side.refuse(&r, breach);
                        continue;
                    }
                    self.budget
                        .release(merged.saturating_sub(1) as u64 * session_bytes());
                    let sessions = self
                        .sessions
                        .entry(key.clone())
                        .or_insert_with(|| Sessions {
                            windows: Vec::new(),
                        });
                    state::touch_merged(&mut self.changes, r.key, sessions, ts, gap);
                    let w = sessions.add(
                        ts,
                        gap,
                        || (Acc::new(), true),
                        |a, b| a.0.merge(b.0),
                        |a| a.0.add(x, r.timestamp),
                    );
                    state::touch(&mut self.changes, state::SESSION, r.key, Some(w));
                    self.changed.insert(key);
                }
                Some(kind) => {
                    let mut wins = std::mem::take(&mut self.scratch);
                    kind.assign(ts, &mut wins);
                    let mut slots = std::mem::take(&mut self.slots);
                    slots.clear();
                    for w in &wins {
                        if self.cfg.time == TimeDomain::Event
                            && w.end.saturating_add(lateness) <= wm_before
                        {
                            continue; // this window is closed for good
                        }
                        let slot = (key.clone(), *w);
                        let fresh = !self.windows.contains_key(&slot);
                        slots.push((slot, fresh));
                    }
                    self.scratch = wins;
                    if slots.is_empty() {
                        self.slots = slots;
                        self.late(r.key, r.value, r.timestamp, r.headers, wm_before);
                        continue;
                    }
                    // All of the record's windows, or none.
                    let fresh = slots.iter().filter(|(_, fresh)| *fresh).count() as u64;
                    let bytes = fresh * window_bytes(r.key.map_or(0, <[u8]>::len));
                    if let Err(breach) = self.budget.admit(bytes, || {
                        format!("{fresh} new window(s) of {}", key_name(r.key))
                    }) {
                        self.slots = slots;
                        self.side.refuse(&r, breach);
                        continue;
                    }
                    let tracking = self.changes.is_on();
                    for (slot, _) in slots.drain(..) {
                        let st = match self.windows.entry(slot) {
                            std::collections::hash_map::Entry::Occupied(o) => {
                                if tracking && !o.get().logged {
                                    self.window_log.push(o.key().clone());
                                }
                                o.into_mut()
                            }
                            std::collections::hash_map::Entry::Vacant(v) => {
                                if tracking {
                                    self.window_log.push(v.key().clone());
                                }
                                v.insert(WindowState {
                                    acc: Acc::new(),
                                    dirty: true,
                                    logged: false,
                                })
                            }
                        };
                        st.logged = tracking;
                        st.acc.add(x, r.timestamp);
                        st.dirty = true;
                    }
                    self.slots = slots;
                }
            }
        }
        Ok(Batch::new())
    }

    fn late(&mut self, key: Option<&[u8]>, value: &[u8], ts: i64, headers: Headers<'_>, wm: i64) {
        let divert = self.cfg.late_to_dead_letter;
        self.side.late_record(divert, key, value, ts, headers, || {
            format!("late: every window of timestamp {ts} closed at watermark {wm}")
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::limits::Limit;
    use proptest::prelude::*;

    fn aggregate(settings: &[(&str, &str)], state: u64) -> Aggregate {
        let pairs: Vec<(String, String)> = settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let limits = Limits {
            state,
            ..Limits::default()
        };
        Aggregate::new(AggregateConfig::parse(&pairs).unwrap(), &limits)
    }

    /// The state bytes of `a`, counted afresh from what it holds.
    fn recount(a: &Aggregate) -> u64 {
        let key_len = |k: &Key| k.as_ref().map_or(0, Vec::len);
        let totals: u64 = a.totals.keys().map(|k| total_bytes(k.len())).sum();
        let unkeyed = a.unkeyed.map_or(0, |_| total_bytes(0));
        let windows: u64 = a
            .windows
            .keys()
            .map(|(k, _)| window_bytes(key_len(k)))
            .sum();
        let sessions: u64 = a
            .sessions
            .iter()
            .map(|(k, s)| session_key_bytes(key_len(k)) + s.windows.len() as u64 * session_bytes())
            .sum();
        totals + unkeyed + windows + sessions
    }

    #[test]
    fn a_full_state_refuses_new_keys_and_takes_records_of_known_ones() {
        // Room for three totals of two-byte keys: 2 key bytes, 48 of
        // accumulator and flag, 64 of overhead each.
        assert_eq!(std::mem::size_of::<(Acc, bool)>(), 48);
        // The sizes docs/threat-model.md gives.
        assert_eq!(total_bytes(2), 2 + 48 + 64);
        assert_eq!(window_bytes(2), 2 + 64 + 64);
        assert_eq!(session_key_bytes(2), 2 + 24 + 64);
        assert_eq!(session_bytes(), 64 + 64);
        let mut agg = aggregate(&[("function", "sum")], 3 * (2 + 48 + 64));
        let mut input = Batch::new();
        for (k, v) in [
            ("k0", "1"),
            ("k1", "2"),
            ("k2", "3"),
            ("k3", "4"),
            ("k0", "5"),
        ] {
            input.push(Some(k.as_bytes()), v.as_bytes(), 0);
        }
        agg.process(&mut input).unwrap();
        let out = agg.finish_batch(&BatchContext::default()).unwrap();
        let rows: Vec<(&[u8], &[u8])> = out.iter().map(|r| (r.key.unwrap(), r.value)).collect();
        assert_eq!(
            rows,
            [(&b"k0"[..], &b"6"[..]), (b"k1", b"2"), (b"k2", b"3")]
        );
        let side = agg.side_output();
        assert_eq!(side.refused.len(), 1);
        assert_eq!(
            (side.refused[0].key.as_deref(), &side.refused[0].value[..]),
            (Some(&b"k3"[..]), &b"4"[..])
        );
        assert!(
            matches!(
                &side.breach,
                Some(OperatorError::Limit { limit: Limit::State, value, .. }) if value == "342 bytes"
            ),
            "{:?}",
            side.breach
        );
        assert!(
            side.refused[0].reason.contains(
                "limit `state` = 342 bytes exceeded: a new total for key \"k3\" would add 114 bytes"
            ),
            "{}",
            side.refused[0].reason
        );
    }

    proptest! {
        /// The bytes counted as windows and sessions are made, merged and
        /// closed are the bytes of what is held, batch after batch, and
        /// nothing once every window has closed.
        #[test]
        fn the_state_count_follows_windows_and_sessions(
            batches in proptest::collection::vec(
                proptest::collection::vec((0u8..5, 0i64..40), 0..20),
                1..8,
            ),
            sessions in any::<bool>(),
        ) {
            let settings: &[(&str, &str)] = if sessions {
                &[("function", "count"), ("window", "session"), ("gap", "15ms")]
            } else {
                &[
                    ("function", "count"),
                    ("window", "sliding"),
                    ("length", "30ms"),
                    ("slide", "10ms"),
                ]
            };
            let mut agg = aggregate(settings, u64::MAX);
            let mut max_ts: Option<i64> = None;
            for (n, records) in batches.iter().enumerate() {
                // Time moves on by 20ms a batch; some records come late.
                let base = n as i64 * 20;
                let mut input = Batch::new();
                for (k, dt) in records {
                    input.push(Some(format!("k{k}").as_bytes()), b"x", base + dt);
                }
                let before = max_ts;
                max_ts = max_ts.max(input.timestamps.iter().copied().max());
                let ctx = BatchContext {
                    batch_no: n as u64,
                    max_event_time_before: before,
                    max_event_time_after: max_ts,
                    ..BatchContext::default()
                };
                agg.process_with(&mut input, &ctx).unwrap();
                prop_assert_eq!(agg.budget.held(), recount(&agg));
                agg.finish_batch(&ctx).unwrap();
                prop_assert_eq!(agg.budget.held(), recount(&agg));
            }
            let end = BatchContext { end_of_input: true, ..BatchContext::default() };
            agg.finish_batch(&end).unwrap();
            prop_assert_eq!(agg.budget.held(), 0);
        }
    }
}
