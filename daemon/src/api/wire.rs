//! Driver layer: what goes on the wire of one connection. The outbox of encoded lines, params
//! decoded, results encoded, and the JSON-RPC error of each operation error.

use crate::ops::OpError;
use flotilla_protocol::rpc::{codes, ConfigErrorData, RpcError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// At most this many KiB of encoded lines wait for one connection's writer; a sender waits
/// beyond that, so a client that does not read holds up only its own requests.
pub(super) const QUEUED_KIB: u32 = 2 * 1024;

/// One encoded line on its way to the socket, holding its share of the byte budget until written.
pub(super) struct Queued {
    pub line: Vec<u8>,
    pub _budget: OwnedSemaphorePermit,
}

/// Lines to send on one connection (responses and notifications, already encoded), and whether
/// its client is gone (streams end then).
#[derive(Clone)]
pub struct Outbox {
    pub(super) tx: mpsc::Sender<Queued>,
    pub(super) budget: Arc<Semaphore>,
    pub(super) gone: tokio_util::sync::CancellationToken,
}

impl Outbox {
    /// A connection's outbox and the receiving end its writer drains.
    pub(super) fn new(
        gone: tokio_util::sync::CancellationToken,
    ) -> (Outbox, mpsc::Receiver<Queued>) {
        let (tx, rx) = mpsc::channel(64);
        let budget = Arc::new(Semaphore::new(QUEUED_KIB as usize));
        (Outbox { tx, budget, gone }, rx)
    }

    /// Queues a line, waiting while the connection's queue is full; an error when the
    /// connection is gone.
    pub async fn send(&self, line: Vec<u8>) -> Result<(), ()> {
        if self.gone.is_cancelled() {
            return Err(());
        }
        let kib = ((line.len() / 1024) as u32).clamp(1, QUEUED_KIB);
        let budget = tokio::select! {
            permit = self.budget.clone().acquire_many_owned(kib) => permit.map_err(|_| ())?,
            _ = self.gone.cancelled() => return Err(()),
        };
        self.tx
            .send(Queued {
                line,
                _budget: budget,
            })
            .await
            .map_err(|_| ())
    }

    /// Resolves when the client has closed its side of the connection.
    pub async fn closed(&self) {
        self.gone.cancelled().await
    }
}

pub fn encode_line<T: serde::Serialize>(msg: &T) -> Vec<u8> {
    let mut v = serde_json::to_vec(msg).unwrap_or_else(|_| b"{}".to_vec());
    v.push(b'\n');
    v
}

pub fn decode<T: DeserializeOwned>(method: &str, params: Value) -> Result<T, RpcError> {
    serde_json::from_value(params).map_err(|e| {
        RpcError::new(
            codes::INVALID_PARAMS,
            format!("{method}: invalid params: {e}"),
        )
    })
}

pub fn json<T: Serialize>(v: T) -> Result<Value, RpcError> {
    serde_json::to_value(v).map_err(|e| RpcError::new(codes::INTERNAL_ERROR, e.to_string()))
}

/// The JSON-RPC error of an operation's error.
pub fn op_error(e: OpError) -> RpcError {
    match e {
        OpError::Config(errs) => {
            let data = serde_json::to_value(ConfigErrorData {
                errors: errs.0.clone(),
            })
            .unwrap_or(Value::Null);
            RpcError::new(codes::INVALID_CONFIGURATION, errs.to_string()).with_data(data)
        }
        OpError::Invalid(m) => RpcError::new(codes::INVALID_PARAMS, m),
        OpError::NotFound(m) => RpcError::new(codes::NOT_FOUND, m),
        OpError::Conflict(m) => RpcError::new(codes::CONFLICT, m),
        OpError::Forbidden(m) => RpcError::new(codes::FORBIDDEN, m),
        OpError::Internal(m) => RpcError::new(codes::INTERNAL_ERROR, m),
        OpError::Store(e) => RpcError::new(codes::INTERNAL_ERROR, e.to_string()),
    }
}
