//! The fleets view: each fleet, then its instances with status, resources, blocks busy/total,
//! price and a GPU utilisation sparkline (when the daemon has `metrics.get`). The component
//! keeps the fleets in the shared store up to date.

use super::{col, draw_message, draw_table, Cell, Column};
use crate::ui::cells;
use crate::ui::component::{Component, Conn, Ctx, Cursor, DrawCtx, Handled, Load, Request};
use crate::ui::keys::{Action, Key, View};
use crate::ui::messages::{Command, Msg};
use flotilla_protocol::model::Instance;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;

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

/// A row of the fleets view: a fleet, or one of its instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetRow {
    pub fleet: usize,
    pub instance: Option<usize>,
}

/// The fleets view and the loading of fleets (the list lives in the store).
pub struct FleetsView {
    pub load: Load,
    pub filter: String,
    pub rows: Vec<FleetRow>,
    pub cursor: Cursor,
    /// Running price of live instances, $/h.
    pub burn: f64,
    in_flight: bool,
    stale: bool,
}

impl Default for FleetsView {
    fn default() -> FleetsView {
        FleetsView {
            load: Load::Loading,
            filter: String::new(),
            rows: Vec::new(),
            cursor: Cursor::default(),
            burn: 0.0,
            in_flight: false,
            stale: false,
        }
    }
}

impl FleetsView {
    /// Loads the fleets (again when an answer is awaited: once more after it).
    pub fn load(&mut self, ctx: &mut Ctx<'_>) {
        if self.in_flight {
            self.stale = true;
        } else {
            self.in_flight = true;
            ctx.send(Command::LoadFleets);
        }
    }

    /// A new connection: nothing is in flight any more; load again.
    pub fn reconnected(&mut self, ctx: &mut Ctx<'_>) {
        self.in_flight = false;
        self.load(ctx);
    }

    fn refilter(&mut self, ctx: &mut Ctx<'_>) {
        let filter = self.filter.to_lowercase();
        let mut rows = Vec::new();
        let mut burn = 0.0;
        for (f, fleet) in ctx.store.fleets.iter().enumerate() {
            let fleet_hit = filter.is_empty() || fleet.name.to_lowercase().contains(&filter);
            let mut inst_rows = Vec::new();
            for (i, inst) in fleet.instances.iter().enumerate() {
                use flotilla_protocol::model::InstanceStatus as S;
                if matches!(inst.status, S::Provisioning | S::Idle | S::Busy) {
                    burn += inst.price;
                }
                if fleet_hit || instance_text(inst).to_lowercase().contains(&filter) {
                    inst_rows.push(FleetRow {
                        fleet: f,
                        instance: Some(i),
                    });
                }
            }
            if fleet_hit || !inst_rows.is_empty() {
                rows.push(FleetRow {
                    fleet: f,
                    instance: None,
                });
                rows.extend(inst_rows);
            }
        }
        self.rows = rows;
        self.burn = burn;
        let (len, page) = (self.rows.len(), ctx.page(View::Fleets));
        self.cursor.move_by(0, len, page);
    }
}

impl Component for FleetsView {
    fn view(&self) -> View {
        View::Fleets
    }

    fn handle_key(&mut self, key: Key, ctx: &mut Ctx<'_>) -> Handled {
        let action = match self
            .cursor
            .table_key(View::Fleets, key, self.rows.len(), ctx)
        {
            Ok(action) => action,
            Err(handled) => return handled,
        };
        match action {
            Action::Refresh => self.load(ctx),
            _ => return Handled::Ignored,
        }
        Handled::Consumed
    }

    fn handle_msg(&mut self, msg: Msg, ctx: &mut Ctx<'_>) -> Handled {
        match msg {
            Msg::Fleets(result) => {
                self.in_flight = false;
                match result {
                    Ok(list) => {
                        if self.load != Load::Ready {
                            ctx.queue.push(Request::FleetsLoaded);
                        }
                        ctx.store.fleets = list;
                        self.load = Load::Ready;
                        self.refilter(ctx);
                    }
                    Err(e) => self.load = Load::Failed(e),
                }
                if std::mem::take(&mut self.stale) {
                    self.load(ctx);
                }
            }
            // Blocks were taken or released, or an instance or fleet changed.
            Msg::Event(e) if matches!(e.kind.as_str(), "job" | "instance" | "fleet") => {
                self.load(ctx)
            }
            _ => return Handled::Ignored,
        }
        Handled::Consumed
    }

    fn shown(&mut self, ctx: &mut Ctx<'_>) {
        if self.load != Load::Ready {
            self.load(ctx);
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
        let fleets = &ctx.store.fleets;
        let n: usize = fleets.iter().map(|f| f.instances.len()).sum();
        vec![(
            format!("{} fleets · {n} instances", fleets.len()),
            ctx.theme.dim(),
        )]
    }

    fn draw(&self, buf: &mut Buffer, area: Rect, ctx: &DrawCtx<'_>) {
        draw(self, buf, area, ctx)
    }
}

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

fn draw(f: &FleetsView, buf: &mut Buffer, area: Rect, ctx: &DrawCtx<'_>) {
    let t = ctx.theme;
    let list = &ctx.store.fleets;
    if f.load != Load::Ready {
        let lines = match (&f.load, ctx.conn) {
            (_, Conn::Reconnecting { attempt, .. }) => vec![
                (
                    format!("Cannot reach the daemon at {}", ctx.socket),
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
            let fleet = list.get(row.fleet)?;
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
                    Cell::new(cells::age(fleet.created_at, ctx.now), t.dim()),
                    Cell::plain(""),
                ]);
            };
            let inst = fleet.instances.get(i)?;
            let key = format!("{}/{}", fleet.name, inst.name);
            let spark = ctx
                .store
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
                Cell::new(cells::age(inst.created_at, ctx.now), t.dim()),
                Cell::new(
                    cells::one_line(inst.error.as_deref().unwrap_or("")),
                    t.error(),
                ),
            ])
        })
        .collect();
    if rows.is_empty() {
        draw_table(buf, area, t, &COLUMNS, &[], None);
        let text = if list.is_empty() {
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
