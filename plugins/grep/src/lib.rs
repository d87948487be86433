//! `grep`: a filter keeping records whose value matches a regular expression.
//!
//! Settings:
//!
//! - `pattern` (required): a regular expression (Rust `regex` syntax), matched
//!   against the value bytes anywhere in the value.
//! - `invert` (`true`/`false`, default `false`): keep the records that do *not* match.

use memchr::memmem::Finder;
use regex::bytes::Regex;
use sluice_sdk::{Config, Error, Operator, Output, Record, export_operator};

/// Keeps matching records.
pub struct Grep {
    matcher: Matcher,
    invert: bool,
}

/// A plain literal is searched with a SIMD substring finder, which is much
/// cheaper per record than the general regex engine.
enum Matcher {
    Literal(Box<Finder<'static>>),
    Regex(Regex),
}

impl Matcher {
    fn is_match(&self, value: &[u8]) -> bool {
        match self {
            Matcher::Literal(f) => f.find(value).is_some(),
            Matcher::Regex(r) => r.is_match(value),
        }
    }
}

impl Operator for Grep {
    fn init(config: &Config) -> Result<Self, Error> {
        config.allow_only(&["pattern", "invert"])?;
        let source = config.require("pattern")?;
        let regex = Regex::new(source).map_err(|e| {
            Error::BadConfig(format!(
                "setting `pattern` is not a valid regular expression: {e}"
            ))
        })?;
        let matcher = if !source.is_empty() && regex::escape(source) == source {
            Matcher::Literal(Box::new(Finder::new(source.as_bytes()).into_owned()))
        } else {
            Matcher::Regex(regex)
        };
        Ok(Grep {
            matcher,
            invert: config.parse("invert")?.unwrap_or(false),
        })
    }

    fn process_record(&mut self, record: Record<'_>, out: &mut Output) -> Result<(), String> {
        if self.matcher.is_match(record.value) != self.invert {
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
    fn literal_and_regex_paths_agree() {
        let lines = ["fox", "a.b", "axb", "", "FOX"];
        for pattern in ["fox", "a.b", "a\\.b"] {
            let mut h = Harness::<Grep>::new(&[("pattern", pattern)]).unwrap();
            let re = Regex::new(pattern).unwrap();
            let want: Vec<&str> = lines
                .iter()
                .copied()
                .filter(|l| re.is_match(l.as_bytes()))
                .collect();
            assert_eq!(h.run_lines(&lines).unwrap(), want, "pattern {pattern}");
        }
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
