//! `flotilla backend list [--check] [--json]`: the daemon's backends, whether their credentials
//! work (the provider's words when not), the instances they hold and machines unknown to the
//! daemon. Credentials are never shown.

use super::print_json;
use crate::connect::{connect_or_start, Target};
use crate::table::{price, print_table};
use flotilla_protocol::rpc::{methods, BackendInfo, BackendListParams};
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum BackendCommand {
    /// List the configured backends
    List {
        /// Ask each provider again whether the credentials work
        #[arg(long)]
        check: bool,
        /// JSON: an array of backends
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(target: &Target, cmd: BackendCommand) -> anyhow::Result<ExitCode> {
    let client = connect_or_start(target).await?;
    let BackendCommand::List { check, json } = cmd;
    let list: Vec<BackendInfo> = client
        .call::<methods::BackendList>(&BackendListParams { check })
        .await?;
    if json {
        print_json(&list)?;
        return Ok(ExitCode::SUCCESS);
    }
    if list.is_empty() {
        println!("no backends: add them under `backends:` in the daemon's config.yml");
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|b| {
            vec![
                b.name.clone(),
                b.kind.clone(),
                b.credentials.clone(),
                b.instances.to_string(),
                format!("{}/h", price(b.price_per_hour)),
                b.message.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print_table(
        &[
            "NAME",
            "TYPE",
            "CREDENTIALS",
            "INSTANCES",
            "SPEND",
            "MESSAGE",
        ],
        &rows,
    );
    for b in list.iter().filter(|b| !b.orphans.is_empty()) {
        println!(
            "\n{}: machines named flotilla-... unknown to this daemon (terminate them at the provider, or set terminate_orphans: true):",
            b.name
        );
        for o in &b.orphans {
            println!("  {o}");
        }
    }
    let bad = list.iter().any(|b| b.credentials == "invalid");
    Ok(if bad {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
