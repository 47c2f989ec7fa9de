//! SSH hosts: one russh connection per host shared by all channels, key authentication (identity
//! file or SSH agent), `proxy_jump`, keepalive, reconnect on demand, and pinned host keys.

use super::{sh_quote, slurm_script_hash, supervisor_hash, Exec, HostError, SUPERVISOR_SCRIPT};
use crate::sync::LockExt;
use flotilla_protocol::model::SshEndpoint;
use russh::client::{self, Handle};
use russh::keys::{load_secret_key, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::ChannelMsg;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Checks the server's key against the pinned one; records what it saw.
struct KeyCheck {
    expected: Option<String>,
    seen: Arc<Mutex<Option<String>>>,
}

impl client::Handler for KeyCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let text = key_text(key);
        let ok = self.expected.as_ref().is_none_or(|e| e == &text);
        *self.seen.locked() = Some(text);
        Ok(ok)
    }
}

fn key_text(key: &PublicKeyOrCertificate) -> String {
    match key {
        PublicKeyOrCertificate::PublicKey { key, .. } => key.to_openssh().unwrap_or_default(),
        PublicKeyOrCertificate::Certificate(c) => c.to_openssh().unwrap_or_default(),
    }
}

struct Conn {
    handle: Arc<Handle<KeyCheck>>,
    /// Keeps the jump host's connection alive as long as the tunnel through it.
    jump: Option<Arc<Handle<KeyCheck>>>,
}

/// A machine of an SSH fleet.
pub struct SshHost {
    endpoint: SshEndpoint,
    /// The pinned host key; learned at first contact when `None`.
    host_key: Mutex<Option<String>>,
    /// The `proxy_jump` host's key: pinned and stored with the instance like `host_key`,
    /// learned at first contact when `None`.
    jump_key: Mutex<Option<String>>,
    /// Where the supervisor and jobs live on the host (`$HOME/.flotilla`).
    root: Mutex<Option<String>>,
    conn: tokio::sync::Mutex<Option<Conn>>,
    /// A Slurm login node: the job verbs are `slurm.sh`'s (jobs run in Slurm allocations).
    slurm: bool,
}

/// What `prepare` learns about a host.
pub struct Prepared {
    pub root: String,
    pub host_key: Option<String>,
    /// The `proxy_jump` host's key, for hosts behind one.
    pub jump_host_key: Option<String>,
    pub inventory: super::inventory::Inventory,
}

impl SshHost {
    pub fn new(endpoint: SshEndpoint, host_key: Option<String>, root: Option<String>) -> SshHost {
        SshHost {
            endpoint,
            host_key: Mutex::new(host_key),
            jump_key: Mutex::new(None),
            root: Mutex::new(root),
            conn: tokio::sync::Mutex::new(None),
            slurm: false,
        }
    }

    /// Marks a Slurm cluster's login node: its job verbs ask Slurm (see `assets/slurm.sh`).
    pub fn with_slurm_verbs(mut self, slurm: bool) -> SshHost {
        self.slurm = slurm;
        self
    }

    pub fn is_slurm(&self) -> bool {
        self.slurm
    }

    pub fn label(&self) -> String {
        self.endpoint.label()
    }

    pub fn endpoint(&self) -> &SshEndpoint {
        &self.endpoint
    }

    pub fn host_key(&self) -> Option<String> {
        self.host_key.locked().clone()
    }

    /// Pins the `proxy_jump` host's key stored with the instance: a different one is refused.
    pub fn with_jump_key(self, jump_key: Option<String>) -> SshHost {
        *self.jump_key.locked() = jump_key;
        self
    }

    /// The `proxy_jump` host's key (None without a jump host or before first contact).
    pub fn jump_key(&self) -> Option<String> {
        self.jump_key.locked().clone()
    }

    pub fn root(&self) -> String {
        self.root
            .locked()
            .clone()
            .unwrap_or_else(|| "$HOME/.flotilla".to_string())
    }

