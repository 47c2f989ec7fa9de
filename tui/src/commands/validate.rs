//! `flotilla validate -f FILE [--json]`: parse locally, print the normalized configuration or every error.

use flotilla_protocol::config::parse_configuration;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The configuration file
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// One line of JSON (default: indented); errors as a JSON array on stderr
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &Args) -> ExitCode {
    let name = args.file.display().to_string();
    let text = match std::fs::read_to_string(&args.file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{name}: cannot read: {e}");
            return ExitCode::FAILURE;
        }
    };
    match parse_configuration(&name, &text) {
        Ok(cfg) => {
            let v = cfg.to_normalized_json();
            let out = if args.json {
                serde_json::to_string(&v)
            } else {
                serde_json::to_string_pretty(&v)
            };
            match out {
                Ok(s) => {
                    println!("{s}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{name}: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(errors) => {
            if args.json {
                eprintln!(
                    "{}",
                    serde_json::to_string(&errors.0).unwrap_or_else(|_| "[]".into())
                );
            } else {
                eprintln!("{errors}");
            }
            ExitCode::FAILURE
        }
    }
}
