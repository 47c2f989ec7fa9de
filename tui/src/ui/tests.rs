//! Tests of the dashboard without a terminal: snapshots of rendered screens (ratatui's
//! `TestBackend` + insta, fixed clock) and key handling (key in, state and commands out).

use super::app::{App, Command, Conn, LogRead, Msg, Overlay};
use super::keys::{Key, View};
use super::render;
use super::theme::Theme;
use flotilla_protocol::config::{parse_configuration, RunConfiguration};
use flotilla_protocol::model::{
    Event, Fleet, FleetStatus, Gpu, Instance, InstanceResources, InstanceStatus, Job, JobStatus,
    JobSubmission, JobTerminationReason, Run, RunStatus, RunTerminationReason,
};
use flotilla_protocol::rpc::{GpuSample, GpuSeries, HelloResult, MetricsResult};
use flotilla_protocol::Timestamp;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyModifiers};
use ratatui::style::Color;
use ratatui::Terminal;

/// 2026-11-18T11:06:40Z: the fixed "now" of every test.
const NOW: Timestamp = Timestamp(1_795_000_000_000);

fn ago(secs: u64) -> Timestamp {
    Timestamp(NOW.0 - secs * 1000)
}

fn config(name: &str) -> RunConfiguration {
    let yaml = format!(
        "type: task\nname: {name}\nenv:\n  - MODEL=llama\ncommands:\n  - python train.py\nresources:\n  cpu: 1..\n  memory: 1GB..\n  disk: 1GB..\n"
    );
    parse_configuration("task.yml", &yaml)
        .expect("valid fixture")
        .as_run()
        .expect("a run configuration")
}

/// Fixtures go through JSON, as the daemon sends them (new optional fields keep their defaults).
fn from_json<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("fixture matches the model")
}

fn submission(
    status: JobStatus,
    fleet: Option<&str>,
    instance: Option<&str>,
    submitted: u64,
) -> JobSubmission {
    from_json(serde_json::json!({
        "id": 7,
        "submission_num": 0,
        "status": status,
        "termination_reason": null,
        "termination_message": null,
        "exit_code": null,
        "instance": instance,
        "instance_id": 1,
        "fleet": fleet,
        "gpus": if instance.is_some() { vec![0] } else { vec![] },
        "blocks": 1,
        "submitted_at": ago(submitted),
        "started_at": instance.map(|_| ago(submitted.saturating_sub(2))),
        "finished_at": null,
        "job_dir": instance.map(|_| "/tmp/flotilla-test/jobs/7"),
    }))
}

fn run(name: &str, status: RunStatus, submitted: u64) -> Run {
    let job_status = match status {
        RunStatus::Running => JobStatus::Running,
        RunStatus::Done => JobStatus::Done,
        RunStatus::Failed => JobStatus::Failed,
        RunStatus::Terminated => JobStatus::Terminated,
        _ => JobStatus::Submitted,
    };
    let placed = !matches!(status, RunStatus::Submitted | RunStatus::Pending);
    let mut sub = submission(
        job_status,
        placed.then_some("local"),
        placed.then_some("local-0"),
        submitted,
    );
    let mut termination_reason = None;
    if status == RunStatus::Failed {
        sub.exit_code = Some(3);
        sub.termination_reason = Some(JobTerminationReason::ContainerExitedWithError);
        termination_reason = Some(RunTerminationReason::JobFailed);
    }
    if status == RunStatus::Submitted {
        sub.waiting_reason = Some("no fleet has a free block".into());
    }
    let mut r: Run = from_json(serde_json::json!({
        "id": submitted,
        "name": name,
        "user": "ana",
        "uid": 1000,
        "status": status,
        "termination_reason": termination_reason,
        "status_message": null,
        "submitted_at": ago(submitted),
        "finished_at": null,
        "configuration_type": "task",
        "configuration_path": null,
        "configuration": config(name),
        "jobs": [],
    }));
    r.jobs.push(Job {
        replica_num: 0,
        job_num: 0,
        job_name: format!("{name}-0-0"),
        current: sub,
        previous_submissions: vec![],
    });
    r
}

