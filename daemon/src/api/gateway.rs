//! Driver layer: the daemon's SSH gateway. `gateway.open` (alone on its connection, after
//! `hello`) turns the socket connection into an SSH session with an SSH server inside the
//! daemon (russh's server side): it accepts only the caller's own key (the one `user.me`
//! gives), and runs each `exec`, shell and `sftp` request in the job's environment — inside its
//! container when it has one, else in its working directory with its environment — on the
//! daemon's machine as the job's owner, or over the daemon's own connection to an SSH host.
//! A client that asks for a terminal (`ssh -t`, an interactive `ssh RUN`) gets one
//! (`gateway_session.rs` runs each channel).

use super::gateway_session::{run, PtyWish, SessionSpec, Work};
use super::wire::{decode, json, op_error};
use crate::caller::Caller;
use crate::handle::Daemon;
use crate::hosts::pty::TermSize;
use crate::ops;
use crate::ops::gateway::GatewayTarget;
use flotilla_protocol::rpc::{methods, GatewayInfo, Request, RpcError, TunnelParams};
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::LineEnding;
use russh::keys::{PrivateKey, PublicKey};
use russh::server::{Auth, Msg, Session};
use russh::{Channel, ChannelId};
use serde_json::Value;
use std::collections::HashMap;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::mpsc;
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

/// Why the gateway refused the keys a client offered, and what the caller may reach.
fn refused_key_message(caller: &Caller, run: &str) -> String {
    let reach = if caller.admin {
        "every run (you are an admin)".to_string()
    } else {
        format!("the runs of {} only", caller.user)
    };
    format!(
        "The key offered is not the one the daemon made for {user}: through this socket you are \
         {user}, and the gateway takes only {user}'s own key, which reaches {reach}. Use the \
         entry that `flotilla attach {run}` writes in ~/.flotilla/ssh/config (or \
         `flotilla ssh {run}`), which names that key.",
        user = caller.user
    )
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
        // Keyboard-interactive only says why a key was refused (no prompt, then refused).
        methods: russh::MethodSet::from(
            &[
                russh::MethodKind::PublicKey,
                russh::MethodKind::KeyboardInteractive,
            ][..],
        ),
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
        ptys: Default::default(),
        resizes: Default::default(),
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
    channels: HashMap<ChannelId, Channel<Msg>>,
    /// Terminals asked for, by channel, until the channel's command starts.
    ptys: HashMap<ChannelId, PtyWish>,
    /// Where each running channel's window sizes go.
    resizes: HashMap<ChannelId, mpsc::UnboundedSender<TermSize>>,
}

impl Gateway {
    fn key_allowed(&self, key: &PublicKey) -> bool {
        key.key_data() == self.allowed.key_data()
    }

    /// Starts what a request asks for on its channel; the channel's task owns it from now on.
    fn start(
        &mut self,
        id: ChannelId,
        work: Work,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        match self.channels.remove(&id) {
            Some(channel) => {
                session.channel_success(id)?;
                let target = self.target.clone();
                let (resize_tx, resizes) = mpsc::unbounded_channel();
                self.resizes.insert(id, resize_tx);
                let spec = SessionSpec {
                    work,
                    pty: self.ptys.remove(&id),
                    resizes,
                };
                tokio::spawn(async move { run(channel, target, spec).await });
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

    /// A key that is not the caller's was refused: the client is told why, and what it may
    /// reach, in the instructions of a challenge without prompts; then refused.
    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        _user: &str,
        _submethods: &str,
        response: Option<russh::server::Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        if response.is_some() {
            return Ok(Auth::Reject {
                proceed_with_methods: None,
                partial_success: false,
            });
        }
        Ok(Auth::Partial {
            name: "flotilla gateway".into(),
            instructions: refused_key_message(&self.caller, &self.target.run).into(),
            prompts: Vec::new().into(),
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

    #[allow(clippy::too_many_arguments)] // russh's signature
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        col_width: u32,
        row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let term = if term.is_empty() { "xterm" } else { term };
        self.ptys.insert(
            channel,
            PtyWish {
                term: term.to_string(),
                size: TermSize::from_ssh(col_width, row_height),
            },
        );
        session.channel_success(channel)?;
        Ok(())
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        col_width: u32,
        row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let size = TermSize::from_ssh(col_width, row_height);
        if let Some(wish) = self.ptys.get_mut(&channel) {
            wish.size = size;
        } else if let Some(tx) = self.resizes.get(&channel) {
            if tx.send(size).is_err() {
                self.resizes.remove(&channel);
            }
        }
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.resizes.remove(&channel);
        self.ptys.remove(&channel);
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