    /// Drops the connection (the next command reconnects).
    pub async fn disconnect(&self) {
        if let Some(c) = self.conn.lock().await.take() {
            let _ = c
                .handle
                .disconnect(russh::Disconnect::ByApplication, "", "en")
                .await;
        }
    }

    async fn handle(&self) -> Result<Arc<Handle<KeyCheck>>, HostError> {
        let mut g = self.conn.lock().await;
        if let Some(c) = g.as_ref() {
            if !c.handle.is_closed() {
                return Ok(c.handle.clone());
            }
        }
        *g = None;
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, self.connect())
            .await
            .map_err(|_| HostError::Unreachable {
                host: self.label(),
                message: format!("no SSH session within {}s", CONNECT_TIMEOUT.as_secs()),
            })??;
        let handle = conn.handle.clone();
        *g = Some(conn);
        Ok(handle)
    }

    async fn connect(&self) -> Result<Conn, HostError> {
        let target = &self.endpoint;
        match &target.proxy_jump {
            None => {
                let tcp = tcp_connect(target).await?;
                let expected = self.host_key.locked().clone();
                let (h, seen) = handshake(target, tcp, expected).await?;
                *self.host_key.locked() = Some(seen);
                Ok(Conn {
                    handle: Arc::new(h),
                    jump: None,
                })
            }
            Some(jump) => {
                let tcp = tcp_connect(jump).await?;
                let expected = self.jump_key.locked().clone();
                let (jh, seen) = handshake(jump, tcp, expected).await?;
                *self.jump_key.locked() = Some(seen);
                let channel = jh
                    .channel_open_direct_tcpip(
                        target.hostname.clone(),
                        u32::from(target.port),
                        "127.0.0.1",
                        0,
                    )
                    .await
                    .map_err(|e| HostError::Unreachable {
                        host: target.label(),
                        message: format!("through {}: {e}", jump.label()),
                    })?;
                let expected = self.host_key.locked().clone();
                let (h, seen) = handshake(target, channel.into_stream(), expected).await?;
                *self.host_key.locked() = Some(seen);
                Ok(Conn {
                    handle: Arc::new(h),
                    jump: Some(Arc::new(jh)),
                })
            }
        }
    }

    /// Runs a shell command line on the host; `stdin` is sent and closed.
    pub async fn exec_raw(&self, command: &str, stdin: Option<&[u8]>) -> Result<Exec, HostError> {
        let mut input: &[u8] = stdin.unwrap_or_default();
        self.exec_raw_reader(command, &mut input).await
    }

    /// [`SshHost::exec_raw`] with standard input streamed from `stdin` (an archive: never whole
    /// in memory), then closed.
    pub async fn exec_raw_reader(
        &self,
        command: &str,
        stdin: &mut (dyn AsyncRead + Send + Unpin),
    ) -> Result<Exec, HostError> {
        let handle = self.handle().await?;
        let unreachable = |e: russh::Error| HostError::Unreachable {
            host: self.label(),
            message: e.to_string(),
        };
        let channel = match handle.channel_open_session().await {
            Ok(c) => c,
            Err(e) => {
                // A dead connection: forget it, so that the next command reconnects.
                *self.conn.lock().await = None;
                return Err(unreachable(e));
            }
        };
        channel.exec(true, command).await.map_err(unreachable)?;
        channel.data(stdin).await.map_err(unreachable)?;
        channel.eof().await.map_err(unreachable)?;
        Ok(self.collect_channel(channel))
    }

    /// The output streams and exit code of a channel whose command runs.
    fn collect_channel(&self, channel: russh::Channel<russh::client::Msg>) -> Exec {
        let (mut out_w, out_r) = tokio::io::duplex(256 * 1024);
        let (mut err_w, err_r) = tokio::io::duplex(64 * 1024);
        let (exit_tx, exit_rx) = oneshot::channel();
        let (kill_tx, mut kill_rx) = oneshot::channel::<()>();
        let mut channel = channel;
        let label = self.label();
        tokio::spawn(async move {
            let mut code = None;
            let mut err_open = true;
            loop {
                tokio::select! {
                    msg = channel.wait() => match msg {
                        Some(ChannelMsg::Data { data }) => {
                            if out_w.write_all(&data).await.is_err() { break; }
                        }
                        Some(ChannelMsg::ExtendedData { data, ext: 1 }) => {
                            // Stderr carries the supervisor's errors and a follow's exit code:
                            // when its reader is gone, say so once and stop forwarding it.
                            if err_open {
                                if let Err(e) = err_w.write_all(&data).await {
                                    tracing::warn!("{label}: stderr of a remote command lost ({} bytes): {e}", data.len());
                                    err_open = false;
                                }
                            }
                        }
                        Some(ChannelMsg::ExitStatus { exit_status }) => code = Some(exit_status as i32),
                        Some(_) => {}
                        None => break,
                    },
                    _ = &mut kill_rx => {
                        let _ = channel.close().await;
                        code = None;
                        break;
                    }
                }
            }
            drop(out_w);
            drop(err_w);
            let _ = exit_tx.send(code);
        });
        Exec::new(Box::pin(out_r), Box::pin(err_r), exit_rx, kill_tx)
    }

    pub async fn exec_supervisor(
        &self,
        args: &[&str],
        stdin: Option<&[u8]>,
    ) -> Result<Exec, HostError> {
        self.exec_raw(&self.supervisor_command(args), stdin).await
    }

    /// [`SshHost::exec_supervisor`] with standard input streamed from `stdin`.
    pub async fn exec_supervisor_reader(
        &self,
        args: &[&str],
        stdin: &mut (dyn AsyncRead + Send + Unpin),
    ) -> Result<Exec, HostError> {
        self.exec_raw_reader(&self.supervisor_command(args), stdin)
            .await
    }

    /// The command line of a supervisor verb (through `slurm.sh` on a Slurm login node).
    fn supervisor_command(&self, args: &[&str]) -> String {
        let root = self.root();
        let mut cmd = format!(
            "FLOTILLA_ROOT={r} sh {r}/supervisor-{}.sh",
            supervisor_hash(),
            r = quote_root(&root)
        );
        if self.slurm {
            cmd = format!(
                "FLOTILLA_SUPERVISOR={r}/supervisor-{}.sh FLOTILLA_ROOT={r} sh {r}/slurm-{}.sh",
                supervisor_hash(),
                slurm_script_hash(),
                r = quote_root(&root)
            );
        }
        for a in args {
            cmd.push(' ');
            cmd.push_str(&sh_quote(a));
        }
        cmd
    }

    /// Connects, installs the supervisor when this version is missing, and reads the inventory.
    pub async fn prepare(&self) -> Result<Prepared, HostError> {
        let hash = supervisor_hash();
        let script = format!(
            "set -e; r=\"$HOME/.flotilla\"; mkdir -p \"$r/jobs\"; f=\"$r/supervisor-{hash}.sh\"; \
             if [ -f \"$f\" ]; then cat >/dev/null; else cat > \"$f.tmp\" && mv \"$f.tmp\" \"$f\"; fi; \
             echo \"root=$r\"; FLOTILLA_ROOT=\"$r\" sh \"$f\" inventory"
        );
        let exec = self
            .exec_raw(&script, Some(SUPERVISOR_SCRIPT.as_bytes()))
            .await?;
        let (out, err, code) = exec.collect().await;
        if code != Some(0) {
            return Err(HostError::Verb {
                host: self.label(),
                verb: "inventory".into(),
                message: String::from_utf8_lossy(&err).trim().to_string(),
            });
        }
        let text = String::from_utf8_lossy(&out);
        let root = text
            .lines()
            .find_map(|l| l.strip_prefix("root="))
            .map(str::to_string)
            .ok_or_else(|| HostError::Verb {
                host: self.label(),
                verb: "inventory".into(),
                message: "no root in the answer".into(),
            })?;
        *self.root.locked() = Some(root.clone());
        Ok(Prepared {
            root,
            host_key: self.host_key(),
            jump_host_key: self.jump_key(),
            inventory: super::inventory::parse_inventory(&text),
        })
    }

    /// Adds public keys to the login user's `~/.ssh/authorized_keys` (once each): the per-run
    /// key that lets the nodes of a multi-node run reach each other.
    pub async fn authorize_keys(&self, keys: &[String]) -> Result<(), HostError> {
        let script = "set -e; umask 077; mkdir -p \"$HOME/.ssh\"; a=\"$HOME/.ssh/authorized_keys\"; touch \"$a\"; \
                      while IFS= read -r k; do [ -n \"$k\" ] || continue; grep -qxF \"$k\" \"$a\" || printf '%s\\n' \"$k\" >> \"$a\"; done";
        let input = keys.join("\n") + "\n";
        let (_, err, code) = self
            .exec_raw(script, Some(input.as_bytes()))
            .await?
            .collect()
            .await;
        if code != Some(0) {
            return Err(HostError::Verb {
                host: self.label(),
                verb: "authorized_keys".into(),
                message: String::from_utf8_lossy(&err).trim().to_string(),
            });
        }
        Ok(())
    }

    /// A TCP stream to `hostname:port` as the daemon reaches this host: directly, or through
    /// the jump host's connection when the host sits behind `proxy_jump`.
    pub async fn open_tcp(
        &self,
        hostname: &str,
        port: u16,
    ) -> Result<Box<dyn super::ByteStream>, HostError> {
        if self.endpoint.proxy_jump.is_some() {
            self.handle().await?;
            let jump = self
                .conn
                .lock()
                .await
                .as_ref()
                .and_then(|c| c.jump.clone())
                .ok_or_else(|| HostError::Unreachable {
                    host: self.label(),
                    message: "no connection to the jump host".into(),
                })?;
            let ch = jump
                .channel_open_direct_tcpip(hostname.to_string(), u32::from(port), "127.0.0.1", 0)
                .await
                .map_err(|e| HostError::Unreachable {
                    host: self.label(),
                    message: e.to_string(),
                })?;
            return Ok(Box::new(ch.into_stream()));
        }
        let tcp = tcp_connect(&self.endpoint).await?;
        Ok(Box::new(tcp))
    }

    /// A TCP stream to `127.0.0.1:port` on this host, over the daemon's own connection to it
    /// (`direct-tcpip`): a port a job listens on there.
    pub async fn open_local_port(
        &self,
        port: u16,
    ) -> Result<Box<dyn super::ByteStream>, HostError> {
        let handle = self.handle().await?;
        let ch = handle
            .channel_open_direct_tcpip("127.0.0.1", u32::from(port), "127.0.0.1", 0)
            .await
            .map_err(|e| HostError::Unreachable {
                host: self.label(),
                message: format!("cannot reach port {port} there: {e}"),
            })?;
        Ok(Box::new(ch.into_stream()))
    }

    /// A new session channel on the daemon's connection to this host (a gateway session).
    pub async fn open_session(&self) -> Result<russh::Channel<russh::client::Msg>, HostError> {
        let handle = self.handle().await?;
        handle
            .channel_open_session()
            .await
            .map_err(|e| HostError::Unreachable {
                host: self.label(),
                message: e.to_string(),
            })
    }

    /// A round trip on the open connection (connecting first if needed).
    pub async fn ping(&self) -> Result<(), HostError> {
        let (_, _, code) = self.exec_raw("true", None).await?.collect().await;
        match code {
            Some(0) => Ok(()),
            _ => Err(HostError::Unreachable {
                host: self.label(),
                message: "no answer to a ping".into(),
            }),
        }
    }
}