fn instance(
    name: &str,
    fleet: &str,
    status: InstanceStatus,
    busy: u32,
    price: f64,
    gpus: usize,
) -> Instance {
    let gpu_list: Vec<Gpu> = (0..gpus)
        .map(|_| Gpu {
            name: "A100".into(),
            memory_gb: 80.0,
            vendor: flotilla_protocol::config::GpuVendor::Nvidia,
        })
        .collect();
    from_json(serde_json::json!({
        "id": 1,
        "name": name,
        "fleet": fleet,
        "instance_num": 0,
        "status": status,
        "unreachable": false,
        "termination_reason": null,
        "backend": if fleet == "local" { "local" } else { "ssh" },
        "region": "-",
        "hostname": null,
        "price": price,
        "resources": InstanceResources {
            cpus: 16,
            cpu_arch: flotilla_protocol::config::CpuArch::X86,
            memory_gb: 64.0,
            disk_gb: Some(500.0),
            gpus: gpu_list,
        },
        "total_blocks": gpus.max(1),
        "busy_blocks": busy,
        "created_at": ago(7200),
        "error": null,
    }))
}

fn fleets() -> Vec<Fleet> {
    let fleet = |name: &str, created: u64, instances: Vec<Instance>| -> Fleet {
        from_json(serde_json::json!({
            "id": 1,
            "name": name,
            "status": FleetStatus::Active,
            "user": "ana",
            "created_at": ago(created),
            "configuration": null,
            "instances": instances,
        }))
    };
    vec![
        fleet(
            "local",
            86_400,
            vec![instance(
                "local-0",
                "local",
                InstanceStatus::Busy,
                1,
                0.0,
                2,
            )],
        ),
        fleet(
            "lab",
            3600,
            vec![
                instance("lab-0", "lab", InstanceStatus::Idle, 0, 2.5, 8),
                instance("lab-1", "lab", InstanceStatus::Busy, 8, 2.5, 8),
            ],
        ),
    ]
}

fn hello() -> HelloResult {
    HelloResult {
        protocol: "1.0".into(),
        daemon_version: "0.1.0".into(),
        user: "ana".into(),
        uid: 1000,
        admin: true,
    }
}

/// A connected app with `runs` and the fixture fleets, commands from loading cleared.
fn app_with(runs: Vec<Run>) -> App {
    let mut app = App::new(
        "/run/user/1000/flotilla/flotilla.sock".into(),
        Theme { color: true },
        NOW,
    );
    app.version = "0.1.0";
    app.set_size(100, 20);
    app.handle_msg(Msg::Connected(hello()));
    app.handle_msg(Msg::Fleets(Ok(fleets())));
    app.handle_msg(Msg::Runs(Ok(runs)));
    app.handle_msg(Msg::Events(Ok(vec![])));
    app.take_commands();
    app
}

fn sample_runs() -> Vec<Run> {
    vec![
        run("train-llama", RunStatus::Running, 95),
        run("eval-7b", RunStatus::Submitted, 30),
        run("sweep-3", RunStatus::Failed, 4000),
        run("hello", RunStatus::Done, 90_000),
    ]
}

fn screen(app: &mut App, w: u16, h: u16) -> String {
    app.set_size(w, h);
    let mut term = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
    term.draw(|f| render::draw(f, app)).expect("draw");
    term.backend().to_string()
}

fn buffer(app: &mut App, w: u16, h: u16) -> ratatui::buffer::Buffer {
    app.set_size(w, h);
    let mut term = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
    term.draw(|f| render::draw(f, app)).expect("draw");
    term.backend().buffer().clone()
}

fn press(app: &mut App, key: &str) {
    let k = match key {
        "enter" => Key::plain(KeyCode::Enter),
        "esc" => Key::plain(KeyCode::Esc),
        "tab" => Key::plain(KeyCode::Tab),
        "backspace" => Key::plain(KeyCode::Backspace),
        "down" => Key::plain(KeyCode::Down),
        "up" => Key::plain(KeyCode::Up),
        k if k.starts_with("ctrl-") => Key::ctrl(k.chars().last().expect("a letter")),
        k => {
            let mut chars = k.chars();
            let c = chars.next().expect("a key");
            assert!(chars.next().is_none(), "unknown key {k}");
            Key::ch(c)
        }
    };
    app.handle_key(k);
}

fn typ(app: &mut App, text: &str) {
    for c in text.chars() {
        app.handle_key(Key::ch(c));
    }
}

// ------------------------------------------------------------------ snapshots

