//! `flotilla fleet list [--json]`: fleets with an instance row each.

use super::confirm;
use super::print_json;
use crate::connect::{connect_or_start, Target};
use crate::table::{ago, price, print_table};
use flotilla_protocol::config::{parse_configuration, Configuration};
use flotilla_protocol::model::{fmt_gb, Fleet, InstanceStatus};
use flotilla_protocol::rpc::{methods, FleetApplyParams, FleetNameParams, NoParams};
use flotilla_protocol::Timestamp;
use std::collections::BTreeMap;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum FleetCommand {
    /// List fleets and their instances
    List {
        /// JSON: an array of fleets with their instances
        #[arg(long)]
        json: bool,
    },
    /// One fleet: its instances, errors and host keys
    Get {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete a fleet: abort its jobs and release its hosts
    Delete {
        name: String,
        #[arg(short = 'y', long)]
        yes: bool,
    },
}

pub async fn run(target: &Target, cmd: FleetCommand) -> anyhow::Result<ExitCode> {
    let client = connect_or_start(target).await?;
    let fleets: Vec<Fleet> = match cmd {
        FleetCommand::List { json } => {
            let fleets: Vec<Fleet> = client.call::<methods::FleetList>(&NoParams {}).await?;
            if json {
                print_json(&fleets)?;
                return Ok(ExitCode::SUCCESS);
            }
            fleets
        }
        FleetCommand::Get { name, json } => {
            let fleet: Fleet = client
                .call::<methods::FleetGet>(&FleetNameParams { name })
                .await?;
            if json {
                print_json(&fleet)?;
            } else {
                print_fleets(std::slice::from_ref(&fleet));
                for i in &fleet.instances {
                    if let Some(ep) = &i.ssh {
                        println!("\n{} ({})", i.name, ep.label());
                        println!(
                            "  host key  {}",
                            i.host_key.as_deref().unwrap_or("(not seen yet)")
                        );
                        if let Some(e) = &i.error {
                            println!("  error     {e}");
                        }
                    }
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        FleetCommand::Delete { name, yes } => {
            if !yes && !confirm(&format!("Delete the fleet {name} (its jobs are aborted)?"))? {
                println!("Cancelled.");
                return Ok(ExitCode::FAILURE);
            }
            client
                .call::<methods::FleetDelete>(&FleetNameParams { name: name.clone() })
                .await?;
            println!("Deleted fleet {name}");
            return Ok(ExitCode::SUCCESS);
        }
    };
    print_fleets(&fleets);
    Ok(ExitCode::SUCCESS)
}

/// `flotilla apply -f fleet.yml`: create or update the fleet, then wait for its hosts.
pub async fn apply(
    target: &Target,
    file: &str,
    text: String,
    yes: bool,
) -> anyhow::Result<ExitCode> {
    // Read the key files first: one the caller cannot read fails here, before anything is asked.
    identity_keys(file, &text)?;
    let client = connect_or_start(target).await?;
    if !yes && !confirm(&format!("Apply the fleet configuration {file}?"))? {
        println!("Cancelled.");
        return Ok(ExitCode::FAILURE);
    }
    let identity_keys = identity_keys(file, &text)?;
    let mut fleet: Fleet = client
        .call::<methods::FleetApply>(&FleetApplyParams {
            configuration: text,
            file_name: Some(file.to_string()),
            identity_keys,
        })
        .await?;
    eprintln!("Provisioning fleet {}...", fleet.name);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let waiting = fleet.instances.iter().any(|i| {
            matches!(
                i.status,
                InstanceStatus::Pending | InstanceStatus::Provisioning
            ) && i.error.is_none()
        });
        if !waiting || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        fleet = client
            .call::<methods::FleetGet>(&FleetNameParams {
                name: fleet.name.clone(),
            })
            .await?;
    }
    print_fleets(std::slice::from_ref(&fleet));
    let mut ok = true;
    for i in &fleet.instances {
        if let Some(e) = &i.error {
            ok = false;
            eprintln!("{}: {e}", i.name);
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_fleets(fleets: &[Fleet]) {
    let now = Timestamp::now();
    let mut rows = Vec::new();
    for f in fleets {
        // What the fleet's machines cost per hour now (its row), each instance below it.
        let hourly: f64 = f.instances.iter().map(|i| i.price).sum();
        rows.push(vec![
            f.name.clone(),
            f.instances.len().to_string(),
            String::new(),
            String::new(),
            String::new(),
            if hourly > 0.0 {
                format!("{}/h", price(hourly))
            } else {
                String::new()
            },
            f.status.to_string(),
            ago(f.created_at, now),
        ]);
        for i in &f.instances {
            let gpu = match i.resources.gpus.first() {
                Some(g) => format!(
                    "{}:{}GB:{}",
                    g.name,
                    fmt_gb(g.memory_gb),
                    i.resources.gpus.len()
                ),
                None => "-".into(),
            };
            let status = if i.unreachable {
                "unreachable".to_string()
            } else if i.error.is_some()
                && i.status != InstanceStatus::Idle
                && i.status != InstanceStatus::Busy
            {
                format!("{} (error)", i.status)
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
        &[
            "NAME", "NODES", "GPU", "SPOT", "BACKEND", "PRICE", "STATUS", "CREATED",
        ],
        &rows,
    );
}

/// The content of every `identity_file` a fleet file names, read as the user running the CLI,
/// keyed by the path as written (the daemon takes a key only from someone who can read it). A
/// file that does not parse has none: the daemon reports its errors.
fn identity_keys(file: &str, text: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let Ok(Configuration::Fleet(cfg)) = parse_configuration(file, text) else {
        return Ok(BTreeMap::new());
    };
    let Some(ssh) = cfg.ssh_config else {
        return Ok(BTreeMap::new());
    };
    let jump = |j: &Option<flotilla_protocol::config::SshProxyJump>| {
        j.as_ref().and_then(|j| j.identity_file.clone())
    };
    let mut paths = vec![ssh.identity_file.clone(), jump(&ssh.proxy_jump)];
    for h in &ssh.hosts {
        paths.push(h.identity_file.clone());
        paths.push(jump(&h.proxy_jump));
    }
    let mut keys = BTreeMap::new();
    for path in paths.into_iter().flatten() {
        if keys.contains_key(&path) {
            continue;
        }
        let local = match path.strip_prefix("~/") {
            Some(rest) => flotilla_protocol::paths::home_dir().join(rest),
            None => std::path::PathBuf::from(&path),
        };
        let content = std::fs::read_to_string(&local).map_err(|e| {
            anyhow::anyhow!("{file}: cannot read identity_file {}: {e}", local.display())
        })?;
        keys.insert(path, content);
    }
    Ok(keys)
}
