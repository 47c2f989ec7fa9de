//! The events view: state changes of runs, jobs, instances and fleets, newest first, live.

use super::{below, col, draw_message, draw_table, Cell, Column};
use crate::ui::cells;
use crate::ui::component::{count, Component, Ctx, Cursor, DrawCtx, Handled, Load, Request};
use crate::ui::keys::{Action, Key, View};
use crate::ui::messages::{Command, Msg};
use flotilla_protocol::model::Event;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;
use std::collections::VecDeque;

pub const COLUMNS: [Column; 6] = [
    col("TIME (UTC)", 8, 10, 2),
    col("KIND", 3, 8, 3),
    col("RESOURCE", 8, 32, 0),
    col("CHANGE", 6, 28, 0),
    col("REASON", 6, 32, 1),
    col("MESSAGE", 7, 80, 4),
];

/// The most events kept.
pub const MAX_EVENTS: usize = 1000;

pub struct EventsView {
    /// Oldest first; the view shows the newest first.
    pub list: VecDeque<Event>,
    pub load: Load,
    pub filter: String,
    /// Indices into `list`, newest first.
    pub visible: Vec<usize>,
    pub cursor: Cursor,
}

impl Default for EventsView {
    fn default() -> EventsView {
        EventsView {
            list: VecDeque::new(),
            load: Load::Loading,
            filter: String::new(),
            visible: Vec::new(),
            cursor: Cursor::default(),
        }
    }
}

impl EventsView {
    fn refilter(&mut self, ctx: &mut Ctx<'_>) {
        let filter = self.filter.to_lowercase();
        self.visible = self
            .list
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, e)| filter.is_empty() || row_text(e).to_lowercase().contains(&filter))
            .map(|(i, _)| i)
            .collect();
        let (len, page) = (self.visible.len(), ctx.page(View::Events));
        self.cursor.move_by(0, len, page);
    }
}

impl Component for EventsView {
    fn view(&self) -> View {
        View::Events
    }

    fn handle_key(&mut self, key: Key, ctx: &mut Ctx<'_>) -> Handled {
        let action = match self
            .cursor
            .table_key(View::Events, key, self.visible.len(), ctx)
        {
            Ok(action) => action,
            Err(handled) => return handled,
        };
        match action {
            Action::Refresh => ctx.send(Command::LoadEvents),
            Action::DrillDown => {
                let Some(e) = self
                    .visible
                    .get(self.cursor.selected)
                    .and_then(|i| self.list.get(*i))
                else {
                    return Handled::Consumed;
                };
                let request = match e.kind.as_str() {
                    "run" | "job" => Request::OpenJobs {
                        run: e.resource.split('/').next().unwrap_or_default().to_string(),
                    },
                    _ => Request::Switch(View::Fleets),
                };
                ctx.queue.push(request);
            }
            _ => return Handled::Ignored,
        }
        Handled::Consumed
    }

    fn handle_msg(&mut self, msg: Msg, ctx: &mut Ctx<'_>) -> Handled {
        match msg {
            Msg::Events(Ok(list)) => {
                // Keep live events newer than the list.
                let last = list.last().map(|e| e.seq).unwrap_or(0);
                let newer: Vec<Event> = self.list.drain(..).filter(|e| e.seq > last).collect();
                self.list = list.into_iter().chain(newer).collect();
                while self.list.len() > MAX_EVENTS {
                    self.list.pop_front();
                }
                self.load = Load::Ready;
                self.refilter(ctx);
            }
            Msg::Events(Err(e)) => self.load = Load::Failed(e),
            Msg::Event(e) => {
                self.list.push_back(e);
                if self.list.len() > MAX_EVENTS {
                    self.list.pop_front();
                }
                self.refilter(ctx);
            }
            _ => return Handled::Ignored,
        }
        Handled::Consumed
    }

    fn shown(&mut self, ctx: &mut Ctx<'_>) {
        if self.load != Load::Ready {
            ctx.send(Command::LoadEvents);
        }
    }

    fn filter(&self) -> &str {
        &self.filter
    }

    fn set_filter(&mut self, filter: String, ctx: &mut Ctx<'_>) {
        self.filter = filter;
        self.refilter(ctx);
    }

    fn title(&self, ctx: &DrawCtx<'_>) -> Vec<(String, Style)> {
        vec![(count(self.visible.len(), self.list.len()), ctx.theme.dim())]
    }

    fn draw(&self, buf: &mut Buffer, area: Rect, ctx: &DrawCtx<'_>) {
        draw(self, buf, area, ctx)
    }
}

pub fn change(e: &Event) -> String {
    match (&e.old_status, &e.new_status) {
        (Some(a), Some(b)) => format!("{a} → {b}"),
        (None, Some(b)) => b.clone(),
        (Some(a), None) => format!("{a} → ?"),
        (None, None) => String::new(),
    }
}

pub fn row_text(e: &Event) -> String {
    format!(
        "{} {} {} {} {}",
        e.kind,
        e.resource,
        change(e),
        e.reason.as_deref().unwrap_or(""),
        e.message.as_deref().unwrap_or("")
    )
}

fn draw(ev: &EventsView, buf: &mut Buffer, area: Rect, ctx: &DrawCtx<'_>) {
    let t = ctx.theme;
    if ev.visible.is_empty() {
        let text = match &ev.load {
            Load::Loading => ("Loading events…".to_string(), t.dim()),
            Load::Failed(e) => (cells::one_line(e), t.error()),
            Load::Ready if ev.filter.is_empty() => ("No events yet".to_string(), t.dim()),
            Load::Ready => (format!("No event matches /{}", ev.filter), t.dim()),
        };
        draw_table(buf, area, t, &COLUMNS, &[], None);
        draw_message(buf, below(area, 1), &[text]);
        return;
    }
    let page = usize::from(area.height.saturating_sub(1)).max(1);
    let offset = ev.cursor.visible_offset(ev.visible.len(), page);
    let end = (offset + page).min(ev.visible.len());
    let rows: Vec<Vec<Cell>> = ev.visible[offset..end]
        .iter()
        .filter_map(|i| {
            let e = ev.list.get(*i)?;
            let new = e.new_status.as_deref().unwrap_or("");
            Some(vec![
                Cell::new(cells::clock(e.time), t.dim()),
                Cell::plain(cells::one_line(&e.kind)),
                Cell::plain(cells::one_line(&e.resource)),
                Cell::new(change(e), t.status(new)),
                Cell::plain(cells::one_line(e.reason.as_deref().unwrap_or(""))),
                Cell::new(cells::one_line(e.message.as_deref().unwrap_or("")), t.dim()),
            ])
        })
        .collect();
    let selected = ev.cursor.selected.checked_sub(offset);
    draw_table(buf, area, t, &COLUMNS, &rows, selected);
}