#[test]
fn snapshot_runs_empty() {
    let mut app = app_with(vec![]);
    insta::assert_snapshot!(screen(&mut app, 100, 20));
}

#[test]
fn snapshot_runs_loading() {
    let mut app = App::new("/tmp/fl/s".into(), Theme { color: true }, NOW);
    app.version = "0.1.0";
    insta::assert_snapshot!(screen(&mut app, 100, 20));
}

#[test]
fn snapshot_runs_daemon_unreachable() {
    let mut app = App::new("/tmp/fl/s".into(), Theme { color: true }, NOW);
    app.version = "0.1.0";
    app.handle_msg(Msg::Disconnected {
        attempt: 3,
        error: "cannot connect to the daemon at /tmp/fl/s: Connection refused (os error 111)"
            .into(),
    });
    insta::assert_snapshot!(screen(&mut app, 100, 20));
}

#[test]
fn snapshot_runs_reconnecting_keeps_the_last_rows() {
    let mut app = app_with(sample_runs());
    app.handle_msg(Msg::Disconnected {
        attempt: 1,
        error: "the daemon closed the connection".into(),
    });
    insta::assert_snapshot!(screen(&mut app, 100, 20));
}

#[test]
fn snapshot_runs_narrow_60x15() {
    let mut app = app_with(sample_runs());
    insta::assert_snapshot!(screen(&mut app, 60, 15));
}

#[test]
fn snapshot_runs_many_rows_scrolled() {
    let runs: Vec<Run> = (0..300)
        .map(|i| {
            let status = [RunStatus::Running, RunStatus::Done, RunStatus::Failed][i % 3];
            run(&format!("run-{i:03}"), status, 60 * i as u64 + 5)
        })
        .collect();
    let mut app = app_with(runs);
    app.set_size(120, 30);
    for _ in 0..40 {
        press(&mut app, "j");
    }
    insta::assert_snapshot!(screen(&mut app, 120, 30));
}

#[test]
fn snapshot_jobs_of_a_run() {
    let mut app = app_with(sample_runs());
    press(&mut app, "j");
    press(&mut app, "j");
    press(&mut app, "enter");
    assert_eq!(app.view(), View::Jobs);
    insta::assert_snapshot!(screen(&mut app, 100, 15));
}

#[test]
fn snapshot_fleets_with_sparklines() {
    let mut app = app_with(sample_runs());
    typ(&mut app, ":fleets");
    press(&mut app, "enter");
    let samples: Vec<GpuSample> = [0.0, 10.0, 35.0, 60.0, 90.0, 100.0, 80.0, 40.0]
        .iter()
        .enumerate()
        .map(|(i, u)| GpuSample {
            time: Timestamp(NOW.0 - 8000 + i as u64 * 1000),
            util_percent: *u,
            memory_used_gb: 10.0,
            memory_total_gb: 80.0,
        })
        .collect();
    app.handle_msg(Msg::Metrics {
        key: "local/local-0".into(),
        result: Ok(MetricsResult {
            series: vec![GpuSeries {
                instance: "local/local-0".into(),
                gpu: 0,
                samples,
            }],
        }),
    });
    insta::assert_snapshot!(screen(&mut app, 120, 14));
}

#[test]
fn snapshot_events() {
    let mut app = app_with(sample_runs());
    press(&mut app, ":");
    typ(&mut app, "ev");
    press(&mut app, "enter");
    for (seq, (res, old, new)) in [
        ("train-llama", None, Some("submitted")),
        ("train-llama/0/0", Some("submitted"), Some("running")),
        ("sweep-3", Some("running"), Some("failed")),
    ]
    .into_iter()
    .enumerate()
    {
        app.handle_msg(Msg::Event(Event {
            seq: seq as u64 + 1,
            time: ago(60 - seq as u64 * 10),
            kind: if res.contains('/') {
                "job".into()
            } else {
                "run".into()
            },
            resource: res.into(),
            old_status: old.map(str::to_string),
            new_status: new.map(str::to_string),
            reason: (new == Some("failed")).then(|| "job_failed".to_string()),
            message: None,
        }));
    }
    insta::assert_snapshot!(screen(&mut app, 100, 12));
}

