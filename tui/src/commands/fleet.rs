//! `flotilla fleet list [--json]`: fleets with an instance row each.

use super::print_json;
use crate::connect::{connect_or_start, Target};
use crate::table::{ago, price, print_table};
use flotilla_protocol::model::{fmt_gb, Fleet};
use flotilla_protocol::rpc::methods;
use flotilla_protocol::Timestamp;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum FleetCommand {
    /// List fleets and their instances
    List {
        /// JSON: an array of fleets with their instances
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(target: &Target, cmd: FleetCommand) -> anyhow::Result<ExitCode> {
    let FleetCommand::List { json } = cmd;
    let client = connect_or_start(target).await?;
    let fleets: Vec<Fleet> = client.call(methods::FLEET_LIST, serde_json::json!({})).await?;
    if json {
        print_json(&fleets)?;
        return Ok(ExitCode::SUCCESS);
    }
    let now = Timestamp::now();
    let mut rows = Vec::new();
    for f in &fleets {
        rows.push(vec![
            f.name.clone(),
            f.instances.len().to_string(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            f.status.to_string(),
            ago(f.created_at, now),
        ]);
        for i in &f.instances {
            let gpu = match i.resources.gpus.first() {
                Some(g) => format!("{}:{}GB:{}", g.name, fmt_gb(g.memory_gb), i.resources.gpus.len()),
                None => "-".into(),
            };
            let status = if i.unreachable {
                "unreachable".to_string()
            } else if i.total_blocks > 1 && i.busy_blocks > 0 {
                format!("{}/{} busy", i.busy_blocks, i.total_blocks)
            } else {
                i.status.to_string()
            };
            rows.push(vec![
                format!("  instance={}", i.instance_num),
                String::new(),
                gpu,
                "no".into(),
                i.backend.clone(),
                price(i.price),
                status,
                ago(i.created_at, now),
            ]);
        }
    }
    print_table(
        &["NAME", "NODES", "GPU", "SPOT", "BACKEND", "PRICE", "STATUS", "CREATED"],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}
