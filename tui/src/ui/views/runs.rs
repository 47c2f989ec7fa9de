//! The runs view: one row per run (name, user, status, instance, GPU, price, age, error), the
//! cells that just changed highlighted; only the rows on screen are formatted. The component
//! keeps the runs in the shared store up to date (the list, then one run per event).

use super::{col, draw_message, draw_table, run_actions, Cell, Column};
use crate::ui::cells;
use crate::ui::component::{count, Component, Conn, Ctx, Cursor, DrawCtx, Handled, Load, Request};
use crate::ui::keys::{Action, Key, View};
use crate::ui::log_window::contains_ci;
use crate::ui::messages::{Command, Msg};
use crate::ui::store::Store;
use flotilla_protocol::model::{Run, RunStatus};
use flotilla_protocol::Timestamp;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;
use std::collections::{HashMap, HashSet};

pub const COLUMNS: [Column; 8] = [
    col("NAME", 8, 32, 0),
    col("USER", 4, 12, 5),
    col("STATUS", 6, 12, 0),
    col("INSTANCE", 8, 20, 3),
    col("GPU", 3, 16, 4),
    col("PRICE", 5, 9, 2),
    col("AGE", 3, 5, 1),
    col("ERROR", 5, 80, 6),
];

const CHANGE_MS: u64 = 2000;

/// A run's changed cells and until when they stay highlighted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    pub columns: u16,
    pub until: Timestamp,
}

/// The runs view and the loading of runs (the list lives in the [`Store`]).
pub struct RunsView {
    pub load: Load,
    pub all: bool,
    pub filter: String,
    /// Indices into the store's runs of the rows shown, in order.
    pub visible: Vec<usize>,
    pub cursor: Cursor,
    pub changes: HashMap<String, Change>,
    /// Runs by status, for the header.
    pub counts: Vec<(RunStatus, usize)>,
    in_flight: HashSet<String>,
    stale: HashSet<String>,
    list_in_flight: bool,
}

impl Default for RunsView {
    fn default() -> RunsView {
        RunsView {
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
        }
    }
}

impl RunsView {
    /// The run under the cursor.
    pub fn selected<'s>(&self, store: &'s Store) -> Option<&'s Run> {
        self.visible
            .get(self.cursor.selected)
            .and_then(|i| store.runs.get(*i))
    }

    /// Puts the cursor on the run `name` if it is shown.
    pub fn select(&mut self, store: &Store, name: &str, page: usize) {
        if let Some(pos) = self
            .visible
            .iter()
            .position(|i| store.runs[*i].name == name)
        {
            self.cursor.selected = pos;
            self.cursor.scroll(self.visible.len(), page);
        }
    }

    /// The next moment a highlight ends.
    pub fn next_change_end(&self) -> Option<Timestamp> {
        self.changes.values().map(|c| c.until).min()
    }

    pub fn expire_changes(&mut self, now: Timestamp) {
        self.changes.retain(|_, c| c.until > now);
    }

    pub fn load_list(&mut self, ctx: &mut Ctx<'_>) {
        if !self.list_in_flight {
            self.list_in_flight = true;
            ctx.send(Command::LoadRuns { all: self.all });
        }
    }

    /// Loads one run again (one request in flight per run; later asks wait for its answer).
    pub fn load_run(&mut self, name: &str, ctx: &mut Ctx<'_>) {
        if self.in_flight.contains(name) {
            self.stale.insert(name.to_string());
        } else {
            self.in_flight.insert(name.to_string());
            ctx.send(Command::LoadRun {
                name: name.to_string(),
            });
        }
    }

    /// A new connection: nothing is in flight any more; load the list again.
    pub fn reconnected(&mut self, ctx: &mut Ctx<'_>) {
        self.list_in_flight = false;
        self.in_flight.clear();
        self.load_list(ctx);
    }

    fn upsert(&mut self, run: Run, ctx: &mut Ctx<'_>) {
        let store = &mut *ctx.store;
        match store.runs.iter().position(|r| r.name == run.name) {
            Some(i) => {
                let old = row_texts(store, ctx.now, &store.runs[i]);
                let new = row_texts(store, ctx.now, &run);
                let mut columns = 0u16;
                for (c, (a, b)) in old.iter().zip(new.iter()).enumerate() {
                    if a != b {
                        columns |= 1 << c;
                    }
                }
                if columns != 0 {
                    self.changes.insert(
                        run.name.clone(),
                        Change {
                            columns,
                            until: Timestamp(ctx.now.0 + CHANGE_MS),
                        },
                    );
                }
                store.runs[i] = run;
            }
            None => {
                // Newest first, as the daemon lists them.
                let pos = store
                    .runs
                    .iter()
                    .position(|r| (r.submitted_at, r.id) < (run.submitted_at, run.id))
                    .unwrap_or(store.runs.len());
                store.runs.insert(pos, run);
            }
        }
        if self.load != Load::Ready && !self.list_in_flight {
            self.load = Load::Ready;
        }
        self.refilter(ctx);
    }

    fn remove(&mut self, name: &str, ctx: &mut Ctx<'_>) {
        ctx.store.runs.retain(|r| r.name != name);
        self.changes.remove(name);
        self.refilter(ctx);
    }

    fn refilter(&mut self, ctx: &mut Ctx<'_>) {
        let runs = &ctx.store.runs;
        let keep = self
            .visible
            .get(self.cursor.selected)
            .and_then(|i| runs.get(*i))
            .map(|r| r.name.clone());
        let filter = self.filter.to_lowercase();
        self.visible = runs
            .iter()
            .enumerate()
            .filter(|(_, r)| filter.is_empty() || matches(r, &filter))
            .map(|(i, _)| i)
            .collect();
        let mut counts: Vec<(RunStatus, usize)> = Vec::new();
        for r in runs {
            match counts.iter_mut().find(|(s, _)| *s == r.status) {
                Some((_, n)) => *n += 1,
                None => counts.push((r.status, 1)),
            }
        }
        counts.sort_by_key(|(s, _)| status_rank(*s));
        self.counts = counts;
        if let Some(name) = keep {
            if let Some(pos) = self.visible.iter().position(|i| runs[*i].name == name) {
                self.cursor.selected = pos;
            }
        }
        let (len, page) = (self.visible.len(), ctx.page(View::Runs));
        self.cursor.move_by(0, len, page);
    }
}

