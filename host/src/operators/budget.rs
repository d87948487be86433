//! The keyed state an operator instance holds, counted as it changes,
//! against the job's `state` limit.
//!
//! State is counted in entries — an aggregate's total or window of one key,
//! a join's window, its key within a window, a record it buffers, a
//! reducer's accumulator — each as its key and value bytes plus
//! [`STATE_ENTRY_OVERHEAD`]. An operator asks [`StateBudget::admit`] before
//! an entry grows or a new one is made, and gives the bytes back with
//! [`StateBudget::release`] when it forgets an entry, so the count never
//! needs the state walked again.

use crate::model::units::format_size;
use crate::operators::OperatorError;
use crate::spec::limits::{Limit, STATE_ENTRY_OVERHEAD};

/// The bytes an entry with `key` key bytes and `value` value bytes counts.
pub fn entry_bytes(key: usize, value: usize) -> u64 {
    key as u64 + value as u64 + STATE_ENTRY_OVERHEAD
}

/// The state one instance holds, in bytes, and the most it may hold.
#[derive(Debug, Clone)]
pub struct StateBudget {
    cap: u64,
    held: u64,
}

impl StateBudget {
    /// An empty budget of `cap` bytes.
    pub fn new(cap: u64) -> Self {
        StateBudget { cap, held: 0 }
    }

    /// The bytes held.
    pub fn held(&self) -> u64 {
        self.held
    }

    /// Counts `bytes` more, if they fit; otherwise counts nothing and
    /// returns the breach, its detail saying that `what` would have added
    /// them.
    pub fn admit(
        &mut self,
        bytes: u64,
        what: impl FnOnce() -> String,
    ) -> Result<(), OperatorError> {
        match self.held.checked_add(bytes) {
            Some(total) if total <= self.cap => {
                self.held = total;
                Ok(())
            }
            _ => Err(OperatorError::Limit {
                limit: Limit::State,
                value: format_size(self.cap),
                detail: format!(
                    "{} would add {} to the {} of keyed state this instance holds",
                    what(),
                    format_size(bytes),
                    format_size(self.held)
                ),
            }),
        }
    }

    /// Gives back `bytes` of state the operator forgot.
    pub fn release(&mut self, bytes: u64) {
        debug_assert!(bytes <= self.held, "released more than was held");
        self.held = self.held.saturating_sub(bytes);
    }

    /// Forgets everything held.
    pub fn clear(&mut self) {
        self.held = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_counts_key_value_and_overhead() {
        assert_eq!(entry_bytes(3, 5), 8 + STATE_ENTRY_OVERHEAD);
        assert_eq!(entry_bytes(0, 0), STATE_ENTRY_OVERHEAD);
    }

    #[test]
    fn admits_up_to_the_cap_and_no_further() {
        let mut b = StateBudget::new(1000);
        b.admit(600, || "a".into()).unwrap();
        b.admit(400, || "b".into()).unwrap();
        assert_eq!(b.held(), 1000);
        let err = b.admit(1, || "key \"c\"".into()).unwrap_err().to_string();
        assert_eq!(
            err,
            "limit `state` = 1000 bytes exceeded: key \"c\" would add 1 bytes to the \
             1000 bytes of keyed state this instance holds"
        );
        // A refusal counts nothing; what is released can be taken again.
        assert_eq!(b.held(), 1000);
        b.release(300);
        b.admit(300, || "d".into()).unwrap();
        assert!(b.admit(u64::MAX, || "e".into()).is_err());
        b.clear();
        assert_eq!(b.held(), 0);
    }
}