/// `$HOME/...` stays expandable; anything else is quoted.
fn quote_root(root: &str) -> String {
    match root.strip_prefix("$HOME") {
        Some(rest) => format!("\"$HOME\"{}", sh_quote(rest)),
        None => sh_quote(root),
    }
}

async fn tcp_connect(ep: &SshEndpoint) -> Result<tokio::net::TcpStream, HostError> {
    let tcp = tokio::net::TcpStream::connect((ep.hostname.as_str(), ep.port))
        .await
        .map_err(|e| HostError::Unreachable {
            host: ep.label(),
            message: e.to_string(),
        })?;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// AES-GCM first: hosts have AES instructions, and it moves forwarded bytes faster than
/// ChaCha20 (russh's first choice) does in software.
const CIPHERS: &[russh::cipher::Name] = &[
    russh::cipher::AES_256_GCM,
    russh::cipher::AES_128_GCM,
    russh::cipher::CHACHA20_POLY1305,
    russh::cipher::AES_256_CTR,
    russh::cipher::AES_128_CTR,
];

fn client_config() -> Arc<client::Config> {
    Arc::new(client::Config {
        keepalive_interval: Some(Duration::from_secs(5)),
        keepalive_max: 3,
        nodelay: true,
        // A larger window keeps a forwarded stream (attach, the proxy) flowing across the
        // daemon's extra hop.
        window_size: 8 << 20,
        preferred: russh::Preferred {
            cipher: std::borrow::Cow::Borrowed(CIPHERS),
            ..russh::Preferred::DEFAULT
        },
        ..Default::default()
    })
}

/// SSH handshake and login on a stream; returns the handle and the host key seen.
async fn handshake<S>(
    ep: &SshEndpoint,
    stream: S,
    expected: Option<String>,
) -> Result<(Handle<KeyCheck>, String), HostError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let seen = Arc::new(Mutex::new(None));
    let check = KeyCheck {
        expected: expected.clone(),
        seen: seen.clone(),
    };
    let connected = client::connect_stream(client_config(), stream, check).await;
    let seen_key = seen.locked().clone();
    let mut handle = match connected {
        Ok(h) => h,
        Err(e) => {
            if let (Some(exp), Some(got)) = (&expected, &seen_key) {
                if exp != got {
                    return Err(HostError::HostKeyChanged {
                        host: ep.label(),
                        expected: exp.clone(),
                        got: got.clone(),
                    });
                }
            }
            return Err(HostError::Unreachable {
                host: ep.label(),
                message: e.to_string(),
            });
        }
    };
    authenticate(&mut handle, ep).await?;
    Ok((handle, seen_key.unwrap_or_default()))
}