impl Component for RunsView {
    fn view(&self) -> View {
        View::Runs
    }

    fn handle_key(&mut self, key: Key, ctx: &mut Ctx<'_>) -> Handled {
        let action = match self
            .cursor
            .table_key(View::Runs, key, self.visible.len(), ctx)
        {
            Ok(action) => action,
            Err(handled) => return handled,
        };
        match action {
            Action::DrillDown => {
                if let Some(run) = self.selected(ctx.store) {
                    let run = run.name.clone();
                    ctx.queue.push(Request::OpenJobs { run });
                }
            }
            Action::Logs | Action::Shell | Action::Stop | Action::Abort | Action::Delete => {
                if let Some(run) = self.selected(ctx.store) {
                    let request = run_actions::on_run(action, run, run.jobs.first(), None);
                    ctx.queue.extend(request);
                }
            }
            Action::ToggleAll => {
                self.all = !self.all;
                ctx.flash(
                    if self.all {
                        "showing all runs"
                    } else {
                        "showing active and recent runs"
                    },
                    false,
                );
                self.load_list(ctx);
            }
            Action::Refresh => self.load_list(ctx),
            _ => return Handled::Ignored,
        }
        Handled::Consumed
    }

    fn handle_msg(&mut self, msg: Msg, ctx: &mut Ctx<'_>) -> Handled {
        match msg {
            Msg::Runs(result) => {
                self.list_in_flight = false;
                match result {
                    Ok(list) => {
                        ctx.store.runs = list;
                        self.load = Load::Ready;
                        self.refilter(ctx);
                    }
                    Err(e) => self.load = Load::Failed(e),
                }
            }
            Msg::Run { name, result } => {
                self.in_flight.remove(&name);
                match result {
                    Ok(Some(run)) => self.upsert(run, ctx),
                    Ok(None) => self.remove(&name, ctx),
                    Err(_) => {} // the next event or reconnect loads it again
                }
                if self.stale.remove(&name) {
                    self.load_run(&name, ctx);
                }
            }
            Msg::Applied(run) => self.upsert(run, ctx),
            Msg::Deleted(name) => self.remove(&name, ctx),
            Msg::Event(e) => match e.kind.as_str() {
                "run" => self.load_run(&e.resource, ctx),
                // `run/replica/job`: the run's name may not contain `/`.
                "job" => self.load_run(e.resource.split('/').next().unwrap_or_default(), ctx),
                _ => return Handled::Ignored,
            },
            _ => return Handled::Ignored,
        }
        Handled::Consumed
    }

    fn filter(&self) -> &str {
        &self.filter
    }

    fn set_filter(&mut self, filter: String, ctx: &mut Ctx<'_>) {
        self.filter = filter;
        self.refilter(ctx);
    }

    fn title(&self, ctx: &DrawCtx<'_>) -> Vec<(String, Style)> {
        let scope = if self.all { "all" } else { "active & recent" };
        vec![(
            format!(
                "{scope} · {}",
                count(self.visible.len(), ctx.store.runs.len())
            ),
            ctx.theme.dim(),
        )]
    }

