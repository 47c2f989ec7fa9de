//! `flotilla validate -f FILE [--json]`: parse locally, print the normalized configuration or every error.

use crate::config_file;
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
    match config_file::read(&args.file, &name) {
        Ok((_, cfg)) => {
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
        Err(config_file::ReadError::Invalid(errors)) if args.json => {
            eprintln!(
                "{}",
                serde_json::to_string(&errors.0).unwrap_or_else(|_| "[]".into())
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
