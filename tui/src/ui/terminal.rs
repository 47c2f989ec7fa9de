//! The terminal's lifecycle: raw mode and the alternate screen on entry, restored on exit and on
//! panic; suspend/resume around a shell; and the input thread, a blocking reader of terminal
//! events feeding a channel, which is stopped and joined before the terminal is handed over.

use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event};
use ratatui::crossterm::{cursor, execute, terminal};
use ratatui::Terminal;
use std::io::{self, Stdout};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;

pub type Backend = CrosstermBackend<Stdout>;

/// The dashboard's hold on the terminal; dropping it gives the terminal back.
pub struct Tui {
    pub terminal: Terminal<Backend>,
    active: bool,
}

impl Tui {
    /// Raw mode, alternate screen, hidden cursor.
    pub fn enter() -> io::Result<Tui> {
        install_panic_hook();
        let mut t = Tui {
            terminal: Terminal::new(CrosstermBackend::new(io::stdout()))?,
            active: false,
        };
        t.resume()?;
        Ok(t)
    }

    /// Gives the terminal back as it was (cooked mode, main screen, cursor shown).
    pub fn suspend(&mut self) -> io::Result<()> {
        if self.active {
            self.active = false;
            restore()?;
        }
        Ok(())
    }

    /// Takes the terminal again; the next draw repaints everything.
    pub fn resume(&mut self) -> io::Result<()> {
        if !self.active {
            terminal::enable_raw_mode()?;
            execute!(io::stdout(), terminal::EnterAlternateScreen, cursor::Hide)?;
            self.active = true;
        }
        self.terminal.clear()
    }
}

impl Drop for Tui {
    fn drop(&mut self) {
        let _ = self.suspend();
    }
}

/// Leaves raw mode and the alternate screen; harmless when not in them.
pub fn restore() -> io::Result<()> {
    let r1 = terminal::disable_raw_mode();
    let r2 = execute!(io::stdout(), terminal::LeaveAlternateScreen, cursor::Show);
    r1.and(r2)
}

fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // The message must land on a usable terminal.
            let _ = restore();
            previous(info);
        }));
    });
}

/// Reads terminal events on a thread of its own and sends them to the dashboard. It polls
/// with a timeout so that it can be stopped between events: no key is read and then dropped.
pub struct InputReader {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

/// How often the reader looks at its stop flag while no key comes.
const POLL: Duration = Duration::from_millis(200);

impl InputReader {
    pub fn start(tx: UnboundedSender<io::Result<Event>>) -> InputReader {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("flotilla-input".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    match event::poll(POLL) {
                        Ok(false) => continue,
                        Ok(true) => {
                            let ev = event::read();
                            let failed = ev.is_err();
                            if tx.send(ev).is_err() || failed {
                                return;
                            }
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    }
                }
            })
            .ok();
        InputReader { stop, handle }
    }

    /// Stops the reader and waits for it: after this, nothing reads the terminal.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for InputReader {
    fn drop(&mut self) {
        self.halt();
    }
}
