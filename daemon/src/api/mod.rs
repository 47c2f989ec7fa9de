//! Driver layer: the socket API. Accepts connections, identifies the caller by peer credentials,
//! reads JSON-RPC lines and hands each request to the route table (`routes`); streams and
//! tunnels live beside it. Calls `ops::` and the handle, never a loop.

pub mod access;
pub mod gateway;
mod gateway_session;
pub mod routes;
pub mod socket;
pub mod streams;
pub mod tunnel;
pub mod uploads;
pub mod wire;

use crate::caller::Caller;
use crate::handle::Daemon;
use access::Access;
use flotilla_protocol::framing::{FrameError, LineReader};
use flotilla_protocol::rpc::{
    codes, methods, parse_request, HelloParams, HelloResult, Request, RequestId, Response,
    RpcError, MAX_FRAME_BYTES, PROTOCOL_VERSION,
};
use interprocess::local_socket::traits::tokio::Listener as _;
use interprocess::local_socket::traits::StreamCommon as _;
use interprocess::os::unix::uds_local_socket::tokio::Stream as LocalStream;
use serde_json::Value;
use socket::Listener;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};
use wire::{encode_line, Outbox};

/// At most this many requests of one connection are answered at once; its next line is read
/// when one of them has been answered (streams count apart, [`MAX_STREAMS`]).
const MAX_IN_FLIGHT: u32 = 8;
/// At most this many streams (`logs.follow`, `events.watch`) open on one connection.
const MAX_STREAMS: u32 = 16;

