//! The jobs view of one run (enter on a run): the run's detail and GPU sparkline on top, then
//! each job's current submission followed by its earlier ones.

use super::{below, col, draw_message, draw_table, run_actions, truncate, Cell, Column};
use crate::ui::cells;
use crate::ui::component::{Component, Ctx, Cursor, DrawCtx, Handled, Request};
use crate::ui::keys::{Action, Key, View};
use crate::ui::store::Store;
use flotilla_protocol::model::{Job, JobSubmission, Run};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;

pub const COLUMNS: [Column; 9] = [
    col("JOB", 3, 24, 0),
    col("SUB", 3, 4, 5),
    col("STATUS", 6, 19, 0),
    col("INSTANCE", 8, 20, 2),
    col("GPUS", 4, 12, 4),
    col("BLOCKS", 6, 6, 6),
    col("AGE", 3, 5, 1),
    col("EXIT", 4, 4, 3),
    col("REASON", 6, 80, 7),
];

/// Lines of run detail above the table.
use crate::ui::layout::DETAIL_ROWS;

/// A row of the jobs view: a job's current submission, or an earlier one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobRow {
    pub job: usize,
    /// Index into `previous_submissions`; `None` for the current submission.
    pub previous: Option<usize>,
}

/// The jobs of one run (the run itself lives in the store).
#[derive(Default)]
pub struct JobsView {
    pub run: String,
    pub filter: String,
    pub cursor: Cursor,
}

impl JobsView {
    /// Shows the jobs of `run`, from the top, unfiltered.
    pub fn show(&mut self, run: String) {
        self.run = run;
        self.cursor = Cursor::default();
        self.filter.clear();
    }

