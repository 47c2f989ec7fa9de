//! Byte streams through the daemon (`tunnel.open`): the ProxyCommand of `flotilla ssh`, and the
//! ports `attach` forwards from this machine's loopback to a job.

use crate::connect::Target;
use anyhow::{anyhow, bail, Context};
use flotilla_protocol::config::PortMapping;
use flotilla_protocol::framing::{write_line, LineReader};
use flotilla_protocol::rpc::{methods, Request, Response, TunnelInfo, TunnelParams};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream, UnixStream};

/// An open tunnel: where it leads, bytes the daemon sent after its answer, and the socket.
pub struct Tunnel {
    pub info: TunnelInfo,
    pub pending: Vec<u8>,
    pub read: OwnedReadHalf,
    pub write: OwnedWriteHalf,
}

/// Opens `tunnel.open` on a connection of its own; after it, the connection is the byte stream.
pub async fn open_tunnel(target: &Target, params: TunnelParams) -> anyhow::Result<Tunnel> {
    let stream = UnixStream::connect(&target.socket)
        .await
        .with_context(|| format!("cannot connect to {}", target.socket.display()))?;
    let (read, mut write) = stream.into_split();
    let mut reader = LineReader::new(BufReader::new(read), 1 << 20);
    let hello = Request::new(
        1,
        methods::HELLO,
        serde_json::json!({"protocol": flotilla_protocol::rpc::PROTOCOL_VERSION}),
    );
    write_line(&mut write, &hello).await?;
    write_line(
        &mut write,
        &Request::new(2, methods::TUNNEL_OPEN, serde_json::to_value(params)?),
    )
    .await?;
    let mut info = None;
    for _ in 0..2 {
        let line = reader
            .next_line()
            .await?
            .ok_or_else(|| anyhow!("the daemon closed the connection"))?;
        let resp: Response = serde_json::from_slice(&line)?;
        if let Some(e) = resp.error {
            bail!("{}", e.message);
        }
        info = resp.result;
    }
    let info: TunnelInfo = serde_json::from_value(info.unwrap_or_default())
        .context("the daemon's answer to tunnel.open")?;
    let buffered = reader.into_inner();
    let pending = buffered.buffer().to_vec();
    Ok(Tunnel {
        info,
        pending,
        read: buffered.into_inner(),
        write,
    })
}

/// A port forwarded from this machine's loopback to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forwarded {
    pub local: u16,
    pub remote: u16,
}

/// Binds every local port first (a port in use is an error naming it), then forwards each
/// connection to the job's port through its own tunnel, for as long as this process runs.
pub async fn forward_ports(
    target: &Target,
    run: &str,
    replica: u32,
    job: u32,
    ports: &[PortMapping],
) -> anyhow::Result<Vec<Forwarded>> {
    let mut bound = Vec::new();
    for p in ports {
        let local = p.local.unwrap_or(0);
        let listener = TcpListener::bind(("127.0.0.1", local)).await.map_err(|e| {
            anyhow!(
                "cannot listen on local port {local} for port {} of {run}: {e}; choose another with `-p LOCAL:{}`",
                p.container,
                p.container
            )
        })?;
        let local = listener.local_addr()?.port();
        bound.push((
            listener,
            Forwarded {
                local,
                remote: p.container,
            },
        ));
    }
    let mut out = Vec::new();
    for (listener, f) in bound {
        out.push(f);
        let (target, run) = (target.clone(), run.to_string());
        tokio::spawn(async move {
            loop {
                let conn = match listener.accept().await {
                    Ok((conn, _)) => conn,
                    Err(e) => {
                        eprintln!("forwarding port {}: {e}", f.local);
                        return;
                    }
                };
                let params = TunnelParams {
                    run: run.clone(),
                    replica,
                    job,
                    port: Some(f.remote),
                };
                let target = target.clone();
                tokio::spawn(async move {
                    if let Err(e) = pipe(&target, params, conn).await {
                        eprintln!("port {} -> {}: {e}", f.local, f.remote);
                    }
                });
            }
        });
    }
    Ok(out)
}

async fn pipe(target: &Target, params: TunnelParams, mut conn: TcpStream) -> anyhow::Result<()> {
    let tunnel = open_tunnel(target, params).await?;
    conn.write_all(&tunnel.pending).await?;
    let mut socket = tunnel
        .read
        .reunite(tunnel.write)
        .map_err(|e| anyhow!("cannot join the tunnel's halves: {e}"))?;
    // A connection closed by either side ends the copy; that is not an error.
    match tokio::io::copy_bidirectional(&mut conn, &mut socket).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(()),
        Err(e) => Err(e.into()),
    }
}
