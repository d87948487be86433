//! How an instance is held to its job's [`Limits`]: the epoch ticker that
//! gives calls a deadline, the job's [`Halt`] looked at while a call runs,
//! the limiter of memories and tables, the bound on what a call may pass to
//! the host, and the reading of a failed call as a breach or a trap.
//!
//! A call's output is bounded before the host copies it: the bytes a call
//! may pass to the host (its result, or one host call's arguments) are
//! wasmtime's hostcall fuel, set before each call to what `output_ratio`
//! allows for the call's input. Sizes are counted as they cross the
//! boundary: a batch's keys and values plus 17 bytes per record (offsets,
//! key presence, timestamp), so that many empty records count too.

use crate::model::batch::Batch;
use crate::operators::OperatorError;
use crate::signal::Halt;
use crate::spec::limits::{self, Limit, Limits};
use std::sync::mpsc::{RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;
use wasmtime::{Engine, UpdateDeadline};

/// How often the engine's epoch advances: the resolution of `cpu_per_batch`.
pub const TICK: Duration = Duration::from_millis(10);

/// The epoch deadline, in ticks, of a call without a time limit: never reached.
const NO_DEADLINE: u64 = u64::MAX / 2;

/// How wasmtime reports that a call passed more data to the host than its
/// hostcall fuel allows (the error type itself is private).
const FUEL_EXHAUSTED: &str = "fuel allocated for hostcalls has been exhausted";

/// Bytes of a batch as it crosses the boundary: keys and values, and per
/// record two 4-byte ends, a presence byte and an 8-byte timestamp; with
/// headers, their bytes, a 4-byte end per record and per header entry two
/// 4-byte ends and a presence byte.
pub(super) fn boundary_bytes(b: &Batch) -> usize {
    b.keys.len()
        + b.values.len()
        + 4 * (b.key_ends.len() + b.value_ends.len())
        + b.key_present.len()
        + 8 * b.timestamps.len()
        + b.header_keys.len()
        + b.header_values.len()
        + 4 * (b.header_ends.len() + b.header_key_ends.len() + b.header_value_ends.len())
        + b.header_value_present.len()
}

/// The hostcall fuel of a call with `input` bytes of input: the bytes it
/// may pass to the host, unbounded when `output_ratio` is not set.
pub(super) fn hostcall_fuel(limits: &Limits, input: usize) -> usize {
    limits.output_allowed(input).map_or(usize::MAX, |allowed| {
        usize::try_from(allowed).unwrap_or(usize::MAX)
    })
}

/// Advances an engine's epoch every [`TICK`] on one background thread, until
/// dropped.
pub(super) struct Ticker {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    /// Starts the thread for `engine`.
    pub(super) fn start(engine: &Engine) -> std::io::Result<Ticker> {
        let engine = engine.clone();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("sluice-epoch".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(TICK) {
                    engine.increment_epoch();
                }
            })?;
        Ok(Ticker {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        // Closing the channel wakes the thread, which then ends.
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The epoch deadline, in ticks from now, of a call that may run for `limit`.
/// The deadline is never earlier than `limit`, and at most one tick later.
pub(super) fn deadline_ticks(limit: Option<Duration>) -> u64 {
    match limit {
        None => NO_DEADLINE,
        Some(d) => u64::try_from(d.as_nanos().div_ceil(TICK.as_nanos()))
            .unwrap_or(NO_DEADLINE)
            .saturating_add(1)
            .min(NO_DEADLINE),
    }
}

/// Ticks between two looks at a running call's [`Halt`] (100 ms): a halted
/// call ends within about this long.
pub(super) const HALT_CHECK_TICKS: u64 = 10;

/// What a call of a halted job fails with.
#[derive(Debug, thiserror::Error)]
#[error("the job was halted: it did not stop within its grace, so its operator calls were ended")]
pub(super) struct Halted;

/// One store's call deadline. With a [`Halt`], the deadline is handed to
/// wasmtime in slices of [`HALT_CHECK_TICKS`], and the halt is looked at
/// as each slice runs out; the slices add up to the call's deadline.
pub(super) struct Deadline {
    /// Ticks of the call's deadline not handed out yet.
    left: u64,
    halt: Option<Halt>,
}

impl Deadline {
    /// The deadline of a store whose job halts with `halt`.
    pub(super) fn new(halt: Option<Halt>) -> Self {
        Deadline { left: 0, halt }
    }

    /// Whether the store's job was halted.
    pub(super) fn halted(&self) -> bool {
        self.halt.as_ref().is_some_and(Halt::is_raised)
    }

    /// Starts a call that may run `ticks` epochs; returns the epochs to
    /// give wasmtime first.
    pub(super) fn start(&mut self, ticks: u64) -> u64 {
        let first = match self.halt {
            Some(_) => ticks.min(HALT_CHECK_TICKS),
            None => ticks,
        };
        self.left = ticks - first;
        first
    }

    /// What a call does when its epochs run out: it fails when its job was
    /// halted, is interrupted at its deadline, or runs for another slice.
    pub(super) fn next(&mut self) -> wasmtime::Result<UpdateDeadline> {
        if self.halted() {
            return Err(wasmtime::Error::new(Halted));
        }
        if self.left == 0 {
            return Ok(UpdateDeadline::Interrupt);
        }
        let slice = self.left.min(HALT_CHECK_TICKS);
        self.left -= slice;
        Ok(UpdateDeadline::Continue(slice))
    }
}

/// Holds one store's memories (together) and tables to the job's limits,
/// and remembers a refused memory growth, so that the trap the guest runs
/// into next is reported as the breach it is.
pub(super) struct MemoryLimiter {
    limit: usize,
    used: usize,
    last_growth: usize,
    refused: Option<usize>,
}

impl MemoryLimiter {
    /// A limiter allowing `limit` bytes of linear memory in all.
    pub(super) fn new(limit: u64) -> Self {
        MemoryLimiter {
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            used: 0,
            last_growth: 0,
            refused: None,
        }
    }

    /// Forgets earlier refusals; called as a call begins.
    pub(super) fn reset(&mut self) {
        self.refused = None;
    }

    /// The bytes of linear memory the instance holds.
    pub(super) fn used(&self) -> usize {
        self.used
    }

    /// The largest total the instance asked for and was refused since the
    /// last [`MemoryLimiter::reset`].
    pub(super) fn refused(&self) -> Option<usize> {
        self.refused
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current);
        let total = self.used.saturating_add(growth);
        if total > self.limit {
            self.refused = Some(self.refused.map_or(total, |r| r.max(total)));
            return Ok(false);
        }
        self.used = total;
        self.last_growth = growth;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.used = self.used.saturating_sub(self.last_growth);
        Ok(())
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= limits::TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        limits::INSTANCES
    }

    fn tables(&self) -> usize {
        limits::TABLES
    }

    fn memories(&self) -> usize {
        limits::MEMORIES
    }
}

/// What a failed call with `input` bytes of input means. A call of a halted
/// job failed for that, whatever it was doing; a call
/// interrupted at its deadline exceeded `cpu_per_batch`; a call that failed
/// after the limiter refused it memory (`refused`, in bytes) exceeded
/// `memory`; a call that ran out of hostcall fuel exceeded `output_ratio`;
/// anything else is a trap of kind `kind`. `context` (the guest's last
/// words and where it was) is added to each.
pub(super) fn classify(
    err: &wasmtime::Error,
    limits: &Limits,
    refused: Option<usize>,
    input: usize,
    kind: impl FnOnce() -> String,
    context: &str,
) -> OperatorError {
    if err.downcast_ref::<Halted>().is_some() {
        return OperatorError::Host(Halted.to_string());
    }
    let interrupted = err.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt);
    let out_of_fuel = err.chain().any(|e| e.to_string().contains(FUEL_EXHAUSTED));
    match (
        interrupted,
        limits.cpu_per_batch,
        refused,
        limits.output_ratio,
    ) {
        (true, Some(deadline), _, _) => OperatorError::Limit {
            limit: Limit::CpuPerBatch,
            value: crate::model::units::format_duration(deadline),
            detail: format!(
                "the call was still running at its deadline and was interrupted{context}"
            ),
        },
        (_, _, Some(asked), _) => OperatorError::Limit {
            limit: Limit::Memory,
            value: crate::model::units::format_size(limits.memory),
            detail: format!(
                "the instance asked for {} of linear memory{context}",
                crate::model::units::format_size(asked as u64)
            ),
        },
        (_, _, _, Some(ratio)) if out_of_fuel => {
            output_breach(limits, ratio, input, "tried to pass more than")
        }
        _ => OperatorError::Trap(format!("{}{context}", kind())),
    }
}

/// Checks the size of a call's output against `output_ratio`, both sizes in
/// bytes as they cross the boundary.
pub(super) fn check_output(
    limits: &Limits,
    input: usize,
    output: usize,
) -> Result<(), OperatorError> {
    match (limits.output_ratio, limits.output_allowed(input)) {
        (Some(ratio), Some(allowed)) if output as u64 > allowed => Err(output_breach(
            limits,
            ratio,
            input,
            &format!(
                "returned {}, more than",
                crate::model::units::format_size(output as u64)
            ),
        )),
        _ => Ok(()),
    }
}

/// A breach of `output_ratio` by a call with `input` bytes of input that
/// `did` (for example "returned 3 MiB, more than") what it may.
fn output_breach(limits: &Limits, ratio: f64, input: usize, did: &str) -> OperatorError {
    let allowed = limits.output_allowed(input).unwrap_or_default();
    OperatorError::Limit {
        limit: Limit::OutputRatio,
        value: ratio.to_string(),
        detail: format!(
            "the call {did} the {} it may pass to the host for {} of input \
             ({ratio} × input + {})",
            crate::model::units::format_size(allowed),
            crate::model::units::format_size(input as u64),
            crate::model::units::format_size(limits::OUTPUT_ALLOWANCE)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn deadlines_round_up_to_whole_ticks() {
        assert_eq!(deadline_ticks(Some(Duration::from_millis(200))), 21);
        assert_eq!(deadline_ticks(Some(Duration::from_millis(1))), 2);
        assert_eq!(deadline_ticks(None), NO_DEADLINE);
        assert_eq!(deadline_ticks(Some(Duration::MAX)), NO_DEADLINE);
    }

    #[test]
    fn slices_add_up_to_the_deadline_and_a_halt_ends_the_call() {
        let halt = Halt::default();
        let mut d = Deadline::new(Some(halt.clone()));
        let mut given = d.start(25);
        assert_eq!(given, HALT_CHECK_TICKS);
        loop {
            match d.next().unwrap() {
                UpdateDeadline::Continue(n) => given += n,
                UpdateDeadline::Interrupt => break,
                _ => unreachable!(),
            }
        }
        assert_eq!(given, 25);
        assert_eq!(d.start(25), HALT_CHECK_TICKS);
        halt.raise();
        assert!(d.halted());
        let Err(err) = d.next() else {
            panic!("a halted call went on")
        };
        assert!(err.downcast_ref::<Halted>().is_some());
        let msg = classify(&err, &Limits::default(), None, 0, String::new, "").to_string();
        assert!(msg.starts_with("the job was halted"), "{msg}");
        // Without a halt, the whole deadline goes at once.
        let mut d = Deadline::new(None);
        assert_eq!(d.start(25), 25);
        assert!(matches!(d.next().unwrap(), UpdateDeadline::Interrupt));
    }

    #[test]
    fn boundary_bytes_count_records_too() {
        let mut b = Batch::new();
        b.push(None, b"abc", 0);
        b.push(None, b"", 0);
        assert_eq!(boundary_bytes(&b), 3 + 2 * 16);
        b.push(Some(b"k"), b"v", 0);
        assert_eq!(boundary_bytes(&b), 5 + 3 * 17);
        // A header: its bytes, an end per record, two ends per entry.
        b.push_header(b"hk", Some(b"hv"));
        assert_eq!(boundary_bytes(&b), 5 + 3 * 17 + 4 + 3 * 4 + 2 * 4);
        let unchecked = Limits {
            output_ratio: None,
            ..Limits::default()
        };
        assert_eq!(hostcall_fuel(&unchecked, 10), usize::MAX);
    }

    #[test]
    fn memories_count_together_and_refusals_are_remembered() {
        let mut l = MemoryLimiter::new(4 << 20);
        assert!(l.memory_growing(0, 2 << 20, None).unwrap());
        assert!(l.memory_growing(0, 1 << 20, None).unwrap());
        assert!(!l.memory_growing(2 << 20, 4 << 20, None).unwrap());
        assert_eq!(l.refused(), Some(5 << 20));
        l.reset();
        assert_eq!(l.refused(), None);
        assert!(l.memory_growing(1 << 20, 2 << 20, None).unwrap());
    }

    #[test]
    fn output_over_the_ratio_is_a_breach() {
        let limits = Limits {
            output_ratio: Some(2.0),
            ..Limits::default()
        };
        assert!(check_output(&limits, 100, 1 << 20).is_ok());
        let err = check_output(&limits, 100, 3 << 20).unwrap_err().to_string();
        assert_eq!(
            err,
            "limit `output_ratio` = 2 exceeded: the call returned 3 MiB, more than the 1.0 MiB \
             it may pass to the host for 100 bytes of input (2 × input + 1 MiB)"
        );
    }
}
