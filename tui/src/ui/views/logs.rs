//! The log view: the window of the log around the viewport, followed live, with optional wrap,
//! arrival timestamps (history lines marked as having none) and search highlights. The
//! component owns the open log (one at a time) and asks the daemon side for the windows it needs.

use super::draw_message;
use crate::ui::cells::{self, char_width};
use crate::ui::component::{Component, Ctx, DrawCtx, Handled};
use crate::ui::keys::{self, Action, Key, View};
use crate::ui::layout::table_rows;
use crate::ui::log_window::{match_ranges, LogWindow, Shift, READ_WINDOW};
use crate::ui::messages::{Command, LogRead, Msg};
use crate::ui::theme::Theme;
use flotilla_protocol::rpc::LogTarget;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;

/// The gutter of a line read from history: it has no arrival time.
pub const NO_TIME: &str = "     ·       ";

/// The most lines of a log kept in memory.
pub const MAX_LOG_LINES: usize = 50_000;

/// One open log: the window of it around the viewport and how it is shown.
pub struct LogSession {
    pub session: u64,
    pub target: LogTarget,
    pub title: String,
    pub window: LogWindow,
    /// First line shown when not following.
    pub top: usize,
    pub follow: bool,
    pub wrap: bool,
    pub timestamps: bool,
    pub search: String,
    pub current_match: Option<usize>,
    pub loading: bool,
    pub read_pending: bool,
    pub ended: Option<String>,
    pub error: Option<String>,
}

impl LogSession {
    fn new(session: u64, target: LogTarget, title: String) -> LogSession {
        LogSession {
            session,
            target,
            title,
            window: LogWindow::new(MAX_LOG_LINES),
            top: 0,
            follow: true,
            wrap: false,
            timestamps: false,
            search: String::new(),
            current_match: None,
            loading: true,
            read_pending: false,
            ended: None,
            error: None,
        }
    }

    /// Width of the timestamp gutter.
    pub fn gutter(&self) -> usize {
        if self.timestamps {
            13
        } else {
            0
        }
    }

    /// Screen rows the line at `i` takes at `width` columns.
    pub fn rows_of(&self, i: usize, width: usize) -> usize {
        if !self.wrap {
            return 1;
        }
        let text_width = width.saturating_sub(self.gutter()).max(1);
        let w = self
            .window
            .line(i)
            .map(|(_, t)| cells::width(t))
            .unwrap_or(0);
        w.div_ceil(text_width).max(1)
    }

    /// The first line shown when following: the last lines fill `rows` screen rows.
    pub fn bottom_top(&self, rows: usize, width: usize) -> usize {
        let n = self.window.len();
        if !self.wrap {
            return n.saturating_sub(rows);
        }
        let mut used = 0;
        let mut top = n;
        while top > 0 {
            let h = self.rows_of(top - 1, width);
            if used + h > rows && used > 0 {
                break;
            }
            used += h;
            top -= 1;
        }
        top
    }

    /// The first line shown.
    pub fn shown_top(&self, rows: usize, width: usize) -> usize {
        let bottom = self.bottom_top(rows, width);
        if self.follow {
            bottom
        } else {
            self.top.min(bottom)
        }
    }
}

/// The log view: the open log, if any, and the numbering of log sessions.
#[derive(Default)]
pub struct LogsView {
    pub session: Option<LogSession>,
    sessions: u64,
}

impl LogsView {
    /// Opens `target` (closing the log open before).
    pub fn open(&mut self, target: LogTarget, title: String, ctx: &mut Ctx<'_>) {
        self.close(ctx);
        self.sessions += 1;
        let session = self.sessions;
        self.session = Some(LogSession::new(session, target.clone(), title));
        ctx.send(Command::OpenLog { session, target });
    }

    /// Closes the open log, if any.
    pub fn close(&mut self, ctx: &mut Ctx<'_>) {
        if let Some(l) = self.session.take() {
            ctx.send(Command::CloseLog { session: l.session });
        }
    }

    /// A new connection: a read lost with the old one is asked again.
    pub fn reconnected(&mut self, ctx: &mut Ctx<'_>) {
        if let Some(l) = &mut self.session {
            l.read_pending = false;
        }
        self.fetch_around_viewport(ctx);
    }

    /// Sets the search (while it is typed); `jump` goes to the first match from the top shown.
    pub fn set_search(&mut self, query: String, jump: bool, ctx: &mut Ctx<'_>) {
        let (rows, width) = geometry(ctx);
        let Some(l) = &mut self.session else { return };
        l.search = query;
        l.current_match = None;
        if jump && !l.search.is_empty() {
            let from = l.shown_top(rows, width);
            match l.window.find(&l.search, from, true) {
                Some(i) => {
                    l.current_match = Some(i);
                    l.follow = false;
                    l.top = i.saturating_sub(rows / 2);
                }
                None => {
                    let msg = format!("`{}` is not in the loaded part of the log", l.search);
                    ctx.flash(msg, true);
                }
            }
        }
    }