/// Accepts connections until shutdown; then waits for in-flight requests to be answered.
pub async fn serve(d: Daemon, listener: Listener, access: Access) {
    let tracker = TaskTracker::new();
    let access = Arc::new(access);
    loop {
        tokio::select! {
            _ = d.shutdown().cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(stream) => {
                    let d = d.clone();
                    let t = tracker.clone();
                    let access = access.clone();
                    tracker.spawn(async move { serve_connection(d, stream, t, access).await });
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

/// Why a connection stopped reading.
enum Stopped {
    /// The client closed its side (or the line could not be read): answer what was read.
    ReadingDone,
    /// The daemon stops: streams end with `-32007`, requests in flight are answered.
    Shutdown,
}

async fn serve_connection(
    d: Daemon,
    stream: LocalStream,
    tracker: TaskTracker,
    access: Arc<Access>,
) {
    let creds = match stream.peer_creds() {
        Ok(c) => c,
        Err(e) => {
            warn!("cannot read peer credentials: {e}");
            return;
        }
    };
    let Some(uid) = creds.euid() else {
        warn!("the peer's credentials carry no uid; connection closed");
        return;
    };
    // interprocess's stream does not shut its writing side down; tokio's does (the end of a
    // client's answers), and splits into halves a tunnel joins again.
    let stream = match OwnedFd::try_from(stream)
        .and_then(|fd| UnixStream::from_std(std::os::unix::net::UnixStream::from(fd)))
    {
        Ok(s) => s,
        Err(e) => {
            warn!("cannot take over an accepted connection: {e}");
            return;
        }
    };
    // Group membership may ask NSS (files, LDAP): on the blocking pool.
    let gid = creds.egid();
    let check = access.clone();
    let allowed = match tokio::task::spawn_blocking(move || check.allows(uid, gid)).await {
        Ok(allowed) => allowed,
        Err(e) => {
            warn!("cannot check whether uid {uid} may connect: {e}");
            false
        }
    };
    if !allowed {
        refuse(stream, access.refusal(uid)).await;
        return;
    }
    let caller = Arc::new(Caller::from_uid(uid));
    let (read, mut write) = stream.into_split();
    let gone = tokio_util::sync::CancellationToken::new();
    let (tx, mut rx) = Outbox::new(gone.clone());
    // The writer hands the socket back when every sender is gone (for tunnel.open). A write
    // that fails means the client is gone: its streams end.
    let writer_gone = gone.clone();
    let writer = tokio::spawn(async move {
        while let Some(queued) = rx.recv().await {
            if let Err(e) = write.write_all(&queued.line).await {
                debug!("connection write error: {e}");
                writer_gone.cancel();
                break;
            }
        }
        if let Err(e) = write.flush().await {
            debug!("connection flush error: {e}");
        }
        write
    });
    let requests = Arc::new(Semaphore::new(MAX_IN_FLIGHT as usize));
    let streams = Arc::new(Semaphore::new(MAX_STREAMS as usize));
    let mut reader = LineReader::new(BufReader::with_capacity(64 * 1024, read), MAX_FRAME_BYTES);
    let mut said_hello = false;
    let stopped = loop {
        // Read the next line only while fewer than MAX_IN_FLIGHT requests wait for answers.
        let permit = tokio::select! {
            biased;
            _ = d.shutdown().cancelled() => break Stopped::Shutdown,
            p = requests.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break Stopped::ReadingDone,
            },
        };
        let line = tokio::select! {
            biased;
            _ = d.shutdown().cancelled() => break Stopped::Shutdown,
            l = reader.next_line() => l,
        };
        let line = match line {
            Ok(Some(l)) => l,
            Ok(None) => break Stopped::ReadingDone,
            Err(FrameError::TooLarge { max }) => {
                let err = RpcError::new(
                    codes::FRAME_TOO_LARGE,
                    format!("line longer than {max} bytes; closing the connection"),
                );
                reply(&tx, Response::err(RequestId::null(), err)).await;
                break Stopped::ReadingDone;
            }
            Err(FrameError::Io(e)) => {
                debug!("connection read error: {e}");
                break Stopped::ReadingDone;
            }
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let req = match parse_request(&line) {
            Ok(r) => r,
            Err((id, err)) => {
                reply(&tx, Response::err(id, err)).await;
                continue;
            }
        };
        drop(line);
        let id = req.id.clone().unwrap_or_else(RequestId::null);
        if req.method == methods::HELLO {
            let answer = match hello(&req, &caller) {
                Ok(v) => {
                    said_hello = true;
                    Response::ok(id, v)
                }
                Err(e) => Response::err(id, e),
            };
            reply(&tx, answer).await;
            continue;
        }
        if said_hello && req.method == methods::TUNNEL_OPEN {
            match tunnel::open(&d, &caller, &req).await {
                Ok((info, stream)) => {
                    if let Some(write) =
                        hand_over(tx, encode_line(&Response::ok(id, info)), writer).await
                    {
                        tunnel::pump(reader, write, stream).await;
                    }
                    return;
                }
                Err(e) => {
                    reply(&tx, Response::err(id, e)).await;
                    continue;
                }
            }
        }
        if said_hello && req.method == methods::GATEWAY_OPEN {
            match gateway::open(&d, &caller, &req) {
                Ok((info, params, target)) => {
                    let Some(write) =
                        hand_over(tx, encode_line(&Response::ok(id, info)), writer).await
                    else {
                        return;
                    };
                    let buffered = reader.into_inner();
                    if !buffered.buffer().is_empty() {
                        warn!("gateway: bytes came before the session's answer; closing");
                        return;
                    }
                    let Ok(stream) = buffered.into_inner().reunite(write) else {
                        return;
                    };
                    gateway::serve(&d, &caller, params, stream, target).await;
                    return;
                }
                Err(e) => {
                    reply(&tx, Response::err(id, e)).await;
                    continue;
                }
            }
        }
        if said_hello && req.method == methods::FILE_UPLOAD {
            match uploads::begin(&d, &caller, &req) {
                Ok(uploads::Next::Answer(result)) => {
                    reply(&tx, Response::ok(id, result)).await;
                    continue;
                }
                Ok(uploads::Next::Receive { params, ready }) => {
                    if let Some(write) = hand_over(tx, ready, writer).await {
                        uploads::receive(&d, &caller, params, id, reader, write).await;
                    }
                    return;
                }
                Err(e) => {
                    reply(&tx, Response::err(id, e)).await;
                    continue;
                }
            }
        }
        if !said_hello {
            let err = RpcError::new(
                codes::HELLO_REQUIRED,
                format!("call `hello` with {{\"protocol\":\"{PROTOCOL_VERSION}\"}} first"),
            );
            reply(&tx, Response::err(id, err)).await;
            continue;
        }
        // A stream holds one of the stream places instead, for as long as it runs. Streams
        // end only when the daemon stops or the client leaves, so waiting for a place would
        // block the connection for good: one past the limit is refused instead.
        let permit = if is_stream(&req.method) {
            drop(permit);
            match streams.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => {
                    let err = RpcError::new(
                        codes::CONFLICT,
                        format!(
                            "{}: this connection already has {MAX_STREAMS} streams open; open another connection for more",
                            req.method
                        ),
                    );
                    reply(&tx, Response::err(id, err)).await;
                    continue;
                }
            }
        } else {
            permit
        };
        let (d, tx, caller) = (d.clone(), tx.clone(), caller.clone());
        tracker.spawn(async move {
            let has_id = req.id.is_some();
            if let Some(answer) = routes::dispatch(&d, &caller, req, id, &tx).await {
                if has_id {
                    reply(&tx, answer).await;
                }
            }
            drop(permit);
        });
    };
    // Every request read is answered before the connection closes: a client that shut down
    // its writing side still gets its answers. Its streams end then (it can send no more), and
    // on shutdown they end with `-32007` first.
    let all_answered = requests.acquire_many(MAX_IN_FLIGHT);
    let stopped = match stopped {
        Stopped::Shutdown => Stopped::Shutdown,
        Stopped::ReadingDone => tokio::select! {
            _ = all_answered => Stopped::ReadingDone,
            _ = d.shutdown().cancelled() => Stopped::Shutdown,
        },
    };
    match stopped {
        Stopped::ReadingDone => gone.cancel(),
        Stopped::Shutdown => {
            let (r, s) = tokio::join!(
                requests.acquire_many(MAX_IN_FLIGHT),
                streams.acquire_many(MAX_STREAMS)
            );
            drop((r, s));
            gone.cancel();
        }
    }
    drop(tx);
    if let Ok(mut write) = writer.await {
        if let Err(e) = write.shutdown().await {
            debug!("connection shutdown error: {e}");
        }
    }
}

fn is_stream(method: &str) -> bool {
    method == methods::LOGS_FOLLOW || method == methods::EVENTS_WATCH
}

/// The last line of a connection that becomes a byte stream (`tunnel.open`, `gateway.open`,
/// `file.upload`): queued, then the socket's write half back from the writer once every
/// answer is out (None when the writer did not finish within 5 s or failed).
async fn hand_over(
    tx: Outbox,
    line: Vec<u8>,
    writer: tokio::task::JoinHandle<tokio::net::unix::OwnedWriteHalf>,
) -> Option<tokio::net::unix::OwnedWriteHalf> {
    if tx.send(line).await.is_err() {
        debug!("a hand-over's line was not sent: the client is gone");
    }
    drop(tx);
    match tokio::time::timeout(std::time::Duration::from_secs(5), writer).await {
        Ok(Ok(write)) => Some(write),
        Ok(Err(e)) => {
            warn!("the connection's writer failed before a hand-over: {e}");
            None
        }
        Err(_) => {
            warn!("the connection's writer did not finish within 5 s; closing it");
            None
        }
    }
}

/// Queues an answer; a client that is gone gets none, and needs none.
async fn reply(tx: &Outbox, answer: Response) {
    let line = encode_line(&answer);
    drop(answer);
    if tx.send(line).await.is_err() {
        debug!("an answer was not sent: the client is gone");
    }
}

/// Tells a peer the daemon does not serve why, in answer to its first line, and closes.
async fn refuse(stream: UnixStream, why: String) {
    let (read, mut write) = stream.into_split();
    let mut reader = LineReader::new(BufReader::new(read), MAX_FRAME_BYTES);
    let first = tokio::time::timeout(std::time::Duration::from_secs(5), reader.next_line()).await;
    let id = match first {
        Ok(Ok(Some(line))) => parse_request(&line)
            .ok()
            .and_then(|r| r.id)
            .unwrap_or_else(RequestId::null),
        _ => RequestId::null(),
    };
    let line = encode_line(&Response::err(id, RpcError::new(codes::FORBIDDEN, why)));
    if let Err(e) = write.write_all(&line).await {
        debug!("cannot tell a refused peer why: {e}");
    }
    if let Err(e) = write.shutdown().await {
        debug!("connection shutdown error: {e}");
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
