//! Drawing: a pure function of [`App`]. The header (daemon, user, connection, counts, $/h), the
//! title bar (breadcrumbs, then what the shown component says of itself), the component's own
//! drawing, and the bottom line (prompt, message or key hints), with the help screen and dialogs
//! over them.

use crate::ui::app::{App, Conn, Dialog, Overlay};
use crate::ui::cells::{self, width};
use crate::ui::keys;
use crate::ui::prompt::PromptKind;
use crate::ui::views::truncate;
use ratatui::buffer::Buffer;
use ratatui::layout::{Position, Rect};
use ratatui::style::Style;
use ratatui::widgets::{Block, Borders, Clear, Widget};
use ratatui::Frame;

use crate::ui::layout::{BOTTOM_ROWS, HEADER_ROWS, TITLE_ROWS};

/// Draws the whole dashboard.
pub fn draw(frame: &mut Frame<'_>, app: &App) {
    let area = frame.area();
    if let Some(pos) = draw_into(frame.buffer_mut(), area, app) {
        frame.set_cursor_position(pos);
    }
}

/// Draws into a buffer; returns where the cursor goes (when a prompt is open).
pub fn draw_into(buf: &mut Buffer, area: Rect, app: &App) -> Option<Position> {
    let t = &app.theme;
    if area.height < 5 || area.width < 20 {
        buf.set_stringn(
            area.x,
            area.y,
            "terminal too small",
            area.width.into(),
            t.dim(),
        );
        return None;
    }
    let header = Rect::new(area.x, area.y, area.width, HEADER_ROWS);
    let title = Rect::new(area.x, area.y + HEADER_ROWS, area.width, TITLE_ROWS);
    let body_h = area.height - HEADER_ROWS - TITLE_ROWS - BOTTOM_ROWS;
    let body = Rect::new(area.x, title.y + TITLE_ROWS, area.width, body_h);
    let bottom = Rect::new(area.x, body.y + body_h, area.width, BOTTOM_ROWS);
    draw_header(buf, header, app);
    draw_title(buf, title, app);
    app.component(app.view()).draw(buf, body, &app.draw_ctx());
    let cursor = draw_bottom(buf, bottom, body, app);
    match &app.overlay {
        Some(Overlay::Help { scroll }) => draw_help(buf, body, app, *scroll),
        Some(Overlay::Dialog(d)) => draw_dialog(buf, body, app, d),
        None => {}
    }
    cursor
}

/// Writes spans left to right from `x`; returns the column after the last.
fn spans(buf: &mut Buffer, mut x: u16, y: u16, right: u16, parts: &[(String, Style)]) -> u16 {
    for (text, style) in parts {
        let room = right.saturating_sub(x);
        if room == 0 {
            break;
        }
        let text = truncate(text, room.into());
        buf.set_stringn(x, y, &text, room.into(), *style);
        x += width(&text) as u16;
    }
    x
}

fn draw_header(buf: &mut Buffer, area: Rect, app: &App) {
    let t = &app.theme;
    let right = area.x + area.width;
    // Line 1: who and where; the connection on the right.
    let (conn, conn_style) = match &app.conn {
        Conn::Connecting => ("◌ connecting…".to_string(), t.warn()),
        Conn::Connected => ("● connected".to_string(), t.good()),
        Conn::Reconnecting { attempt, .. } => {
            (format!("◌ reconnecting… (attempt {attempt})"), t.error())
        }
    };
    let conn_w = width(&conn) as u16;
    let conn_x = right.saturating_sub(conn_w + 1).max(area.x);
    let mut line1 = vec![(format!(" flotilla {}", app.version), t.accent())];
    if let Some(h) = &app.hello {
        line1.push((format!("  daemon {}", h.daemon_version), t.normal()));
    }
    line1.push((format!("  {}", app.socket), t.dim()));
    spans(buf, area.x, area.y, conn_x.saturating_sub(1), &line1);
    buf.set_stringn(conn_x, area.y, &conn, conn_w.into(), conn_style);

    // Line 2: user, runs by status, fleets, $/h.
    let mut line2 = Vec::new();
    match &app.hello {
        Some(h) => line2.push((
            format!(" {}{}", h.user, if h.admin { " (admin)" } else { "" }),
            t.bold(),
        )),
        None => line2.push((" -".to_string(), t.dim())),
    }
    line2.push(("  runs".to_string(), t.dim()));
    if app.runs.counts.is_empty() {
        line2.push((" 0".to_string(), t.normal()));
    }
    for (i, (status, n)) in app.runs.counts.iter().enumerate() {
        let sep = if i == 0 { " " } else { " · " };
        line2.push((sep.to_string(), t.dim()));
        line2.push((format!("{n} {status}"), t.status(status.as_str())));
    }
    let burn = format!(
        "${}/h ",
        cells::price(app.fleets.burn).trim_start_matches('$')
    );
    let burn_w = width(&burn) as u16;
    let burn_x = right.saturating_sub(burn_w).max(area.x);
    spans(buf, area.x, area.y + 1, burn_x.saturating_sub(1), &line2);
    buf.set_stringn(burn_x, area.y + 1, &burn, burn_w.into(), t.bold());
}

