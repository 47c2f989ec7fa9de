//! A window of a job's log around the viewport: the lines of a contiguous byte range, never the
//! whole log. Reads extend it up or down; live bytes append to its end; its size is bounded
//! (a ring buffer: the oldest lines go first).

use crate::ui::cells::clean_log_line;
use flotilla_protocol::Timestamp;
use std::collections::VecDeque;

/// The most bytes one `logs.read` asks for.
pub const READ_WINDOW: u64 = 1 << 20;

/// One complete line of the log (its newline excluded), cleaned for display.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// Byte offset of the line's first byte in the log.
    pub offset: u64,
    /// Bytes of the line in the log, newline included.
    pub len: u32,
    pub text: String,
}

/// The lines of `[start, end)` of a log, plus the unterminated bytes after `end`.
#[derive(Debug, Clone)]
pub struct LogWindow {
    lines: VecDeque<LogLine>,
    start: u64,
    end: u64,
    /// Bytes after `end` that have no newline yet (the line being written, or a read's cut).
    partial: Vec<u8>,
    partial_text: String,
    /// The log's size as far as this client knows.
    size: u64,
    /// `(first byte offset, time)` of each batch of live bytes, oldest first.
    arrivals: VecDeque<(u64, Timestamp)>,
    max_lines: usize,
    max_arrivals: usize,
}

/// What an insertion did to line indices: lines dropped at the front shift the viewport up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shift {
    pub added_front: usize,
    pub dropped_front: usize,
    pub dropped_back: usize,
}

impl LogWindow {
    pub fn new(max_lines: usize) -> LogWindow {
        LogWindow {
            lines: VecDeque::new(),
            start: 0,
            end: 0,
            partial: Vec::new(),
            partial_text: String::new(),
            size: 0,
            arrivals: VecDeque::new(),
            max_lines: max_lines.max(1),
            max_arrivals: 100_000,
        }
    }

