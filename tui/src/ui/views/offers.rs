//! The offers view: an editable query line (GPU, max price, spot) sent as `offer.list`, and the
//! offers it finds, cheapest first.

use super::{below, col, draw_message, draw_table, truncate, Cell, Column};
use crate::ui::app::{App, Load};
use crate::ui::cells;
use flotilla_protocol::model::Offer;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;

pub const COLUMNS: [Column; 8] = [
    col("#", 2, 4, 5),
    col("BACKEND", 5, 12, 0),
    col("REGION", 6, 16, 4),
    col("INSTANCE TYPE", 8, 24, 3),
    col("RESOURCES", 9, 48, 1),
    col("SPOT", 4, 4, 6),
    col("PRICE", 5, 9, 0),
    col("AVAILABILITY", 5, 13, 2),
];

/// Lines above the table: the query.
pub const QUERY_ROWS: u16 = 1;

pub fn row_text(o: &Offer) -> String {
    format!(
        "{} {} {} {}",
        o.backend,
        o.region,
        o.instance_type,
        crate::table::resources(&o.resources)
    )
}

pub fn draw(buf: &mut Buffer, area: Rect, app: &App) {
    let t = &app.theme;
    let o = &app.offers;
    // The query line: `GPU [A100:1]  max $/h [3]  spot [any]`, the edited field reversed.
    let fields = [
        (
            "gpu ",
            if o.query.gpu.is_empty() {
                "any"
            } else {
                o.query.gpu.as_str()
            },
        ),
        (
            "  max $/h ",
            if o.query.max_price.is_empty() {
                "any"
            } else {
                o.query.max_price.as_str()
            },
        ),
        ("  spot ", o.query.spot.label()),
    ];
    let mut x = area.x;
    let right = area.x + area.width;
    for (i, (label, value)) in fields.iter().enumerate() {
        for (text, style) in [
            (label.to_string(), t.dim()),
            (
                format!("[{value}]"),
                if o.editing == Some(i) {
                    t.selected()
                } else {
                    t.bold()
                },
            ),
        ] {
            let room = right.saturating_sub(x);
            if room == 0 {
                break;
            }
            let text = truncate(&text, room.into());
            buf.set_stringn(x, area.y, &text, room.into(), style);
            x += cells::width(&text) as u16;
        }
    }
    if o.editing.is_none() && x + 16 < right {
        buf.set_stringn(
            x + 2,
            area.y,
            "e: edit query",
            (right - x - 2).into(),
            t.dim(),
        );
    }
    let table = below(area, QUERY_ROWS);
    let Some(list) = &o.list else {
        let text = match &o.load {
            Load::Failed(e) => (cells::one_line(e), t.error()),
            _ => ("Loading offers…".to_string(), t.dim()),
        };
        draw_message(buf, table, &[text]);
        return;
    };
    if let Load::Failed(e) = &o.load {
        draw_message(buf, table, &[(cells::one_line(e), t.error())]);
        return;
    }
    let page = usize::from(table.height.saturating_sub(1)).max(1);
    let offset = o.cursor.visible_offset(o.visible.len(), page);
    let end = (offset + page).min(o.visible.len());
    let rows: Vec<Vec<Cell>> = o.visible[offset..end]
        .iter()
        .filter_map(|i| {
            let offer = list.offers.get(*i)?;
            Some(vec![
                Cell::new((i + 1).to_string(), t.dim()),
                Cell::plain(cells::one_line(&offer.backend)),
                Cell::plain(cells::one_line(&offer.region)),
                Cell::plain(cells::one_line(&offer.instance_type)),
                Cell::plain(crate::table::resources(&offer.resources)),
                Cell::plain(if offer.spot { "yes" } else { "no" }),
                Cell::plain(cells::price(offer.price)),
                Cell::new(
                    offer.availability.to_string(),
                    t.status(offer.availability.as_str()),
                ),
            ])
        })
        .collect();
    if rows.is_empty() {
        draw_table(buf, table, t, &COLUMNS, &[], None);
        draw_message(
            buf,
            below(table, 1),
            &[("No offers match the query".to_string(), t.dim())],
        );
        return;
    }
    let selected = o.cursor.selected.checked_sub(offset);
    draw_table(buf, table, t, &COLUMNS, &rows, selected);
}
