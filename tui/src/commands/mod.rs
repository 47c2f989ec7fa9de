//! The command line's subcommands, one module each.

pub mod apply;
pub mod daemon;
pub mod event;
pub mod fleet;
pub mod metrics;
pub mod offer;
pub mod runs;
pub mod ssh;
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
