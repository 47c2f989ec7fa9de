//! The log view: search highlights, following, scrolling windows of a big log, sessions.

use super::*;

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
    assert_eq!(
        app.logs.session.as_ref().and_then(|l| l.current_match),
        Some(27)
    );
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
fn logs_open_follow_and_close_their_session() {
    let mut app = app_with_log();
    assert_eq!(app.view(), View::Logs);
    let l = app.logs.session.as_ref().expect("logs");
    assert!(l.follow);
    assert_eq!(l.window.len(), 32);
    assert_eq!(l.window.line(31).map(|(_, t)| t), Some("step 32: partial"));
    assert_eq!(l.window.arrived(0), None);
    assert!(l.window.arrived(30).is_some());
    // Scrolling up stops following; G follows again.
    press(&mut app, "k");
    assert!(!app.logs.session.as_ref().expect("logs").follow);
    press(&mut app, "G");
    assert!(app.logs.session.as_ref().expect("logs").follow);
    press(&mut app, "f");
    assert!(!app.logs.session.as_ref().expect("logs").follow);
    press(&mut app, "w");
    assert!(app.logs.session.as_ref().expect("logs").wrap);
    let session = app.logs.session.as_ref().expect("logs").session;
    press(&mut app, "esc");
    assert_eq!(app.view(), View::Runs);
    assert!(app.logs.session.is_none());
    assert_eq!(app.take_commands(), vec![Command::CloseLog { session }]);
    // Bytes of a closed session are ignored.
    app.handle_msg(Msg::LogAppend {
        session,
        offset: 0,
        bytes: b"late\n".to_vec(),
        arrived: NOW,
    });
    assert!(app.logs.session.is_none());
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
    assert_eq!(app.logs.session.as_ref().expect("logs").window.len(), 100);
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
    let l = app.logs.session.as_ref().expect("logs");
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
