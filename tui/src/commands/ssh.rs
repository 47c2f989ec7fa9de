//! `flotilla ssh RUN [-- COMMAND]`: a shell (or a command) in a run's job, in its working
//! directory: through `tunnel.open` and the user's own key for SSH hosts; a local shell for jobs
//! on this machine. `flotilla tunnel RUN` is the ProxyCommand it gives ssh.

use crate::connect::{connect, connect_or_start, Target};
use anyhow::{anyhow, bail, Context};
use flotilla_protocol::model::{Run, User};
use flotilla_protocol::rpc::{methods, NoParams, RunNameParams, TunnelInfo, TunnelParams};
use flotilla_protocol::shell::sh_quote;
use std::os::unix::fs::PermissionsExt;
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

fn state_dir(t: &Target) -> std::path::PathBuf {
    t.data_dir
        .clone()
        .unwrap_or_else(flotilla_protocol::paths::default_state_dir)
}

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
    let shell_cmd = if a.command.is_empty() {
        None
    } else {
        Some(a.command.join(" "))
    };
    if job.current.fleet.as_deref() == Some("local") {
        // The job runs where the daemon runs: a local shell in its directory.
        let dir = job
            .current
            .job_dir
            .as_ref()
            .map(|d| format!("{d}/work"))
            .ok_or_else(|| anyhow!("the job has no directory yet"))?;
        let job_dir = job.current.job_dir.as_deref().unwrap_or_default();
        if let Some(container) = local_container(job_dir) {
            // A job in a container: the session is in it, in its working directory and env.
            let status = Command::new("docker")
                .args(docker_exec_args(&container, shell_cmd.as_deref()))
                .status()
                .context("cannot run docker exec (is Docker installed here?)")?;
            return Ok(ExitCode::from(status.code().unwrap_or(1) as u8));
        }
        let shell = std::env::var("SHELL").unwrap_or_else(|_| "/bin/sh".into());
        let mut cmd = Command::new(&shell);
        if let Some(c) = &shell_cmd {
            cmd.arg("-c").arg(c);
        }
        let status = cmd
            .current_dir(&dir)
            .env("DSTACK_RUN_NAME", &run.name)
            .status()
            .with_context(|| format!("cannot start {shell} in {dir}"))?;
        return Ok(ExitCode::from(status.code().unwrap_or(1) as u8));
    }
    // An SSH host: the user's key, the pinned host key, and the daemon's route.
    let me: User = client.call::<methods::UserMe>(&NoParams {}).await?;
    let key = me
        .ssh_private_key
        .ok_or_else(|| anyhow!("the daemon did not give your private key"))?;
    let dir = state_dir(target).join("ssh");
    std::fs::create_dir_all(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    let key_path = dir.join(format!("id_{}", me.uid));
    std::fs::write(&key_path, key)?;
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600))?;
    // Ask where the tunnel leads (and close it at once): host, user, key, workdir.
    let info = probe_tunnel(target, &a.run, a.replica, a.job).await?;
    let known = dir.join("known_hosts");
    let alias = format!("flotilla-{}", info.instance);
    match &info.host_key {
        Some(k) => std::fs::write(&known, format!("{alias} {k}\n"))?,
        None => bail!("the host key of {} is not known yet", info.instance),
    }
    let me_exe = std::env::current_exe()?;
    let proxy = format!(
        "{} --socket {} tunnel {} --replica {} --job {}",
        me_exe.display(),
        target.socket.display(),
        a.run,
        a.replica,
        a.job
    );
    let workdir = info.workdir.unwrap_or_else(|| "~".into());
    let on_host = match &shell_cmd {
        Some(c) => format!("cd '{workdir}' && {c}"),
        None => format!("cd '{workdir}' && exec \"${{SHELL:-/bin/sh}}\" -l"),
    };
    // A job in a container: the session is in it (the launcher names it in the job's dir).
    let remote = match workdir.strip_suffix("/work") {
        Some(job_dir) => {
            let exec: Vec<String> = docker_exec_args("$c", shell_cmd.as_deref())
                .iter()
                .map(|a| {
                    if a == "$c" {
                        "\"$c\"".to_string()
                    } else {
                        sh_quote(a)
                    }
                })
                .collect();
            format!(
                "if [ -f '{job_dir}/container' ]; then c=$(cat '{job_dir}/container') && exec docker {}; fi; {on_host}",
                exec.join(" ")
            )
        }
        None => on_host,
    };
    let mut cmd = Command::new("ssh");
    cmd.arg("-o")
        .arg(format!("ProxyCommand={proxy}"))
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known.display()))
        .arg("-o")
        .arg("StrictHostKeyChecking=yes")
        .arg("-o")
        .arg(format!("HostKeyAlias={alias}"))
        .arg("-o")
        .arg("IdentitiesOnly=yes")
        .arg("-i")
        .arg(&key_path)
        .arg("-l")
        .arg(&info.user);
    if shell_cmd.is_none() {
        cmd.arg("-t");
    }
    let status = cmd
        .arg(&info.hostname)
        .arg(remote)
        .status()
        .context("cannot run ssh (install openssh-client)")?;
    Ok(ExitCode::from(status.code().unwrap_or(255) as u8))
}

/// The container of a job on this machine, when it has one (its launcher wrote the name).
fn local_container(job_dir: &str) -> Option<String> {
    if job_dir.is_empty() {
        return None;
    }
    std::fs::read_to_string(std::path::Path::new(job_dir).join("container"))
        .ok()
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
}

/// `docker exec` into a job's container: a login shell (bash when the image has it) with a
/// terminal, or `command` without one.
fn docker_exec_args(container: &str, command: Option<&str>) -> Vec<String> {
    let mut args = vec!["exec".to_string(), "-i".to_string()];
    match command {
        Some(c) => args.extend([container.into(), "sh".into(), "-c".into(), c.into()]),
        None => {
            args.push("-t".into());
            args.extend([
                container.into(),
                "sh".into(),
                "-c".into(),
                "if command -v bash >/dev/null 2>&1; then exec bash -l; else exec sh -l; fi".into(),
            ]);
        }
    }
    args
}

async fn probe_tunnel(
    target: &Target,
    run: &str,
    replica: u32,
    job: u32,
) -> anyhow::Result<TunnelInfo> {
    let client = connect(target).await?;
    let info: TunnelInfo = client
        .call::<methods::TunnelOpen>(&TunnelParams {
            run: run.to_string(),
            replica,
            job,
            port: None,
        })
        .await?;
    Ok(info)
}

/// The ProxyCommand: stdin/stdout <-> the daemon's tunnel to the job's host.
pub async fn tunnel(target: &Target, a: TunnelArgs) -> anyhow::Result<ExitCode> {
    use tokio::io::AsyncWriteExt;
    let t = super::forward::open_tunnel(
        target,
        TunnelParams {
            run: a.run,
            replica: a.replica,
            job: a.job,
            port: None,
        },
    )
    .await?;
    let (mut read, mut write) = (t.read, t.write);
    let mut stdout = tokio::io::stdout();
    stdout.write_all(&t.pending).await?;
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
