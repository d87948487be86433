//! The built-in `aggregate`: keyed `count`, `sum`, `min`, `max` and `avg`,
//! over all time or in tumbling, sliding or session windows, in event or
//! processing time, with watermarks and allowed lateness.
//!
//! State is held per partition: the exchange before the operator puts all
//! records of a key in one partition, each partition has its own instance,
//! and a partition always runs on the same worker, so no state is shared
//! between threads.

mod config;

use crate::model::batch::{Batch, Headers};
pub use crate::model::time::TimeDomain;
use crate::model::time::{Sessions, Window, WindowKind};
pub use crate::operators::window::SettingError;
use crate::operators::{
    BatchContext, Combiner, CountCombiner, Operator, OperatorError, OperatorFactory,
    RejectedRecord, SideOutput, WatermarkRules, partial_count,
};
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
    fn instantiate(&self, _job: &str, _worker: usize) -> Result<Box<dyn Operator>, OperatorError> {
        Ok(Box::new(Aggregate {
            cfg: self.config.clone(),
            totals: hashbrown::HashMap::default(),
            unkeyed: None,
            windows: HashMap::new(),
            sessions: HashMap::new(),
            changed: HashSet::new(),
            side: SideOutput::default(),
            scratch: Vec::new(),
        }))
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
            if let Some((acc, changed)) = &mut self.unkeyed
                && (all || *changed)
            {
                rows.push((None, *acc));
                *changed = false;
            }
            for (k, (acc, changed)) in &mut self.totals {
                if all || *changed {
                    rows.push((Some(k.as_slice()), *acc));
                    *changed = false;
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
        for (k, sessions) in &mut self.sessions {
            for (w, (acc, dirty)) in &mut sessions.windows {
                if *dirty && (update || w.end <= wm) {
                    rows.push((*w, k.clone(), *acc));
                    *dirty = false;
                }
            }
            sessions
                .windows
                .retain(|(w, _)| w.end.saturating_add(lateness) > wm);
        }
        self.sessions.retain(|_, s| !s.windows.is_empty());
        for ((k, w), st) in &mut self.windows {
            if st.dirty && (update || w.end <= wm) {
                rows.push((*w, k.clone(), st.acc));
                st.dirty = false;
            }
        }
        self.windows
            .retain(|(_, w), _| w.end.saturating_add(lateness) > wm);
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
                    let sessions = self
                        .sessions
                        .entry(key.clone())
                        .or_insert_with(|| Sessions {
                            windows: Vec::new(),
                        });
                    sessions.add(
                        ts,
                        gap,
                        || (Acc::new(), true),
                        |a, b| a.0.merge(b.0),
                        |a| a.0.add(x, r.timestamp),
                    );
                    self.changed.insert(key);
                }
                Some(kind) => {
                    let mut wins = std::mem::take(&mut self.scratch);
                    kind.assign(ts, &mut wins);
                    let mut used = false;
                    for w in &wins {
                        if self.cfg.time == TimeDomain::Event
                            && w.end.saturating_add(lateness) <= wm_before
                        {
                            continue; // this window is closed for good
                        }
                        used = true;
                        let st = self
                            .windows
                            .entry((key.clone(), *w))
                            .or_insert(WindowState {
                                acc: Acc::new(),
                                dirty: true,
                            });
                        st.acc.add(x, r.timestamp);
                        st.dirty = true;
                    }
                    self.scratch = wins;
                    if !used {
                        self.late(r.key, r.value, r.timestamp, r.headers, wm_before);
                    }
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
