//! Keyed reducers implemented by `reduce` components.
//!
//! The host keeps every key's accumulator. For each partition batch a
//! [`WasmReducer`] groups the records by key, makes **one** `reduce` call with
//! every key of the batch, its accumulator so far and its new values, checks
//! the new accumulators and stores them. Because the state lives here, a
//! trap loses none of it: the instance is re-created and the batch is handled
//! like any operator's failed batch.
//!
//! The accumulators are host memory, outside the instance's `memory` limit,
//! so they are held to the job's `state` limit: a key whose new (or longer)
//! accumulator would take the state past it keeps what it had, and its
//! records of the batch are refused ([`SideOutput::refuse`]); the other keys
//! of the batch are stored as usual.
//!
//! A checkpoint holds one entry per key ([`Table`]), written when the key's
//! accumulator changes.

use super::reduce_bindings::exports::sluice::operator::reducer as wit;
use super::{LogTags, Plugin, Session, reduce_bindings};
use crate::model::batch::Batch;
use crate::operators::{
    BatchContext, Operator, OperatorError, OperatorFactory, RejectedRecord, SideOutput, StateWriter,
};
use crate::spec::ReduceMode;
use crate::spec::limits::Limits;
use sluice_sdk::{Accumulators, Groups};
use table::Table;

mod table;

type FxMap<K, V> = hashbrown::HashMap<K, V, rustc_hash::FxBuildHasher>;

/// Makes one [`WasmReducer`] per partition.
pub struct WasmReducerFactory {
    name: String,
    plugin: Plugin,
    config: Vec<(String, String)>,
    mode: ReduceMode,
}

impl WasmReducerFactory {
    /// A reducer called `name` running the `reduce` component `plugin` with
    /// `config`, emitting in `mode`.
    pub fn new(
        name: impl Into<String>,
        plugin: Plugin,
        config: Vec<(String, String)>,
        mode: ReduceMode,
    ) -> Self {
        WasmReducerFactory {
            name: name.into(),
            plugin,
            config,
            mode,
        }
    }
}

impl OperatorFactory for WasmReducerFactory {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "reducer"
    }

    fn keyed(&self) -> bool {
        true
    }

    /// In complete mode every partition emits its keys after every batch
    /// with records, so the reducer must see batches that brought its own
    /// partition none.
    fn stateful(&self) -> bool {
        self.mode == ReduceMode::Complete
    }

    fn instantiate(&self, job: &str, worker: usize) -> Result<Box<dyn Operator>, OperatorError> {
        self.instantiate_limited(job, worker, &Limits::default())
    }

    fn instantiate_limited(
        &self,
        job: &str,
        worker: usize,
        limits: &Limits,
    ) -> Result<Box<dyn Operator>, OperatorError> {
        let tags = LogTags {
            job: job.to_string(),
            operator: self.name.clone(),
            worker,
        };
        Ok(Box::new(self.plugin.instantiate_reducer_limited(
            tags,
            &self.config,
            self.mode,
            limits,
        )?))
    }
}

/// One batch's records grouped by key, keys in first-seen order.
struct Grouping<'a> {
    /// Distinct keys, in the order they first appear.
    keys: Vec<&'a [u8]>,
    /// Latest timestamp of each key's records in the batch.
    timestamps: Vec<i64>,
    /// Per key, the exclusive end of its records in `order`.
    ends: Vec<u32>,
    /// Input record indices, grouped by key in key order; position `v` is
    /// value `v` of the call.
    order: Vec<u32>,
}

impl<'a> Grouping<'a> {
    /// Groups the records of `input`, which must all have a key.
    fn new(input: &'a Batch) -> Self {
        let mut index: FxMap<&[u8], u32> = FxMap::default();
        let mut keys = Vec::new();
        let mut timestamps: Vec<i64> = Vec::new();
        let mut counts: Vec<u32> = Vec::new();
        let mut group_of = Vec::with_capacity(input.len());
        for r in input.iter() {
            let key = r.key.unwrap_or_default();
            let g = *index.entry(key).or_insert_with(|| {
                keys.push(key);
                timestamps.push(i64::MIN);
                counts.push(0);
                (keys.len() - 1) as u32
            }) as usize;
            timestamps[g] = timestamps[g].max(r.timestamp);
            counts[g] += 1;
            group_of.push(g as u32);
        }
        // Counting sort of the record indices by group, stable within a group.
        let mut ends = Vec::with_capacity(counts.len());
        let mut next = Vec::with_capacity(counts.len());
        let mut total = 0u32;
        for c in counts {
            next.push(total);
            total += c;
            ends.push(total);
        }
        let mut order = vec![0u32; input.len()];
        for (i, g) in group_of.into_iter().enumerate() {
            let slot = &mut next[g as usize];
            order[*slot as usize] = i as u32;
            *slot += 1;
        }
        Grouping {
            keys,
            timestamps,
            ends,
            order,
        }
    }

