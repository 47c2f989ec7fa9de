//! flotilla-tui: the `flotilla` command line (`commands`) and dashboard (`ui`), and how both reach
//! the daemon (`connect`); `main.rs` only parses arguments and dispatches.

pub mod closed_stdout;
pub mod commands;
pub mod config_file;
pub mod connect;
pub mod run_access;
pub mod ssh_config;
pub mod table;
pub mod ui;
pub mod uploads;
