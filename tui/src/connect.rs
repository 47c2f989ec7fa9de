//! Reaching the daemon: connect to its socket, starting `flotillad` in the background when none answers.

use anyhow::{anyhow, Context};
use flotilla_protocol::client::{Client, ClientError};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where the daemon is, as the command line sees it.
#[derive(Debug, Clone)]
pub struct Target {
    pub socket: PathBuf,
    pub data_dir: Option<PathBuf>,
}

pub async fn connect(t: &Target) -> Result<Client, ClientError> {
    Client::connect(&t.socket, "flotilla-cli").await
}

/// Connects, starting the daemon first when nothing answers on the socket. A socket this user
/// may not open (`EACCES`/`EPERM`) belongs to someone else's daemon: no daemon is started then,
/// the error says how access is granted.
pub async fn connect_or_start(t: &Target) -> anyhow::Result<Client> {
    match connect(t).await {
        Ok(c) => return Ok(c),
        Err(ClientError::Connect { .. }) => {}
        Err(e) => return Err(anyhow!(e)),
    }
    start_daemon(t).await?;
    connect(t).await.map_err(|e| anyhow!(e))
}

/// The `flotillad` next to this binary, else the one on PATH.
fn daemon_binary() -> PathBuf {
    if let Ok(me) = std::env::current_exe() {
        let sibling = me.with_file_name("flotillad");
        if sibling.exists() {
            return sibling;
        }
    }
    PathBuf::from("flotillad")
}

fn state_dir(t: &Target) -> PathBuf {
    t.data_dir
        .clone()
        .unwrap_or_else(flotilla_protocol::paths::default_state_dir)
}

/// Starts `flotillad` in its own session, its output in `<state dir>/flotillad.out`, and waits
/// until it answers (at most 15 s).
pub async fn start_daemon(t: &Target) -> anyhow::Result<u32> {
    let dir = state_dir(t);
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the state dir {}", dir.display()))?;
    let out_path = dir.join("flotillad.out");
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&out_path)
        .with_context(|| format!("cannot open {}", out_path.display()))?;
    let err = out.try_clone()?;
    let bin = daemon_binary();
    let mut cmd = Command::new(&bin);
    cmd.arg("--socket").arg(&t.socket);
    if let Some(d) = &t.data_dir {
        cmd.arg("--data-dir").arg(d);
    }
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    // SAFETY: setsid is async-signal-safe; it detaches the daemon from our terminal and group.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {} (is it installed?)", bin.display()))?;
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if connect(t).await.is_ok() {
            // The child is the daemon itself; it is reaped by init once we exit.
            std::mem::forget(child);
            return Ok(pid);
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(anyhow!(
                "flotillad exited at start ({status}):\n{}",
                tail(&out_path, 20)
            ));
        }
        if Instant::now() > deadline {
            return Err(anyhow!(
                "flotillad did not answer on {} within 15s; see {}",
                t.socket.display(),
                out_path.display()
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_denied_says_how_access_is_granted() {
        let socket = PathBuf::from("/run/flotilla/flotilla.sock");
        let e = ClientError::PermissionDenied {
            path: socket.clone(),
        };
        assert_eq!(
            e.to_string(),
            format!("cannot connect to the flotilla daemon at {}: permission denied; ask an admin to add you to the daemon's socket group (flotillad --socket-group GROUP, config socket_group)", socket.display())
        );
    }
}