fn app_with_log() -> App {
    let mut app = app_with(sample_runs());
    press(&mut app, "l");
    let session = match app.take_commands().as_slice() {
        [Command::OpenLog { session, .. }] => *session,
        other => panic!("expected OpenLog, got {other:?}"),
    };
    let history: String = (1..=30)
        .map(|i| {
            if i % 7 == 0 {
                format!("step {i}: ERROR loss is nan\n")
            } else {
                format!("step {i}: loss {:.3}\n", 1.0 / f64::from(i))
            }
        })
        .collect();
    let size = history.len() as u64;
    app.handle_msg(Msg::LogRead {
        session,
        purpose: LogRead::Tail,
        offset: 0,
        bytes: history.into_bytes(),
        size,
    });
    app.handle_msg(Msg::LogAppend {
        session,
        offset: size,
        bytes: b"step 31: live line, error again\nstep 32: partial".to_vec(),
        arrived: Timestamp(NOW.0 - 1500),
    });
    app
}

#[test]
fn snapshot_logs_with_search_highlight() {
    let mut app = app_with_log();
    app.set_size(80, 16);
    press(&mut app, "t");
    press(&mut app, "/");
    typ(&mut app, "error");
    press(&mut app, "enter");
    // From the end, the first match is step 21; `n` goes to step 28, near the live lines.
    press(&mut app, "n");
    assert_eq!(app.logs.as_ref().and_then(|l| l.current_match), Some(27));
    let text = screen(&mut app, 80, 16);
    insta::assert_snapshot!(text);
    // The matches are highlighted: the cells of `ERROR` on a matching line have the match style.
    let buf = buffer(&mut app, 80, 16);
    let theme = Theme { color: true };
    let mut highlighted = 0;
    for y in 0..16 {
        for x in 0..80 {
            if buf[(x, y)].bg == theme.matched().bg.unwrap_or(Color::Reset)
                && buf[(x, y)].bg != Color::Reset
            {
                highlighted += 1;
            }
        }
    }
    assert!(highlighted >= 10, "{highlighted} highlighted cells");
}

#[test]
fn snapshot_help_screen() {
    let mut app = app_with(sample_runs());
    press(&mut app, "?");
    insta::assert_snapshot!(screen(&mut app, 100, 40));
}

#[test]
fn snapshot_stop_confirmation() {
    let mut app = app_with(sample_runs());
    press(&mut app, "ctrl-s");
    insta::assert_snapshot!(screen(&mut app, 100, 20));
}

#[test]
fn snapshot_offers_query() {
    let mut app = app_with(sample_runs());
    typ(&mut app, ":offers");
    press(&mut app, "enter");
    let list: flotilla_protocol::rpc::OfferList = serde_json::from_value(serde_json::json!({
        "offers": [{
            "backend": "local", "region": "local", "instance_type": "local-0",
            "resources": {"cpu":{"arch":null,"count":{"min":16,"max":16}},"memory":{"min":64.0,"max":64.0},"disk":{"size":{"min":500.0,"max":500.0}},"shm_size":null,"gpu":{"vendor":"nvidia","name":["A100"],"count":{"min":2,"max":2},"memory":{"min":80.0,"max":80.0},"total_memory":null,"compute_capability":null}},
            "price": 0.0, "spot": false, "availability": "idle"
        }],
        "total": 1, "warnings": []
    }))
    .expect("offer fixture");
    app.handle_msg(Msg::Offers(Ok(list)));
    press(&mut app, "e");
    typ(&mut app, "A100");
    insta::assert_snapshot!(screen(&mut app, 100, 12));
}

#[test]
fn no_color_draws_without_colours() {
    let mut app = app_with(sample_runs());
    app.theme = Theme { color: false };
    press(&mut app, "ctrl-s");
    let buf = buffer(&mut app, 100, 20);
    for cell in buf.content() {
        assert_eq!(
            cell.fg,
            Color::Reset,
            "a foreground colour under NO_COLOR: {cell:?}"
        );
        assert_eq!(
            cell.bg,
            Color::Reset,
            "a background colour under NO_COLOR: {cell:?}"
        );
    }
}

#[test]
fn tiny_terminals_do_not_panic() {
    let mut app = app_with_log();
    for (w, h) in [(1, 1), (10, 3), (20, 5), (60, 15), (30, 8)] {
        screen(&mut app, w, h);
    }
    press(&mut app, "esc");
    press(&mut app, "?");
    screen(&mut app, 20, 6);
}

