//! The runs view: its states (empty, loading, unreachable, narrow, scrolled), filtering, the
//! run actions (stop, delete, shell) and how events and reconnections update its rows.

use super::*;

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
fn shell_in_an_ended_local_job_uses_its_directory_and_environment() {
    let mut runs = sample_runs();
    runs[0].status = RunStatus::Terminated;
    runs[0].jobs[0].current.status = JobStatus::Terminated;
    let mut app = app_with(runs);
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
fn shell_in_a_running_local_job_goes_through_flotilla_ssh() {
    // Running, it may be in a container: the daemon's gateway puts the shell where the job is.
    let mut app = app_with(sample_runs());
    app.shell = Some("/bin/bash".into());
    app.ssh_via = Some(crate::ui::shell::SshVia {
        exe: "/usr/bin/flotilla".into(),
        socket: "/tmp/fl/s".into(),
        data_dir: None,
    });
    press(&mut app, "s");
    match app.take_commands().as_slice() {
        [Command::Shell(spec)] => {
            assert_eq!(spec.program, "/usr/bin/flotilla");
            assert_eq!(
                spec.args,
                ["ssh", "train-llama", "--replica", "0", "--job", "0"]
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
    app.ssh_via = Some(crate::ui::shell::SshVia {
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
