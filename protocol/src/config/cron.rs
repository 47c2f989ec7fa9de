//! `schedule.cron`: five-field cron expressions in UTC, as dstack reads them (APScheduler's
//! `CronTrigger.from_crontab`): minute, hour, day of month, month (`1-12` or `jan`-`dec`), day
//! of week (`0-6` from Monday, or `mon`-`sun`). Each field is `*`, a value, a range `a-b`, a
//! step `*/n` or `a-b/n`, or a comma list of these. As in APScheduler, a time matches when
//! every field matches (day of month and day of week both).

use crate::time::Timestamp;

/// A parsed expression: the allowed values of each field as bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn field(text: &str, what: &str, min: u32, max: u32, names: &[&str]) -> Result<u64, String> {
    let value = |s: &str| -> Result<u32, String> {
        let lower = s.to_ascii_lowercase();
        if let Some(i) = names.iter().position(|n| *n == lower) {
            return Ok(min + i as u32);
        }
        s.parse::<u32>()
            .ok()
            .filter(|v| (min..=max).contains(v))
            .ok_or_else(|| format!("{what} {s:?} is not a value from {min} to {max}"))
    };
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step = s
                    .parse::<u32>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("{what} step {s:?} is not a positive number"))?;
                (r, step)
            }
            None => (part, 1),
        };
        let (lo, hi) = match range {
            "*" => (min, max),
            r => match r.split_once('-') {
                Some((a, b)) => (value(a)?, value(b)?),
                None if step > 1 => (value(r)?, max),
                None => {
                    let v = value(r)?;
                    (v, v)
                }
            },
        };
        if lo > hi {
            return Err(format!("{what} range {range:?} runs backwards"));
        }
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

impl Cron {
    pub fn parse(expression: &str) -> Result<Cron, String> {
        let parts: Vec<&str> = expression.split_whitespace().collect();
        let [minute, hour, day, month, weekday] = parts[..] else {
            return Err(format!(
                "{expression:?} is not a cron expression: it needs five fields (minute hour day month weekday)"
            ));
        };
        let wrap = |e: String| format!("{expression:?}: {e}");
        Ok(Cron {
            minutes: field(minute, "minute", 0, 59, &[]).map_err(wrap)?,
            hours: field(hour, "hour", 0, 23, &[]).map_err(wrap)?,
            days: field(day, "day of month", 1, 31, &[]).map_err(wrap)?,
            months: field(month, "month", 1, 12, &MONTHS).map_err(wrap)?,
            weekdays: field(weekday, "day of week", 0, 6, &WEEKDAYS).map_err(wrap)?,
        })
    }

    /// The first matching minute at or after `t` (UTC); `None` when none comes in 8 years
    /// (`0 0 31 2 *`).
    pub fn next_at_or_after(&self, t: Timestamp) -> Option<Timestamp> {
        const MINUTE: u64 = 60_000;
        const DAY_MINUTES: u64 = 24 * 60;
        let start = t.millis().div_ceil(MINUTE);
        let first_day = start / DAY_MINUTES;
        for day in first_day..first_day + 8 * 366 {
            let (_, month, dom) = civil(day);
            let weekday = (day + 3) % 7; // 1970-01-01 was a Thursday; Monday is 0
            if self.months & (1 << month) == 0
                || self.days & (1 << dom) == 0
                || self.weekdays & (1 << weekday) == 0
            {
                continue;
            }
            let from = if day == first_day {
                start % DAY_MINUTES
            } else {
                0
            };
            for minute_of_day in from..DAY_MINUTES {
                let (h, m) = (minute_of_day / 60, minute_of_day % 60);
                if self.hours & (1 << h) != 0 && self.minutes & (1 << m) != 0 {
                    return Some(Timestamp((day * DAY_MINUTES + minute_of_day) * MINUTE));
                }
            }
        }
        None
    }
}

/// The earliest start of any of `expressions` at or after `t` (dstack's `next_triggered_at`).
pub fn next_start(expressions: &[String], t: Timestamp) -> Option<Timestamp> {
    expressions
        .iter()
        .filter_map(|e| Cron::parse(e).ok()?.next_at_or_after(t))
        .min()
}

/// (year, month 1-12, day 1-31) of a day counted from 1970-01-01 (Howard Hinnant's algorithm).
fn civil(days: u64) -> (i64, u32, u32) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).expect("a time")
    }

    fn next(expr: &str, from: &str) -> String {
        Cron::parse(expr)
            .expect("parses")
            .next_at_or_after(at(from))
            .expect("a next time")
            .to_string()
    }

    #[test]
    fn next_start_times_follow_each_field() {
        assert_eq!(
            next("15 23 * * *", "2026-11-27T16:00:00Z"),
            "2026-11-27T23:15:00.000Z"
        );
        assert_eq!(
            next("15 23 * * *", "2026-11-27T23:15:30Z"),
            "2026-11-28T23:15:00.000Z"
        );
        // At the minute itself, that minute (APScheduler's first fire time is at or after now).
        assert_eq!(
            next("* * * * *", "2026-11-27T16:00:00Z"),
            "2026-11-27T16:00:00.000Z"
        );
        assert_eq!(
            next("* * * * *", "2026-11-27T16:00:00.001Z"),
            "2026-11-27T16:01:00.000Z"
        );
        assert_eq!(
            next("*/20 * * * *", "2026-11-27T16:41:00Z"),
            "2026-11-27T17:00:00.000Z"
        );
        assert_eq!(
            next("0 9-17/4 * * *", "2026-11-27T14:00:00Z"),
            "2026-11-27T17:00:00.000Z"
        );
        // Monday is 0 (2026-11-30 is a Monday), and names work.
        assert_eq!(
            next("0 0 * * 0", "2026-11-27T00:00:00Z"),
            "2026-11-30T00:00:00.000Z"
        );
        assert_eq!(
            next("0 0 * * sun", "2026-11-27T00:00:00Z"),
            "2026-11-29T00:00:00.000Z"
        );
        assert_eq!(
            next("30 6 1 jan *", "2026-11-27T00:00:00Z"),
            "2027-01-01T06:30:00.000Z"
        );
        assert_eq!(
            next("0 12 29 2 *", "2026-11-27T00:00:00Z"),
            "2028-02-29T12:00:00.000Z"
        );
        // Day of month and day of week must both match: the next Friday the 13th.
        assert_eq!(
            next("0 0 13 * fri", "2026-11-27T00:00:00Z"),
            "2027-08-13T00:00:00.000Z"
        );
        assert_eq!(
            next_start(
                &["0 23 * * *".to_string(), "0 18 * * *".to_string()],
                at("2026-11-27T16:00:00Z")
            ),
            Some(at("2026-11-27T18:00:00Z"))
        );
        assert_eq!(
            Cron::parse("0 0 31 2 *")
                .expect("parses")
                .next_at_or_after(at("2026-01-01T00:00:00Z")),
            None
        );
    }

    #[test]
    fn malformed_expressions_name_the_field() {
        for (expr, want) in [
            ("* * * *", "needs five fields"),
            ("60 * * * *", "minute \"60\" is not a value from 0 to 59"),
            ("* 24 * * *", "hour \"24\""),
            ("* * 0 * *", "day of month \"0\""),
            ("* * * 13 *", "month \"13\""),
            ("* * * * 7", "day of week \"7\""),
            ("*/0 * * * *", "step \"0\""),
            ("5-1 * * * *", "runs backwards"),
            ("* * * * funday", "day of week \"funday\""),
        ] {
            let e = Cron::parse(expr).expect_err(expr);
            assert!(e.contains(want), "{expr}: {e}");
        }
    }
}
