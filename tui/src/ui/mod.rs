//! The dashboard (`flotilla` with no arguments): a k9s-like terminal UI on the daemon.
//!
//! `views` are the components (runs, jobs, fleets, offers, events, logs), each owning its state,
//! keys and drawing (`component` is their trait and context); `store` the daemon's data several
//! views share; `app` the root that holds the shared state (connection, navigation, prompt,
//! dialogs) and dispatches to them; `render` draws it all (a pure function of the state); `keys`
//! is the key table; `messages` what goes to and comes from `link`, the async side that talks to
//! the daemon; `terminal` the terminal's lifecycle and input thread. This module's loop ties
//! them: input and daemon messages in, commands out, a frame drawn only when something changed.

pub mod app;
pub mod apply_dialog;
pub mod cells;
pub mod component;
pub mod keys;
pub mod layout;
pub mod link;
pub mod log_window;
pub mod messages;
pub mod prompt;
pub mod render;
pub mod shell;
pub mod store;
pub mod terminal;
pub mod theme;
pub mod views;

#[cfg(test)]
mod tests;

use crate::connect::Target;
use app::{App, Command, Msg};
use flotilla_protocol::Timestamp;
use keys::Key;
use ratatui::crossterm::event::{Event, KeyEventKind};
use std::process::ExitCode;
use std::time::Duration;
use terminal::{InputReader, Tui};
use tokio::sync::mpsc::{self, UnboundedReceiver};

/// At most this many queued messages are taken in before a frame is drawn.
const BATCH: usize = 512;

/// Opens the dashboard on the daemon at `target` (started on demand) until the user quits.
pub async fn run(target: &Target) -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "the dashboard needs a terminal; see `flotilla --help` for the commands scripts can use"
        );
    }
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel::<Command>();
    let (msg_tx, mut msg_rx) = mpsc::unbounded_channel::<Msg>();
    let (input_tx, mut input_rx) = mpsc::unbounded_channel();
    let link = tokio::spawn(link::run(target.clone(), cmd_rx, msg_tx));

    let mut app = App::new(
        target.socket.display().to_string(),
        theme::Theme::from_env(),
        Timestamp::now(),
    );
    app.shell = shell::user_shell();
    app.ssh_via = std::env::current_exe().ok().map(|exe| shell::SshVia {
        exe,
        socket: target.socket.clone(),
        data_dir: target.data_dir.clone(),
    });
    let mut tui = Tui::enter()?;
    let mut input = Some(InputReader::start(input_tx.clone()));
    let result = event_loop(
        &mut app,
        &mut tui,
        &mut input,
        &input_tx,
        &mut input_rx,
        &mut msg_rx,
        &cmd_tx,
    )
    .await;
    if let Some(i) = input.take() {
        i.stop();
    }
    drop(tui);
    drop(cmd_tx);
    link.abort();
    result.map(|_| ExitCode::SUCCESS)
}

type InputTx = mpsc::UnboundedSender<std::io::Result<Event>>;

#[allow(clippy::too_many_arguments)]
async fn event_loop(
    app: &mut App,
    tui: &mut Tui,
    input: &mut Option<InputReader>,
    input_tx: &InputTx,
    input_rx: &mut UnboundedReceiver<std::io::Result<Event>>,
    msg_rx: &mut UnboundedReceiver<Msg>,
    cmd_tx: &mpsc::UnboundedSender<Command>,
) -> anyhow::Result<()> {
    loop {
        if app.dirty {
            app.now = Timestamp::now();
            let size = tui.terminal.size()?;
            app.set_size(size.width, size.height);
            tui.terminal.draw(|f| render::draw(f, app))?;
            app.dirty = false;
        }
        let sleep = app
            .next_deadline()
            .map(|t| Duration::from_millis(t.0.saturating_sub(Timestamp::now().0).max(1)));
        tokio::select! {
            ev = input_rx.recv() => match ev {
                Some(Ok(ev)) => on_terminal_event(app, ev),
                Some(Err(e)) => return Err(anyhow::anyhow!("cannot read the terminal: {e}")),
                None => return Ok(()),
            },
            msg = msg_rx.recv() => match msg {
                Some(m) => { app.handle_msg(m); }
                None => return Err(anyhow::anyhow!("the daemon link stopped")),
            },
            _ = tokio::time::sleep(sleep.unwrap_or(Duration::from_secs(3600))), if sleep.is_some() => {
                app.tick(Timestamp::now());
            }
        }
        // Coalesce: take what else is queued, then draw once (television's way).
        for _ in 0..BATCH {
            match msg_rx.try_recv() {
                Ok(m) => {
                    app.handle_msg(m);
                }
                Err(_) => break,
            }
        }
        while let Ok(ev) = input_rx.try_recv() {
            match ev {
                Ok(ev) => on_terminal_event(app, ev),
                Err(e) => return Err(anyhow::anyhow!("cannot read the terminal: {e}")),
            }
        }
        for cmd in app.take_commands() {
            match cmd {
                Command::Quit => return Ok(()),
                Command::Shell(spec) => {
                    // Hand the terminal over: nothing may read it while the shell runs.
                    if let Some(i) = input.take() {
                        i.stop();
                    }
                    tui.suspend()?;
                    let outcome = shell::run(&spec).await;
                    tui.resume()?;
                    *input = Some(InputReader::start(input_tx.clone()));
                    app.now = Timestamp::now();
                    match outcome {
                        Ok(status) if status.success() => app.flash("back from the shell", false),
                        Ok(status) => app.flash(format!("the shell exited with {status}"), false),
                        Err(e) => app.flash(e, true),
                    }
                    app.dirty = true;
                }
                other => {
                    if cmd_tx.send(other).is_err() {
                        return Err(anyhow::anyhow!("the daemon link stopped"));
                    }
                }
            }
        }
    }
}

fn on_terminal_event(app: &mut App, ev: Event) {
    match ev {
        Event::Key(k) if k.kind != KeyEventKind::Release => {
            app.now = Timestamp::now();
            app.handle_key(Key::from_event(&k));
        }
        Event::Resize(w, h) => app.set_size(w, h),
        Event::FocusGained
        | Event::Paste(_)
        | Event::Mouse(_)
        | Event::FocusLost
        | Event::Key(_) => {}
    }
}