    /// The rows: each job, then its earlier submissions, newest first.
    pub fn rows(&self, store: &Store) -> Vec<JobRow> {
        let Some(run) = store.run_named(&self.run) else {
            return Vec::new();
        };
        let filter = self.filter.to_lowercase();
        let mut rows = Vec::new();
        for (j, job) in run.jobs.iter().enumerate() {
            let mut push = |previous: Option<usize>, sub: &JobSubmission| {
                if filter.is_empty() || row_text(job, sub).to_lowercase().contains(&filter) {
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

    /// The job under the cursor and which submission of it (`None`: the current one).
    fn selected<'s>(&self, store: &'s Store) -> Option<(&'s Run, &'s Job, Option<u32>)> {
        let run = store.run_named(&self.run)?;
        let row = *self.rows(store).get(self.cursor.selected)?;
        let job = run.jobs.get(row.job)?;
        match row.previous {
            None => Some((run, job, None)),
            Some(p) => {
                let sub = job.previous_submissions.get(p)?;
                Some((run, job, Some(sub.submission_num)))
            }
        }
    }
}

impl Component for JobsView {
    fn view(&self) -> View {
        View::Jobs
    }

    fn handle_key(&mut self, key: Key, ctx: &mut Ctx<'_>) -> Handled {
        let len = self.rows(ctx.store).len();
        let action = match self.cursor.table_key(View::Jobs, key, len, ctx) {
            Ok(action) => action,
            Err(handled) => return handled,
        };
        match action {
            Action::Logs | Action::Shell => {
                if let Some((run, job, submission)) = self.selected(ctx.store) {
                    let requests = run_actions::on_run(action, run, Some(job), submission);
                    ctx.queue.extend(requests);
                }
            }
            Action::Stop | Action::Abort | Action::Delete => {
                if let Some(run) = ctx.store.run_named(&self.run) {
                    let requests = run_actions::on_run(action, run, None, None);
                    ctx.queue.extend(requests);
                }
            }
            Action::Refresh => ctx.queue.push(Request::ReloadRuns),
            _ => return Handled::Ignored,
        }
        Handled::Consumed
    }

    fn filter(&self) -> &str {
        &self.filter
    }

    fn set_filter(&mut self, filter: String, _ctx: &mut Ctx<'_>) {
        self.filter = filter;
        self.cursor = Cursor::default();
    }

    fn crumb(&self) -> String {
        format!(" {} ‹{}› ", View::Jobs.name(), self.run)
    }

    fn title(&self, _ctx: &DrawCtx<'_>) -> Vec<(String, Style)> {
        Vec::new()
    }

    fn draw(&self, buf: &mut Buffer, area: Rect, ctx: &DrawCtx<'_>) {
        draw(self, buf, area, ctx)
    }
}

/// The searchable text of a row.
pub fn row_text(job: &Job, sub: &JobSubmission) -> String {
    format!(
        "{} {} {} {}",
        job.job_name,
        sub.status,
        sub.instance.as_deref().unwrap_or(""),
        sub.termination_reason.map(|r| r.as_str()).unwrap_or("")
    )
}

fn texts(ctx: &DrawCtx<'_>, job: &Job, sub: &JobSubmission, previous: bool) -> [String; 9] {
    let name = if previous {
        format!("  └ #{}", sub.submission_num)
    } else {
        format!(
            "{} ({}/{})",
            cells::one_line(&job.job_name),
            job.replica_num,
            job.job_num
        )
    };
    let gpus = if sub.gpus.is_empty() {
        "-".to_string()
    } else {
        sub.gpus
            .iter()
            .map(|g| g.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let inst = ctx
        .store
        .find_instance(sub.fleet.as_deref(), sub.instance.as_deref());
    let blocks = match inst {
        Some(i) if i.total_blocks > 0 => format!("{}/{}", sub.blocks, i.total_blocks),
        _ => sub.blocks.to_string(),
    };
    let reason = sub
        .termination_reason
        .map(|r| {
            let mut s = r.to_string();
            if let Some(m) = &sub.termination_message {
                s.push_str(": ");
                s.push_str(m);
            }
            s
        })
        .or_else(|| sub.waiting_reason.clone())
        .unwrap_or_default();
    [
        name,
        sub.submission_num.to_string(),
        match sub.ready {
            Some(true) => format!("{} (ready)", sub.status),
            Some(false) => format!("{} (not ready)", sub.status),
            None => sub.status.to_string(),
        },
        sub.instance.clone().unwrap_or_else(|| "-".into()),
        gpus,
        blocks,
        cells::age(sub.started_at.unwrap_or(sub.submitted_at), ctx.now),
        sub.exit_code
            .map(|c| c.to_string())
            .unwrap_or_else(|| "-".into()),
        cells::one_line(&reason),
    ]
}

fn draw(v: &JobsView, buf: &mut Buffer, area: Rect, ctx: &DrawCtx<'_>) {
    let t = ctx.theme;
    let Some(run) = ctx.store.run_named(&v.run) else {
        draw_message(buf, area, &[(format!("Loading run {}…", v.run), t.dim())]);
        return;
    };
    // A service's endpoint: its URL, or why there is none.
    let endpoint = match &run.service {
        Some(s) if s.error.is_some() => vec![(
            format!("  no URL: {}", s.error.as_deref().unwrap_or_default()),
            t.error(),
        )],
        Some(s) => vec![
            ("  url ".to_string(), t.dim()),
            (s.url.clone(), t.normal()),
            (
                s.model
                    .as_ref()
                    .map(|m| format!("  model {} at {}", m.name, m.base_url))
                    .unwrap_or_default(),
                t.dim(),
            ),
        ],
        None => vec![],
    };
    // Detail: what the run is, how it is doing, its GPUs, its endpoint.
    let detail = [
        vec![
            (format!("{} ", run.name), t.bold()),
            (format!("{} ", run.configuration_type), t.dim()),
            (run.status.to_string(), t.status(run.status.as_str())),
            (
                format!(
                    "  user {}  submitted {} ago",
                    run.user,
                    cells::age(run.submitted_at, ctx.now)
                ),
                t.dim(),
            ),
        ],
        vec![(cells::one_line(&super::runs::error(run)), t.error())],
        match ctx
            .store
            .metrics
            .get(&format!("run:{}", run.name))
            .filter(|v| !v.is_empty())
        {
            Some(values) => vec![
                ("GPU ".to_string(), t.dim()),
                (cells::sparkline(values, 40), t.good()),
                (
                    format!(" {:.0}%", values.last().copied().unwrap_or(0.0)),
                    t.normal(),
                ),
            ],
            None => vec![],
        }
        .into_iter()
        .chain(endpoint)
        .collect(),
        // How to reach it: the ports `attach` forwards, `ssh RUN`, the IDE link.
        vec![(crate::run_access::access_line(run), t.dim())],
    ];
    for (i, spans) in detail.iter().enumerate() {
        let y = area.y + i as u16;
        if y >= area.y + area.height {
            return;
        }
        let mut x = area.x;
        for (text, style) in spans {
            let room = (area.x + area.width).saturating_sub(x);
            if room == 0 {
                break;
            }
            let text = truncate(text, room.into());
            buf.set_stringn(x, y, &text, room.into(), *style);
            x += cells::width(&text) as u16;
        }
    }
    let table = below(area, DETAIL_ROWS);
    let rows = v.rows(ctx.store);
    let page = usize::from(table.height.saturating_sub(1)).max(1);
    let offset = v.cursor.visible_offset(rows.len(), page);
    let end = (offset + page).min(rows.len());
    let cells: Vec<Vec<Cell>> = rows[offset..end]
        .iter()
        .filter_map(|row| {
            let job = run.jobs.get(row.job)?;
            let (sub, previous) = match row.previous {
                None => (&job.current, false),
                Some(p) => (job.previous_submissions.get(p)?, true),
            };
            Some(
                texts(ctx, job, sub, previous)
                    .into_iter()
                    .enumerate()
                    .map(|(c, text)| {
                        let style = match c {
                            2 => t.status(&text),
                            8 => t.error(),
                            _ if previous => t.dim(),
                            _ => t.normal(),
                        };
                        Cell::new(text, style)
                    })
                    .collect(),
            )
        })
        .collect();
    let selected = v.cursor.selected.checked_sub(offset);
    draw_table(buf, table, t, &COLUMNS, &cells, selected);
}
