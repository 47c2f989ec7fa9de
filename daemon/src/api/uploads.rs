//! Driver layer: the RPC part of `file.upload`. A connection whose caller already uploaded the
//! bytes is answered at once; otherwise the daemon sends `file.upload.ready`, the connection
//! carries exactly `size` raw bytes (streamed to a file, hashed on the way), and the daemon
//! answers with the ordinary response, then closes the connection.

use super::wire::{decode, encode_line, json, op_error};
use crate::caller::Caller;
use crate::handle::Daemon;
use crate::ops;
use crate::ops::uploads::Begin;
use flotilla_protocol::framing::LineReader;
use flotilla_protocol::rpc::{
    methods, FileUploadParams, FileUploadReady, Notification, Request, RequestId, Response,
    RpcError,
};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tracing::debug;

/// What the connection does after the request was read.
pub enum Next {
    /// Answer now; the connection goes on as usual.
    Answer(Value),
    /// Send this notification, then take the bytes.
    Receive {
        params: FileUploadParams,
        ready: Vec<u8>,
    },
}

/// Checks the request: the hash, the size against the daemon's limit, whether the caller has
/// the bytes stored already.
pub fn begin(d: &Daemon, caller: &Caller, req: &Request) -> Result<Next, RpcError> {
    let p: FileUploadParams = decode(
        methods::FILE_UPLOAD,
        req.params.clone().unwrap_or(Value::Null),
    )?;
    match ops::uploads::begin(d, caller, &p).map_err(op_error)? {
        Begin::Present(result) => Ok(Next::Answer(json(result)?)),
        Begin::Send { limit } => {
            let mut params = json(FileUploadReady { limit })?;
            if let (Value::Object(m), Some(id)) = (&mut params, &req.id) {
                m.insert("id".into(), json(id)?);
            }
            let ready = encode_line(&Notification {
                jsonrpc: "2.0".into(),
                method: methods::FILE_UPLOAD_READY.into(),
                params,
            });
            Ok(Next::Receive { params: p, ready })
        }
    }
}

/// Reads the bytes (those the line reader had buffered first), stores them, answers, closes.
pub async fn receive(
    d: &Daemon,
    caller: &Caller,
    params: FileUploadParams,
    id: RequestId,
    reader: LineReader<BufReader<OwnedReadHalf>>,
    mut write: OwnedWriteHalf,
) {
    let buffered = reader.into_inner();
    let pending = buffered.buffer().to_vec();
    let rest = buffered.into_inner();
    let bytes = (&pending[..]).chain(rest);
    let answer = match ops::uploads::receive(d, caller, &params, bytes).await {
        Ok(result) => match json(result) {
            Ok(v) => Response::ok(id, v),
            Err(e) => Response::err(id, e),
        },
        Err(e) => Response::err(id, op_error(e)),
    };
    if let Err(e) = write.write_all(&encode_line(&answer)).await {
        debug!("file.upload: the client left before its answer: {e}");
    }
    if let Err(e) = write.shutdown().await {
        debug!("connection shutdown error: {e}");
    }
}
