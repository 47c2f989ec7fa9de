//! The component model of the dashboard (gitui's): each view is a [`Component`] that owns its
//! state, answers "consumed or not" to each key and message, and draws itself from its state.
//! Components never reach into each other or into the app: what they need of the shared data
//! comes in a context ([`Ctx`], [`DrawCtx`]), and what they ask of others leaves as a
//! [`Request`] on the queue that the app carries out after the event.

use crate::ui::keys::{self, Binding, Key, View};
use crate::ui::messages::{Command, Msg};
use crate::ui::store::Store;
use crate::ui::theme::Theme;
use flotilla_protocol::rpc::LogTarget;
use flotilla_protocol::Timestamp;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;

/// The answer of a component to an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    Consumed,
    Ignored,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Conn {
    Connecting,
    Connected,
    Reconnecting { attempt: u32, error: String },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Load {
    Loading,
    Ready,
    Failed(String),
}

/// Selection and scroll position of a table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    pub selected: usize,
    pub offset: usize,
}

impl Cursor {
    /// Moves the selection by `delta` rows and scrolls to keep it in a page of `page` rows.
    pub fn move_by(&mut self, delta: isize, len: usize, page: usize) {
        if len == 0 {
            *self = Cursor::default();
            return;
        }
        let sel = self.selected as isize + delta;
        self.selected = sel.clamp(0, len as isize - 1) as usize;
        self.scroll(len, page);
    }

    pub fn scroll(&mut self, len: usize, page: usize) {
        self.offset = self.visible_offset(len, page);
    }

    /// The first row shown for a page of `page` rows (rendering uses it too).
    pub fn visible_offset(&self, len: usize, page: usize) -> usize {
        let page = page.max(1);
        let selected = self.selected.min(len.saturating_sub(1));
        let mut offset = self.offset.min(len.saturating_sub(page));
        if selected < offset {
            offset = selected;
        } else if selected >= offset + page {
            offset = selected + 1 - page;
        }
        offset
    }

    /// The action `key` is bound to in a table `view` of `len` rows, when the cursor's own moves
    /// (up, down, pages, top, bottom) do not take it: `Err` says how the key was handled.
    pub fn table_key(
        &mut self,
        view: View,
        key: keys::Key,
        len: usize,
        ctx: &Ctx<'_>,
    ) -> Result<keys::Action, Handled> {
        let Some(action) = keys::lookup(view, key).map(|b| b.action) else {
            return Err(Handled::Ignored);
        };
        if self.apply(action, len, ctx.page(view)) {
            return Err(Handled::Consumed);
        }
        Ok(action)
    }

    /// The table-wide moves of the key table (up, down, pages, top, bottom); `false` for
    /// any other action.
    pub fn apply(&mut self, action: keys::Action, len: usize, page: usize) -> bool {
        use keys::Action;
        match action {
            Action::Up => self.move_by(-1, len, page),
            Action::Down => self.move_by(1, len, page),
            Action::PageUp => self.move_by(-(page as isize), len, page),
            Action::PageDown => self.move_by(page as isize, len, page),
            Action::Top | Action::Bottom => {
                self.selected = if action == Action::Bottom {
                    len.saturating_sub(1)
                } else {
                    0
                };
                self.scroll(len, page);
            }
            _ => return false,
        }
        true
    }
}

/// A question asked before something is done (stop, delete, apply).
#[derive(Debug, Clone, PartialEq)]
pub struct Dialog {
    pub title: String,
    pub lines: Vec<String>,
    pub question: String,
    pub on_confirm: Command,
    pub dangerous: bool,
}

/// What a component asks of the app or of another component; carried out in order after the
/// event that raised it.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// For the daemon (or the terminal).
    Daemon(Command),
    /// A message on the bottom line.
    Flash { text: String, error: bool },
    /// Ask first, then send the dialog's command.
    Confirm(Box<Dialog>),
    /// Open the jobs view of a run (loading the run if it is not known).
    OpenJobs { run: String },
    /// Open the log view on a job's log.
    OpenLogs { target: LogTarget, title: String },
    /// Open a shell in a job (same address as its log).
    Shell(LogTarget),
    /// A fresh navigation stack with this view.
    Switch(View),
    /// Load the list of runs again.
    ReloadRuns,
    /// The fleets came for the first time: their sparklines can be asked for.
    FleetsLoaded,
}

/// What a component may use and change while it handles an event.
pub struct Ctx<'a> {
    /// The clock of this event.
    pub now: Timestamp,
    /// Terminal size (columns, rows).
    pub size: (u16, u16),
    /// The daemon's data shared by several views (runs, fleets, metrics).
    pub store: &'a mut Store,
    pub queue: &'a mut Vec<Request>,
}

impl Ctx<'_> {
    /// Rows of data a table of `view` shows at the current size.
    pub fn page(&self, view: View) -> usize {
        crate::ui::layout::table_rows(view, self.size).max(1)
    }

    pub fn send(&mut self, command: Command) {
        self.queue.push(Request::Daemon(command));
    }

    pub fn flash(&mut self, text: impl Into<String>, error: bool) {
        self.queue.push(Request::Flash {
            text: text.into(),
            error,
        });
    }
}

/// What a component may read while it draws.
pub struct DrawCtx<'a> {
    pub theme: &'a Theme,
    /// The clock of this frame.
    pub now: Timestamp,
    pub size: (u16, u16),
    pub socket: &'a str,
    pub conn: &'a Conn,
    pub store: &'a Store,
}

/// A view of the dashboard.
pub trait Component {
    /// Which view this is (its scope in the key table).
    fn view(&self) -> View;

    /// Its bindings, from the key table (the hint bar and the help screen use the same table).
    fn keys(&self) -> Vec<&'static Binding> {
        let view = self.view();
        keys::BINDINGS
            .iter()
            .filter(|b| b.scope.contains(view))
            .collect()
    }

    /// A key for this view; `Ignored` leaves it to the app (quit, help, prompts, back).
    fn handle_key(&mut self, key: Key, ctx: &mut Ctx<'_>) -> Handled;

    /// A message from the daemon side; `Ignored` when it is not for this view.
    fn handle_msg(&mut self, _msg: Msg, _ctx: &mut Ctx<'_>) -> Handled {
        Handled::Ignored
    }

    /// The view was just opened.
    fn shown(&mut self, _ctx: &mut Ctx<'_>) {}

    /// The filter of a table (`/`); empty when none.
    fn filter(&self) -> &str {
        ""
    }

    /// Sets the filter of a table while it is typed.
    fn set_filter(&mut self, _filter: String, _ctx: &mut Ctx<'_>) {}

    /// Its label in the breadcrumbs of the title bar.
    fn crumb(&self) -> String {
        format!(" {} ", self.view().name())
    }

    /// What the title bar says about it after the breadcrumbs.
    fn title(&self, ctx: &DrawCtx<'_>) -> Vec<(String, Style)>;

    /// Its own hint line, when it replaces the key table's (editing a query).
    fn hint_line(&self, _ctx: &DrawCtx<'_>) -> Option<Vec<(String, Style)>> {
        None
    }

    /// Draws it into `area` of `buf`: a pure function of its state and `ctx`.
    fn draw(&self, buf: &mut Buffer, area: Rect, ctx: &DrawCtx<'_>);
}

/// `shown` rows, or `shown of total`.
pub fn count(shown: usize, total: usize) -> String {
    if shown == total {
        total.to_string()
    } else {
        format!("{shown} of {total}")
    }
}