// ------------------------------------------------------------------ keys

#[test]
fn colon_switches_views_with_completion() {
    let mut app = app_with(sample_runs());
    press(&mut app, ":");
    typ(&mut app, "fl");
    press(&mut app, "tab");
    assert_eq!(
        app.prompt.as_ref().map(|p| p.input.as_str()),
        Some("fleets")
    );
    press(&mut app, "enter");
    assert_eq!(app.view(), View::Fleets);
    assert!(app.prompt.is_none());
    // Fleets were loaded already; the view asks for metrics only.
    assert!(app
        .take_commands()
        .iter()
        .all(|c| matches!(c, Command::Metrics { .. })));
    typ(&mut app, ":nope");
    press(&mut app, "enter");
    assert!(app
        .flash
        .as_ref()
        .is_some_and(|f| f.error && f.text.contains(":nope")));
    assert_eq!(app.view(), View::Fleets);
}

#[test]
fn slash_filters_as_you_type_and_esc_clears() {
    let mut app = app_with(sample_runs());
    press(&mut app, "/");
    typ(&mut app, "llama");
    assert_eq!(app.runs.visible.len(), 1);
    press(&mut app, "enter");
    assert_eq!(app.runs.filter, "llama");
    assert_eq!(
        app.selected_run().map(|r| r.name.as_str()),
        Some("train-llama")
    );
    press(&mut app, "esc");
    assert_eq!(app.runs.filter, "");
    assert_eq!(app.runs.visible.len(), 4);
}

#[test]
fn enter_drills_down_and_esc_goes_back() {
    let mut app = app_with(sample_runs());
    press(&mut app, "j");
    press(&mut app, "enter");
    assert_eq!(app.view(), View::Jobs);
    assert_eq!(app.jobs.run, "eval-7b");
    press(&mut app, "esc");
    assert_eq!(app.view(), View::Runs);
    assert_eq!(app.selected_run().map(|r| r.name.as_str()), Some("eval-7b"));
}

#[test]
fn stop_asks_first_and_names_the_run() {
    let mut app = app_with(sample_runs());
    press(&mut app, "ctrl-s");
    match &app.overlay {
        Some(Overlay::Dialog(d)) => {
            assert!(d.question.contains("train-llama"), "{d:?}");
            assert!(d.dangerous);
        }
        other => panic!("no dialog: {other:?}"),
    }
    press(&mut app, "n");
    assert!(app.overlay.is_none());
    assert!(app.take_commands().is_empty());
    press(&mut app, "ctrl-s");
    press(&mut app, "x"); // other keys leave the dialog open
    assert!(app.overlay.is_some());
    press(&mut app, "y");
    assert_eq!(
        app.take_commands(),
        vec![Command::Stop {
            name: "train-llama".into(),
            abort: false
        }]
    );
    press(&mut app, "ctrl-k");
    press(&mut app, "enter");
    assert_eq!(
        app.take_commands(),
        vec![Command::Stop {
            name: "train-llama".into(),
            abort: true
        }]
    );
}

#[test]
fn delete_is_for_finished_runs_only() {
    let mut app = app_with(sample_runs());
    press(&mut app, "ctrl-d");
    assert!(app.overlay.is_none());
    assert!(app
        .flash
        .as_ref()
        .is_some_and(|f| f.text.contains("stop it first")));
    press(&mut app, "G");
    assert_eq!(app.selected_run().map(|r| r.name.as_str()), Some("hello"));
    press(&mut app, "ctrl-d");
    press(&mut app, "y");
    assert_eq!(
        app.take_commands(),
        vec![Command::Delete {
            name: "hello".into()
        }]
    );
    app.handle_msg(Msg::Deleted("hello".into()));
    assert!(app.run_named("hello").is_none());
}

