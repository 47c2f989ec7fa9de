//! The dashboard's root: what every view shares (the connection, the header's data, the
//! navigation stack, the prompt, dialogs and messages) and the dispatch of keys and daemon
//! messages to the view components, each answered "consumed or not". What components ask of
//! each other arrives as [`Request`]s on a queue, carried out here in order; requests for the
//! daemon leave as [`Command`]s that an async task carries out. Nothing here does I/O, so every
//! transition is testable without a terminal.

use crate::ui::apply_dialog::plan_dialog;
use crate::ui::cells;
use crate::ui::component::{Component, Ctx, DrawCtx, Request};
use crate::ui::keys::{self, Action, Key, View};
use crate::ui::prompt::{command_match, Edit, Prompt, PromptKind};
use crate::ui::shell;
use crate::ui::store::Store;
use crate::ui::theme::Theme;
use crate::ui::views::events::EventsView;
use crate::ui::views::fleets::FleetsView;
use crate::ui::views::jobs::JobsView;
use crate::ui::views::logs::LogsView;
use crate::ui::views::offers::OffersView;
use crate::ui::views::run_actions;
use crate::ui::views::runs::RunsView;
use flotilla_protocol::model::Run;
use flotilla_protocol::rpc::{HelloResult, LogTarget};
use flotilla_protocol::Timestamp;
use ratatui::crossterm::event::KeyCode;

pub use crate::ui::component::{Conn, Cursor, Dialog, Handled, Load};
pub use crate::ui::messages::{Command, LogRead, Msg};

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
    /// The daemon's data that several views show.
    pub store: Store,
    pub runs: RunsView,
    pub jobs: JobsView,
    pub fleets: FleetsView,
    pub offers: OffersView,
    pub events: EventsView,
    pub logs: LogsView,
    pub overlay: Option<Overlay>,
    pub prompt: Option<Prompt>,
    pub flash: Option<Flash>,
    /// Terminal size (columns, rows).
    pub size: (u16, u16),
    pub shell: Option<String>,
    /// How `s` reaches jobs on SSH hosts (`flotilla ssh`); `None` in tests.
    pub ssh_via: Option<shell::SshVia>,
    /// Something changed since the last frame.
    pub dirty: bool,
    commands: Vec<Command>,
    /// Requests raised while handling an event, carried out in order after it.
    queue: Vec<Request>,
}

const FLASH_MS: u64 = 5000;

/// The context a component gets from the app: disjoint borrows of the app's fields, so that a
/// component field can be borrowed beside it.
macro_rules! ctx {
    ($app:ident) => {
        Ctx {
            now: $app.now,
            size: $app.size,
            store: &mut $app.store,
            queue: &mut $app.queue,
        }
    };
}

