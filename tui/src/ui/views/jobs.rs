//! The jobs view of one run (enter on a run): the run's detail and GPU sparkline on top, then
//! each job's current submission followed by its earlier ones.

use super::{below, col, draw_message, draw_table, truncate, Cell, Column};
use crate::ui::app::App;
use crate::ui::cells;
use flotilla_protocol::model::{Job, JobSubmission};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;

pub const COLUMNS: [Column; 9] = [
    col("JOB", 3, 24, 0),
    col("SUB", 3, 4, 5),
    col("STATUS", 6, 12, 0),
    col("INSTANCE", 8, 20, 2),
    col("GPUS", 4, 12, 4),
    col("BLOCKS", 6, 6, 6),
    col("AGE", 3, 5, 1),
    col("EXIT", 4, 4, 3),
    col("REASON", 6, 80, 7),
];

/// Lines of run detail above the table.
pub const DETAIL_ROWS: u16 = 3;

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

fn texts(app: &App, job: &Job, sub: &JobSubmission, previous: bool) -> [String; 9] {
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
    let inst = super::runs::find_instance(app, sub.fleet.as_deref(), sub.instance.as_deref());
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
        sub.status.to_string(),
        sub.instance.clone().unwrap_or_else(|| "-".into()),
        gpus,
        blocks,
        cells::age(sub.started_at.unwrap_or(sub.submitted_at), app.now),
        sub.exit_code
            .map(|c| c.to_string())
            .unwrap_or_else(|| "-".into()),
        cells::one_line(&reason),
    ]
}

pub fn draw(buf: &mut Buffer, area: Rect, app: &App) {
    let t = &app.theme;
    let Some(run) = app.run_named(&app.jobs.run) else {
        draw_message(
            buf,
            area,
            &[(format!("Loading run {}…", app.jobs.run), t.dim())],
        );
        return;
    };
    // Detail: what the run is, how it is doing, its GPUs.
    let detail = [
        vec![
            (format!("{} ", run.name), t.bold()),
            (format!("{} ", run.configuration_type), t.dim()),
            (run.status.to_string(), t.status(run.status.as_str())),
            (
                format!(
                    "  user {}  submitted {} ago",
                    run.user,
                    cells::age(run.submitted_at, app.now)
                ),
                t.dim(),
            ),
        ],
        vec![(cells::one_line(&super::runs::error(run)), t.error())],
        match app
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
        },
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
    let rows = app.job_rows();
    let page = usize::from(table.height.saturating_sub(1)).max(1);
    let offset = app.jobs.cursor.visible_offset(rows.len(), page);
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
                texts(app, job, sub, previous)
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
    let selected = app.jobs.cursor.selected.checked_sub(offset);
    draw_table(buf, table, t, &COLUMNS, &cells, selected);
}
