//! Durations: whole seconds, or a whole number with `s`, `m`, `h`, `d` or `w`; some also switch off.

use super::decode::{parse_bool, Decoder};
use super::yaml::Node;

/// Parses `90`, `"90s"`, `"30m"`, `"2h"`, `"1d"`, `"1w"` into seconds.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let multiplier = match unit.trim_start() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(duration_hint(text)),
    };
    if digits.is_empty() {
        return Err(duration_hint(text));
    }
    digits
        .parse::<u64>()
        .ok()
        .and_then(|amount| amount.checked_mul(multiplier))
        .ok_or_else(|| duration_hint(text))
}

fn duration_hint(text: &str) -> String {
    format!(
        "{text:?} is not a duration; write whole seconds or a whole number with s, m, h, d or w (`90s`, `30m`, `2h`, `1d`)"
    )
}

/// Formats seconds the way a user would write them (`5m`, `3d`, `90s`).
pub fn format_duration(seconds: u64) -> String {
    for (unit, size) in [("w", 604_800), ("d", 86_400), ("h", 3600), ("m", 60)] {
        if seconds > 0 && seconds.checked_rem(size) == Some(0) {
            return format!("{}{unit}", seconds / size);
        }
    }
    format!("{seconds}s")
}

/// A duration that cannot be switched off.
pub(crate) fn decode_duration(d: &mut Decoder<'_>, node: &Node, path: &str) -> Option<u64> {
    let Some(text) = node.scalar() else {
        d.error(
            node,
            path,
            format!("expected a duration, found {}", node.describe()),
        );
        return None;
    };
    match parse_duration(text) {
        Ok(seconds) => Some(seconds),
        Err(message) => {
            d.error(node, path, message);
            None
        }
    }
}

/// A duration that `off` or `false` switches off (`None`); `true` means `default`.
/// `-1` also means off when `minus_one_is_off` (as `idle_duration` allows).
pub(crate) fn decode_off_duration(
    d: &mut Decoder<'_>,
    node: &Node,
    path: &str,
    default: Option<u64>,
    minus_one_is_off: bool,
) -> Option<u64> {
    let text = node.scalar().map(str::trim);
    match text.and_then(parse_bool) {
        Some(false) => return None,
        Some(true) => return default,
        None => {}
    }
    if minus_one_is_off && text == Some("-1") {
        return None;
    }
    match text.map(parse_duration) {
        Some(Ok(seconds)) => Some(seconds),
        Some(Err(message)) => {
            let off = if minus_one_is_off {
                "`off`, `false` or `-1`"
            } else {
                "`off` or `false`"
            };
            d.error(node, path, format!("{message}, or {off} to switch it off"));
            default
        }
        None => {
            let message = format!("expected a duration, found {}", node.describe());
            d.error(node, path, message);
            default
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_units() {
        assert_eq!(parse_duration("90"), Ok(90));
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("30m"), Ok(1800));
        assert_eq!(parse_duration("2h"), Ok(7200));
        assert_eq!(parse_duration("1d"), Ok(86_400));
        assert_eq!(parse_duration("1w"), Ok(604_800));
        assert_eq!(parse_duration("2 h"), Ok(7200));
    }

    #[test]
    fn bad_durations_say_what_is_allowed() {
        for bad in ["", "h", "1.5h", "-1", "2y", "1h30m"] {
            let error = parse_duration(bad).expect_err(bad);
            assert!(error.contains("is not a duration"), "{error}");
        }
    }

    #[test]
    fn durations_format_in_the_largest_whole_unit() {
        assert_eq!(format_duration(300), "5m");
        assert_eq!(format_duration(259_200), "3d");
        assert_eq!(format_duration(90), "90s");
        assert_eq!(format_duration(0), "0s");
    }
}