/// The component of `$view` in `$app`, as `&mut dyn Component`, beside a context.
macro_rules! with_component {
    ($app:ident, $view:expr, |$c:ident, $ctx:ident| $body:expr) => {{
        let mut ctx = ctx!($app);
        let $ctx = &mut ctx;
        let $c: &mut dyn Component = match $view {
            View::Runs => &mut $app.runs,
            View::Jobs => &mut $app.jobs,
            View::Fleets => &mut $app.fleets,
            View::Offers => &mut $app.offers,
            View::Events => &mut $app.events,
            View::Logs => &mut $app.logs,
        };
        $body
    }};
}

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
            store: Store::default(),
            runs: RunsView::default(),
            jobs: JobsView::default(),
            fleets: FleetsView::default(),
            offers: OffersView::default(),
            events: EventsView::default(),
            logs: LogsView::default(),
            overlay: None,
            prompt: None,
            flash: None,
            size: (80, 24),
            shell: None,
            ssh_via: None,
            dirty: true,
            commands: Vec::new(),
            queue: Vec::new(),
        }
    }

    /// The requests queued since the last call.
    pub fn take_commands(&mut self) -> Vec<Command> {
        self.carry_out_requests();
        std::mem::take(&mut self.commands)
    }

    fn send(&mut self, c: Command) {
        self.queue.push(Request::Daemon(c));
    }

    pub fn view(&self) -> View {
        self.stack.last().copied().unwrap_or(View::Runs)
    }

    /// The component of `view`.
    pub fn component(&self, view: View) -> &dyn Component {
        match view {
            View::Runs => &self.runs,
            View::Jobs => &self.jobs,
            View::Fleets => &self.fleets,
            View::Offers => &self.offers,
            View::Events => &self.events,
            View::Logs => &self.logs,
        }
    }

    /// What a component may read while it draws.
    pub fn draw_ctx(&self) -> DrawCtx<'_> {
        DrawCtx {
            theme: &self.theme,
            now: self.now,
            size: self.size,
            socket: &self.socket,
            conn: &self.conn,
            store: &self.store,
        }
    }

    pub fn set_size(&mut self, cols: u16, rows: u16) {
        if self.size != (cols, rows) {
            self.size = (cols, rows);
            self.dirty = true;
        }
    }

    /// Rows of data a table of `view` shows at the current size.
    pub fn page(&self, view: View) -> usize {
        crate::ui::layout::table_rows(view, self.size).max(1)
    }

    pub fn flash(&mut self, text: impl Into<String>, error: bool) {
        self.flash = Some(Flash {
            text: cells::one_line(&text.into()),
            error,
            until: Timestamp(self.now.0 + if error { 2 * FLASH_MS } else { FLASH_MS }),
        });
        self.dirty = true;
    }

    /// The filter of `view` (the search of the log view).
    pub fn filter_of(&self, view: View) -> &str {
        self.component(view).filter()
    }

    /// The run the run views act on: the selected row, or the run whose jobs are shown.
    pub fn selected_run(&self) -> Option<&Run> {
        match self.view() {
            View::Runs => self.runs.selected(&self.store),
            View::Jobs => self.store.run_named(&self.jobs.run),
            _ => None,
        }
    }

    pub fn run_named(&self, name: &str) -> Option<&Run> {
        self.store.run_named(name)
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
        if let Some(t) = self.runs.next_change_end() {
            at(t);
        }
        if let Some(t) = self.store.metrics.due {
            if self.store.metrics.supported && matches!(self.view(), View::Fleets | View::Jobs) {
                at(t);
            }
        }
        if matches!(self.view(), View::Runs | View::Jobs | View::Fleets) && self.overlay.is_none() {
            // Ages: every second while a young row is shown, else every 30 s.
            let young = self
                .store
                .runs
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
        self.runs.expire_changes(now);
        if self.store.metrics.due.is_some_and(|t| t <= now) {
            self.store.metrics.due = None;
            self.request_metrics();
        }
        self.carry_out_requests();
        self.dirty = true;
    }

    // ---------------------------------------------------------------- keys

    /// A key: the dialog or prompt when one is open, else the shown view, else the app's own
    /// bindings (quit, help, prompts, back).
    pub fn handle_key(&mut self, key: Key) -> Handled {
        self.dirty = true;
        let handled = self.route_key(key);
        self.carry_out_requests();
        handled
    }

    fn route_key(&mut self, key: Key) -> Handled {
        if key == Key::ctrl('c') {
            self.send(Command::Quit);
            return Handled::Consumed;
        }
        if self.overlay.is_some() {
            return self.overlay_key(key);
        }
        if self.prompt.is_some() {
            return self.prompt_key(key);
        }
        let view = self.view();
        if with_component!(self, view, |c, ctx| c.handle_key(key, ctx)) == Handled::Consumed {
            return Handled::Consumed;
        }
        match keys::lookup(view, key) {
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
                    self.send(d.on_confirm);
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
                let scroll = keys::help_scroll(scroll, key);
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
        match p.edit(key) {
            Edit::Cancel => match p.kind {
                PromptKind::Filter => self.set_filter(String::new()),
                PromptKind::Search => self.set_search(String::new(), false),
                _ => {}
            },
            Edit::Close => {}
            Edit::Submit => self.submit_prompt(p),
            Edit::Typed => {
                match p.kind {
                    PromptKind::Filter => self.set_filter(p.input.clone()),
                    PromptKind::Search => self.set_search(p.input.clone(), false),
                    _ => {}
                }
                self.prompt = Some(p);
            }
        }
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
                    Some("quit") => self.send(Command::Quit),
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
                self.send(Command::Plan { path: expanded });
            }
        }
    }

    fn set_filter(&mut self, filter: String) {
        let view = self.view();
        with_component!(self, view, |c, ctx| c.set_filter(filter, ctx));
    }

    fn set_search(&mut self, query: String, jump: bool) {
        self.logs.set_search(query, jump, &mut ctx!(self));
    }

    /// The app's own bindings (what the shown view left).
    fn act(&mut self, action: Action) {
        match action {
            Action::Quit => self.send(Command::Quit),
            Action::Help => self.overlay = Some(Overlay::Help { scroll: 0 }),
            Action::CommandPrompt => self.prompt = Some(Prompt::new(PromptKind::Command, "")),
            Action::Filter => {
                let current = self.filter_of(self.view()).to_string();
                self.prompt = Some(Prompt::new(PromptKind::Filter, &current));
            }
            Action::Search => {
                let current = self.logs.filter().to_string();
                self.prompt = Some(Prompt::new(PromptKind::Search, &current));
            }
            Action::Apply => self.prompt = Some(Prompt::new(PromptKind::ApplyPath, "")),
            Action::Back => self.back(),
            _ => {}
        }
    }

    // ---------------------------------------------------------------- navigation

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
        with_component!(self, view, |c, ctx| c.shown(ctx));
        if matches!(view, View::Fleets | View::Jobs) {
            self.request_metrics();
        }
    }

    /// Esc: clears the filter of a table if there is one, else goes back a view.
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
        self.logs.close(&mut ctx!(self));
        self.stack.retain(|v| *v != View::Logs);
    }

    fn open_logs(&mut self, target: LogTarget, title: String) {
        self.close_logs();
        self.logs.open(target, title, &mut ctx!(self));
        self.open(View::Logs);
    }

    /// A shell in the job at `target`: the job's directory and environment locally, or
    /// `flotilla ssh` on a host.
    fn open_shell(&mut self, target: &LogTarget) {
        let spec = run_actions::shell_spec(
            &self.store,
            target,
            self.shell.as_deref(),
            self.ssh_via.as_ref(),
        );
        match spec {
            Some(Ok(spec)) => self.send(Command::Shell(spec)),
            Some(Err(e)) => self.flash(e, true),
            None => {}
        }
    }

    fn request_metrics(&mut self) {
        if !self.store.metrics.supported || !matches!(self.conn, Conn::Connected) {
            return;
        }
        let wanted = match self.view() {
            View::Fleets => self.store.fleet_series(),
            View::Jobs if !self.jobs.run.is_empty() => Store::run_series(&self.jobs.run),
            _ => return,
        };
        for c in self.store.metrics.request(wanted, self.now) {
            self.send(c);
        }
    }

    /// Carries out the queued requests in order (and those they raise, after them).
    fn carry_out_requests(&mut self) {
        while !self.queue.is_empty() {
            let request = self.queue.remove(0);
            self.carry_out(request);
        }
    }

    fn carry_out(&mut self, request: Request) {
        match request {
            Request::Daemon(c) => self.commands.push(c),
            Request::Flash { text, error } => self.flash(text, error),
            Request::Confirm(d) => self.overlay = Some(Overlay::Dialog(d)),
            Request::OpenJobs { run } => {
                if self.store.run_named(&run).is_none() {
                    self.runs.load_run(&run, &mut ctx!(self));
                }
                self.jobs.show(run);
                self.open(View::Jobs);
            }
            Request::OpenLogs { target, title } => self.open_logs(target, title),
            Request::Shell(target) => self.open_shell(&target),
            Request::Switch(view) => self.switch(view),
            Request::ReloadRuns => self.runs.load_list(&mut ctx!(self)),
            Request::FleetsLoaded => {
                if self.view() == View::Fleets {
                    self.request_metrics();
                }
            }
        }
    }

    // ---------------------------------------------------------------- messages

    /// A message from the daemon side, given to the components it concerns.
    pub fn handle_msg(&mut self, msg: Msg) -> Handled {
        self.dirty = true;
        let handled = self.route_msg(msg);
        self.carry_out_requests();
        handled
    }

    fn route_msg(&mut self, msg: Msg) -> Handled {
        match msg {
            Msg::Connected(hello) => {
                self.hello = Some(hello);
                self.conn = Conn::Connected;
                // Everything may have changed while away: load it all again.
                self.runs.reconnected(&mut ctx!(self));
                self.fleets.reconnected(&mut ctx!(self));
                self.store.metrics.reconnected();
                self.send(Command::LoadEvents);
                if self.view() == View::Offers {
                    self.offers.load(&mut ctx!(self));
                }
                self.request_metrics();
                self.logs.reconnected(&mut ctx!(self));
            }
            Msg::Disconnected { attempt, error } => {
                self.conn = Conn::Reconnecting { attempt, error };
            }
            Msg::Runs(_) | Msg::Run { .. } => {
                return self.runs.handle_msg(msg, &mut ctx!(self));
            }
            Msg::Fleets(_) => return self.fleets.handle_msg(msg, &mut ctx!(self)),
            Msg::Events(_) => return self.events.handle_msg(msg, &mut ctx!(self)),
            Msg::Offers(_) => return self.offers.handle_msg(msg, &mut ctx!(self)),
            Msg::Event(e) => {
                self.runs.handle_msg(Msg::Event(e.clone()), &mut ctx!(self));
                self.fleets
                    .handle_msg(Msg::Event(e.clone()), &mut ctx!(self));
                self.events.handle_msg(Msg::Event(e), &mut ctx!(self));
                // Only the events view shows events; other views redraw when their data comes.
                self.dirty = self.view() == View::Events;
            }
            Msg::Metrics { key, result } => self.store.metrics.answered(key, result),
            Msg::MetricsUnsupported => self.store.metrics.unsupported(),
            Msg::Plan { path, params, plan } => {
                self.flash = None;
                self.overlay = Some(Overlay::Dialog(Box::new(plan_dialog(&path, params, &plan))));
            }
            Msg::Applied(run) => {
                let name = run.name.clone();
                self.runs.handle_msg(Msg::Applied(run), &mut ctx!(self));
                self.flash(format!("submitted run {name}"), false);
                if self.view() == View::Runs {
                    let page = self.page(View::Runs);
                    self.runs.select(&self.store, &name, page);
                }
            }
            Msg::Deleted(name) => {
                self.runs
                    .handle_msg(Msg::Deleted(name.clone()), &mut ctx!(self));
                self.flash(format!("deleted run {name}"), false);
                if self.view() == View::Jobs && self.jobs.run == name {
                    self.back();
                }
            }
            Msg::LogRead { .. } | Msg::LogAppend { .. } => {
                return self.logs.handle_msg(msg, &mut ctx!(self));
            }
            Msg::LogEnded { .. } | Msg::LogError { .. } => {
                self.logs.handle_msg(msg, &mut ctx!(self));
            }
            Msg::Info(text) => self.flash(text, false),
            Msg::Error(text) => self.flash(text, true),
        }
        Handled::Consumed
    }
}
