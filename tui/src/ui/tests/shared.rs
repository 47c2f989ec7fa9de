//! What the app keeps for every view: help, dialogs, prompts, quitting, themes, tiny terminals.

use super::*;

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
        archives: Vec::new(),
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
            update: None,
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
    for b in crate::ui::keys::BINDINGS {
        assert!(text.contains(b.description), "help lacks {}", b.description);
    }
    press(&mut app, "esc");
    assert!(app.overlay.is_none());
    // The hint bar too.
    let text = screen(&mut app, 200, 20);
    for b in crate::ui::keys::hints(View::Runs) {
        assert!(
            text.contains(&format!("<{}> {}", b.key.label(), b.description)),
            "{}",
            b.description
        );
    }
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
fn components_answer_for_their_own_keys_and_ask_the_app_for_the_rest() {
    use crate::ui::component::{Component, Ctx, Handled, Request};
    let mut app = app_with(sample_runs());
    let mut queue = Vec::new();
    let mut ctx = Ctx {
        now: NOW,
        size: app.size,
        store: &mut app.store,
        queue: &mut queue,
    };
    // Quit and prompts are the app's: the runs view leaves them.
    assert_eq!(
        app.runs.handle_key(Key::ch('q'), &mut ctx),
        Handled::Ignored
    );
    assert_eq!(
        app.runs.handle_key(Key::ch(':'), &mut ctx),
        Handled::Ignored
    );
    assert_eq!(
        app.runs.handle_key(Key::ch('j'), &mut ctx),
        Handled::Consumed
    );
    assert_eq!(app.runs.cursor.selected, 1);
    // Enter does not open the jobs view itself: it asks for it.
    let enter = Key::plain(KeyCode::Enter);
    assert_eq!(app.runs.handle_key(enter, &mut ctx), Handled::Consumed);
    assert_eq!(
        queue,
        vec![Request::OpenJobs {
            run: "eval-7b".into()
        }]
    );
    assert_eq!(app.view(), View::Runs);
}
