//! `flotilla ssh RUN [-- COMMAND]`: a shell (or a command) in a run's job, in its environment
//! (its container, or its working directory and variables), through the daemon's SSH gateway
//! with the user's own key. `flotilla gateway RUN` is the ProxyCommand it gives ssh;
//! `flotilla tunnel RUN` (a stream to the job's host) stays for scripts.

use crate::connect::{connect_or_start, Target};
use anyhow::{anyhow, bail, Context};
use flotilla_protocol::model::{Run, User};
use flotilla_protocol::rpc::{methods, GatewayInfo, NoParams, RunNameParams, TunnelParams};
use std::io::IsTerminal;
use std::process::{Command, ExitCode};

#[derive(clap::Args)]
pub struct Args {
    pub run: String,
    #[arg(long, default_value_t = 0)]
    pub replica: u32,
    #[arg(long, default_value_t = 0)]
    pub job: u32,
    /// A command to run instead of an interactive shell
    #[arg(last = true)]
    pub command: Vec<String>,
}

/// A run's job: `RUN [--replica N] [--job N]`.
#[derive(clap::Args)]
pub struct JobArgs {
    pub run: String,
    #[arg(long, default_value_t = 0)]
    pub replica: u32,
    #[arg(long, default_value_t = 0)]
    pub job: u32,
}

pub type TunnelArgs = JobArgs;

pub async fn run(target: &Target, a: Args) -> anyhow::Result<ExitCode> {
    let client = connect_or_start(target).await?;
    let run: Run = client
        .call::<methods::RunGet>(&RunNameParams {
            name: a.run.clone(),
        })
        .await?;
    let job = run.job(a.replica, a.job).ok_or_else(|| {
        anyhow!(
            "run {} has no job replica={} job={}",
            a.run,
            a.replica,
            a.job
        )
    })?;
    if !job.current.status.is_on_host() {
        bail!(
            "job {}/{} of {} is {}, not running",
            a.replica,
            a.job,
            a.run,
            job.current.status
        );
    }
    // Every job, on this machine or a host, in a container or not, is reached the same way:
    // through the daemon's SSH gateway with the user's own key (installed on no host).
    let me: User = client.call::<methods::UserMe>(&NoParams {}).await?;
    let key = me
        .ssh_private_key
        .as_deref()
        .ok_or_else(|| anyhow!("the daemon did not give your private key"))?;
    let (info, _, _, _) = super::forward::open_stream(
        target,
        methods::GATEWAY_OPEN,
        TunnelParams {
            run: run.name.clone(),
            replica: a.replica,
            job: a.job,
            port: None,
        },
    )
    .await?;
    let info: GatewayInfo = serde_json::from_value(info)?;
    let entry = crate::ssh_config::Entry {
        run: &run.name,
        jobs: 1,
        user: &me.name,
        uid: me.uid,
        private_key: key,
        gateway_host_key: &info.host_key,
        socket: &target.socket,
    };
    let dir = crate::ssh_config::write_identity(&entry)?;
    let exe = std::env::current_exe().context("cannot find the flotilla binary")?;
    let mut cmd = Command::new("ssh");
    // Only these options: the user's own ~/.ssh/config has no say in where this goes.
    cmd.arg("-F").arg("/dev/null");
    for (k, v) in crate::ssh_config::gateway_options(&entry, &dir, &exe, a.replica, a.job) {
        cmd.arg("-o").arg(format!("{k}={v}"));
    }
    if a.command.is_empty() {
        // An interactive shell: a terminal when this side has one.
        if std::io::stdin().is_terminal() {
            cmd.arg("-t");
        }
    } else {
        cmd.arg("-T");
    }
    cmd.arg(&run.name);
    if !a.command.is_empty() {
        cmd.arg(a.command.join(" "));
    }
    let status = cmd
        .status()
        .context("cannot run ssh (install openssh-client)")?;
    Ok(ExitCode::from(status.code().unwrap_or(255) as u8))
}

/// The ProxyCommand: stdin/stdout <-> the daemon's tunnel to the job's host.
pub async fn tunnel(target: &Target, a: TunnelArgs) -> anyhow::Result<ExitCode> {
    proxy(target, methods::TUNNEL_OPEN, a).await
}

/// The ProxyCommand of `ssh RUN`: stdin/stdout <-> the daemon's SSH gateway into the job.
pub async fn gateway(target: &Target, a: TunnelArgs) -> anyhow::Result<ExitCode> {
    proxy(target, methods::GATEWAY_OPEN, a).await
}

async fn proxy(target: &Target, method: &str, a: TunnelArgs) -> anyhow::Result<ExitCode> {
    use tokio::io::AsyncWriteExt;
    let (_, pending, mut read, mut write) = super::forward::open_stream(
        target,
        method,
        TunnelParams {
            run: a.run,
            replica: a.replica,
            job: a.job,
            port: None,
        },
    )
    .await?;
    let mut stdout = tokio::io::stdout();
    stdout.write_all(&pending).await?;
    stdout.flush().await?;
    let mut stdin = tokio::io::stdin();
    let up = async {
        let _ = tokio::io::copy(&mut stdin, &mut write).await;
        let _ = write.shutdown().await;
    };
    let down = async {
        let _ = tokio::io::copy(&mut read, &mut stdout).await;
    };
    tokio::join!(up, down);
    Ok(ExitCode::SUCCESS)
}