fn draw_title(buf: &mut Buffer, area: Rect, app: &App) {
    let t = &app.theme;
    let right = area.x + area.width;
    let view = app.view();
    let mut parts: Vec<(String, Style)> = Vec::new();
    // Breadcrumbs: the stack of views.
    for (i, v) in app.stack.iter().enumerate() {
        let current = i + 1 == app.stack.len();
        parts.push((
            app.component(*v).crumb(),
            if current {
                t.selected().patch(t.accent())
            } else {
                t.dim()
            },
        ));
        parts.push((" ".to_string(), t.normal()));
    }
    parts.extend(app.component(view).title(&app.draw_ctx()));
    let filter = app.filter_of(view);
    if !filter.is_empty() {
        parts.push((format!("  /{filter}"), t.warn()));
    }
    spans(buf, area.x, area.y, right, &parts);
}

/// The bottom line: the prompt if open, else a message, else the key hints.
fn draw_bottom(buf: &mut Buffer, area: Rect, body: Rect, app: &App) -> Option<Position> {
    let t = &app.theme;
    let right = area.x + area.width;
    if let Some(p) = &app.prompt {
        let label = p.kind.label();
        let before = &p.input[..p.cursor];
        let x = spans(
            buf,
            area.x,
            area.y,
            right,
            &[
                (label.to_string(), t.accent()),
                (p.input.clone(), t.normal()),
            ],
        );
        if let Some(rest) = p.suggestion() {
            spans(buf, x, area.y, right, &[(rest.to_string(), t.dim())]);
        }
        if !p.candidates.is_empty() && body.height > 0 {
            // Completion candidates on the line above.
            let y = body.y + body.height - 1;
            buf.set_style(Rect::new(area.x, y, area.width, 1), t.selected());
            let list = p.candidates.join("  ");
            buf.set_stringn(
                area.x,
                y,
                " ".repeat(area.width.into()),
                area.width.into(),
                t.selected(),
            );
            buf.set_stringn(
                area.x + 1,
                y,
                truncate(&list, usize::from(area.width.saturating_sub(2))),
                area.width.into(),
                t.selected(),
            );
        }
        let cx = area.x + (width(label) + width(before)) as u16;
        if p.kind == PromptKind::Search
            || p.kind == PromptKind::Filter
            || p.kind == PromptKind::Command
            || p.kind == PromptKind::ApplyPath
        {
            return Some(Position::new(cx.min(right.saturating_sub(1)), area.y));
        }
        return None;
    }
    if let Some(f) = app.flash.as_ref().filter(|f| f.until > app.now) {
        let style = if f.error { t.error() } else { t.normal() };
        spans(
            buf,
            area.x,
            area.y,
            right,
            &[(format!(" {}", f.text), style)],
        );
        return None;
    }
    if let Some(parts) = app.component(app.view()).hint_line(&app.draw_ctx()) {
        spans(buf, area.x, area.y, right, &parts);
        return None;
    }
    let mut parts = Vec::new();
    for b in app
        .component(app.view())
        .keys()
        .into_iter()
        .filter(|b| b.hint)
    {
        parts.push((
            format!(" <{}>", b.key.label()),
            if b.dangerous { t.danger() } else { t.accent() },
        ));
        parts.push((format!(" {}", b.description), t.normal()));
    }
    hints_line(buf, area, &parts);
    None
}

/// Hints, whole pairs only: a key never shows without its description.
fn hints_line(buf: &mut Buffer, area: Rect, parts: &[(String, Style)]) {
    let right = area.x + area.width;
    let mut x = area.x;
    for pair in parts.chunks(2) {
        let w: u16 = pair.iter().map(|(s, _)| width(s) as u16).sum();
        if x + w > right {
            break;
        }
        x = spans(buf, x, area.y, right, pair);
    }
}

fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

fn draw_help(buf: &mut Buffer, body: Rect, app: &App, scroll: usize) {
    let t = &app.theme;
    let entries = keys::help_entries();
    let key_w = entries.iter().map(|e| width(&e.keys)).max().unwrap_or(0);
    let desc_w = entries
        .iter()
        .map(|e| width(e.description))
        .max()
        .unwrap_or(0);
    let w = (key_w + desc_w + 24).min(usize::from(body.width)) as u16;
    let area = centered(body, w, body.height);
    Clear.render(area, buf);
    Block::new()
        .borders(Borders::ALL)
        .title(" keys (esc closes) ")
        .border_style(t.accent())
        .render(area, buf);
    let inner = Rect::new(
        area.x + 1,
        area.y + 1,
        area.width.saturating_sub(2),
        area.height.saturating_sub(2),
    );
    let right = inner.x + inner.width;
    let scroll = scroll.min(entries.len().saturating_sub(usize::from(inner.height)));
    for (row, e) in entries
        .iter()
        .skip(scroll)
        .take(inner.height.into())
        .enumerate()
    {
        let y = inner.y + row as u16;
        let key_style = if e.dangerous { t.danger() } else { t.accent() };
        let keys = format!(" {:<key_w$}  ", e.keys);
        let x = spans(
            buf,
            inner.x,
            y,
            right,
            &[(keys, key_style), (e.description.to_string(), t.normal())],
        );
        let scope = format!(" {}", e.scope);
        let sx = (inner.x + (key_w + desc_w + 4) as u16).max(x + 1);
        spans(buf, sx, y, right, &[(scope, t.dim())]);
    }
}

fn draw_dialog(buf: &mut Buffer, body: Rect, app: &App, d: &Dialog) {
    let t = &app.theme;
    let inner_w = usize::from(body.width.saturating_sub(4)).min(76);
    // Wrap the text to the dialog's width.
    let mut lines: Vec<String> = Vec::new();
    for l in &d.lines {
        lines.extend(wrap(l, inner_w.saturating_sub(2)));
    }
    lines.push(String::new());
    let w = (lines
        .iter()
        .map(|l| width(l))
        .max()
        .unwrap_or(0)
        .max(width(&d.question) + 12)
        + 4)
    .min(usize::from(body.width)) as u16;
    let h = (lines.len() + 3).min(usize::from(body.height)) as u16;
    let area = centered(body, w, h);
    Clear.render(area, buf);
    let border = if d.dangerous { t.danger() } else { t.accent() };
    Block::new()
        .borders(Borders::ALL)
        .title(format!(" {} ", d.title))
        .border_style(border)
        .render(area, buf);
    let inner = Rect::new(
        area.x + 1,
        area.y + 1,
        area.width.saturating_sub(2),
        area.height.saturating_sub(2),
    );
    let right = inner.x + inner.width;
    let room = usize::from(inner.height).saturating_sub(1);
    for (i, l) in lines.iter().take(room).enumerate() {
        spans(
            buf,
            inner.x + 1,
            inner.y + i as u16,
            right,
            &[(l.clone(), t.normal())],
        );
    }
    let y = inner.y + inner.height.saturating_sub(1);
    spans(
        buf,
        inner.x + 1,
        y,
        right,
        &[
            (format!("{} ", d.question), t.bold()),
            (
                "[y]".to_string(),
                if d.dangerous { t.danger() } else { t.accent() },
            ),
            ("es ".to_string(), t.normal()),
            ("[n]".to_string(), t.accent()),
            ("o".to_string(), t.normal()),
        ],
    );
}

/// Splits `text` into lines of at most `w` columns, at spaces where possible.
fn wrap(text: &str, w: usize) -> Vec<String> {
    let w = w.max(8);
    let mut out = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let need = width(&line) + usize::from(!line.is_empty()) + width(word);
        if need > w && !line.is_empty() {
            out.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
        while width(&line) > w {
            let cut: String = line.chars().take(w).collect();
            let rest: String = line.chars().skip(w).collect();
            out.push(cut);
            line = rest;
        }
    }
    if !line.is_empty() || out.is_empty() {
        out.push(line);
    }
    out
}
