//! The log view: the window of the log around the viewport, followed live, with optional wrap,
//! arrival timestamps (history lines marked as having none) and search highlights.

use super::draw_message;
use crate::ui::app::App;
use crate::ui::cells::{self, char_width};
use crate::ui::log_window::match_ranges;
use crate::ui::theme::Theme;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;

/// The gutter of a line read from history: it has no arrival time.
pub const NO_TIME: &str = "     ·       ";

pub fn draw(buf: &mut Buffer, area: Rect, app: &App) {
    let t = &app.theme;
    let Some(l) = &app.logs else {
        return;
    };
    if l.loading {
        draw_message(buf, area, &[("Loading the log…".to_string(), t.dim())]);
        return;
    }
    if let Some(e) = &l.error {
        if l.window.is_empty() {
            draw_message(buf, area, &[(cells::one_line(e), t.error())]);
            return;
        }
    }
    if l.window.is_empty() {
        let text = if l.ended.is_some() {
            "The log is empty"
        } else {
            "No output yet"
        };
        draw_message(buf, area, &[(text.to_string(), t.dim())]);
        return;
    }
    let rows = usize::from(area.height);
    let width = usize::from(area.width);
    let top = l.shown_top(rows, width);
    let gutter = l.gutter();
    let text_width = width.saturating_sub(gutter).max(1);
    let query = l.search.to_lowercase();
    let mut y = area.y;
    let bottom = area.y + area.height;
    let mut i = top;
    while y < bottom {
        let Some((_, text)) = l.window.line(i) else {
            break;
        };
        if gutter > 0 {
            let stamp = match l.window.arrived(i) {
                Some(ts) => format!("{} ", cells::clock_ms(ts)),
                None => NO_TIME.to_string(),
            };
            buf.set_stringn(area.x, y, &stamp, gutter, t.dim());
        }
        let matches = if query.is_empty() {
            Vec::new()
        } else {
            match_ranges(text, &query)
        };
        let current = l.current_match == Some(i);
        y = draw_line(
            buf,
            area.x + gutter as u16,
            y,
            bottom,
            text_width,
            text,
            &matches,
            current,
            l.wrap,
            t,
        );
        i += 1;
    }
}

/// Draws one log line from row `y`; returns the next free row.
#[allow(clippy::too_many_arguments)]
fn draw_line(
    buf: &mut Buffer,
    x0: u16,
    mut y: u16,
    bottom: u16,
    width: usize,
    text: &str,
    matches: &[(usize, usize)],
    current: bool,
    wrap: bool,
    t: &Theme,
) -> u16 {
    let base = if current { t.bold() } else { Style::new() };
    let mut col = 0usize;
    let mut m = 0usize;
    for (pos, c) in text.char_indices() {
        let cw = char_width(c);
        if col + cw > width {
            if !wrap {
                break;
            }
            y += 1;
            col = 0;
            if y >= bottom {
                return y;
            }
        }
        while m < matches.len() && matches[m].1 <= pos {
            m += 1;
        }
        let style = if matches.get(m).is_some_and(|(s, e)| *s <= pos && pos < *e) {
            base.patch(t.matched())
        } else {
            base
        };
        if cw > 0 {
            if let Some(cell) = buf.cell_mut((x0 + col as u16, y)) {
                cell.set_char(c).set_style(style);
            }
            if cw == 2 {
                if let Some(cell) = buf.cell_mut((x0 + col as u16 + 1, y)) {
                    cell.reset();
                }
            }
        }
        col += cw;
    }
    y + 1
}
