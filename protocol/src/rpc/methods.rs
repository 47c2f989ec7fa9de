//! One type per socket method, joined to its params and result by the [`Method`] trait, so that a
//! caller (`Client::call::<M>`) and the daemon's handler of `M::NAME` agree on the types.

use super::messages as m;
use super::{codes, Notification, RpcError};
use crate::model::{Fleet, Instance, Run, User};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// A socket method: its name on the wire, the params it takes and the result it answers.
pub trait Method {
    const NAME: &'static str;
    type Params: Serialize + DeserializeOwned;
    type Result: Serialize + DeserializeOwned;
}

/// A method that streams notifications (named [`Stream::ITEM`]) before its final result.
pub trait Stream: Method {
    /// The `method` field of each notification.
    const ITEM: &'static str;
    type Item: Serialize + DeserializeOwned;
}

/// Decodes a request's params for `M` (absent params read as `{}`), as `INVALID_PARAMS` when they do not fit.
pub fn decode_params<M: Method>(params: Option<Value>) -> Result<M::Params, RpcError> {
    let params = params.unwrap_or_else(|| Value::Object(Default::default()));
    serde_json::from_value(params).map_err(|e| {
        RpcError::new(
            codes::INVALID_PARAMS,
            format!("{}: invalid params: {e}", M::NAME),
        )
    })
}

/// Encodes a handler's result for `M` as the response's `result`.
pub fn encode_result<M: Method>(result: &M::Result) -> Result<Value, RpcError> {
    serde_json::to_value(result).map_err(|e| RpcError::new(codes::INTERNAL_ERROR, e.to_string()))
}

/// The notification carrying `item` of the stream opened by request `id`: the item's fields plus `id`.
pub fn encode_item<S: Stream>(
    id: &Value,
    item: &S::Item,
) -> Result<Notification, serde_json::Error> {
    let mut params = serde_json::to_value(item)?;
    if let Value::Object(m) = &mut params {
        m.insert("id".into(), id.clone());
    }
    Ok(Notification {
        jsonrpc: "2.0".into(),
        method: S::ITEM.into(),
        params,
    })
}

/// Decodes the params of one notification of stream `S` (the `id` field is ignored).
pub fn decode_item<S: Stream>(params: Value) -> Result<S::Item, serde_json::Error> {
    serde_json::from_value(params)
}

macro_rules! methods {
    ($($(#[$doc:meta])* $ty:ident = $konst:ident($name:literal): $params:ty => $result:ty;)+) => {
        $(
            pub const $konst: &str = $name;
            $(#[$doc])*
            #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
            pub struct $ty;
            impl Method for $ty {
                const NAME: &'static str = $konst;
                type Params = $params;
                type Result = $result;
            }
        )+
        /// The name of every method, in declaration order.
        pub const ALL: &[&str] = &[$($konst),+];
    };
}

methods! {
    /// The first call of a connection: protocol versions are compared, the caller is named.
    Hello = HELLO("hello"): m::HelloParams => m::HelloResult;
    /// What `run.apply` would do: the run's name and each job's best offers.
    RunPlan = RUN_PLAN("run.plan"): m::RunApplyParams => m::RunPlan;
    /// Submits a run (replacing a finished run of the same name).
    RunApply = RUN_APPLY("run.apply"): m::RunApplyParams => Run;
    /// Unfinished runs (or the last run), or every run with `all`; newest first.
    RunList = RUN_LIST("run.list"): m::RunListParams => Vec<Run>;
    RunGet = RUN_GET("run.get"): m::RunNameParams => Run;
    RunStop = RUN_STOP("run.stop"): m::RunStopParams => Run;
    RunDelete = RUN_DELETE("run.delete"): m::RunNameParams => m::Deleted;
    LogsRead = LOGS_READ("logs.read"): m::LogsReadParams => m::LogsReadResult;
    /// A stream of [`LogChunk`](m::LogChunk)s, ended by how the job ended.
    LogsFollow = LOGS_FOLLOW("logs.follow"): m::LogsFollowParams => m::LogsFollowEnd;
    /// A stream of [`EventNotice`](m::EventNotice)s; it ends only with an error (the daemon shutting down).
    EventsWatch = EVENTS_WATCH("events.watch"): m::EventsParams => ();
    EventList = EVENT_LIST("event.list"): m::EventsParams => m::EventList;
    FleetList = FLEET_LIST("fleet.list"): m::NoParams => Vec<Fleet>;
    InstanceList = INSTANCE_LIST("instance.list"): m::NoParams => Vec<Instance>;
    OfferList = OFFER_LIST("offer.list"): m::OfferQuery => m::OfferList;
    DaemonStatus = DAEMON_STATUS("daemon.status"): m::NoParams => m::DaemonStatus;
    DaemonStop = DAEMON_STOP("daemon.stop"): m::NoParams => m::Stopping;
    MetricsGet = METRICS_GET("metrics.get"): m::MetricsParams => m::MetricsResult;
    FleetApply = FLEET_APPLY("fleet.apply"): m::FleetApplyParams => Fleet;
    FleetGet = FLEET_GET("fleet.get"): m::FleetNameParams => Fleet;
    FleetDelete = FLEET_DELETE("fleet.delete"): m::FleetNameParams => m::Deleted;
    UserMe = USER_ME("user.me"): m::NoParams => User;
    /// After its response the connection carries the raw bytes of a TCP stream (see [`TunnelParams`](m::TunnelParams)).
    TunnelOpen = TUNNEL_OPEN("tunnel.open"): m::TunnelParams => m::TunnelInfo;
    GatewayOpen = GATEWAY_OPEN("gateway.open"): m::TunnelParams => m::GatewayInfo;
    UserRefreshSshKey = USER_REFRESH_SSH_KEY("user.refresh_ssh_key"): m::RefreshKeyParams => User;
    /// Replaces the caller's token for services' HTTP endpoints; the answer carries the new one.
    UserRefreshToken = USER_REFRESH_TOKEN("user.refresh_token"): m::NoParams => User;
    /// Creates or replaces a secret (admins); the answer has no value.
    SecretSet = SECRET_SET("secret.set"): m::SecretSetParams => m::SecretInfo;
    /// Every secret's name, who set it and when (no values).
    SecretList = SECRET_LIST("secret.list"): m::NoParams => Vec<m::SecretInfo>;
    /// One secret with its value (admins).
    SecretGet = SECRET_GET("secret.get"): m::SecretNameParams => m::SecretInfo;
    /// Deletes a secret (admins).
    SecretDelete = SECRET_DELETE("secret.delete"): m::SecretNameParams => m::Deleted;
    /// The configured backends: credentials (checked again with `check`), instances, orphans.
    BackendList = BACKEND_LIST("backend.list"): m::BackendListParams => Vec<m::BackendInfo>;
    /// Stores an archive for `run.apply`'s `archives` (see [`FileUploadParams`](m::FileUploadParams)):
    /// the bytes follow its `file.upload.ready` notification, raw.
    FileUpload = FILE_UPLOAD("file.upload"): m::FileUploadParams => m::FileUploadResult;
}

/// Notification methods of streams.
pub const LOGS_CHUNK: &str = "logs.chunk";
pub const EVENT: &str = "event";
/// The notification of `file.upload` after which the client sends the archive's bytes.
pub const FILE_UPLOAD_READY: &str = "file.upload.ready";

impl Stream for LogsFollow {
    const ITEM: &'static str = LOGS_CHUNK;
    type Item = m::LogChunk;
}

impl Stream for EventsWatch {
    const ITEM: &'static str = EVENT;
    type Item = m::EventNotice;
}
