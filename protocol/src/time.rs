//! Wall-clock timestamps on the wire: milliseconds since the Unix epoch, written as RFC 3339
//! (UTC, milliseconds, `Z`); the calendar is `jiff`'s.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A point in time, in milliseconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub fn now() -> Self {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Timestamp(ms)
    }

    pub fn millis(self) -> u64 {
        self.0
    }

    pub fn plus_secs(self, secs: u64) -> Self {
        Timestamp(self.0.saturating_add(secs.saturating_mul(1000)))
    }

    /// Whole seconds from `self` to `later` (0 when `later` is earlier).
    pub fn secs_until(self, later: Timestamp) -> u64 {
        later.0.saturating_sub(self.0) / 1000
    }

    /// Parses an RFC 3339 time (`YYYY-MM-DDTHH:MM:SS[.fff]Z` or with an offset), to the
    /// millisecond; `None` before 1970 or when it is not a valid time.
    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        let t: jiff::Timestamp = s.parse().ok()?;
        u64::try_from(t.as_millisecond()).ok().map(Timestamp)
    }

    /// The same instant as `jiff` holds it; the latest time `jiff` knows (year 9999) when later.
    fn to_jiff(self) -> jiff::Timestamp {
        i64::try_from(self.0)
            .ok()
            .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
            .unwrap_or(jiff::Timestamp::MAX)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // jiff writes UTC with `Z`; `.3` keeps exactly three fractional digits.
        write!(f, "{:.3}", self.to_jiff())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse_rfc3339(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("invalid timestamp {s:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_back() {
        let t = Timestamp(1_795_000_123_456);
        let s = t.to_string();
        assert_eq!(s, "2026-11-18T11:08:43.456Z");
        assert_eq!(Timestamp::parse_rfc3339(&s), Some(t));
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            Timestamp::parse_rfc3339("2000-02-29T23:59:59Z"),
            Some(Timestamp(951_868_799_000))
        );
        assert_eq!(Timestamp::parse_rfc3339("2000-13-01T00:00:00Z"), None);
        assert_eq!(Timestamp::parse_rfc3339("1969-12-31T23:59:59Z"), None);
    }

    #[test]
    fn json_is_rfc3339_utc_with_milliseconds() {
        let t = Timestamp::parse_rfc3339("2026-11-22T06:00:30.649Z").expect("valid");
        assert_eq!(
            serde_json::to_string(&t).ok().as_deref(),
            Some("\"2026-11-22T06:00:30.649Z\"")
        );
        // Whole seconds and sub-millisecond digits come out as exactly three digits.
        assert_eq!(
            Timestamp::parse_rfc3339("2026-11-22T06:00:30Z").map(|t| t.to_string()),
            Some("2026-11-22T06:00:30.000Z".into())
        );
        assert_eq!(
            Timestamp::parse_rfc3339("2026-11-22T06:00:30.6491234Z").map(|t| t.to_string()),
            Some("2026-11-22T06:00:30.649Z".into())
        );
        assert_eq!(
            Timestamp::parse_rfc3339("2026-11-22T08:00:30.649+02:00"),
            Some(t)
        );
    }
}
