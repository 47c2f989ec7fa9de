//! The views of the dashboard, one component each (its state, keys and drawing), and the table
//! renderer they share: columns that drop by priority when the terminal is narrow, and only the
//! visible rows formatted.

pub mod events;
pub mod fleets;
pub mod jobs;
pub mod logs;
pub mod offers;
pub mod run_actions;
pub mod runs;

use crate::ui::cells::{char_width, width};
use crate::ui::theme::Theme;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;
use std::borrow::Cow;

/// A table column: title, width bounds, and when it goes on a narrow terminal (0 = never;
/// the highest number goes first).
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub title: &'static str,
    pub min: u16,
    pub max: u16,
    pub priority: u8,
}

pub const fn col(title: &'static str, min: u16, max: u16, priority: u8) -> Column {
    Column {
        title,
        min,
        max,
        priority,
    }
}

/// One cell: its text (one line) and style.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub text: String,
    pub style: Style,
}

impl Cell {
    pub fn new(text: impl Into<String>, style: Style) -> Cell {
        Cell {
            text: text.into(),
            style,
        }
    }
    pub fn plain(text: impl Into<String>) -> Cell {
        Cell::new(text, Style::new())
    }
}

/// The widths of the columns shown at `total` columns (`None` = dropped), and the gap.
pub fn fit_columns(columns: &[Column], natural: &[u16], total: u16) -> (Vec<Option<u16>>, u16) {
    let mut widths: Vec<Option<u16>> = columns
        .iter()
        .zip(natural)
        .map(|(c, n)| Some((*n).clamp(c.min, c.max.max(c.min))))
        .collect();
    let used = |w: &[Option<u16>], gap: u16| -> u32 {
        let shown: Vec<u16> = w.iter().flatten().copied().collect();
        shown.iter().map(|v| u32::from(*v)).sum::<u32>()
            + u32::from(gap) * (shown.len().saturating_sub(1) as u32)
    };
    let mut gap = 2;
    loop {
        if used(&widths, gap) <= u32::from(total) {
            break;
        }
        if gap == 2 {
            gap = 1;
            continue;
        }
        // Drop the shown column with the highest priority number (the rightmost on a tie).
        let victim = columns
            .iter()
            .enumerate()
            .filter(|(i, c)| widths[*i].is_some() && c.priority > 0)
            .max_by_key(|(i, c)| (c.priority, *i))
            .map(|(i, _)| i);
        match victim {
            Some(i) => {
                widths[i] = None;
                gap = 2;
            }
            None => break,
        }
    }
    // Whatever is left over goes to the last column shown; a deficit is taken from it too.
    let spare = i64::from(total) - i64::from(used(&widths, gap));
    if let Some(last) = widths.iter_mut().rev().flatten().next() {
        *last = (i64::from(*last) + spare).max(1) as u16;
    }
    (widths, gap)
}

/// `text` cut to `max` display columns, with `…` when cut.
pub fn truncate(text: &str, max: usize) -> Cow<'_, str> {
    if width(text) <= max {
        return Cow::Borrowed(text);
    }
    if max == 0 {
        return Cow::Borrowed("");
    }
    let mut out = String::new();
    let mut w = 0;
    for c in text.chars() {
        let cw = char_width(c);
        if w + cw > max - 1 {
            break;
        }
        out.push(c);
        w += cw;
    }
    out.push('…');
    Cow::Owned(out)
}

/// Draws a table: a header line, then `rows` (already only the visible ones); `selected` is
/// an index into `rows`. Returns the widths used.
pub fn draw_table(
    buf: &mut Buffer,
    area: Rect,
    theme: &Theme,
    columns: &[Column],
    rows: &[Vec<Cell>],
    selected: Option<usize>,
) {
    if area.height == 0 || area.width == 0 {
        return;
    }
    let natural: Vec<u16> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let cells = rows
                .iter()
                .filter_map(|r| r.get(i))
                .map(|c| width(&c.text))
                .max()
                .unwrap_or(0);
            cells.max(width(c.title)).min(u16::MAX as usize) as u16
        })
        .collect();
    let (widths, gap) = fit_columns(columns, &natural, area.width);
    let right = area.x + area.width;
    let mut x = area.x;
    for (c, w) in columns.iter().zip(&widths) {
        let Some(w) = *w else { continue };
        if x >= right {
            break;
        }
        let w = w.min(right - x);
        buf.set_stringn(
            x,
            area.y,
            truncate(c.title, w.into()),
            w.into(),
            theme.bold(),
        );
        x = x.saturating_add(w + gap);
    }
    for (r, row) in rows.iter().enumerate() {
        let y = area.y + 1 + r as u16;
        if y >= area.y + area.height {
            break;
        }
        let mut x = area.x;
        for (cell, w) in row.iter().zip(&widths) {
            let Some(w) = *w else { continue };
            if x >= right {
                break;
            }
            let w = w.min(right - x);
            buf.set_stringn(x, y, truncate(&cell.text, w.into()), w.into(), cell.style);
            x = x.saturating_add(w + gap);
        }
        if selected == Some(r) {
            buf.set_style(Rect::new(area.x, y, area.width, 1), theme.selected());
        }
    }
}

/// The part of `area` below its first `n` rows.
pub fn below(area: Rect, n: u16) -> Rect {
    let n = n.min(area.height);
    Rect::new(area.x, area.y + n, area.width, area.height - n)
}

/// A message in the middle of `area` (empty, loading and error states).
pub fn draw_message(buf: &mut Buffer, area: Rect, lines: &[(String, Style)]) {
    if area.height == 0 {
        return;
    }
    let top = area.y + area.height.saturating_sub(lines.len() as u16) / 2;
    for (i, (text, style)) in lines.iter().enumerate() {
        let y = top + i as u16;
        if y >= area.y + area.height {
            break;
        }
        let text = truncate(text, area.width.into());
        let w = width(&text) as u16;
        let x = area.x + area.width.saturating_sub(w) / 2;
        buf.set_stringn(x, y, &text, area.width.into(), *style);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLS: [Column; 3] = [
        col("NAME", 4, 20, 0),
        col("AGE", 3, 5, 1),
        col("ERROR", 5, 40, 2),
    ];

    #[test]
    fn narrow_terminals_drop_columns_by_priority() {
        let (w, gap) = fit_columns(&COLS, &[10, 3, 30], 80);
        assert_eq!(gap, 2);
        assert_eq!(w, vec![Some(10), Some(3), Some(63)]);
        let (w, _) = fit_columns(&COLS, &[10, 3, 30], 20);
        assert_eq!(w[2], None);
        let (w, _) = fit_columns(&COLS, &[10, 3, 30], 8);
        assert_eq!(w, vec![Some(8), None, None]);
    }

    #[test]
    fn truncation_marks_the_cut() {
        assert_eq!(truncate("hello", 5), "hello");
        assert_eq!(truncate("hello world", 6), "hello…");
        assert_eq!(truncate("日本語", 4), "日…");
    }
}
