//! Typed calls of the supervisor verbs (`inventory`, `start`, `follow`, `status`, `signal`).

use super::inventory::{parse_inventory, Inventory};
use super::{Host, HostError};
use flotilla_protocol::model::HostSoftware;
use tokio::io::{AsyncRead, AsyncReadExt};

/// What the supervisor knows of a job's process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessStatus {
    Running(u32),
    Exited(i32),
    /// Started once, but neither running nor with an exit code (the host rebooted, say).
    Lost,
    /// Never started.
    Absent,
}

/// How a `follow` ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowEnd {
    Exited(i32),
    Lost,
    /// The follow itself broke (connection lost): follow again from where it stopped.
    Broken(String),
}

pub async fn inventory(host: &Host) -> Result<Inventory, HostError> {
    let out = host.run(&["inventory"], None).await?;
    Ok(parse_inventory(&out))
}

/// What the host runs for jobs beyond its resources (Docker, uv), read again.
pub async fn software(host: &Host) -> Result<HostSoftware, HostError> {
    let out = host.run(&["software"], None).await?;
    Ok(parse_inventory(&out).software())
}

/// Starts a job of the user `owner` (a uid; on the local machine a root daemon starts it as
/// that user) (idempotent) and returns its pid.
pub async fn start(
    host: &Host,
    owner: u32,
    job_dir: &str,
    shell: &str,
    workdir: &str,
    script: &str,
) -> Result<u32, HostError> {
    let out = host
        .run_for(
            Some(owner),
            &["start", job_dir, shell, workdir],
            Some(script.as_bytes()),
        )
        .await?;
    out.trim().parse().map_err(|_| HostError::Verb {
        host: host.label(),
        verb: "start".into(),
        message: format!("unexpected pid {:?}", out.trim()),
    })
}

/// A verb's output that is none of the answers it may give.
pub(super) fn unexpected(host: &Host, verb: &str, out: &str) -> HostError {
    HostError::Verb {
        host: host.label(),
        verb: verb.into(),
        message: format!("unexpected answer {out:?}"),
    }
}

pub async fn status(host: &Host, job_dir: &str) -> Result<ProcessStatus, HostError> {
    let out = host.run(&["status", job_dir], None).await?;
    let mut words = out.split_whitespace();
    Ok(
        match (
            words.next(),
            words.next().and_then(|w| w.parse::<i64>().ok()),
        ) {
            (Some("running"), Some(pid)) => ProcessStatus::Running(pid as u32),
            (Some("exited"), Some(code)) => ProcessStatus::Exited(code as i32),
            (Some("lost"), _) => ProcessStatus::Lost,
            _ => ProcessStatus::Absent,
        },
    )
}

pub async fn signal(host: &Host, job_dir: &str, signal: &str) -> Result<(), HostError> {
    host.run(&["signal", job_dir, signal], None)
        .await
        .map(|_| ())
}

/// Streams a job's log from `offset`: `on_bytes` gets every chunk in order, then the end.
pub async fn follow(
    host: &Host,
    job_dir: &str,
    offset: u64,
    mut on_bytes: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> Result<FollowEnd, HostError> {
    let off = offset.to_string();
    let mut exec = host.exec(&["follow", job_dir, &off], None).await?;
    let mut stderr = std::mem::replace(&mut exec.stderr, Box::pin(tokio::io::empty()));
    let err_task = tokio::spawn(async move {
        let mut s = String::new();
        if let Err(e) = stderr.read_to_string(&mut s).await {
            s.push_str(&format!("\n(reading the supervisor's stderr failed: {e})"));
        }
        s
    });
    let mut buf = vec![0u8; 256 * 1024];
    let mut read_error = None;
    loop {
        match read_some(&mut exec.stdout, &mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                if let Err(e) = on_bytes(&buf[..n]) {
                    read_error = Some(format!("cannot store the log: {e}"));
                    break;
                }
            }
            Err(e) => {
                read_error = Some(e.to_string());
                break;
            }
        }
    }
    if let Some(e) = read_error {
        drop(exec); // kills the follow
        err_task.abort();
        return Ok(FollowEnd::Broken(e));
    }
    let status = exec.wait().await;
    let stderr = err_task.await.unwrap_or_default();
    for line in stderr.lines().rev() {
        if let Some(code) = line.strip_prefix("exit_code=") {
            if let Ok(c) = code.trim().parse() {
                return Ok(FollowEnd::Exited(c));
            }
        }
        if line.trim() == "lost" {
            return Ok(FollowEnd::Lost);
        }
    }
    Ok(FollowEnd::Broken(format!(
        "follow ended without an exit code ({}): {}",
        status
            .map(|s| format!("status {s}"))
            .unwrap_or_else(|| "connection lost".into()),
        stderr.trim()
    )))
}

async fn read_some<R: AsyncRead + Unpin>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    r.read(buf).await
}
