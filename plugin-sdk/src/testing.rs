//! Run an operator natively, in a plain unit test, exactly as the host would
//! call it through Wasm (same batch layout, same error handling).

use crate::{Batch, Config, Error, Level, Operator};
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