fn expand_home(path: &str) -> std::path::PathBuf {
    match path.strip_prefix("~/") {
        Some(rest) => flotilla_protocol::paths::home_dir().join(rest),
        None => std::path::PathBuf::from(path),
    }
}

async fn authenticate(h: &mut Handle<KeyCheck>, ep: &SshEndpoint) -> Result<(), HostError> {
    let auth_err = |message: String| HostError::Auth {
        host: ep.label(),
        message,
    };
    if let Some(path) = &ep.identity_file {
        let key = load_secret_key(expand_home(path), None)
            .map_err(|e| auth_err(format!("cannot load identity_file {path}: {e}")))?;
        let hash = h.best_supported_rsa_hash().await.ok().flatten().flatten();
        let r = h
            .authenticate_publickey(
                ep.user.clone(),
                PrivateKeyWithHashAlg::new(Arc::new(key), hash),
            )
            .await
            .map_err(|e| auth_err(e.to_string()))?;
        if r.success() {
            return Ok(());
        }
        return Err(auth_err(format!(
            "the key {path} was refused for {}",
            ep.user
        )));
    }
    let mut agent = russh::keys::agent::client::AgentClient::connect_env()
        .await
        .map_err(|e| {
            auth_err(format!(
                "no identity_file and no SSH agent ({e}); set identity_file in ssh_config"
            ))
        })?;
    let identities = agent
        .request_identities()
        .await
        .map_err(|e| auth_err(format!("the SSH agent: {e}")))?;
    for id in identities {
        let key = match id {
            russh::keys::agent::AgentIdentity::PublicKey { key, .. } => key,
            _ => continue,
        };
        let hash = h.best_supported_rsa_hash().await.ok().flatten().flatten();
        if let Ok(r) = h
            .authenticate_publickey_with(ep.user.clone(), key, hash, &mut agent)
            .await
        {
            if r.success() {
                return Ok(());
            }
        }
    }
    Err(auth_err(format!(
        "no key of the SSH agent was accepted for {}",
        ep.user
    )))
}