    fn scroll(&mut self, delta: isize, ctx: &mut Ctx<'_>) {
        let (rows, width) = geometry(ctx);
        let Some(l) = &mut self.session else { return };
        let top = l.shown_top(rows, width);
        let bottom = l.bottom_top(rows, width);
        let new = (top as isize + delta).clamp(0, bottom as isize) as usize;
        l.top = new;
        if delta < 0 {
            l.follow = false;
        } else if new >= bottom && l.window.reaches_end() {
            l.follow = true;
        }
        self.fetch_around_viewport(ctx);
    }

    fn jump_to_end(&mut self, bottom: bool, ctx: &mut Ctx<'_>) {
        if bottom {
            self.set_follow(true, ctx);
            return;
        }
        let Some(l) = &mut self.session else { return };
        l.follow = false;
        l.top = 0;
        if !l.window.reaches_start() && !l.read_pending {
            l.read_pending = true;
            ctx.send(read_cmd(l, LogRead::Head, 0, READ_WINDOW));
        }
    }

    fn set_follow(&mut self, follow: bool, ctx: &mut Ctx<'_>) {
        let Some(l) = &mut self.session else { return };
        l.follow = follow;
        if follow && !l.window.reaches_end() && !l.read_pending {
            l.read_pending = true;
            let offset = l.window.size().saturating_sub(READ_WINDOW);
            ctx.send(read_cmd(l, LogRead::Tail, offset, READ_WINDOW));
        }
    }

    /// Reads the window before or after when the viewport nears an edge that is not the log's.
    fn fetch_around_viewport(&mut self, ctx: &mut Ctx<'_>) {
        let (rows, width) = geometry(ctx);
        let Some(l) = &mut self.session else { return };
        if l.read_pending || l.loading {
            return;
        }
        let top = l.shown_top(rows, width);
        if !l.follow && top < rows && !l.window.reaches_start() {
            let start = l.window.start();
            let offset = start.saturating_sub(READ_WINDOW);
            l.read_pending = true;
            ctx.send(read_cmd(l, LogRead::Older, offset, start - offset));
        } else if l.follow && l.window.size() - l.window.next_offset() > READ_WINDOW {
            // Far behind the end while following: jump to the last window.
            l.read_pending = true;
            let offset = l.window.size() - READ_WINDOW;
            ctx.send(read_cmd(l, LogRead::Tail, offset, READ_WINDOW));
        } else if !l.window.reaches_end() && (l.follow || top + 2 * rows >= l.window.len()) {
            l.read_pending = true;
            ctx.send(read_cmd(
                l,
                LogRead::Newer,
                l.window.next_offset(),
                READ_WINDOW,
            ));
        }
    }

    fn next_match(&mut self, forward: bool, ctx: &mut Ctx<'_>) {
        let (rows, width) = geometry(ctx);
        let Some(l) = &mut self.session else { return };
        if l.search.is_empty() {
            return;
        }
        let from = match (l.current_match, forward) {
            (Some(m), true) => m + 1,
            (Some(m), false) => m.checked_sub(1).unwrap_or(l.window.len().saturating_sub(1)),
            (None, _) => l.shown_top(rows, width),
        };
        if let Some(i) = l.window.find(&l.search, from, forward) {
            l.current_match = Some(i);
            l.follow = false;
            l.top = i.saturating_sub(rows / 2);
        }
    }

    fn on_shift(&mut self, shift: Shift) {
        if let Some(l) = &mut self.session {
            l.top = (l.top + shift.added_front).saturating_sub(shift.dropped_front);
            if let Some(m) = l.current_match {
                let m = m + shift.added_front;
                l.current_match = m.checked_sub(shift.dropped_front);
            }
        }
    }

    /// The open log if it is `session`.
    fn session_mut(&mut self, session: u64) -> Option<&mut LogSession> {
        self.session.as_mut().filter(|l| l.session == session)
    }
}

/// Lines shown and columns of the log view at the current size.
fn geometry(ctx: &Ctx<'_>) -> (usize, usize) {
    (
        table_rows(View::Logs, ctx.size).max(1),
        usize::from(ctx.size.0).max(1),
    )
}

fn read_cmd(l: &LogSession, purpose: LogRead, offset: u64, limit: u64) -> Command {
    Command::ReadLog {
        session: l.session,
        target: l.target.clone(),
        purpose,
        offset,
        limit,
    }
}

impl Component for LogsView {
    fn view(&self) -> View {
        View::Logs
    }

