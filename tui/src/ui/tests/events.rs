//! The events view: live events, newest first.

use super::*;

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
