//! What a job is made of, as far as its checkpoint depends on it: the
//! operator chain and the settings that shape state (windows, keys,
//! functions), the partitioning, the sources. A resumed job whose
//! fingerprint differs from its checkpoint's is refused, naming the change.

use serde::{Deserialize, Serialize};

/// Ordered `(field, value)` pairs, e.g. `("operators[1]", "aggregate `counts`")`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint(pub Vec<(String, String)>);

/// How a job differs from its checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// Each difference, as `field: was .., is now ..`.
    pub changes: Vec<String>,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.changes.join("; "))
    }
}

impl Fingerprint {
    /// Adds a field.
    pub fn push(&mut self, field: impl Into<String>, value: impl Into<String>) {
        self.0.push((field.into(), value.into()));
    }

    /// How `self` (the job now) differs from `old` (its checkpoint's).
    pub fn compare(&self, old: &Fingerprint) -> Option<Mismatch> {
        let get =
            |fp: &Fingerprint, k: &str| fp.0.iter().find(|(f, _)| f == k).map(|(_, v)| v.clone());
        let mut fields: Vec<&String> = old.0.iter().map(|(f, _)| f).collect();
        for (f, _) in &self.0 {
            if !fields.contains(&f) {
                fields.push(f);
            }
        }
        let changes: Vec<String> = fields
            .into_iter()
            .filter_map(|f| match (get(old, f), get(self, f)) {
                (Some(a), Some(b)) if a == b => None,
                (Some(a), Some(b)) => Some(format!("`{f}` was {a:?}, is now {b:?}")),
                (Some(a), None) => Some(format!("`{f}` was {a:?}, is now gone")),
                (None, Some(b)) => Some(format!("`{f}` is new: {b:?}")),
                (None, None) => None,
            })
            .collect();
        (!changes.is_empty()).then_some(Mismatch { changes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_setting_is_named_with_both_values() {
        let mut old = Fingerprint::default();
        old.push("partitions", "2");
        old.push("operators[0].length", "10s");
        let mut new = old.clone();
        assert_eq!(new.compare(&old), None);
        new.0[1].1 = "20s".into();
        new.push("operators[1]", "count");
        let m = new.compare(&old).unwrap().to_string();
        assert_eq!(
            m,
            "`operators[0].length` was \"10s\", is now \"20s\"; `operators[1]` is new: \"count\""
        );
    }
}
