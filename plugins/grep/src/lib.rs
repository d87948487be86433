//! `grep`: a filter keeping records whose value matches a regular expression.
//!
//! Settings:
//!
//! - `pattern` (required): a regular expression (Rust `regex` syntax), matched
//!   against the value bytes anywhere in the value.
//! - `invert` (`true`/`false`, default `false`): keep the records that do *not* match.

use regex::bytes::Regex;
use sluice_sdk::{Config, Error, Operator, Output, Record, export_operator};

/// Keeps matching records.
pub struct Grep {
    pattern: Regex,
    invert: bool,
}

impl Operator for Grep {
    fn init(config: &Config) -> Result<Self, Error> {
        config.allow_only(&["pattern", "invert"])?;
        let source = config.require("pattern")?;
        let pattern = Regex::new(source).map_err(|e| {
            Error::BadConfig(format!(
                "setting `pattern` is not a valid regular expression: {e}"
            ))
        })?;
        Ok(Grep {
            pattern,
            invert: config.parse("invert")?.unwrap_or(false),
        })
    }

    fn process_record(&mut self, record: Record<'_>, out: &mut Output) -> Result<(), String> {
        if self.pattern.is_match(record.value) != self.invert {
            out.forward(record);
        }
        Ok(())
    }
}

export_operator!(Grep);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::testing::Harness;

    #[test]
    fn keeps_matches_in_order() {
        let mut h = Harness::<Grep>::new(&[("pattern", "o+x")]).unwrap();
        assert_eq!(
            h.run_lines(&["fox", "dog", "box", "ox"]).unwrap(),
            ["fox", "box", "ox"]
        );
    }

    #[test]
    fn invert() {
        let mut h = Harness::<Grep>::new(&[("pattern", "^a"), ("invert", "true")]).unwrap();
        assert_eq!(h.run_lines(&["ab", "ba"]).unwrap(), ["ba"]);
    }

    #[test]
    fn missing_or_broken_pattern_is_a_config_error() {
        assert!(
            Harness::<Grep>::new(&[])
                .err()
                .unwrap()
                .to_string()
                .contains("pattern")
        );
        assert!(
            Harness::<Grep>::new(&[("pattern", "(")])
                .err()
                .unwrap()
                .to_string()
                .contains("regular expression")
        );
    }
}
