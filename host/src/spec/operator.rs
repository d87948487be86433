//! The `[[operators]]` entries of a job file. A built-in's settings stay a
//! raw table here; the built-in parses them itself, through [`Builtins`].

use serde::Deserialize;
use std::path::PathBuf;
use std::str::FromStr;

/// One step of the operator chain: a Wasm plugin, a Wasm reducer or a built-in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorConfig {
    /// Name used in logs and errors. Default: the plugin's or reducer's file
    /// stem, or the built-in's name.
    pub name: Option<String>,
    /// Path of a Wasm component, relative to the job file.
    pub plugin: Option<PathBuf>,
    /// A built-in operator: `count` (records per key in each micro-batch),
    /// `aggregate` (keyed count/sum/min/max/avg, optionally windowed; see
    /// [`crate::operators::aggregate`]) or `join` (a windowed join of two streams; see
    /// [`crate::operators::join`]).
    pub builtin: Option<String>,
    /// Path of a `reduce` component (a keyed reducer whose accumulators the
    /// host keeps; see [`crate::wasm::WasmReducer`]), relative to the job
    /// file.
    pub reducer: Option<PathBuf>,
    /// Which results a `reducer` emits after each micro-batch: `update` (the
    /// keys that changed, the default) or `complete` (every key, sorted).
    /// Only with `reducer`.
    pub mode: Option<String>,
    /// The stream the operator applies to (a source's `name`, or an earlier
    /// join's); records of other streams pass it untouched. Default: every
    /// record that reaches it.
    pub input: Option<String>,
    /// Settings passed to the plugin's `init`, as strings.
    #[serde(default)]
    pub config: toml::Table,
}

impl OperatorConfig {
    /// The name used in logs and errors.
    pub fn display_name(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        if let Some(p) = self.plugin.as_ref().or(self.reducer.as_ref()) {
            return p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| p.display().to_string());
        }
        self.builtin.clone().unwrap_or_default()
    }

    /// Checks that exactly one of `plugin`, `builtin` and `reducer` is set,
    /// and `mode` only with a valid `reducer`. The error gives the field at
    /// fault under `field` (`operators[i]`) and what is accepted.
    pub(crate) fn validate_kind(
        &self,
        field: &str,
        builtins: &dyn Builtins,
    ) -> Result<(), (String, String)> {
        let set: Vec<&str> = [
            ("plugin", self.plugin.is_some()),
            ("builtin", self.builtin.is_some()),
            ("reducer", self.reducer.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, is_set)| is_set.then_some(name))
        .collect();
        match set.as_slice() {
            [_] => {}
            [] => {
                return Err((
                    field.to_string(),
                    format!(
                        "set `plugin` (a transform component), `reducer` (a reduce component) \
                         or `builtin` (one of: {})",
                        builtins.names().join(", ")
                    ),
                ));
            }
            several => {
                return Err((
                    format!("{field}.{}", several[1]),
                    format!(
                        "set only one of `plugin`, `builtin` and `reducer` (this operator sets `{}`)",
                        several.join("` and `")
                    ),
                ));
            }
        }
        if let Some(mode) = &self.mode {
            let field = format!("{field}.mode");
            if self.reducer.is_none() {
                return Err((
                    field,
                    "`mode` applies only to a `reducer` (the built-in `aggregate` takes \
                     `mode` in its `config`)"
                        .into(),
                ));
            }
            mode.parse::<ReduceMode>().map_err(|m| (field, m))?;
        }
        Ok(())
    }

    /// The settings as the key/value strings `init` receives.
    pub fn config_pairs(&self) -> Vec<(String, String)> {
        self.config
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), v)
            })
            .collect()
    }
}

/// The values the job file's `mode` accepts for a reducer.
pub const REDUCE_MODES: &[&str] = &["update", "complete"];

/// Which results a reducer emits after each micro-batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReduceMode {
    /// `(key, accumulator)` of every key that got new values in the batch,
    /// in the order the keys first appear in it.
    #[default]
    Update,
    /// `(key, accumulator)` of every key seen so far, sorted by key, after
    /// every micro-batch that brought records (to any partition).
    Complete,
}

impl FromStr for ReduceMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "update" => Ok(ReduceMode::Update),
            "complete" => Ok(ReduceMode::Complete),
            other => Err(format!(
                "unknown mode {other:?} (accepted: {})",
                REDUCE_MODES.join(", ")
            )),
        }
    }
}

/// A built-in operator's settings it cannot use: (setting name, message).
/// An empty name means the settings as a whole.
pub type SettingError = (String, String);

/// What the job-file checks learn from a built-in's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shape {
    /// The streams the built-in reads, each with the setting naming it (a
    /// join's `left` and `right`). A built-in that names its streams takes
    /// no `input`.
    pub reads: Vec<(String, String)>,
    /// Whether it starts a stream named after the operator (a join's output).
    pub starts_stream: bool,
    /// Whether it sends late records to the dead-letter file.
    pub late_to_dead_letter: bool,
}

/// The built-in operators a job file may name, and the checks of their
/// settings. The operators module owns them; the job file only knows them
/// through this.
pub trait Builtins: Sync {
    /// The names `builtin` accepts.
    fn names(&self) -> &[&'static str];
    /// Parses the settings of the built-in `name` (one of [`Builtins::names`]).
    fn check(&self, name: &str, settings: &[(String, String)]) -> Result<Shape, SettingError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_name_the_accepted_ones() {
        assert_eq!("update".parse(), Ok(ReduceMode::Update));
        assert_eq!("complete".parse(), Ok(ReduceMode::Complete));
        let err = "final".parse::<ReduceMode>().unwrap_err();
        assert!(err.contains("accepted: update, complete"), "{err}");
    }
}