    fn handle_key(&mut self, key: Key, ctx: &mut Ctx<'_>) -> Handled {
        let Some(action) = keys::lookup(View::Logs, key).map(|b| b.action) else {
            return Handled::Ignored;
        };
        let page = geometry(ctx).0 as isize;
        match action {
            Action::Up => self.scroll(-1, ctx),
            Action::Down => self.scroll(1, ctx),
            Action::PageUp => self.scroll(-page, ctx),
            Action::PageDown => self.scroll(page, ctx),
            Action::Top => self.jump_to_end(false, ctx),
            Action::Bottom => self.jump_to_end(true, ctx),
            Action::ToggleFollow => {
                if let Some(l) = &self.session {
                    let follow = !l.follow;
                    self.set_follow(follow, ctx);
                }
            }
            Action::ToggleWrap => {
                if let Some(l) = &mut self.session {
                    l.wrap = !l.wrap;
                }
            }
            Action::ToggleTimestamps => {
                if let Some(l) = &mut self.session {
                    l.timestamps = !l.timestamps;
                }
            }
            Action::NextMatch => self.next_match(true, ctx),
            Action::PrevMatch => self.next_match(false, ctx),
            _ => return Handled::Ignored,
        }
        Handled::Consumed
    }

    fn handle_msg(&mut self, msg: Msg, ctx: &mut Ctx<'_>) -> Handled {
        match msg {
            Msg::LogRead {
                session,
                purpose,
                offset,
                bytes,
                size,
            } => {
                let Some(l) = self.session_mut(session) else {
                    return Handled::Ignored;
                };
                l.read_pending = false;
                l.loading = false;
                let shift = match purpose {
                    LogRead::Tail => {
                        l.window.reset(offset, &bytes, size);
                        l.current_match = None;
                        Shift::default()
                    }
                    LogRead::Head => {
                        l.window.reset(offset, &bytes, size);
                        l.top = 0;
                        l.current_match = None;
                        Shift::default()
                    }
                    LogRead::Older => l.window.prepend(offset, &bytes),
                    LogRead::Newer => {
                        l.window.set_size(size);
                        if bytes.is_empty() {
                            // Nothing more to read: the window is the end.
                            return Handled::Consumed;
                        }
                        l.window.append(offset, &bytes, None)
                    }
                };
                self.on_shift(shift);
                self.fetch_around_viewport(ctx);
            }
            Msg::LogAppend {
                session,
                offset,
                bytes,
                arrived,
            } => {
                let Some(l) = self.session_mut(session) else {
                    return Handled::Ignored;
                };
                // Following, the view sticks to the end (computed when drawn).
                let shift = l.window.append(offset, &bytes, Some(arrived));
                let gap = !l.window.reaches_end();
                self.on_shift(shift);
                if gap {
                    self.fetch_around_viewport(ctx);
                }
            }
            Msg::LogEnded { session, summary } => {
                let Some(l) = self.session_mut(session) else {
                    return Handled::Ignored;
                };
                l.ended = Some(summary);
                l.loading = false;
            }
            Msg::LogError { session, error } => {
                let Some(l) = self.session_mut(session) else {
                    return Handled::Ignored;
                };
                l.error = Some(error);
                l.loading = false;
            }
            _ => return Handled::Ignored,
        }
        Handled::Consumed
    }

    /// The search, shown in the title bar like a table's filter.
    fn filter(&self) -> &str {
        self.session.as_ref().map_or("", |l| l.search.as_str())
    }

    fn crumb(&self) -> String {
        format!(
            " logs ‹{}› ",
            self.session.as_ref().map_or("", |l| l.title.as_str())
        )
    }

    fn title(&self, ctx: &DrawCtx<'_>) -> Vec<(String, Style)> {
        let t = ctx.theme;
        let mut parts = Vec::new();
        let Some(l) = &self.session else {
            return parts;
        };
        for (name, on) in [
            ("follow", l.follow),
            ("wrap", l.wrap),
            ("time", l.timestamps),
        ] {
            parts.push((
                format!("{}{name} ", if on { "●" } else { "○" }),
                if on { t.good() } else { t.dim() },
            ));
        }
        // Where the viewport is in the whole log (the window is only a part of it).
        let rows = table_rows(View::Logs, ctx.size);
        let at = l
            .window
            .line(l.shown_top(rows, usize::from(ctx.size.0)))
            .map_or(0, |(offset, _)| offset);
        let size = l.window.size();
        let pct = at.saturating_mul(100).checked_div(size).unwrap_or(100);
        parts.push((format!(" {pct}% of {}", cells::bytes(size)), t.dim()));
        if let Some(end) = &l.ended {
            parts.push((format!("  {end}"), t.bold()));
        }
        if let Some(e) = &l.error {
            parts.push((format!("  {}", cells::one_line(e)), t.error()));
        }
        parts
    }

    fn draw(&self, buf: &mut Buffer, area: Rect, ctx: &DrawCtx<'_>) {
        draw(self, buf, area, ctx)
    }
}

fn draw(v: &LogsView, buf: &mut Buffer, area: Rect, ctx: &DrawCtx<'_>) {
    let t = ctx.theme;
    let Some(l) = &v.session else {
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
