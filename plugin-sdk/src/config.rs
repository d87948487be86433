//! Operator settings from the job file.

use crate::Error;
use std::str::FromStr;

/// An operator's settings: the `config` table of its entry in the job file,
/// as key/value strings.
#[derive(Debug, Clone, Default)]
pub struct Config {
    entries: Vec<(String, String)>,
}

impl Config {
    /// Wraps key/value pairs.
    pub fn new(entries: Vec<(String, String)>) -> Self {
        Config { entries }
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key`, or a [`Error::BadConfig`] saying it is missing.
    pub fn require(&self, key: &str) -> Result<&str, Error> {
        self.get(key)
            .ok_or_else(|| Error::BadConfig(format!("missing required setting `{key}`")))
    }

    /// Parses the value of `key` when set, with an error naming the key and
    /// the value that did not parse.
    pub fn parse<T>(&self, key: &str) -> Result<Option<T>, Error>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|e| {
                Error::BadConfig(format!("setting `{key}` = {v:?} is not valid: {e}"))
            }),
        }
    }

    /// Refuses any key not in `known`, naming the accepted ones.
    pub fn allow_only(&self, known: &[&str]) -> Result<(), Error> {
        for (k, _) in &self.entries {
            if !known.contains(&k.as_str()) {
                let accepted = if known.is_empty() {
                    "this operator takes no settings".to_string()
                } else {
                    format!("accepted: {}", known.join(", "))
                };
                return Err(Error::BadConfig(format!(
                    "unknown setting `{k}` ({accepted})"
                )));
            }
        }
        Ok(())
    }

    /// All entries in the order given.
    pub fn entries(&self) -> &[(String, String)] {
        &self.entries
    }
}
