//! Driver layer: the two streams, `logs.follow` (history, then live bytes) and `events.watch`; notifications carry the request id.

use super::wire::{encode_line, op_error, Outbox};
use crate::caller::Caller;
use crate::handle::Daemon;
use crate::logs::utf8_boundary;
use crate::ops::logs::find_submission;
use crate::ops::{self, OpError};
use crate::store::StoreError;
use flotilla_protocol::model::Event;
use flotilla_protocol::rpc::{
    codes, methods, EventNotice, EventsParams, LogChunk, LogsFollowEnd, LogsFollowParams,
    Notification, RequestId, RpcError,
};
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;

const CHUNK: usize = 256 * 1024;

fn notification(method: &str, id: &RequestId, mut body: Value) -> Vec<u8> {
    if let Value::Object(m) = &mut body {
        m.insert("id".into(), id.to_value());
    }
    encode_line(&Notification {
        jsonrpc: "2.0".into(),
        method: method.into(),
        params: body,
    })
}

fn store_error(e: StoreError) -> RpcError {
    op_error(OpError::Store(e))
}

fn shutting_down() -> RpcError {
    RpcError::new(
        codes::SHUTTING_DOWN,
        "the daemon is shutting down; reconnect and follow again from next_offset",
    )
}

/// Sends the log from `offset`, then every new byte, until the job has ended and all is sent.
pub async fn logs_follow(
    d: &Daemon,
    caller: &Caller,
    p: LogsFollowParams,
    id: &RequestId,
    out: &Outbox,
) -> Result<Value, RpcError> {
    let (run, sub, _) = find_submission(d, caller, &p.target).map_err(op_error)?;
    let _attached = p.attach.then(|| d.presence().enter(run.id));
    // Subscribe before looking at the job's status, so that an end in between is not missed.
    let mut rx = d.logs().subscribe(sub);
    let (_, _, finished) = find_submission(d, caller, &p.target).map_err(op_error)?;
    let mut offset = p.offset;
    loop {
        let state = *rx.borrow_and_update();
        let complete = state.complete || finished;
        let size = if finished {
            d.logs().size(sub)
        } else {
            state.size
        };
        while offset < size {
            let want = ((size - offset) as usize).min(CHUNK);
            let mut bytes = d.logs().read(sub, offset, want).map_err(|e| {
                RpcError::new(codes::INTERNAL_ERROR, format!("cannot read the log: {e}"))
            })?;
            if bytes.is_empty() {
                break;
            }
            // Keep a character split across chunks whole, unless nothing more will come.
            let last = offset + bytes.len() as u64 >= size;
            if !(last && complete) {
                let cut = utf8_boundary(&bytes);
                if cut > 0 {
                    bytes.truncate(cut);
                }
            }
            let chunk = LogChunk::from_bytes(offset, &bytes);
            let body = serde_json::to_value(chunk).unwrap_or(Value::Null);
            if out
                .send(notification(methods::LOGS_CHUNK, id, body))
                .await
                .is_err()
            {
                return Ok(Value::Null); // the client is gone
            }
            offset += bytes.len() as u64;
        }
        if complete && offset >= size {
            break;
        }
        tokio::select! {
            changed = rx.changed() => {
                if changed.is_err() {
                    // The log was removed (run deleted).
                    break;
                }
            }
            _ = out.closed() => return Ok(Value::Null),
            _ = d.shutdown().cancelled() => return Err(shutting_down()),
        }
    }
    let (run, _, _) = find_submission(d, caller, &p.target).map_err(op_error)?;
    let job = run.job(p.target.replica, p.target.job);
    let end = LogsFollowEnd {
        next_offset: offset,
        job_status: job
            .map(|j| j.current.status.to_string())
            .unwrap_or_default(),
        exit_code: job.and_then(|j| j.current.exit_code),
        termination_reason: job.and_then(|j| j.current.termination_reason.map(|r| r.to_string())),
    };
    serde_json::to_value(end).map_err(|e| RpcError::new(codes::INTERNAL_ERROR, e.to_string()))
}

/// Streams every event from now on (or after `since`), until the client leaves or the daemon stops.
pub async fn events_watch(
    d: &Daemon,
    caller: &Caller,
    p: EventsParams,
    id: &RequestId,
    out: &Outbox,
) -> Result<Value, RpcError> {
    let mut rx = d.subscribe_events();
    let mut last = match p.since {
        Some(s) => s,
        None => d.store().last_event_seq().map_err(store_error)?,
    };
    let send = |e: &Event| {
        let event = ops::events::visible_to(d, caller, e.clone());
        let body = serde_json::to_value(EventNotice { event }).unwrap_or(Value::Null);
        notification(methods::EVENT, id, body)
    };
    // Replay what the caller missed.
    loop {
        let missed = d.store().events_since(last, 1000).map_err(store_error)?;
        if missed.is_empty() {
            break;
        }
        for e in &missed {
            if out.send(send(e)).await.is_err() {
                return Ok(Value::Null);
            }
            last = e.seq;
        }
    }
    loop {
        tokio::select! {
            got = rx.recv() => match got {
                Ok(e) => {
                    if e.seq <= last { continue; }
                    last = e.seq;
                    if out.send(send(&e)).await.is_err() { return Ok(Value::Null); }
                }
                Err(RecvError::Lagged(_)) => {
                    for e in d.store().events_since(last, 10_000).map_err(store_error)? {
                        last = e.seq;
                        if out.send(send(&e)).await.is_err() { return Ok(Value::Null); }
                    }
                }
                Err(RecvError::Closed) => break,
            },
            _ = out.closed() => return Ok(Value::Null),
            _ = d.shutdown().cancelled() => break,
        }
    }
    Err(shutting_down())
}
