//! Tests of the dashboard without a terminal, one module per view: snapshots of rendered screens
//! (ratatui's `TestBackend` + insta, fixed clock) and key handling (key in, state and commands
//! out). This module holds the fixtures they share.

mod events;
mod fleets;
mod jobs;
mod logs;
mod offers;
mod runs;
mod shared;

pub(super) use super::app::{App, Command, Conn, LogRead, Msg, Overlay};
pub(super) use super::keys::{Key, View};
pub(super) use super::render;
pub(super) use super::theme::Theme;
pub(super) use flotilla_protocol::config::{parse_configuration, RunConfiguration};
pub(super) use flotilla_protocol::model::{
    Event, Fleet, FleetStatus, Gpu, Instance, InstanceResources, InstanceStatus, Job, JobStatus,
    JobSubmission, JobTerminationReason, Run, RunStatus, RunTerminationReason,
};
pub(super) use flotilla_protocol::rpc::{GpuSample, GpuSeries, HelloResult, MetricsResult};
pub(super) use flotilla_protocol::Timestamp;
pub(super) use ratatui::backend::TestBackend;
pub(super) use ratatui::crossterm::event::{KeyCode, KeyModifiers};
pub(super) use ratatui::style::Color;
pub(super) use ratatui::Terminal;

/// 2026-11-18T11:06:40Z: the fixed "now" of every test.
pub(super) const NOW: Timestamp = Timestamp(1_795_000_000_000);

pub(super) fn ago(secs: u64) -> Timestamp {
    Timestamp(NOW.0 - secs * 1000)
}

pub(super) fn config(name: &str) -> RunConfiguration {
    let yaml = format!(
        "type: task\nname: {name}\nenv:\n  - MODEL=llama\ncommands:\n  - python train.py\nresources:\n  cpu: 1..\n  memory: 1GB..\n  disk: 1GB..\n"
    );
    parse_configuration("task.yml", &yaml)
        .expect("valid fixture")
        .as_run()
        .expect("a run configuration")
}

/// Fixtures go through JSON, as the daemon sends them (new optional fields keep their defaults).
pub(super) fn from_json<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("fixture matches the model")
}

pub(super) fn submission(
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

pub(super) fn run(name: &str, status: RunStatus, submitted: u64) -> Run {
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
        replica_group: None,
        deployment_num: 0,
        current: sub,
        previous_submissions: vec![],
    });
    r
}

pub(super) fn instance(
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

pub(super) fn fleets() -> Vec<Fleet> {
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

pub(super) fn hello() -> HelloResult {
    HelloResult {
        protocol: "1.0".into(),
        daemon_version: "0.1.0".into(),
        user: "ana".into(),
        uid: 1000,
        admin: true,
    }
}

/// A connected app with `runs` and the fixture fleets, commands from loading cleared.
pub(super) fn app_with(runs: Vec<Run>) -> App {
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

pub(super) fn sample_runs() -> Vec<Run> {
    vec![
        run("train-llama", RunStatus::Running, 95),
        run("eval-7b", RunStatus::Submitted, 30),
        run("sweep-3", RunStatus::Failed, 4000),
        run("hello", RunStatus::Done, 90_000),
    ]
}

pub(super) fn screen(app: &mut App, w: u16, h: u16) -> String {
    app.set_size(w, h);
    let mut term = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
    term.draw(|f| render::draw(f, app)).expect("draw");
    term.backend().to_string()
}

pub(super) fn buffer(app: &mut App, w: u16, h: u16) -> ratatui::buffer::Buffer {
    app.set_size(w, h);
    let mut term = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
    term.draw(|f| render::draw(f, app)).expect("draw");
    term.backend().buffer().clone()
}

pub(super) fn press(app: &mut App, key: &str) {
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

pub(super) fn typ(app: &mut App, text: &str) {
    for c in text.chars() {
        app.handle_key(Key::ch(c));
    }
}

/// The app with the log of the first run open: 30 lines of history, then live lines.
pub(super) fn app_with_log() -> App {
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
