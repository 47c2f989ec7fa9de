//! The jobs view of a run: drilling down from the runs view and back.

use super::*;

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
fn a_service_replica_shows_its_readiness() {
    let mut runs = sample_runs();
    let name = runs[0].name.clone();
    runs[0].jobs[0].current.status = flotilla_protocol::model::JobStatus::Running;
    runs[0].jobs[0].current.ready = Some(false);
    let mut app = app_with(runs);
    press(&mut app, "enter");
    assert_eq!(app.jobs.run, name);
    let text = screen(&mut app, 120, 15);
    assert!(text.contains("running (not ready)"), "{text}");
}