    /// The input record indices of key `k`'s values.
    fn records(&self, k: usize) -> &[u32] {
        let start = if k == 0 { 0 } else { self.ends[k - 1] as usize };
        &self.order[start..self.ends[k] as usize]
    }
}

/// The accumulators kept for the keys of one partition: all of a
/// [`WasmReducer`] that outlives a batch (the component itself keeps
/// nothing that must).
///
/// One instance of a `reduce` component, owned by one worker, with the
/// accumulators of the keys of the partition it runs.
pub struct WasmReducer {
    session: Session<reduce_bindings::Reduce>,
    mode: ReduceMode,
    table: Table,
    /// The records of keys whose accumulators did not fit.
    side: SideOutput,
    /// The call's argument, kept to reuse its buffers.
    scratch: Groups,
}

impl WasmReducer {
    /// A reducer over `session`, emitting in `mode`, holding at most
    /// `state` bytes of keys and accumulators.
    pub(super) fn new(
        session: Session<reduce_bindings::Reduce>,
        mode: ReduceMode,
        state: u64,
    ) -> Self {
        WasmReducer {
            session,
            mode,
            table: Table::new(state),
            side: SideOutput::default(),
            scratch: Groups::default(),
        }
    }

    /// Number of keys whose accumulator is kept.
    pub fn keys(&self) -> usize {
        self.table.keys.len()
    }

    /// The accumulator kept for `key`, if any.
    pub fn accumulator(&self, key: &[u8]) -> Option<&[u8]> {
        self.table.keys.get(key).map(|s| s.accumulator.as_slice())
    }

    /// Rejects the records without a key, which a reducer cannot fold.
    fn reject_unkeyed(&self, input: &Batch) -> Result<(), OperatorError> {
        let rejected: Vec<RejectedRecord> = input
            .iter()
            .filter(|r| r.key.is_none())
            .map(|r| RejectedRecord {
                index: r.index,
                reason: format!(
                    "the record has no key, and reducer `{}` folds values per key: \
                     set keys upstream (for example with the json-field or split-words plugin)",
                    self.session.operator()
                ),
            })
            .collect();
        if rejected.is_empty() {
            Ok(())
        } else {
            Err(OperatorError::BadRecords(rejected))
        }
    }

    /// Fills the call's argument from the grouping and the kept accumulators.
    fn fill_groups(&mut self, input: &Batch, grouping: &Grouping<'_>) {
        let groups = &mut self.scratch;
        groups.clear();
        for (k, key) in grouping.keys.iter().enumerate() {
            let accumulator = self.table.keys.get(*key).map(|s| s.accumulator.as_slice());
            let values = grouping.records(k).iter().map(|&i| value_of(input, i));
            groups.push(key, accumulator, values);
        }
    }

    /// Makes the one `reduce` call for the batch, moving the argument's
    /// buffers into the binding's record and back.
    fn call(&mut self) -> Result<Accumulators, OperatorError> {
        let g = &mut self.scratch;
        let arg = wit::Groups {
            keys: std::mem::take(&mut g.keys),
            key_ends: std::mem::take(&mut g.key_ends),
            accumulators: std::mem::take(&mut g.accumulators),
            accumulator_ends: std::mem::take(&mut g.accumulator_ends),
            has_accumulator: std::mem::take(&mut g.has_accumulator),
            values: std::mem::take(&mut g.values),
            value_ends: std::mem::take(&mut g.value_ends),
            group_ends: std::mem::take(&mut g.group_ends),
        };
        let input = groups_bytes(&arg);
        let result = self.session.call(input, |bindings, store| {
            bindings.sluice_operator_reducer().call_reduce(store, &arg)
        });
        *g = Groups {
            keys: arg.keys,
            key_ends: arg.key_ends,
            accumulators: arg.accumulators,
            accumulator_ends: arg.accumulator_ends,
            has_accumulator: arg.has_accumulator,
            values: arg.values,
            value_ends: arg.value_ends,
            group_ends: arg.group_ends,
        };
        let out = result?;
        self.session
            .check_output(input, out.data.len() + 4 * out.ends.len())?;
        Ok(Accumulators {
            data: out.data,
            ends: out.ends,
        })
    }
}