#[test]
fn logs_open_follow_and_close_their_session() {
    let mut app = app_with_log();
    assert_eq!(app.view(), View::Logs);
    let l = app.logs.as_ref().expect("logs");
    assert!(l.follow);
    assert_eq!(l.window.len(), 32);
    assert_eq!(l.window.line(31).map(|(_, t)| t), Some("step 32: partial"));
    assert_eq!(l.window.arrived(0), None);
    assert!(l.window.arrived(30).is_some());
    // Scrolling up stops following; G follows again.
    press(&mut app, "k");
    assert!(!app.logs.as_ref().expect("logs").follow);
    press(&mut app, "G");
    assert!(app.logs.as_ref().expect("logs").follow);
    press(&mut app, "f");
    assert!(!app.logs.as_ref().expect("logs").follow);
    press(&mut app, "w");
    assert!(app.logs.as_ref().expect("logs").wrap);
    let session = app.logs.as_ref().expect("logs").session;
    press(&mut app, "esc");
    assert_eq!(app.view(), View::Runs);
    assert!(app.logs.is_none());
    assert_eq!(app.take_commands(), vec![Command::CloseLog { session }]);
    // Bytes of a closed session are ignored.
    app.handle_msg(Msg::LogAppend {
        session,
        offset: 0,
        bytes: b"late\n".to_vec(),
        arrived: NOW,
    });
    assert!(app.logs.is_none());
}

#[test]
fn scrolling_to_the_top_of_a_big_log_reads_the_window_before() {
    let mut app = app_with(sample_runs());
    press(&mut app, "l");
    let session = match app.take_commands().as_slice() {
        [Command::OpenLog { session, .. }] => *session,
        other => panic!("{other:?}"),
    };
    // A 1 GB log: the last window only.
    let size = 1u64 << 30;
    let window: Vec<u8> = b"partial\n"
        .iter()
        .chain(b"line\n".repeat(100).iter())
        .copied()
        .collect();
    let offset = size - window.len() as u64;
    app.handle_msg(Msg::LogRead {
        session,
        purpose: LogRead::Tail,
        offset,
        bytes: window,
        size,
    });
    assert_eq!(app.logs.as_ref().expect("logs").window.len(), 100);
    press(&mut app, "g");
    let cmds = app.take_commands();
    assert!(
        matches!(
            cmds.as_slice(),
            [Command::ReadLog {
                purpose: LogRead::Head,
                offset: 0,
                ..
            }]
        ),
        "{cmds:?}"
    );
    // Only one read at a time.
    press(&mut app, "g");
    assert!(app.take_commands().is_empty());
    app.handle_msg(Msg::LogRead {
        session,
        purpose: LogRead::Head,
        offset: 0,
        bytes: b"first\nsecond\n".to_vec(),
        size,
    });
    let l = app.logs.as_ref().expect("logs");
    assert_eq!(l.window.line(0).map(|(_, t)| t), Some("first"));
    assert!(!l.window.reaches_end());
}

#[test]
fn following_again_far_from_the_end_jumps_to_the_last_window() {
    let mut app = app_with(sample_runs());
    press(&mut app, "l");
    let session = match app.take_commands().as_slice() {
        [Command::OpenLog { session, .. }] => *session,
        other => panic!("{other:?}"),
    };
    let size = 1u64 << 30;
    let lines = b"line\n".repeat(100);
    let offset = size - lines.len() as u64;
    app.handle_msg(Msg::LogRead {
        session,
        purpose: LogRead::Tail,
        offset,
        bytes: lines.clone(),
        size,
    });
    // `g`, then `G` before the first window came back.
    press(&mut app, "g");
    press(&mut app, "G");
    assert_eq!(app.take_commands().len(), 1, "one read at a time");
    app.handle_msg(Msg::LogRead {
        session,
        purpose: LogRead::Head,
        offset: 0,
        bytes: lines,
        size,
    });
    // Following wins, and it jumps to the last window instead of reading the log window by window.
    let cmds = app.take_commands();
    assert!(
        matches!(cmds.as_slice(), [Command::ReadLog { purpose: LogRead::Tail, offset, .. }] if *offset == size - (1 << 20)),
        "{cmds:?}"
    );
}

