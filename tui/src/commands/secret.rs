//! `flotilla secret set|list|get|delete`: the daemon's secrets (dstack's project secrets).
//! `set` without a value reads it from standard input, so that it stays out of shell history
//! and `ps`.

use super::{confirm, print_json};
use crate::connect::{connect_or_start, Target};
use crate::table::{ago, print_table};
use flotilla_protocol::rpc::{methods, NoParams, SecretInfo, SecretNameParams, SecretSetParams};
use flotilla_protocol::Timestamp;
use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum SecretCommand {
    /// Create or replace a secret (admins); without VALUE, the value is read from standard input
    Set {
        name: String,
        /// The value (visible in shell history and `ps`: prefer standard input)
        value: Option<String>,
    },
    /// Names of the secrets, who set them and when (no values)
    List {
        #[arg(long)]
        json: bool,
    },
    /// A secret's value (admins)
    Get {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete a secret (admins)
    Delete {
        name: String,
        #[arg(short = 'y', long)]
        yes: bool,
    },
}

pub async fn run(target: &Target, cmd: SecretCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SecretCommand::Set { name, value } => {
            let value = match value {
                Some(v) => v,
                None => read_value(&name)?,
            };
            let client = connect_or_start(target).await?;
            client
                .call::<methods::SecretSet>(&SecretSetParams {
                    name: name.clone(),
                    value,
                })
                .await?;
            println!("Secret {name} set");
        }
        SecretCommand::List { json } => {
            let client = connect_or_start(target).await?;
            let secrets = client.call::<methods::SecretList>(&NoParams {}).await?;
            if json {
                print_json(&secrets)?;
            } else {
                print_secrets(&secrets, false);
            }
        }
        SecretCommand::Get { name, json } => {
            let client = connect_or_start(target).await?;
            let secret = client
                .call::<methods::SecretGet>(&SecretNameParams { name })
                .await?;
            if json {
                print_json(&secret)?;
            } else {
                print_secrets(std::slice::from_ref(&secret), true);
            }
        }
        SecretCommand::Delete { name, yes } => {
            if !yes && !confirm(&format!("Delete the secret {name}?"))? {
                println!("Cancelled.");
                return Ok(ExitCode::FAILURE);
            }
            let client = connect_or_start(target).await?;
            client
                .call::<methods::SecretDelete>(&SecretNameParams { name: name.clone() })
                .await?;
            println!("Deleted secret {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_secrets(secrets: &[SecretInfo], with_value: bool) {
    let now = Timestamp::now();
    let rows: Vec<Vec<String>> = secrets
        .iter()
        .map(|s| {
            let mut row = vec![s.name.clone(), s.set_by.clone(), ago(s.updated_at, now)];
            if with_value {
                row.push(s.value.clone().unwrap_or_default());
            }
            row
        })
        .collect();
    if with_value {
        print_table(&["NAME", "SET BY", "UPDATED", "VALUE"], &rows);
    } else {
        print_table(&["NAME", "SET BY", "UPDATED"], &rows);
    }
}

/// The value from standard input: all of it with one final newline removed; on a terminal,
/// one line typed without echo.
fn read_value(name: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    let mut text = String::new();
    if stdin.is_terminal() {
        eprint!("Value of secret {name} (not echoed): ");
        std::io::stderr().flush()?;
        let _echo = EchoOff::new();
        stdin.read_line(&mut text)?;
        eprintln!();
    } else {
        stdin.lock().read_to_string(&mut text).map_err(|e| {
            anyhow::anyhow!("cannot read the value of {name} from standard input: {e}")
        })?;
    }
    let value = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    Ok(value.to_string())
}

/// Turns the terminal's echo off for as long as it lives.
struct EchoOff {
    saved: Option<libc::termios>,
}

impl EchoOff {
    fn new() -> EchoOff {
        // SAFETY: tcgetattr/tcsetattr on fd 0 with a termios we own; failures leave echo on.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return EchoOff { saved: None };
            }
            let saved = t;
            t.c_lflag &= !libc::ECHO;
            if libc::tcsetattr(0, libc::TCSANOW, &t) != 0 {
                return EchoOff { saved: None };
            }
            EchoOff { saved: Some(saved) }
        }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(saved) = self.saved {
            // SAFETY: restores the attributes read in `new`.
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, &saved);
            }
        }
    }
}
