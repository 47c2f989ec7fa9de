//! The offers view: an editable query line (GPU, max price, spot) sent as `offer.list`, and the
//! offers it finds, cheapest first. While the query is edited, the view takes every key.

use super::{below, col, draw_message, draw_table, truncate, Cell, Column};
use crate::ui::cells;
use crate::ui::component::{Component, Ctx, Cursor, DrawCtx, Handled, Load};
use crate::ui::keys::{Action, Key, View};
use crate::ui::messages::{Command, Msg};
use flotilla_protocol::model::Offer;
use flotilla_protocol::rpc::{OfferList, OfferQuery};
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::KeyCode;
use ratatui::layout::Rect;
use ratatui::style::Style;

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
use crate::ui::layout::QUERY_ROWS;

pub struct OffersView {
    pub query: OfferQueryForm,
    pub list: Option<OfferList>,
    pub load: Load,
    pub filter: String,
    pub visible: Vec<usize>,
    pub cursor: Cursor,
    /// The query field being edited (0 gpu, 1 max price, 2 spot); `None` when not editing.
    pub editing: Option<usize>,
}

impl Default for OffersView {
    fn default() -> OffersView {
        OffersView {
            query: OfferQueryForm::default(),
            list: None,
            load: Load::Loading,
            filter: String::new(),
            visible: Vec::new(),
            cursor: Cursor::default(),
            editing: None,
        }
    }
}

impl OffersView {
    /// Sends the query (a message instead when the form does not parse).
    pub fn load(&mut self, ctx: &mut Ctx<'_>) {
        match self.query.to_query() {
            Ok(q) => {
                self.load = Load::Loading;
                ctx.send(Command::LoadOffers(q));
            }
            Err(e) => ctx.flash(e, true),
        }
    }

    /// A key while the query is edited: every key is the form's.
    fn query_key(&mut self, field: usize, key: Key, ctx: &mut Ctx<'_>) {
        match key.code {
            KeyCode::Esc => self.editing = None,
            KeyCode::Tab => self.editing = Some((field + 1) % 3),
            KeyCode::BackTab => self.editing = Some((field + 2) % 3),
            KeyCode::Enter => {
                self.editing = None;
                self.load(ctx);
            }
            KeyCode::Backspace => {
                if let Some(s) = self.query.field_mut(field) {
                    s.pop();
                }
            }
            KeyCode::Char(c) => match self.query.field_mut(field) {
                Some(s) => s.push(c),
                None => self.query.spot = self.query.spot.next(),
            },
            _ => {}
        }
    }

    fn refilter(&mut self, ctx: &mut Ctx<'_>) {
        let filter = self.filter.to_lowercase();
        self.visible = match &self.list {
            Some(l) => l
                .offers
                .iter()
                .enumerate()
                .filter(|(_, o)| filter.is_empty() || row_text(o).to_lowercase().contains(&filter))
                .map(|(i, _)| i)
                .collect(),
            None => Vec::new(),
        };
        let (len, page) = (self.visible.len(), ctx.page(View::Offers));
        self.cursor.move_by(0, len, page);
    }
}

impl Component for OffersView {
    fn view(&self) -> View {
        View::Offers
    }

    fn handle_key(&mut self, key: Key, ctx: &mut Ctx<'_>) -> Handled {
        if let Some(field) = self.editing {
            self.query_key(field, key, ctx);
            return Handled::Consumed;
        }
        let action = match self
            .cursor
            .table_key(View::Offers, key, self.visible.len(), ctx)
        {
            Ok(action) => action,
            Err(handled) => return handled,
        };
        match action {
            Action::EditQuery => self.editing = Some(0),
            Action::Refresh => self.load(ctx),
            _ => return Handled::Ignored,
        }
        Handled::Consumed
    }

    fn handle_msg(&mut self, msg: Msg, ctx: &mut Ctx<'_>) -> Handled {
        let Msg::Offers(result) = msg else {
            return Handled::Ignored;
        };
        match result {
            Ok(list) => {
                for w in &list.warnings {
                    ctx.flash(format!("offers: {w}"), false);
                }
                self.list = Some(list);
                self.load = Load::Ready;
                self.refilter(ctx);
            }
            Err(e) => self.load = Load::Failed(e),
        }
        Handled::Consumed
    }

    fn shown(&mut self, ctx: &mut Ctx<'_>) {
        if self.list.is_none() {
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
        match &self.list {
            Some(l) => vec![(
                format!("{} of {} offers", l.offers.len(), l.total),
                ctx.theme.dim(),
            )],
            None => Vec::new(),
        }
    }

    fn hint_line(&self, ctx: &DrawCtx<'_>) -> Option<Vec<(String, Style)>> {
        let t = ctx.theme;
        self.editing.map(|_| {
            vec![
                (" tab".to_string(), t.accent()),
                (" next field  ".to_string(), t.normal()),
                ("enter".to_string(), t.accent()),
                (" search  ".to_string(), t.normal()),
                ("esc".to_string(), t.accent()),
                (" done  ".to_string(), t.normal()),
                ("(spot: any key cycles)".to_string(), t.dim()),
            ]
        })
    }

    fn draw(&self, buf: &mut Buffer, area: Rect, ctx: &DrawCtx<'_>) {
        draw(self, buf, area, ctx)
    }
}

/// The editable query line of the offers view.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OfferQueryForm {
    pub gpu: String,
    pub max_price: String,
    /// `auto` (both), `spot` or `on-demand`.
    pub spot: SpotChoice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SpotChoice {
    #[default]
    Any,
    Spot,
    OnDemand,
}

impl SpotChoice {
    pub fn label(self) -> &'static str {
        match self {
            SpotChoice::Any => "any",
            SpotChoice::Spot => "spot",
            SpotChoice::OnDemand => "on-demand",
        }
    }
    pub fn next(self) -> SpotChoice {
        match self {
            SpotChoice::Any => SpotChoice::Spot,
            SpotChoice::Spot => SpotChoice::OnDemand,
            SpotChoice::OnDemand => SpotChoice::Any,
        }
    }
}

impl OfferQueryForm {
    pub fn to_query(&self) -> Result<OfferQuery, String> {
        let max_price = match self.max_price.trim().trim_start_matches('$') {
            "" => None,
            p => Some(
                p.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .ok_or_else(|| format!("max price `{p}` is not a number of $/h, e.g. 2.5"))?,
            ),
        };
        Ok(OfferQuery {
            gpu: Some(self.gpu.trim().to_string()).filter(|g| !g.is_empty()),
            spot_policy: match self.spot {
                SpotChoice::Any => None,
                SpotChoice::Spot => Some("spot".into()),
                SpotChoice::OnDemand => Some("on-demand".into()),
            },
            max_price,
            max_offers: Some(200),
            ..OfferQuery::default()
        })
    }

    pub fn field_mut(&mut self, i: usize) -> Option<&mut String> {
        match i {
            0 => Some(&mut self.gpu),
            1 => Some(&mut self.max_price),
            _ => None,
        }
    }
}

pub fn row_text(o: &Offer) -> String {
    format!(
        "{} {} {} {}",
        o.backend,
        o.region,
        o.instance_type,
        crate::table::resources(&o.resources)
    )
}

fn draw(o: &OffersView, buf: &mut Buffer, area: Rect, ctx: &DrawCtx<'_>) {
    let t = ctx.theme;
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