/// Bytes of a `reduce` call's argument as it crosses the boundary.
fn groups_bytes(g: &wit::Groups) -> usize {
    g.keys.len()
        + g.accumulators.len()
        + g.has_accumulator.len()
        + g.values.len()
        + 4 * (g.key_ends.len()
            + g.accumulator_ends.len()
            + g.value_ends.len()
            + g.group_ends.len())
}

/// The value bytes of record `i` of `input`.
fn value_of(input: &Batch, i: u32) -> &[u8] {
    let i = i as usize;
    let start = if i == 0 {
        0
    } else {
        input.value_ends[i - 1] as usize
    };
    &input.values[start..input.value_ends[i] as usize]
}

/// Checks that the guest returned one well-formed accumulator per key.
fn check_result(out: &Accumulators, keys: usize) -> Result<(), OperatorError> {
    let malformed = |m: String| {
        OperatorError::Host(format!(
            "the reducer returned malformed accumulators: {m} (`reduce` must return one \
             accumulator per key of its input, in key order)"
        ))
    };
    if out.ends.len() != keys {
        return Err(malformed(format!(
            "{} accumulator(s) for {keys} key(s)",
            out.ends.len()
        )));
    }
    let mut prev = 0;
    for (k, &end) in out.ends.iter().enumerate() {
        if end < prev {
            return Err(malformed(format!(
                "ends[{k}] = {end} is below the previous end {prev}"
            )));
        }
        prev = end;
    }
    if prev as usize != out.data.len() {
        return Err(malformed(format!(
            "ends stop at {prev} but data has {} bytes",
            out.data.len()
        )));
    }
    Ok(())
}

/// Maps a guest's rejections, by position in the call's values, to input
/// record indices.
fn map_rejections(error: OperatorError, grouping: &Grouping<'_>) -> OperatorError {
    let OperatorError::BadRecords(rejected) = error else {
        return error;
    };
    let values = grouping.order.len();
    let mut mapped = Vec::with_capacity(rejected.len());
    for r in rejected {
        match grouping.order.get(r.index as usize) {
            Some(&index) => mapped.push(RejectedRecord {
                index,
                reason: r.reason,
            }),
            None => {
                return OperatorError::Host(format!(
                    "the reducer rejected value {}, but its input had {values} value(s) \
                     (`bad-records` indices of a reducer are positions in `value-ends`)",
                    r.index
                ));
            }
        }
    }
    OperatorError::BadRecords(mapped)
}

impl Operator for WasmReducer {
    fn memory_used(&self) -> Option<u64> {
        self.session.memory_used()
    }

    fn begin_batch(&mut self, batch_no: u64) {
        self.session.begin_batch(batch_no);
    }

    fn process(&mut self, input: &mut Batch) -> Result<Batch, OperatorError> {
        if input.is_empty() {
            return Ok(Batch::new());
        }
        self.reject_unkeyed(input)?;
        let grouping = Grouping::new(input);
        self.fill_groups(input, &grouping);
        // State changes only after a successful, well-formed call: the
        // worker retries a batch with rejected records without them.
        let out = self.call().map_err(|e| map_rejections(e, &grouping))?;
        check_result(&out, grouping.keys.len())?;
        let (mode, side) = (self.mode, &mut self.side);
        Ok(self.table.store(mode, input, &grouping, &out, side))
    }

    fn side_output(&mut self) -> SideOutput {
        std::mem::take(&mut self.side)
    }

    fn finish_batch(&mut self, ctx: &BatchContext) -> Result<Batch, OperatorError> {
        // The whole table after every batch that brought records, as
        // Spark's complete mode; batches that only mark time emit nothing.
        if self.mode != ReduceMode::Complete || !ctx.has_records {
            return Ok(Batch::new());
        }
        Ok(self.table.all())
    }

    /// Also records every key held as changed: an instance that takes the
    /// job's accumulators over after a rollback writes them whole once.
    fn track_changes(&mut self) {
        self.table.changes.track();
        self.table.touch_all();
    }

    fn checkpoint(&mut self, out: &mut dyn StateWriter) -> Result<(), OperatorError> {
        self.table.write_changes(out);
        Ok(())
    }

    /// The accumulators, whole, for a new version of the reducer (hot
    /// reload): the host keeps them, so they carry over unchanged.
    fn snapshot(&mut self) -> Result<Option<Vec<u8>>, OperatorError> {
        Ok(Some(self.table.encode()))
    }

    /// Takes over the accumulators of another version's
    /// [`Operator::snapshot`]; with checkpoints, the next one writes them
    /// whole, as this instance did not record their changes.
    fn restore(&mut self, state: &[u8]) -> Result<(), OperatorError> {
        self.table.take_over(state)
    }

