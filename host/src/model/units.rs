//! Durations and sizes as job files and tenant files write them
//! (`"250ms"`, `"2s"`, `"64MiB"`), and as messages print them back.

use std::time::Duration;

/// Parses `"250ms"`, `"2s"`, `"1.5s"`, `"1m"`, `"1h"`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (accepted: a number with ms, s, m or h, like \"500ms\" or \"2s\")"))?;
    let secs = match unit.trim() {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "{s:?} has unknown unit {other:?} (accepted: ms, s, m, h)"
            ));
        }
    };
    if !(0.001..1e9).contains(&secs) {
        return Err(format!("{s:?} is out of range (accepted: 1ms or more)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Like [`parse_duration`], and also accepts zero (`"0s"`, `"0ms"`, `"0"`),
/// for settings where none is a sensible amount: a watermark delay, an
/// allowed lateness.
pub fn parse_duration_or_zero(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    let number = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &text[number.len()..];
    if number.trim().parse::<f64>() == Ok(0.0) && matches!(unit, "" | "ms" | "s" | "m" | "h") {
        return Ok(Duration::ZERO);
    }
    parse_duration(s)
}

/// Parses a size: a number with `B`, `KiB`, `MiB` or `GiB` (any case, a
/// space allowed), like `"64MiB"` or `"1.5 GiB"`; a bare number is bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let text = s.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let accepted = "accepted: a number with B, KiB, MiB or GiB, like \"64MiB\"";
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a size ({accepted})"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        other => {
            return Err(format!("{s:?} has unknown unit {other:?} ({accepted})"));
        }
    };
    let bytes = value * scale as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("{s:?} is too large"));
    }
    Ok(bytes as u64)
}

/// A size for people: `64 MiB`, `1 GiB`, `1.5 MiB`, `100 bytes`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (scale, unit) in UNITS {
        if bytes >= scale {
            return if bytes.is_multiple_of(scale) {
                format!("{} {unit}", bytes / scale)
            } else {
                format!("{:.1} {unit}", bytes as f64 / scale as f64)
            };
        }
    }
    format!("{bytes} bytes")
}

/// A duration as a job file writes it: `200ms`, `2s`, `1.5s`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if d != Duration::from_millis(ms as u64) {
        format!("{d:?}")
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_watermark_delay_is_a_duration() {
        for zero in ["0s", "0ms", "0", "0.0s", " 0 m"] {
            assert_eq!(parse_duration_or_zero(zero), Ok(Duration::ZERO), "{zero}");
        }
        assert_eq!(
            parse_duration_or_zero("250ms"),
            Ok(Duration::from_millis(250))
        );
        assert!(parse_duration_or_zero("0 parsecs").is_err());
        assert!(parse_duration_or_zero("-1s").is_err());
        // Where zero makes no sense it stays refused.
        assert!(parse_duration("0s").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("0.0000000001s").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn sizes_parse_in_binary_units() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1 GiB"), Ok(1 << 30));
        assert_eq!(parse_size("1.5gib"), Ok(3 << 29));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("4096"), Ok(4096));
        let err = parse_size("64MB").unwrap_err();
        assert!(
            err.contains("unknown unit \"mb\"") && err.contains("KiB, MiB or GiB"),
            "{err}"
        );
        assert!(parse_size("lots").unwrap_err().contains("not a size"));
    }

    #[test]
    fn sizes_and_durations_print_as_written() {
        assert_eq!(format_size(64 << 20), "64 MiB");
        assert_eq!(format_size(1 << 30), "1 GiB");
        assert_eq!(format_size(3 << 19), "1.5 MiB");
        assert_eq!(format_size(100), "100 bytes");
        assert_eq!(format_duration(Duration::from_millis(200)), "200ms");
        assert_eq!(format_duration(Duration::from_secs(2)), "2s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
    }
}
