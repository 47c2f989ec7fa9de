//! JSON-RPC 2.0 messages of the socket protocol: envelopes and error codes here; each method's
//! types in `methods` (the `Method` trait and one type per call) and `messages` (params, results).

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

mod messages;
pub mod methods;

pub use messages::*;
pub use methods::{decode_item, decode_params, encode_item, encode_result, Method, Stream};

/// Protocol version spoken by this build: `MAJOR.MINOR`; a different major is refused.
pub const PROTOCOL_VERSION: &str = "1.0";

/// The largest line either side accepts; a longer one is an error and closes the connection.
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// JSON-RPC error codes used by the daemon.
pub mod codes {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL_ERROR: i64 = -32603;
    pub const NOT_FOUND: i64 = -32000;
    pub const CONFLICT: i64 = -32001;
    pub const INVALID_CONFIGURATION: i64 = -32002;
    pub const PROTOCOL_MISMATCH: i64 = -32003;
    pub const FRAME_TOO_LARGE: i64 = -32004;
    pub const HELLO_REQUIRED: i64 = -32005;
    pub const FORBIDDEN: i64 = -32006;
    pub const SHUTTING_DOWN: i64 = -32007;
}

/// A request's `id` exactly as its sender wrote it (a number of any size, or a string), so that
/// the response carries the very same bytes: `123456789012345678901234567890` is not rounded.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RequestId(Box<RawValue>);

impl RequestId {
    /// `null`: the id of an answer to a line whose id could not be read.
    pub fn null() -> Self {
        RequestId(RawValue::NULL.to_owned())
    }

    /// The JSON text of the id, as sent.
    pub fn as_json(&self) -> &str {
        self.0.get()
    }

    /// The id as a number, when it is one that fits in a `u64` (the client's own ids).
    pub fn as_u64(&self) -> Option<u64> {
        self.as_json().parse().ok()
    }

    /// The id as a JSON value (a number beyond 64 bits loses digits there: prefer the id itself).
    pub fn to_value(&self) -> Value {
        serde_json::from_str(self.as_json()).unwrap_or(Value::Null)
    }
}

impl From<u64> for RequestId {
    fn from(id: u64) -> Self {
        // A u64's digits are always valid JSON.
        RawValue::from_string(id.to_string()).map_or_else(|_| RequestId::null(), RequestId)
    }
}

impl PartialEq for RequestId {
    fn eq(&self, other: &Self) -> bool {
        self.as_json() == other.as_json()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub jsonrpc: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<RequestId>,
    pub method: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Value>,
}

impl Request {
    pub fn new(id: u64, method: &str, params: Value) -> Self {
        Request {
            jsonrpc: "2.0".into(),
            id: Some(RequestId::from(id)),
            method: method.into(),
            params: Some(params),
        }
    }
}

/// Reads one request line, or the error to answer it with (and the id to answer with: the
/// request's own when it could be read, else `null`).
pub fn parse_request(line: &[u8]) -> Result<Request, (RequestId, RpcError)> {
    /// The fields of a request but its id, which is read from the line as written.
    #[derive(Deserialize)]
    struct Fields {
        jsonrpc: String,
        method: String,
        #[serde(default)]
        params: Option<Value>,
    }
    #[derive(Deserialize)]
    struct IdAsWritten {
        #[serde(default)]
        id: Option<RequestId>,
    }
    let value: Value = serde_json::from_slice(line).map_err(|e| {
        (
            RequestId::null(),
            RpcError::new(codes::PARSE_ERROR, format!("not valid JSON: {e}")),
        )
    })?;
    if !matches!(
        value.get("id"),
        None | Some(Value::Null | Value::Number(_) | Value::String(_))
    ) {
        return Err((
            RequestId::null(),
            RpcError::new(codes::INVALID_REQUEST, "`id` must be a number or a string"),
        ));
    }
    let id = serde_json::from_slice::<IdAsWritten>(line)
        .ok()
        .and_then(|w| w.id);
    let answer_id = || id.clone().unwrap_or_else(RequestId::null);
    let fields: Fields = serde_json::from_value(value).map_err(|e| {
        (
            answer_id(),
            RpcError::new(
                codes::INVALID_REQUEST,
                format!("not a JSON-RPC 2.0 request ({e}); expected {{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"...\",\"params\":{{...}}}}"),
            ),
        )
    })?;
    if fields.jsonrpc != "2.0" {
        return Err((
            answer_id(),
            RpcError::new(codes::INVALID_REQUEST, "`jsonrpc` must be \"2.0\""),
        ));
    }
    Ok(Request {
        jsonrpc: fields.jsonrpc,
        id,
        method: fields.method,
        params: fields.params,
    })
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RpcError {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub jsonrpc: String,
    pub id: RequestId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RpcError>,
}

impl Response {
    pub fn ok(id: RequestId, result: Value) -> Self {
        Response {
            jsonrpc: "2.0".into(),
            id,
            result: Some(result),
            error: None,
        }
    }
    pub fn err(id: RequestId, error: RpcError) -> Self {
        Response {
            jsonrpc: "2.0".into(),
            id,
            result: None,
            error: Some(error),
        }
    }
}

/// A stream item: `params.id` is the id of the request that opened the stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub jsonrpc: String,
    pub method: String,
    pub params: Value,
}

/// Any line the daemon sends: a notification when it has a `method`, else a response.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "AnyMessage")]
pub enum ServerMessage {
    Response(Response),
    Notification(Notification),
}

/// The fields of either kind of message, read in one pass (the raw id cannot be buffered, as an
/// untagged enum would).
#[derive(Deserialize)]
struct AnyMessage {
    jsonrpc: String,
    #[serde(default)]
    id: Option<RequestId>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    params: Option<Value>,
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    error: Option<RpcError>,
}

impl TryFrom<AnyMessage> for ServerMessage {
    type Error = String;
    fn try_from(m: AnyMessage) -> Result<Self, String> {
        match (m.method, m.id) {
            (Some(method), None) => Ok(ServerMessage::Notification(Notification {
                jsonrpc: m.jsonrpc,
                method,
                params: m.params.unwrap_or(Value::Null),
            })),
            (None, Some(id)) => Ok(ServerMessage::Response(Response {
                jsonrpc: m.jsonrpc,
                id,
                result: m.result,
                error: m.error,
            })),
            (None, None) if m.result.is_some() || m.error.is_some() => {
                Ok(ServerMessage::Response(Response {
                    jsonrpc: m.jsonrpc,
                    id: RequestId::null(),
                    result: m.result,
                    error: m.error,
                }))
            }
            _ => Err("neither a response nor a notification".into()),
        }
    }
}