    fn restore_entries(&mut self, entries: &[(Vec<u8>, Vec<u8>)]) -> Result<(), OperatorError> {
        self.table.take_entries(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::budget::entry_bytes;

    fn keyed(rows: &[(&str, &str, i64)]) -> Batch {
        let mut b = Batch::new();
        for (k, v, ts) in rows {
            b.push(Some(k.as_bytes()), v.as_bytes(), *ts);
        }
        b
    }

    #[test]
    fn grouping_keeps_first_seen_key_order_and_record_order() {
        let b = keyed(&[("b", "1", 5), ("a", "2", 1), ("b", "3", 2), ("a", "4", 9)]);
        let g = Grouping::new(&b);
        assert_eq!(g.keys, [&b"b"[..], b"a"]);
        assert_eq!(g.records(0), [0, 2]);
        assert_eq!(g.records(1), [1, 3]);
        assert_eq!(g.timestamps, [5, 9]);
        assert_eq!(value_of(&b, 3), b"4");
    }

    #[test]
    fn rejections_map_back_to_input_records() {
        let b = keyed(&[("b", "1", 0), ("a", "2", 0), ("b", "3", 0)]);
        let g = Grouping::new(&b);
        // Values of the call: b's records 0 and 2, then a's record 1.
        let err = map_rejections(
            OperatorError::BadRecords(vec![RejectedRecord {
                index: 1,
                reason: "x".into(),
            }]),
            &g,
        );
        assert!(
            matches!(&err, OperatorError::BadRecords(r) if r[0].index == 2),
            "{err:?}"
        );
        let err = map_rejections(
            OperatorError::BadRecords(vec![RejectedRecord {
                index: 3,
                reason: "x".into(),
            }]),
            &g,
        );
        assert!(
            matches!(&err, OperatorError::Host(m) if m.contains("value 3")),
            "{err:?}"
        );
    }

    #[test]
    fn results_must_have_one_accumulator_per_key() {
        let ok = Accumulators {
            data: b"12".to_vec(),
            ends: vec![1, 2],
        };
        assert!(check_result(&ok, 2).is_ok());
        let err = check_result(&ok, 3).unwrap_err().to_string();
        assert!(err.contains("2 accumulator(s) for 3 key(s)"), "{err}");
        let bad = Accumulators {
            data: b"12".to_vec(),
            ends: vec![2, 1],
        };
        assert!(
            check_result(&bad, 2)
                .unwrap_err()
                .to_string()
                .contains("below")
        );
        let short = Accumulators {
            data: b"123".to_vec(),
            ends: vec![1, 2],
        };
        assert!(
            check_result(&short, 2)
                .unwrap_err()
                .to_string()
                .contains("data has 3 bytes")
        );
    }

    /// A reducer without its component: [`Table`] with the sums of the
    /// `sum` plugin computed here, as decimal text (so accumulators grow).
    struct Summing {
        table: Table,
        mode: ReduceMode,
        side: SideOutput,
    }

    impl Operator for Summing {
        fn process(&mut self, input: &mut Batch) -> Result<Batch, OperatorError> {
            let grouping = Grouping::new(input);
            let mut out = Accumulators::default();
            for (k, key) in grouping.keys.iter().enumerate() {
                let held = self.table.keys.get(*key).map(|s| s.accumulator.as_slice());
                let parse = |b: &[u8]| std::str::from_utf8(b).unwrap().parse::<i64>().unwrap();
                let sum: i64 = grouping
                    .records(k)
                    .iter()
                    .map(|&i| parse(value_of(input, i)))
                    .sum::<i64>()
                    + held.map_or(0, parse);
                out.data.extend_from_slice(sum.to_string().as_bytes());
                out.ends.push(out.data.len() as u32);
            }
            let side = &mut self.side;
            Ok(self.table.store(self.mode, input, &grouping, &out, side))
        }
        fn finish_batch(&mut self, ctx: &BatchContext) -> Result<Batch, OperatorError> {
            Ok(match self.mode {
                ReduceMode::Complete if ctx.has_records => self.table.all(),
                _ => Batch::new(),
            })
        }
        fn side_output(&mut self) -> SideOutput {
            std::mem::take(&mut self.side)
        }
        fn track_changes(&mut self) {
            self.table.changes.track();
        }
        fn checkpoint(&mut self, out: &mut dyn StateWriter) -> Result<(), OperatorError> {
            self.table.write_changes(out);
            Ok(())
        }
        fn restore_entries(&mut self, entries: &[(Vec<u8>, Vec<u8>)]) -> Result<(), OperatorError> {
            self.table.take_entries(entries)
        }
    }

    fn summing(mode: ReduceMode, state: u64) -> Summing {
        Summing {
            table: Table::new(state),
            mode,
            side: SideOutput::default(),
        }
    }

    /// Batches of records of eight keys, values up to 999 (so accumulators
    /// grow by a digit now and then), every fourth batch without records.
    fn steps() -> Vec<(Batch, BatchContext)> {
        let mut x: u64 = 3;
        let mut next = move |n: u64| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) % n
        };
        (0..16u64)
            .map(|n| {
                let mut b = Batch::new();
                if n % 4 != 3 {
                    for _ in 0..6 {
                        let key = format!("k{}", next(8));
                        let ts = (n * 10 + next(10)) as i64;
                        b.push(Some(key.as_bytes()), next(1000).to_string().as_bytes(), ts);
                    }
                }
                let ctx = BatchContext {
                    batch_no: n,
                    has_records: !b.is_empty(),
                    ..BatchContext::default()
                };
                (b, ctx)
            })
            .collect()
    }

