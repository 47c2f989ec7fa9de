//! Driver layer: one session channel of the SSH gateway. Runs what the client asked for (a
//! command, a shell, `sftp`) in the job's environment — on this machine as the job's owner, or
//! on a channel of the daemon's own connection to an SSH host — with a terminal when the client
//! asked for one, and relays the streams, window sizes and exit status.

use crate::hosts::local::session_command;
use crate::hosts::pty::{spawn_in_pty, TermSize};
use crate::hosts::{sh_quote, Host};
use crate::ops::gateway::GatewayTarget;
use russh::server::Msg;
use russh::{Channel, ChannelMsg};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tracing::debug;

/// What a session channel runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    Exec(String),
    Shell,
    Sftp,
}

/// The terminal a client asked for (`ssh -t`, an interactive `ssh RUN`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PtyWish {
    pub term: String,
    pub size: TermSize,
}

/// A session: its work, its terminal if any, and the window sizes the client sends later.
pub struct SessionSpec {
    pub work: Work,
    pub pty: Option<PtyWish>,
    pub resizes: mpsc::UnboundedReceiver<TermSize>,
}

/// The host-side script of a session: inside the job's container when its launcher named one,
/// else in the job's working directory with the environment its script exported (and its
/// `uv` venv, if it has one).
pub fn session_script(job_dir: &str, work: &Work, tty: bool) -> String {
    const SFTP: &str = "for p in /usr/lib/openssh/sftp-server /usr/lib/ssh/sftp-server /usr/libexec/openssh/sftp-server /usr/libexec/sftp-server; do [ -x \"$p\" ] && exec \"$p\"; done; echo 'no sftp-server here' >&2; exit 127";
    const SHELL: &str =
        "if command -v bash >/dev/null 2>&1; then exec bash -l; else exec sh -l; fi";
    let inner = match work {
        Work::Exec(c) => c.as_str(),
        Work::Shell => SHELL,
        Work::Sftp => SFTP,
    };
    let dir = sh_quote(job_dir);
    let exec_flags = if tty { "-it" } else { "-i" };
    format!(
        "d={dir}\n\
         if [ -f \"$d/container\" ]; then exec docker exec {exec_flags}{term} \"$(cat \"$d/container\")\" sh -c {inner_q}; fi\n\
         eval \"$(awk 'NR > 1 && /^(uv venv|set -e$)/ {{ exit }} NR > 1 {{ print }}' \"$d/script\")\"\n\
         [ -f \"$d/venv/bin/activate\" ] && . \"$d/venv/bin/activate\"\n\
         cd \"$(cat \"$d/workdir\" 2>/dev/null || echo \"$d/work\")\" || exit 1\n\
         exec sh -c {inner_q}\n",
        term = if tty { " -e TERM" } else { "" },
        inner_q = sh_quote(inner)
    )
}

/// Runs a session channel's work and relays its streams until it ends; the exit status goes
/// back to the client.
pub async fn run(channel: Channel<Msg>, target: Arc<GatewayTarget>, spec: SessionSpec) {
    let script = session_script(&target.job_dir, &spec.work, spec.pty.is_some());
    let (mut rx, tx) = channel.split();
    let tx = Arc::new(tx);
    let code = match (&target.host, spec.pty) {
        (Host::Local(_), None) => local(&mut rx, &tx, target.owner, &script).await,
        (Host::Local(_), Some(pty)) => {
            local_pty(&mut rx, &tx, target.owner, &script, pty, spec.resizes).await
        }
        (Host::Ssh(h), pty) => remote(&mut rx, &tx, h, &script, pty, spec.resizes).await,
    };
    let code = match code {
        Ok(c) => c,
        Err(e) => {
            let message = format!("flotilla gateway: {e}\n");
            if let Err(e) = tx.extended_data_bytes(1, message.into_bytes()).await {
                debug!("gateway: cannot tell the client: {e}");
            }
            255
        }
    };
    for r in [tx.exit_status(code).await, tx.eof().await, tx.close().await] {
        if let Err(e) = r {
            debug!("gateway: closing a session: {e}");
        }
    }
}

type Tx = russh::ChannelWriteHalf<Msg>;

/// Sends what `from` gives to the client as it comes (stderr on `ext` 1).
async fn relay(
    mut from: impl tokio::io::AsyncRead + Unpin,
    tx: Arc<Tx>,
    ext: Option<u32>,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        let chunk = buf[..n].to_vec();
        let sent = match ext {
            None => tx.data_bytes(chunk).await,
            Some(e) => tx.extended_data_bytes(e, chunk).await,
        };
        sent.map_err(|e| std::io::Error::other(e.to_string()))?;
    }
}

/// The session on this machine: `sh -c SCRIPT` as the job's owner.
async fn local(
    rx: &mut russh::ChannelReadHalf,
    tx: &Arc<Tx>,
    owner: u32,
    script: &str,
) -> Result<u32, String> {
    let mut child = session_command(owner, script)?
        .spawn()
        .map_err(|e| format!("cannot start the session: {e}"))?;
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err("no pipes to the session".into());
    };
    // Every chunk goes out at once (an interactive protocol such as SFTP waits for it).
    let copy_out = tokio::spawn(relay(stdout, tx.clone(), None));
    let copy_err = tokio::spawn(relay(stderr, tx.clone(), Some(1)));
    // Owned, so that dropping it at the client's EOF closes the pipe.
    let mut stdin = Some(stdin);
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            msg = rx.wait() => match msg {
                Some(ChannelMsg::Data { data }) => {
                    if let Some(w) = stdin.as_mut() {
                        if w.write_all(&data).await.is_err() {
                            stdin = None;
                        }
                    }
                }
                Some(ChannelMsg::Eof) => stdin = None,
                Some(_) => {}
                None => {
                    if let Err(e) = child.start_kill() {
                        debug!("gateway: cannot end a session whose client left: {e}");
                    }
                    break child.wait().await;
                }
            },
        }
    };
    for copy in [copy_out, copy_err] {
        match copy.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => debug!("gateway: relaying a session's output: {e}"),
            Err(e) => debug!("gateway: a relay task failed: {e}"),
        }
    }
    let status = status.map_err(|e| format!("cannot wait for the session: {e}"))?;
    Ok(status.code().map(|c| c as u32).unwrap_or(255))
}

