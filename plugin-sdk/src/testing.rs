//! Run an operator or a reducer natively, in a plain unit test, exactly as
//! the host would call it through Wasm (same layout, same error handling).

use crate::{Batch, Config, Error, Groups, Level, Operator, RecordError, Reducer};
use std::cell::RefCell;

/// Runs an [`Operator`] natively on batches.
///
/// ```
/// # use sluice_sdk::*;
/// # struct Echo;
/// # impl Operator for Echo {
/// #     fn init(_: &Config) -> Result<Self, Error> { Ok(Echo) }
/// #     fn process_record(&mut self, r: Record<'_>, out: &mut Output) -> Result<(), String> {
/// #         out.forward(r); Ok(())
/// #     }
/// # }
/// let mut h = sluice_sdk::testing::Harness::<Echo>::new(&[]).unwrap();
/// assert_eq!(h.run_lines(&["a", "b"]).unwrap(), ["a", "b"]);
/// ```
pub struct Harness<T: Operator> {
    op: T,
}

impl<T: Operator> Harness<T> {
    /// Initialises the operator with `config`, as `init` would in the host.
    pub fn new(config: &[(&str, &str)]) -> Result<Self, Error> {
        let entries = config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Ok(Harness {
            op: T::init(&Config::new(entries))?,
        })
    }

    /// Processes a copy of one batch, as one `process` call of the host
    /// would (the host, too, hands the operator its own copy).
    pub fn run(&mut self, input: &Batch) -> Result<Batch, Error> {
        self.run_owned(input.clone())
    }

    /// Processes one batch, consuming it.
    pub fn run_owned(&mut self, input: Batch) -> Result<Batch, Error> {
        crate::__private::run(&mut self.op, input)
    }

    /// Processes text lines as one batch of unkeyed records and returns the
    /// output values as text (lossily decoded).
    pub fn run_lines(&mut self, lines: &[&str]) -> Result<Vec<String>, Error> {
        let out = self.run(&Batch::from_values(lines, 0))?;
        Ok(out
            .iter()
            .map(|r| String::from_utf8_lossy(r.value).into_owned())
            .collect())
    }

    /// The operator, to inspect its state.
    pub fn operator(&mut self) -> &mut T {
        &mut self.op
    }
}

/// Runs a [`Reducer`] natively, keeping the accumulators the way the host
/// does: each [`ReducerHarness::run`] is one `reduce` call with every key of
/// the batch, and the new accumulators are kept only when the call succeeds.
///
/// ```
/// # use sluice_sdk::*;
/// # struct Last;
/// # impl Reducer for Last {
/// #     fn init(_: &Config) -> Result<Self, Error> { Ok(Last) }
/// #     fn reduce(&mut self, g: &Group<'_>, out: &mut Vec<u8>) -> Result<(), Error> {
/// #         out.extend_from_slice(g.values().last().map_or(&b""[..], |v| v.bytes)); Ok(())
/// #     }
/// # }
/// let mut h = sluice_sdk::testing::ReducerHarness::<Last>::new(&[]).unwrap();
/// h.run(&[("a", "1"), ("b", "2"), ("a", "3")]).unwrap();
/// assert_eq!(h.accumulator("a"), Some("3".to_string()));
/// ```
pub struct ReducerHarness<T: Reducer> {
    reducer: T,
    /// (key, accumulator) in the order keys were first seen.
    state: Vec<(Vec<u8>, Vec<u8>)>,
}

impl<T: Reducer> ReducerHarness<T> {
    /// Initialises the reducer with `config`, as `init` would in the host.
    pub fn new(config: &[(&str, &str)]) -> Result<Self, Error> {
        let entries = config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Ok(ReducerHarness {
            reducer: T::init(&Config::new(entries))?,
            state: Vec::new(),
        })
    }

    /// Reduces `(key, value)` records as one batch: groups them by key in
    /// first-seen order, makes one call, stores the new accumulators and
    /// returns `(key, accumulator)` of every key of the batch, as text
    /// (lossily decoded). Rejections come back as [`Error::BadRecords`]
    /// whose indices are positions in `records`; the state is then unchanged.
    pub fn run(&mut self, records: &[(&str, &str)]) -> Result<Vec<(String, String)>, Error> {
        // Distinct keys in first-seen order, with the positions of their records.
        let mut keys: Vec<(&str, Vec<usize>)> = Vec::new();
        for (i, (k, _)) in records.iter().enumerate() {
            match keys.iter_mut().find(|(key, _)| key == k) {
                Some((_, positions)) => positions.push(i),
                None => keys.push((k, vec![i])),
            }
        }
        let mut groups = Groups::default();
        // `origin[v]`: the position in `records` of value `v` of the call.
        let mut origin = Vec::with_capacity(records.len());
        for (key, positions) in &keys {
            let accumulator = self.get(key.as_bytes()).map(<[u8]>::to_vec);
            groups.push(
                key.as_bytes(),
                accumulator.as_deref(),
                positions.iter().map(|&p| records[p].1),
            );
            origin.extend(positions.iter().copied());
        }
        let out = crate::reduce_all(&mut self.reducer, &groups).map_err(|e| match e {
            Error::BadRecords(rs) => Error::BadRecords(
                rs.into_iter()
                    .map(|r| RecordError {
                        index: origin.get(r.index as usize).map_or(r.index, |&p| p as u32),
                        reason: r.reason,
                    })
                    .collect(),
            ),
            other => other,
        })?;
        if out.ends.len() != keys.len() {
            return Err(Error::Failed(format!(
                "the reducer returned {} accumulator(s) for {} key(s)",
                out.ends.len(),
                keys.len()
            )));
        }
        let mut result = Vec::with_capacity(keys.len());
        for (k, (key, _)) in keys.iter().enumerate() {
            let acc = out.get(k).unwrap_or_default().to_vec();
            result.push((key.to_string(), String::from_utf8_lossy(&acc).into_owned()));
            match self.state.iter_mut().find(|(s, _)| s == key.as_bytes()) {
                Some((_, slot)) => *slot = acc,
                None => self.state.push((key.as_bytes().to_vec(), acc)),
            }
        }
        Ok(result)
    }

    /// The accumulator kept for `key`, as text (lossily decoded).
    pub fn accumulator(&self, key: &str) -> Option<String> {
        self.get(key.as_bytes())
            .map(|a| String::from_utf8_lossy(a).into_owned())
    }

    /// The reducer, to inspect it.
    pub fn reducer(&mut self) -> &mut T {
        &mut self.reducer
    }

    fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.state
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, a)| a.as_slice())
    }
}

thread_local! {
    static LOG: RefCell<Vec<(Level, String)>> = const { RefCell::new(Vec::new()) };
}

#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) fn capture_log(level: Level, message: &str) {
    LOG.with(|l| l.borrow_mut().push((level, message.to_string())));
}

/// Takes the lines the operator logged on this thread since the last call
/// (native runs only; in Wasm the lines go to the host log).
pub fn take_log() -> Vec<(Level, String)> {
    LOG.with(|l| std::mem::take(&mut *l.borrow_mut()))
}