    fn draw(&self, buf: &mut Buffer, area: Rect, ctx: &DrawCtx<'_>) {
        draw(self, buf, area, ctx)
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

/// The texts of a run's row, in column order.
pub fn row_texts(store: &Store, now: Timestamp, run: &Run) -> [String; 8] {
    let first = run.jobs.first().map(|j| &j.current);
    let mut instances: Vec<&str> = run
        .jobs
        .iter()
        .filter_map(|j| j.current.instance.as_deref())
        .collect();
    instances.dedup();
    let instance = match instances.as_slice() {
        [] => "-".to_string(),
        [one] => (*one).to_string(),
        [one, rest @ ..] => format!("{one} +{}", rest.len()),
    };
    let gpu_count: usize = run.jobs.iter().map(|j| j.current.gpus.len()).sum();
    let inst = first.and_then(|s| store.find_instance(s.fleet.as_deref(), s.instance.as_deref()));
    let gpu_name = inst
        .and_then(|i| i.resources.gpus.first())
        .map(|g| (g.name.as_str(), g.memory_gb));
    let price = if run.status.is_finished() {
        "-".to_string()
    } else {
        let mut total = 0.0;
        let mut known = false;
        for j in &run.jobs {
            if let Some(i) =
                store.find_instance(j.current.fleet.as_deref(), j.current.instance.as_deref())
            {
                known = true;
                let share = if i.total_blocks > 1 {
                    f64::from(j.current.blocks) / f64::from(i.total_blocks)
                } else {
                    1.0
                };
                total += i.price * share;
            }
        }
        if known {
            cells::price(total)
        } else {
            "-".to_string()
        }
    };
    [
        cells::one_line(&run.name),
        cells::one_line(&run.user),
        run.status.to_string(),
        instance,
        cells::gpus(gpu_count, gpu_name),
        price,
        cells::age(run.submitted_at, now),
        cells::one_line(&error(run)),
    ]
}

/// Why a run failed or waits; empty when all is well.
pub fn error(run: &Run) -> String {
    let job = run.jobs.first().map(|j| &j.current);
    if run.status == RunStatus::Done {
        return String::new();
    }
    if let Some(reason) = run.termination_reason {
        let mut s = reason.to_string();
        if let Some(code) = job.and_then(|j| j.exit_code).filter(|c| *c != 0) {
            s.push_str(&format!(" (exit {code})"));
        }
        if let Some(m) = &run.status_message {
            s.push_str(": ");
            s.push_str(m);
        }
        return s;
    }
    if let Some(w) = job.and_then(|j| j.waiting_reason.as_deref()) {
        return w.to_string();
    }
    run.status_message.clone().unwrap_or_default()
}

/// Whether `run` matches a lowercase filter (name, user, status, instance).
pub fn matches(run: &Run, filter: &str) -> bool {
    contains_ci(&run.name, filter)
        || contains_ci(&run.user, filter)
        || run.status.as_str().contains(filter)
        || run.jobs.iter().any(|j| {
            j.current
                .instance
                .as_deref()
                .is_some_and(|i| contains_ci(i, filter))
        })
}

fn draw(r: &RunsView, buf: &mut Buffer, area: Rect, ctx: &DrawCtx<'_>) {
    let t = ctx.theme;
    let runs = &ctx.store.runs;
    if r.load != Load::Ready {
        let lines = match (&r.load, ctx.conn) {
            (_, Conn::Reconnecting { attempt, error }) => vec![
                (
                    format!("Cannot reach the daemon at {}", ctx.socket),
                    t.error(),
                ),
                (cells::one_line(error), t.dim()),
                (format!("Retrying (attempt {attempt})…"), t.dim()),
            ],
            (Load::Failed(e), _) => vec![
                ("Cannot list the runs".to_string(), t.error()),
                (cells::one_line(e), t.dim()),
                ("ctrl-r to try again".to_string(), t.dim()),
            ],
            _ => vec![("Loading runs…".to_string(), t.dim())],
        };
        draw_message(buf, area, &lines);
        return;
    }
    if r.visible.is_empty() {
        let lines = if runs.is_empty() {
            vec![
                ("No runs yet".to_string(), t.bold()),
                ("a: apply a configuration file".to_string(), t.dim()),
            ]
        } else {
            vec![
                (format!("No run matches /{}", r.filter), t.bold()),
                ("esc: clear the filter".to_string(), t.dim()),
            ]
        };
        draw_table(buf, area, t, &COLUMNS, &[], None);
        draw_message(buf, super::below(area, 1), &lines);
        return;
    }
    let page = usize::from(area.height.saturating_sub(1)).max(1);
    let offset = r.cursor.visible_offset(r.visible.len(), page);
    let end = (offset + page).min(r.visible.len());
    let rows: Vec<Vec<Cell>> = r.visible[offset..end]
        .iter()
        .map(|i| {
            let run = &runs[*i];
            let texts = row_texts(ctx.store, ctx.now, run);
            let changed = r
                .changes
                .get(&run.name)
                .filter(|c| c.until > ctx.now)
                .map(|c| c.columns)
                .unwrap_or(0);
            texts
                .into_iter()
                .enumerate()
                .map(|(c, text)| {
                    let mut style = match c {
                        2 => t.status(&text),
                        7 => t.error(),
                        1 | 6 => t.dim(),
                        _ => t.normal(),
                    };
                    if changed & (1 << c) != 0 {
                        style = style.patch(t.changed());
                    }
                    Cell::new(text, style)
                })
                .collect()
        })
        .collect();
    let selected = r.cursor.selected.checked_sub(offset);
    draw_table(buf, area, t, &COLUMNS, &rows, selected);
}
