//! Isolation: when a call traps or exceeds a limit and the job sets such
//! records aside (a dead-letter file for traps, `on_breach = "skip"` or
//! `"dead-letter"` for breaches), a stateless operator's batch is re-run in
//! halves, on the fresh instance, until the records that make it fail are
//! found: only those are set aside, and the others are processed as usual.
//! The search is bounded by [`MAX_ISOLATION_CALLS`] and
//! [`MAX_ISOLATION_FAILURES`]. Rejected records go to the dead-letter file
//! the same way.

use super::SkipCount;
use super::dead_letter::DeadLetter;
use super::job::JobError;
use crate::metrics::OperatorMeter;
use crate::model::batch::{self, Batch, preview};
use crate::operators::{BatchContext, Operator, OperatorError};
use crate::spec::limits::{Limit, OnBreach};

/// How many times one batch may be retried after rejections before the
/// operator is considered broken (it keeps rejecting records it was not
/// given before).
const MAX_REJECTION_ROUNDS: usize = 3;

/// The most calls the search for the records at fault in one failed batch
/// may make (per operator). Finding one record among `n` takes about
/// `2 * log2(n)` calls.
pub(crate) const MAX_ISOLATION_CALLS: usize = 128;

/// The most of those calls that may fail. A failed call can take the whole
/// `cpu_per_batch` deadline, so this bounds the time a search takes: about
/// `MAX_ISOLATION_FAILURES + 1` deadlines at worst. Finding one record among
/// `n` takes about `log2(n)` failed calls.
pub(crate) const MAX_ISOLATION_FAILURES: usize = 32;

/// Where records go when a call on them failed and the job goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Aside {
    /// To the dead-letter file, with the reason.
    DeadLetter,
    /// Dropped for that operator, and counted.
    Skip,
}

/// The job's rules for failed calls.
#[derive(Debug, Clone, Copy)]
pub(super) struct Policy {
    pub(super) dead_letter: bool,
    pub(super) on_breach: OnBreach,
}

impl Policy {
    /// Where the records of a call that failed with `error` go, or `None`
    /// when the failure stops the job. A trap sets records aside when the
    /// job has a dead-letter file; a breach as `on_breach` says.
    pub(super) fn aside(self, error: &OperatorError) -> Option<Aside> {
        match error {
            OperatorError::Trap(_) if self.dead_letter => Some(Aside::DeadLetter),
            OperatorError::Limit { .. } => match self.on_breach {
                OnBreach::Fail => None,
                OnBreach::Skip => Some(Aside::Skip),
                OnBreach::DeadLetter => Some(Aside::DeadLetter),
            },
            _ => None,
        }
    }
}

/// Where in the job an operator is running, for errors and dead letters.
pub(super) struct Place<'a> {
    pub(super) operator: &'a str,
    pub(super) worker: usize,
    pub(super) batch_no: u64,
    pub(super) partition: usize,
    pub(super) dead_letter: bool,
}

impl Place<'_> {
    /// The job's error for an operator failure here.
    pub(super) fn failed(&self, error: OperatorError) -> JobError {
        JobError::Operator {
            operator: self.operator.to_string(),
            worker: self.worker,
            batch_no: self.batch_no,
            partition: self.partition,
            error,
        }
    }

    /// A dead letter for record `rec`, diverted here for `reason`.
    pub(super) fn dead_letter(&self, rec: batch::Record<'_>, reason: &str) -> DeadLetter {
        DeadLetter {
            operator: self.operator.to_string(),
            reason: reason.to_string(),
            batch_no: self.batch_no,
            partition: self.partition,
            key: rec.key.map(<[u8]>::to_vec),
            value: rec.value.to_vec(),
            timestamp: rec.timestamp,
            headers: crate::operators::owned_headers(rec.headers),
        }
    }
}

/// A call's output, or the records of the failed call and why it failed.
pub(super) type Attempt = Result<Batch, (Batch, OperatorError)>;

/// One operator applied to one partition batch.
pub(super) struct Run<'a> {
    pub(super) op: &'a mut dyn Operator,
    pub(super) ctx: &'a BatchContext,
    pub(super) place: &'a Place<'a>,
    pub(super) policy: Policy,
    pub(super) dead: &'a mut Vec<DeadLetter>,
    pub(super) skipped: &'a SkipCount,
    pub(super) meter: &'a OperatorMeter,
}

