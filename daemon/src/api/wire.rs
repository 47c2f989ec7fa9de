//! Driver layer: what goes on the wire of one connection. The outbox of encoded lines, params
//! decoded, results encoded, and the JSON-RPC error of each operation error.

use crate::ops::OpError;
use flotilla_protocol::rpc::{codes, ConfigErrorData, RpcError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;

/// Lines to send on one connection (responses and notifications, already encoded), and whether
/// its client is gone (streams end then).
#[derive(Clone)]
pub struct Outbox {
    pub(super) tx: mpsc::Sender<Vec<u8>>,
    pub(super) gone: tokio_util::sync::CancellationToken,
}

impl Outbox {
    /// Queues a line; an error when the connection is gone.
    pub async fn send(&self, line: Vec<u8>) -> Result<(), ()> {
        if self.gone.is_cancelled() {
            return Err(());
        }
        self.tx.send(line).await.map_err(|_| ())
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
