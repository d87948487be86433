//! `sum`: a keyed reducer adding up decimal integers per key.
//!
//! Each record's value is a signed 64-bit integer in decimal text;
//! surrounding whitespace is ignored. The accumulator is the key's running
//! total as decimal text. A value that is not an integer, or that would make
//! the total overflow, is rejected with a reason naming the value, and the
//! total stays as it was.
//!
//! ```toml
//! [[operators]]
//! reducer = "sum.wasm"
//! ```

use sluice_sdk::{Config, Error, Group, Reducer, export_reducer};

/// Adds up decimal `i64` values per key.
pub struct Sum;

/// Parses trimmed decimal text as an `i64`.
fn parse(bytes: &[u8]) -> Option<i64> {
    std::str::from_utf8(bytes).ok()?.trim().parse().ok()
}

/// A value quoted for a rejection reason, shortened when long.
fn quoted(bytes: &[u8]) -> String {
    const MAX: usize = 40;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX)]);
    if bytes.len() > MAX {
        format!("{text:?}...")
    } else {
        format!("{text:?}")
    }
}

impl Reducer for Sum {
    fn init(config: &Config) -> Result<Self, Error> {
        config.allow_only(&[])?;
        Ok(Sum)
    }

    fn reduce(&mut self, group: &Group<'_>, out: &mut Vec<u8>) -> Result<(), Error> {
        let mut total = match group.accumulator() {
            None => 0,
            Some(acc) => parse(acc).ok_or_else(|| {
                Error::Failed(format!(
                    "the accumulator of key {} is not an integer: {}",
                    quoted(group.key()),
                    quoted(acc)
                ))
            })?,
        };
        let mut rejected = Vec::new();
        for value in group.values() {
            let Some(x) = parse(value.bytes) else {
                rejected.push(value.reject(format!(
                    "value {} is not a decimal integer (accepted: -9223372036854775808 to 9223372036854775807)",
                    quoted(value.bytes)
                )));
                continue;
            };
            match total.checked_add(x) {
                Some(t) => total = t,
                None => rejected.push(value.reject(format!(
                    "value {} would overflow the total {total} of key {} (a signed 64-bit integer)",
                    quoted(value.bytes),
                    quoted(group.key())
                ))),
            }
        }
        if !rejected.is_empty() {
            return Err(Error::BadRecords(rejected));
        }
        out.extend_from_slice(total.to_string().as_bytes());
        Ok(())
    }
}

export_reducer!(Sum);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::testing::ReducerHarness;

    fn pairs(rows: &[(&str, &str)]) -> Vec<(String, String)> {
        rows.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn sums_per_key_across_calls() {
        let mut h = ReducerHarness::<Sum>::new(&[]).unwrap();
        let out = h.run(&[("a", "1"), ("b", " 5 "), ("a", "-3")]).unwrap();
        assert_eq!(out, pairs(&[("a", "-2"), ("b", "5")]));
        let out = h.run(&[("b", "10"), ("c", "0")]).unwrap();
        assert_eq!(out, pairs(&[("b", "15"), ("c", "0")]));
        assert_eq!(h.accumulator("a").as_deref(), Some("-2"));
    }

    #[test]
    fn rejects_non_numbers_naming_the_value_and_keeps_state() {
        let mut h = ReducerHarness::<Sum>::new(&[]).unwrap();
        h.run(&[("a", "1")]).unwrap();
        let Err(Error::BadRecords(rs)) = h.run(&[("a", "2"), ("b", "x7"), ("a", "1.5")]) else {
            panic!("non-numbers must be rejected");
        };
        let got: Vec<_> = rs.iter().map(|r| r.index).collect();
        // Indices are positions in the input records.
        assert_eq!(got, [2, 1]);
        assert!(rs[1].reason.contains("\"x7\""), "{}", rs[1].reason);
        assert!(rs[0].reason.contains("not a decimal integer"));
        assert_eq!(h.accumulator("a").as_deref(), Some("1"));
        assert_eq!(h.accumulator("b"), None);
        // The retry without the rejected records goes through.
        assert_eq!(h.run(&[("a", "2")]).unwrap(), pairs(&[("a", "3")]));
    }

    #[test]
    fn rejects_overflow() {
        let mut h = ReducerHarness::<Sum>::new(&[]).unwrap();
        h.run(&[("a", &i64::MAX.to_string())]).unwrap();
        let Err(Error::BadRecords(rs)) = h.run(&[("a", "1")]) else {
            panic!("overflow must be rejected");
        };
        assert!(rs[0].reason.contains("overflow"), "{}", rs[0].reason);
        assert!(rs[0].reason.contains("\"1\""), "{}", rs[0].reason);
        assert!(h.run(&[("a", "-1")]).is_ok());
        assert!(h.run(&[("b", "99999999999999999999")]).is_err());
    }

    #[test]
    fn corrupt_accumulator_is_a_failure() {
        let mut groups = sluice_sdk::Groups::default();
        groups.push(b"k", Some(b"not a number"), ["1"]);
        let err = sluice_sdk::reduce_all(&mut Sum, &groups).unwrap_err();
        assert!(matches!(err, Error::Failed(m) if m.contains("accumulator")));
    }

    #[test]
    fn refuses_settings() {
        assert!(matches!(
            ReducerHarness::<Sum>::new(&[("x", "1")]),
            Err(Error::BadConfig(_))
        ));
    }
}
