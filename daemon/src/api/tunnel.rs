//! Driver layer: the RPC part of `tunnel.open`. The connection's request is decoded, the
//! operation opens the stream, and the socket connection becomes a byte pipe to it.

use super::wire::{decode, json, op_error};
use crate::caller::Caller;
use crate::handle::Daemon;
use crate::hosts::ByteStream;
use crate::ops;
use flotilla_protocol::framing::LineReader;
use flotilla_protocol::rpc::{methods, Request, RpcError, TunnelParams};
use serde_json::Value;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tracing::debug;

/// Finds the job's host and opens a stream to its SSH port.
pub async fn open(
    d: &Daemon,
    caller: &Caller,
    req: &Request,
) -> Result<(Value, Box<dyn ByteStream>), RpcError> {
    let p: TunnelParams = decode(
        methods::TUNNEL_OPEN,
        req.params.clone().unwrap_or(Value::Null),
    )?;
    let (info, stream) = ops::tunnels::open(d, caller, &p).await.map_err(op_error)?;
    Ok((json(info)?, stream))
}

/// Copies bytes both ways until either side closes; bytes the line reader had buffered go first.
pub async fn pump(
    reader: LineReader<BufReader<OwnedReadHalf>>,
    write: OwnedWriteHalf,
    mut stream: Box<dyn ByteStream>,
) {
    let buffered = reader.into_inner();
    let pending = buffered.buffer().to_vec();
    let Ok(mut unix) = buffered.into_inner().reunite(write) else {
        return;
    };
    if !pending.is_empty() && stream.write_all(&pending).await.is_err() {
        return;
    }
    if let Err(e) = tokio::io::copy_bidirectional(&mut unix, &mut stream).await {
        debug!("tunnel closed: {e}");
    }
}
