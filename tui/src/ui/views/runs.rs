//! The runs view: one row per run (name, user, status, instance, GPU, price, age, error), the
//! cells that just changed highlighted; only the rows on screen are formatted.

use super::{col, draw_message, draw_table, Cell, Column};
use crate::ui::app::{App, Conn, Load};
use crate::ui::cells;
use crate::ui::log_window::contains_ci;
use flotilla_protocol::model::{Instance, Run, RunStatus};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;

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

/// The instance a job runs on, from the fleets list.
pub fn find_instance<'a>(
    app: &'a App,
    fleet: Option<&str>,
    name: Option<&str>,
) -> Option<&'a Instance> {
    let (fleet, name) = (fleet?, name?);
    app.fleets
        .list
        .iter()
        .find(|f| f.name == fleet)?
        .instances
        .iter()
        .find(|i| i.name == name)
}

/// The texts of a run's row, in column order.
pub fn row_texts(app: &App, run: &Run) -> [String; 8] {
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
    let inst = first.and_then(|s| find_instance(app, s.fleet.as_deref(), s.instance.as_deref()));
    let gpu_name = inst
        .and_then(|i| i.resources.gpus.first())
        .map(|g| (g.name.as_str(), g.memory_gb));
    let price = if run.status.is_finished() {
        "-".to_string()
    } else {
        let mut total = 0.0;
        let mut known = false;
        for j in &run.jobs {
            if let Some(i) = find_instance(
                app,
                j.current.fleet.as_deref(),
                j.current.instance.as_deref(),
            ) {
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
        cells::age(run.submitted_at, app.now),
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

pub fn draw(buf: &mut Buffer, area: Rect, app: &App) {
    let t = &app.theme;
    let r = &app.runs;
    if r.load != Load::Ready {
        let lines = match (&r.load, &app.conn) {
            (_, Conn::Reconnecting { attempt, error }) => vec![
                (
                    format!("Cannot reach the daemon at {}", app.socket),
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
        let lines = if r.list.is_empty() {
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
            let run = &r.list[*i];
            let texts = row_texts(app, run);
            let changed = r
                .changes
                .get(&run.name)
                .filter(|c| c.until > app.now)
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
