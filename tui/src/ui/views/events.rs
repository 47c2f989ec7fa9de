//! The events view: state changes of runs, jobs, instances and fleets, newest first, live.

use super::{below, col, draw_message, draw_table, Cell, Column};
use crate::ui::app::{App, Load};
use crate::ui::cells;
use flotilla_protocol::model::Event;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;

pub const COLUMNS: [Column; 6] = [
    col("TIME (UTC)", 8, 10, 2),
    col("KIND", 3, 8, 3),
    col("RESOURCE", 8, 32, 0),
    col("CHANGE", 6, 28, 0),
    col("REASON", 6, 32, 1),
    col("MESSAGE", 7, 80, 4),
];

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

pub fn draw(buf: &mut Buffer, area: Rect, app: &App) {
    let t = &app.theme;
    let ev = &app.events;
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
