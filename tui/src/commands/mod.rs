//! The command line's subcommands, one module each.

pub mod apply;
pub mod attach;
pub mod backend;
pub mod daemon;
pub mod event;
pub mod fleet;
pub mod forward;
pub mod metrics;
pub mod offer;
pub mod runs;
pub mod secret;
pub mod ssh;
pub mod token;
pub mod validate;

use std::io::{BufRead, IsTerminal, Write};

/// Asks a yes/no question on the terminal; refuses to guess when there is none.
pub fn confirm(question: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        anyhow::bail!("{question} — no terminal to ask on; pass -y to confirm");
    }
    print!("{question} [y/n]: ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

/// Prints a value as JSON on stdout.
pub fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// An error and its causes on one line (`a: b: c`), leaving out a cause that the text before it
/// already tells: `cannot connect to the daemon at X: No such file` gets no second `No such file`.
pub fn error_text(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::error_text;
    use anyhow::Context;
    use flotilla_protocol::client::ClientError;
    use std::io;

    #[test]
    fn an_error_does_not_repeat_its_cause() {
        let e = anyhow::Error::new(ClientError::Connect {
            path: "/run/flotilla.sock".into(),
            source: io::Error::new(io::ErrorKind::NotFound, "No such file or directory"),
        });
        assert_eq!(
            error_text(&e),
            "cannot connect to the daemon at /run/flotilla.sock: No such file or directory"
        );
        let e = e.context("cannot start the daemon");
        assert_eq!(
            error_text(&e),
            "cannot start the daemon: cannot connect to the daemon at /run/flotilla.sock: No such file or directory"
        );
    }

    #[test]
    fn causes_that_add_something_are_kept() {
        let e = Err::<(), _>(io::Error::new(io::ErrorKind::PermissionDenied, "denied"))
            .context("cannot read task.yml")
            .expect_err("an error");
        assert_eq!(error_text(&e), "cannot read task.yml: denied");
    }
}
