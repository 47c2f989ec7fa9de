//! The fleets view: each fleet, then its instances with status, resources, blocks busy/total,
//! price and a GPU utilisation sparkline (when the daemon has `metrics.get`).

use super::{col, draw_message, draw_table, Cell, Column};
use crate::ui::app::{App, Conn, Load};
use crate::ui::cells;
use flotilla_protocol::model::Instance;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;

pub const COLUMNS: [Column; 9] = [
    col("NAME", 6, 28, 0),
    col("STATUS", 6, 12, 0),
    col("BACKEND", 5, 10, 5),
    col("RESOURCES", 9, 44, 2),
    col("BLOCKS", 6, 7, 1),
    col("PRICE", 5, 9, 4),
    col("GPU UTIL", 8, 16, 3),
    col("AGE", 3, 5, 6),
    col("ERROR", 5, 60, 7),
];

/// The searchable text of an instance row.
pub fn instance_text(i: &Instance) -> String {
    format!(
        "{} {} {} {}",
        i.name,
        i.status,
        i.backend,
        i.resources.summary()
    )
}

pub fn draw(buf: &mut Buffer, area: Rect, app: &App) {
    let t = &app.theme;
    let f = &app.fleets;
    if f.load != Load::Ready {
        let lines = match (&f.load, &app.conn) {
            (_, Conn::Reconnecting { attempt, .. }) => vec![
                (
                    format!("Cannot reach the daemon at {}", app.socket),
                    t.error(),
                ),
                (format!("Retrying (attempt {attempt})…"), t.dim()),
            ],
            (Load::Failed(e), _) => vec![
                ("Cannot list the fleets".to_string(), t.error()),
                (cells::one_line(e), t.dim()),
            ],
            _ => vec![("Loading fleets…".to_string(), t.dim())],
        };
        draw_message(buf, area, &lines);
        return;
    }
    let page = usize::from(area.height.saturating_sub(1)).max(1);
    let offset = f.cursor.visible_offset(f.rows.len(), page);
    let end = (offset + page).min(f.rows.len());
    let rows: Vec<Vec<Cell>> = f.rows[offset..end]
        .iter()
        .filter_map(|row| {
            let fleet = f.list.get(row.fleet)?;
            let Some(i) = row.instance else {
                let n = fleet.instances.len();
                return Some(vec![
                    Cell::new(cells::one_line(&fleet.name), t.bold()),
                    Cell::new(fleet.status.to_string(), t.status(fleet.status.as_str())),
                    Cell::plain(""),
                    Cell::new(
                        format!("{n} instance{}", if n == 1 { "" } else { "s" }),
                        t.dim(),
                    ),
                    Cell::plain(""),
                    Cell::plain(""),
                    Cell::plain(""),
                    Cell::new(cells::age(fleet.created_at, app.now), t.dim()),
                    Cell::plain(""),
                ]);
            };
            let inst = fleet.instances.get(i)?;
            let key = format!("{}/{}", fleet.name, inst.name);
            let spark = app
                .metrics
                .get(&key)
                .filter(|v| !v.is_empty())
                .map(|v| cells::sparkline(v, 12))
                .unwrap_or_default();
            let mut status = inst.status.to_string();
            if inst.unreachable {
                status.push_str(" (unreachable)");
            }
            Some(vec![
                Cell::plain(format!("  {}", cells::one_line(&inst.name))),
                Cell::new(
                    status,
                    if inst.unreachable {
                        t.error()
                    } else {
                        t.status(inst.status.as_str())
                    },
                ),
                Cell::new(inst.backend.clone(), t.dim()),
                Cell::plain(inst.resources.summary()),
                Cell::plain(format!("{}/{}", inst.busy_blocks, inst.total_blocks)),
                Cell::plain(cells::price(inst.price)),
                Cell::new(spark, t.good()),
                Cell::new(cells::age(inst.created_at, app.now), t.dim()),
                Cell::new(
                    cells::one_line(inst.error.as_deref().unwrap_or("")),
                    t.error(),
                ),
            ])
        })
        .collect();
    if rows.is_empty() {
        draw_table(buf, area, t, &COLUMNS, &[], None);
        let text = if f.list.is_empty() {
            "No fleets".to_string()
        } else {
            format!("Nothing matches /{}", f.filter)
        };
        draw_message(buf, super::below(area, 1), &[(text, t.dim())]);
        return;
    }
    let selected = f.cursor.selected.checked_sub(offset);
    draw_table(buf, area, t, &COLUMNS, &rows, selected);
}
