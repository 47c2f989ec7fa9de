//! Driver layer: the daemon's SSH gateway. `gateway.open` (alone on its connection, after
//! `hello`) turns the socket connection into an SSH session with an SSH server inside the
//! daemon (russh's server side): it accepts only the caller's own key (the one `user.me`
//! gives), and runs each `exec`, shell and `sftp` request in the job's environment — inside its
//! container when it has one, else in its working directory with its environment — on the
//! daemon's machine as the job's owner, or over the daemon's own connection to an SSH host.
//! No terminal is allocated (a `pty` request is refused; commands and `scp` work).

use super::wire::{decode, json, op_error};
use crate::caller::Caller;
use crate::handle::Daemon;
use crate::hosts::local::session_command;
use crate::hosts::{sh_quote, Host};
use crate::ops;
use crate::ops::gateway::GatewayTarget;
use flotilla_protocol::rpc::{methods, GatewayInfo, Request, RpcError, TunnelParams};
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::LineEnding;
use russh::keys::{PrivateKey, PublicKey};
use russh::server::{Auth, Msg, Session};
use russh::{Channel, ChannelId, ChannelMsg};
use serde_json::Value;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, warn};

/// The gateway's host key: `<data_dir>/gateway_key` (OpenSSH, 0600), made at first use.
pub fn host_key(data_dir: &Path) -> anyhow::Result<PrivateKey> {
    let path = data_dir.join("gateway_key");
    match std::fs::read_to_string(&path) {
        Ok(text) => PrivateKey::from_openssh(text.as_bytes()).map_err(|e| {
            anyhow::anyhow!(
                "the gateway's host key {} is damaged ({e}); delete it to make a new one (clients will have to trust it again)",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed)
                .map_err(|e| anyhow::anyhow!("no random bytes for the gateway's key: {e}"))?;
            let key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
            let text = key
                .to_openssh(LineEnding::LF)
                .map_err(|e| anyhow::anyhow!("cannot encode the gateway's key: {e}"))?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
            f.write_all_sync(text.as_bytes())
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
            Ok(key)
        }
        Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    }
}

trait WriteAllSync {
    fn write_all_sync(&mut self, bytes: &[u8]) -> std::io::Result<()>;
}

impl WriteAllSync for std::fs::File {
    fn write_all_sync(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        self.write_all(bytes)?;
        self.sync_all()
    }
}

/// Decodes `gateway.open`, checks the caller, and says which host key the session will show.
pub fn open(
    d: &Daemon,
    caller: &Caller,
    req: &Request,
) -> Result<(Value, TunnelParams, GatewayTarget), RpcError> {
    let p: TunnelParams = decode(
        methods::GATEWAY_OPEN,
        req.params.clone().unwrap_or(Value::Null),
    )?;
    let target = ops::gateway::open(d, caller, &p).map_err(op_error)?;
    let host_key =
        d.gateway_key().public_key().to_openssh().map_err(|e| {
            RpcError::new(flotilla_protocol::rpc::codes::INTERNAL_ERROR, e.to_string())
        })?;
    Ok((json(GatewayInfo { host_key })?, p, target))
}

/// Runs the SSH session on the connection until the client leaves.
pub async fn serve(
    d: &Daemon,
    caller: &Caller,
    params: TunnelParams,
    stream: tokio::net::UnixStream,
    target: GatewayTarget,
) {
    let config = Arc::new(russh::server::Config {
        keys: vec![d.gateway_key().clone()],
        auth_rejection_time: std::time::Duration::from_millis(100),
        auth_rejection_time_initial: Some(std::time::Duration::from_millis(0)),
        inactivity_timeout: None,
        ..Default::default()
    });
    let allowed = match PublicKey::from_openssh(target.public_key.trim()) {
        Ok(k) => k,
        Err(e) => {
            warn!("gateway: the stored key of the run's caller cannot be read: {e}");
            return;
        }
    };
    let handler = Gateway {
        d: d.clone(),
        caller: caller.clone(),
        params,
        target: Arc::new(target),
        allowed,
        channels: Default::default(),
    };
    match russh::server::run_stream(config, stream, handler).await {
        Ok(session) => {
            if let Err(e) = session.await {
                debug!("gateway session ended: {e}");
            }
        }
        Err(e) => debug!("gateway session did not start: {e}"),
    }
}

struct Gateway {
    d: Daemon,
    caller: Caller,
    /// The job the session is in (its `port` unset).
    params: TunnelParams,
    target: Arc<GatewayTarget>,
    allowed: PublicKey,
    channels: std::collections::HashMap<ChannelId, Channel<Msg>>,
}

impl Gateway {
    fn key_allowed(&self, key: &PublicKey) -> bool {
        key.key_data() == self.allowed.key_data()
    }

    /// Starts what a request asks for on its channel; the channel's task owns it from now on.
    fn start(
        &mut self,
        id: ChannelId,
        what: Work,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        match self.channels.remove(&id) {
            Some(channel) => {
                session.channel_success(id)?;
                let target = self.target.clone();
                tokio::spawn(async move { run(channel, target, what).await });
            }
            None => session.channel_failure(id)?,
        }
        Ok(())
    }
}

impl russh::server::Handler for Gateway {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        offer: russh::server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(if self.key_allowed(offer.public_key) {
            Auth::Accept
        } else {
            Auth::reject()
        })
    }

    async fn auth_publickey(
        &mut self,
        _user: &str,
        key: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(if self.key_allowed(key.public_key) {
            Auth::Accept
        } else {
            Auth::reject()
        })
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    /// `ssh -L` and IDEs: a port of the job, on `localhost` as the session sees it (the same
    /// stream `tunnel.open` gives with the job's `port`).
    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let port = u16::try_from(port_to_connect).ok();
        let local = matches!(host_to_connect, "localhost" | "127.0.0.1" | "::1");
        let Some(port) = port.filter(|_| local) else {
            reply
                .reject(russh::ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        let params = TunnelParams {
            port: Some(port),
            ..self.params.clone()
        };
        match ops::tunnels::open(&self.d, &self.caller, &params).await {
            Ok((_, mut stream)) => {
                reply.accept().await;
                tokio::spawn(async move {
                    let mut ch = channel.into_stream();
                    if let Err(e) = tokio::io::copy_bidirectional(&mut ch, &mut stream).await {
                        debug!("gateway: a forwarded connection ended: {e}");
                    }
                });
            }
            Err(e) => {
                debug!("gateway: cannot forward port {port}: {e}");
                reply.reject(russh::ChannelOpenFailure::ConnectFailed).await;
            }
        }
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let command = String::from_utf8_lossy(data).into_owned();
        self.start(channel, Work::Exec(command), session)
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.start(channel, Work::Shell, session)
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if name == "sftp" {
            self.start(channel, Work::Sftp, session)
        } else {
            session.channel_failure(channel)?;
            Ok(())
        }
    }
}

/// What a session channel runs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Work {
    Exec(String),
    Shell,
    Sftp,
}

/// The host-side script of a session: inside the job's container when its launcher named one,
/// else in the job's working directory with the environment its script exported (and its
/// `uv` venv, if it has one).
fn session_script(job_dir: &str, work: &Work) -> String {
    const SFTP: &str = "for p in /usr/lib/openssh/sftp-server /usr/lib/ssh/sftp-server /usr/libexec/openssh/sftp-server /usr/libexec/sftp-server; do [ -x \"$p\" ] && exec \"$p\"; done; echo 'no sftp-server here' >&2; exit 127";
    const SHELL: &str =
        "if command -v bash >/dev/null 2>&1; then exec bash -l; else exec sh -l; fi";
    let inner = match work {
        Work::Exec(c) => c.as_str(),
        Work::Shell => SHELL,
        Work::Sftp => SFTP,
    };
    let dir = sh_quote(job_dir);
    format!(
        "d={dir}\n\
         if [ -f \"$d/container\" ]; then exec docker exec -i \"$(cat \"$d/container\")\" sh -c {inner_q}; fi\n\
         eval \"$(awk 'NR > 1 && /^(uv venv|set -e$)/ {{ exit }} NR > 1 {{ print }}' \"$d/script\")\"\n\
         [ -f \"$d/venv/bin/activate\" ] && . \"$d/venv/bin/activate\"\n\
         cd \"$(cat \"$d/workdir\" 2>/dev/null || echo \"$d/work\")\" || exit 1\n\
         exec sh -c {inner_q}\n",
        inner_q = sh_quote(inner)
    )
}

/// Runs a session channel's work and relays its streams until it ends; the exit status goes
/// back to the client.
async fn run(channel: Channel<Msg>, target: Arc<GatewayTarget>, work: Work) {
    let script = session_script(&target.job_dir, &work);
    let (mut rx, tx) = channel.split();
    let tx = Arc::new(tx);
    let code = match &target.host {
        Host::Local(_) => local(&mut rx, &tx, target.owner, &script).await,
        Host::Ssh(h) => remote(&mut rx, &tx, h, &script).await,
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

/// The session on an SSH host: the same script on a channel of the daemon's own connection.
async fn remote(
    rx: &mut russh::ChannelReadHalf,
    tx: &Tx,
    host: &crate::hosts::ssh::SshHost,
    script: &str,
) -> Result<u32, String> {
    let channel = host.open_session().await.map_err(|e| e.to_string())?;
    let (mut hrx, htx) = channel.split();
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
        let s = session_script("/j/7", &Work::Exec("echo it's".into()));
        assert!(s.starts_with("d='/j/7'\n"));
        assert!(s.contains("exec docker exec -i \"$(cat \"$d/container\")\" sh -c 'echo it'\\''s'"));
        assert!(s.ends_with("exec sh -c 'echo it'\\''s'\n"));
        assert!(session_script("/j/7", &Work::Sftp).contains("sftp-server"));
    }
}
