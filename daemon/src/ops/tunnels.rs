//! Operations layer: `tunnel.open`. Finds a job's host and opens a byte stream to its SSH port,
//! so a user's own SSH client reaches hosts that only the daemon can reach, or to a port the
//! job listens on (what `attach` forwards).

use super::logs::find_target_job;
use super::OpError;
use crate::caller::Caller;
use crate::handle::Daemon;
use crate::hosts::{ByteStream, Host};
use crate::presence::PresenceGuard;
use flotilla_protocol::model::JobSubmission;
use flotilla_protocol::rpc::{TunnelInfo, TunnelParams};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Where the tunnel leads, and the stream to it.
pub async fn open(
    d: &Daemon,
    caller: &Caller,
    p: &TunnelParams,
) -> Result<(TunnelInfo, Box<dyn ByteStream>), OpError> {
    let (run, job) = find_target_job(d, &p.run, p.replica, p.job)?;
    if run.uid != caller.uid && !caller.admin {
        return Err(OpError::Forbidden(format!(
            "run {} belongs to {}",
            run.name, run.user
        )));
    }
    let sub = &job.current;
    if !sub.status.is_on_host() {
        return Err(OpError::Conflict(format!(
            "job {}/{} of {} is {}, not on a host",
            p.replica, p.job, run.name, sub.status
        )));
    }
    // Every tunnel into a job is an attached client of its run while it lasts.
    let attached = d.presence().enter(run.id);
    if let Some(port) = p.port {
        let (info, stream) = open_job_port(d, &run.name, sub, port).await?;
        return Ok((
            info,
            Box::new(Attached {
                stream,
                _guard: attached,
            }),
        ));
    }
    let Host::Ssh(host) = d.host_for(sub.instance_id) else {
        return Err(OpError::Conflict(format!(
            "run {} runs on the daemon's own machine: open a shell there (flotilla ssh does so when it runs on that machine)",
            run.name
        )));
    };
    let ep = host.endpoint().clone();
    let stream = host
        .open_tcp(&ep.hostname, ep.port)
        .await
        .map_err(|e| OpError::Internal(format!("cannot open a tunnel: {e}")))?;
    let info = TunnelInfo {
        instance: sub.instance.clone().unwrap_or_default(),
        hostname: ep.hostname.clone(),
        port: ep.port,
        user: ep.user.clone(),
        host_key: host.host_key(),
        workdir: sub.job_dir.as_ref().map(|j| format!("{j}/work")),
    };
    Ok((
        info,
        Box::new(Attached {
            stream,
            _guard: attached,
        }),
    ))
}

/// A tunnel's stream that counts as an attached client of its run until it closes.
struct Attached {
    stream: Box<dyn ByteStream>,
    _guard: PresenceGuard,
}

impl AsyncRead for Attached {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Attached {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A stream to a port the job listens on, with what `tunnel.open` says of it.
async fn open_job_port(
    d: &Daemon,
    run: &str,
    sub: &JobSubmission,
    port: u16,
) -> Result<(TunnelInfo, Box<dyn ByteStream>), OpError> {
    let on_host = host_port(sub, port);
    let stream = connect_job_port(d, sub, port).await.map_err(|e| {
        OpError::Conflict(format!(
            "cannot reach port {port} of {run} on {}: {e}; is the job listening on it?",
            d.host_for(sub.instance_id).label()
        ))
    })?;
    let info = TunnelInfo {
        instance: sub.instance.clone().unwrap_or_default(),
        hostname: "127.0.0.1".into(),
        port: on_host,
        user: String::new(),
        host_key: None,
        workdir: None,
    };
    Ok((info, stream))
}

/// Where the job's `port` answers on its host's loopback: the port its container published
/// for it (a container on Docker's bridge), or the port itself (a host job, a container on the
/// host's network).
pub fn host_port(sub: &JobSubmission, port: u16) -> u16 {
    sub.ports
        .iter()
        .find(|p| p.container == port)
        .map(|p| p.host)
        .unwrap_or(port)
}

/// A stream to a port the job listens on: a TCP connection on this machine's loopback for a
/// local job, a channel of the daemon's SSH connection to the host's loopback otherwise.
pub async fn connect_job_port(
    d: &Daemon,
    sub: &JobSubmission,
    port: u16,
) -> Result<Box<dyn ByteStream>, String> {
    connect_host_port(d, sub.instance_id, host_port(sub, port)).await
}

/// A stream to a port on a host's loopback (`instance_id` `None`: the daemon's own machine):
/// a TCP connection here, a channel of the daemon's SSH connection to the host otherwise.
pub async fn connect_host_port(
    d: &Daemon,
    instance_id: Option<u64>,
    on_host: u16,
) -> Result<Box<dyn ByteStream>, String> {
    match d.host_for(instance_id) {
        Host::Local(_) => {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", on_host))
                .await
                .map_err(|e| e.to_string())?;
            // Small requests and streamed chunks leave at once.
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!("TCP_NODELAY on 127.0.0.1:{on_host}: {e}");
            }
            Ok(Box::new(tcp))
        }
        Host::Ssh(h) => h.open_local_port(on_host).await.map_err(|e| e.to_string()),
    }
}