impl Run<'_> {
    /// The operator's output for `input`. Rejected records go to the
    /// dead-letter file (or stop the job); when a call traps or exceeds a
    /// limit, the records at fault are set aside as the job's policy says
    /// (or the job stops), found by bisection when the operator is
    /// stateless.
    pub(super) fn apply(&mut self, input: Batch) -> Result<Batch, JobError> {
        let (input, error) = match self.process(input)? {
            Ok(out) => return Ok(out),
            Err(failed) => failed,
        };
        let Some(aside) = self.policy.aside(&error) else {
            return Err(self.place.failed(error));
        };
        if input.len() > 1 && self.op.stateless() {
            return self.isolate(input, aside, error);
        }
        let scope = if input.len() == 1 {
            "this record".to_string()
        } else {
            format!("this record's batch ({} records)", input.len())
        };
        self.set_aside(&input, aside, &error, &scope);
        Ok(Batch::new())
    }

    /// Runs the halves of `input`, whose call failed with `error`, and
    /// recursively the halves of every part that fails again, depth first,
    /// so that the output keeps the input's order; a failing single record
    /// is set aside. Once [`MAX_ISOLATION_CALLS`] calls or
    /// [`MAX_ISOLATION_FAILURES`] failures are spent, the parts not done yet
    /// are set aside whole, as `aside` says, for `error`.
    pub(super) fn isolate(
        &mut self,
        input: Batch,
        aside: Aside,
        error: OperatorError,
    ) -> Result<Batch, JobError> {
        let mut out = Batch::new();
        let (mut calls, mut failures) = (0, 0);
        // The parts still to run; the next one is last.
        let mut todo = halves(&input);
        while let Some(part) = todo.pop() {
            if calls == MAX_ISOLATION_CALLS || failures == MAX_ISOLATION_FAILURES {
                todo.push(part);
                let scope = format!(
                    "this record's part of the batch (not searched further after {calls} calls, {failures} failed)"
                );
                for rest in todo.iter().rev() {
                    self.set_aside(rest, aside, &error, &scope);
                }
                break;
            }
            calls += 1;
            let (part, failure) = match self.process(part)? {
                Ok(done) => {
                    batch::append(&mut out, &done);
                    continue;
                }
                Err(failed) => failed,
            };
            failures += 1;
            let Some(part_aside) = self.policy.aside(&failure) else {
                return Err(self.place.failed(failure));
            };
            if part.len() > 1 {
                todo.extend(halves(&part));
            } else {
                self.set_aside(&part, part_aside, &failure, "this record");
            }
        }
        Ok(out)
    }

    /// Calls the operator on `input`, and again without the records it
    /// rejects, which go to the dead-letter file (at most
    /// [`MAX_REJECTION_ROUNDS`] rounds). A failure other than a rejection
    /// comes back with the records of the failed call. A rejection without
    /// a dead-letter file, or an inconsistent one, stops the job.
    pub(super) fn process(&mut self, mut input: Batch) -> Result<Attempt, JobError> {
        let place = self.place;
        let mut rounds = 0;
        loop {
            if input.is_empty() {
                return Ok(Ok(input));
            }
            let mut rejected = match self.op.process_with(&mut input, self.ctx) {
                Ok(out) => return Ok(Ok(out)),
                Err(OperatorError::BadRecords(rejected)) => rejected,
                Err(error) => {
                    self.count_failure(&error);
                    return Ok(Err((input, error)));
                }
            };
            rounds += 1;
            // One entry per record, the first reason given.
            rejected.sort_by_key(|r| r.index);
            rejected.dedup_by_key(|r| r.index);
            let bad_index = rejected.iter().find(|r| r.index as usize >= input.len());
            if rejected.is_empty() || bad_index.is_some() || rounds > MAX_REJECTION_ROUNDS {
                return Err(place.failed(OperatorError::Host(format!(
                    "the operator reported bad records inconsistently ({} rejection(s), round {rounds}, index out of range: {:?})",
                    rejected.len(),
                    bad_index.map(|r| r.index)
                ))));
            }
            if !place.dead_letter {
                let first = &rejected[0];
                let record = input
                    .get(first.index as usize)
                    .map(|r| preview(r.value))
                    .unwrap_or_default();
                return Err(JobError::Rejected {
                    operator: place.operator.to_string(),
                    batch_no: place.batch_no,
                    partition: place.partition,
                    index: first.index,
                    reason: first.reason.clone(),
                    record,
                    more: rejected.len() - 1,
                });
            }
            self.meter.rejected(rejected.len());
            for r in &rejected {
                if let Some(rec) = input.get(r.index as usize) {
                    self.dead.push(place.dead_letter(rec, &r.reason));
                }
            }
            let indices: Vec<u32> = rejected.iter().map(|r| r.index).collect();
            input = batch::without(&input, &indices);
        }
    }

    /// Counts a failed call in the operator's meter: a trap, or a breach by
    /// limit; a Wasm instance is re-created after either, but for a state
    /// past `max_state`, which leaves it as it was.
    fn count_failure(&self, error: &OperatorError) {
        match error {
            OperatorError::Trap(_) => self.meter.trapped(),
            OperatorError::Limit { limit, .. } => {
                let restarted = matches!(
                    limit,
                    Limit::Memory | Limit::CpuPerBatch | Limit::OutputRatio
                );
                self.meter.breached(limit.name(), restarted);
            }
            _ => {}
        }
    }

    /// Sends the records of a call that failed with `error` to the
    /// dead-letter file, or drops and counts them; `scope` says which
    /// records the call failed on, for the reason ("this record", ...).
    pub(super) fn set_aside(
        &mut self,
        records: &Batch,
        aside: Aside,
        error: &OperatorError,
        scope: &str,
    ) {
        let place = self.place;
        match aside {
            Aside::DeadLetter => {
                let reason = match error {
                    OperatorError::Trap(reason) => format!("operator trapped on {scope}: {reason}"),
                    other => format!("operator failed on {scope}: {other}"),
                };
                for rec in records.iter() {
                    self.dead.push(place.dead_letter(rec, &reason));
                }
            }
            Aside::Skip => {
                self.skipped.add(records.len() as u64);
                tracing::warn!(
                    operator = place.operator,
                    worker = place.worker,
                    batch = place.batch_no,
                    partition = place.partition,
                    "skipped {} record(s), the operator failed on {scope}: {error}",
                    records.len()
                );
            }
        }
    }
}

/// The two halves of `input`, the first half last (see [`Run::isolate`]).
fn halves(input: &Batch) -> Vec<Batch> {
    let mid = input.len() / 2;
    vec![
        batch::slice(input, mid..input.len()),
        batch::slice(input, 0..mid),
    ]
}
