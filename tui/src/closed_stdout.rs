//! A closed stdout (`flotilla ps -a | head -1`) ends the command the way it ends `cat`: killed by
//! SIGPIPE with nothing on stderr, instead of a "Broken pipe" panic (`println!`) or error.

use std::io;

/// Whether stdout is a pipe whose reading end is gone (every write would fail with EPIPE).
pub fn reader_gone() -> bool {
    let mut p = libc::pollfd {
        fd: libc::STDOUT_FILENO,
        events: 0,
        revents: 0,
    };
    // SAFETY: poll reads and writes the one pollfd we own; a zero timeout never blocks.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & libc::POLLERR != 0
}

/// Ends the process as an unignored SIGPIPE would have (status 141 to a shell).
pub fn die_of_sigpipe() -> ! {
    // SAFETY: restoring the default action of SIGPIPE and raising it on ourselves.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::raise(libc::SIGPIPE);
    }
    std::process::exit(128 + libc::SIGPIPE)
}

/// A panic of `print!`/`println!` because stdout's reader has gone ends quietly; any other
/// panic is reported as before.
pub fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if payload.starts_with("failed printing to stdout") && reader_gone() {
            die_of_sigpipe();
        }
        default(info)
    }));
}

/// Whether an error is a failed write to stdout whose reader has gone.
pub fn is_closed_stdout(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<io::Error>())
        .any(|io| io.kind() == io::ErrorKind::BrokenPipe)
        && reader_gone()
}
