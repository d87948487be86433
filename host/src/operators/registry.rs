//! The built-in operators a job file names with `builtin = "..."`: the one
//! place that knows them all. The job-file checks ask it what a built-in's
//! settings mean ([`Builtins`]); building a job asks it for the operator.

use crate::operators::aggregate::{AggregateConfig, AggregateFactory};
use crate::operators::join::{JoinConfig, JoinFactory};
use crate::operators::{Count, OperatorFactory};
use crate::spec::{Builtins, SettingError, Shape};
use std::sync::Arc;

/// The built-ins, as the job file names them.
pub const NAMES: &[&str] = &["count", "aggregate", "join"];

/// The registry of built-in operators.
#[derive(Debug, Clone, Copy, Default)]
pub struct Registry;

/// The registry, for the job-file checks and for building jobs.
pub static BUILTINS: Registry = Registry;

impl Builtins for Registry {
    fn names(&self) -> &[&'static str] {
        NAMES
    }

    fn check(&self, name: &str, settings: &[(String, String)]) -> Result<Shape, SettingError> {
        match name {
            "count" if !settings.is_empty() => Err((
                String::new(),
                "`count` takes no settings (use `aggregate` for windows and other functions)"
                    .into(),
            )),
            "count" => Ok(Shape::default()),
            "aggregate" => {
                let cfg = AggregateConfig::parse(settings)?;
                Ok(Shape {
                    late_to_dead_letter: cfg.late_to_dead_letter,
                    ..Shape::default()
                })
            }
            "join" => {
                let cfg = JoinConfig::parse(settings)?;
                Ok(Shape {
                    reads: vec![("left".into(), cfg.left), ("right".into(), cfg.right)],
                    starts_stream: true,
                    late_to_dead_letter: cfg.settings.late_to_dead_letter,
                })
            }
            other => Err((
                String::new(),
                format!(
                    "unknown built-in {other:?} (accepted: {})",
                    NAMES.join(", ")
                ),
            )),
        }
    }
}

impl Registry {
    /// The operator `builtin` with these settings, called `name`.
    pub fn factory(
        &self,
        builtin: &str,
        name: &str,
        settings: &[(String, String)],
    ) -> Result<Arc<dyn OperatorFactory>, SettingError> {
        Ok(match builtin {
            "aggregate" => Arc::new(AggregateFactory::new(
                name,
                AggregateConfig::parse(settings)?,
            )),
            "join" => Arc::new(JoinFactory::new(name, JoinConfig::parse(settings)?)),
            _ => {
                self.check(builtin, settings)?;
                Arc::new(Count::new(name))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{ConfigError, JobConfig};
    use std::path::Path;

    fn parse(text: &str) -> Result<JobConfig, ConfigError> {
        JobConfig::from_str(text, Path::new("job.toml"), &BUILTINS)
    }

    const MINIMAL: &str = "[[sources]]\nkind = \"stdin\"\n[[sinks]]\nkind = \"stdout\"\n";

    #[test]
    fn operator_needs_plugin_or_builtin() {
        let err = parse(&format!("{MINIMAL}[[operators]]\nname = \"x\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("operators[0]") && err.contains("builtin"),
            "{err}"
        );
        let err = parse(&format!("{MINIMAL}[[operators]]\nbuiltin = \"sum\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown built-in \"sum\"") && err.contains("count"),
            "{err}"
        );
    }

    #[test]
    fn aggregate_settings_are_checked_with_field_names() {
        let job = |cfg: &str| {
            parse(&format!(
                "{MINIMAL}[[operators]]\nbuiltin = \"aggregate\"\nconfig = {{ {cfg} }}\n"
            ))
        };
        assert!(job("function = \"sum\", window = \"tumbling\", length = \"10s\"").is_ok());
        let err = job("function = \"median\"").unwrap_err().to_string();
        assert!(err.contains("job.toml:5: field `operators[0].config.function`: unknown aggregate \"median\" (accepted: count, sum, min, max, avg)"), "{err}");
        let err = job("function = \"count\", window = \"hopping\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("config.window`: unknown window kind \"hopping\" (accepted: tumbling, sliding, session)"), "{err}");
        let err =
            job("function = \"count\", window = \"sliding\", length = \"10s\", slide = \"30s\"")
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("config.slide`: 30s is larger than the window length 10s"),
            "{err}"
        );
        let err = job("function = \"count\", late = \"dead-letter\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("config.late`") && err.contains("[dead_letter]"),
            "{err}"
        );
    }

    #[test]
    fn a_sliding_window_of_100h_by_1ms_is_refused_naming_the_slide() {
        let err = parse(&format!(
            "{MINIMAL}[[operators]]\nbuiltin = \"aggregate\"\nconfig = {{ function = \"count\", window = \"sliding\", length = \"100h\", slide = \"1ms\" }}\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("field `operators[0].config.slide`: 1ms puts every record in 360000000 windows of 100h (accepted: at most 1000"),
            "{err}"
        );
        // At the bound it is accepted.
        let ok = parse(&format!(
            "{MINIMAL}[[operators]]\nbuiltin = \"aggregate\"\nconfig = {{ function = \"count\", window = \"sliding\", length = \"1000s\", slide = \"1s\" }}\n"
        ));
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn a_zero_watermark_delay_and_lateness_are_accepted() {
        let cfg = parse(&format!(
            "{MINIMAL}[[operators]]\nbuiltin = \"aggregate\"\nconfig = {{ function = \"count\", window = \"tumbling\", length = \"10s\", watermark_delay = \"0s\", allowed_lateness = \"0ms\" }}\n"
        ));
        assert!(cfg.is_ok(), "{cfg:?}");
        let join = JoinConfig::parse(&[
            ("left".into(), "a".into()),
            ("right".into(), "b".into()),
            ("window".into(), "tumbling".into()),
            ("length".into(), "10s".into()),
            ("watermark_delay".into(), "0s".into()),
        ])
        .unwrap();
        assert_eq!(join.settings.watermark_delay, 0);
        // A zero window length stays refused.
        let err = parse(&format!(
            "{MINIMAL}[[operators]]\nbuiltin = \"aggregate\"\nconfig = {{ function = \"count\", window = \"tumbling\", length = \"0s\" }}\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("config.length`"), "{err}");
    }

    #[test]
    fn max_future_and_idle_timeout_apply_to_event_time_windows() {
        let job = |cfg: &str| {
            parse(&format!(
                "{MINIMAL}[[operators]]\nbuiltin = \"aggregate\"\nconfig = {{ function = \"count\", {cfg} }}\n"
            ))
        };
        let cfg = job(
            "window = \"tumbling\", length = \"10s\", max_future = \"1h\", idle_timeout = \"30s\"",
        )
        .unwrap();
        let pairs = cfg.operators[0].get_ref().config_pairs();
        let agg = AggregateConfig::parse(&pairs).unwrap();
        assert_eq!(agg.watermark.max_future, Some(3_600_000));
        assert_eq!(agg.watermark.idle_timeout, Some(30_000));
        let err = job("max_future = \"1h\"").unwrap_err().to_string();
        assert!(
            err.contains("config.max_future`: applies only to windows in event time"),
            "{err}"
        );
        let err = job(
            "window = \"tumbling\", length = \"10s\", time = \"processing\", idle_timeout = \"1s\"",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("config.idle_timeout`"), "{err}");
    }
}
