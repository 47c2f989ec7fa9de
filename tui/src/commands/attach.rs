//! `flotilla attach RUN [--replica N] [--job N] [-p LOCAL:REMOTE]...`: waits until the job runs,
//! forwards the configuration's `ports` (and a service's `port`, and every `-p`) from this
//! machine's loopback through the daemon, says what it forwards, then follows the logs. The
//! forwards live as long as `attach` runs (Ctrl-C ends them) and end with the run.

use super::apply::{follow_until_run_ends, report_end};
use super::forward::{forward_ports, Forwarded};
use crate::connect::{connect_or_start, Target};
use crate::run_access::{ide_link, run_ports};
use anyhow::anyhow;
use flotilla_protocol::client::Client;
use flotilla_protocol::config::{PortMapping, RunConfiguration};
use flotilla_protocol::model::{JobStatus, Run};
use flotilla_protocol::rpc::{methods, LogTarget, NoParams, RunNameParams};
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub target: super::ssh::JobArgs,
    /// Also forward local port LOCAL to the job's port REMOTE (`8080`, `18080:8080`, `*:8080`)
    #[arg(short = 'p', long = "port")]
    pub ports: Vec<String>,
    /// Do not add the `Include` line for `~/.flotilla/ssh/config` to `~/.ssh/config`
    #[arg(long)]
    pub no_ssh_config: bool,
}

pub async fn run(target: &Target, a: Args) -> anyhow::Result<ExitCode> {
    let mut extra = Vec::new();
    for p in &a.ports {
        extra.push(PortMapping::parse(p).map_err(|e| anyhow!("-p: {e}"))?);
    }
    let client = connect_or_start(target).await?;
    let t = &a.target;
    attach(
        target,
        &client,
        &t.run,
        t.replica,
        t.job,
        &extra,
        !a.no_ssh_config,
    )
    .await
}

/// Waits for the job, forwards its ports and `extra`, then follows the logs to the run's end.
pub async fn attach(
    target: &Target,
    client: &Client,
    name: &str,
    replica: u32,
    job: u32,
    extra: &[PortMapping],
    include_ssh_config: bool,
) -> anyhow::Result<ExitCode> {
    let log = LogTarget {
        run: name.to_string(),
        replica,
        job,
        submission: None,
    };
    // Only the run's owner (or an admin) may reach into it; the daemon checks every tunnel,
    // this says so before anything waits.
    let me = client.call::<methods::UserMe>(&NoParams {}).await?;
    let owner = client
        .call::<methods::RunGet>(&RunNameParams {
            name: name.to_string(),
        })
        .await?
        .user;
    if owner != me.name && !me.admin {
        return Err(anyhow!(
            "run {name} belongs to {owner}: only its owner or an admin can attach to it (you may reach your own runs: `flotilla ps`)"
        ));
    }
    let Some(run) = wait_running(client, name, replica, job).await? else {
        // It ended before it ran: its log (if any) and how it ended.
        let (run, end) = follow_until_run_ends(client, log, false).await?;
        return report_end(&run, end.as_ref());
    };
    let mut ports = run_ports(&run.configuration);
    ports.extend_from_slice(extra);
    let forwarded = forward_ports(target, name, replica, job, &ports).await?;
    let ssh_ready = match ssh_entries(target, &me, &run, include_ssh_config).await {
        Ok(note) => {
            if let Some(note) = note {
                eprintln!("{note}");
            }
            true
        }
        Err(e) => {
            eprintln!("`ssh {name}` is not set up: {}", super::error_text(&e));
            false
        }
    };
    announce(&run, &forwarded, ssh_ready);
    let (run, end) = follow_until_run_ends(client, log, true).await?;
    report_end(&run, end.as_ref())
}

fn announce(run: &Run, forwarded: &[Forwarded], ssh_ready: bool) {
    for f in forwarded {
        eprintln!(
            "Forwarding 127.0.0.1:{} -> {} port {}",
            f.local, run.name, f.remote
        );
    }
    if ssh_ready {
        eprintln!("To open a session in the job: ssh {}", run.name);
    }
    if let RunConfiguration::DevEnvironment(_) = &run.configuration {
        eprintln!("Dev environment {} is up", run.name);
        if let (Some(link), true) = (ide_link(run), ssh_ready) {
            eprintln!("Open in the IDE: {link}");
        }
    }
}

/// Writes the run's `ssh` entries (pinning the gateway's host key, which `gateway.open` says).
async fn ssh_entries(
    target: &Target,
    me: &flotilla_protocol::model::User,
    run: &Run,
    include: bool,
) -> anyhow::Result<Option<String>> {
    let key = me
        .ssh_private_key
        .as_deref()
        .ok_or_else(|| anyhow!("the daemon did not give your private key"))?;
    let (info, _, _, _) = super::forward::open_stream(
        target,
        methods::GATEWAY_OPEN,
        flotilla_protocol::rpc::TunnelParams {
            run: run.name.clone(),
            replica: 0,
            job: 0,
            port: None,
        },
    )
    .await?;
    let info: flotilla_protocol::rpc::GatewayInfo = serde_json::from_value(info)?;
    let jobs = run.jobs.iter().filter(|j| j.replica_num == 0).count() as u32;
    crate::ssh_config::write(
        &crate::ssh_config::Entry {
            run: &run.name,
            jobs,
            user: &me.name,
            uid: me.uid,
            private_key: key,
            gateway_host_key: &info.host_key,
            socket: &target.socket,
        },
        include,
    )
}

/// How often the run is looked at while its job is awaited.
const POLL: Duration = Duration::from_millis(200);

/// The run once the job runs; `None` when the run ended first.
async fn wait_running(
    client: &Client,
    name: &str,
    replica: u32,
    job: u32,
) -> anyhow::Result<Option<Run>> {
    let mut said = String::new();
    loop {
        let run = client
            .call::<methods::RunGet>(&RunNameParams {
                name: name.to_string(),
            })
            .await?;
        let Some(j) = run.job(replica, job) else {
            return Err(anyhow!(
                "run {name} has no job {job} of replica {replica}; `flotilla ps -v` lists its jobs"
            ));
        };
        match j.current.status {
            JobStatus::Running => return Ok(Some(run)),
            s if s.is_finished() || run.status.is_finished() => return Ok(None),
            s => {
                let why = j.current.waiting_reason.clone().unwrap_or_default();
                let now = format!(
                    "{s}{}",
                    if why.is_empty() {
                        String::new()
                    } else {
                        format!(": {why}")
                    }
                );
                if now != said {
                    eprintln!("Waiting for {name}: {now}");
                    said = now;
                }
            }
        }
        tokio::time::sleep(POLL).await;
    }
}
