//! Cell texts of the tables: compact ages, prices, GPU summaries, sparklines, byte sizes, and
//! the cleaning of text from outside (control characters never reach the terminal).

use flotilla_protocol::model::fmt_gb;
use flotilla_protocol::rpc::GpuSample;
use flotilla_protocol::Timestamp;
use ratatui::text::Span;

/// `12s`, `3m`, `2h`, `5d`, as k9s shows ages.
pub fn age(t: Timestamp, now: Timestamp) -> String {
    let s = t.secs_until(now);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// `$0`, `$1.2`, `$0.0345` per hour.
pub fn price(p: f64) -> String {
    crate::table::price(p)
}

/// `HH:MM:SS` of a timestamp, in UTC.
pub fn clock(t: Timestamp) -> String {
    let secs = t.0 / 1000 % 86_400;
    format!(
        "{:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// `HH:MM:SS.mmm` of a timestamp, in UTC.
pub fn clock_ms(t: Timestamp) -> String {
    format!("{}.{:03}", clock(t), t.0 % 1000)
}

/// `1.5 KB`, `12 MB`, `1.0 GB` (powers of 1024).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else if v < 10.0 {
        format!("{v:.1} {}", UNITS[unit])
    } else {
        format!("{v:.0} {}", UNITS[unit])
    }
}

/// `2xA100:80GB`, or `-` without GPUs.
pub fn gpus(count: usize, name: Option<(&str, f64)>) -> String {
    match (count, name) {
        (0, _) => "-".into(),
        (n, Some((name, mem))) => format!("{n}x{name}:{}GB", fmt_gb(mem)),
        (n, None) => n.to_string(),
    }
}

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// The last `width` values (0..=100) as block characters.
pub fn sparkline(values: &[f64], width: usize) -> String {
    let start = values.len().saturating_sub(width);
    values[start..]
        .iter()
        .map(|v| {
            let v = if v.is_finite() {
                v.clamp(0.0, 100.0)
            } else {
                0.0
            };
            BARS[((v / 100.0) * 7.0).round() as usize]
        })
        .collect()
}

/// GPU utilisation of samples, averaged over GPUs sample by sample (series of equal length).
pub fn utilisation(series: &[&[GpuSample]]) -> Vec<f64> {
    let len = series.iter().map(|s| s.len()).max().unwrap_or(0);
    (0..len)
        .map(|i| {
            let (sum, n) = series.iter().fold((0.0, 0), |(sum, n), s| {
                // Align series on their newest sample.
                let offset = len - s.len();
                match i.checked_sub(offset).and_then(|j| s.get(j)) {
                    Some(sample) => (sum + sample.util_percent, n + 1),
                    None => (sum, n),
                }
            });
            if n == 0 {
                0.0
            } else {
                sum / f64::from(n)
            }
        })
        .collect()
}

/// A one-line cell text: control characters (newlines, escapes) become spaces.
pub fn one_line(s: &str) -> String {
    if s.chars().all(|c| !c.is_control()) {
        return s.to_string();
    }
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Display width of one character (ASCII fast path, else ratatui's Unicode width).
pub fn char_width(c: char) -> usize {
    if c.is_ascii() {
        usize::from(!c.is_ascii_control())
    } else {
        let mut buf = [0u8; 4];
        Span::raw(&*c.encode_utf8(&mut buf)).width()
    }
}

/// Display width of a string.
pub fn width(s: &str) -> usize {
    if s.is_ascii() {
        s.len()
    } else {
        s.chars().map(char_width).sum()
    }
}

/// Cleans one log line for display: ANSI escape sequences removed, what a carriage return
/// overwrote dropped (progress bars), tabs expanded to 8 columns, other control characters shown as `?`.
pub fn clean_log_line(raw: &str) -> String {
    let raw = raw.strip_suffix('\r').unwrap_or(raw);
    let raw = match raw.rfind('\r') {
        Some(i) => &raw[i + 1..],
        None => raw,
    };
    let mut out = String::with_capacity(raw.len());
    let mut col = 0usize;
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => {
                // CSI `ESC [ params final`, OSC `ESC ] ... BEL|ESC \`, or a two-byte escape.
                match chars.peek() {
                    Some('[') => {
                        chars.next();
                        for c in chars.by_ref() {
                            if ('@'..='~').contains(&c) {
                                break;
                            }
                        }
                    }
                    Some(']') => {
                        chars.next();
                        while let Some(c) = chars.next() {
                            if c == '\x07' {
                                break;
                            }
                            if c == '\x1b' {
                                chars.next();
                                break;
                            }
                        }
                    }
                    Some(_) => {
                        chars.next();
                    }
                    None => {}
                }
            }
            '\t' => {
                let n = 8 - col % 8;
                for _ in 0..n {
                    out.push(' ');
                }
                col += n;
            }
            c if c.is_control() => {
                out.push('?');
                col += 1;
            }
            c => {
                out.push(c);
                col += char_width(c);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_compact() {
        let t = Timestamp(1_000_000);
        assert_eq!(age(t, Timestamp(1_000_000 + 12_000)), "12s");
        assert_eq!(age(t, Timestamp(1_000_000 + 180_000)), "3m");
        assert_eq!(age(t, Timestamp(1_000_000 + 7_200_000)), "2h");
        assert_eq!(age(t, Timestamp(0)), "0s");
    }

    #[test]
    fn log_lines_lose_escapes_and_keep_the_last_carriage_return_segment() {
        assert_eq!(clean_log_line("\x1b[31mred\x1b[0m text"), "red text");
        assert_eq!(clean_log_line("10%\r50%\r100%"), "100%");
        assert_eq!(clean_log_line("crlf\r"), "crlf");
        assert_eq!(clean_log_line("a\tb"), "a       b");
        assert_eq!(clean_log_line("bell\x07"), "bell?");
        assert_eq!(clean_log_line("\x1b]0;title\x07after"), "after");
    }

    #[test]
    fn sparkline_maps_percentages_to_bars() {
        assert_eq!(sparkline(&[0.0, 50.0, 100.0, 250.0, f64::NAN], 10), "▁▅██▁");
        assert_eq!(sparkline(&[0.0, 100.0, 100.0], 2), "██");
    }

    #[test]
    fn sizes_and_widths() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KB");
        assert_eq!(bytes(1 << 30), "1.0 GB");
        assert_eq!(width("日本"), 4);
        assert_eq!(one_line("a\nb"), "a b");
    }
}