    /// Lines, the unterminated last one included when the window reaches the log's end.
    pub fn len(&self) -> usize {
        self.lines.len() + usize::from(self.shows_partial())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shows_partial(&self) -> bool {
        !self.partial.is_empty() && self.reaches_end()
    }

    /// The line at `i` (0 = first line of the window).
    pub fn line(&self, i: usize) -> Option<(u64, &str)> {
        if let Some(l) = self.lines.get(i) {
            return Some((l.offset, l.text.as_str()));
        }
        if i == self.lines.len() && self.shows_partial() {
            return Some((self.end, self.partial_text.as_str()));
        }
        None
    }

    /// Byte offset of the window's first line.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Where the next live bytes must start to be appended.
    pub fn next_offset(&self) -> u64 {
        self.end + self.partial.len() as u64
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn set_size(&mut self, size: u64) {
        self.size = self.size.max(size);
    }

    /// The window holds the log's last bytes.
    pub fn reaches_end(&self) -> bool {
        self.next_offset() >= self.size
    }

    /// The window holds the log's first line.
    pub fn reaches_start(&self) -> bool {
        self.start == 0
    }

    /// When the line at `i` arrived in this client; `None` for history (read, not followed).
    pub fn arrived(&self, i: usize) -> Option<Timestamp> {
        let (offset, len) = match self.lines.get(i) {
            Some(l) => (l.offset, u64::from(l.len)),
            None if i == self.lines.len() && self.shows_partial() => {
                (self.end, self.partial.len() as u64)
            }
            None => return None,
        };
        let last_byte = offset + len.saturating_sub(1);
        let idx = self.arrivals.partition_point(|(o, _)| *o <= last_byte);
        idx.checked_sub(1).map(|j| self.arrivals[j].1)
    }

    /// Replaces the window with the bytes read at `offset`. A read that starts mid-log drops
    /// its first, probably partial, line.
    pub fn reset(&mut self, offset: u64, bytes: &[u8], size: u64) {
        self.lines.clear();
        self.partial.clear();
        self.partial_text.clear();
        self.size = size.max(offset + bytes.len() as u64);
        // (A read inside one very long line keeps it all.)
        let skip = match memchr(b'\n', bytes) {
            Some(i) if offset > 0 => i + 1,
            _ => 0,
        };
        self.start = offset + skip as u64;
        self.end = self.start;
        self.push_bytes(&bytes[skip..]);
        self.trim_front();
    }

    /// Appends bytes at `offset`; ignored unless they continue the window exactly. `arrived`
    /// marks live bytes (followed, not read). Returns how many lines went at the front.
    pub fn append(&mut self, offset: u64, bytes: &[u8], arrived: Option<Timestamp>) -> Shift {
        self.set_size(offset + bytes.len() as u64);
        if offset != self.next_offset() || bytes.is_empty() {
            return Shift::default();
        }
        if let Some(t) = arrived {
            self.arrivals.push_back((offset, t));
            if self.arrivals.len() > self.max_arrivals {
                self.arrivals.pop_front();
            }
        }
        self.push_bytes(bytes);
        Shift {
            dropped_front: self.trim_front(),
            ..Shift::default()
        }
    }

    /// Puts the bytes read at `offset` (ending where the window starts) before the window.
    pub fn prepend(&mut self, offset: u64, bytes: &[u8]) -> Shift {
        if offset + bytes.len() as u64 != self.start || bytes.is_empty() {
            return Shift::default();
        }
        let skip = match memchr(b'\n', bytes) {
            Some(i) if offset > 0 => i + 1,
            _ => 0,
        };
        let mut new = Vec::new();
        let mut pos = offset + skip as u64;
        for raw in bytes[skip..].split_inclusive(|b| *b == b'\n') {
            new.push(make_line(pos, raw));
            pos += raw.len() as u64;
        }
        let added = new.len();
        for l in new.into_iter().rev() {
            self.lines.push_front(l);
        }
        self.start = offset + skip as u64;
        // Bounded: the lines furthest from the new ones go.
        let mut dropped_back = 0;
        while self.lines.len() > self.max_lines {
            if let Some(l) = self.lines.pop_back() {
                self.end = l.offset;
                dropped_back += 1;
            }
            self.partial.clear();
            self.partial_text.clear();
        }
        Shift {
            added_front: added,
            dropped_front: 0,
            dropped_back,
        }
    }

    fn push_bytes(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        if !self.partial.is_empty() {
            match memchr(b'\n', rest) {
                Some(i) => {
                    self.partial.extend_from_slice(&rest[..=i]);
                    rest = &rest[i + 1..];
                    let raw = std::mem::take(&mut self.partial);
                    self.partial_text.clear();
                    let line = make_line(self.end, &raw);
                    self.end += raw.len() as u64;
                    self.lines.push_back(line);
                }
                None => {
                    self.partial.extend_from_slice(rest);
                    self.partial_text = clean(&self.partial);
                    return;
                }
            }
        }
        for raw in rest.split_inclusive(|b| *b == b'\n') {
            if raw.last() == Some(&b'\n') {
                let line = make_line(self.end, raw);
                self.end += raw.len() as u64;
                self.lines.push_back(line);
            } else {
                self.partial.extend_from_slice(raw);
                self.partial_text = clean(&self.partial);
            }
        }
    }

    fn trim_front(&mut self) -> usize {
        let mut dropped = 0;
        while self.lines.len() > self.max_lines {
            if let Some(l) = self.lines.pop_front() {
                self.start = l.offset + u64::from(l.len);
                dropped += 1;
            }
        }
        if dropped > 0 {
            let first = self.start;
            while self.arrivals.len() > 1 && self.arrivals.get(1).is_some_and(|(o, _)| *o <= first)
            {
                self.arrivals.pop_front();
            }
        }
        dropped
    }

    /// Indices of the lines containing `query` (case-insensitive), in order.
    pub fn find(&self, query: &str, from: usize, forward: bool) -> Option<usize> {
        if query.is_empty() {
            return None;
        }
        let q = query.to_lowercase();
        let n = self.len();
        if n == 0 {
            return None;
        }
        let hit = |i: usize| self.line(i).is_some_and(|(_, t)| contains_ci(t, &q));
        if forward {
            (from..n).chain(0..from.min(n)).find(|&i| hit(i))
        } else {
            let from = from.min(n - 1);
            (0..=from)
                .rev()
                .chain((from + 1..n).rev())
                .find(|&i| hit(i))
        }
    }
}

fn make_line(offset: u64, raw: &[u8]) -> LogLine {
    LogLine {
        offset,
        len: raw.len() as u32,
        text: clean(raw.strip_suffix(b"\n").unwrap_or(raw)),
    }
}

fn clean(raw: &[u8]) -> String {
    clean_log_line(&String::from_utf8_lossy(raw))
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|b| *b == needle)
}

/// Case-insensitive substring test; `lower_query` is already lowercase.
pub fn contains_ci(text: &str, lower_query: &str) -> bool {
    if text.is_ascii() && lower_query.is_ascii() {
        let (t, q) = (text.as_bytes(), lower_query.as_bytes());
        if q.len() > t.len() {
            return false;
        }
        return t
            .windows(q.len())
            .any(|w| w.iter().zip(q).all(|(a, b)| a.to_ascii_lowercase() == *b));
    }
    text.to_lowercase().contains(lower_query)
}

/// Byte ranges of `text` matching `lower_query` case-insensitively (ASCII-exact; other text
/// matched on its lowercase form when lengths agree).
pub fn match_ranges(text: &str, lower_query: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    if lower_query.is_empty() {
        return out;
    }
    let lower = text.to_lowercase();
    if lower.len() != text.len() {
        return out;
    }
    let mut from = 0;
    while let Some(i) = lower[from..].find(lower_query) {
        let s = from + i;
        let e = s + lower_query.len();
        if text.is_char_boundary(s) && text.is_char_boundary(e) {
            out.push((s, e));
        }
        from = e;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(w: &LogWindow) -> Vec<String> {
        (0..w.len())
            .filter_map(|i| w.line(i).map(|(_, t)| t.to_string()))
            .collect()
    }

    #[test]
    fn a_read_from_the_middle_drops_its_first_partial_line() {
        let mut w = LogWindow::new(100);
        w.reset(10, b"tail of line\nfull one\nfull two\n", 100);
        assert_eq!(texts(&w), ["full one", "full two"]);
        assert_eq!(w.start(), 23);
        assert!(!w.reaches_end());
    }

    #[test]
    fn live_bytes_complete_the_partial_line_and_carry_their_arrival() {
        let mut w = LogWindow::new(100);
        w.reset(0, b"a\nhalf", 6);
        assert_eq!(texts(&w), ["a", "half"]);
        assert_eq!(w.arrived(1), None);
        w.append(6, b" line\nnext\n", Some(Timestamp(5000)));
        assert_eq!(texts(&w), ["a", "half line", "next"]);
        assert_eq!(w.arrived(0), None);
        assert_eq!(w.arrived(1), Some(Timestamp(5000)));
        assert_eq!(w.arrived(2), Some(Timestamp(5000)));
        // a gap (bytes not continuing the window) only moves the size
        w.append(100, b"x\n", None);
        assert_eq!(w.len(), 3);
        assert_eq!(w.size(), 102);
        assert!(!w.reaches_end());
    }

    #[test]
    fn the_window_is_a_ring_buffer() {
        let mut w = LogWindow::new(3);
        w.reset(0, b"1\n2\n3\n", 6);
        let s = w.append(6, b"4\n5\n", Some(Timestamp(1)));
        assert_eq!(s.dropped_front, 2);
        assert_eq!(texts(&w), ["3", "4", "5"]);
        assert_eq!(w.start(), 4);
    }

    #[test]
    fn older_bytes_go_before_the_window() {
        let mut w = LogWindow::new(4);
        w.reset(5, b"\n4\n5\n", 10);
        assert_eq!(texts(&w), ["4", "5"]);
        let s = w.prepend(0, b"1\n2\n3\n");
        assert_eq!(s.added_front, 3);
        assert_eq!(s.dropped_back, 1);
        assert_eq!(texts(&w), ["1", "2", "3", "4"]);
        assert!(w.reaches_start());
        assert!(!w.reaches_end());
        assert_eq!(w.next_offset(), 8);
    }

    #[test]
    fn search_wraps_around_and_ignores_case() {
        let mut w = LogWindow::new(10);
        w.reset(0, b"Error one\nfine\nerror two\n", 26);
        assert_eq!(w.find("ERROR", 1, true), Some(2));
        assert_eq!(w.find("error", 3, true), Some(0));
        assert_eq!(w.find("error", 1, false), Some(0));
        assert_eq!(w.find("nothing", 0, true), None);
        assert_eq!(
            match_ranges("an Error, error", "error"),
            vec![(3, 8), (10, 15)]
        );
    }
}
