//! Frame cost of the dashboard: the runs view with 10,000 runs drawn at 200x50 (goal: under
//! 5 ms a frame), the log view with a full window, and a keystroke of filtering 10,000 runs.
//!
//! `cargo bench -p flotilla-tui --bench render`

use criterion::{criterion_group, criterion_main, Criterion};
use flotilla_protocol::model::{Fleet, Run};
use flotilla_protocol::rpc::HelloResult;
use flotilla_protocol::Timestamp;
use flotilla_tui::ui;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::Terminal;
use std::hint::black_box;
use ui::app::{App, LogRead, Msg};
use ui::keys::Key;
use ui::theme::Theme;

const NOW: Timestamp = Timestamp(1_795_000_000_000);

fn configuration() -> serde_json::Value {
    let yaml = "type: task\ncommands: [python train.py]\nresources: {cpu: 1.., memory: 1GB.., disk: 1GB..}\n";
    let config = flotilla_protocol::config::parse_configuration("bench.yml", yaml)
        .ok()
        .and_then(|c| c.as_run())
        .expect("a valid configuration");
    serde_json::to_value(config).expect("serializable")
}

fn runs(n: usize) -> Vec<Run> {
    let config = configuration();
    let statuses = ["running", "done", "failed", "submitted", "terminated"];
    (0..n)
        .map(|i| {
            let status = statuses[i % statuses.len()];
            let placed = status != "submitted";
            let job_status = if status == "failed" { "failed" } else { status };
            let v = serde_json::json!({
                "id": n - i,
                "name": format!("run-{i:05}"),
                "user": if i % 3 == 0 { "ana" } else { "bo" },
                "uid": 1000,
                "status": status,
                "termination_reason": if status == "failed" { Some("job_failed") } else { None },
                "status_message": null,
                "submitted_at": Timestamp(NOW.0 - (i as u64) * 60_000),
                "finished_at": null,
                "configuration_type": "task",
                "configuration_path": null,
                "configuration": config,
                "jobs": [{
                    "replica_num": 0, "job_num": 0, "job_name": format!("run-{i:05}-0-0"),
                    "id": i, "submission_num": 0, "status": job_status,
                    "termination_reason": null, "termination_message": null,
                    "exit_code": if status == "failed" { Some(1) } else { None },
                    "instance": if placed { Some(format!("node-{}", i % 16)) } else { None },
                    "instance_id": null,
                    "fleet": if placed { Some("lab") } else { None },
                    "gpus": if placed { vec![i % 8] } else { vec![] },
                    "blocks": 1,
                    "submitted_at": Timestamp(NOW.0 - (i as u64) * 60_000),
                    "started_at": null, "finished_at": null,
                    "waiting_reason": if placed { None } else { Some("no fleet has a free block") },
                }],
            });
            serde_json::from_value(v).expect("run fixture")
        })
        .collect()
}

fn fleets() -> Vec<Fleet> {
    let instances: Vec<serde_json::Value> = (0..16)
        .map(|i| {
            serde_json::json!({
                "id": i, "name": format!("node-{i}"), "fleet": "lab", "instance_num": i,
                "status": "busy", "unreachable": false, "termination_reason": null,
                "backend": "ssh", "region": "-", "hostname": null, "price": 12.0,
                "resources": {"cpus": 96, "memory_gb": 1024.0, "disk_gb": 2000.0,
                    "gpus": (0..8).map(|_| serde_json::json!({"name": "H100", "memory_gb": 80.0})).collect::<Vec<_>>()},
                "total_blocks": 8, "busy_blocks": 8,
                "created_at": Timestamp(NOW.0 - 86_400_000), "error": null,
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!([{
        "id": 1, "name": "lab", "status": "active", "user": "ana",
        "created_at": Timestamp(NOW.0 - 86_400_000), "configuration": null,
        "instances": instances,
    }]))
    .expect("fleet fixture")
}

fn app(runs: Vec<Run>) -> App {
    let mut app = App::new(
        "/run/user/1000/flotilla/flotilla.sock".into(),
        Theme { color: true },
        NOW,
    );
    app.set_size(200, 50);
    app.handle_msg(Msg::Connected(HelloResult {
        protocol: "1.0".into(),
        daemon_version: "0.1.0".into(),
        user: "ana".into(),
        uid: 1000,
        admin: true,
    }));
    app.handle_msg(Msg::Fleets(Ok(fleets())));
    app.handle_msg(Msg::Runs(Ok(runs)));
    app.take_commands();
    app
}

fn bench_runs_view(c: &mut Criterion) {
    let mut app = app(runs(10_000));
    // Somewhere in the middle of the list.
    app.runs.cursor.selected = 5_000;
    app.runs.cursor.offset = 4_990;
    let mut terminal = Terminal::new(TestBackend::new(200, 50)).expect("test terminal");
    c.bench_function(
        "runs view, 10k runs, 200x50, Terminal<TestBackend>::draw",
        |b| {
            b.iter(|| {
                terminal
                    .draw(|f| ui::render::draw(f, black_box(&app)))
                    .expect("draw");
            })
        },
    );
    let area = Rect::new(0, 0, 200, 50);
    let mut buf = Buffer::empty(area);
    c.bench_function("runs view, 10k runs, 200x50, into a buffer", |b| {
        b.iter(|| {
            buf.reset();
            ui::render::draw_into(&mut buf, area, black_box(&app));
        })
    });
    c.bench_function("filter keystroke over 10k runs", |b| {
        b.iter(|| {
            app.handle_key(Key::ch('/'));
            app.handle_key(Key::ch('7'));
            app.handle_key(Key::plain(ratatui::crossterm::event::KeyCode::Esc));
        })
    });
}

fn bench_logs_view(c: &mut Criterion) {
    let mut app = app(runs(10));
    app.handle_key(Key::ch('l'));
    let session = match app.take_commands().first() {
        Some(ui::app::Command::OpenLog { session, .. }) => *session,
        _ => panic!("no log opened"),
    };
    let text: String = (0..60_000)
        .map(|i| {
            format!(
                "2026-11-18 step {i}: loss {:.5} lr 0.0003 tokens/s 123456 error-free\n",
                1.0 / f64::from(i + 1)
            )
        })
        .collect();
    let size = text.len() as u64;
    app.handle_msg(Msg::LogRead {
        session,
        purpose: LogRead::Tail,
        offset: 0,
        bytes: text.into_bytes(),
        size,
    });
    app.handle_key(Key::ch('w'));
    app.handle_key(Key::ch('t'));
    app.handle_key(Key::ch('/'));
    for c in "loss 0.0".chars() {
        app.handle_key(Key::ch(c));
    }
    let area = Rect::new(0, 0, 200, 50);
    let mut buf = Buffer::empty(area);
    c.bench_function(
        "log view, 50k-line window, wrap + timestamps + search, 200x50",
        |b| {
            b.iter(|| {
                buf.reset();
                ui::render::draw_into(&mut buf, area, black_box(&app));
            })
        },
    );
    // 10,000 lines a second arrive as 20 batches of 500 lines.
    let batch: String = (0..500)
        .map(|i| format!("live line {i} with some text after it\n"))
        .collect();
    let mut offset = size;
    c.bench_function("append a 50 ms batch of 500 lines (10k lines/s)", |b| {
        b.iter(|| {
            let bytes = batch.clone().into_bytes();
            let n = bytes.len() as u64;
            app.handle_msg(Msg::LogAppend {
                session,
                offset,
                bytes,
                arrived: NOW,
            });
            offset += n;
        })
    });
}

criterion_group!(benches, bench_runs_view, bench_logs_view);
criterion_main!(benches);