    /// What a batch gives: what `process` and `finish_batch` return, and
    /// the records refused.
    fn run(
        op: &mut dyn Operator,
        (batch, ctx): &(Batch, BatchContext),
    ) -> (Batch, Batch, Vec<Vec<u8>>) {
        let processed = op.process_with(&mut batch.clone(), ctx).unwrap();
        let finished = op.finish_batch(ctx).unwrap();
        let refused = op.side_output().refused.into_iter().map(|d| d.value);
        (processed, finished, refused.collect())
    }

    #[test]
    fn a_resumed_reducer_goes_on_as_the_one_that_never_stopped() {
        use crate::operators::changes::testing::{Taken, resume_matches};
        let checkpoint_after = |n: usize| ![1, 5, 8, 12].contains(&n);
        let steps = steps();
        for mode in [ReduceMode::Update, ReduceMode::Complete] {
            // Unlimited, and room for about five keys.
            for state in [u64::MAX, 5 * entry_bytes(2, 4)] {
                let make = || Box::new(summing(mode, state)) as Box<dyn Operator>;
                let mut taken = Vec::new();
                for resume in (1..steps.len()).filter(|r| checkpoint_after(r - 1)) {
                    taken = resume_matches(&make, &steps, &run, &checkpoint_after, resume);
                }
                // A batch without records, right after a checkpoint,
                // changes nothing.
                let quiet = |t: &&Taken| steps[t.step].0.is_empty() && checkpoint_after(t.step - 1);
                assert_eq!(taken.iter().filter(quiet).count(), 4);
                for t in taken.iter().filter(quiet) {
                    assert_eq!((t.puts, t.deletes), (0, 0), "{t:?}");
                }
                assert!(taken.iter().all(|t| t.deletes == 0));
            }
        }
    }

    #[test]
    fn a_reducer_checkpoint_writes_the_keys_that_changed_only() {
        use crate::operators::changes::testing::Merged;
        let mut a = summing(ReduceMode::Complete, u64::MAX);
        a.track_changes();
        let mut merged = Merged::default();
        let batch = |keys: std::ops::Range<u32>| {
            let mut b = Batch::new();
            for k in keys {
                b.push(Some(format!("key-{k}").as_bytes()), b"1", 1);
            }
            b
        };
        a.process(&mut batch(0..1000)).unwrap();
        assert_eq!(merged.checkpoint(&mut a), (1000, 0));
        a.process(&mut batch(990..1000)).unwrap();
        let all = BatchContext {
            has_records: true,
            ..BatchContext::default()
        };
        assert_eq!(a.finish_batch(&all).unwrap().len(), 1000);
        assert_eq!(merged.checkpoint(&mut a), (10, 0));
        assert_eq!(merged.entries.len(), 1000);
        // The restored table counts what it holds against the limit.
        let held = a.table.budget.held();
        let mut b = summing(ReduceMode::Complete, held);
        b.restore_entries(&merged.entries()).unwrap();
        assert_eq!(b.table.budget.held(), held);
        assert_eq!(b.table.keys.get(&b"key-995"[..]).unwrap().accumulator, b"2");
        let err = summing(ReduceMode::Complete, held - 1)
            .restore_entries(&merged.entries())
            .unwrap_err();
        assert!(
            matches!(&err, OperatorError::Limit { detail, .. }
                if detail.contains("the checkpoint's accumulator of key")),
            "{err:?}"
        );
        let cut = [(b"k".to_vec(), vec![1, 2, 3])];
        assert!(
            summing(ReduceMode::Update, u64::MAX)
                .restore_entries(&cut)
                .is_err()
        );
    }
}
