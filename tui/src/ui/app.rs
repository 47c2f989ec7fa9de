//! The dashboard's state and how it changes: keys and daemon messages come in, each answered
//! "consumed or not"; requests for the daemon leave as [`Command`]s on a queue that an async
//! task carries out. Nothing here does I/O, so every transition is testable without a terminal.

use crate::ui::cells;
use crate::ui::keys::{self, Action, Key, View};
use crate::ui::log_window::{LogWindow, Shift, READ_WINDOW};
use crate::ui::prompt::{command_match, Prompt, PromptKind};
use crate::ui::shell::{self, ShellSpec};
use crate::ui::theme::Theme;
use crate::ui::views;
use flotilla_protocol::model::{Event, Fleet, Job, JobSubmission, Run, RunStatus};
use flotilla_protocol::rpc::{
    HelloResult, LogTarget, MetricsParams, MetricsResult, OfferList, OfferQuery, RunApplyParams,
    RunPlan,
};
use flotilla_protocol::Timestamp;
use ratatui::crossterm::event::KeyCode;
use std::collections::{HashMap, HashSet, VecDeque};

/// What the dashboard asks of the daemon (or of the terminal, for `Shell` and `Quit`).
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    LoadRuns {
        all: bool,
    },
    LoadRun {
        name: String,
    },
    LoadFleets,
    LoadEvents,
    LoadOffers(OfferQuery),
    Metrics {
        key: String,
        params: MetricsParams,
    },
    /// Read and check the file, then `run.plan`.
    Plan {
        path: String,
    },
    Apply(RunApplyParams),
    Stop {
        name: String,
        abort: bool,
    },
    Delete {
        name: String,
    },
    /// History (the last window) then live bytes, on a connection of its own.
    OpenLog {
        session: u64,
        target: LogTarget,
    },
    ReadLog {
        session: u64,
        target: LogTarget,
        purpose: LogRead,
        offset: u64,
        limit: u64,
    },
    CloseLog {
        session: u64,
    },
    /// Hand the terminal to a shell, then take it back.
    Shell(ShellSpec),
    Quit,
}

/// Why a window of a log was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogRead {
    /// The last window (opening, `G`): replaces the window.
    Tail,
    /// The first window (`g`): replaces the window.
    Head,
    /// The window before the current one (scrolling up).
    Older,
    /// The bytes after the current window (scrolling down, or a gap while following).
    Newer,
}

/// What the daemon side reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Msg {
    Connected(HelloResult),
    Disconnected {
        attempt: u32,
        error: String,
    },
    Runs(Result<Vec<Run>, String>),
    /// `Ok(None)`: the run is gone.
    Run {
        name: String,
        result: Result<Option<Run>, String>,
    },
    Fleets(Result<Vec<Fleet>, String>),
    Events(Result<Vec<Event>, String>),
    Event(Event),
    Offers(Result<OfferList, String>),
    Metrics {
        key: String,
        result: Result<MetricsResult, String>,
    },
    /// The daemon has no `metrics.get`: no sparklines, no errors.
    MetricsUnsupported,
    Plan {
        path: String,
        params: RunApplyParams,
        plan: RunPlan,
    },
    Applied(Run),
    Deleted(String),
    LogRead {
        session: u64,
        purpose: LogRead,
        offset: u64,
        bytes: Vec<u8>,
        size: u64,
    },
    /// Live bytes, batched.
    LogAppend {
        session: u64,
        offset: u64,
        bytes: Vec<u8>,
        arrived: Timestamp,
    },
    LogEnded {
        session: u64,
        summary: String,
    },
    LogError {
        session: u64,
        error: String,
    },
    Info(String),
    Error(String),
}

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
}

/// A run's changed cells and until when they stay highlighted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    pub columns: u16,
    pub until: Timestamp,
}

pub struct RunsState {
    pub list: Vec<Run>,
    pub load: Load,
    pub all: bool,
    pub filter: String,
    /// Indices into `list` of the rows shown, in order.
    pub visible: Vec<usize>,
    pub cursor: Cursor,
    pub changes: HashMap<String, Change>,
    /// Runs by status, for the header.
    pub counts: Vec<(RunStatus, usize)>,
    in_flight: HashSet<String>,
    stale: HashSet<String>,
    list_in_flight: bool,
}

/// A row of the jobs view: a job's current submission, or an earlier one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobRow {
    pub job: usize,
    /// Index into `previous_submissions`; `None` for the current submission.
    pub previous: Option<usize>,
}

pub struct JobsState {
    pub run: String,
    pub filter: String,
    pub cursor: Cursor,
}

/// A row of the fleets view: a fleet, or one of its instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetRow {
    pub fleet: usize,
    pub instance: Option<usize>,
}

pub struct FleetsState {
    pub list: Vec<Fleet>,
    pub load: Load,
    pub filter: String,
    pub rows: Vec<FleetRow>,
    pub cursor: Cursor,
    /// Running price of live instances, $/h.
    pub burn: f64,
    in_flight: bool,
    stale: bool,
}

