//! Driver layer: the socket API. Accepts connections, identifies the caller by peer credentials,
//! reads JSON-RPC lines and hands each request to the route table (`routes`); streams and
//! tunnels live beside it. Calls `ops::` and the handle, never a loop.

pub mod routes;
pub mod socket;
pub mod streams;
pub mod tunnel;
pub mod wire;

use crate::caller::Caller;
use crate::handle::Daemon;
use flotilla_protocol::framing::{FrameError, LineReader};
use flotilla_protocol::rpc::{
    codes, methods, parse_request, HelloParams, HelloResult, Request, RequestId, Response,
    RpcError, MAX_FRAME_BYTES, PROTOCOL_VERSION,
};
use serde_json::Value;
use std::sync::Arc;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};
use wire::{encode_line, Outbox};

/// Accepts connections until shutdown; then waits for in-flight requests to be answered.
pub async fn serve(d: Daemon, listener: UnixListener) {
    let tracker = TaskTracker::new();
    loop {
        tokio::select! {
            _ = d.shutdown().cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let d = d.clone();
                    let t = tracker.clone();
                    tracker.spawn(async move { serve_connection(d, stream, t).await });
                }
                Err(e) => {
                    warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }
    tracker.close();
    // Connections end their streams on shutdown; requests in flight get their answers.
    if tokio::time::timeout(std::time::Duration::from_secs(10), tracker.wait())
        .await
        .is_err()
    {
        warn!("requests still in flight after 10s; stopping without their answers");
    }
}

async fn serve_connection(d: Daemon, stream: UnixStream, tracker: TaskTracker) {
    let uid = match stream.peer_cred() {
        Ok(c) => c.uid(),
        Err(e) => {
            warn!("cannot read peer credentials: {e}");
            return;
        }
    };
    let caller = Arc::new(Caller::from_uid(uid));
    let (read, mut write) = stream.into_split();
    let (sender, mut rx) = mpsc::channel::<Vec<u8>>(64);
    let gone = tokio_util::sync::CancellationToken::new();
    let tx = Outbox {
        tx: sender,
        gone: gone.clone(),
    };
    // The writer hands the socket back when every sender is gone (for tunnel.open).
    let writer = tokio::spawn(async move {
        while let Some(line) = rx.recv().await {
            if write.write_all(&line).await.is_err() {
                break;
            }
        }
        let _ = write.flush().await;
        write
    });
    let mut reader = LineReader::new(BufReader::with_capacity(64 * 1024, read), MAX_FRAME_BYTES);
    let mut said_hello = false;
    loop {
        let line = tokio::select! {
            _ = d.shutdown().cancelled() => break,
            l = reader.next_line() => l,
        };
        let line = match line {
            Ok(Some(l)) => l,
            Ok(None) => break,
            Err(FrameError::TooLarge { max }) => {
                let err = RpcError::new(
                    codes::FRAME_TOO_LARGE,
                    format!("line longer than {max} bytes; closing the connection"),
                );
                let _ = tx
                    .send(encode_line(&Response::err(RequestId::null(), err)))
                    .await;
                break;
            }
            Err(FrameError::Io(e)) => {
                debug!("connection read error: {e}");
                break;
            }
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let req = match parse_request(&line) {
            Ok(r) => r,
            Err((id, err)) => {
                let _ = tx.send(encode_line(&Response::err(id, err))).await;
                continue;
            }
        };
        let id = req.id.clone().unwrap_or_else(RequestId::null);
        if req.method == methods::HELLO {
            let reply = match hello(&req, &caller) {
                Ok(v) => {
                    said_hello = true;
                    Response::ok(id, v)
                }
                Err(e) => Response::err(id, e),
            };
            let _ = tx.send(encode_line(&reply)).await;
            continue;
        }
        if said_hello && req.method == methods::TUNNEL_OPEN {
            match tunnel::open(&d, &caller, &req).await {
                Ok((info, stream)) => {
                    let _ = tx.send(encode_line(&Response::ok(id, info))).await;
                    drop(tx);
                    let Ok(Ok(write)) =
                        tokio::time::timeout(std::time::Duration::from_secs(5), writer).await
                    else {
                        return;
                    };
                    tunnel::pump(reader, write, stream).await;
                    return;
                }
                Err(e) => {
                    let _ = tx.send(encode_line(&Response::err(id, e))).await;
                    continue;
                }
            }
        }
        if !said_hello {
            let err = RpcError::new(
                codes::HELLO_REQUIRED,
                format!("call `hello` with {{\"protocol\":\"{PROTOCOL_VERSION}\"}} first"),
            );
            let _ = tx.send(encode_line(&Response::err(id, err))).await;
            continue;
        }
        let (d, tx, caller) = (d.clone(), tx.clone(), caller.clone());
        tracker.spawn(async move {
            let has_id = req.id.is_some();
            if let Some(reply) = routes::dispatch(&d, &caller, req, id, &tx).await {
                if has_id {
                    let _ = tx.send(encode_line(&reply)).await;
                }
            }
        });
    }
    // The client is gone (or the daemon stops): streams of this connection end.
    gone.cancel();
    drop(tx);
    if let Ok(mut write) = writer.await {
        let _ = write.shutdown().await;
    }
}

fn hello(req: &Request, caller: &Caller) -> Result<Value, RpcError> {
    let params: HelloParams = serde_json::from_value(req.params.clone().unwrap_or(Value::Null))
        .map_err(|e| {
            RpcError::new(
                codes::INVALID_PARAMS,
                format!("hello: {e}; send {{\"protocol\":\"{PROTOCOL_VERSION}\"}}"),
            )
        })?;
    let major = |v: &str| v.split('.').next().unwrap_or("").to_string();
    if major(&params.protocol) != major(PROTOCOL_VERSION) {
        return Err(RpcError::new(
            codes::PROTOCOL_MISMATCH,
            format!(
                "protocol mismatch: the client speaks {}, this daemon speaks {}; use a flotilla and flotillad of the same major version",
                params.protocol, PROTOCOL_VERSION
            ),
        ));
    }
    serde_json::to_value(HelloResult {
        protocol: PROTOCOL_VERSION.into(),
        daemon_version: flotilla_protocol::VERSION.into(),
        user: caller.user.clone(),
        uid: caller.uid,
        admin: caller.admin,
    })
    .map_err(|e| RpcError::new(codes::INTERNAL_ERROR, e.to_string()))
}
