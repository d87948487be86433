//! The windowing settings the windowed built-ins (`aggregate`, `join`)
//! share, parsed from their raw `config` table.

use crate::model::time::{TimeDomain, WindowKind, millis};
use crate::model::units::{parse_duration, parse_duration_or_zero};
use crate::operators::WatermarkRules;
pub use crate::spec::SettingError;

/// The most windows a sliding window's settings may put one record in:
/// each costs state and output per record.
pub const MAX_WINDOWS_PER_RECORD: i64 = 1000;

/// The windowing settings shared by the windowed built-ins (`aggregate`,
/// `join`): `window`, `length`, `slide`, `gap`, `time`, `watermark_delay`,
/// `allowed_lateness`, `late`, `max_future` and `idle_timeout`.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowSettings {
    /// Windowing, if any.
    pub window: Option<WindowKind>,
    /// Which clock.
    pub time: TimeDomain,
    /// Bound on out-of-orderness: the watermark trails the largest event
    /// time seen by this much (milliseconds).
    pub watermark_delay: i64,
    /// How long after the watermark passes a window's end records still
    /// update it (milliseconds).
    pub allowed_lateness: i64,
    /// Send late records to the dead-letter file (else only count them).
    pub late_to_dead_letter: bool,
    /// `max_future` and `idle_timeout`, for the coordinator's watermark.
    pub watermark: WatermarkRules,
}

impl WindowSettings {
    /// Parses the windowing settings found by `get`, naming the setting at
    /// fault.
    pub fn parse<'a>(get: &dyn Fn(&str) -> Option<&'a str>) -> Result<Self, SettingError> {
        let err = |k: &str, m: String| Err((k.to_string(), m));
        let dur = |k: &str| -> Result<Option<i64>, SettingError> {
            get(k)
                .map(|v| {
                    parse_duration(v)
                        .map(millis)
                        .map_err(|m| (k.to_string(), m))
                })
                .transpose()
        };
        // Delays may be zero: no out-of-orderness, no lateness.
        let delay = |k: &str| -> Result<i64, SettingError> {
            get(k)
                .map(|v| {
                    parse_duration_or_zero(v)
                        .map(millis)
                        .map_err(|m| (k.to_string(), m))
                })
                .transpose()
                .map(Option::unwrap_or_default)
        };
        let length = dur("length")?;
        let slide = dur("slide")?;
        let gap = dur("gap")?;
        let window = match get("window") {
            None => {
                if let Some(k) = ["length", "slide", "gap"]
                    .into_iter()
                    .find(|k| get(k).is_some())
                {
                    return err(k, "only applies with `window` set".into());
                }
                None
            }
            Some("tumbling") => {
                let Some(length) = length else {
                    return err("length", "required for a tumbling window".into());
                };
                if get("slide").is_some() || gap.is_some() {
                    return err(
                        if gap.is_some() { "gap" } else { "slide" },
                        "does not apply to a tumbling window".into(),
                    );
                }
                Some(WindowKind::Tumbling { length })
            }
            Some("sliding") => {
                let (Some(length), Some(slide)) = (length, slide) else {
                    return err(
                        if length.is_none() { "length" } else { "slide" },
                        "required for a sliding window".into(),
                    );
                };
                if slide > length {
                    return err(
                        "slide",
                        format!(
                            "{} is larger than the window length {}: records between windows would be lost",
                            get("slide").unwrap_or_default(),
                            get("length").unwrap_or_default()
                        ),
                    );
                }
                let windows = (length + slide - 1) / slide;
                if windows > MAX_WINDOWS_PER_RECORD {
                    return err(
                        "slide",
                        format!(
                            "{} puts every record in {windows} windows of {} (accepted: at most \
                             {MAX_WINDOWS_PER_RECORD} windows per record; make `slide` longer or \
                             `length` shorter)",
                            get("slide").unwrap_or_default(),
                            get("length").unwrap_or_default()
                        ),
                    );
                }
                Some(WindowKind::Sliding { length, slide })
            }
            Some("session") => {
                let Some(gap) = gap else {
                    return err("gap", "required for a session window".into());
                };
                if length.is_some() || slide.is_some() {
                    return err(
                        if length.is_some() { "length" } else { "slide" },
                        "does not apply to a session window".into(),
                    );
                }
                Some(WindowKind::Session { gap })
            }
            Some(other) => {
                return err(
                    "window",
                    format!("unknown window kind {other:?} (accepted: tumbling, sliding, session)"),
                );
            }
        };
        let time = match get("time").unwrap_or("event") {
            "event" => TimeDomain::Event,
            "processing" => TimeDomain::Processing,
            other => {
                return err(
                    "time",
                    format!("{other:?} is not a time domain (accepted: event, processing)"),
                );
            }
        };
        if time == TimeDomain::Processing && matches!(window, Some(WindowKind::Session { .. })) {
            return err("time", "session windows need event time".into());
        }
        let late = match get("late").unwrap_or("drop") {
            "drop" => false,
            "dead-letter" => true,
            other => {
                return err(
                    "late",
                    format!("{other:?} is not valid (accepted: drop, dead-letter)"),
                );
            }
        };
        let watermark = WatermarkRules {
            max_future: dur("max_future")?,
            idle_timeout: dur("idle_timeout")?,
        };
        if let Some(k) = ["max_future", "idle_timeout"]
            .into_iter()
            .find(|k| get(k).is_some())
            && (window.is_none() || time == TimeDomain::Processing)
        {
            return err(k, "applies only to windows in event time".into());
        }
        Ok(WindowSettings {
            window,
            time,
            watermark_delay: delay("watermark_delay")?,
            allowed_lateness: delay("allowed_lateness")?,
            late_to_dead_letter: late,
            watermark,
        })
    }
}
