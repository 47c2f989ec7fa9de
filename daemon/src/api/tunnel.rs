//! `tunnel.open`: a socket connection becomes a byte stream to a job's host SSH port, so a user's
//! own SSH client reaches hosts that only the daemon can reach.

use super::handlers::resolve_log;
use super::Caller;
use crate::hosts::Host;
use crate::state::Daemon;
use flotilla_protocol::framing::LineReader;
use flotilla_protocol::rpc::{codes, LogTarget, Request, RpcError, TunnelInfo, TunnelParams};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Finds the job's host and opens a stream to its SSH port.
pub async fn open(
    d: &Daemon,
    caller: &Caller,
    req: &Request,
) -> Result<(Value, Box<dyn Stream>), RpcError> {
    let p: TunnelParams = serde_json::from_value(req.params.clone().unwrap_or(Value::Null))
        .map_err(|e| {
            RpcError::new(
                codes::INVALID_PARAMS,
                format!("tunnel.open: invalid params: {e}"),
            )
        })?;
    let target = LogTarget {
        run: p.run.clone(),
        replica: p.replica,
        job: p.job,
        submission: None,
    };
    let (run, _, _) = resolve_log(d, &target)?;
    if run.uid != caller.uid && !caller.admin {
        return Err(RpcError::new(
            codes::FORBIDDEN,
            format!("run {} belongs to {}", run.name, run.user),
        ));
    }
    let job = run
        .job(p.replica, p.job)
        .ok_or_else(|| RpcError::new(codes::NOT_FOUND, "no such job"))?;
    let sub = &job.current;
    let not_running = || {
        RpcError::new(
            codes::CONFLICT,
            format!(
                "job {}/{} of {} is {}, not on a host",
                p.replica, p.job, run.name, sub.status
            ),
        )
    };
    if !sub.status.is_on_host() {
        return Err(not_running());
    }
    let Host::Ssh(host) = d.host_for(sub.instance_id) else {
        return Err(RpcError::new(
            codes::CONFLICT,
            format!(
                "run {} runs on the daemon's own machine: open a shell there (flotilla ssh does so when it runs on that machine)",
                run.name
            ),
        ));
    };
    let ep = host.endpoint().clone();
    let stream = host
        .open_tcp(&ep.hostname, ep.port)
        .await
        .map_err(|e| RpcError::new(codes::INTERNAL_ERROR, format!("cannot open a tunnel: {e}")))?;
    let info = TunnelInfo {
        instance: sub.instance.clone().unwrap_or_default(),
        hostname: ep.hostname.clone(),
        port: ep.port,
        user: ep.user.clone(),
        host_key: host.host_key(),
        workdir: sub.job_dir.as_ref().map(|j| format!("{j}/work")),
    };
    let info = serde_json::to_value(info)
        .map_err(|e| RpcError::new(codes::INTERNAL_ERROR, e.to_string()))?;
    Ok((info, stream))
}

/// Copies bytes both ways until either side closes; bytes the line reader had buffered go first.
pub async fn pump(
    reader: LineReader<BufReader<OwnedReadHalf>>,
    write: OwnedWriteHalf,
    mut stream: Box<dyn Stream>,
) {
    let buffered = reader.into_inner();
    let pending = buffered.buffer().to_vec();
    let Ok(mut unix) = buffered.into_inner().reunite(write) else {
        return;
    };
    if !pending.is_empty() && stream.write_all(&pending).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut unix, &mut stream).await;
}