pub struct OffersState {
    pub query: OfferQueryForm,
    pub list: Option<OfferList>,
    pub load: Load,
    pub filter: String,
    pub visible: Vec<usize>,
    pub cursor: Cursor,
    /// The query field being edited (0 gpu, 1 max price, 2 spot); `None` when not editing.
    pub editing: Option<usize>,
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
    fn next(self) -> SpotChoice {
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

pub struct EventsState {
    /// Oldest first; the view shows the newest first.
    pub list: VecDeque<Event>,
    pub load: Load,
    pub filter: String,
    /// Indices into `list`, newest first.
    pub visible: Vec<usize>,
    pub cursor: Cursor,
}

pub const MAX_EVENTS: usize = 1000;
pub const MAX_LOG_LINES: usize = 50_000;

pub struct LogsState {
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

impl LogsState {
    fn new(session: u64, target: LogTarget, title: String) -> LogsState {
        LogsState {
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

#[derive(Debug, Clone, PartialEq)]
pub struct Dialog {
    pub title: String,
    pub lines: Vec<String>,
    pub question: String,
    pub on_confirm: Command,
    pub dangerous: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Overlay {
    Help { scroll: usize },
    Dialog(Box<Dialog>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Flash {
    pub text: String,
    pub error: bool,
    pub until: Timestamp,
}

pub struct App {
    /// The clock of this frame; set by the loop (fixed in tests).
    pub now: Timestamp,
    pub theme: Theme,
    pub socket: String,
    pub version: &'static str,
    pub conn: Conn,
    pub hello: Option<HelloResult>,
    /// Views opened one from another; the last one is shown.
    pub stack: Vec<View>,
    pub runs: RunsState,
    pub jobs: JobsState,
    pub fleets: FleetsState,
    pub offers: OffersState,
    pub events: EventsState,
    pub logs: Option<LogsState>,
    pub overlay: Option<Overlay>,
    pub prompt: Option<Prompt>,
    pub flash: Option<Flash>,
    /// GPU utilisation by instance (`fleet/instance`) or run (`run:NAME`), oldest first.
    pub metrics: HashMap<String, Vec<f64>>,
    pub metrics_supported: bool,
    metrics_due: Option<Timestamp>,
    metrics_in_flight: HashSet<String>,
    /// Terminal size (columns, rows).
    pub size: (u16, u16),
    pub shell: Option<String>,
    /// How `s` reaches jobs on SSH hosts (`flotilla ssh`); `None` in tests.
    pub ssh_via: Option<shell::SshVia>,
    /// Something changed since the last frame.
    pub dirty: bool,
    commands: Vec<Command>,
    log_sessions: u64,
}

const FLASH_MS: u64 = 5000;
const CHANGE_MS: u64 = 2000;
const METRICS_EVERY_MS: u64 = 15_000;

impl App {
    pub fn new(socket: String, theme: Theme, now: Timestamp) -> App {
        App {
            now,
            theme,
            socket,
            version: flotilla_protocol::VERSION,
            conn: Conn::Connecting,
            hello: None,
            stack: vec![View::Runs],
            runs: RunsState {
                list: Vec::new(),
                load: Load::Loading,
                // A dashboard shows history too; ctrl-a narrows to the daemon's default list.
                all: true,
                filter: String::new(),
                visible: Vec::new(),
                cursor: Cursor::default(),
                changes: HashMap::new(),
                counts: Vec::new(),
                in_flight: HashSet::new(),
                stale: HashSet::new(),
                list_in_flight: false,
            },
            jobs: JobsState {
                run: String::new(),
                filter: String::new(),
                cursor: Cursor::default(),
            },
            fleets: FleetsState {
                list: Vec::new(),
                load: Load::Loading,
                filter: String::new(),
                rows: Vec::new(),
                cursor: Cursor::default(),
                burn: 0.0,
                in_flight: false,
                stale: false,
            },
            offers: OffersState {
                query: OfferQueryForm::default(),
                list: None,
                load: Load::Loading,
                filter: String::new(),
                visible: Vec::new(),
                cursor: Cursor::default(),
                editing: None,
            },
            events: EventsState {
                list: VecDeque::new(),
                load: Load::Loading,
                filter: String::new(),
                visible: Vec::new(),
                cursor: Cursor::default(),
            },
            logs: None,
            overlay: None,
            prompt: None,
            flash: None,
            metrics: HashMap::new(),
            metrics_supported: true,
            metrics_due: None,
            metrics_in_flight: HashSet::new(),
            size: (80, 24),
            shell: None,
            ssh_via: None,
            dirty: true,
            commands: Vec::new(),
            log_sessions: 0,
        }
    }

    /// The requests queued since the last call.
    pub fn take_commands(&mut self) -> Vec<Command> {
        std::mem::take(&mut self.commands)
    }

    fn push(&mut self, c: Command) {
        self.commands.push(c);
    }

    pub fn view(&self) -> View {
        self.stack.last().copied().unwrap_or(View::Runs)
    }

    pub fn set_size(&mut self, cols: u16, rows: u16) {
        if self.size != (cols, rows) {
            self.size = (cols, rows);
            self.dirty = true;
        }
    }

    /// Rows of data a table of `view` shows at the current size.
    pub fn page(&self, view: View) -> usize {
        crate::ui::render::table_rows(view, self.size).max(1)
    }

    pub fn flash(&mut self, text: impl Into<String>, error: bool) {
        self.flash = Some(Flash {
            text: cells::one_line(&text.into()),
            error,
            until: Timestamp(self.now.0 + if error { 2 * FLASH_MS } else { FLASH_MS }),
        });
        self.dirty = true;
    }

    // ---------------------------------------------------------------- time

    /// The next moment something on screen changes by itself (a highlight or a message ends,
    /// ages tick, metrics are due); `None` when nothing will until an event comes.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        let mut next: Option<Timestamp> = None;
        let mut at = |t: Timestamp| next = Some(next.map_or(t, |n: Timestamp| n.min(t)));
        if let Some(f) = &self.flash {
            at(f.until);
        }
        for c in self.runs.changes.values() {
            at(c.until);
        }
        if let Some(t) = self.metrics_due {
            if self.metrics_supported && matches!(self.view(), View::Fleets | View::Jobs) {
                at(t);
            }
        }
        if matches!(self.view(), View::Runs | View::Jobs | View::Fleets) && self.overlay.is_none() {
            // Ages: every second while a young row is shown, else every 30 s.
            let young = self
                .runs
                .list
                .iter()
                .take(64)
                .any(|r| r.submitted_at.secs_until(self.now) < 120);
            at(Timestamp(self.now.0 + if young { 1000 } else { 30_000 }));
        }
        next
    }

    /// The clock moved: expire highlights and messages, ask for due metrics.
    pub fn tick(&mut self, now: Timestamp) {
        self.now = now;
        if self.flash.as_ref().is_some_and(|f| f.until <= now) {
            self.flash = None;
        }
        self.runs.changes.retain(|_, c| c.until > now);
        if self.metrics_due.is_some_and(|t| t <= now) {
            self.metrics_due = None;
            self.request_metrics();
        }
        self.dirty = true;
    }

    // ---------------------------------------------------------------- keys

    pub fn handle_key(&mut self, key: Key) -> Handled {
        self.dirty = true;
        if key == Key::ctrl('c') {
            self.push(Command::Quit);
            return Handled::Consumed;
        }
        if self.overlay.is_some() {
            return self.overlay_key(key);
        }
        if self.prompt.is_some() {
            return self.prompt_key(key);
        }
        if self.view() == View::Offers && self.offers.editing.is_some() {
            return self.query_key(key);
        }
        match keys::lookup(self.view(), key) {
            Some(b) => {
                self.act(b.action);
                Handled::Consumed
            }
            None => Handled::Ignored,
        }
    }

    fn overlay_key(&mut self, key: Key) -> Handled {
        match self.overlay.take() {
            Some(Overlay::Dialog(d)) => match key.code {
                KeyCode::Char('y') | KeyCode::Char('Y') | KeyCode::Enter => {
                    self.push(d.on_confirm);
                }
                KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc | KeyCode::Char('q') => {}
                _ => self.overlay = Some(Overlay::Dialog(d)),
            },
            Some(Overlay::Help { scroll }) => {
                if matches!(
                    key.code,
                    KeyCode::Esc | KeyCode::Char('?') | KeyCode::Char('q')
                ) {
                    return Handled::Consumed;
                }
                let last = keys::help_entries().len().saturating_sub(1);
                let scroll = match keys::lookup(View::Runs, key).map(|b| b.action) {
                    Some(Action::Down) => (scroll + 1).min(last),
                    Some(Action::Up) => scroll.saturating_sub(1),
                    Some(Action::PageDown) => (scroll + 10).min(last),
                    Some(Action::PageUp) => scroll.saturating_sub(10),
                    Some(Action::Top) => 0,
                    Some(Action::Bottom) => last,
                    _ => scroll,
                };
                self.overlay = Some(Overlay::Help { scroll });
            }
            None => {}
        }
        Handled::Consumed
    }

    fn prompt_key(&mut self, key: Key) -> Handled {
        let Some(mut p) = self.prompt.take() else {
            return Handled::Ignored;
        };
        let ctrl = key
            .mods
            .contains(ratatui::crossterm::event::KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Esc => {
                match p.kind {
                    PromptKind::Filter => self.set_filter(String::new()),
                    PromptKind::Search => self.set_search(String::new(), false),
                    _ => {}
                }
                return Handled::Consumed;
            }
            KeyCode::Enter => {
                self.submit_prompt(p);
                return Handled::Consumed;
            }
            KeyCode::Tab => p.complete(),
            // Backspace on an empty line closes it, like k9s.
            KeyCode::Backspace if p.input.is_empty() => return Handled::Consumed,
            KeyCode::Backspace => {
                p.backspace();
            }
            KeyCode::Delete => p.delete(),
            KeyCode::Left => p.left(),
            KeyCode::Right => p.right(),
            KeyCode::Home => p.home(),
            KeyCode::End => p.end(),
            KeyCode::Char('w') if ctrl => p.delete_word(),
            KeyCode::Char('u') if ctrl => {
                p.input.clear();
                p.cursor = 0;
            }
            KeyCode::Char('a') if ctrl => p.home(),
            KeyCode::Char('e') if ctrl => p.end(),
            KeyCode::Char(c) if !ctrl => p.insert(c),
            _ => {}
        }
        match p.kind {
            PromptKind::Filter => self.set_filter(p.input.clone()),
            PromptKind::Search => self.set_search(p.input.clone(), false),
            _ => {}
        }
        self.prompt = Some(p);
        Handled::Consumed
    }

    fn submit_prompt(&mut self, p: Prompt) {
        match p.kind {
            PromptKind::Command => {
                let typed = p.input.trim().to_string();
                match command_match(&typed) {
                    Some("runs") => self.switch(View::Runs),
                    Some("fleets") => self.switch(View::Fleets),
                    Some("offers") => self.switch(View::Offers),
                    Some("events") => self.switch(View::Events),
                    Some("help") => self.overlay = Some(Overlay::Help { scroll: 0 }),
                    Some("quit") => self.push(Command::Quit),
                    _ if typed.is_empty() => {}
                    _ => self.flash(
                        format!("unknown view `:{typed}`; try :runs, :fleets, :offers, :events"),
                        true,
                    ),
                }
            }
            PromptKind::Filter => self.set_filter(p.input),
            PromptKind::Search => self.set_search(p.input, true),
            PromptKind::ApplyPath => {
                let path = p.input.trim().to_string();
                if path.is_empty() {
                    return;
                }
                let expanded = crate::ui::prompt::expand_home(&path).display().to_string();
                self.flash(format!("planning {path}…"), false);
                self.push(Command::Plan { path: expanded });
            }
        }
    }

    fn query_key(&mut self, key: Key) -> Handled {
        let Some(field) = self.offers.editing else {
            return Handled::Ignored;
        };
        match key.code {
            KeyCode::Esc => self.offers.editing = None,
            KeyCode::Tab => self.offers.editing = Some((field + 1) % 3),
            KeyCode::BackTab => self.offers.editing = Some((field + 2) % 3),
            KeyCode::Enter => {
                self.offers.editing = None;
                self.load_offers();
            }
            KeyCode::Backspace => {
                if let Some(s) = self.offers.query.field_mut(field) {
                    s.pop();
                }
            }
            KeyCode::Char(c) => match self.offers.query.field_mut(field) {
                Some(s) => s.push(c),
                None => self.offers.query.spot = self.offers.query.spot.next(),
            },
            _ => {}
        }
        Handled::Consumed
    }

    fn act(&mut self, action: Action) {
        let view = self.view();
        match action {
            Action::Quit => self.push(Command::Quit),
            Action::Help => self.overlay = Some(Overlay::Help { scroll: 0 }),
            Action::CommandPrompt => self.prompt = Some(Prompt::new(PromptKind::Command, "")),
            Action::Filter => {
                let current = self.filter_of(view).to_string();
                self.prompt = Some(Prompt::new(PromptKind::Filter, &current));
            }
            Action::Search => {
                let current = self
                    .logs
                    .as_ref()
                    .map(|l| l.search.clone())
                    .unwrap_or_default();
                self.prompt = Some(Prompt::new(PromptKind::Search, &current));
            }
            Action::Back => self.back(),
            Action::DrillDown => self.drill_down(),
            Action::Logs => self.open_selected_logs(),
            Action::Shell => self.open_shell(),
            Action::Apply => self.prompt = Some(Prompt::new(PromptKind::ApplyPath, "")),
            Action::Stop => self.confirm_stop(false),
            Action::Abort => self.confirm_stop(true),
            Action::Delete => self.confirm_delete(),
            Action::ToggleAll => {
                self.runs.all = !self.runs.all;
                self.flash(
                    if self.runs.all {
                        "showing all runs"
                    } else {
                        "showing active and recent runs"
                    },
                    false,
                );
                self.load_runs();
            }
            Action::Refresh => self.refresh(view),
            Action::EditQuery => self.offers.editing = Some(0),
            Action::Up => self.move_by(view, -1),
            Action::Down => self.move_by(view, 1),
            Action::PageUp => self.move_by(view, -(self.page(view) as isize)),
            Action::PageDown => self.move_by(view, self.page(view) as isize),
            Action::Top => self.move_to_end(view, false),
            Action::Bottom => self.move_to_end(view, true),
            Action::ToggleFollow => {
                if let Some(l) = &self.logs {
                    let follow = !l.follow;
                    self.set_follow(follow);
                }
            }
            Action::ToggleWrap => {
                if let Some(l) = &mut self.logs {
                    l.wrap = !l.wrap;
                }
            }
            Action::ToggleTimestamps => {
                if let Some(l) = &mut self.logs {
                    l.timestamps = !l.timestamps;
                }
            }
            Action::NextMatch => self.next_match(true),
            Action::PrevMatch => self.next_match(false),
        }
    }

    /// `:view`: a fresh stack with that view.
    pub fn switch(&mut self, view: View) {
        self.close_logs();
        self.stack = vec![view];
        self.entered(view);
    }

    fn open(&mut self, view: View) {
        self.stack.push(view);
        self.entered(view);
    }

    fn entered(&mut self, view: View) {
        match view {
            View::Fleets => {
                if self.fleets.load != Load::Ready {
                    self.load_fleets();
                }
                self.request_metrics();
            }
            View::Offers => {
                if self.offers.list.is_none() {
                    self.load_offers();
                }
            }
            View::Events => {
                if self.events.load != Load::Ready {
                    self.push(Command::LoadEvents);
                }
            }
            View::Jobs => self.request_metrics(),
            View::Runs | View::Logs => {}
        }
    }

    fn back(&mut self) {
        let view = self.view();
        if view != View::Logs && !self.filter_of(view).is_empty() {
            self.set_filter(String::new());
            return;
        }
        if self.stack.len() > 1 {
            let left = self.stack.pop();
            if left == Some(View::Logs) {
                self.close_logs();
            }
        }
    }

    fn close_logs(&mut self) {
        if let Some(l) = self.logs.take() {
            self.push(Command::CloseLog { session: l.session });
        }
        self.stack.retain(|v| *v != View::Logs);
    }

    fn refresh(&mut self, view: View) {
        match view {
            View::Runs | View::Jobs => self.load_runs(),
            View::Fleets => self.load_fleets(),
            View::Offers => self.load_offers(),
            View::Events => self.push(Command::LoadEvents),
            View::Logs => {}
        }
    }

    // ---------------------------------------------------------------- selection

    pub fn filter_of(&self, view: View) -> &str {
        match view {
            View::Runs => &self.runs.filter,
            View::Jobs => &self.jobs.filter,
            View::Fleets => &self.fleets.filter,
            View::Offers => &self.offers.filter,
            View::Events => &self.events.filter,
            View::Logs => "",
        }
    }

    fn set_filter(&mut self, filter: String) {
        match self.view() {
            View::Runs => {
                self.runs.filter = filter;
                self.refilter_runs();
            }
            View::Jobs => {
                self.jobs.filter = filter;
                self.jobs.cursor = Cursor::default();
            }
            View::Fleets => {
                self.fleets.filter = filter;
                self.refilter_fleets();
            }
            View::Offers => {
                self.offers.filter = filter;
                self.refilter_offers();
            }
            View::Events => {
                self.events.filter = filter;
                self.refilter_events();
            }
            View::Logs => {}
        }
    }

    fn rows_len(&self, view: View) -> usize {
        match view {
            View::Runs => self.runs.visible.len(),
            View::Jobs => self.job_rows().len(),
            View::Fleets => self.fleets.rows.len(),
            View::Offers => self.offers.visible.len(),
            View::Events => self.events.visible.len(),
            View::Logs => self.logs.as_ref().map_or(0, |l| l.window.len()),
        }
    }

    fn cursor_mut(&mut self, view: View) -> Option<&mut Cursor> {
        match view {
            View::Runs => Some(&mut self.runs.cursor),
            View::Jobs => Some(&mut self.jobs.cursor),
            View::Fleets => Some(&mut self.fleets.cursor),
            View::Offers => Some(&mut self.offers.cursor),
            View::Events => Some(&mut self.events.cursor),
            View::Logs => None,
        }
    }

    fn move_by(&mut self, view: View, delta: isize) {
        if view == View::Logs {
            self.scroll_logs(delta);
            return;
        }
        let (len, page) = (self.rows_len(view), self.page(view));
        if let Some(c) = self.cursor_mut(view) {
            c.move_by(delta, len, page);
        }
    }

    fn move_to_end(&mut self, view: View, bottom: bool) {
        if view == View::Logs {
            self.logs_to_end(bottom);
            return;
        }
        let (len, page) = (self.rows_len(view), self.page(view));
        if let Some(c) = self.cursor_mut(view) {
            c.selected = if bottom { len.saturating_sub(1) } else { 0 };
            c.scroll(len, page);
        }
    }

    pub fn selected_run(&self) -> Option<&Run> {
        match self.view() {
            View::Runs => self
                .runs
                .visible
                .get(self.runs.cursor.selected)
                .and_then(|i| self.runs.list.get(*i)),
            View::Jobs => self.run_named(&self.jobs.run),
            _ => None,
        }
    }

    pub fn run_named(&self, name: &str) -> Option<&Run> {
        self.runs.list.iter().find(|r| r.name == name)
    }

    /// The rows of the jobs view: each job, then its earlier submissions, newest first.
    pub fn job_rows(&self) -> Vec<JobRow> {
        let Some(run) = self.run_named(&self.jobs.run) else {
            return Vec::new();
        };
        let filter = self.jobs.filter.to_lowercase();
        let mut rows = Vec::new();
        for (j, job) in run.jobs.iter().enumerate() {
            let mut push = |previous: Option<usize>, sub: &JobSubmission| {
                if filter.is_empty()
                    || views::jobs::row_text(job, sub)
                        .to_lowercase()
                        .contains(&filter)
                {
                    rows.push(JobRow { job: j, previous });
                }
            };
            push(None, &job.current);
            for (p, sub) in job.previous_submissions.iter().enumerate().rev() {
                push(Some(p), sub);
            }
        }
        rows
    }

    /// The job (and submission) under the cursor: the selected job row, or a run's first job.
    fn selected_job(&self) -> Option<(&Run, &Job, &JobSubmission, Option<u32>)> {
        let run = self.selected_run()?;
        if self.view() == View::Jobs {
            let row = *self.job_rows().get(self.jobs.cursor.selected)?;
            let job = run.jobs.get(row.job)?;
            return match row.previous {
                None => Some((run, job, &job.current, None)),
                Some(p) => {
                    let sub = job.previous_submissions.get(p)?;
                    Some((run, job, sub, Some(sub.submission_num)))
                }
            };
        }
        let job = run.jobs.first()?;
        Some((run, job, &job.current, None))
    }

    fn drill_down(&mut self) {
        match self.view() {
            View::Runs => {
                let Some(name) = self.selected_run().map(|r| r.name.clone()) else {
                    return;
                };
                self.jobs.run = name;
                self.jobs.cursor = Cursor::default();
                self.jobs.filter.clear();
                self.open(View::Jobs);
            }
            View::Events => {
                let Some(e) = self
                    .events
                    .visible
                    .get(self.events.cursor.selected)
                    .and_then(|i| self.events.list.get(*i))
                else {
                    return;
                };
                match e.kind.as_str() {
                    "run" | "job" => {
                        let name = e.resource.split('/').next().unwrap_or_default().to_string();
                        if self.run_named(&name).is_none() {
                            self.load_run(&name);
                        }
                        self.jobs.run = name;
                        self.jobs.cursor = Cursor::default();
                        self.jobs.filter.clear();
                        self.open(View::Jobs);
                    }
                    _ => self.switch(View::Fleets),
                }
            }
            _ => {}
        }
    }

    // ---------------------------------------------------------------- actions

    fn confirm_stop(&mut self, abort: bool) {
        let Some(run) = self.selected_run() else {
            return;
        };
        let name = run.name.clone();
        if run.status.is_finished() {
            let msg = format!("run {name} is already {}", run.status);
            self.flash(msg, false);
            return;
        }
        let (title, lines, question) = if abort {
            (
                "Abort".to_string(),
                vec![format!(
                    "Abort the run {name}: its jobs are killed at once (SIGKILL)."
                )],
                format!("Abort {name}?"),
            )
        } else {
            let grace = run
                .configuration
                .common()
                .stop_duration
                .map(flotilla_protocol::config::format_duration)
                .unwrap_or_else(|| "no limit".into());
            (
                "Stop".to_string(),
                vec![format!(
                    "Stop the run {name}: SIGTERM, then SIGKILL after its stop_duration ({grace})."
                )],
                format!("Stop {name}?"),
            )
        };
        self.overlay = Some(Overlay::Dialog(Box::new(Dialog {
            title,
            lines,
            question,
            on_confirm: Command::Stop { name, abort },
            dangerous: true,
        })));
    }

    fn confirm_delete(&mut self) {
        let Some(run) = self.selected_run() else {
            return;
        };
        let name = run.name.clone();
        if !run.status.is_finished() {
            let msg = format!(
                "run {name} is {}; stop it first (ctrl-s), then delete it",
                run.status
            );
            self.flash(msg, true);
            return;
        }
        self.overlay = Some(Overlay::Dialog(Box::new(Dialog {
            title: "Delete".into(),
            lines: vec![format!(
                "Delete the run {name} and its logs. This cannot be undone."
            )],
            question: format!("Delete {name}?"),
            on_confirm: Command::Delete { name },
            dangerous: true,
        })));
    }

    fn open_shell(&mut self) {
        let Some((run, job, sub, _)) = self.selected_job() else {
            return;
        };
        match shell::spec(run, job, sub, self.shell.as_deref(), self.ssh_via.as_ref()) {
            Ok(spec) => self.push(Command::Shell(spec)),
            Err(e) => self.flash(e, true),
        }
    }

    fn open_selected_logs(&mut self) {
        let Some((run, job, _, submission)) = self.selected_job() else {
            return;
        };
        let target = LogTarget {
            run: run.name.clone(),
            replica: job.replica_num,
            job: job.job_num,
            submission,
        };
        let mut title = format!("{} {}/{}", run.name, job.replica_num, job.job_num);
        if let Some(s) = submission {
            title.push_str(&format!(" #{s}"));
        }
        self.open_logs(target, title);
    }

    pub fn open_logs(&mut self, target: LogTarget, title: String) {
        self.close_logs();
        self.log_sessions += 1;
        let session = self.log_sessions;
        self.logs = Some(LogsState::new(session, target.clone(), title));
        self.push(Command::OpenLog { session, target });
        self.open(View::Logs);
    }

    // ---------------------------------------------------------------- logs

    fn log_geometry(&self) -> (usize, usize) {
        (
            crate::ui::render::table_rows(View::Logs, self.size).max(1),
            usize::from(self.size.0).max(1),
        )
    }

    fn scroll_logs(&mut self, delta: isize) {
        let (rows, width) = self.log_geometry();
        let Some(l) = &mut self.logs else { return };
        let top = l.shown_top(rows, width);
        let bottom = l.bottom_top(rows, width);
        let new = (top as isize + delta).clamp(0, bottom as isize) as usize;
        l.top = new;
        if delta < 0 {
            l.follow = false;
        } else if new >= bottom && l.window.reaches_end() {
            l.follow = true;
        }
        self.fetch_around_viewport();
    }

    fn logs_to_end(&mut self, bottom: bool) {
        if bottom {
            self.set_follow(true);
            return;
        }
        let Some(l) = &mut self.logs else { return };
        l.follow = false;
        l.top = 0;
        if !l.window.reaches_start() && !l.read_pending {
            l.read_pending = true;
            let c = read_cmd(l, LogRead::Head, 0, READ_WINDOW);
            self.push(c);
        }
    }

    fn set_follow(&mut self, follow: bool) {
        let Some(l) = &mut self.logs else { return };
        l.follow = follow;
        if follow && !l.window.reaches_end() && !l.read_pending {
            l.read_pending = true;
            let offset = l.window.size().saturating_sub(READ_WINDOW);
            let c = read_cmd(l, LogRead::Tail, offset, READ_WINDOW);
            self.push(c);
        }
    }

    /// Reads the window before or after when the viewport nears an edge that is not the log's.
    fn fetch_around_viewport(&mut self) {
        let (rows, width) = self.log_geometry();
        let Some(l) = &mut self.logs else { return };
        if l.read_pending || l.loading {
            return;
        }
        let top = l.shown_top(rows, width);
        if !l.follow && top < rows && !l.window.reaches_start() {
            let start = l.window.start();
            let offset = start.saturating_sub(READ_WINDOW);
            l.read_pending = true;
            let c = read_cmd(l, LogRead::Older, offset, start - offset);
            self.push(c);
        } else if l.follow && l.window.size() - l.window.next_offset() > READ_WINDOW {
            // Far behind the end while following: jump to the last window.
            l.read_pending = true;
            let offset = l.window.size() - READ_WINDOW;
            let c = read_cmd(l, LogRead::Tail, offset, READ_WINDOW);
            self.push(c);
        } else if !l.window.reaches_end() && (l.follow || top + 2 * rows >= l.window.len()) {
            l.read_pending = true;
            let c = read_cmd(l, LogRead::Newer, l.window.next_offset(), READ_WINDOW);
            self.push(c);
        }
    }

    fn set_search(&mut self, query: String, jump: bool) {
        let (rows, width) = self.log_geometry();
        let Some(l) = &mut self.logs else { return };
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
                    self.flash(msg, true);
                }
            }
        }
    }

    fn next_match(&mut self, forward: bool) {
        let (rows, width) = self.log_geometry();
        let Some(l) = &mut self.logs else { return };
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

    fn on_log_shift(&mut self, shift: Shift) {
        if let Some(l) = &mut self.logs {
            l.top = (l.top + shift.added_front).saturating_sub(shift.dropped_front);
            if let Some(m) = l.current_match {
                let m = m + shift.added_front;
                l.current_match = m.checked_sub(shift.dropped_front);
            }
        }
    }

    // ---------------------------------------------------------------- loading

    fn load_runs(&mut self) {
        if !self.runs.list_in_flight {
            self.runs.list_in_flight = true;
            self.push(Command::LoadRuns { all: self.runs.all });
        }
    }

    fn load_run(&mut self, name: &str) {
        if self.runs.in_flight.contains(name) {
            self.runs.stale.insert(name.to_string());
        } else {
            self.runs.in_flight.insert(name.to_string());
            self.push(Command::LoadRun {
                name: name.to_string(),
            });
        }
    }

    fn load_fleets(&mut self) {
        if self.fleets.in_flight {
            self.fleets.stale = true;
        } else {
            self.fleets.in_flight = true;
            self.push(Command::LoadFleets);
        }
    }

    fn load_offers(&mut self) {
        match self.offers.query.to_query() {
            Ok(q) => {
                self.offers.load = Load::Loading;
                self.push(Command::LoadOffers(q));
            }
            Err(e) => self.flash(e, true),
        }
    }

    fn request_metrics(&mut self) {
        if !self.metrics_supported || !matches!(self.conn, Conn::Connected) {
            return;
        }
        let mut wanted: Vec<(String, MetricsParams)> = Vec::new();
        match self.view() {
            View::Fleets => {
                for f in &self.fleets.list {
                    for i in &f.instances {
                        let key = format!("{}/{}", f.name, i.name);
                        let params = MetricsParams {
                            instance: Some(key.clone()),
                            ..MetricsParams::default()
                        };
                        wanted.push((key, params));
                    }
                }
            }
            View::Jobs if !self.jobs.run.is_empty() => {
                let params = MetricsParams {
                    run: Some(self.jobs.run.clone()),
                    ..MetricsParams::default()
                };
                wanted.push((format!("run:{}", self.jobs.run), params));
            }
            _ => return,
        }
        for (key, params) in wanted {
            if self.metrics_in_flight.insert(key.clone()) {
                self.push(Command::Metrics { key, params });
            }
        }
        self.metrics_due = Some(Timestamp(self.now.0 + METRICS_EVERY_MS));
    }

    // ---------------------------------------------------------------- messages

    pub fn handle_msg(&mut self, msg: Msg) -> Handled {
        self.dirty = true;
        match msg {
            Msg::Connected(hello) => {
                self.hello = Some(hello);
                self.conn = Conn::Connected;
                self.runs.list_in_flight = false;
                self.runs.in_flight.clear();
                self.fleets.in_flight = false;
                self.metrics_in_flight.clear();
                // Everything may have changed while away: load it all again.
                self.load_runs();
                self.load_fleets();
                self.push(Command::LoadEvents);
                if self.view() == View::Offers {
                    self.load_offers();
                }
                self.request_metrics();
                // A log read lost with the old connection is asked again.
                if let Some(l) = &mut self.logs {
                    l.read_pending = false;
                }
                self.fetch_around_viewport();
            }
            Msg::Disconnected { attempt, error } => {
                self.conn = Conn::Reconnecting { attempt, error };
            }
            Msg::Runs(result) => {
                self.runs.list_in_flight = false;
                match result {
                    Ok(list) => {
                        self.runs.list = list;
                        self.runs.load = Load::Ready;
                        self.refilter_runs();
                    }
                    Err(e) => self.runs.load = Load::Failed(e),
                }
            }
            Msg::Run { name, result } => {
                self.runs.in_flight.remove(&name);
                match result {
                    Ok(Some(run)) => self.upsert_run(run),
                    Ok(None) => self.remove_run(&name),
                    Err(_) => {} // the next event or reconnect loads it again
                }
                if self.runs.stale.remove(&name) {
                    self.load_run(&name);
                }
            }
            Msg::Fleets(result) => {
                self.fleets.in_flight = false;
                match result {
                    Ok(list) => {
                        let first = self.fleets.load != Load::Ready;
                        self.fleets.list = list;
                        self.fleets.load = Load::Ready;
                        self.refilter_fleets();
                        if first && self.view() == View::Fleets {
                            self.request_metrics();
                        }
                    }
                    Err(e) => self.fleets.load = Load::Failed(e),
                }
                if std::mem::take(&mut self.fleets.stale) {
                    self.load_fleets();
                }
            }
            Msg::Events(result) => match result {
                Ok(list) => {
                    // Keep live events newer than the list.
                    let last = list.last().map(|e| e.seq).unwrap_or(0);
                    let newer: Vec<Event> = self
                        .events
                        .list
                        .drain(..)
                        .filter(|e| e.seq > last)
                        .collect();
                    self.events.list = list.into_iter().chain(newer).collect();
                    while self.events.list.len() > MAX_EVENTS {
                        self.events.list.pop_front();
                    }
                    self.events.load = Load::Ready;
                    self.refilter_events();
                }
                Err(e) => self.events.load = Load::Failed(e),
            },
            Msg::Event(e) => self.on_event(e),
            Msg::Offers(result) => match result {
                Ok(list) => {
                    for w in &list.warnings {
                        self.flash(format!("offers: {w}"), false);
                    }
                    self.offers.list = Some(list);
                    self.offers.load = Load::Ready;
                    self.refilter_offers();
                }
                Err(e) => self.offers.load = Load::Failed(e),
            },
            Msg::Metrics { key, result } => {
                self.metrics_in_flight.remove(&key);
                if let Ok(m) = result {
                    let series: Vec<&[_]> = m.series.iter().map(|s| s.samples.as_slice()).collect();
                    self.metrics.insert(key, cells::utilisation(&series));
                }
            }
            Msg::MetricsUnsupported => {
                self.metrics_supported = false;
                self.metrics.clear();
                self.metrics_in_flight.clear();
                self.metrics_due = None;
            }
            Msg::Plan { path, params, plan } => {
                self.flash = None;
                self.overlay = Some(Overlay::Dialog(Box::new(plan_dialog(&path, params, &plan))));
            }
            Msg::Applied(run) => {
                let name = run.name.clone();
                self.upsert_run(run);
                self.flash(format!("submitted run {name}"), false);
                if self.view() == View::Runs {
                    if let Some(pos) = self
                        .runs
                        .visible
                        .iter()
                        .position(|i| self.runs.list[*i].name == name)
                    {
                        self.runs.cursor.selected = pos;
                        let (len, page) = (self.runs.visible.len(), self.page(View::Runs));
                        self.runs.cursor.scroll(len, page);
                    }
                }
            }
            Msg::Deleted(name) => {
                self.remove_run(&name);
                self.flash(format!("deleted run {name}"), false);
                if self.view() == View::Jobs && self.jobs.run == name {
                    self.back();
                }
            }
            Msg::LogRead {
                session,
                purpose,
                offset,
                bytes,
                size,
            } => {
                let Some(l) = self.logs.as_mut().filter(|l| l.session == session) else {
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
                self.on_log_shift(shift);
                self.fetch_around_viewport();
            }
            Msg::LogAppend {
                session,
                offset,
                bytes,
                arrived,
            } => {
                let Some(l) = self.logs.as_mut().filter(|l| l.session == session) else {
                    return Handled::Ignored;
                };
                // Following, the view sticks to the end (computed when drawn).
                let shift = l.window.append(offset, &bytes, Some(arrived));
                let gap = !l.window.reaches_end();
                self.on_log_shift(shift);
                if gap {
                    self.fetch_around_viewport();
                }
            }
            Msg::LogEnded { session, summary } => {
                if let Some(l) = self.logs.as_mut().filter(|l| l.session == session) {
                    l.ended = Some(summary);
                    l.loading = false;
                }
            }
            Msg::LogError { session, error } => {
                if let Some(l) = self.logs.as_mut().filter(|l| l.session == session) {
                    l.error = Some(error);
                    l.loading = false;
                }
            }
            Msg::Info(text) => self.flash(text, false),
            Msg::Error(text) => self.flash(text, true),
        }
        Handled::Consumed
    }

    fn on_event(&mut self, e: Event) {
        match e.kind.as_str() {
            "run" => self.load_run(&e.resource.clone()),
            "job" => {
                // `run/replica/job`: the run's name may not contain `/`.
                let name = e.resource.split('/').next().unwrap_or_default().to_string();
                self.load_run(&name);
                // Blocks were taken or released.
                self.load_fleets();
            }
            "instance" | "fleet" => self.load_fleets(),
            _ => {}
        }
        self.events.list.push_back(e);
        if self.events.list.len() > MAX_EVENTS {
            self.events.list.pop_front();
        }
        self.refilter_events();
        // Only the events view shows events; other views redraw when their data comes.
        self.dirty = self.view() == View::Events;
    }

    fn upsert_run(&mut self, run: Run) {
        match self.runs.list.iter().position(|r| r.name == run.name) {
            Some(i) => {
                let old = views::runs::row_texts(self, &self.runs.list[i]);
                let new = views::runs::row_texts(self, &run);
                let mut columns = 0u16;
                for (c, (a, b)) in old.iter().zip(new.iter()).enumerate() {
                    if a != b {
                        columns |= 1 << c;
                    }
                }
                if columns != 0 {
                    self.runs.changes.insert(
                        run.name.clone(),
                        Change {
                            columns,
                            until: Timestamp(self.now.0 + CHANGE_MS),
                        },
                    );
                }
                self.runs.list[i] = run;
            }
            None => {
                // Newest first, as the daemon lists them.
                let pos = self
                    .runs
                    .list
                    .iter()
                    .position(|r| (r.submitted_at, r.id) < (run.submitted_at, run.id))
                    .unwrap_or(self.runs.list.len());
                self.runs.list.insert(pos, run);
            }
        }
        if self.runs.load != Load::Ready && !self.runs.list_in_flight {
            self.runs.load = Load::Ready;
        }
        self.refilter_runs();
    }

    fn remove_run(&mut self, name: &str) {
        self.runs.list.retain(|r| r.name != name);
        self.runs.changes.remove(name);
        self.refilter_runs();
    }

    // ---------------------------------------------------------------- filtering

    fn refilter_runs(&mut self) {
        let keep = self
            .runs
            .visible
            .get(self.runs.cursor.selected)
            .and_then(|i| self.runs.list.get(*i))
            .map(|r| r.name.clone());
        let filter = self.runs.filter.to_lowercase();
        self.runs.visible = self
            .runs
            .list
            .iter()
            .enumerate()
            .filter(|(_, r)| filter.is_empty() || views::runs::matches(r, &filter))
            .map(|(i, _)| i)
            .collect();
        let mut counts: Vec<(RunStatus, usize)> = Vec::new();
        for r in &self.runs.list {
            match counts.iter_mut().find(|(s, _)| *s == r.status) {
                Some((_, n)) => *n += 1,
                None => counts.push((r.status, 1)),
            }
        }
        counts.sort_by_key(|(s, _)| status_rank(*s));
        self.runs.counts = counts;
        if let Some(name) = keep {
            if let Some(pos) = self
                .runs
                .visible
                .iter()
                .position(|i| self.runs.list[*i].name == name)
            {
                self.runs.cursor.selected = pos;
            }
        }
        let (len, page) = (self.runs.visible.len(), self.page(View::Runs));
        self.runs.cursor.move_by(0, len, page);
    }

    fn refilter_fleets(&mut self) {
        let filter = self.fleets.filter.to_lowercase();
        let mut rows = Vec::new();
        let mut burn = 0.0;
        for (f, fleet) in self.fleets.list.iter().enumerate() {
            let fleet_hit = filter.is_empty() || fleet.name.to_lowercase().contains(&filter);
            let mut inst_rows = Vec::new();
            for (i, inst) in fleet.instances.iter().enumerate() {
                use flotilla_protocol::model::InstanceStatus as S;
                if matches!(inst.status, S::Provisioning | S::Idle | S::Busy) {
                    burn += inst.price;
                }
                if fleet_hit
                    || views::fleets::instance_text(inst)
                        .to_lowercase()
                        .contains(&filter)
                {
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
        self.fleets.rows = rows;
        self.fleets.burn = burn;
        let (len, page) = (self.fleets.rows.len(), self.page(View::Fleets));
        self.fleets.cursor.move_by(0, len, page);
    }

    fn refilter_offers(&mut self) {
        let filter = self.offers.filter.to_lowercase();
        self.offers.visible = match &self.offers.list {
            Some(l) => l
                .offers
                .iter()
                .enumerate()
                .filter(|(_, o)| {
                    filter.is_empty() || views::offers::row_text(o).to_lowercase().contains(&filter)
                })
                .map(|(i, _)| i)
                .collect(),
            None => Vec::new(),
        };
        let (len, page) = (self.offers.visible.len(), self.page(View::Offers));
        self.offers.cursor.move_by(0, len, page);
    }

    fn refilter_events(&mut self) {
        let filter = self.events.filter.to_lowercase();
        self.events.visible = self
            .events
            .list
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, e)| {
                filter.is_empty() || views::events::row_text(e).to_lowercase().contains(&filter)
            })
            .map(|(i, _)| i)
            .collect();
        let (len, page) = (self.events.visible.len(), self.page(View::Events));
        self.events.cursor.move_by(0, len, page);
    }
}

fn read_cmd(l: &LogsState, purpose: LogRead, offset: u64, limit: u64) -> Command {
    Command::ReadLog {
        session: l.session,
        target: l.target.clone(),
        purpose,
        offset,
        limit,
    }
}

/// The header's order of statuses: active ones first.
pub fn status_rank(s: RunStatus) -> u8 {
    match s {
        RunStatus::Running => 0,
        RunStatus::Provisioning => 1,
        RunStatus::Submitted => 2,
        RunStatus::Pending => 3,
        RunStatus::Terminating => 4,
        RunStatus::Failed => 5,
        RunStatus::Terminated => 6,
        RunStatus::Done => 7,
    }
}

fn plan_dialog(path: &str, params: RunApplyParams, plan: &RunPlan) -> Dialog {
    let mut lines = vec![
        format!("Configuration  {path}"),
        format!("Type           {}", plan.configuration_type),
        format!("User           {}", plan.user),
    ];
    if let Some(status) = &plan.current_run_status {
        lines.push(format!("Replaces       {} ({status})", plan.run_name));
    }
    match plan.jobs.first() {
        Some(job) if !job.offers.is_empty() => {
            lines.push(String::new());
            for (i, o) in job.offers.iter().take(5).enumerate() {
                lines.push(format!(
                    "{}. {} ({}) {} {} {}",
                    i + 1,
                    o.backend,
                    o.region,
                    crate::table::resources(&o.resources),
                    cells::price(o.price),
                    o.availability
                ));
            }
            lines.push(format!(
                "Shown {} of {} offers",
                job.offers.len().min(5),
                job.total_offers
            ));
        }
        _ => {
            lines.push("No offers match: the run will wait or fail unless a fleet changes.".into())
        }
    }
    let question = if plan.run_name.is_empty() {
        "Submit a new run?".to_string()
    } else {
        format!("Submit the run {}?", plan.run_name)
    };
    Dialog {
        title: "Apply".into(),
        lines,
        question,
        on_confirm: Command::Apply(params),
        dangerous: false,
    }
}