#[test]
fn shell_in_a_local_job_uses_its_directory_and_environment() {
    let mut app = app_with(sample_runs());
    app.shell = Some("/bin/bash".into());
    press(&mut app, "s");
    match app.take_commands().as_slice() {
        [Command::Shell(spec)] => {
            assert_eq!(spec.program, "/bin/bash");
            assert_eq!(
                spec.cwd.as_deref(),
                Some(std::path::Path::new("/tmp/flotilla-test/jobs/7/work"))
            );
            assert_eq!(
                spec.env.get("DSTACK_RUN_NAME").map(String::as_str),
                Some("train-llama")
            );
            assert_eq!(spec.env.get("MODEL").map(String::as_str), Some("llama"));
            assert_eq!(
                spec.env.get("CUDA_VISIBLE_DEVICES").map(String::as_str),
                Some("0")
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn shell_on_an_ssh_host_goes_through_flotilla_ssh() {
    let mut r = run("remote", RunStatus::Running, 10);
    r.jobs[0].current.fleet = Some("lab".into());
    r.jobs[0].current.instance = Some("lab-1".into());
    let mut app = app_with(vec![r.clone()]);
    // Without a way to run `flotilla ssh`, the message says what to type.
    press(&mut app, "s");
    assert!(app.take_commands().is_empty());
    let f = app.flash.as_ref().expect("a message");
    assert!(
        f.text.contains("flotilla ssh remote") && f.text.contains("lab-1"),
        "{}",
        f.text
    );
    app.ssh_via = Some(super::shell::SshVia {
        exe: "/usr/bin/flotilla".into(),
        socket: "/tmp/fl/s".into(),
        data_dir: None,
    });
    press(&mut app, "s");
    match app.take_commands().as_slice() {
        [Command::Shell(spec)] => {
            assert_eq!(spec.program, "/usr/bin/flotilla");
            assert_eq!(spec.args, ["ssh", "remote", "--replica", "0", "--job", "0"]);
            assert_eq!(spec.cwd, None);
            assert_eq!(
                spec.env.get("FLOTILLA_SOCKET").map(String::as_str),
                Some("/tmp/fl/s")
            );
        }
        other => panic!("{other:?}"),
    }
    // A finished job on a host: nothing to shell into there.
    r.jobs[0].current.status = JobStatus::Done;
    r.status = RunStatus::Done;
    let mut app = app_with(vec![r]);
    press(&mut app, "s");
    assert!(app
        .flash
        .as_ref()
        .is_some_and(|f| f.text.contains("needs the job running")));
    // A job without an instance yet.
    let mut app = app_with(vec![run("waiting", RunStatus::Submitted, 10)]);
    press(&mut app, "s");
    assert!(app
        .flash
        .as_ref()
        .is_some_and(|f| f.text.contains("no instance yet")));
}

#[test]
fn apply_prompts_plans_then_confirms() {
    let mut app = app_with(sample_runs());
    press(&mut app, "a");
    typ(&mut app, "/tmp/task.yml");
    press(&mut app, "enter");
    assert_eq!(
        app.take_commands(),
        vec![Command::Plan {
            path: "/tmp/task.yml".into()
        }]
    );
    let params = flotilla_protocol::rpc::RunApplyParams {
        configuration: "type: task\n".into(),
        file_name: Some("/tmp/task.yml".into()),
        env: Default::default(),
        name: None,
    };
    app.handle_msg(Msg::Plan {
        path: "/tmp/task.yml".into(),
        params: params.clone(),
        plan: flotilla_protocol::rpc::RunPlan {
            run_name: "new-run".into(),
            configuration_type: "task".into(),
            user: "ana".into(),
            current_run_status: None,
            jobs: vec![],
        },
    });
    match &app.overlay {
        Some(Overlay::Dialog(d)) => assert!(d.question.contains("new-run")),
        other => panic!("{other:?}"),
    }
    press(&mut app, "y");
    assert_eq!(app.take_commands(), vec![Command::Apply(params)]);
    let mut new = run("new-run", RunStatus::Submitted, 0);
    new.id = 99_999;
    app.handle_msg(Msg::Applied(new));
    assert_eq!(app.selected_run().map(|r| r.name.as_str()), Some("new-run"));
}

#[test]
fn help_is_generated_from_the_key_table() {
    let mut app = app_with(sample_runs());
    press(&mut app, "?");
    let text = screen(&mut app, 100, 60);
    for b in super::keys::BINDINGS {
        assert!(text.contains(b.description), "help lacks {}", b.description);
    }
    press(&mut app, "esc");
    assert!(app.overlay.is_none());
    // The hint bar too.
    let text = screen(&mut app, 200, 20);
    for b in super::keys::hints(View::Runs) {
        assert!(
            text.contains(&format!("<{}> {}", b.key.label(), b.description)),
            "{}",
            b.description
        );
    }
}

#[test]
fn events_refresh_only_what_they_touch_and_coalesce() {
    let mut app = app_with(sample_runs());
    let ev = |seq, kind: &str, resource: &str| Event {
        seq,
        time: NOW,
        kind: kind.into(),
        resource: resource.into(),
        old_status: Some("running".into()),
        new_status: Some("terminating".into()),
        reason: None,
        message: None,
    };
    app.handle_msg(Msg::Event(ev(1, "run", "train-llama")));
    assert_eq!(
        app.take_commands(),
        vec![Command::LoadRun {
            name: "train-llama".into()
        }]
    );
    // While that is in flight, more events for it wait for the answer.
    app.handle_msg(Msg::Event(ev(2, "job", "train-llama/0/0")));
    assert_eq!(app.take_commands(), vec![Command::LoadFleets]);
    let mut updated = run("train-llama", RunStatus::Terminating, 95);
    updated.jobs[0].current.status = JobStatus::Terminating;
    app.handle_msg(Msg::Run {
        name: "train-llama".into(),
        result: Ok(Some(updated)),
    });
    assert_eq!(
        app.take_commands(),
        vec![Command::LoadRun {
            name: "train-llama".into()
        }]
    );
    // The row changed in place, its status cell highlighted for a while.
    assert_eq!(
        app.run_named("train-llama").map(|r| r.status),
        Some(RunStatus::Terminating)
    );
    let change = app
        .runs
        .changes
        .get("train-llama")
        .copied()
        .expect("a change");
    assert_ne!(change.columns & (1 << 2), 0);
    assert_eq!(change.columns & 1, 0, "the name did not change");
    app.tick(Timestamp(NOW.0 + 10_000));
    assert!(app.runs.changes.is_empty());
    // A run that is gone disappears.
    app.handle_msg(Msg::Run {
        name: "train-llama".into(),
        result: Ok(None),
    });
    assert!(app.run_named("train-llama").is_none());
}

#[test]
fn without_metrics_get_there_are_no_sparklines_and_no_more_requests() {
    let mut app = app_with(sample_runs());
    typ(&mut app, ":fleets");
    press(&mut app, "enter");
    let asked = app.take_commands();
    assert_eq!(
        asked
            .iter()
            .filter(|c| matches!(c, Command::Metrics { .. }))
            .count(),
        3
    );
    app.handle_msg(Msg::MetricsUnsupported);
    assert!(app.flash.is_none(), "no error shown");
    app.tick(Timestamp(NOW.0 + 60_000));
    typ(&mut app, ":fleets");
    press(&mut app, "enter");
    assert!(app.take_commands().is_empty());
}

#[test]
fn reconnecting_reloads_everything() {
    let mut app = app_with(sample_runs());
    app.handle_msg(Msg::Disconnected {
        attempt: 1,
        error: "gone".into(),
    });
    assert!(matches!(app.conn, Conn::Reconnecting { .. }));
    app.handle_msg(Msg::Connected(hello()));
    let cmds = app.take_commands();
    assert!(cmds.contains(&Command::LoadRuns { all: true }), "{cmds:?}");
    assert!(cmds.contains(&Command::LoadFleets));
    assert!(cmds.contains(&Command::LoadEvents));
}

#[test]
fn ctrl_c_and_q_quit() {
    let mut app = app_with(sample_runs());
    press(&mut app, "q");
    assert_eq!(app.take_commands(), vec![Command::Quit]);
    press(&mut app, "/");
    press(&mut app, "ctrl-c");
    assert_eq!(app.take_commands(), vec![Command::Quit]);
}

#[test]
fn shifted_keys_reach_their_bindings() {
    let mut app = app_with(sample_runs());
    app.handle_key(Key::from_event(&ratatui::crossterm::event::KeyEvent::new(
        KeyCode::Char('G'),
        KeyModifiers::SHIFT,
    )));
    assert_eq!(app.runs.cursor.selected, 3);
}

#[test]
fn nothing_to_redraw_when_idle_on_old_runs() {
    let mut app = app_with(vec![run("old", RunStatus::Done, 90_000)]);
    let next = app.next_deadline().expect("ages tick");
    assert!(next.0 - NOW.0 >= 30_000, "idle wake-ups are rare");
    typ(&mut app, ":events");
    press(&mut app, "enter");
    assert_eq!(app.next_deadline(), None);
}