/// The session on this machine in a terminal: one stream both ways, and the window's size.
async fn local_pty(
    rx: &mut russh::ChannelReadHalf,
    tx: &Arc<Tx>,
    owner: u32,
    script: &str,
    pty: PtyWish,
    mut resizes: mpsc::UnboundedReceiver<TermSize>,
) -> Result<u32, String> {
    let mut cmd = session_command(owner, script)?;
    cmd.env("TERM", &pty.term);
    let (mut child, mut reader) =
        spawn_in_pty(cmd, pty.size).map_err(|e| format!("cannot start a terminal: {e}"))?;
    let mut writer = reader
        .try_clone()
        .map_err(|e| format!("cannot open the terminal twice: {e}"))?;
    let tx_out = tx.clone();
    let copy_out = tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) => return,
                Ok(n) => {
                    if tx_out.data_bytes(buf[..n].to_vec()).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    debug!("gateway: reading a terminal: {e}");
                    return;
                }
            }
        }
    });
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            Some(size) = resizes.recv() => {
                if let Err(e) = writer.resize(size) {
                    debug!("gateway: cannot resize a terminal: {e}");
                }
            }
            msg = rx.wait() => match msg {
                Some(ChannelMsg::Data { data }) => {
                    if let Err(e) = writer.write_all(&data).await {
                        debug!("gateway: writing to a terminal: {e}");
                    }
                }
                Some(_) => {}
                None => {
                    if let Err(e) = child.start_kill() {
                        debug!("gateway: cannot end a session whose client left: {e}");
                    }
                    break child.wait().await;
                }
            },
        }
    };
    // What the program wrote last is still in the terminal: give it a moment to drain (a
    // program left in the background may hold the terminal open for ever).
    if tokio::time::timeout(std::time::Duration::from_millis(500), copy_out)
        .await
        .is_err()
    {
        debug!("gateway: a terminal stayed open after its session ended");
    }
    let status = status.map_err(|e| format!("cannot wait for the session: {e}"))?;
    Ok(status.code().map(|c| c as u32).unwrap_or(255))
}

/// The session on an SSH host: the same script on a channel of the daemon's own connection,
/// in a terminal of the host's when the client asked for one.
async fn remote(
    rx: &mut russh::ChannelReadHalf,
    tx: &Tx,
    host: &crate::hosts::ssh::SshHost,
    script: &str,
    pty: Option<PtyWish>,
    mut resizes: mpsc::UnboundedReceiver<TermSize>,
) -> Result<u32, String> {
    let channel = host.open_session().await.map_err(|e| e.to_string())?;
    let (mut hrx, htx) = channel.split();
    if let Some(p) = &pty {
        htx.request_pty(
            false,
            &p.term,
            p.size.cols.into(),
            p.size.rows.into(),
            0,
            0,
            &[],
        )
        .await
        .map_err(|e| format!("cannot open a terminal on {}: {e}", host.label()))?;
    }
    htx.exec(true, script.as_bytes().to_vec())
        .await
        .map_err(|e| format!("cannot start the session on {}: {e}", host.label()))?;
    let mut code = 255;
    loop {
        tokio::select! {
            msg = hrx.wait() => match msg {
                Some(ChannelMsg::Data { data }) => {
                    tx.data_bytes(data).await.map_err(|e| e.to_string())?;
                }
                Some(ChannelMsg::ExtendedData { data, ext }) => {
                    tx.extended_data_bytes(ext, data).await.map_err(|e| e.to_string())?;
                }
                Some(ChannelMsg::ExitStatus { exit_status }) => code = exit_status,
                Some(ChannelMsg::Close) | None => break,
                Some(_) => {}
            },
            Some(size) = resizes.recv() => {
                if let Err(e) = htx.window_change(size.cols.into(), size.rows.into(), 0, 0).await {
                    debug!("gateway: resizing a terminal on {}: {e}", host.label());
                }
            }
            msg = rx.wait() => match msg {
                Some(ChannelMsg::Data { data }) => {
                    htx.data_bytes(data).await.map_err(|e| e.to_string())?;
                }
                Some(ChannelMsg::Eof) => htx.eof().await.map_err(|e| e.to_string())?,
                Some(_) => {}
                None => {
                    if let Err(e) = htx.close().await {
                        debug!("gateway: closing a session on {}: {e}", host.label());
                    }
                    break;
                }
            },
        }
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_goes_into_the_container_or_the_jobs_directory() {
        let s = session_script("/j/7", &Work::Exec("echo it's".into()), false);
        assert!(s.starts_with("d='/j/7'\n"));
        assert!(s.contains("exec docker exec -i \"$(cat \"$d/container\")\" sh -c 'echo it'\\''s'"));
        assert!(s.ends_with("exec sh -c 'echo it'\\''s'\n"));
        assert!(session_script("/j/7", &Work::Sftp, false).contains("sftp-server"));
        let tty = session_script("/j/7", &Work::Shell, true);
        assert!(
            tty.contains("exec docker exec -it -e TERM \"$(cat"),
            "{tty}"
        );
    }
}
